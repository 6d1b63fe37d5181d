"""The train and eval commands: JSON output and one clear sentence for each bad input."""

import json
import subprocess
import sys

import pytest
from cli_helpers import run_cli


def tiny_train_args(data, out, *extra):
    return ["train", "completion", "--data", data, "--out", out, "--vocab-size", "400", "--hidden-size", "16",
            "--embedding-size", "16", "--batch-size", "4", "--bptt", "8", "--max-steps", "10",
            "--warmup-steps", "2", "--no-progress", "--fixed-defaults", *extra]


def test_eval_json_prints_the_documented_metrics(capsys, trained_run, valid_file):
    code, out, _ = run_cli(capsys, "eval", "completion", "--model", trained_run, "--data", valid_file, "--json")
    assert code == 0
    metrics = json.loads(out)
    assert set(metrics) == {"tokens", "words", "bytes", "nll", "token_perplexity", "word_perplexity", "bits_per_byte"}
    text = valid_file.read_text()
    assert metrics["words"] == len(text.split()) and metrics["bytes"] == len(text.encode())
    assert metrics["word_perplexity"] == pytest.approx(2.718281828 ** (metrics["nll"] / metrics["words"]), rel=1e-6)
    assert metrics["bits_per_byte"] == pytest.approx(metrics["nll"] / (0.693147181 * metrics["bytes"]), rel=1e-6)


def test_evaluation_carries_the_state_across_windows(trained_run, valid_file):
    from genseq import from_pretrained
    from genseq.data import open_source, tokenize
    from genseq.evaluate import evaluate

    model, tokenizer = from_pretrained(trained_run)
    stream = tokenize(open_source(str(valid_file)), tokenizer)
    assert evaluate(model, stream, window=7)["nll"] == pytest.approx(evaluate(model, stream, window=4096)["nll"], rel=1e-5)


def write(path, data):
    path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
    return path


BAD_TRAIN_INPUTS = {
    "missing path": (lambda t: t / "nope.txt", "nope.txt does not exist"),
    "empty corpus": (lambda t: write(t / "empty.txt", ""), "found no text"),
    "binary file": (lambda t: write(t / "x.bin", bytes(range(256)) * 4), "is a binary file, not text"),
    "non-UTF-8 bytes": (lambda t: write(t / "latin.txt", "naïve café\n".encode("latin-1") * 50), "is not UTF-8 text"),
}


@pytest.mark.parametrize("case", BAD_TRAIN_INPUTS)
def test_bad_training_data_gives_one_clear_sentence(capsys, tmp_path, case):
    make, message = BAD_TRAIN_INPUTS[case]
    code, _, err = run_cli(capsys, *tiny_train_args(make(tmp_path), tmp_path / "out"))
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_corpus_smaller_than_one_batch(capsys, tmp_path, train_file):
    small = write(tmp_path / "small.txt", train_file.read_text()[:3000])
    code, _, err = run_cli(capsys, *tiny_train_args(small, tmp_path / "out", "--batch-size", "5000"))
    assert code == 2 and "the training data has" in err and "too few for a batch of 5000 rows" in err


def test_vocab_size_larger_than_the_corpus_supports(capsys, tmp_path, train_file):
    code, _, err = run_cli(capsys, *tiny_train_args(train_file, tmp_path / "out"), "--vocab-size", "60000")
    assert code == 2 and "larger than this corpus supports; use at most" in err


def test_unwritable_output_directory(capsys, tmp_path, train_file):
    blocker = write(tmp_path / "a-file", "")
    code, _, err = run_cli(capsys, *tiny_train_args(train_file, blocker / "out"))
    assert code == 2 and "cannot write" in err


@pytest.mark.parametrize("extra,message", [
    (["--tie-weights", "--hidden-size", "24"], "tied weights need"),
    (["--max-steps", "5", "--warmup-steps", "50"], "warmup_steps (50) must be fewer than max_steps (5)"),
    (["--dropout", "1.5"], "--dropout: must be at least 0 and below 1, not 1.5"),
    (["--embedding-dropout", "0.5", "--layer-dropout", "0.2", "--output-dropout", "1"], "--output-dropout: must be"),
])
def test_inconsistent_options(capsys, tmp_path, train_file, extra, message):
    code, _, err = run_cli(capsys, *tiny_train_args(train_file, tmp_path / "out"), *extra)
    assert code == 2 and message in err


