"""The run layer: one training loop and one run directory for every trainer.

A run directory holds

    config.json, model.safetensors, tokenizer.model   the best model so far (a checkpoint)
    last/                                             everything a resumed run continues from
    metrics.jsonl                                     one JSON record per logged step and validation
    loss.png                                          the losses so far

RunLoop owns what every trainer shares: fit() with its epochs, step limit and
time budget, validation and best-so-far saving, early stopping, periodic
resumable checkpoints, the progress bar, Ctrl-C (the first one stops after
the current step with a checkpoint, a second one aborts), agreement between
the processes of a distributed run, DistributedDataParallel, and resuming
from last/ with every part checked first. A trainer subclasses it and says
only how to take a step, how to validate, what counts as better and what its
model's checkpoint files are; see docs/training.md for a worked example.

Resuming from last/ continues a run exactly: weights, optimizer, counters and
random states come back, so an interrupted and resumed run ends with the
weights of one that was never interrupted.
"""

from __future__ import annotations

import json
import math
import signal
import time
import typing
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import torch

from .checkpoint import (
    WEIGHTS_FILE,
    atomic_write,
    check_regular_file,
    join_tensors,
    load_weights,
    read_directory_path,
    read_header,
    read_weights,
    split_tensors,
    write_directory,
    write_files,
)
from .distributed import World
from .errors import CheckpointError, ConfigError, TrainingError, first_line
from .figures import png_bytes, pyplot

LAST_DIR, METRICS_FILE, PLOT_FILE = "last", "metrics.jsonl", "loss.png"
STATE_JSON, STATE_TENSORS = "training_state.json", "training_state.safetensors"
LOG_EVERY = 10  # steps between train records in metrics.jsonl (and the first step)


def resolve_device(name: str) -> torch.device:
    """The device a --device name means: auto is the GPU where there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return torch.device(name)


# ---- what every trainer's config holds --------------------------------------------------------
@dataclass
class RunConfig:
    """The options RunLoop reads; a trainer's config subclasses it (giving its own defaults) and adds its own."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    clip_grad_norm: float = 1.0  # 0 turns clipping off
    max_steps: int | None = None
    max_time: float | None = None  # seconds of training; a schedule may follow this budget
    patience: int = 3  # validations without improvement before stopping early; 0 never stops
    eval_every: int | None = None  # steps between validations; None: at the end of each epoch
    checkpoint_every: int | None = None  # steps between resumable checkpoints
    checkpoint_minutes: float = 10.0
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self):
        require_finite(self)
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("max_steps", "eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, not {value}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, not {self.lr}")
        if self.max_time is not None and not self.max_time > 0:
            raise ConfigError(f"max_time must be positive, not {self.max_time}")
        for name in ("clip_grad_norm", "patience", "checkpoint_minutes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, not {getattr(self, name)}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be auto, cpu or cuda, not {self.device!r}")


def require_finite(config) -> None:
    """Refuse a config whose numbers include NaN or infinity (a comparison with NaN is always
    false, so range checks after this would let it through)."""
    for option in fields(config):
        value = getattr(config, option.name)
        if type(value) is float and not math.isfinite(value):
            raise ConfigError(f"{option.name} must be a finite number, not {value}")


@dataclass
class RunProgress:
    """The counters RunLoop keeps; a trainer's progress subclasses it with its position in an epoch and its best score.

    Everything in it is saved in last/ and checked field by field when a run resumes.
    """

    step: int = 0
    epoch: int = 0
    elapsed: float = 0.0  # seconds of training so far, across resumes
    validations_without_improvement: int = 0
    last_validation_step: int = -1
    finished: bool = False
    best: dict[str, float] = field(default_factory=dict)  # the metrics of the best validation so far


