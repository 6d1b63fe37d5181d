"""Training a language model: truncated BPTT, AdamW, schedules, checkpoints and exact resume.

A run directory holds the best model so far (config.json, model.safetensors,
tokenizer.model: load it with from_pretrained), `last/` with everything needed
to resume (weights, optimizer, schedule, RNG, hidden state, data position),
metrics.jsonl and loss.png. Resuming from `last/` continues the run exactly:
an interrupted and resumed run ends with the same weights as one that was
never interrupted.

Under torchrun the same Trainer runs data-parallel (see genseq.distributed):
each process trains its rows of the global batch through DistributedDataParallel,
and last/ holds the state of the whole batch, so a run resumes on any number of
processes that divides the batch.
"""

from __future__ import annotations

import json
import math
import signal
import time
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .checkpoint import (
    check_buildable,
    check_regular_file,
    join_tensors,
    load_weights,
    model_config_from,
    model_files,
    read_config,
    read_directory_path,
    read_header,
    read_weights,
    save_pretrained,
    split_tensors,
    atomic_write,
    write_directory,
    WEIGHTS_FILE,
)
from .data import ContiguousBatches, StreamingBatches, TokenStream
from .distributed import World
from .errors import CheckpointError, ConfigError, TrainingError, first_line
from .figures import png_bytes, pyplot
from .model import LanguageModel, State, detach_state
from .tokenizer import Tokenizer

SCHEDULES = ("cosine", "plateau", "constant")
PRECISIONS = ("auto", "bf16", "fp32")
STATE_JSON, STATE_TENSORS = "training_state.json", "training_state.safetensors"


@dataclass
class TrainConfig:
    batch_size: int = 32
    bptt: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    schedule: str = "cosine"
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05  # cosine ends at lr * min_lr_ratio
    plateau_factor: float = 0.5  # plateau: lr *= factor after a validation without improvement
    epochs: int = 10
    max_steps: int | None = None
    max_time: float | None = None  # seconds of training, the schedule follows this budget
    clip_grad_norm: float = 1.0  # 0 turns clipping off
    patience: int = 3  # validations without improvement before stopping early; 0 never stops
    eval_every: int | None = None  # steps between validations; None: at the end of each epoch
    checkpoint_every: int | None = None  # steps between resumable checkpoints
    checkpoint_minutes: float = 10.0
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto: the faster of bf16 autocast and fp32 where bf16 runs (training_precision)
    progress: bool = True

    def __post_init__(self):
        require_finite(self)
        for name in ("batch_size", "bptt", "epochs"):
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
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        if self.clip_grad_norm < 0 or self.patience < 0 or self.warmup_steps < 0 or self.weight_decay < 0:
            raise ConfigError("clip_grad_norm, patience, warmup_steps and weight_decay must not be negative")
        if not 0 < self.plateau_factor < 1 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError("plateau_factor must be in (0, 1) and min_lr_ratio in [0, 1]")
        if self.max_steps is not None and self.warmup_steps >= self.max_steps:
            raise ConfigError(f"warmup_steps ({self.warmup_steps}) must be fewer than max_steps ({self.max_steps})")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be auto, cpu or cuda, not {self.device!r}")


def training_precision(precision: str, device: torch.device) -> str:
    """The precision a run trains in on device, "bf16" or "fp32"; refuses a bf16 this machine cannot run.

    auto takes bf16 only where it runs and was measured faster than fp32 (see
    genseq.capabilities): on a CPU without native bf16 it is several times slower.
    """
    from . import capabilities

    if precision == "auto":
        return "bf16" if capabilities.bf16_training_is_faster(str(device)) else "fp32"
    if precision == "bf16" and not capabilities.bf16_training(str(device)):
        where = "this GPU does not support bf16" if device.type == "cuda" else "this CPU's PyTorch has no bf16 LSTM kernel"
        raise ConfigError(f"precision bf16 cannot train here: {where}; use --precision fp32, or auto for the fastest that runs")
    return precision


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return torch.device(name)


