"""The wordgen task as genseq's front ends use it (genseq.testing), and its train and eval commands.

Run with the plugin installed (`pip install -e .`), so that genseq finds it
through its entry point as it would for a user.
"""

from __future__ import annotations

import json

import pytest
from genseq.cli import main
from genseq.testing import CHECKS, TaskChecker

from genseq_wordgen import WordgenTask

INPUTS = [{"prefix": "th"}, {"prefix": "qu"}]
checker = TaskChecker(WordgenTask, inputs=INPUTS, options={"seed": 0, "max_letters": 8})


@pytest.mark.parametrize("check", CHECKS)
def test_the_shipped_model_passes_genseq_checks(check):
    checker.check(check)


def test_the_same_seed_invents_the_same_word():
    task = WordgenTask()
    assert task.run({"prefix": "st"}, seed=7) == task.run({"prefix": "st"}, seed=7)


def test_temperature_zero_takes_the_likeliest_letter_each_time():
    task = WordgenTask()
    result = task.run({"prefix": "th"}, temperature=0.0, max_letters=1)
    likeliest = result["next_letters"][0]["label"]
    assert result["word"] == ("" if likeliest == "(end)" else likeliest)


def test_a_prefix_of_two_words_is_an_error_of_its_item_only():
    results = WordgenTask().run_batch([{"prefix": "two words"}, {"prefix": "a"}], seed=0)
    assert results[0] == {"error": "the prefix 'two words' is more than one word; give the first letters of one word"}
    assert "word" in results[1]


def test_genseq_is_the_plugin_command_line(capsys):
    assert main(["generate", "--task", "wordgen", "--prefix", "th", "--seed", "1", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"word", "next_letters"}


def words(tmp_path) -> str:
    text = tmp_path / "words.txt"
    text.write_text("the thin thing thought that there then these three throw\n" * 20)
    return str(text)


def test_train_then_eval_a_model(tmp_path, capsys):
    text = words(tmp_path)
    out = tmp_path / "run"
    assert main(["train", "wordgen", "--data", text, "--valid", text, "--out", str(out), "--epochs", "10",
                 "--lr", "0.05", "--device", "cpu", "--no-progress"]) == 0
    assert (out / "model.safetensors").is_file() and (out / "last").is_dir()
    assert main(["eval", "wordgen", "--model", str(out), "--data", text, "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["words"] == 200 and metrics["perplexity"] < 3  # ten words, learnt by heart
    assert WordgenTask(model=str(out)).run({"prefix": "th"}, temperature=0.0)["word"]


def test_a_resumed_run_continues_from_its_last_step(tmp_path):
    text, out = words(tmp_path), str(tmp_path / "run")
    common = ["--data", text, "--valid", text, "--device", "cpu", "--no-progress"]
    assert main(["train", "wordgen", *common, "--out", out, "--max-steps", "3"]) == 0
    assert main(["train", "wordgen", *common, "--resume", out, "--max-steps", "6"]) == 0
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps[0] == 1 and max(steps) == 6
