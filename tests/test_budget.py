"""Budget-aware training defaults (genseq.budget): what a budget buys, flags given win, and the CLI records it."""

import json

import pytest
import torch
from cli_helpers import run_cli

from genseq import budget
from genseq.budget import SIZES, choose, choose_fine_tune


@pytest.fixture(autouse=True)
def _fresh_speeds(monkeypatch):
    monkeypatch.setattr(budget, "_speeds", {})


def machine(tokens_per_second_at_512: float):
    """A speed(model_config, batch, bptt, device) of a machine whose cost grows with the training FLOPs."""
    reference = budget.training_flops_per_token(512, 512, 512, 1)

    def speed(config, batch, bptt, device):
        flops = budget.training_flops_per_token(config["vocab_size"], config["embedding_size"], config["hidden_size"],
                                                config["num_layers"])
        return tokens_per_second_at_512 * reference / flops

    return speed


def never_measured(*args):
    raise AssertionError("a budget in steps needs no measurement")


def values(choices: dict) -> dict:
    return {name: choice.value for name, choice in choices.items()}


def test_a_larger_budget_buys_a_larger_model_never_a_smaller_one():
    sizes = [values(choose({}, 10_000_000, minutes * 60, None, speed=machine(5000)))["hidden_size"]
             for minutes in (0.1, 1, 4, 15, 60, 600)]
    assert sizes == sorted(sizes) and sizes[0] == SIZES[0].hidden and sizes[-1] > sizes[0]


def test_a_faster_machine_buys_a_larger_model_in_the_same_time():
    slow = values(choose({}, 10_000_000, 240, None, speed=machine(500)))
    fast = values(choose({}, 10_000_000, 240, None, speed=machine(500_000)))
    assert fast["hidden_size"] * fast["num_layers"] > slow["hidden_size"] * slow["num_layers"]