@dataclass
class Progress:
    """Everything besides tensors that a resumed run must continue from."""

    step: int = 0
    epoch: int = 0
    window: int = 0  # next window of the current epoch
    elapsed: float = 0.0  # seconds of training so far, across resumes
    best_valid_loss: float = math.inf
    validations_without_improvement: int = 0
    lr_scale: float = 1.0  # the plateau schedule's running factor
    last_validation_step: int = -1
    finished: bool = False


class Trainer:
    """Runs one training job into a run directory; see the module docstring for its layout."""

    def __init__(
        self,
        model: LanguageModel,
        tokenizer: Tokenizer,
        train_data: TokenStream,
        valid_data: TokenStream,
        config: TrainConfig,
        out_dir: str | Path,
        world: World | None = None,
    ):
        """train_data is a TokenStream, or StreamingBatches (already made for this process's rows)."""
        self.config, self.tokenizer, self.world = config, tokenizer, world or World()
        self.device = self.world.device(resolve_device(config.device))
        self.precision = agreed_precision(self.world, training_precision(config.precision, self.device))
        self.model = model.to(self.device)
        self.network = self.model  # what the training step calls: the model, or DDP around it
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.network = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.out_dir = Path(out_dir)
        rows = self.world.rows(config.batch_size)
        if isinstance(train_data, StreamingBatches):
            if not (config.max_steps or config.max_time):
                raise ConfigError("a streamed corpus has no known length: give --max-steps or --max-time")
            self.train_batches, self.total_steps = train_data, config.max_steps or math.inf
        else:
            self.train_batches = ContiguousBatches(train_data, config.batch_size, config.bptt, "training data", rows)
            self.total_steps = min(config.max_steps or math.inf, config.epochs * len(self.train_batches))
        self.valid_batches = ContiguousBatches(valid_data, min(config.batch_size, 16), config.bptt, "validation data")
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.progress = Progress()
        self.hidden: State | None = None
        self._stop_requested = False
        torch.manual_seed(config.seed + self.world.rank)  # each process its own dropout masks

    # ---- schedule -------------------------------------------------------------
    def learning_rate(self) -> float:
        config, step = self.config, self.progress.step
        warmup = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
        if config.schedule == "cosine":
            done = step / self.total_steps
            if config.max_time:
                done = max(done, self.progress.elapsed / config.max_time)
            cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, done)))
            scale = config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine
        elif config.schedule == "plateau":
            scale = self.progress.lr_scale
        else:
            scale = 1.0
        return config.lr * warmup * scale

    # ---- one step ---------------------------------------------------------------
    def autocast(self):
        """Mixed precision for forward passes: bf16 matrix products, fp32 weights and optimizer state."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        """One TBPTT window: forward with the carried state, backward, clip, update."""
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        if self.hidden is None:
            self.hidden = self.model.initial_state(inputs.size(0))
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        with self.autocast():
            logits, hidden = self.network(inputs, detach_state(self.hidden))  # (B, T, V)
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        # The mean over the whole batch: every process holds as many tokens.
        value = self.world.sum([loss.item()])[0] / self.world.size
        if not math.isfinite(value):
            raise TrainingError(
                f"the loss became {value} at step {self.progress.step + 1}; training stopped and "
                f"{kept_checkpoints(self.out_dir)} (try a lower --lr or --clip-grad-norm)"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad_norm)
        self.optimizer.step()
        self.hidden = tuple(h.float() for h in hidden)  # carried in fp32 whatever the autocast made of it
        self.progress.step += 1
        return value

    # ---- validation -------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> float:
        """Mean token NLL over the validation stream, the state carried across windows."""
        self.model.eval()
        total, count, hidden = 0.0, 0, None
        for index in range(len(self.valid_batches)):
            inputs, targets = self.valid_batches.get_batch(index)
            inputs, targets = inputs.to(self.device), targets.to(self.device)
            with self.autocast():
                logits, hidden = self.model(inputs, hidden)
            total += F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="sum").item()
            count += targets.numel()
        self.model.train()
        return total / count

    # ---- the loop ---------------------------------------------------------------
    def fit(self) -> Progress:
        """Train until epochs, max_steps, max_time, early stopping or a stop request; returns the progress."""
        from tqdm import tqdm

        config, progress, main = self.config, self.progress, self.world.is_main
        if main:
            self._prepare_out_dir()
        self.model.train()
        total = self.total_steps if math.isfinite(self.total_steps) else None
        bar = tqdm(total=total, initial=progress.step, disable=not (config.progress and main), unit="step", dynamic_ncols=True)
        last_checkpoint = time.monotonic()
        tokens_since, clock = 0, time.monotonic()
        with bar, deferred_interrupt(self):
            while not self._done():
                batch = self.train_batches.window(progress.window)
                if isinstance(self.train_batches, StreamingBatches) and self.world.distributed:
                    # The processes' shares of a stream end at different windows: the epoch ends with the first.
                    if self.world.sum([float(batch is None)])[0] > 0:
                        self.train_batches.restart()
                        batch = None
                if batch is None:  # the end of an epoch
                    progress.epoch, progress.window, self.hidden = progress.epoch + 1, 0, None
                    if config.eval_every is None and self._validate_and_record():
                        break
                    continue
                started = time.monotonic()
                loss = self.train_step(*batch)
                progress.window += 1
                progress.elapsed += time.monotonic() - started
                checkpoint_due = agree(self, self._checkpoint_due(last_checkpoint))
                tokens_since += config.batch_size * config.bptt
                if progress.step % 10 == 0 or progress.step == 1:
                    rate = tokens_since / max(time.monotonic() - clock, 1e-9)
                    bar.set_postfix(self._postfix(loss, rate))
                    self._log({"split": "train", "loss": loss, "lr": self.learning_rate(), "tokens_per_s": rate})
                    tokens_since, clock = 0, time.monotonic()
                bar.update()
                if config.eval_every and progress.step % config.eval_every == 0 and self._validate_and_record():
                    break
                if checkpoint_due:
                    self.save_last()
                    last_checkpoint = time.monotonic()
            if not self._stop_requested:
                if progress.last_validation_step != progress.step and not self._stopped_early():
                    self._validate_and_record()
                progress.finished = True
            self.save_last()
        self._release_network()
        return progress

    def _release_network(self) -> None:
        """Drop the DDP wrapper and the graph of the last step (DDP must be gone before its process group is)."""
        self.network = self.model
        if self.hidden is not None:
            self.hidden = detach_state(self.hidden)

    def _postfix(self, loss: float, rate: float) -> dict:
        postfix = {"loss": f"{loss:.3f}", "ppl": f"{math.exp(min(loss, 50)):.1f}", "tok/s": f"{rate:,.0f}",
                   "lr": f"{self.learning_rate():.2e}"}
        if self.config.max_time:  # the bar's own ETA counts steps; the time budget may end the run first
            left = max(0.0, self.config.max_time - self.progress.elapsed)
            postfix["budget_left"] = f"{int(left // 60)}:{int(left % 60):02d}"
        return postfix

    def request_stop(self) -> None:
        """Stop after the current step with a resumable checkpoint (what Ctrl-C does)."""
        self._stop_requested = True

    def _done(self) -> bool:
        progress, config = self.progress, self.config
        return (
            self._stop_requested
            or progress.finished
            or progress.step >= self.total_steps
            or (config.max_time is not None and progress.elapsed >= config.max_time)
            or self._stopped_early()
            or progress.epoch >= config.epochs
        )

    def _stopped_early(self) -> bool:
        return bool(self.config.patience) and self.progress.validations_without_improvement >= self.config.patience

    def _checkpoint_due(self, last_checkpoint: float) -> bool:
        every = self.config.checkpoint_every
        if every and self.progress.step % every == 0:
            return True
        return time.monotonic() - last_checkpoint >= self.config.checkpoint_minutes * 60

    def _validate_and_record(self) -> bool:
        """Validate, keep the best model, adjust the plateau schedule; True when training should stop early."""
        progress, main = self.progress, self.world.is_main
        loss = self.world.from_main(self.validate() if main else 0.0)  # rank 0 validates, all follow its result
        progress.last_validation_step = progress.step
        improved = loss < progress.best_valid_loss
        if improved:
            progress.best_valid_loss, progress.validations_without_improvement = loss, 0
            check_finite_training(self.model, self.optimizer, self.out_dir, progress.step)
            if main:
                save_pretrained(self.out_dir, self.model, self.tokenizer, training_config=asdict(self.config),
                                training={"step": progress.step, "valid_loss": loss})
        else:
            progress.validations_without_improvement += 1
            if self.config.schedule == "plateau":
                progress.lr_scale *= self.config.plateau_factor
        self._log({"split": "valid", "loss": loss, "ppl": math.exp(min(loss, 50)), "best": improved})
        if not main:
            return self._stopped_early()
        if self.config.progress:
            from tqdm import tqdm

            tqdm.write(f"step {progress.step} epoch {progress.epoch}: valid loss {loss:.4f}, "
                       f"perplexity {math.exp(min(loss, 50)):.2f}{' (best)' if improved else ''}")
        self._plot()
        return self._stopped_early()

    # ---- checkpoints, metrics, plot -----------------------------------------------
    def _prepare_out_dir(self) -> None:
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.out_dir / ".write-test", b"")
            (self.out_dir / ".write-test").unlink()
        except OSError as error:
            raise ConfigError(f"cannot write to {self.out_dir}: {error.strerror}") from None

    def save_last(self) -> None:
        """Write the resumable checkpoint last/ as one atomic directory swap (rank 0 writes the whole batch's state)."""
        world = self.world
        check_finite_training(self.model, self.optimizer, self.out_dir, self.progress.step)
        hidden = None if self.hidden is None else tuple(world.gather_rows(h.detach(), 1) for h in self.hidden)
        rng = process_rng(world)
        stream = None
        if isinstance(self.train_batches, StreamingBatches):
            stream = [json.loads(part) for part in world.gather_bytes(json.dumps(self.train_batches.state()).encode())]
        if not world.is_main:
            return
        state = {
            "optimizer": self.optimizer.state_dict(),
            "hidden": hidden,
            "rng": rng[0].clone(),
            "process_rng": rng,
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" and not world.distributed else None,
        }
        files = model_files(self.model, self.model.config.to_dict(), self.tokenizer, training_config=asdict(self.config))
        write_last(self.out_dir, files, {"progress": asdict(self.progress), "stream": stream}, state)

    def resume(self, run_dir: str | Path) -> None:
        """Load last/ of run_dir: weights, optimizer, progress, RNG and hidden state."""
        last, saved, state = read_last(run_dir)
        progress = progress_from(Progress, saved.get("progress"), last / STATE_JSON)
        stream = saved.get("stream")
        if stream is not None and not isinstance(stream, list):
            raise unresumable(last, f"{STATE_JSON}: its stream positions are not a list")
        config = read_config(last)
        if config["model_config"] != self.model.config.to_dict():
            raise ConfigError(f"{last} was trained with a different model configuration; drop the model options or --resume")
        load_weights(self.model, read_weights(last / WEIGHTS_FILE), last / WEIGHTS_FILE)
        load_optimizer_state(self.optimizer, state["optimizer"], last)
        self.progress, progress.finished = progress, False
        rows = self.world.rows(self.config.batch_size)
        hidden = self._saved_hidden(state.get("hidden"), last)
        if hidden is not None:
            self.hidden = tuple(h[:, rows.start : rows.stop].to(self.device, torch.float32) for h in hidden)
        restore_process_rng(state, self.world, self.config.seed, self.progress.step)
        restore_cuda_rng(state, self.device, last)
        if stream and not isinstance(self.train_batches, StreamingBatches):
            raise ConfigError(f"{last} is a streaming run; resume it with --streaming")
        if isinstance(self.train_batches, StreamingBatches):
            if not stream or len(stream) != self.world.size:
                raise ConfigError(f"{last} streamed its corpus with {len(stream or [])} process(es); "
                                  "resume a streaming run with as many")
            self.train_batches.restore(checked_stream_position(stream[self.world.rank], last / STATE_JSON))
        if self.world.is_main:
            truncate_metrics(self.out_dir / "metrics.jsonl", self.progress.step)

    def _saved_hidden(self, hidden, last: Path) -> State | None:
        """The whole batch's carried state from last/, checked against this model and --batch-size."""
        if hidden is None:
            return None
        expected = [tuple(h.shape) for h in self.model.initial_state(self.config.batch_size)]
        if not isinstance(hidden, (list, tuple)) or len(hidden) != len(expected) or not all(
                isinstance(h, torch.Tensor) and h.dim() == 3 for h in hidden):
            raise unresumable(last, f"{STATE_JSON}: the hidden state is not {len(expected)} tensor(s) of 3 dimensions")
        if hidden[0].size(1) != self.config.batch_size:
            raise ConfigError(f"{last} was trained with --batch-size {hidden[0].size(1)}; resume it with the same")
        shapes = [tuple(h.shape) for h in hidden]
        if shapes != expected:
            raise unresumable(last, f"{STATE_TENSORS}: the hidden state has shapes {shapes}, the model's are {expected}")
        return tuple(hidden)

    def _log(self, record: dict) -> None:
        if not self.world.is_main:
            return
        record = {"step": self.progress.step, "epoch": self.progress.epoch, "time": round(self.progress.elapsed, 3), **record}
        with open(self.out_dir / "metrics.jsonl", "a") as file:
            file.write(json.dumps(record) + "\n")

    def _plot(self) -> None:
        atomic_write(self.out_dir / "loss.png", plot_metrics(self.out_dir / "metrics.jsonl"))


def plot_metrics(metrics_path: Path) -> bytes:
    """A PNG of train/valid loss and valid perplexity against steps."""
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
    loss_axis.set(xlabel="step", ylabel="loss (nats/token)", title="loss")
    loss_axis.legend()
    ppl_axis.set(xlabel="step", ylabel="token perplexity", title="validation perplexity")
    return png_bytes(figure, dpi=100)


# ---- shared by the trainers (the captioning plugin's too) ---------------------------------
class deferred_interrupt:
    """Turn the first Ctrl-C into a stop request honoured between steps; a second one aborts.

    trainer has request_stop() and _stop_requested.
    """

    def __init__(self, trainer: Trainer):
        self.trainer = trainer

    def __enter__(self):
        self.previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):
            if self.trainer._stop_requested:
                raise KeyboardInterrupt
            self.trainer.request_stop()

        try:
            signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread: leave signals alone
            self.previous = None
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def refuse_existing_run(out_dir: str | Path) -> None:
    """Refuse to start a new run in out_dir when it holds one: its checkpoints would be overwritten."""
    out_dir = Path(out_dir)
    if (out_dir / "last").exists() or (out_dir / "config.json").exists():
        raise ConfigError(f"{out_dir} already holds a training run; continue it with --resume or choose another --out")


