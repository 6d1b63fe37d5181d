"""The gradients lab: its recall data, its gradient norms against a hand computation, and `genseq lab gradients`."""

import json
import math

import pytest
import torch

from genseq.cli import main
from genseq.lab import LabConfig, RecallModel, gradient_norms, recall_batch, run_lab, train_recall


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


# ---- the gradients task (the web app's gradients tab) ------------------------------------------
def test_the_gradients_task_runs_both_experiments_at_its_settings():
    from genseq_lab import GradientsTask

    result = GradientsTask().run({}, cells=("gru",), length=12, longest=4, steps=10)
    assert result["picture"].width > 800 and "| gru |" in result["summary"] and "N = 1" in result["summary"]
    assert set(result["results"]["recall"]["gru"]["clipped"]) == {"1", "4"}
    assert len(result["results"]["gradients"]["gru"]["fresh"]) == 12


def test_the_gradients_task_offers_the_labs_cells_and_refuses_others():
    from genseq import ConfigError
    from genseq.lab import CELL_TYPES
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
