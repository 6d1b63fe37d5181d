"""The gradients lab: its recall data, its gradient norms against a hand computation, and `genseq lab gradients`."""

import io
import json
import math

import pytest
import torch

from genseq.cli import main
from genseq.lab import (CELL_TYPES, LabConfig, RecallModel, StepCost, duration_text, estimate_seconds, gradient_norms,
                        lab_png, lab_runs, measure_step_cost, recall_batch, run_lab, train_recall)


def test_recall_sequences_start_with_the_key_to_name_and_then_only_distractors():
    inputs, targets = recall_batch(500, 7, keys=4, distractor_symbols=3, generator=torch.Generator().manual_seed(0))
    assert inputs.shape == (500, 8) and targets.shape == (500,)
    assert torch.equal(inputs[:, 0], targets)
    assert ((targets >= 0) & (targets < 4)).all() and set(targets.tolist()) == {0, 1, 2, 3}
    assert ((inputs[:, 1:] >= 4) & (inputs[:, 1:] < 7)).all() and set(inputs[:, 1:].flatten().tolist()) == {4, 5, 6}


def test_gradient_norms_match_a_hand_computed_one_unit_rnn():
    model = RecallModel("rnn", vocab_size=3, hidden_size=1, classes=2)
    a, w, r = 0.9, 1.3, (0.7, -0.4)
    with torch.no_grad():
        model.embedding.weight.copy_(torch.tensor([[0.5], [-1.0], [0.25]]))
        model.core.weight_ih_l0.fill_(a), model.core.weight_hh_l0.fill_(w)
        model.core.bias_ih_l0.zero_(), model.core.bias_hh_l0.zero_()
        model.readout.weight.copy_(torch.tensor([[r[0]], [r[1]]])), model.readout.bias.zero_()
    ids = [0, 2, 1, 1, 0]
    x = [model.embedding.weight[i, 0].item() for i in ids]
    h, hs = 0.0, []
    for value in x:
        h = math.tanh(a * value + w * h)
        hs.append(h)
    logits = [r[0] * h, r[1] * h]
    p0 = math.exp(logits[0]) / (math.exp(logits[0]) + math.exp(logits[1]))
    d_h = (p0 - 1) * r[0] + (1 - p0) * r[1]  # target class 0: dL/dh_T = sum_k (p_k - y_k) r_k
    by_hand = []
    for t in range(len(x)):
        d = d_h * (1 - hs[t] ** 2) * a
        for k in range(t + 1, len(x)):
            d *= w * (1 - hs[k] ** 2)
        by_hand.append(abs(d))
    norms = gradient_norms(model, torch.tensor([ids]), torch.tensor([0]))
    assert norms == pytest.approx(by_hand[::-1], rel=1e-5)  # listed from the last step back


def test_a_gru_learns_to_recall_across_a_few_distractors():
    _, accuracy, largest = train_recall("gru", 3, LabConfig(steps=150, test_size=256), clip=True)
    assert accuracy > 0.9 and 0 < largest < math.inf


def test_fresh_lstm_gradients_fade_more_slowly_than_a_plain_rnns():
    result = run_lab(LabConfig(cells=("rnn", "lstm"), length=60, distractors=(2,), steps=5))
    rnn, lstm = result.gradients["rnn"]["fresh"], result.gradients["lstm"]["fresh"]
    assert len(rnn) == 60 and rnn[0] > rnn[40] and lstm[40] > 100 * rnn[40]