# ---- the run directory ---------------------------------------------------------------------------
class RunDirectory:
    """The files of one training run (see the module docstring); it knows nothing of processes:
    in a distributed run only rank 0 writes, which RunLoop sees to."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    def refuse_existing(self) -> None:
        """Refuse to start a new run here when the directory holds one: its checkpoints would be overwritten."""
        if (self.path / LAST_DIR).exists() or (self.path / "config.json").exists():
            raise ConfigError(f"{self.path} already holds a training run; continue it with --resume or choose another --out")

    def prepare(self) -> None:
        """Make the directory, and show it can be written to before any training time is spent."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path / ".write-test", b"", what=None)
            (self.path / ".write-test").unlink()
        except OSError as error:
            raise ConfigError(f"cannot write to {self.path}: {error.strerror}") from None

    def log(self, record: dict) -> None:
        """Append one record to metrics.jsonl."""
        with open(self.metrics, "a") as file:
            file.write(json.dumps(record) + "\n")

    def truncate_metrics(self, step: int) -> None:
        """Drop the records written after step (the checkpoint being resumed), so the log reads as one run."""
        if self.metrics.exists():
            kept = [line for line in self.metrics.read_text().splitlines() if line and json.loads(line)["step"] <= step]
            atomic_write(self.metrics, "".join(line + "\n" for line in kept).encode())

    def plot(self) -> None:
        """Draw loss.png from metrics.jsonl."""
        atomic_write(self.path / PLOT_FILE, loss_plot(self.metrics))

    def save_best(self, files: dict[str, bytes]) -> None:
        """Write the best model's checkpoint files beside the metrics, each replaced atomically."""
        write_files(self.path, files)

    def save_last(self, files: dict[str, bytes], record: dict, state: dict) -> None:
        """Write last/ in one atomic directory swap: a model's checkpoint files, plus what training continues
        from: record (counters, JSON) and state (optimizer, RNG...: its tensors in safetensors, the rest in JSON)."""
        from safetensors.torch import save as save_safetensors

        data, tensors = split_tensors(state, "state")
        files = {**files, STATE_JSON: json.dumps({**record, "state": data}, indent=1).encode(),
                 STATE_TENSORS: save_safetensors(tensors)}
        write_directory(self.path / LAST_DIR, files)

    def read_last(self) -> tuple[Path, dict, dict]:
        """(last/, its record, its state) as save_last wrote them; one CheckpointError naming the file
        when either file is missing, damaged or not what save_last writes.

        The state has an "optimizer" (checked against the parameters by load_optimizer_state) and an
        "rng" (with "process_rng", if present), each a state a random generator takes.
        """
        last = read_directory_path(self.path / LAST_DIR)
        record = _read_record(last)
        try:
            read_header(last / STATE_TENSORS)  # sizes checked against the file before anything is read
            tensors = read_weights(last / STATE_TENSORS)  # ... and the tensors checked to be finite
        except CheckpointError as error:
            raise CheckpointError(f"{last} has no readable training state ({error}); {CANNOT_RESUME}") from None
        try:
            state = join_tensors(record.pop("state"), tensors)
        except (KeyError, TypeError, ValueError) as error:
            raise unresumable(last, f"{STATE_JSON} refers to tensors {STATE_TENSORS} does not hold "
                                    f"({first_line(error, 200)})") from None
        if not isinstance(state, dict) or not isinstance(state.get("optimizer"), dict) or "rng" not in state:
            raise unresumable(last, f"{STATE_JSON}: its \"state\" does not hold the optimizer's and the random state")
        _check_random_states(state, last)
        return last, record, state

    def kept_checkpoints(self) -> str:
        """What the directory holds to go back to, in words, for an error that stops training."""
        kept = []
        if (read_directory_path(self.path / LAST_DIR) / STATE_JSON).exists():
            kept.append(f"the last good checkpoint {self.path / LAST_DIR} (continue it with --resume)")
        if (self.path / WEIGHTS_FILE).exists():
            kept.append(f"the best model so far in {self.path}")
        if not kept:
            return "no checkpoint had been saved yet"
        return " and ".join(kept) + (" are kept" if len(kept) == 2 else " is kept")


def refuse_existing_run(out_dir: str | Path) -> None:
    """Refuse to start a new run in out_dir when it holds one (RunDirectory.refuse_existing)."""
    RunDirectory(out_dir).refuse_existing()


def loss_plot(metrics_path: Path) -> bytes:
    """A PNG of train/valid loss and the exponential of the validation loss (perplexity, for a cross-entropy) against steps."""
    plt = pyplot()

    records = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line]
    train = [(r["step"], r["loss"]) for r in records if r["split"] == "train"]
    valid = [(r["step"], r["loss"]) for r in records if r["split"] == "valid"]
    figure, (loss_axis, ppl_axis) = plt.subplots(1, 2, figsize=(10, 4))
    if train:
        loss_axis.plot(*zip(*train), label="train", alpha=0.7)
    if valid:
        loss_axis.plot(*zip(*valid), "o-", label="valid")
        ppl_axis.plot([s for s, _ in valid], [math.exp(min(l, 50)) for _, l in valid], "o-", color="C1")
    loss_axis.set(xlabel="step", ylabel="loss", title="loss")
    loss_axis.legend()
    ppl_axis.set(xlabel="step", ylabel="exp(validation loss)", title="validation perplexity")
    return png_bytes(figure, dpi=100)


