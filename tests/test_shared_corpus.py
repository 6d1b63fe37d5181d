"""`genseq train completion` and `genseq eval completion` on the real Shakespeare corpus of ../shared/data (skipped without it)."""

import json

from genseq.cli import main

from conftest import shared_data


def test_train_and_eval_on_shakespeare(tmp_path, capsys):
    corpus = shared_data("text", "shakespeare")
    out = tmp_path / "run"
    code = main(["train", "completion", "--data", str(corpus / "train"), "--valid", str(corpus / "valid"), "--out", str(out),
                 "--vocab-size", "2000", "--embedding-size", "32", "--hidden-size", "32", "--batch-size", "16",
                 "--bptt", "32", "--max-steps", "30", "--warmup-steps", "5"])
    assert code == 0
    err = capsys.readouterr().err
    assert "30/30" in err and "tok/s" in err  # the progress bar
    assert main(["eval", "completion", "--model", str(out), "--data", str(corpus / "valid"), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["words"] == 43314 and 1 < metrics["bits_per_byte"] < 8
