"""The command line under bad input: each case was a traceback, a wrong message or work done before a refusal."""

import os
import subprocess
import sys

import pytest
import torch
from cli_helpers import run_cli

from genseq import LanguageModel, ModelConfig
from genseq.errors import ConfigError

HUGE_SEED = str(2**64 + 1)


def assert_one_sentence(code, err, *fragments):
    assert code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err


def train_args(train_file, out, *extra):
    return ["train", "completion", "--data", train_file, "--out", out, "--vocab-size", "400", "--hidden-size", "16",
            "--embedding-size", "16", "--batch-size", "4", "--bptt", "8", "--max-steps", "10", "--no-progress",
            "--fixed-defaults", *extra]


class Reached(Exception):
    """Raised by a stand-in for work that a refused command must never start."""


@pytest.fixture
def no_work(monkeypatch):
    """Training any tokenizer or reading any corpus raises Reached: a check must come before it."""
    from genseq import data
    from genseq.tokenizer import Tokenizer

    def reached(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(Tokenizer, "train", reached)
    monkeypatch.setattr(data, "open_source", reached)


# ---- tracebacks that were ---------------------------------------------------------------
def test_prompt_from_a_closed_stdin_is_one_sentence():
    result = subprocess.run([sys.executable, "-m", "genseq", "generate", "--prompt", "-"], capture_output=True,
                            text=True, preexec_fn=lambda: os.close(0), timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr == "genseq: error: --prompt - reads standard input, but standard input is closed\n"


def test_prompt_from_a_closed_stdin_in_process(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", None)
    assert_one_sentence(*run_cli(capsys, "generate", "--prompt", "-")[::2], "standard input is closed")


@pytest.mark.parametrize("command", [
    ["eval", "completion", "--model", "m", "--data", "d"], ["generate", "--prompt", "x"], ["train", "completion", "--data", "d", "--out", "o"],
])
def test_an_unknown_device_is_refused_by_name(capsys, command):
    code, _, err = run_cli(capsys, *command, "--device", "tpu")
    assert_one_sentence(code, err, "--device: must be auto, cpu, cuda or cuda:N, not 'tpu'")


@pytest.mark.parametrize("command", [
    ["train", "completion", "--data", "d", "--out", "o"], ["lab", "gradients"], ["train", "sentiment", "--data", "d", "--valid", "v"],
    ["train", "captioning", "--data", "d"], ["generate", "--prompt", "x"],
])
def test_a_seed_beyond_what_torch_takes_is_refused_at_parse_time(capsys, command):
    code, _, err = run_cli(capsys, *command, "--seed", HUGE_SEED)
    assert_one_sentence(code, err, "seed", "must be", HUGE_SEED)


@pytest.mark.parametrize("port,message", [
    ("-1", "must be at least 1, not -1"), ("99999", "must be at most 65535, not 99999"), ("http", "expected a whole number"),
])
def test_serve_port_out_of_range_is_refused(capsys, port, message):
    code, _, err = run_cli(capsys, "serve", "--port", port)
    assert_one_sentence(code, err, f"--port: {message}")


def test_serve_refuses_an_empty_host(capsys):
    assert_one_sentence(*run_cli(capsys, "serve", "--host", "")[::2], "--host: expected a host name or address")


def test_serve_refuses_a_host_name_the_resolver_cannot_encode(capsys):
    assert_one_sentence(*run_cli(capsys, "serve", "--host", "\U0001F600" * 70)[::2], "--host: expected a host name")


@pytest.mark.parametrize("command,flag", [
    (["eval", "completion", "--model", "m"], "--data"),
    (["train", "completion", "--data", "d"], "--out"),
    (["generate", "--prompt", "x"], "--model"),
    (["inspect", "--prompt", "x"], "--model"),
])
@pytest.mark.parametrize("too_long", ["a" * 90_000, "a/" + "b" * 300])
def test_a_path_longer_than_the_system_takes_is_refused_naming_the_flag(capsys, command, flag, too_long):
    code, _, err = run_cli(capsys, *command, flag, too_long)
    assert_one_sentence(code, err, f"{flag}: ", "is longer than a path may be")
    assert len(err) < 300


def test_unreadable_encoder_weights_are_one_short_sentence(tmp_path, capsys):
    from genseq_captioning.encoder import read_state_dict

    from genseq.errors import CheckpointError

    weights = tmp_path / "encoder.pth"
    weights.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError) as caught:
        read_state_dict(str(weights))
    message = str(caught.value)
    assert "\n" not in message and "weights_only" not in message and len(message) < 400
    assert message.startswith(f"cannot read encoder weights {weights}: it is not a safetensors or weights-only torch file")


@pytest.mark.parametrize("command,flag", [
    (["train", "completion", "--data", "d", "--out", "o"], "--lr"),
    (["train", "completion", "--data", "d", "--out", "o"], "--clip-grad-norm"),
    (["train", "completion", "--data", "d", "--out", "o"], "--dropout"),
    (["train", "completion", "--data", "d", "--out", "o"], "--weight-decay"),
    (["train", "completion", "--data", "d", "--out", "o"], "--checkpoint-minutes"),
    (["train", "sentiment", "--data", "d", "--valid", "v"], "--lr"),
    (["train", "captioning", "--data", "d"], "--attention-regularization"),
    (["lab", "gradients"], "--clip"),
])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_are_refused_naming_the_flag(capsys, command, flag, value):
    code, _, err = run_cli(capsys, *command, f"{flag}={value}")
    assert_one_sentence(code, err, f"argument {flag}: must be a finite number, not '{value}'")


@pytest.mark.parametrize("flag", ["--temperature", "--top-p", "--max-time", "--length-penalty"])
def test_non_finite_generation_options_are_refused_before_a_model_loads(capsys, flag):
    code, _, err = run_cli(capsys, "generate", "--prompt", "x", "--model", "/nonexistent", flag, "nan")
    assert_one_sentence(code, err, f"{flag} must be a finite number, not 'nan'")


@pytest.mark.parametrize("argv,message", [
    (["train", "completion", "--data", "d", "--out", "o", "--hidden-size", "1e9"], "--hidden-size: expected a whole number, not '1e9'"),
    (["lab", "gradients", "--length", "1e11"], "--length: expected a whole number, not '1e11'"),
    (["train", "completion", "--data", "d", "--out", "o", "--batch-size", "9" * 5000], "--batch-size: must be at most"),
    (["generate", "--prompt", "x", "--max-new-tokens", "1e9"], "--max-new-tokens must be a whole number, not '1e9'"),
    (["train", "completion", "--data", "d", "--out", "o", "--max-time", "9" * 400], "--max-time: expected a positive duration"),
])
def test_integers_written_as_floats_or_thousands_of_digits_get_a_clear_message(capsys, argv, message):
    code, _, err = run_cli(capsys, *argv)
    assert_one_sentence(code, err, message)
    assert len(err) < 300


# ---- sizes beyond memory, refused before allocating -------------------------------------
@pytest.mark.parametrize("extra,message", [
    (["--hidden-size", "1000000000"], "training a 2 x 1000000000 lstm"),
    (["--layers", "1000000"], "training a 1000000 x 16 lstm"),
    (["--bptt", "1000000000000"], "on batches of 4 x 1000000000000"),
    (["--embedding-size", "10000000000"], "embedding size 10000000000"),
])
def test_training_sizes_beyond_memory_are_refused_before_any_work(capsys, tmp_path, train_file, no_work, extra, message):
    code, _, err = run_cli(capsys, *train_args(train_file, tmp_path / "out", *extra))
    assert_one_sentence(code, err, message, "needs at least", "of memory but this machine has", "use smaller")


def test_lab_length_beyond_memory_is_refused_before_the_lab_runs(capsys):
    code, _, err = run_cli(capsys, "lab", "gradients", "--length", str(10**11))
    assert_one_sentence(code, err, "the lab with hidden size 32, length 100000000000", "needs at least")


@pytest.mark.parametrize("command,extra", [
    (["train", "sentiment", "--data", "d", "--valid", "v"], ["--hidden-size", "100000000"]),
    (["train", "captioning", "--data", "d"], ["--image-size", "1024", "--batch-size", "1000000"]),  # sizes in range
])
def test_plugin_training_sizes_beyond_memory_are_refused_before_data_is_read(capsys, tmp_path, command, extra):
    code, _, err = run_cli(capsys, *command, "--out", tmp_path / "out", *extra)  # the data "d" does not exist
    assert_one_sentence(code, err, "needs at least", "of memory")


def test_the_estimate_is_compared_with_the_memory_available(monkeypatch):
    from genseq import memory

    config = ModelConfig(vocab_size=400, embedding_size=16, hidden_size=16)
    needed = memory.language_model_training_bytes(config, 4, 8)
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: needed)
    memory.check_language_model_training(config, 4, 8)
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: needed - 1)
    with pytest.raises(ConfigError, match="needs at least .* but this machine has"):
        memory.check_language_model_training(config, 4, 8)