# ---- Ctrl-C ----------------------------------------------------------------------------------------
class Stoppable(Protocol):
    """What deferred_interrupt needs of a loop."""

    @property
    def stop_requested(self) -> bool: ...

    def request_stop(self) -> None: ...


class deferred_interrupt:
    """Turn the first Ctrl-C into loop.request_stop(), honoured between steps; a second one aborts."""

    def __init__(self, loop: Stoppable):
        self.loop = loop

    def __enter__(self):
        self.previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):
            if self.loop.stop_requested:
                raise KeyboardInterrupt
            self.loop.request_stop()

        try:
            signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread: leave signals alone
            self.previous = None
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


# ---- learning-rate shapes ------------------------------------------------------------------------
def warmup_factor(step: int, warmup_steps: int) -> float:
    """The linear warm-up's share of the rate at step: 1/warmup_steps, 2/warmup_steps, ... then 1."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0


def cosine_factor(done: float, min_ratio: float) -> float:
    """The cosine decay's share of the rate when the fraction done of training is done: 1 down to min_ratio."""
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, done)))
    return min_ratio + (1 - min_ratio) * cosine


# ---- the loop ------------------------------------------------------------------------------------
class RunLoop(ABC):
    """Runs one training job into a RunDirectory; see the module docstring.

    A subclass sets self.optimizer and self.progress (a RunProgress) in its
    __init__, after calling this one, and defines steps_per_epoch(),
    next_batch(), start_epoch(), loss() and validate(). It may name a
    better_metric or override is_better() (by default a lower loss is
    better), checkpoint_files() (by
    default the model's own files()), learning_rate(), after_validation(),
    train_record(), postfix(), summary(), resume_state() and restore().
    """

    config: RunConfig
    progress: RunProgress
    optimizer: torch.optim.Optimizer
    better_metric: str | None = None  # a validation metric where higher is better, ties going to the lower loss

    def __init__(self, model: torch.nn.Module, config: RunConfig, out_dir: str | Path, world: World | None = None,
                 network: torch.nn.Module | None = None):
        """network: the module training steps call, which holds model (default: model itself); in a distributed
        run it is wrapped in DistributedDataParallel as self.network."""
        self.config, self.world = config, world or World()
        self.device = self.world.device(resolve_device(config.device))
        self.model = model.to(self.device)
        self.network = self.data_parallel(network or self.model)
        self.run = RunDirectory(out_dir)
        self._stop_requested = False
        torch.manual_seed(config.seed + self.world.rank)  # each process its own dropout masks

    def data_parallel(self, module: torch.nn.Module) -> torch.nn.Module:
        """module, in DistributedDataParallel when this is one of several processes."""
        if not self.world.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    # ---- what a subclass defines ----------------------------------------------------------------
    @abstractmethod
    def steps_per_epoch(self) -> float:
        """Optimizer steps in one epoch (math.inf for an endless stream)."""

    @abstractmethod
    def next_batch(self) -> Any | None:
        """The next batch of the current epoch, advancing the position in it (kept in self.progress); None at its end."""

    @abstractmethod
    def start_epoch(self) -> None:
        """Reset the position for the epoch self.progress.epoch."""

    @abstractmethod
    def loss(self, batch: Any) -> tuple[torch.Tensor, float]:
        """(the loss to minimise, through self.network; its value to report, the same in every process)."""

    @abstractmethod
    def validate(self) -> dict[str, float]:
        """{name: number} on the validation data, with at least "loss" (called on rank 0 alone)."""

    # ---- what a subclass may change ----------------------------------------------------------------
    def is_better(self, metrics: dict[str, float]) -> bool:
        """Whether a validation's metrics beat the best so far, self.progress.best ({} before the first): the
        higher better_metric, then the lower loss; without a better_metric, the lower loss."""
        best, key = self.progress.best, self.better_metric
        if key is None:
            return metrics["loss"] < best.get("loss", math.inf)
        return not best or (metrics[key], -metrics["loss"]) > (best[key], -best["loss"])

    def checkpoint_files(self, **extra: Any) -> dict[str, bytes]:
        """The model's checkpoint files as bytes, extra going into config.json: by default the model's files()."""
        return self.model.files(**extra)

    def learning_rate(self) -> float:
        """The rate of the next step (constant by default); a parameter group's "lr_scale" multiplies it."""
        return self.config.lr

    def after_validation(self, metrics: dict[str, float], improved: bool) -> None:
        """Called in every process after each validation (a plateau schedule adjusts its rate here)."""

    def train_record(self, loss: float) -> dict:
        """The fields of a training record in metrics.jsonl, besides step, epoch and time."""
        return {"loss": loss, "lr": self.learning_rate()}

    def postfix(self, record: dict) -> dict:
        """What the progress bar shows after a train record."""
        shown = {"loss": f"{record['loss']:.3f}", "lr": f"{record['lr']:.2e}"}
        if self.config.max_time:  # the bar's own ETA counts steps; the time budget may end the run first
            left = max(0.0, self.config.max_time - self.progress.elapsed)
            shown["budget_left"] = f"{int(left // 60)}:{int(left % 60):02d}"
        return shown

    def summary(self, metrics: dict[str, float]) -> str:
        """A validation in words, for the line printed after it."""
        return ", ".join(f"valid {name} {value:.4f}" for name, value in metrics.items())

    def resume_state(self) -> tuple[dict, dict]:
        """(JSON record, tensor state) a subclass adds to last/; called in every process (it may gather)."""
        return {}, {}

    def restore(self, last: Path, record: dict, state: dict) -> None:
        """Take back what resume_state() saved, checking it first (called before the weights are loaded)."""

    # ---- stopping ----------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop after the current step with a resumable checkpoint (what Ctrl-C does)."""
        self._stop_requested = True

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    @property
    def total_steps(self) -> float:
        """Steps the whole run takes at most: the epochs', or --max-steps if fewer (math.inf for an endless stream)."""
        return min(self.config.max_steps or math.inf, self.config.epochs * self.steps_per_epoch())

    def fraction_done(self) -> float:
        """How much of the run is done, by steps or by the time budget, whichever is further."""
        done = self.progress.step / self.total_steps
        if self.config.max_time:
            done = max(done, self.progress.elapsed / self.config.max_time)
        return done

    def done(self) -> bool:
        progress, config = self.progress, self.config
        return (
            self._stop_requested
            or progress.finished
            or progress.step >= (config.max_steps or math.inf)
            or (config.max_time is not None and progress.elapsed >= config.max_time)
            or self.stopped_early()
            or progress.epoch >= config.epochs
        )

    def stopped_early(self) -> bool:
        return bool(self.config.patience) and self.progress.validations_without_improvement >= self.config.patience

    # ---- the loop ----------------------------------------------------------------------------------
    def fit(self) -> RunProgress:
        """Train until the epochs, max_steps, max_time, early stopping or a stop request; returns the progress."""
        from tqdm import tqdm

        config, progress, main = self.config, self.progress, self.world.is_main
        if main:
            self.run.prepare()
            self.run.truncate_metrics(progress.step)
        self.model.train()
        total = self.total_steps if math.isfinite(self.total_steps) else None
        bar = tqdm(total=total, initial=progress.step, disable=not (config.progress and main), unit="step", dynamic_ncols=True)
        last_checkpoint = time.monotonic()
        with bar, deferred_interrupt(self):
            while not self.done():
                batch = self.next_batch()
                if batch is None:  # the end of an epoch
                    progress.epoch += 1
                    self.start_epoch()
                    if config.eval_every is None:
                        self.validate_and_record()
                    continue
                started = time.monotonic()
                loss = self.train_step(batch)
                progress.elapsed += time.monotonic() - started
                checkpoint_due = self.agree(self.checkpoint_due(last_checkpoint))
                if progress.step % LOG_EVERY == 0 or progress.step == 1:
                    record = self.train_record(loss)
                    bar.set_postfix(self.postfix(record))
                    self.log({"split": "train", **record})
                bar.update()
                if config.eval_every and progress.step % config.eval_every == 0:
                    self.validate_and_record()
                if checkpoint_due:
                    self.save_last()
                    last_checkpoint = time.monotonic()
            if not self._stop_requested:
                if progress.last_validation_step != progress.step and not self.stopped_early():
                    self.validate_and_record()
                progress.finished = True
            self.save_last()
        self.network = self.network.module if self.world.distributed else self.network  # DDP goes before its group
        return progress

    def train_step(self, batch: Any) -> float:
        """One optimizer step on batch: rate, loss, backward, clipping, update; -> the loss reported."""
        rate = self.learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = rate * group.get("lr_scale", 1.0)
        loss, value = self.loss(batch)
        if not (math.isfinite(value) and bool(torch.isfinite(loss))):
            raise TrainingError(f"the loss became {value} at step {self.progress.step + 1}; training stopped and "
                                f"{self.run.kept_checkpoints()} (try a lower --lr or --clip-grad-norm)")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.clip_grad_norm:
            parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(parameters, self.config.clip_grad_norm)
        self.optimizer.step()
        self.progress.step += 1
        return value

    def checkpoint_due(self, last_checkpoint: float) -> bool:
        every = self.config.checkpoint_every
        if every and self.progress.step % every == 0:
            return True
        return time.monotonic() - last_checkpoint >= self.config.checkpoint_minutes * 60

    def agree(self, checkpoint_due: bool) -> bool:
        """Make the processes of a distributed run agree on what steers the loop: rank 0's clock and
        checkpoint timer, and a stop asked of any of them. -> whether to checkpoint now."""
        world = self.world
        if not world.distributed:
            return checkpoint_due
        main = world.is_main
        elapsed, stop, due = world.sum([self.progress.elapsed if main else 0.0, float(self._stop_requested),
                                        float(checkpoint_due and main)])
        self.progress.elapsed, self._stop_requested = elapsed, stop > 0
        return due > 0

    def validate_and_record(self) -> None:
        """Validate (rank 0; every process follows its result), keep the best model, log and plot."""
        progress, main = self.progress, self.world.is_main
        metrics = json.loads(self.world.broadcast_bytes(json.dumps(self.validate()).encode() if main else None))
        progress.last_validation_step = progress.step
        improved = self.is_better(metrics)
        if improved:
            progress.best, progress.validations_without_improvement = metrics, 0
            self.save_best(metrics)
        else:
            progress.validations_without_improvement += 1
        self.after_validation(metrics, improved)
        self.log({"split": "valid", **metrics, "best": improved})
        if not main:
            return
        if self.config.progress:
            from tqdm import tqdm

            tqdm.write(f"step {progress.step} epoch {progress.epoch}: {self.summary(metrics)}{' (best)' if improved else ''}")
        self.run.plot()

    def log(self, record: dict) -> None:
        """Append a record, stamped with step, epoch and time, to metrics.jsonl (rank 0 only)."""
        if self.world.is_main:
            progress = self.progress
            self.run.log({"step": progress.step, "epoch": progress.epoch, "time": round(progress.elapsed, 3), **record})

    # ---- checkpoints --------------------------------------------------------------------------------
    def check_finite(self) -> None:
        """Before a save: refuse weights or optimizer state holding NaN or infinity, which would
        replace a good checkpoint with one that cannot generate or be resumed."""
        broken = next((f"weights ({name})" for name, tensor in self.model.state_dict().items() if not _finite(tensor)),
                      None)
        if broken is None:
            moments = (value for state in self.optimizer.state.values() for value in state.values()
                       if isinstance(value, torch.Tensor))
            broken = next(("optimizer state" for value in moments if not _finite(value)), None)
        if broken is not None:
            raise TrainingError(
                f"the {broken} became NaN or infinite at step {self.progress.step}, so they were not saved; training "
                f"stopped and {self.run.kept_checkpoints()} (try a lower --lr or --clip-grad-norm)"
            )

    def save_best(self, metrics: dict[str, float]) -> None:
        """Write the model as the run's best, with the metrics that made it so in config.json's "training"."""
        self.check_finite()
        if self.world.is_main:
            training = {"step": self.progress.step, "epoch": self.progress.epoch, **metrics}
            self.run.save_best(self.checkpoint_files(training_config=asdict(self.config), training=training))

    def save_last(self) -> None:
        """Write last/ as one atomic directory swap (rank 0 writes, with every process's random state)."""
        world = self.world
        self.check_finite()
        rng = world.gather_rows(torch.get_rng_state()[None], 0)  # (processes, n): each one's dropout stream
        record, state = self.resume_state()
        if not world.is_main:
            return
        cuda = self.device.type == "cuda" and not world.distributed
        state = {"optimizer": self.optimizer.state_dict(), "rng": rng[0].clone(), "process_rng": rng,
                 "cuda_rng": torch.cuda.get_rng_state_all() if cuda else None, **state}
        self.run.save_last(self.checkpoint_files(training_config=asdict(self.config)),
                           {"progress": asdict(self.progress), **record}, state)

    def resume(self) -> None:
        """Continue from last/: weights, optimizer, progress and random states, each checked before it is used."""
        last, record, state = self.run.read_last()
        progress = progress_from(type(self.progress), record.get("progress"), last / STATE_JSON)
        self.restore(last, record, state)
        load_weights(self.model, read_weights(last / WEIGHTS_FILE), last / WEIGHTS_FILE)
        load_optimizer_state(self.optimizer, state["optimizer"], last)
        self.progress, progress.finished = progress, False
        restore_process_rng(state, self.world, self.config.seed, progress.step)
        restore_cuda_rng(state, self.device, last)