def test_the_lab_command_prints_json_and_writes_the_plots(tmp_path, capsys):
    out = tmp_path / "lab.png"
    argv = ["lab", "gradients", "--cells", "rnn,lstm", "--length", "12", "--distractors", "2,4", "--steps", "10",
            "--json", "--out", str(out)]
    assert main(argv) == 0
    document = json.loads(capsys.readouterr().out)
    assert set(document["gradients"]) == {"rnn", "lstm"} and len(document["gradients"]["rnn"]["fresh"]) == 12
    assert set(document["recall"]["lstm"]["clipped"]) == {"2", "4"} and document["chance"] == 0.125
    assert set(document["largest_gradient_norm"]["rnn"]) == {"clipped", "unclipped"}
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_the_lab_command_prints_tables(capsys):
    assert main(["lab", "gradients", "--cells", "gru", "--length", "12", "--distractors", "2", "--steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "gru, fresh" in out and "gru, clipped" in out and "recall accuracy" in out


@pytest.mark.parametrize("argv,message", [
    (["--cells", "rnn,transformer"], "cells must be among rnn, gru, lstm, not transformer"),
    (["--distractors", "5,x"], "expected comma-separated whole numbers"),
    (["--clip", "0"], "lr and clip must be positive"),
])
def test_lab_mistakes_are_one_sentence(capsys, argv, message):
    try:
        code = main(["lab", "gradients", "--steps", "1", *argv])
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


# ---- running the lab: one run at a time, an estimate beforehand ----------------------------------------------
TINY = dict(cells=("gru",), length=12, distractors=(1, 4), steps=10)


def test_the_lab_reports_each_run_and_ends_with_run_labs_result():
    runs = list(lab_runs(LabConfig(**TINY)))
    assert [run.number for run, _ in runs] == [1, 2, 3, 4] and {run.total for run, _ in runs} == {4}
    assert [(run.distractors, run.clipped) for run, _ in runs] == [(1, True), (1, False), (4, True), (4, False)]
    assert runs[-1][1].to_json() == run_lab(LabConfig(**TINY)).to_json()


def test_closing_the_lab_after_some_runs_trains_no_more(monkeypatch):
    from genseq import lab

    trained = []
    monkeypatch.setattr(lab, "train_recall", lambda *args: trained.append(args) or train_recall(*args))
    runs = lab_runs(LabConfig(**TINY))
    (first, _), (second, result) = next(runs), next(runs)
    runs.close()
    assert next(runs, None) is None and len(trained) == 2
    assert result.recall == {"gru": {"clipped": {1: first.accuracy}, "unclipped": {1: second.accuracy}}}
    assert result.gradients == {}  # a cell's gradients come with its last run


def test_the_estimate_adds_up_each_runs_steps_at_its_length():
    config = LabConfig(cells=("rnn",), length=50, distractors=(9,), steps=100, batch_size=32, test_size=96)
    cost = StepCost(fixed=0.01, per_position=0.001)
    training = 2 * (100 + 96 / 32 / 3) * (0.01 + 0.001 * 10)  # clipped and not, each scoring 96 sequences
    measuring = 2 * 64 / 32 * (0.01 + 0.001 * 50)  # fresh and trained, 64 sequences of 50
    assert estimate_seconds(config, {"rnn": cost}) == pytest.approx(training + measuring)


@pytest.mark.parametrize("change", [dict(steps=200), dict(distractors=(9, 20)), dict(cells=("rnn", "lstm")),
                                    dict(length=500)])
def test_the_estimate_grows_with_every_setting_that_adds_work(change):
    costs = {cell: StepCost(fixed=0.002, per_position=0.0002) for cell in CELL_TYPES}
    base = dict(cells=("rnn",), length=50, distractors=(9,), steps=100)
    assert estimate_seconds(LabConfig(**{**base, **change}), costs) > estimate_seconds(LabConfig(**base), costs)


def test_doubling_the_steps_nearly_doubles_the_estimate():
    costs = {"gru": StepCost(fixed=0.003, per_position=0.0003)}
    once, twice = (estimate_seconds(LabConfig(**{**TINY, "steps": steps}), costs) for steps in (300, 600))
    assert 1.9 < twice / once <= 2


def test_measuring_a_steps_cost_leaves_the_random_state_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    cost = measure_step_cost("lstm", LabConfig(**TINY))
    assert torch.equal(torch.rand(3), expected)
    assert cost.fixed >= 0 and cost.per_position >= 0 and cost.seconds(10) > 0


@pytest.mark.parametrize("seconds,text", [(0.2, "1 s"), (42.4, "42 s"), (119, "119 s"), (121, "2 min"), (126, "2 min 10 s"),
                                          (3600, "60 min")])
def test_durations_read_as_people_say_them(seconds, text):
    assert duration_text(seconds) == text


def test_the_plots_draw_a_partial_result_and_leave_the_top_clear():
    from PIL import Image

    from genseq.figures import BADGE_MARGIN

    _, partial = next(lab_runs(LabConfig(**TINY)))  # one run: a recall point, no gradients yet
    picture = Image.open(io.BytesIO(lab_png(partial))).convert("L")
    clear = picture.crop((0, 0, picture.width, int(BADGE_MARGIN * 100)))  # drawn at 100 dpi
    assert picture.width >= 800 and clear.getextrema() == (255, 255)


def test_the_lab_command_shows_an_estimate_and_a_progress_bar_to_a_person(capsys, monkeypatch):
    from genseq.cli import lab as lab_command

    monkeypatch.setattr(lab_command, "interactive", lambda: True)
    assert main(["lab", "gradients", "--cells", "gru", "--length", "12", "--distractors", "2", "--steps", "5"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("about ") and "on this machine (2 training runs of 5 steps)" in err and "2/2" in err


# ---- the gradients task (the web app's gradients tab) ------------------------------------------
TASK = dict(cells=("gru",), length=12, longest=4, steps=10)


def test_the_gradients_task_runs_both_experiments_at_its_settings():
    from genseq_lab import GradientsTask

    result = GradientsTask().run({}, **TASK)
    assert result["picture"].width >= 800 and "Step 4 of 4" in result["progress"]
    assert [list(row) for row in result["recall"]] == [["cell", "clipping", "N = 1", "N = 4"]] * 2
    assert [row["clipping"] for row in result["recall"]] == ["clipped", "not clipped"]
    assert set(result["results"]["recall"]["gru"]["clipped"]) == {"1", "4"}
    assert len(result["results"]["gradients"]["gru"]["fresh"]) == 12


def test_the_gradients_task_streams_an_estimate_then_each_step_then_the_unstreamed_result():
    from genseq_lab import GradientsTask

    task = GradientsTask()
    partials = list(task.stream({}, **TASK, seed=3))
    first, steps, final = partials[0], partials[1:-1], partials[-1]
    assert "on this machine" in first["progress"] and "Step" not in first["progress"]
    assert {row["N = 4"] for row in first["recall"]} == {"…"}  # the table's shape before any run
    assert [partial["progress"].splitlines()[-1].split(":")[0] for partial in steps] == \
        ["Step 1 of 4", "Step 2 of 4", "Step 3 of 4"]
    assert all(partial["progress"].startswith(first["progress"]) for partial in partials)  # a log that grows
    assert "Finished in" in final["progress"] and final["picture"] is not None
    unstreamed = task.run({}, **TASK, seed=3)
    assert final["recall"] == unstreamed["recall"] and final["results"] == unstreamed["results"]


def test_stopping_the_gradients_task_after_a_step_ends_it_cleanly(monkeypatch):
    from genseq import lab
    from genseq_lab import GradientsTask

    trained = []
    monkeypatch.setattr(lab, "train_recall", lambda *args: trained.append(args) or train_recall(*args))
    partials = GradientsTask().stream({}, **TASK)
    next(partials), next(partials)  # the estimate, then the first step
    partials.close()
    assert next(partials, None) is None and len(trained) == 1


def test_the_gradients_task_offers_the_labs_cells_and_refuses_others():
    from genseq import ConfigError
    from genseq_lab import GradientsTask
    from genseq_lab.gradients import CELLS

    assert CELLS == CELL_TYPES
    with pytest.raises(ConfigError, match="option cells must be only items among rnn, gru, lstm, not"):
        GradientsTask.check_options({"cells": ("gru", "transformer")})


def test_generate_runs_the_gradients_task_which_takes_no_input(capsys):
    assert main(["generate", "--task", "gradients", "--cells", "rnn", "--length", "12", "--longest", "4",
                 "--steps", "10", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert set(document["gradients"]) == {"rnn"} and document["config"]["distractors"] == [1, 4]


def test_generate_prints_the_gradients_tasks_progress_and_its_table(capsys):
    assert main(["generate", "--task", "gradients", "--cells", "rnn", "--length", "12", "--longest", "4",
                 "--steps", "10"]) == 0
    out = capsys.readouterr().out
    assert "on this machine" in out and "Step 4 of 4" in out and "Finished in" in out
    assert "  cell  clipping     N = 1" in out and "  rnn   not clipped  " in out


def test_a_seed_the_lab_cannot_take_is_refused_in_one_sentence():
    from genseq import ConfigError
    from genseq_lab import GradientsTask

    with pytest.raises(ConfigError, match=r"^seed must be in \[0, 2\*\*32\), not 4294967296$"):
        GradientsTask().run({}, **TASK, seed=2**32)


def test_the_lab_runs_torch_on_one_thread_and_gives_the_threads_back():
    before = torch.get_num_threads()
    runs = lab_runs(LabConfig(**TINY))
    next(runs)
    during = torch.get_num_threads()
    runs.close()
    assert during == 1 and torch.get_num_threads() == before
