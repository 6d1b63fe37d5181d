import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from genseq import ConfigError, LanguageModel, TrainingError, capabilities, from_pretrained
from genseq.data import open_source, tokenize
from genseq.train import TrainConfig, Trainer


@pytest.fixture
def streams(tokenizer, train_file, valid_file):
    return tokenize(open_source(str(train_file)), tokenizer), tokenize(open_source(str(valid_file)), tokenizer)


def make_trainer(tiny_config, tokenizer, streams, out, **options):
    config = TrainConfig(**{"batch_size": 4, "bptt": 12, "warmup_steps": 3, "progress": False,
                            "checkpoint_minutes": 1e9, **options})
    torch.manual_seed(123)  # the same initial weights for every trainer of a test
    return Trainer(LanguageModel(tiny_config), tokenizer, *streams, config, out)


def test_training_lowers_validation_loss_and_writes_the_run_directory(tiny_config, tokenizer, streams, tmp_path):
    trainer = make_trainer(tiny_config, tokenizer, streams, tmp_path / "run", max_steps=60, eval_every=20, lr=1e-2)
    initial = trainer.validate()["loss"]
    progress = trainer.fit()
    assert progress.finished and progress.step == 60
    assert progress.best["loss"] < initial - 0.5
    run = tmp_path / "run"
    assert {"config.json", "model.safetensors", "tokenizer.model", "metrics.jsonl", "loss.png", "last"} <= {p.name for p in run.iterdir()}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "valid"] == [20, 40, 60]
    assert (run / "loss.png").read_bytes()[:4] == b"\x89PNG"
    model, _ = from_pretrained(run)
    assert model.config == tiny_config


@pytest.mark.skipif(not capabilities.bf16_training("cpu"),
                    reason="this CPU's PyTorch cannot run an LSTM under bf16 autocast (no AVX512-BF16/AMX kernel)")
def test_bf16_precision_trains_under_autocast_on_the_cpu(tiny_config, tokenizer, streams, tmp_path):
    trainer = make_trainer(tiny_config, tokenizer, streams, tmp_path / "run", max_steps=40, eval_every=20, lr=1e-2,
                           precision="bf16", device="cpu")
    with trainer.autocast():
        logits, _ = trainer.model(torch.zeros(1, 3, dtype=torch.long))
    assert logits.dtype == torch.bfloat16
    initial = trainer.validate()["loss"]
    progress = trainer.fit()
    assert progress.finished and progress.best["loss"] < initial - 0.3
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # fp32 weights, bf16 products
    assert json.loads((tmp_path / "run" / "config.json").read_text())["training_config"]["precision"] == "bf16"
    assert all(h.dtype == torch.float32 for h in trainer.hidden)  # so a run resumes in either precision
    resumed = make_trainer(tiny_config, tokenizer, streams, tmp_path / "run", max_steps=45, device="cpu")
    resumed.resume()
    assert resumed.fit().finished and resumed.progress.step == 45
    with make_trainer(tiny_config, tokenizer, streams, tmp_path / "fp32", device="cpu", precision="fp32").autocast():
        assert trainer.model(torch.zeros(1, 3, dtype=torch.long))[0].dtype == torch.float32


def test_interrupted_and_resumed_run_ends_with_identical_weights(tiny_config, tokenizer, streams, tmp_path):
    options = dict(max_steps=50, eval_every=15, lr=5e-3)
    straight = make_trainer(tiny_config, tokenizer, streams, tmp_path / "straight", **options)
    straight.fit()

    interrupted = make_trainer(tiny_config, tokenizer, streams, tmp_path / "resumed", **options)
    original_step = interrupted.train_step

    def step_then_stop(*batch):
        loss = original_step(*batch)
        if interrupted.progress.step == 23:  # mid-epoch, between validations
            interrupted.request_stop()
        return loss

    interrupted.train_step = step_then_stop
    assert not interrupted.fit().finished

    resumed = make_trainer(tiny_config, tokenizer, streams, tmp_path / "resumed", **options)
    resumed.resume()
    assert resumed.progress.step == 23
    assert resumed.fit().finished
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tiny_config, tokenizer, streams, tmp_path):
    trainer = make_trainer(tiny_config, tokenizer, streams, tmp_path / "run", max_steps=30, checkpoint_every=5)
    original_step = trainer.train_step

    def poison_after_ten(*batch):
        if trainer.progress.step == 10:
            with torch.no_grad():
                trainer.model.embedding.weight.fill_(math.nan)
        return original_step(*batch)

    trainer.train_step = poison_after_ten
    with pytest.raises(TrainingError, match="the loss became nan at step 11"):
        trainer.fit()
    state = json.loads((tmp_path / "run" / "last" / "training_state.json").read_text())
    assert state["progress"]["step"] == 10
    resumed = make_trainer(tiny_config, tokenizer, streams, tmp_path / "run", max_steps=30)
    resumed.resume()
    assert all(torch.isfinite(p).all() for p in resumed.model.parameters())


def test_max_time_stops_cleanly_with_a_final_validation(tiny_config, tokenizer, streams, tmp_path):
    trainer = make_trainer(tiny_config, tokenizer, streams, tmp_path / "run", max_time=0.5, epochs=1000)
    progress = trainer.fit()
    assert progress.finished and progress.elapsed >= 0.5
    assert progress.last_validation_step == progress.step
    assert trainer.learning_rate() < trainer.config.lr * 0.1  # the cosine followed the time budget


def test_early_stopping_after_patience_validations_without_improvement(tiny_config, tokenizer, streams, tmp_path):
    trainer = make_trainer(tiny_config, tokenizer, streams, tmp_path / "run", max_steps=500, eval_every=2, patience=2)
    losses = iter([5.0, 4.0, 4.5, 4.6, 1.0])
    trainer.validate = lambda: {"loss": next(losses)}
    progress = trainer.fit()
    assert progress.step == 8 and progress.best["loss"] == 4.0


def test_plateau_schedule_halves_the_rate_after_a_validation_without_improvement(tiny_config, tokenizer, streams, tmp_path):
    trainer = make_trainer(tiny_config, tokenizer, streams, tmp_path / "run", max_steps=4, eval_every=2,
                           schedule="plateau", warmup_steps=0, patience=0)
    losses = iter([5.0, 6.0, 6.0])
    trainer.validate = lambda: {"loss": next(losses)}
    trainer.fit()
    assert trainer.learning_rate() == pytest.approx(trainer.config.lr * 0.5)


@pytest.mark.parametrize("options,message", [
    (dict(max_steps=10, warmup_steps=10), "warmup_steps"),
    (dict(batch_size=0), "batch_size"),
    (dict(schedule="linear"), "schedule"),
    (dict(device="tpu"), "device"),
    (dict(precision="fp16"), "precision"),
])
def test_inconsistent_training_options_are_rejected(options, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**options)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_saves_a_resumable_checkpoint(tmp_path, train_file, valid_file):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "genseq", "train", "completion", "--data", str(train_file), "--valid", str(valid_file),
               "--out", str(out), "--vocab-size", "400", "--hidden-size", "16", "--embedding-size", "16",
               "--batch-size", "2", "--bptt", "8", "--epochs", "1000", "--no-progress"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    metrics = out / "metrics.jsonl"
    start = time.monotonic()
    while not (metrics.exists() and metrics.stat().st_size > 0) and process.poll() is None:
        assert time.monotonic() - start < 120, "training never logged a step"
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    state = json.loads((out / "last" / "training_state.json").read_text())
    assert state["progress"]["step"] >= 1 and not state["progress"]["finished"]
