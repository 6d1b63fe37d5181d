"""The run layer itself (genseq.runs), through the toy trainer docs/training.md shows a plugin author.

The trainer below is executed from the documentation's own code block, so the
example a plugin author copies is the one these tests train, stop and resume.
"""

import json
import math
import os
import re
import signal
from pathlib import Path

import pytest
import torch

from genseq import CheckpointError, ConfigError, TrainingError
from genseq.runs import RunConfig, RunDirectory, deferred_interrupt

DOCS = Path(__file__).parent.parent / "docs" / "training.md"


def documented_trainer() -> dict:
    """The names the first code block of docs/training.md's "Training a plugin's model" defines."""
    section = DOCS.read_text().split("## Training a plugin's model", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, str(DOCS), "exec"), namespace)
    return namespace


EXAMPLE = documented_trainer()
LineTrainer, LineConfig = EXAMPLE["LineTrainer"], EXAMPLE["LineConfig"]
POINTS = torch.linspace(-1, 1, 64)


def line_trainer(out, **options) -> "LineTrainer":
    torch.manual_seed(0)  # the same initial weights for every trainer of a test
    return LineTrainer(POINTS, LineConfig(**{"device": "cpu", "progress": False, **options}), out)


def weights(trainer) -> dict:
    return {name: tensor.clone() for name, tensor in trainer.model.state_dict().items()}


def test_the_documented_trainer_learns_its_line_and_writes_the_run_directory(tmp_path):
    trainer = line_trainer(tmp_path / "run")
    progress = trainer.fit()
    assert progress.finished and progress.epoch == 10 and progress.step == 10 * 8
    assert trainer.model.weight.item() == pytest.approx(3, abs=0.1) and trainer.model.bias.item() == pytest.approx(-1, abs=0.1)
    files = {path.name for path in (tmp_path / "run").iterdir()}
    assert {"config.json", "model.safetensors", "last", "metrics.jsonl", "loss.png"} <= files
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len([r for r in records if r["split"] == "valid"]) == 10  # once an epoch
    best = json.loads((tmp_path / "run" / "config.json").read_text())["training"]
    assert best["loss"] == pytest.approx(progress.best["loss"]) and best["step"] <= progress.step


def test_a_stopped_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    straight = line_trainer(tmp_path / "straight", epochs=6)
    straight.fit()
    interrupted = line_trainer(tmp_path / "split", epochs=6)
    step = interrupted.train_step

    def stop_at_step_13(batch):  # mid-way through the second epoch
        loss = step(batch)
        if interrupted.progress.step == 13:
            interrupted.request_stop()
        return loss

    interrupted.train_step = stop_at_step_13
    assert not interrupted.fit().finished and interrupted.stop_requested
    resumed = line_trainer(tmp_path / "split", epochs=6)
    resumed.resume()
    assert resumed.progress.step == 13 and resumed.progress.batch == 5
    assert resumed.fit().finished
    for name, tensor in weights(straight).items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)  # the records after the checkpoint were dropped, so the log reads as one run


def test_max_steps_ends_a_run_with_a_final_validation(tmp_path):
    progress = line_trainer(tmp_path / "run", max_steps=11).fit()
    assert progress.finished and progress.step == 11 and progress.last_validation_step == 11


def test_a_time_budget_ends_a_run_with_a_final_validation(tmp_path):
    trainer = line_trainer(tmp_path / "run", epochs=10**6, max_time=0.3, eval_every=10**6)
    progress = trainer.fit()
    assert progress.finished and progress.elapsed >= 0.3 and progress.last_validation_step == progress.step
    assert trainer.fraction_done() >= 1


def test_patience_stops_a_run_that_no_longer_improves(tmp_path):
    trainer = line_trainer(tmp_path / "run", patience=2, eval_every=1)
    losses = iter([3.0, 2.0, 2.5, 2.6, 1.0])
    trainer.validate = lambda: {"loss": next(losses)}
    progress = trainer.fit()
    assert progress.step == 4 and progress.best["loss"] == 2.0 and trainer.stopped_early()


