"""Precision on any machine: the capability probes, the choices made from them (both answers, probes mocked),
refusals before any work, and the decoding step that keeps the kernel measured fastest."""

import re
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from genseq import LanguageModel, ModelConfig, capabilities, save_pretrained
from genseq.errors import ConfigError
from genseq.generation import GenerationConfig, decoding_step
from genseq.generation import precision as decoding
from genseq.generation.precision import KERNELS, FastestLinear, candidate_kinds
from genseq.train import TrainConfig, training_precision
from cli_helpers import run_cli

CPU = torch.device("cpu")
RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def probes(monkeypatch, **answers):
    """Replace capability probes by fixed answers: probes(monkeypatch, bf16_training=False, ...)."""
    for name, answer in answers.items():
        monkeypatch.setattr(capabilities, name, lambda *args, answer=answer: answer)



def tiny_model(seed=0) -> LanguageModel:
    torch.manual_seed(seed)
    return LanguageModel(ModelConfig(vocab_size=50, embedding_size=16, hidden_size=24, num_layers=2)).eval()


# ---- the probes themselves ------------------------------------------------------------------
def test_the_bf16_training_probe_agrees_with_a_real_lstm_under_autocast():
    lstm = nn.LSTM(8, 8, batch_first=True)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output, _ = lstm(torch.randn(2, 3, 8))
        output.float().sum().backward()
        runs = True
    except RuntimeError:
        runs = False
    assert capabilities.bf16_training("cpu") is runs


def test_a_bf16_run_is_never_called_faster_than_one_that_cannot_run(monkeypatch):
    capabilities.bf16_training_is_faster.cache_clear()
    probes(monkeypatch, bf16_training=False)
    try:
        assert capabilities.bf16_training_is_faster("cpu") is False
    finally:
        capabilities.bf16_training_is_faster.cache_clear()  # the real answer again for later tests


def test_describe_reports_every_probe():
    report = capabilities.describe("cpu")
    assert set(report) == {"cpu_capability", "native_bf16_hint", "bf16_training", "bf16_decoding",
                           "bf16_decoding_is_faster", "int8_decoding"}
    assert all(isinstance(value, bool) for name, value in report.items() if name != "cpu_capability")


def test_probes_leave_the_global_random_state_as_it_was():
    every_probe = (capabilities.bf16_training, capabilities.bf16_training_is_faster, capabilities.bf16_decoding,
               capabilities.bf16_decoding_is_faster, capabilities.int8_decoding)
    for cached in every_probe:
        cached.cache_clear()  # so that each probe runs again, here
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    capabilities.describe("cpu")
    capabilities.bf16_training_is_faster("cpu")
    assert torch.equal(torch.rand(3), expected)


# ---- training: auto and explicit bf16 ---------------------------------------------------------
def test_auto_trains_in_bf16_where_it_runs_and_was_measured_faster(monkeypatch):
    probes(monkeypatch, bf16_training=True, bf16_training_is_faster=True)
    assert training_precision("auto", CPU) == "bf16"


def test_auto_trains_in_fp32_where_bf16_runs_but_is_slower(monkeypatch):
    probes(monkeypatch, bf16_training=True, bf16_training_is_faster=False)
    assert training_precision("auto", CPU) == "fp32"


def test_auto_trains_in_fp32_where_bf16_cannot_run(monkeypatch):
    probes(monkeypatch, bf16_training=False, bf16_training_is_faster=False)
    assert training_precision("auto", CPU) == "fp32"


def test_explicit_bf16_training_runs_where_the_probe_says_it_can(monkeypatch):
    probes(monkeypatch, bf16_training=True)
    assert training_precision("bf16", CPU) == "bf16"
    assert training_precision("fp32", CPU) == "fp32"


def test_explicit_bf16_training_is_refused_in_one_sentence_where_it_cannot_run(monkeypatch):
    probes(monkeypatch, bf16_training=False)
    with pytest.raises(ConfigError, match=r"precision bf16 cannot train here: .*; use --precision fp32, or auto"):
        training_precision("bf16", CPU)


def test_the_trainer_autocasts_in_the_precision_auto_chose(monkeypatch, tiny_config, tokenizer, train_file, tmp_path):
    from genseq.data import open_source, tokenize
    from genseq.train import Trainer

    stream = tokenize(open_source(str(train_file)), tokenizer)
    for faster, expected in ((True, "bf16"), (False, "fp32")):
        probes(monkeypatch, bf16_training=True, bf16_training_is_faster=faster)
        config = TrainConfig(batch_size=2, bptt=8, device="cpu", precision="auto", progress=False)
        trainer = Trainer(LanguageModel(tiny_config), tokenizer, stream, stream, config, tmp_path / expected)
        assert trainer.precision == expected
        assert trainer.autocast().fast_dtype == torch.bfloat16
        assert trainer.autocast()._enabled is (expected == "bf16")


