"""Training a language model: truncated BPTT, AdamW, schedules, checkpoints and exact resume.

A run directory holds the best model so far (config.json, model.safetensors,
tokenizer.model: load it with from_pretrained), `last/` with everything needed
to resume (weights, optimizer, schedule, RNG, hidden state, data position),
metrics.jsonl and loss.png. Resuming from `last/` continues the run exactly:
an interrupted and resumed run ends with the same weights as one that was
never interrupted.
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
from .data import ContiguousBatches, TokenStream
from .errors import CheckpointError, ConfigError, TrainingError
from .model import LanguageModel, State, detach_state
from .tokenizer import Tokenizer

SCHEDULES = ("cosine", "plateau", "constant")
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
    ):
        self.config, self.tokenizer = config, tokenizer
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        self.out_dir = Path(out_dir)
        self.train_batches = ContiguousBatches(train_data, config.batch_size, config.bptt, "training data")
        self.valid_batches = ContiguousBatches(valid_data, min(config.batch_size, 16), config.bptt, "validation data")
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.progress = Progress()
        self.hidden: State | None = None
        self._stop_requested = False
        torch.manual_seed(config.seed)
        self.total_steps = config.max_steps or config.epochs * len(self.train_batches)
        if config.max_steps:
            self.total_steps = min(config.max_steps, config.epochs * len(self.train_batches))

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
    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        """One TBPTT window: forward with the carried state, backward, clip, update."""
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        if self.hidden is None:
            self.hidden = self.model.initial_state(inputs.size(0))
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            logits, hidden = self.model(inputs, detach_state(self.hidden))  # (B, T, V)
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        if not torch.isfinite(loss):
            raise TrainingError(
                f"the loss became {loss.item()} at step {self.progress.step + 1}; training stopped and the last "
                f"good checkpoint in {self.out_dir / 'last'} is kept (try a lower --lr or --clip-grad-norm)"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad_norm)
        self.optimizer.step()
        self.hidden = hidden
        self.progress.step += 1
        return loss.item()

    # ---- validation -------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> float:
        """Mean token NLL over the validation stream, the state carried across windows."""
        self.model.eval()
        total, count, hidden = 0.0, 0, None
        for index in range(len(self.valid_batches)):
            inputs, targets = self.valid_batches.get_batch(index)
            inputs, targets = inputs.to(self.device), targets.to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                logits, hidden = self.model(inputs, hidden)
            total += F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="sum").item()
            count += targets.numel()
        self.model.train()
        return total / count

    # ---- the loop ---------------------------------------------------------------
    def fit(self) -> Progress:
        """Train until epochs, max_steps, max_time, early stopping or a stop request; returns the progress."""
        from tqdm import tqdm

        config, progress = self.config, self.progress
        self._prepare_out_dir()
        self.model.train()
        bar = tqdm(total=self.total_steps, initial=progress.step, disable=not config.progress, unit="step", dynamic_ncols=True)
        last_checkpoint = time.monotonic()
        tokens_since, clock = 0, time.monotonic()
        with bar, _deferred_interrupt(self):
            while not self._done():
                if progress.window >= len(self.train_batches):
                    progress.epoch, progress.window, self.hidden = progress.epoch + 1, 0, None
                    if config.eval_every is None and self._validate_and_record():
                        break
                    continue
                started = time.monotonic()
                loss = self.train_step(*self.train_batches.get_batch(progress.window))
                progress.window += 1
                progress.elapsed += time.monotonic() - started
                tokens_since += config.batch_size * config.bptt
                if progress.step % 10 == 0 or progress.step == 1:
                    rate = tokens_since / max(time.monotonic() - clock, 1e-9)
                    bar.set_postfix(self._postfix(loss, rate))
                    self._log({"split": "train", "loss": loss, "lr": self.learning_rate(), "tokens_per_s": rate})
                    tokens_since, clock = 0, time.monotonic()
                bar.update()
                if config.eval_every and progress.step % config.eval_every == 0 and self._validate_and_record():
                    break
                if self._checkpoint_due(last_checkpoint):
                    self.save_last()
                    last_checkpoint = time.monotonic()
            if not self._stop_requested:
                if progress.last_validation_step != progress.step and not self._stopped_early():
                    self._validate_and_record()
                progress.finished = True
            self.save_last()
        return progress

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
        progress = self.progress
        loss = self.validate()
        progress.last_validation_step = progress.step
        improved = loss < progress.best_valid_loss
        if improved:
            progress.best_valid_loss, progress.validations_without_improvement = loss, 0
            save_pretrained(self.out_dir, self.model, self.tokenizer, training_config=asdict(self.config),
                            training={"step": progress.step, "valid_loss": loss})
        else:
            progress.validations_without_improvement += 1
            if self.config.schedule == "plateau":
                progress.lr_scale *= self.config.plateau_factor
        self._log({"split": "valid", "loss": loss, "ppl": math.exp(min(loss, 50)), "best": improved})
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
        """Write the resumable checkpoint last/ as one atomic directory swap."""
        state = {
            "optimizer": self.optimizer.state_dict(),
            "hidden": self.hidden,
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
        }
        data, tensors = split_tensors(state, "state")
        from safetensors.torch import save as save_safetensors

        files = model_files(self.model, self.model.config.to_dict(), self.tokenizer, training_config=asdict(self.config))
        files[STATE_JSON] = json.dumps({"progress": asdict(self.progress), "state": data}, indent=1).encode()
        files[STATE_TENSORS] = save_safetensors(tensors)
        write_directory(self.out_dir / "last", files)

    def resume(self, run_dir: str | Path) -> None:
        """Load last/ of run_dir: weights, optimizer, progress, RNG and hidden state."""
        from safetensors.torch import load as load_safetensors

        last = read_directory_path(Path(run_dir) / "last")
        config = read_config(last)
        if config["model_config"] != self.model.config.to_dict():
            raise ConfigError(f"{last} was trained with a different model configuration; drop the model options or --resume")
        load_weights(self.model, read_weights(last / WEIGHTS_FILE), last / WEIGHTS_FILE)
        try:
            saved = json.loads((last / STATE_JSON).read_text())
            tensors = load_safetensors((last / STATE_TENSORS).read_bytes())
        except (OSError, ValueError) as error:
            raise CheckpointError(f"{last} has no readable training state ({error}); it cannot be resumed") from None
        state = join_tensors(saved["state"], tensors)
        self.optimizer.load_state_dict(state["optimizer"])
        self.progress = Progress(**saved["progress"])
        self.progress.finished = False
        self.hidden = tuple(h.to(self.device) for h in state["hidden"]) if state["hidden"] is not None else None
        torch.set_rng_state(state["rng"])
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self._truncate_metrics()

    def _log(self, record: dict) -> None:
        record = {"step": self.progress.step, "epoch": self.progress.epoch, "time": round(self.progress.elapsed, 3), **record}
        with open(self.out_dir / "metrics.jsonl", "a") as file:
            file.write(json.dumps(record) + "\n")

    def _truncate_metrics(self) -> None:
        """Drop records written after the checkpoint being resumed, so the log reads as one run."""
        path = self.out_dir / "metrics.jsonl"
        if path.exists():
            kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= self.progress.step]
            atomic_write(path, "".join(line + "\n" for line in kept).encode())

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


class _deferred_interrupt:
    """Turn the first Ctrl-C into a stop request honoured between steps; a second one aborts."""

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
) -> Trainer:
    """Everything `genseq train lm` does: data, tokenizer, model, then fit(); returns the finished Trainer."""
    from .data import iter_texts, open_source, tokenize
    from .model import ModelConfig

    out_dir = Path(out_dir)
    train_config = train_config or TrainConfig()
    if resume:
        last = read_directory_path(out_dir / "last")
        saved = read_config(last)
        tokenizer = Tokenizer.load(last / "tokenizer.model")
        model_config = ModelConfig(**saved["model_config"])
    else:
        if (out_dir / "last").exists() or (out_dir / "config.json").exists():
            raise ConfigError(f"{out_dir} already holds a training run; continue it with --resume or choose another --out")
        source = open_source(data, text_column)
        tokenizer = (
            Tokenizer.load(tokenizer_path) if tokenizer_path
            else Tokenizer.train(iter_texts(source), vocab_size=vocab_size, model_type=tokenizer_type)
        )
        model_config = ModelConfig(**{**(model_options or {}), "vocab_size": tokenizer.vocab_size})
    train_stream = tokenize(open_source(data, text_column), tokenizer, progress=train_config.progress)
    if valid:
        valid_stream = tokenize(open_source(valid, text_column, split="validation"), tokenizer, progress=train_config.progress)
    else:
        train_stream, valid_stream = train_stream.split_tail(0.05)
    trainer = Trainer(LanguageModel(model_config), tokenizer, train_stream, valid_stream, train_config, out_dir)
    if resume:
        trainer.resume(out_dir)
    trainer.fit()
    return trainer
