"""Training a language model: truncated BPTT, AdamW, schedules, mixed precision, streamed corpora.

The Trainer is genseq.runs' RunLoop with the language model's step (one
TBPTT window, the hidden state carried across windows), validation (mean
token NLL) and learning-rate schedules; the run directory, checkpoints,
Ctrl-C and exact resume are the run layer's (see docs/training.md). last/
also holds the carried hidden state and, for a streamed corpus, each
process's position in it.

A run starts from scratch (a tokenizer trained on the data, fresh weights) or,
fine-tuning, from a checkpoint's tokenizer and weights (init); config.json then
records where it started. A corpus with style labels trains its tokenizer with
a control token per label (see genseq.data and genseq.tokenizer).

Under torchrun the same Trainer runs data-parallel (see genseq.distributed):
each process trains its rows of the global batch through DistributedDataParallel,
and last/ holds the state of the whole batch, so a run resumes on any number of
processes that divides the batch.
"""

from __future__ import annotations

import functools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .checkpoint import (
    LANGUAGE_MODEL,
    build_saved,
    load_checkpoint,
    model_files,
    origin,
    read_config,
    read_directory_path,
    resolve,
)
from .data import ContiguousBatches, StreamingBatches, StyleWindows, TokenStream
from .distributed import World
from .errors import ConfigError, DataError
from .evaluate import score_segments, scored_count, segments
from .model import LanguageModel, ModelConfig, State, detach_state, with_vocabulary
from .runs import (
    STATE_JSON,
    STATE_TENSORS,
    RunConfig,
    RunLoop,
    RunProgress,
    cosine_factor,
    refuse_existing_run,
    resolve_device,
    unresumable,
    warmup_factor,
)
from .tokenizer import Tokenizer

__all__ = ["FINE_TUNING", "PRECISIONS", "SCHEDULES", "Progress", "TrainConfig", "Trainer", "refuse_existing_run",
           "resolve_device", "train_language_model", "training_precision"]

SCHEDULES = ("cosine", "plateau", "constant")
PRECISIONS = ("auto", "bf16", "fp32")
# What a fine-tune (a run from --init) defaults to instead of TrainConfig's from-scratch values: a sixth of the
# learning rate, so that the weights move towards the new text without forgetting the old; early stopping, as a
# small corpus is over-fitted quickly; and a budget of 3 minutes when neither --max-steps nor --max-time is given.
# Its warm-up, validations and dropout follow its budget (genseq.budget), as a run from scratch's do.
FINE_TUNING = {"lr": 5e-4, "patience": 3, "max_time": 180.0}
# With --fixed-defaults, which turns the budget rule off: a short warm-up, since the optimizer's moments start
# from nothing, and frequent validation.
FINE_TUNING_FIXED = {"warmup_steps": 10, "eval_every": 100}