def test_cli_refuses_bf16_training_before_the_tokenizer_is_trained(monkeypatch, capsys, train_file, tmp_path):
    from genseq.tokenizer import Tokenizer

    probes(monkeypatch, bf16_training=False)
    monkeypatch.setattr(Tokenizer, "train", staticmethod(lambda *a, **k: pytest.fail("the tokenizer was trained")))
    code, _, err = run_cli(capsys, "train", "completion", "--data", train_file, "--out", tmp_path / "run", "--precision", "bf16",
                           "--device", "cpu", "--no-progress")
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert "precision bf16 cannot train here" in err and "--precision fp32" in err
    assert not (tmp_path / "run" / "tokenizer.model").exists()


@pytest.mark.skipif(not capabilities.bf16_training("cpu"),
                    reason="this CPU's PyTorch cannot run an LSTM under bf16 autocast (no AVX512-BF16/AMX kernel)")
def test_a_real_bf16_training_step_keeps_fp32_weights(tiny_config, tokenizer, train_file, tmp_path):
    from genseq.data import open_source, tokenize
    from genseq.train import Trainer

    stream = tokenize(open_source(str(train_file)), tokenizer)
    config = TrainConfig(batch_size=2, bptt=8, device="cpu", precision="bf16", progress=False)
    trainer = Trainer(LanguageModel(tiny_config), tokenizer, stream, stream, config, tmp_path / "run")
    inputs = torch.randint(0, tiny_config.vocab_size, (2, 8))
    assert torch.isfinite(torch.tensor(trainer.train_step((inputs, inputs))))
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


# ---- decoding: refusals and auto ---------------------------------------------------------------
def test_int8_decoding_is_refused_in_one_sentence_without_fbgemm(monkeypatch):
    probes(monkeypatch, int8_decoding=False)
    with pytest.raises(ConfigError, match=r"precision int8 needs PyTorch's fbgemm int8 kernels.*use --precision fp32"):
        GenerationConfig(precision="int8")
    with pytest.raises(ConfigError, match="fbgemm"):
        candidate_kinds("int8", CPU)


def test_int8_decoding_is_accepted_where_fbgemm_runs(monkeypatch):
    probes(monkeypatch, int8_decoding=True)
    assert GenerationConfig(precision="int8").precision == "int8"
    assert candidate_kinds("int8", CPU) == KERNELS["int8"]


def test_explicit_bf16_decoding_is_refused_in_one_sentence_where_it_cannot_run(monkeypatch):
    probes(monkeypatch, bf16_decoding=False)
    with pytest.raises(ConfigError, match=r"precision bf16 cannot decode on this machine's CPU.*use --precision fp32"):
        decoding_step(tiny_model(), "bf16")


def test_cli_generate_refuses_int8_without_fbgemm_in_one_sentence(monkeypatch, capsys, tmp_path, tokenizer):
    model = LanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, embedding_size=16, hidden_size=16))
    save_pretrained(tmp_path / "tiny", model, tokenizer)
    probes(monkeypatch, int8_decoding=False)
    code, out, err = run_cli(capsys, "generate", "--prompt", "Shall I", "--model", tmp_path / "tiny", "--precision", "int8",
                             "--max-new-tokens", "3")
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert "fbgemm" in err and out == ""


def test_auto_decoding_times_bf16_only_where_it_was_measured_faster(monkeypatch):
    probes(monkeypatch, bf16_decoding=True, bf16_decoding_is_faster=False)
    assert candidate_kinds("auto", CPU) == KERNELS["fp32"]
    probes(monkeypatch, bf16_decoding_is_faster=True)
    assert candidate_kinds("auto", CPU) == KERNELS["fp32"] + KERNELS["bf16"]


class SlowLinear:
    """A correct bf16 matrix product that takes 20 ms: the kind auto must not keep."""

    def __init__(self, weight, bias):
        self.inner = decoding.BF16Linear(weight, bias)

    def __call__(self, x):
        time.sleep(0.02)
        return self.inner(x)