def _finite(tensor: torch.Tensor) -> bool:
    return not tensor.is_floating_point() or bool(torch.isfinite(tensor).all())


# ---- last/ read back, every part checked before it is used ------------------------------------
MAX_STATE_JSON_BYTES = 256 << 20  # counters, optimizer settings and a stream's buffered tokens
CANNOT_RESUME = "it cannot be resumed: start a new run with another --out"


def _read_record(last: Path) -> dict:
    """training_state.json as a JSON object holding a "state"."""
    path = last / STATE_JSON
    if not last.is_dir():
        raise CheckpointError(f"{last} does not exist, so there is no training to resume; start one without --resume")
    try:
        check_regular_file(path, MAX_STATE_JSON_BYTES)
        record = json.loads(path.read_text(encoding="utf-8"))
    except CheckpointError as error:
        raise CheckpointError(f"{last} has no readable training state ({error}); {CANNOT_RESUME}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise unresumable(last, f"{STATE_JSON} is not valid JSON ({first_line(error, 200)})") from None
    if not isinstance(record, dict) or "state" not in record:
        raise unresumable(last, f"{STATE_JSON} is not an object with a \"state\"")
    return record


def _check_random_states(state: dict, last: Path) -> None:
    """Refuse random states a generator would not take, tried on a throwaway generator so that
    nothing global changes before the whole of last/ has been checked."""
    rows = [state["rng"]]
    if state.get("process_rng") is not None:
        rows.extend(state["process_rng"] if isinstance(state["process_rng"], torch.Tensor) else [None])
    for row in rows:
        try:
            torch.Generator().set_state(row.clone())  # a copy: a row's view at an offset crashes set_state
        except (AttributeError, RuntimeError, TypeError, ValueError) as error:
            raise unresumable(last, f"{STATE_TENSORS}: its random state is not one a generator takes "
                                    f"({first_line(error, 200)})") from None
    cuda = state.get("cuda_rng")
    if cuda is not None and not (isinstance(cuda, (list, tuple)) and all(
            isinstance(row, torch.Tensor) and row.dtype == torch.uint8 and row.dim() == 1 for row in cuda)):
        raise unresumable(last, f"{STATE_TENSORS}: its CUDA random state is not a list of byte tensors")


def unresumable(last: Path, detail: str) -> CheckpointError:
    """The one sentence for a last/ whose files were read but hold something training cannot continue from."""
    return CheckpointError(f"{last} has a damaged training state ({detail}); {CANNOT_RESUME}")


def progress_from(progress_class: type, values: Any, path: Path):
    """progress_class(**values) for a dataclass of counters, each field of its declared type (int, float,
    bool, dict or a tuple of them); a field left out takes its default. A number whose default is not
    negative (every count, seconds, losses) must not be negative. CheckpointError naming path otherwise."""
    types = typing.get_type_hints(progress_class)
    defaults = {counter.name: counter.default for counter in fields(progress_class)}
    last, name = Path(path).parent, Path(path).name
    if not isinstance(values, dict):
        raise unresumable(last, f"{name}: progress is {json.dumps(values)[:40]}, not an object")
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise unresumable(last, f"{name}: progress has unknown fields ({', '.join(unknown)})")
    for counter, value in values.items():
        expected = _expected(types[counter], value)
        if expected is None and type(value) in (int, float) and value < 0 and not defaults[counter] < 0:
            expected = "non-negative"
        if expected:
            raise unresumable(last, f"{name}: progress.{counter} must be {expected}, not {json.dumps(value)[:40]}")
    return progress_class(**values)


def _expected(hint: Any, value: Any) -> str | None:
    """What value should be when it is not of type hint, else None (floats may be infinite, never NaN)."""
    if typing.get_origin(hint) is dict:
        numbers = isinstance(value, dict) and all(_expected(float, number) is None for number in value.values())
        return None if numbers else "an object of numbers"
    if hint is bool:
        return None if type(value) is bool else "true or false"
    if hint is int:
        return None if type(value) is int else "an integer"
    if hint is float:
        return None if type(value) in (int, float) and not math.isnan(value) else "a number"
    raise TypeError(f"cannot check a training counter of type {hint}")


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: Any, last: Path) -> None:
    """Take the saved moments and step counts, keeping this run's hyperparameters (lr, weight decay...):
    the options of a resumed run are its saved ones, and those given again win. The saved state is
    checked against the parameters first: a moment of the wrong shape would fail only at the first step."""
    problem = _optimizer_problem(optimizer, saved)
    if problem:
        raise unresumable(last, problem)
    configured = [{key: value for key, value in group.items() if key != "params"} for group in optimizer.param_groups]
    try:
        optimizer.load_state_dict(saved)
    except (ValueError, KeyError, TypeError, RuntimeError) as error:
        raise unresumable(last, f"{STATE_TENSORS}: the optimizer state does not load ({first_line(error, 200)})") from None
    for group, settings in zip(optimizer.param_groups, configured):
        group.update(settings)