def test_memory_available_is_read_from_the_system():
    available = __import__("genseq.memory").memory.available_bytes()
    assert available is None or available > 0


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("tie_weights,projection_size", [(False, 0), (False, 12), (True, 20)])
def test_the_parameter_count_is_the_models_own(cell, tie_weights, projection_size):
    from genseq.memory import language_model_parameters

    config = ModelConfig(vocab_size=50, cell=cell, embedding_size=20, hidden_size=24, num_layers=3,
                         projection_size=projection_size, tie_weights=tie_weights)
    assert language_model_parameters(config) == sum(p.numel() for p in LanguageModel(config).parameters())


def test_the_default_model_is_not_refused_on_a_machine_of_a_few_gigabytes(monkeypatch):
    from genseq import memory
    from genseq.train import TrainConfig

    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 2 << 30)
    memory.check_language_model_training(ModelConfig(), TrainConfig.batch_size, TrainConfig.bptt)


# ---- failures wrapped rather than diagnosed ---------------------------------------------
def raise_(error):
    def call(*args, **kwargs):
        raise error
    return call


def test_an_allocator_failure_inside_a_task_names_the_task_and_the_problem():
    from genseq.plugins import PluginError, run_guarded

    dump = RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried "
                        "to allocate 21474836480 bytes.\nframe #0: c10::...\nframe #1: at::...")
    with pytest.raises(PluginError) as caught:
        run_guarded("completion", "genseq", raise_(dump))
    message = str(caught.value)
    assert "task completion needs more memory than this machine has" in message and "try a shorter input" in message
    assert "\n" not in message and "frame" not in message