def test_each_size_is_taken_once_the_budget_reads_the_tokens_it_needs():
    for smaller, size in zip(SIZES, SIZES[1:]):
        steps_needed = -(-size.needs // (size.batch * budget.BPTT))
        assert values(choose({}, 10**9, None, steps_needed, speed=never_measured))["hidden_size"] == size.hidden
        below = values(choose({}, 10**9, None, steps_needed - 1, speed=never_measured))
        assert (below["hidden_size"], below["num_layers"]) == (smaller.hidden, smaller.layers)


def test_a_flag_given_wins_and_the_rest_is_chosen_around_it():
    chosen = choose({"hidden_size": 96, "lr": 1e-3, "embedding_dropout": 0.5}, 1_000_000, None, 100,
                    speed=never_measured)
    assert not {"hidden_size", "lr", "embedding_dropout"} & set(chosen)
    assert chosen["embedding_size"].value == 96 and chosen["tie_weights"].value is True
    assert chosen["output_dropout"].value == chosen["layer_dropout"].value


def test_a_given_projection_sets_the_tied_embedding_width():
    chosen = values(choose({"projection_size": 64}, 1_000_000, None, 100, speed=never_measured))
    assert chosen["embedding_size"] == 64 and chosen["tie_weights"] is True and "projection_size" not in chosen


def test_a_tiny_corpus_gets_characters_and_a_small_one_a_vocabulary_it_can_fill():
    tiny = values(choose({}, 20_000, None, 50, speed=never_measured))
    assert tiny["tokenizer_type"] == "char" and tiny["vocab_size"] == budget.CHAR_VOCABULARY
    large = values(choose({}, 10**9, None, 10**6, speed=never_measured))
    assert large["tokenizer_type"] == "bpe" and large["vocab_size"] == SIZES[-1].vocab
    capped = values(choose({}, 300_000, None, 10**6, speed=never_measured))
    assert capped["vocab_size"] <= max(512, 300_000 // budget.MIN_BYTES_PER_PIECE)


def test_dropout_grows_with_the_epochs_the_budget_makes():
    dropouts = [values(choose({"hidden_size": 64, "num_layers": 1}, 2_000_000, None, steps, speed=never_measured))
                ["layer_dropout"] for steps in (10, 1000, 5000, 100_000)]
    assert dropouts == sorted(dropouts) and dropouts[0] == 0.0 and dropouts[-1] > 0.0


def test_the_schedule_fits_the_steps():
    chosen = values(choose({}, 10**7, None, 40, speed=never_measured))
    assert 0 <= chosen["warmup_steps"] < 40 and 1 <= chosen["eval_every"] <= 40
    one = values(choose({}, 10**7, None, 1, speed=never_measured))
    assert one["warmup_steps"] == 0 and one["eval_every"] == 1


def test_a_time_budget_measures_each_size_once_and_stops_at_the_first_it_cannot_afford():
    measured = []

    def speed(config, batch, bptt, device):
        measured.append(config["hidden_size"])
        return 1000.0

    choose({}, 10**7, 60, None, speed=speed)  # 60,000 tokens: not enough for the second size
    choose({}, 10**7, 60, None, speed=speed)
    assert measured == [SIZES[0].hidden, SIZES[1].hidden]


def test_a_fine_tune_keeps_its_model_and_only_raises_its_dropout():
    config = {"vocab_size": 1000, "embedding_size": 32, "hidden_size": 32, "num_layers": 1, "projection_size": 0,
              "tie_weights": True, "embedding_dropout": 0.1, "layer_dropout": 0.2, "output_dropout": 0.5}
    short = values(choose_fine_tune(config, {}, 10**8, None, 20, speed=never_measured))
    assert not set(short) & {"hidden_size", "vocab_size", "tokenizer_type", "lr"}
    assert not set(short) & set(budget.DROPOUTS)  # far less than an epoch: the checkpoint's own dropout
    many = values(choose_fine_tune(config, {}, 10_000, None, 2000, speed=never_measured))
    assert many["embedding_dropout"] == many["layer_dropout"] == 0.3 and "output_dropout" not in many


def test_measuring_a_step_leaves_the_random_state_as_it_was():
    before = torch.random.get_rng_state()
    speed = budget.measured_tokens_per_second({"vocab_size": 300, "embedding_size": 8, "hidden_size": 8,
                                               "num_layers": 1, "tie_weights": True}, batch=2, bptt=4)
    assert speed > 0 and torch.equal(before, torch.random.get_rng_state())


def test_train_with_a_budget_says_what_it_chose_and_records_it(capsys, tmp_path, train_file, valid_file):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "completion", "--data", train_file, "--valid", valid_file, "--out", out,
                           "--max-steps", "6", "--hidden-size", "16", "--batch-size", "4", "--bptt", "8",
                           "--lr", "2e-3", "--no-progress")
    assert code == 0, err
    assert "chosen for this budget" in err and "--tokenizer-type" in err and "--hidden-size" not in err
    config = json.loads((out / "config.json").read_text())
    rule = config["training_config"]["budget_rule"]
    assert rule["tokenizer_type"]["value"] == "char" and "lr" not in rule and "hidden_size" not in rule
    assert config["training_config"]["lr"] == 2e-3
    assert config["model_config"]["hidden_size"] == 16 and config["model_config"]["tie_weights"] is True
    assert config["training_config"]["warmup_steps"] == rule["warmup_steps"]["value"]


def test_a_resumed_run_keeps_what_was_chosen(capsys, tmp_path, train_file, valid_file):
    out = tmp_path / "run"
    flags = ["--data", train_file, "--valid", valid_file, "--batch-size", "4", "--bptt", "8", "--no-progress"]
    assert run_cli(capsys, "train", "completion", *flags, "--out", out, "--max-steps", "4", "--hidden-size", "16")[0] == 0
    first = json.loads((out / "config.json").read_text())["training_config"]
    code, _, err = run_cli(capsys, "train", "completion", *flags, "--resume", out, "--max-steps", "8")
    assert code == 0, err
    assert "chosen for this budget" not in err
    again = json.loads((out / "config.json").read_text())["training_config"]
    assert again["budget_rule"] == first["budget_rule"] and again["lr"] == first["lr"]


def test_the_choices_are_printed_as_the_flags_that_give_them(capsys):
    budget.describe(choose({}, 1_000_000, None, 2000, speed=never_measured))
    block = capsys.readouterr().err
    assert block.startswith("chosen for this budget") and "--layers 1" in block and "--num-layers" not in block
    assert block.count("--dropout 0.1") == 1 and "--layer-dropout" not in block and "--tie-weights" in block
    assert "--tokenizer-type bpe --vocab-size 512" in block  # one reason, one line


class FakeWorld:
    """Two processes in one: the main one's broadcast is what the other receives."""

    def __init__(self, is_main: bool, sent: list):
        self.distributed, self.is_main, self.sent = True, is_main, sent

    def broadcast_bytes(self, data):
        if self.is_main:
            self.sent.append(data)
            return data
        return self.sent[-1]


def test_a_distributed_run_takes_the_main_process_choices_and_its_errors():
    sent = []
    main_choices = budget.agreed(FakeWorld(True, sent), lambda: choose({}, 10**6, None, 100, speed=never_measured))
    other = budget.agreed(FakeWorld(False, sent), lambda: pytest.fail("only the main process chooses"))
    assert other == main_choices

    def refused():
        raise budget.ConfigError("no room for this model")

    with pytest.raises(budget.ConfigError, match="no room"):
        budget.agreed(FakeWorld(True, sent), refused)
    with pytest.raises(budget.ConfigError, match="no room"):
        budget.agreed(FakeWorld(False, sent), lambda: None)


def test_a_size_that_cannot_fit_is_refused_before_it_is_built(monkeypatch):
    from genseq import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 50_000_000, raising=False)
    with pytest.raises(budget.ConfigError):
        choose({"hidden_size": 200_000}, 10**6, 60, None, speed=lambda *a: pytest.fail("nothing is timed"))


def test_a_long_time_budget_validates_every_few_minutes_so_that_a_stopped_run_has_a_model():
    import re

    for minutes, validations in ((4, 5), (30, 15), (600, budget.MAX_VALIDATIONS)):
        chosen = choose({}, 10**7, minutes * 60, None, speed=machine(5000))
        steps = int(re.search(r"about (\d+) steps", chosen["warmup_steps"].reason).group(1))
        assert chosen["eval_every"].value == steps // validations, minutes
        assert f"about {validations} validations" in chosen["eval_every"].reason