@dataclass
class TrainConfig(RunConfig):
    lr: float = 3e-3
    bptt: int = 64
    weight_decay: float = 0.01
    schedule: str = "cosine"
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05  # cosine ends at lr * min_lr_ratio
    plateau_factor: float = 0.5  # plateau: lr *= factor after a validation without improvement
    precision: str = "auto"  # auto: the faster of bf16 autocast and fp32 where bf16 runs (training_precision)
    budget_rule: dict | None = None  # what genseq.budget chose for this run: {option: {"value", "reason"}}
    style_rows: int = 0  # rows added to each batch that read a style label as a prompt does (data.StyleWindows)

    def __post_init__(self):
        super().__post_init__()
        if self.bptt < 1:
            raise ConfigError(f"bptt must be at least 1, not {self.bptt}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.style_rows < 0:
            raise ConfigError("warmup_steps, weight_decay and style_rows must not be negative")
        if not 0 < self.plateau_factor < 1 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError("plateau_factor must be in (0, 1) and min_lr_ratio in [0, 1]")
        if self.max_steps is not None and self.warmup_steps >= self.max_steps:
            raise ConfigError(f"warmup_steps ({self.warmup_steps}) must be fewer than max_steps ({self.max_steps})")


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


def agreed_precision(world: World, precision: str) -> str:
    """bf16 only if every process chose it: auto's timings may differ between processes."""
    return "bf16" if world.sum([float(precision == "bf16")])[0] == world.size else "fp32"


@dataclass
class Progress(RunProgress):
    """The run layer's counters, plus the language model's place in an epoch and plateau factor."""

    window: int = 0  # next window of the current epoch
    lr_scale: float = 1.0  # the plateau schedule's running factor


class Trainer(RunLoop):
    """Trains a language model into a run directory (see genseq.runs for its layout)."""

    def __init__(
        self,
        model: LanguageModel,
        tokenizer: Tokenizer,
        train_data: TokenStream | StreamingBatches,
        valid_data: TokenStream,
        config: TrainConfig,
        out_dir: str | Path,
        world: World | None = None,
        init: dict | None = None,
    ):
        """train_data is a TokenStream, or StreamingBatches (already made for this process's rows); init, for a
        fine-tune, says which checkpoint it started from (config.json's "init")."""
        super().__init__(model, config, out_dir, world)
        self.tokenizer, self.init = tokenizer, init
        self.precision = agreed_precision(self.world, training_precision(config.precision, self.device))
        rows = self.world.rows(config.batch_size)
        if isinstance(train_data, StreamingBatches):
            if not (config.max_steps or config.max_time):
                raise ConfigError("a streamed corpus has no known length: give --max-steps or --max-time")
            self.train_batches = train_data
        else:
            self.train_batches = ContiguousBatches(train_data, config.batch_size, config.bptt, "training data", rows)
        self.style_windows = None
        if config.style_rows:
            if self.streaming or not tokenizer.styles:
                raise ConfigError("--style-rows needs a corpus with style labels (--labels-from or --label-column), "
                                  "which a streamed one cannot have")
            self.style_windows = StyleWindows(train_data, tokenizer, config.style_rows, config.seed,
                                              self.world.rows(config.style_rows, "--style-rows"))
        if len(valid_data.tokens) < 2:
            raise DataError("the validation data is too short to score (under two tokens); give more text or --valid")
        self.valid_data = valid_data
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.progress = Progress()
        self.hidden: State | None = None
        self._rate_clock = (0, time.monotonic())  # (step, time) of the last train record, for tokens per second

    @property
    def streaming(self) -> bool:
        return isinstance(self.train_batches, StreamingBatches)

    # ---- schedule -------------------------------------------------------------
    def learning_rate(self) -> float:
        config = self.config
        if config.schedule == "cosine":
            scale = cosine_factor(self.fraction_done(), config.min_lr_ratio)
        elif config.schedule == "plateau":
            scale = self.progress.lr_scale
        else:
            scale = 1.0
        return config.lr * warmup_factor(self.progress.step, config.warmup_steps) * scale

    def after_validation(self, metrics: dict[str, float], improved: bool) -> None:
        if not improved and self.config.schedule == "plateau":
            self.progress.lr_scale *= self.config.plateau_factor

    # ---- batches ----------------------------------------------------------------
    def steps_per_epoch(self) -> float:
        return math.inf if self.streaming else len(self.train_batches)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        batch = self.train_batches.window(self.progress.window)
        if self.streaming and self.world.distributed:
            # The processes' shares of a stream end at different windows: the epoch ends with the first.
            if self.world.sum([float(batch is None)])[0] > 0:
                self.train_batches.restart()
                batch = None
        if batch is not None:
            self.progress.window += 1
        return batch

    def start_epoch(self) -> None:
        self.progress.window, self.hidden = 0, None

    # ---- one step ---------------------------------------------------------------
    def autocast(self):
        """Mixed precision for forward passes: bf16 matrix products, fp32 weights and optimizer state."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, float]:
        """One TBPTT window's cross-entropy, from the carried state (which then moves on), with the step's
        style rows (--style-rows) below the window's, each from a fresh state."""
        inputs, targets = batch
        rows = inputs.size(0)
        if self.hidden is None:
            self.hidden = self.model.initial_state(rows)
        hidden = detach_state(self.hidden)
        if self.style_windows is not None:
            style_inputs, style_targets = self.style_windows.batch(self.progress.step, inputs.size(1))
            inputs, targets = torch.cat([inputs, style_inputs]), torch.cat([targets, style_targets])
            fresh = self.model.initial_state(style_inputs.size(0))
            hidden = tuple(torch.cat([carried, zeros], 1) for carried, zeros in zip(hidden, fresh))  # (L, B + S, H)
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        with self.autocast():
            logits, hidden = self.network(inputs, hidden)  # (B, T, V)
            logits, targets = logits.float().flatten(0, 1), targets.flatten()
            if self.style_windows is None:  # every process holds as many tokens, all scored
                loss = F.cross_entropy(logits, targets)
            else:  # style rows leave some targets unscored (-100): the mean over the whole batch's scored ones
                scored = self.world.sum([float((targets != -100).sum())])[0]
                loss = F.cross_entropy(logits, targets, reduction="sum") * (self.world.size / scored)
        self.hidden = tuple(h[:, :rows].float() for h in hidden)  # carried in fp32 whatever the autocast made of it
        # DistributedDataParallel averages the processes' gradients, so the loss of the whole batch is their mean.
        return loss, self.world.sum([loss.item()])[0] / self.world.size

    def fit(self) -> Progress:
        self._rate_clock = (self.progress.step, time.monotonic())
        if self.init and self.progress.last_validation_step < 0:
            self.validate_and_record()  # a fine-tune's best model is the one it starts from until a step beats it
        progress = super().fit()
        if self.hidden is not None:
            self.hidden = detach_state(self.hidden)  # the last step's graph goes
        return progress

    # ---- validation -------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean token NLL over the validation text, scored in batched segments as `genseq eval` does, and its perplexity."""
        tokens, labels = self.valid_data.tokens, tuple(self.tokenizer.styles.values())
        self.model.eval()
        with self.autocast():
            nll = score_segments(self.model, tokens, segments(tokens, self.tokenizer.eos_id), unscored=labels)
        self.model.train()
        loss = nll / scored_count(tokens, labels)
        return {"loss": loss, "ppl": math.exp(min(loss, 50))}

    def summary(self, metrics: dict[str, float]) -> str:
        return f"valid loss {metrics['loss']:.4f}, perplexity {metrics['ppl']:.2f}"

    def train_record(self, loss: float) -> dict:
        (step, since), now = self._rate_clock, time.monotonic()
        rows = self.config.batch_size + self.config.style_rows
        rate = (self.progress.step - step) * rows * self.config.bptt / max(now - since, 1e-9)
        self._rate_clock = (self.progress.step, now)
        return {**super().train_record(loss), "tokens_per_s": rate}

    def postfix(self, record: dict) -> dict:
        return {"ppl": f"{math.exp(min(record['loss'], 50)):.1f}", "tok/s": f"{record['tokens_per_s']:,.0f}",
                **super().postfix(record)}

    # ---- checkpoints --------------------------------------------------------------
    def checkpoint_files(self, **extra: Any) -> dict[str, bytes]:
        started = {"init": self.init} if self.init else {}
        return model_files(self.model, self.model.config.to_dict(), self.tokenizer, **started, **extra)

    def resume_state(self) -> tuple[dict, dict]:
        """The whole batch's carried state, and each process's position in a stream."""
        world = self.world
        hidden = None if self.hidden is None else tuple(world.gather_rows(h.detach(), 1) for h in self.hidden)
        stream = None
        if self.streaming:
            stream = [json.loads(part) for part in world.gather_bytes(json.dumps(self.train_batches.state()).encode())]
        return {"stream": stream}, {"hidden": hidden}

    def restore(self, last: Path, record: dict, state: dict) -> None:
        """The model configuration, this process's rows of the carried state and its place in a stream."""
        stream = record.get("stream")
        if stream is not None and not isinstance(stream, list):
            raise unresumable(last, f"{STATE_JSON}: its stream positions are not a list")
        if read_config(last)["model_config"] != self.model.config.to_dict():
            raise ConfigError(f"{last} was trained with a different model configuration; drop the model options or --resume")
        rows = self.world.rows(self.config.batch_size)
        hidden = self._saved_hidden(state.get("hidden"), last)
        if hidden is not None:
            self.hidden = tuple(h[:, rows.start : rows.stop].to(self.device, torch.float32) for h in hidden)
        if stream and not self.streaming:
            raise ConfigError(f"{last} is a streaming run; resume it with --streaming")
        if self.streaming:
            if not stream or len(stream) != self.world.size:
                raise ConfigError(f"{last} streamed its corpus with {len(stream or [])} process(es); "
                                  "resume a streaming run with as many")
            self.train_batches.restore(checked_stream_position(stream[self.world.rank], last / STATE_JSON))

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
    init: str | None = None,
    labels_from: str | None = None,
    label_column: str | None = None,
) -> Trainer:
    """Everything `genseq train completion` does: data, tokenizer, model, then fit(); returns the finished Trainer.

    Under torchrun, rank 0 trains the tokenizer and tokenizes the corpus into the
    cache first; the other processes receive the tokenizer and read the cache.
    streaming reads the training corpus lazily (datasets' streaming mode for a
    dataset), each process its own share, with no tokenisation pass before training.
    init (a checkpoint directory, hub id or "default") fine-tunes that model: its
    tokenizer and weights, model_options then only its dropouts. labels_from
    ("folders") or label_column gives each document a style label.
    """
    from .data import open_source, stream_pieces, tokenize
    from .distributed import world as current_world

    out_dir = Path(out_dir)
    train_config = train_config or TrainConfig()
    if streaming and not valid:
        raise ConfigError("--streaming needs --valid: a stream has no last 5% to hold out")
    if streaming and (labels_from or label_column):
        raise ConfigError("style labels (--labels-from, --label-column) cannot be used with --streaming; drop one of them")
    if train_config.style_rows and not (labels_from or label_column):
        raise ConfigError("--style-rows reads documents' style labels: give --labels-from or --label-column")
    world = current_world(resolve_device(train_config.device))
    training_precision(train_config.precision, world.device(resolve_device(train_config.device)))  # before any work
    world.rows(train_config.style_rows, "--style-rows")  # refused before any work if it does not split evenly
    labelled = functools.partial(open_source, text_column=text_column, labels_from=labels_from, label_column=label_column)
    started_from = None
    if resume:
        last = read_directory_path(out_dir / "last")
        model, tokenizer = build_saved(last, LANGUAGE_MODEL)
        started_from = read_config(last).get("init")
    else:
        if world.is_main:
            refuse_existing_run(out_dir)
        if init:
            model, tokenizer, started_from = fine_tuning_start(init, model_options or {})
            model, tokenizer, started_from = with_labels(model, tokenizer, started_from,
                                                         labelled(data, streaming=streaming).label_names())
        else:
            tokenizer = new_tokenizer(labelled(data, streaming=streaming), world, tokenizer_path, vocab_size,
                                      tokenizer_type, streaming)
            torch.manual_seed(train_config.seed)  # the same initial weights in every process (DDP also copies rank 0's)
            model = LanguageModel(ModelConfig(**{**(model_options or {}), "vocab_size": tokenizer.vocab_size}))

    def tokenized(spec: str, split: str) -> TokenStream:
        source = labelled(spec, split=split)
        if split == "validation":
            check_labels_known(source, tokenizer, "--valid has the labels {} that the training data has not")
        with world.main_first():  # rank 0 fills the token cache, the others then read it
            return tokenize(source, tokenizer, progress=train_config.progress and world.is_main)

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
    trainer = Trainer(model, tokenizer, train_data, valid_stream, train_config, out_dir, world, init=started_from)
    if resume:
        trainer.resume()
    elif train_config.budget_rule and world.is_main:  # once the data and model are ready, as training starts
        from .budget import Choice, describe

        describe({name: Choice(**choice) for name, choice in train_config.budget_rule.items()})
    trainer.fit()
    return trainer


