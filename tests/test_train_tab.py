"""Training from the browser: genseq.jobs (a job's process, progress, stop, one at a time, a restart), the task's
declaration, upload checks, the loopback rule, and the Train tab's endpoints through gradio_client.

Jobs train the tiny recipe below (a character model of 32 units, a few seconds); the completion task's own
from-scratch recipe is trained for two seconds once, in process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import pytest

from genseq.errors import ConfigError, DataError
from genseq.jobs import (
    JOB_FILE,
    JobManager,
    held_out,
    is_loopback,
    read_job,
    read_text_upload,
    run_name,
)
from genseq.plugins import TaskInfo, discover

TINY = ("--tokenizer-type", "char", "--vocab-size", "300", "--embedding-size", "16", "--hidden-size", "32",
        "--layers", "1", "--batch-size", "8", "--bptt", "16", "--eval-every", "5", "--warmup-steps", "2",
        "--epochs", "1000", "--patience", "0", "--precision", "fp32", "--device", "cpu", "--no-progress")
WAIT = 120  # seconds a job may take to get somewhere on two busy cores (starting Python and torch takes seconds)


def declared_training():
    """The completion task's own declaration."""
    return next(info for info in discover() if info.name == "completion").task_class.text_training


def completion_info(max_steps: int | None = None) -> TaskInfo:
    """The completion task, its from-scratch start replaced by TINY (ended after max_steps when given)."""
    info = next(info for info in discover() if info.name == "completion")
    declared = info.task_class.text_training
    steps = ("--max-steps", str(max_steps)) if max_steps else ()
    tiny = type("TinyTraining", (info.task_class,), {
        "text_training": dataclasses.replace(declared, starts={"from scratch": TINY + steps})})
    return dataclasses.replace(info, task_class=tiny)


def tiny_command(train: str, valid: str, out: str, extra: tuple = ()) -> list[str]:
    return ["train", "completion", "--data", train, "--valid", valid, "--out", out, "--max-time", "120", *TINY, *extra]


