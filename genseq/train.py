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

import io
import json
import math
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .checkpoint import (
    join_tensors,
    load_weights,
    model_files,
    read_config,
    read_directory_path,
    read_weights,
    save_pretrained,
    split_tensors,
    atomic_write,
    write_directory,
    WEIGHTS_FILE,
)
from .data import ContiguousBatches, StreamingBatches, TokenStream
from .distributed import World
from .errors import CheckpointError, ConfigError, TrainingError
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
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 elsewhere; or "bf16", "fp32" everywhere
    progress: bool = True

    def __post_init__(self):
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
        precision = self.config.precision
        enabled = precision == "bf16" or (precision == "auto" and self.device.type == "cuda")
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

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
                f"the loss became {value} at step {self.progress.step + 1}; training stopped and the last "
                f"good checkpoint in {self.out_dir / 'last'} is kept (try a lower --lr or --clip-grad-norm)"
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
        config = read_config(last)
        if config["model_config"] != self.model.config.to_dict():
            raise ConfigError(f"{last} was trained with a different model configuration; drop the model options or --resume")
        load_weights(self.model, read_weights(last / WEIGHTS_FILE), last / WEIGHTS_FILE)
        load_optimizer_state(self.optimizer, state["optimizer"])
        self.progress = Progress(**saved["progress"])
        self.progress.finished = False
        rows = self.world.rows(self.config.batch_size)
        if state["hidden"] is not None:
            if state["hidden"][0].size(1) != self.config.batch_size:
                raise ConfigError(f"{last} was trained with --batch-size {state['hidden'][0].size(1)}; resume it with the same")
            self.hidden = tuple(h[:, rows.start : rows.stop].to(self.device, torch.float32) for h in state["hidden"])
        restore_process_rng(state, self.world, self.config.seed, self.progress.step)
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        if saved.get("stream") and not isinstance(self.train_batches, StreamingBatches):
            raise ConfigError(f"{last} is a streaming run; resume it with --streaming")
        if isinstance(self.train_batches, StreamingBatches):
            stream = saved.get("stream")
            if not stream or len(stream) != self.world.size:
                raise ConfigError(f"{last} streamed its corpus with {len(stream or [])} process(es); "
                                  "resume a streaming run with as many")
            self.train_batches.restore(stream[self.world.rank])
        if self.world.is_main:
            truncate_metrics(self.out_dir / "metrics.jsonl", self.progress.step)

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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


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
    single state["rng"] of a one-process run); with a different number of processes, fresh seeded streams."""
    saved = state.get("process_rng")
    if saved is not None and len(saved) == world.size:
        torch.set_rng_state(saved[world.rank].contiguous())
    elif world.size == 1:
        torch.set_rng_state(state["rng"])
    else:
        torch.manual_seed(seed + world.rank + 1000 * step)


def truncate_metrics(path: Path, step: int) -> None:
    """Drop the records of metrics.jsonl written after step (the checkpoint being resumed), so the log reads as one run."""
    path = Path(path)
    if path.exists():
        kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        atomic_write(path, "".join(line + "\n" for line in kept).encode())


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Take the saved moments and step counts, keeping this run's hyperparameters (lr, weight decay...):
    the options of a resumed run are its saved ones, and those given again win."""
    configured = [{key: value for key, value in group.items() if key != "params"} for group in optimizer.param_groups]
    optimizer.load_state_dict(saved)
    for group, settings in zip(optimizer.param_groups, configured):
        group.update(settings)


def write_last(out_dir: str | Path, files: dict[str, bytes], record: dict, state: dict) -> None:
    """Write out_dir/last in one atomic directory swap: a model's files, plus what training continues
    from: record (counters, JSON) and state (optimizer, RNG...: its tensors in safetensors, the rest in JSON)."""
    from safetensors.torch import save as save_safetensors

    data, tensors = split_tensors(state, "state")
    files = {**files, STATE_JSON: json.dumps({**record, "state": data}, indent=1).encode(),
             STATE_TENSORS: save_safetensors(tensors)}
    write_directory(Path(out_dir) / "last", files)


def read_last(out_dir: str | Path) -> tuple[Path, dict, dict]:
    """(out_dir/last, its record, its state) as write_last wrote them; CheckpointError when they cannot be read."""
    from safetensors.torch import load as load_safetensors

    last = read_directory_path(Path(out_dir) / "last")
    try:
        record = json.loads((last / STATE_JSON).read_text())
        state = join_tensors(record.pop("state"), load_safetensors((last / STATE_TENSORS).read_bytes()))
    except (OSError, ValueError, KeyError) as error:
        raise CheckpointError(f"{last} has no readable training state ({error}); it cannot be resumed") from None
    return last, record, state


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
    main = world.is_main
    if resume:
        last = read_directory_path(out_dir / "last")
        saved = read_config(last)
        tokenizer = Tokenizer.load(last / "tokenizer.model")
        model_config = ModelConfig(**saved["model_config"])
    else:
        if main and ((out_dir / "last").exists() or (out_dir / "config.json").exists()):
            raise ConfigError(f"{out_dir} already holds a training run; continue it with --resume or choose another --out")
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