def test_other_task_failures_stay_one_line():
    from genseq.plugins import PluginError, run_guarded

    with pytest.raises(PluginError) as caught:
        run_guarded("completion", "genseq", raise_(ValueError("first line\nsecond line\nthird")))
    assert str(caught.value) == "task completion (genseq) failed: ValueError: first line"


def test_running_out_of_memory_in_a_built_in_command_is_one_sentence(capsys, tmp_path, train_file, monkeypatch):
    from genseq import train

    monkeypatch.setattr(train, "train_language_model", raise_(MemoryError()))
    code, _, err = run_cli(capsys, *train_args(train_file, tmp_path / "out"))
    assert_one_sentence(code, err, "genseq train completion needs more memory than this machine has", "try smaller sizes")


def test_a_bug_that_is_not_about_memory_is_not_reported_as_one(capsys, tmp_path, train_file, monkeypatch):
    from genseq import train

    monkeypatch.setattr(train, "train_language_model", raise_(RuntimeError("a genseq bug")))
    code, _, err = run_cli(capsys, *train_args(train_file, tmp_path / "out"))
    assert_one_sentence(code, err, "task completion (genseq) failed: RuntimeError: a genseq bug")
    assert "memory" not in err


# ---- generate: refusals instead of silently doing something else ------------------------
@pytest.mark.parametrize("extra,message", [
    (["--stream", "--num-beams", "2"], "--stream cannot show task completion's text as it grows: beam search (num_beams 2)"),
    (["--stream", "--num-return-sequences", "2"], "it streams one sequence, not num_return_sequences 2"),
    (["--suggest", "3", "--num-beams", "2"], "option suggest ranks the next words and ignores num_beams"),
    (["--min-new-tokens", "9", "--max-new-tokens", "5"], "option min_new_tokens (9) must not exceed max_new_tokens (5)"),
])
def test_generate_refuses_what_it_would_silently_ignore(capsys, untrained_checkpoint, extra, message):
    code, out, err = run_cli(capsys, "generate", "--prompt", "Hello", "--model", untrained_checkpoint, *extra)
    assert_one_sentence(code, err, message)
    assert out == ""  # the prompt is not echoed before the options are checked