def agreed_precision(world: World, precision: str) -> str:
    """bf16 only if every process chose it: auto's timings may differ between processes."""
    return "bf16" if world.sum([float(precision == "bf16")])[0] == world.size else "fp32"


def require_finite(config) -> None:
    """Refuse a training config whose numbers include NaN or infinity (a comparison with NaN is
    always false, so the range checks after this would let it through)."""
    for field in fields(config):
        value = getattr(config, field.name)
        if type(value) is float and not math.isfinite(value):
            raise ConfigError(f"{field.name} must be a finite number, not {value}")


def kept_checkpoints(out_dir: str | Path) -> str:
    """What a run directory holds to go back to, in words, for an error that stops training."""
    out_dir = Path(out_dir)
    kept = []
    if (read_directory_path(out_dir / "last") / STATE_JSON).exists():
        kept.append(f"the last good checkpoint {out_dir / 'last'} (continue it with --resume)")
    if (out_dir / WEIGHTS_FILE).exists():
        kept.append(f"the best model so far in {out_dir}")
    if not kept:
        return "no checkpoint had been saved yet"
    return " and ".join(kept) + (" are kept" if len(kept) == 2 else " is kept")


def check_finite_training(model: torch.nn.Module, optimizer: torch.optim.Optimizer, out_dir: str | Path,
                          step: int) -> None:
    """Before a save: refuse weights or optimizer state holding NaN or infinity, which would
    replace a good checkpoint with one that cannot generate or be resumed."""
    broken = next((f"weights ({name})" for name, tensor in model.state_dict().items() if not _finite(tensor)), None)
    if broken is None:
        moments = (value for state in optimizer.state.values() for value in state.values() if isinstance(value, torch.Tensor))
        broken = next(("optimizer state" for value in moments if not _finite(value)), None)
    if broken is not None:
        raise TrainingError(
            f"the {broken} became NaN or infinite at step {step}, so they were not saved; training stopped and "
            f"{kept_checkpoints(out_dir)} (try a lower --lr or --clip-grad-norm)"
        )