def test_auto_decoding_never_keeps_a_slower_precision_whatever_the_probe_said(monkeypatch):
    probes(monkeypatch, bf16_decoding=True, bf16_decoding_is_faster=True)
    monkeypatch.setitem(KERNELS, "bf16", (SlowLinear,))
    model = tiny_model(1)
    step = decoding_step(model, "auto")
    step(torch.tensor([3]), model.initial_state(1))
    products = [*step.layers, step.output]
    assert all(len(product.candidates) == 3 for product in products)  # packed and addmm fp32, the slow bf16
    assert not any(isinstance(product.chosen[0], SlowLinear) for product in products)


# ---- the measured matrix products ---------------------------------------------------------------
class Timed:
    """A candidate kind that computes x W^T + b after a delay, counting its calls."""

    delay, calls = 0.0, None

    def __init__(self, weight, bias):
        self.weight, self.bias = weight, bias

    def __call__(self, x):
        self.calls.append(type(self).__name__)
        time.sleep(self.delay)
        return x @ self.weight.t() + self.bias


def timed_kinds(calls: list):
    slow = type("Slow", (Timed,), {"delay": 0.005, "calls": calls})
    fast = type("Fast", (Timed,), {"delay": 0.0, "calls": calls})
    return slow, fast


def test_fastest_linear_times_each_kind_on_the_first_call_then_keeps_the_fastest():
    calls = []
    weight, bias, x = torch.randn(3, 4), torch.randn(3), torch.randn(1, 4)
    linear = FastestLinear(timed_kinds(calls), weight, bias)
    torch.testing.assert_close(linear(x), x @ weight.t() + bias)
    assert calls.count("Slow") == FastestLinear.ROUNDS and calls[-1] == "Fast"  # the result is the chosen kind's
    calls.clear()
    for _ in range(5):
        linear(x)
    assert calls == ["Fast"] * 5


def test_fastest_linear_chooses_again_for_a_batch_of_another_size_class():
    calls = []
    linear = FastestLinear(timed_kinds(calls), torch.randn(3, 4), torch.randn(3))
    linear(torch.randn(1, 4))
    linear(torch.randn(1, 4))
    assert set(linear.chosen) == {0}
    linear(torch.randn(64, 4))
    assert set(linear.chosen) == {0, 3}  # 64 rows: the class of 32-127


def test_a_seeded_generation_is_identical_before_and_after_the_kernels_were_chosen():
    from genseq.generation import generate_ids

    model, config = tiny_model(4), GenerationConfig(max_new_tokens=12, seed=3)
    first = generate_ids(model, [[5, 6, 7]], config, eos_id=3)[0][0]
    second = generate_ids(model, [[5, 6, 7]], config, eos_id=3)[0][0]
    assert (first.tokens, first.logprob) == (second.tokens, second.logprob)


def test_every_fp32_kernel_gives_the_packed_steps_outputs():
    model = tiny_model(2)
    ids, reference_state = torch.randint(0, 50, (3,)), model.initial_state(3)
    reference = model.stepper()
    for kind in KERNELS["fp32"]:
        logits, state = model.stepper(kind)(ids, reference_state)
        expected, expected_state = reference(ids, reference_state)
        torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(state, expected_state, atol=1e-5, rtol=0)


def test_the_decoding_step_is_built_once_per_model_and_precision():
    model = tiny_model(3)
    assert decoding_step(model, "fp32") is decoding_step(model, "fp32")
    assert decoding_step(model, "fp32") is not decoding_step(model, "bf16")


def test_a_captioners_decoding_step_is_cached_on_its_decoder_for_every_batch_of_images():
    from genseq_captioning.decoder import BoundDecoder, CaptionDecoder, DecoderConfig

    torch.manual_seed(0)
    decoder = CaptionDecoder(DecoderConfig(vocab_size=40, feature_channels=8, feature_size=16, embedding_size=12,
                                           hidden_size=20, attention_size=10, dropout=0.0)).eval()
    first, second = BoundDecoder(decoder, torch.randn(2, 8, 3, 3)), BoundDecoder(decoder, torch.randn(5, 8, 3, 3))
    assert decoding_step(first, "fp32") is decoding_step(second, "fp32")
    assert isinstance(decoding_step(first, "fp32").output, FastestLinear)


# ---- recipes -----------------------------------------------------------------------------------------
def test_recipes_train_in_a_precision_that_follows_the_machine():
    scripts = sorted(RECIPES.glob("*.sh"))
    assert scripts
    for script in scripts:
        chosen = re.findall(r"--precision[ =](\S+)", script.read_text())
        assert all(value == "auto" for value in chosen), f"{script.name} fixes --precision {chosen}"