def test_min_new_tokens_above_the_cap_is_kept_within_it(capsys, untrained_checkpoint):
    code, out, err = run_cli(capsys, "generate", "--prompt", "Hello", "--model", untrained_checkpoint, "--max-new-tokens", "20000",
                             "--min-new-tokens", "15000", "--max-time", "0.05", "--json")
    assert code == 0 and "capped at 10000" in err


def test_beam_search_without_stream_still_prints_its_text(capsys, untrained_checkpoint):
    code, out, _ = run_cli(capsys, "generate", "--prompt", "Hello", "--model", untrained_checkpoint, "--num-beams", "2",
                           "--max-new-tokens", "3")
    assert code == 0 and out.startswith("Hello")


def test_a_missing_model_is_reported_before_the_prompt_is_echoed(capsys):
    code, out, err = run_cli(capsys, "generate", "--prompt", "Hello", "--model", "/nonexistent/model", "--stream")
    assert out == "" and "is not a checkpoint directory" in err and code == 2


def test_an_error_after_streaming_started_gets_its_own_line(capsys, untrained_checkpoint, monkeypatch):
    from genseq_completion.task import CompletionTask

    def breaks_midway(self, loaded, inputs, options):
        yield {"text": " world"}
        raise ConfigError("the stream broke")

    monkeypatch.setattr(CompletionTask, "predict_stream", breaks_midway)
    code, out, err = run_cli(capsys, "generate", "--prompt", "Hello", "--model", untrained_checkpoint, "--stream")
    assert code == 2 and out == "Hello world\n" and err == "genseq: error: the stream broke\n"


# ---- every option checked before any work -----------------------------------------------
@pytest.mark.parametrize("extra,message", [
    (["--dropout", "1"], "--dropout: must be at least 0 and below 1, not 1"),
    (["--tie-weights", "--embedding-size", "16", "--hidden-size", "24"], "tied weights need the output layer's input (24)"),
    (["--max-steps", "5", "--warmup-steps", "5"], "warmup_steps (5) must be fewer than max_steps (5)"),
    (["--vocab-size", "400", "--batch-size", "0"], "--batch-size: must be at least 1, not 0"),
])
def test_train_completion_checks_every_option_before_reading_the_corpus(capsys, tmp_path, train_file, no_work, extra, message):
    code, _, err = run_cli(capsys, *train_args(train_file, tmp_path / "out", *extra))
    assert_one_sentence(code, err, message)


def test_train_completion_refuses_a_file_as_its_run_directory_before_reading_the_corpus(capsys, tmp_path, train_file, no_work):
    (tmp_path / "a-file").write_text("")
    code, _, err = run_cli(capsys, *train_args(train_file, tmp_path / "a-file"))
    assert_one_sentence(code, err, f"cannot write {tmp_path / 'a-file'}: it is a file; choose another --out")


@pytest.mark.parametrize("command,extra,message", [
    (["train", "sentiment", "--data", "d", "--valid", "v"], ["--hidden-size", "0"], "--hidden-size: must be at least 1"),
    (["train", "sentiment", "--data", "d", "--valid", "v"], ["--cell", "gru", "--dropout", "1"], "--dropout: must be at least 0"),
    (["train", "captioning", "--data", "d"], ["--image-size", "16"], "image_size must be at least 32 pixels, not 16"),
    (["train", "captioning", "--data", "d"], ["--encoder", "resnet18", "--encoder-weights", "default"],
     "--encoder-weights default holds efficientnet_lite0 weights, not resnet18"),
])
def test_plugin_trainers_check_their_options_before_reading_data(capsys, tmp_path, command, extra, message):
    code, _, err = run_cli(capsys, *command, "--out", tmp_path / "out", *extra)  # the data "d" does not exist
    assert_one_sentence(code, err, message)


@pytest.mark.parametrize("command", [["train", "sentiment", "--data", "d", "--valid", "v"], ["train", "captioning", "--data", "d"]])
def test_plugin_trainers_refuse_a_file_as_run_directory_before_reading_data(capsys, tmp_path, command):
    (tmp_path / "a-file").write_text("")
    code, _, err = run_cli(capsys, *command, "--out", tmp_path / "a-file")
    assert_one_sentence(code, err, "it is a file; choose another --out")