def _finite(tensor: torch.Tensor) -> bool:
    return not tensor.is_floating_point() or bool(torch.isfinite(tensor).all())


def agree(trainer, checkpoint_due: bool) -> bool:
    """Make the processes of a distributed run agree on what steers a training loop: rank 0's
    clock (trainer.progress.elapsed) and checkpoint timer, and a stop asked of any of them.
    -> whether to checkpoint now. A single process keeps its own values."""
    world = trainer.world
    if not world.distributed:
        return checkpoint_due
    main = world.is_main
    elapsed, stop, due = world.sum([trainer.progress.elapsed if main else 0.0, float(trainer._stop_requested),
                                    float(checkpoint_due and main)])
    trainer.progress.elapsed, trainer._stop_requested = elapsed, stop > 0
    return due > 0


def process_rng(world: World) -> torch.Tensor:
    """(processes, n): every process's CPU random state (its dropout stream), for a checkpoint."""
    return world.gather_rows(torch.get_rng_state()[None], 0)


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


def truncate_metrics(path: Path, step: int) -> None:
    """Drop the records of metrics.jsonl written after step (the checkpoint being resumed), so the log reads as one run."""
    path = Path(path)
    if path.exists():
        kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        atomic_write(path, "".join(line + "\n" for line in kept).encode())


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


