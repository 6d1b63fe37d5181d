"""ONNX export (genseq.export, `genseq export onnx`) and its reference runner (examples/onnx-runner): the graph
gives the engine's logits, the runner gives genseq's greedy tokens and next words, int8 stays close."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli

from genseq import LanguageModel, ModelConfig
from genseq.checkpoint import from_pretrained
from genseq.defaults import default_model_dir
from genseq.export import export_onnx
from genseq.generation import GenerationConfig, generate_ids

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "examples" / "onnx-runner" / "runner.py"
CAPTIONER = ROOT / "plugins" / "genseq_captioning" / "models" / "captioner"
PROMPTS = ["When in disgrace with", "Shall I compare thee", "thy", "O", "\n"]


def load_runner():
    spec = importlib.util.spec_from_file_location("onnx_runner", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runner():
    return load_runner()


@pytest.fixture(scope="module")
def trained_export(trained_run, tmp_path_factory):
    """(model, tokenizer, export directory) of the tiny trained run, exported in fp32."""
    model, tokenizer = from_pretrained(trained_run)
    out = tmp_path_factory.mktemp("onnx") / "fp32"
    export_onnx(model, tokenizer, out)
    return model, tokenizer, out


@pytest.fixture(scope="module")
def lively_export(tokenizer, tmp_path_factory):
    """(model, export directory) of a random model with weights large enough that its greedy tokens change with
    its input (the tiny trained run repeats one piece whatever it reads), EOS likely enough to end some at once."""
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, embedding_size=16, hidden_size=32, projection_size=16,
                         tie_weights=True)
    model = LanguageModel(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(6)
        model.output.bias[tokenizer.eos_id] = 5.0
    out = tmp_path_factory.mktemp("onnx") / "lively"
    export_onnx(model, tokenizer, out)
    return model, out


CELLS = {
    "lstm": {},
    "lstm with projection and tied weights": {"projection_size": 16, "embedding_size": 16, "tie_weights": True},
    "gru": {"cell": "gru"},
    "rnn": {"cell": "rnn", "num_layers": 3},
}


@pytest.mark.parametrize("sizes", CELLS.values(), ids=CELLS.keys())
def test_the_exported_step_gives_the_engines_logits_and_state_to_1e_5(sizes, tokenizer, tmp_path, runner):
    torch.manual_seed(0)
    config = {"vocab_size": tokenizer.vocab_size, "embedding_size": 12, "hidden_size": 20, "num_layers": 2} | sizes
    model = LanguageModel(ModelConfig(**config)).eval()
    export_onnx(model, tokenizer, tmp_path)
    exported, step = runner.ExportedModel(tmp_path), model.stepper()
    ids = torch.tensor([5, 17, 300])  # a batch of 3
    state, onnx_state = model.initial_state(3), exported.initial_state(3)
    for _ in range(6):
        logits, state = step(ids, state)
        onnx_logits, onnx_state = exported.step(ids.numpy(), onnx_state)
        np.testing.assert_allclose(onnx_logits, logits.numpy(), atol=1e-5, rtol=0)
        for ours, theirs in zip(onnx_state, state, strict=True):
            np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-5, rtol=0)
        ids = logits.argmax(-1)


def test_the_default_models_graph_gives_its_logits_to_1e_5_of_their_scale(tmp_path, runner):
    """The shipped model: 2 LSTM layers of 640 with a projection, tied 8000-piece output, logits up to ~20."""
    model, tokenizer = from_pretrained(default_model_dir())
    export_onnx(model, tokenizer, tmp_path)
    exported, step = runner.ExportedModel(tmp_path), model.stepper()
    ids, state, onnx_state = torch.tensor([5, 17, 300, 1000]), model.initial_state(4), exported.initial_state(4)
    for _ in range(4):
        logits, state = step(ids, state)
        onnx_logits, onnx_state = exported.step(ids.numpy(), onnx_state)
        np.testing.assert_allclose(onnx_logits, logits.numpy(), atol=1e-5 * float(logits.abs().max()), rtol=0)
        ids = logits.argmax(-1)


def test_a_tied_embedding_is_stored_once(tokenizer, tmp_path):
    import onnx

    config = ModelConfig(vocab_size=tokenizer.vocab_size, embedding_size=16, hidden_size=20, projection_size=16,
                         tie_weights=True)
    export_onnx(LanguageModel(config), tokenizer, tmp_path)
    shapes = [tuple(tensor.dims) for tensor in onnx.load(tmp_path / "model.onnx").graph.initializer]
    assert shapes.count((16, tokenizer.vocab_size)) == 1 and (tokenizer.vocab_size, 16) not in shapes


def test_the_runner_greedy_tokens_are_genseqs(lively_export, tokenizer, runner):
    model, out = lively_export
    prompts = [tokenizer.encode(prompt) for prompt in PROMPTS]
    expected = generate_ids(model, prompts, GenerationConfig(temperature=0, max_new_tokens=30), tokenizer.eos_id)
    got = runner.ExportedModel(out).greedy_ids(prompts, 30)
    assert got == [sequences[0].tokens for sequences in expected]
    assert len({tuple(tokens) for tokens in got}) >= 3 and [tokenizer.eos_id] in got, "the prompts lead apart"


def test_the_runner_suggests_the_completion_tasks_next_words(trained_export, runner):
    from genseq_completion.suggest import next_words

    model, tokenizer, out = trained_export
    exported = runner.ExportedModel(out)
    for prompt in ("Shall I compare thee to a ", "When in disgrace with fort", "thy"):
        expected, got = next_words(model, tokenizer, prompt, 5), exported.suggest(prompt, 5)
        assert [s["word"] for s in got] == [s["word"] for s in expected]
        np.testing.assert_allclose([s["prob"] for s in got], [s["prob"] for s in expected], rtol=1e-4)


def test_the_runner_text_round_trips_as_genseqs_tokenizer(trained_export, runner):
    _, tokenizer, out = trained_export
    exported, text = runner.ExportedModel(out), "Two lines,\n\nand a blank one: ünïcode too."
    assert exported.encode(text) == tokenizer.encode(text)
    assert exported.decode(tokenizer.encode(text)) == text


def test_an_int8_export_is_smaller_and_keeps_perplexity_within_5_percent(trained_export, runner, valid_file,
                                                                         tmp_path):
    model, tokenizer, out = trained_export
    export_onnx(model, tokenizer, tmp_path, precision="int8")
    assert (tmp_path / "model.onnx").stat().st_size < (out / "model.onnx").stat().st_size / 2
    assert json.loads((tmp_path / "config.json").read_text())["precision"] == "int8"
    text = valid_file.read_text(encoding="utf-8")[:3000]
    fp32, int8 = runner.ExportedModel(out).perplexity(text), runner.ExportedModel(tmp_path).perplexity(text)
    assert abs(int8 / fp32 - 1) < 0.05


def test_the_runner_needs_neither_torch_nor_genseq(trained_export):
    _, _, out = trained_export
    blocked = "import sys, runpy; sys.modules.update(torch=None, genseq=None); sys.argv = sys.argv[1:]; "
    command = [sys.executable, "-c", blocked + "runpy.run_path(sys.argv[0], run_name='__main__')",
               str(RUNNER), str(out), "Shall I", "--max-new-tokens", "5"]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Shall I") and len(result.stdout) > len("Shall I\n")


# ---- the command ----------------------------------------------------------------------------
def test_genseq_export_onnx_writes_the_step_tokenizer_and_config(untrained_checkpoint, tmp_path, capsys):
    out = tmp_path / "export"
    code, stdout, stderr = run_cli(capsys, "export", "onnx", "--model", untrained_checkpoint, "--out", out)
    assert code == 0, stderr
    assert "model.onnx" in stdout and sorted(p.name for p in out.iterdir()) == ["config.json", "model.onnx",
                                                                               "tokenizer.model"]
    config = json.loads((out / "config.json").read_text())
    assert config["special_ids"]["eos"] == config["start_id"] == 3
    assert [entry["input"] for entry in config["state"]] == ["h", "c"]
    code, _, stderr = run_cli(capsys, "export", "onnx", "--model", untrained_checkpoint, "--out", out)
    assert code == 0, "an earlier export is replaced"


@pytest.mark.parametrize("flags, message", [
    (["--precision", "fp16"], "precision must be one of fp32, int8, not 'fp16'"),
    (["--model", "no/such/dir"], "no/such/dir is not a checkpoint directory"),
    (["--out", "{checkpoint}"], "holds other files (model.safetensors), which the export would delete"),
    (["--model", "{captioner}"], "holds a 'captioner' model, and only language models (kind 'lm') export to ONNX"),
])
def test_genseq_export_onnx_refuses_bad_input_in_one_sentence(flags, message, untrained_checkpoint, tmp_path, capsys):
    argv = {"--model": untrained_checkpoint, "--out": str(tmp_path / "out")}
    for flag, value in zip(flags[::2], flags[1::2]):
        argv[flag] = value.format(checkpoint=untrained_checkpoint, captioner=CAPTIONER)
    code, _, stderr = run_cli(capsys, "export", "onnx", *[word for pair in argv.items() for word in pair])
    assert code == 2 and message in stderr and stderr.count("\n") == 1 and "Traceback" not in stderr


def test_genseq_export_onnx_without_onnx_installed_says_what_to_install(untrained_checkpoint, tmp_path, capsys,
                                                                         monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    code, _, stderr = run_cli(capsys, "export", "onnx", "--model", untrained_checkpoint, "--out", tmp_path / "out")
    assert code == 2 and "needs the onnx package" in stderr and "pip install" in stderr
    assert not (tmp_path / "out").exists()