def _optimizer_problem(optimizer: torch.optim.Optimizer, saved: Any) -> str | None:
    """What makes saved not the state dict of optimizer's parameters (an Adam-family one), or None."""
    if not (isinstance(saved, dict) and isinstance(saved.get("state"), dict) and isinstance(saved.get("param_groups"), list)):
        return f"{STATE_JSON}: the optimizer state is not a state dict"
    groups, ours = saved["param_groups"], optimizer.param_groups
    if len(groups) != len(ours) or not all(
            isinstance(group, dict) and isinstance(group.get("params"), list) and len(group["params"]) == len(mine["params"])
            and all(type(key) is int for key in group["params"]) for group, mine in zip(groups, ours)):
        return f"{STATE_JSON}: the optimizer's parameter groups are not the model's"
    parameters = {key: parameter for group, mine in zip(groups, ours) for key, parameter in zip(group["params"], mine["params"])}
    for key, values in saved["state"].items():
        if type(key) is not int or key not in parameters or not isinstance(values, dict):
            return f"{STATE_JSON}: the optimizer holds state for {key!r}, which is not one of the model's parameters"
        shape = tuple(parameters[key].shape)
        for name, value in values.items():
            if name == "step":
                if not (isinstance(value, torch.Tensor) and value.dim() == 0 and value.is_floating_point() and value >= 0):
                    return f"{STATE_TENSORS}: the optimizer's step count of parameter {key} is not a non-negative number"
            elif not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
                found = tuple(value.shape) if isinstance(value, torch.Tensor) else repr(value)[:40]
                return f"{STATE_TENSORS}: the optimizer's {name} of parameter {key} has shape {found}, the parameter {shape}"
    return None


def restore_process_rng(state: dict, world: World, seed: int, step: int) -> None:
    """Each process takes back its own random state from a checkpoint's state["process_rng"] (or the
    single state["rng"] of a one-process run); with a different number of processes, fresh seeded streams.
    read_last has checked that the states are ones a generator takes."""
    saved = state.get("process_rng")
    if saved is not None and len(saved) == world.size:
        torch.set_rng_state(saved[world.rank].clone())  # a copy: a row's view at an offset crashes set_state
    elif world.size == 1:
        torch.set_rng_state(state["rng"])
    else:
        torch.manual_seed(seed + world.rank + 1000 * step)


def restore_cuda_rng(state: dict, device: torch.device, last: Path) -> None:
    """Take back the GPUs' random states of a one-process CUDA run (state["cuda_rng"]), if it has them."""
    saved = state.get("cuda_rng")
    if saved is None or device.type != "cuda":
        return
    try:
        torch.cuda.set_rng_state_all(saved)
    except (RuntimeError, TypeError, ValueError, IndexError) as error:
        raise unresumable(last, f"{STATE_TENSORS}: its CUDA random state is not one the GPUs take ({first_line(error, 200)})")