def test_a_short_run_without_warmup_steps_gets_a_warmup_that_fits(capsys, tmp_path, train_file, monkeypatch):
    from genseq import train

    seen = {}

    def record(*args, train_config, **kwargs):
        seen["config"] = train_config
        raise Reached

    monkeypatch.setattr(train, "train_language_model", record)
    assert run_cli(capsys, *train_args(train_file, tmp_path / "out", "--max-steps", "20"))[0] == 2  # Reached
    assert seen["config"].warmup_steps == 2 and seen["config"].max_steps == 20
    assert run_cli(capsys, *train_args(train_file, tmp_path / "out", "--max-steps", "5000"))[0] == 2
    assert seen["config"].warmup_steps == train.TrainConfig.warmup_steps


# ---- messages that fit the command -------------------------------------------------------
@pytest.mark.parametrize("target", ["directory", "missing parent"])
def test_lab_out_is_checked_before_the_lab_runs_and_says_nothing_of_checkpoints(capsys, tmp_path, monkeypatch, target):
    from genseq import lab

    monkeypatch.setattr(lab, "run_lab", raise_(Reached()))
    out = tmp_path if target == "directory" else tmp_path / "missing" / "plot.png"
    code, _, err = run_cli(capsys, "lab", "gradients", "--out", out)
    assert_one_sentence(code, err, f"cannot write {out}")
    assert "checkpoint" not in err


def test_inspect_out_a_directory_says_nothing_of_checkpoints(capsys, untrained_checkpoint, tmp_path):
    code, _, err = run_cli(capsys, "inspect", "--model", untrained_checkpoint, "--prompt", "Hello", "--out", tmp_path)
    assert_one_sentence(code, err, f"cannot write {tmp_path}: it is a directory; choose another --out")
    assert "checkpoint" not in err


def test_a_picture_that_cannot_be_written_says_so_without_checkpoints(tmp_path):
    from genseq.checkpoint import atomic_write
    from genseq.errors import GenseqError

    with pytest.raises(GenseqError) as caught:
        atomic_write(tmp_path / "missing" / "plot.png", b"png", what=None)
    assert "checkpoint" not in str(caught.value) and "cannot write" in str(caught.value)


def test_a_percent_sign_in_a_tasks_help_does_not_break_help(capsys):
    import argparse

    from genseq.cli.task_args import add_generate_flags
    from genseq.tasks import Input, Option, Output, Task

    class Percent(Task):
        name = "percent"
        inputs = (Input("text", "text", "100% of the text"),)
        outputs = (Output("text", "text"),)
        options = (Option("share", 0.5, "+0.3% perplexity", minimum=0.0),)

    parser = argparse.ArgumentParser(prog="x")
    add_generate_flags(parser, Percent)
    assert "+0.3% perplexity" in parser.format_help() and "100% of the text" in parser.format_help()


def test_a_cuda_index_this_machine_lacks_is_refused_at_parse_time(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    code, _, err = run_cli(capsys, "eval", "completion", "--model", "m", "--data", "d", "--device", "cuda:2")
    assert_one_sentence(code, err, "this machine has 2 CUDA GPUs, numbered from 0; cuda:2 is not one")


def test_training_on_cuda_is_compared_with_the_gpus_free_memory(monkeypatch):
    from genseq import memory

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (12345, 99999))
    assert memory.available_bytes("cuda:0") == 12345
    with pytest.raises(ConfigError, match="needs at least"):
        memory.check_language_model_training(ModelConfig(vocab_size=400, embedding_size=16, hidden_size=16), 4, 8, "cuda:0")


@pytest.mark.parametrize("argv", [
    ["tasks", "--json", "a\nb\n" * 5000],  # argparse quotes the unrecognised argument
    ["eval", "completion", "--model", "x\ny\x01", "--data", "d"],  # a GenseqError quotes the path
])
def test_an_error_quoting_control_characters_or_huge_input_stays_one_short_line(capsys, argv):
    code, _, err = run_cli(capsys, *argv)
    assert_one_sentence(code, err)
    assert len(err) < 1200 and "\\n" in err