def write_last(out_dir: str | Path, files: dict[str, bytes], record: dict, state: dict) -> None:
    """Write out_dir/last in one atomic directory swap: a model's files, plus what training continues
    from: record (counters, JSON) and state (optimizer, RNG...: its tensors in safetensors, the rest in JSON)."""
    from safetensors.torch import save as save_safetensors

    data, tensors = split_tensors(state, "state")
    files = {**files, STATE_JSON: json.dumps({**record, "state": data}, indent=1).encode(),
             STATE_TENSORS: save_safetensors(tensors)}
    write_directory(Path(out_dir) / "last", files)


# ---- reading last/ back, every part checked before it is used ----------------------------------------
MAX_STATE_JSON_BYTES = 256 << 20  # counters, optimizer settings and a stream's buffered tokens
CANNOT_RESUME = "it cannot be resumed: start a new run with another --out"


def read_last(out_dir: str | Path) -> tuple[Path, dict, dict]:
    """(out_dir/last, its record, its state) as write_last wrote them; one CheckpointError naming the file
    when either file is missing, damaged or not what write_last writes.

    The state has an "optimizer" (checked against the parameters by load_optimizer_state) and an
    "rng" (with "process_rng", if present), each a state a random generator takes.
    """
    last = read_directory_path(Path(out_dir) / "last")
    record = _read_record(last)
    try:
        read_header(last / STATE_TENSORS)  # sizes checked against the file before anything is read
        tensors = read_weights(last / STATE_TENSORS)  # ... and the tensors checked to be finite
    except CheckpointError as error:
        raise CheckpointError(f"{last} has no readable training state ({error}); {CANNOT_RESUME}") from None
    try:
        state = join_tensors(record.pop("state"), tensors)
    except (KeyError, TypeError, ValueError) as error:
        raise unresumable(last, f"{STATE_JSON} refers to tensors {STATE_TENSORS} does not hold ({first_line(error, 200)})") from None
    if not isinstance(state, dict) or not isinstance(state.get("optimizer"), dict) or "rng" not in state:
        raise unresumable(last, f"{STATE_JSON}: its \"state\" does not hold the optimizer's and the random state")
    _check_random_states(state, last)
    return last, record, state


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
    """progress_class(**values) for a dataclass of counters, each field of its declared type; a
    counter that starts non-negative must still be (see checked_fields)."""
    hints = typing.get_type_hints(progress_class)
    defaults = {field.name: field.default for field in fields(progress_class)}
    return progress_class(**checked_fields(values, hints, path, "progress", defaults=defaults))