def new_tokenizer(source, world: World, tokenizer_path: str | None, vocab_size: int, tokenizer_type: str,
                  streaming: bool) -> Tokenizer:
    """The tokenizer of a run from scratch: the one at tokenizer_path, or one trained (on rank 0, then sent to
    the others) on the source, with a control token for each of its labels."""
    from .data import iter_texts

    if tokenizer_path:
        tokenizer = Tokenizer.load(tokenizer_path)
        check_labels_known(source, tokenizer, f"--tokenizer {tokenizer_path} has no style for the labels {{}} of --data; "
                                              "train a tokenizer with them (leave out --tokenizer)")
        return tokenizer
    if world.is_main:
        texts = iter_texts(source)
        tokenizer = Tokenizer.train(_head(texts, STREAM_TOKENIZER_CHARS) if streaming else texts, vocab_size=vocab_size,
                                    model_type=tokenizer_type, styles=source.label_names())
    if world.distributed:
        tokenizer = Tokenizer(world.broadcast_bytes(tokenizer.to_bytes() if world.is_main else None))
    return tokenizer


def fine_tuning_start(init: str, dropouts: dict) -> tuple[LanguageModel, Tokenizer, dict]:
    """(model, tokenizer, config.json's "init") of a fine-tune from init: a checkpoint directory, a hub id, or
    "default" (the embedded model, recorded by its genseq version and weights' hash); dropouts replace the
    checkpoint's own."""
    from .defaults import default_model_dir

    directory = default_model_dir() if init == "default" else resolve(init)
    model, tokenizer = load_checkpoint(directory, LANGUAGE_MODEL)
    if dropouts:
        tuned = LanguageModel(ModelConfig(**{**model.config.to_dict(), **dropouts}))
        tuned.load_state_dict(model.state_dict())
        model = tuned
    return model.train(), tokenizer, origin(init, directory)