def test_existing_run_is_never_overwritten_and_resume_refuses_new_model_options(capsys, trained_run, train_file):
    before = (trained_run / "model.safetensors").read_bytes()
    code, _, err = run_cli(capsys, *tiny_train_args(train_file, trained_run))
    assert code == 2 and "already holds a training run" in err
    code, _, err = run_cli(capsys, "train", "completion", "--data", train_file, "--resume", trained_run, "--hidden-size", "64")
    assert code == 2 and "cannot change when resuming" in err
    assert (trained_run / "model.safetensors").read_bytes() == before


def test_resume_continues_a_finished_run_to_a_larger_budget_with_its_own_options(capsys, tmp_path, train_file, valid_file):
    out = tmp_path / "run"
    assert run_cli(capsys, *tiny_train_args(train_file, out, "--valid", valid_file, "--lr", "0.01"))[0] == 0
    code, _, err = run_cli(capsys, "train", "completion", "--data", train_file, "--valid", valid_file, "--resume", out,
                           "--max-steps", "14", "--no-progress")
    assert code == 0, err
    state = json.loads((out / "last" / "training_state.json").read_text())
    assert state["progress"]["step"] == 14
    options = json.loads((out / "last" / "config.json").read_text())["training_config"]
    assert (options["batch_size"], options["bptt"], options["lr"], options["max_steps"]) == (4, 8, 0.01, 14)
    code, _, err = run_cli(capsys, "train", "completion", "--data", train_file, "--valid", valid_file, "--resume", out,
                           "--max-steps", "20", "--bptt", "16", "--no-progress")
    assert code == 2 and "--bptt cannot change when resuming: the run was started with 8" in err


def test_console_script_reports_errors_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "genseq", "eval", "completion", "--model", str(tmp_path), "--data", "x.txt"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("genseq: error: ") and "Traceback" not in result.stderr


def test_train_completion_with_a_char_tokenizer_trains_one_piece_per_character(capsys, tmp_path, train_file):
    from genseq import Tokenizer

    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *tiny_train_args(train_file, out, "--tokenizer-type", "char", "--vocab-size", "8000"))
    assert code == 0, err
    tokenizer = Tokenizer.load(out / "tokenizer.model")
    assert tokenizer.vocab_size < 400
    assert [tokenizer.id_to_piece(i) for i in tokenizer.encode("thee")] == ["▁", "t", "h", "e", "e"]
    assert run_cli(capsys, "generate", "--model", out, "--prompt", "thee", "--max-new-tokens", "3", "--seed", "0")[0] == 0


def test_the_language_model_is_trained_and_evaluated_as_the_completion_task(capsys):
    for command in ("train", "eval"):
        code, out, _ = run_cli(capsys, command, "--help")
        assert code == 0 and "completion" in out and " lm " not in out
        code, _, err = run_cli(capsys, command, "lm")
        assert code == 2 and "invalid choice: 'lm'" in err


def test_train_help_lists_only_tasks_and_builds_no_task_flags(capsys):
    code, out, _ = run_cli(capsys, "train", "--help")
    assert code == 0 and "captioning" in out and "sentiment" in out and "--vocab-size" not in out


def test_resuming_a_run_whose_saved_config_never_ends_is_refused_without_reading_it(tmp_path, trained_run, train_file):
    import os
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "last" / "config.json").unlink()
    os.mkfifo(run / "last" / "config.json")  # opening it to read would wait for a writer forever
    result = subprocess.run([sys.executable, "-m", "genseq", "train", "completion", "--data", str(train_file),
                             "--resume", str(run), "--no-progress"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("genseq: error: ") and result.stderr.count("\n") == 1


def test_resuming_a_run_whose_saved_training_options_are_not_a_table_is_one_sentence(capsys, tmp_path, trained_run,
                                                                                      train_file):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    config = run / "last" / "config.json"
    config.write_text(config.read_text().replace('"training_config": {', '"training_config": [1], "was": {', 1))
    code, _, err = run_cli(capsys, "train", "completion", "--data", train_file, "--resume", run, "--no-progress")
    assert code == 2 and err.startswith("genseq: error: ") and err.count("\n") == 1