def checked_fields(values: Any, types: dict[str, Any], path: Path, name: str, defaults: dict | None = None) -> dict:
    """values, an object with only the fields in types, each of its type (int, float, bool, dict or a
    tuple of them); all fields are needed unless defaults gives theirs. A number whose default is not
    negative (every count, seconds, losses) must not be negative. CheckpointError naming path otherwise."""
    defaults = defaults or {}
    last = Path(path).parent
    if not isinstance(values, dict):
        raise unresumable(last, f"{Path(path).name}: {name} is {json.dumps(values)[:40]}, not an object")
    unknown, missing = sorted(set(values) - set(types)), sorted(set(types) - set(values) - set(defaults))
    if unknown:
        raise unresumable(last, f"{Path(path).name}: {name} has unknown fields ({', '.join(unknown)})")
    if missing:
        raise unresumable(last, f"{Path(path).name}: {name} lacks {', '.join(missing)}")
    for field, value in values.items():
        expected = _expected(types[field], value)
        if expected is None and type(value) in (int, float) and value < 0 and not defaults.get(field, 0) < 0:
            expected = "non-negative"
        if expected:
            raise unresumable(last, f"{Path(path).name}: {name}.{field} must be {expected}, not {json.dumps(value)[:40]}")
    return values


def _expected(hint: Any, value: Any) -> str | None:
    """What value should be when it is not of type hint, else None (floats may be infinite, never NaN)."""
    if hint is bool:
        return None if type(value) is bool else "true or false"
    if hint is int:
        return None if type(value) is int else "an integer"
    if hint is float:
        return None if type(value) in (int, float) and not math.isnan(value) else "a number"
    if hint is dict:
        return None if isinstance(value, dict) else "an object"
    if typing.get_origin(hint) is tuple:
        items = typing.get_args(hint)
        fits = isinstance(value, (list, tuple)) and len(value) == len(items) and all(
            _expected(item, v) is None for item, v in zip(items, value))
        return None if fits else f"a list of {len(items)} numbers"
    raise TypeError(f"cannot check a training counter of type {hint}")