def wait_for(read, condition, seconds: float = WAIT):
    """read() until condition(value) holds; the last value read."""
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if condition(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


@pytest.fixture(scope="module")
def text(train_file) -> str:
    return train_file.read_text(encoding="utf-8")


# ---- genseq.jobs ----------------------------------------------------------------------------------------------
def test_a_job_trains_apart_survives_a_restart_refuses_a_second_and_stops_with_a_checkpoint(tmp_path, text):
    manager = JobManager(tmp_path)
    job = manager.start("My Sonnets!", [text], tiny_command, budget=120)
    assert job.name == "my-sonnets" and job.status in ("queued", "running")
    job = wait_for(manager.current, lambda job: len(job.valid) >= 2 or not job.active)
    assert job.status == "running" and job.step >= 5 and job.train and job.has_model, job
    with pytest.raises(ConfigError, match="training job my-sonnets is still running; stop it or wait"):
        manager.start("another", [text], tiny_command, budget=60)
    assert not (tmp_path / "another").exists()
    restarted = JobManager(tmp_path).current()  # a new server finds the job by its files
    assert restarted.name == "my-sonnets" and restarted.status == "running" and restarted.pid == job.pid
    assert 0 < restarted.fraction < 1 and restarted.step >= job.step
    assert JobManager(tmp_path).stop().status == "stopping"
    ended = wait_for(manager.current, lambda job: not job.active)
    assert ended.status == "stopped" and ended.error == "" and ended.has_model
    assert (tmp_path / "my-sonnets" / "last" / "model.safetensors").exists()
    from genseq import from_pretrained

    _, tokenizer = from_pretrained(str(tmp_path / "my-sonnets"))
    assert tokenizer.vocab_size <= 300
    with pytest.raises(ConfigError, match="no training job is running, so there is nothing to stop"):
        manager.stop()


def test_a_failing_command_ends_the_job_failed_with_its_own_sentence(tmp_path, text):
    manager = JobManager(tmp_path)
    manager.start("bad", [text], lambda *paths: tiny_command(*paths, extra=("--vocab-size", "10")), budget=60)
    job = wait_for(manager.current, lambda job: not job.active)
    assert job.status == "failed" and not job.has_model
    assert job.error.startswith("vocab_size must be at least 261"), job.error


def test_a_running_job_whose_process_is_gone_reads_as_failed(tmp_path):
    (tmp_path / "gone").mkdir()
    (tmp_path / "gone" / JOB_FILE).write_text(json.dumps({"status": "running", "pid": 2**22 + 7, "budget": 60}))
    job = read_job(tmp_path / "gone")
    assert job.status == "failed" and "ended without saying how" in job.error
    assert JobManager(tmp_path).current().name == "gone"  # and it no longer blocks a new job


def test_a_job_whose_process_never_started_reads_as_failed(tmp_path):
    (tmp_path / "stuck").mkdir()
    (tmp_path / "stuck" / JOB_FILE).write_text(json.dumps({"status": "queued", "created": time.time() - 600}))
    job = read_job(tmp_path / "stuck")
    assert job.status == "failed" and job.error.startswith("the training process did not start")
    (tmp_path / "stuck" / JOB_FILE).write_text(json.dumps({"status": "queued", "created": time.time()}))
    assert read_job(tmp_path / "stuck").status == "queued"


def test_a_models_name_stays_inside_the_models_directory_and_a_taken_one_is_refused(tmp_path, text):
    assert run_name("../../etc/passwd") == "etc-passwd"
    assert run_name("Lettres d'été") == "lettres-d-t"
    assert run_name("  ..//  ").startswith("train-")
    (tmp_path / "taken").mkdir()
    with pytest.raises(ConfigError, match="a model named taken already exists; choose another name"):
        JobManager(tmp_path).start("Taken", [text], tiny_command, budget=60)


def test_the_validation_part_is_the_end_of_each_text_cut_at_a_line(text):
    train, valid = held_out(text, 0.1)
    assert train + valid == text and train.endswith("\n")
    assert 0.05 * len(text) < len(valid) < 0.2 * len(text)
    train, valid = held_out("word " * 100, 0.1)
    assert valid.startswith("word") and train.endswith(" ")


@pytest.mark.parametrize("content, message", [
    (b"\x89PNG\r\n\x1a\n\0\0", "notes.txt is a binary file, not text; upload .txt files"),
    ("caf\u00e9".encode("latin-1"), "notes.txt is not UTF-8 text (byte 0xe9 at offset 3)"),
    (b"  \n\n ", "notes.txt is empty; upload a file with text in it"),
    (b"x" * 2048, "notes.txt is 2.0 KB; this server takes at most 1.0 KB of text: upload less"),
])
def test_an_upload_that_is_not_usable_text_is_refused_in_one_sentence(tmp_path, content, message):
    (tmp_path / "upload").write_bytes(content)
    with pytest.raises(DataError) as refused:
        read_text_upload(tmp_path / "upload", "notes.txt", max_bytes=1024)
    assert str(refused.value).startswith(message)


def test_too_little_text_is_refused_before_a_job_starts(tmp_path):
    with pytest.raises(DataError, match="the texts hold 11 characters; training needs at least 1,000"):
        JobManager(tmp_path).start("short", ["Hello world"], tiny_command, budget=60)
    assert list(tmp_path.iterdir()) == []


# ---- the task's declaration -------------------------------------------------------------------------------------
def test_the_completion_task_declares_both_starts_and_its_options_become_flags():
    declared = declared_training()
    assert list(declared.starts) == ["the default model", "from scratch"]
    command = declared.command("completion", "the default model", "d", "v", "o", 300,
                               {"lr": 0.001, "batch_size": None, "seed": 3})
    assert command == ["train", "completion", "--data", "d", "--valid", "v", "--out", "o", "--max-time", "300",
                       "--init", "default", "--lr", "0.001", "--seed", "3"]
    with pytest.raises(ConfigError, match="starting point 'halfway' is not one of the default model, from scratch"):
        declared.command("completion", "halfway", "d", "v", "o", 60, {})
    with pytest.raises(ConfigError, match="option bptt must be in"):
        declared.command("completion", "from scratch", "d", "v", "o", 60, {"bptt": 0})


def test_the_declared_from_scratch_start_trains_a_model_that_writes(tmp_path, train_file, valid_file):
    from genseq import from_pretrained
    from genseq.cli import main

    declared = declared_training()
    command = declared.command("completion", "from scratch", str(train_file), str(valid_file), str(tmp_path / "run"),
                               2, {"batch_size": 8})
    assert main([*command, "--no-progress", "--device", "cpu"]) == 0
    model, tokenizer = from_pretrained(str(tmp_path / "run"))
    assert model.config.hidden_size == 256 and tokenizer.vocab_size <= 400


# ---- the loopback rule and `genseq serve`'s flags -------------------------------------------------------------
def test_training_is_off_beyond_this_machine_unless_allowed(tmp_path):
    import gradio as gr
    from genseq_web.access import ServerAccess
    from genseq_web.pool import TaskPool
    from genseq_web.training import OFF, Training

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    training = Training([completion_info()], TaskPool(), ServerAccess(models_dir=tmp_path))
    training.listen_on(loopback=False)
    assert training.poll() == {"status": "off", "error": OFF}
    with pytest.raises(gr.Error, match="Training from the browser is off"):
        training.start(None, "text " * 500, "x", "from scratch", 1, 0.1, None, "", "", "", 0)
    with pytest.raises(gr.Error, match="genseq serve --allow-training"):
        training.stop()
    allowed = Training([completion_info()], TaskPool(), ServerAccess(models_dir=tmp_path), allow_training=True)
    allowed.listen_on(loopback=False)
    assert allowed.poll() == {}


def test_serve_passes_allow_training_and_the_upload_cap_to_the_app(monkeypatch):
    from genseq.cli import main, serve

    built = {}

    class App:
        def build_app(self, models, **options):
            built.update(options)

        def launch(self, app, **options):
            built["host"] = options["host"]

    monkeypatch.setattr(serve, "load_app_module", App)
    assert main(["serve", "--host", "0.0.0.0", "--api-key", "k", "--allow-training", "--max-upload-mb", "5"]) == 0
    assert built["allow_training"] is True and built["max_upload_mb"] == 5 and built["host"] == "0.0.0.0"
    built.clear()
    assert main(["serve"]) == 0
    assert "allow_training" not in built and "max_upload_mb" not in built  # the app's defaults: off, 20 MB


def test_uploads_are_checked_before_a_job_starts(tmp_path):
    import gradio as gr
    from genseq_web.access import ServerAccess
    from genseq_web.pool import TaskPool
    from genseq_web.training import Training

    training = Training([completion_info()], TaskPool(), ServerAccess(models_dir=tmp_path), max_upload_mb=0.01)
    training.listen_on(loopback=True)
    (tmp_path / "big.txt").write_text("words " * 4000)
    (tmp_path / "picture.txt").write_bytes(b"\x89PNG\0\0")
    options = ("", "", "", 0)
    for files, text, message in [([], "  ", "Add your texts: upload .txt files or paste text."),
                                 ([str(tmp_path / "picture.txt")], "", "picture.txt is a binary file, not text"),
                                 ([str(tmp_path / "big.txt")], "", "big.txt is 23.4 KB; this server takes at most 10.2 KB"),
                                 ([], "word " * 3000, "the texts hold 14.6 KB; this server takes at most 10.2 KB: upload less")]:
        with pytest.raises(gr.Error) as refused:
            training.start(files, text, "x", "from scratch", 1, 0.1, None, *options)
        assert refused.value.message.startswith(message), refused.value.message
    with pytest.raises(gr.Error, match="option learning rate must be float, not 'fast'"):
        training.start([], "word " * 300, "x", "from scratch", 1, 0.1, None, "fast", "", "", 0)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["big.txt", "picture.txt"]  # no job was made


def test_an_ended_jobs_model_is_loaded_afresh_after_an_earlier_best_was_loaded_while_it_trained(tmp_path):
    from genseq_web.pool import TaskPool

    task_class = completion_info().task_class
    pool = TaskPool()
    early, other = pool.get(task_class, str(tmp_path / "run")), pool.get(task_class, str(tmp_path / "other"))
    pool.forget(str(tmp_path / "run"))
    assert pool.get(task_class, str(tmp_path / "run")) is not early
    assert pool.get(task_class, str(tmp_path / "other")) is other


# ---- the endpoints through gradio_client ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def training_server(tmp_path_factory, trained_run):
    """The app with the completion tab and the Train tab (TINY, 30 steps) on a loopback port; (url, models dir)."""
    import genseq_web
    import huggingface_hub.constants
    from genseq_web.pool import TaskPool

    models = tmp_path_factory.mktemp("train_tab_models")
    app = genseq_web.build_app({"completion": str(trained_run)}, pool=TaskPool(), models_dir=models,
                               infos=[completion_info(max_steps=30)])
    port = free_port()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        _, url, _ = genseq_web.launch(app, port=port, prevent_thread_lock=True, quiet=True)
        yield url, models
    app.close()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_start_poll_and_stop_through_the_api_train_a_model_the_completion_tab_then_uses(training_server, train_file):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, models = training_server
    client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/train_start", "/train_poll", "/train_stop"} <= set(endpoints)
    with pytest.raises(AppError, match="no training job is running, so there is nothing to stop"):
        client.predict(api_name="/train_stop")
    started = client.predict(files=[handle_file(str(train_file))], name="api sonnets", start="from scratch", minutes=1,
                             api_name="/train_start")
    assert started["name"] == "api-sonnets" and started["status"] in ("queued", "running")
    with pytest.raises(AppError, match="training job api-sonnets is still running"):
        client.predict(text="word " * 300, start="from scratch", api_name="/train_start")
    ended = wait_for(lambda: client.predict(api_name="/train_poll"), lambda job: job["status"] not in
                     ("queued", "running", "stopping"))
    assert ended["status"] == "finished" and ended["step"] == 30 and ended["fraction"] == 1, ended
    assert ended["losses"]["train"] and ended["losses"]["valid"] and ended["task"] == "Completion"
    assert len(ended["samples"]) == 3 and all(isinstance(sample, str) for sample in ended["samples"])
    assert Path(ended["model"]) == models / "api-sonnets"
    text, _, _ = client.predict(prompt="Shall I", max_new_tokens=5, seed=0, model=ended["model"],
                                api_name="/completion")
    assert isinstance(text, str)
    assert os.path.exists(models / "api-sonnets" / "data" / "valid" / "000.txt")