def test_checkpoint_every_writes_last_at_those_steps(tmp_path):
    trainer = line_trainer(tmp_path / "run", max_steps=7, checkpoint_every=3, checkpoint_minutes=1e9)
    saved = []
    save_last = trainer.save_last
    trainer.save_last = lambda: (saved.append(trainer.progress.step), save_last())
    trainer.fit()
    assert saved == [3, 6, 7]  # and once at the end


def test_a_non_finite_loss_stops_before_the_step_that_would_apply_it(tmp_path):
    trainer = line_trainer(tmp_path / "run", checkpoint_every=2)
    loss = trainer.loss
    trainer.loss = lambda rows: (loss(rows)[0] * math.nan, math.nan) if trainer.progress.step == 5 else loss(rows)
    with pytest.raises(TrainingError, match=r"the loss became nan at step 6; training stopped and the last good "
                                            r"checkpoint .*last \(continue it with --resume\) is kept"):
        trainer.fit()
    assert all(torch.isfinite(tensor).all() for tensor in trainer.model.state_dict().values())
    assert json.loads((tmp_path / "run" / "last" / "training_state.json").read_text())["progress"]["step"] == 4


def test_a_run_directory_holding_a_run_is_refused(tmp_path):
    line_trainer(tmp_path / "run", max_steps=2).fit()
    with pytest.raises(ConfigError, match="already holds a training run; continue it with --resume"):
        RunDirectory(tmp_path / "run").refuse_existing()
    RunDirectory(tmp_path / "new").refuse_existing()


def test_a_progress_of_another_trainer_is_refused_on_resume(tmp_path):
    line_trainer(tmp_path / "run", max_steps=2).fit()
    path = tmp_path / "run" / "last" / "training_state.json"
    record = json.loads(path.read_text())
    record["progress"]["window"] = 3
    path.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match=r"progress has unknown fields \(window\)\); it cannot be resumed"):
        line_trainer(tmp_path / "run").resume()


@pytest.mark.parametrize("options,message", [
    (dict(epochs=0), "epochs must be at least 1, not 0"),
    (dict(max_steps=0), "max_steps must be at least 1, not 0"),
    (dict(lr=0.0), "lr must be positive"),
    (dict(max_time=-1.0), "max_time must be positive"),
    (dict(patience=-1), "patience must not be negative"),
    (dict(clip_grad_norm=math.inf), "clip_grad_norm must be a finite number, not inf"),
    (dict(device="tpu"), "device must be auto, cpu or cuda"),
])
def test_every_trainers_config_checks_the_run_options(options, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(**options)
    with pytest.raises(ConfigError, match=message):
        LineConfig(**options)


class Loop:
    """The two things deferred_interrupt needs of a loop."""

    stop_requested = False

    def request_stop(self):
        self.stop_requested = True


def test_the_first_ctrl_c_requests_a_stop_and_the_second_aborts():
    loop = Loop()
    previous = signal.getsignal(signal.SIGINT)
    with deferred_interrupt(loop):
        os.kill(os.getpid(), signal.SIGINT)
        assert loop.stop_requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is previous


def test_a_better_metric_wins_by_its_higher_value_and_a_tie_by_the_lower_loss():
    from types import SimpleNamespace

    from genseq.runs import RunLoop

    def better(metric, best, metrics):
        return RunLoop.is_better(SimpleNamespace(better_metric=metric, progress=SimpleNamespace(best=best)), metrics)

    assert better("f1", {}, {"f1": 0.1, "loss": 9.0})
    assert better("f1", {"f1": 0.5, "loss": 1.0}, {"f1": 0.6, "loss": 2.0})
    assert not better("f1", {"f1": 0.5, "loss": 1.0}, {"f1": 0.4, "loss": 0.1})
    assert better("f1", {"f1": 0.5, "loss": 1.0}, {"f1": 0.5, "loss": 0.9})
    assert not better(None, {"f1": 0.5, "loss": 1.0}, {"f1": 0.9, "loss": 1.1})
    assert better(None, {"loss": 1.0}, {"loss": 0.9})