def checked_stream_position(position: Any, path: Path) -> dict:
    """A process's saved position in a streamed corpus (StreamingBatches.state()): the pieces taken and the rows' buffers."""
    ok = (isinstance(position, dict) and type(position.get("taken")) is int and position["taken"] >= 0
          and isinstance(position.get("buffers"), list)
          and all(isinstance(row, list) and all(type(i) is int and i >= 0 for i in row) for row in position["buffers"]))
    if not ok:
        raise unresumable(Path(path).parent, f"{Path(path).name}: its stream position is not one a stream takes")
    return position


def train_language_model(
    data: str,
    out_dir: str | Path,
    valid: str | None = None,
    model_options: dict | None = None,
    train_config: TrainConfig | None = None,
    vocab_size: int = 8000,
    tokenizer_type: str = "unigram",
    tokenizer_path: str | None = None,
    text_column: str = "text",
    resume: bool = False,
    streaming: bool = False,
) -> Trainer:
    """Everything `genseq train lm` does: data, tokenizer, model, then fit(); returns the finished Trainer.

    Under torchrun, rank 0 trains the tokenizer and tokenizes the corpus into the
    cache first; the other processes receive the tokenizer and read the cache.
    streaming reads the training corpus lazily (datasets' streaming mode for a
    dataset), each process its own share, with no tokenisation pass before training.
    """
    from .data import iter_texts, open_source, stream_pieces, tokenize
    from .distributed import world as current_world
    from .model import ModelConfig

    out_dir = Path(out_dir)
    train_config = train_config or TrainConfig()
    if streaming and not valid:
        raise ConfigError("--streaming needs --valid: a stream has no last 5% to hold out")
    world = current_world(resolve_device(train_config.device))
    training_precision(train_config.precision, world.device(resolve_device(train_config.device)))  # before any work
    main = world.is_main
    if resume:
        last = read_directory_path(out_dir / "last")
        tokenizer = Tokenizer.load(last / "tokenizer.model")
        header = read_header(last / WEIGHTS_FILE)
        saved = read_config(last).get("model_config")
        model_config = model_config_from(ModelConfig, saved, last / "config.json", header)
        check_buildable(lambda: LanguageModel(model_config), header, last / WEIGHTS_FILE)
    else:
        if main:
            refuse_existing_run(out_dir)
        source = open_source(data, text_column, streaming=streaming)
        tokenizer = None
        if tokenizer_path:
            tokenizer = Tokenizer.load(tokenizer_path)
        elif main:
            texts = iter_texts(source)
            tokenizer = Tokenizer.train(_head(texts, STREAM_TOKENIZER_CHARS) if streaming else texts,
                                        vocab_size=vocab_size, model_type=tokenizer_type)
        if not tokenizer_path and world.distributed:
            tokenizer = Tokenizer(world.broadcast_bytes(tokenizer.to_bytes() if main else None))
        model_config = ModelConfig(**{**(model_options or {}), "vocab_size": tokenizer.vocab_size})

    def tokenized(spec: str, split: str) -> TokenStream:
        with world.main_first():  # rank 0 fills the token cache, the others then read it
            return tokenize(open_source(spec, text_column, split=split), tokenizer, progress=train_config.progress and main)

    if streaming:
        rows = len(world.rows(train_config.batch_size))
        train_data = StreamingBatches(
            lambda: stream_pieces(open_source(data, text_column, streaming=True), world.rank, world.size),
            tokenizer, rows, train_config.bptt,
        )
        valid_stream = tokenized(valid, "validation")
    else:
        train_data = tokenized(data, "train")
        if valid:
            valid_stream = tokenized(valid, "validation")
        else:
            train_data, valid_stream = train_data.split_tail(0.05)
    torch.manual_seed(train_config.seed)  # the same initial weights in every process (DDP also copies rank 0's)
    trainer = Trainer(LanguageModel(model_config), tokenizer, train_data, valid_stream, train_config, out_dir, world)
    if resume:
        trainer.resume(out_dir)
    trainer.fit()
    return trainer


STREAM_TOKENIZER_CHARS = 200_000_000  # a streamed corpus trains its tokenizer on its first 200 MB of text


def _head(texts, max_chars: int):
    """The first texts of an iterator, up to max_chars characters."""
    total = 0
    for text in texts:
        yield text
        total += len(text)
        if total >= max_chars:
            return