def with_labels(model: LanguageModel, tokenizer: Tokenizer, started_from: dict,
                labels: list[str]) -> tuple[LanguageModel, Tokenizer, dict]:
    """A fine-tune's model and tokenizer with a style for each of labels: the checkpoint's own, plus a control
    symbol and an embedding row for each label it lacks, which config.json's "init" lists as added."""
    added = [label for label in labels if label not in tokenizer.styles]
    if not added:
        return model, tokenizer, started_from
    tokenizer = tokenizer.with_styles(added)
    return with_vocabulary(model, tokenizer.vocab_size), tokenizer, {**started_from, "labels_added": added}


def check_labels_known(source, tokenizer: Tokenizer, problem: str) -> None:
    """Refuse a source whose labels the tokenizer has no style for; problem words it, {} for those labels."""
    unknown = [label for label in source.label_names() if label not in tokenizer.styles]
    if unknown:
        raise DataError(problem.format(", ".join(unknown)))


STREAM_TOKENIZER_CHARS = 200_000_000  # a streamed corpus trains its tokenizer on its first 200 MB of text


def _head(texts, max_chars: int):
    """The first texts of an iterator, up to max_chars characters."""
    total = 0
    for text in texts:
        yield text
        total += len(text)
        if total >= max_chars:
            return
