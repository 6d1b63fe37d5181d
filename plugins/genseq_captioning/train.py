"""Training a captioner: cached encoder features, teacher forcing, early stopping on validation BLEU-4, exact resume.

A run directory is laid out like genseq's language-model runs: the best
captioner so far (config.json, model.safetensors, tokenizer.model: load it
with load_captioner), `last/` with everything needed to resume (weights,
optimizer, progress, RNG), metrics.jsonl and loss.png. Each epoch visits the
(image, caption) pairs in an order drawn from the seed and the epoch number,
so a resumed run continues with the very batches an uninterrupted one would.

The loss is the captions' cross-entropy plus Show, Attend and Tell's doubly
stochastic regularisation, lambda * mean_i (1 - sum_t alpha_ti)^2, which pushes
the decoder to look at every part of the image over the course of a caption.

Under torchrun it trains data-parallel as genseq's language models do (see
genseq.distributed): each process takes its part of every batch, and its loss
is weighted by its share of the batch's tokens, so that the gradients DDP
averages are those of the whole batch.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genseq import Tokenizer
from genseq.checkpoint import (
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    atomic_write,
    load_weights,
    read_config,
    read_directory_path,
    read_header,
    read_weights,
)
from genseq.distributed import World
from genseq.errors import ConfigError, DataError, TrainingError
from genseq.generation import GenerationConfig
from genseq.train import (
    STATE_JSON,
    agree,
    check_finite_training,
    kept_checkpoints,
    require_finite,
    deferred_interrupt,
    plot_metrics,
    process_rng,
    progress_from,
    load_optimizer_state,
    read_last,
    refuse_existing_run,
    resolve_device,
    restore_process_rng,
    truncate_metrics,
    write_last,
)

from .bleu import caption_bleu
from .captioner import KIND, Captioner, build
from .data import CaptionSet, Features, cached_features, load_caption_set
from .encoder import LITE0, EncoderConfig, load_pretrained, round_to_storage
from .evaluate import decode_all



@dataclass
class CaptionTrainConfig:
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    encoder_lr: float = 1e-4  # for fine-tuned encoder stages
    weight_decay: float = 0.0
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05  # the cosine schedule ends at lr * min_lr_ratio
    clip_grad_norm: float = 5.0  # 0 turns clipping off
    attention_regularization: float = 1.0  # lambda of the doubly stochastic regularisation
    patience: int = 5  # validations without a better BLEU-4 before stopping; 0 never stops
    max_caption_tokens: int = 40  # longer captions are cut for training
    max_new_tokens: int = 40  # caption length limit when validating
    max_time: float | None = None  # seconds of training
    eval_batch_size: int = 64
    checkpoint_minutes: float = 5.0
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self):
        require_finite(self)
        for name in ("epochs", "batch_size", "max_caption_tokens", "max_new_tokens", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not self.lr > 0 or not self.encoder_lr > 0:
            raise ConfigError(f"lr and encoder_lr must be positive, not {self.lr} and {self.encoder_lr}")
        for name in ("weight_decay", "warmup_steps", "clip_grad_norm", "attention_regularization", "patience"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, not {getattr(self, name)}")
        if self.max_time is not None and not self.max_time > 0:
            raise ConfigError(f"max_time must be positive, not {self.max_time}")


@dataclass
class Progress:
    """Everything besides tensors that a resumed run continues from."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # next batch of the current epoch
    elapsed: float = 0.0  # seconds of training, across resumes
    best_bleu4: float = -1.0
    best_valid_loss: float = math.inf
    validations_without_improvement: int = 0
    finished: bool = False


# ---- data -----------------------------------------------------------------------------
@dataclass
class Pairs:
    """Every (image, caption) pair of the readable images, as image rows and token ids."""

    images: torch.Tensor  # (P,) row of each pair's image in the features
    captions: list[list[int]]

    @classmethod
    def of(cls, data: CaptionSet, features: Features, tokenizer: Tokenizer, max_tokens: int) -> "Pairs":
        images, captions = [], []
        for index in features.readable:
            for caption in data.references[index]:
                images.append(index)
                captions.append(tokenizer.encode(caption)[:max_tokens])
        if not captions:
            raise DataError(f"{data.name} has no readable image with a caption")
        return cls(torch.tensor(images), captions)

    def __len__(self) -> int:
        return len(self.captions)

    def batch(self, rows: torch.Tensor, bos: int, eos: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (image rows (B,), inputs (B, T) = [BOS, w...], targets (B, T) = [w..., EOS]), padded with 0."""
        captions = [self.captions[i] for i in rows.tolist()]
        width = max(len(c) for c in captions) + 1
        inputs = torch.zeros(len(captions), width, dtype=torch.long)
        targets = torch.zeros(len(captions), width, dtype=torch.long)
        for row, caption in enumerate(captions):
            inputs[row, : len(caption) + 1] = torch.tensor([bos, *caption])
            targets[row, : len(caption) + 1] = torch.tensor([*caption, eos])
        return self.images[rows], inputs, targets


class TeacherForced(nn.Module):
    """The captioner's training forward pass as one module (what DistributedDataParallel wraps)."""

    def __init__(self, captioner: Captioner):
        super().__init__()
        self.captioner = captioner

    def forward(self, features: torch.Tensor, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached frozen-encoder features (B, ...), inputs (B, T) -> (logits (B, T, V), alphas (B, T, N))."""
        return self.captioner.decoder(self.captioner.encoder.finish(features.float()), inputs)


def loss_sums(forward, pad_id: int, features: torch.Tensor, inputs, targets) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """-> (cross-entropy summed over the tokens, (1 - coverage)^2 summed over images and locations, tokens, cells)."""
    logits, alphas = forward(features, inputs)  # (B, T, V), (B, T, N)
    mask = targets != pad_id
    cross_entropy = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=pad_id, reduction="sum")
    coverage = (alphas * mask[..., None]).sum(1)  # (B, N): how much each location was looked at over the caption
    return cross_entropy, ((1 - coverage) ** 2).sum(), int(mask.sum()), coverage.numel()


def caption_loss(captioner: Captioner, features: torch.Tensor, inputs, targets, regularization: float):
    """-> (total loss, cross-entropy per token) of a teacher-forced batch; features are the cached frozen ones."""
    cross_entropy, uncovered, tokens, cells = loss_sums(TeacherForced(captioner), captioner.tokenizer.pad_id,
                                                        features, inputs, targets)
    cross_entropy = cross_entropy / tokens
    if not captioner.decoder.config.attention or regularization == 0:
        return cross_entropy, cross_entropy
    return cross_entropy + regularization * uncovered / cells, cross_entropy


# ---- the trainer -----------------------------------------------------------------------
class CaptionTrainer:
    """Runs one training job into a run directory; see the module docstring for its layout."""

    def __init__(self, captioner: Captioner, train_data: CaptionSet, valid_data: CaptionSet,
                 config: CaptionTrainConfig, out_dir: str | Path, world: World | None = None):
        self.config, self.out_dir, self.world = config, Path(out_dir), world or World()
        self.world.rows(config.batch_size)  # the batch must split evenly over the processes
        self.device = self.world.device(resolve_device(config.device))
        self.captioner = captioner.to(self.device)
        self.forward = TeacherForced(self.captioner)
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.forward = DistributedDataParallel(self.forward, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.tokenizer = captioner.tokenizer
        self.valid_data = valid_data
        self.train_features = self._features(train_data, "training")
        self.valid_features = self._features(valid_data, "validation")
        self.pairs = Pairs.of(train_data, self.train_features, self.tokenizer, config.max_caption_tokens)
        self.optimizer = torch.optim.AdamW(self._parameter_groups(), lr=config.lr, weight_decay=config.weight_decay)
        self.progress = Progress()
        self._stop_requested = False
        self.batches_per_epoch = math.ceil(len(self.pairs) / config.batch_size)
        self.total_steps = config.epochs * self.batches_per_epoch
        torch.manual_seed(config.seed + self.world.rank)

    def _features(self, data: CaptionSet, what: str) -> Features:
        main = self.world.is_main
        with self.world.main_first():  # rank 0 computes and caches the features, the others then read them
            features = cached_features(self.captioner.encoder, data.images, progress=self.config.progress and main,
                                       device=self.device)
        if features.errors and self.config.progress and main:
            from tqdm import tqdm

            tqdm.write(f"skipping {len(features.errors)} unreadable {what} image(s), e.g.: {next(iter(features.errors.values()))}")
        return features

    def _parameter_groups(self) -> list[dict]:
        groups = [{"params": list(self.captioner.decoder.parameters()), "lr_scale": 1.0}]
        encoder = [p for stage in self.captioner.encoder.trainable for p in stage.parameters()]
        if encoder:
            groups.append({"params": encoder, "lr_scale": self.config.encoder_lr / self.config.lr})
        return groups

    # ---- schedule -----------------------------------------------------------------------
    def learning_rate(self) -> float:
        config, step = self.config, self.progress.step
        warmup = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
        done = step / max(self.total_steps, 1)
        if config.max_time:
            done = max(done, self.progress.elapsed / config.max_time)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, done)))
        return config.lr * warmup * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        return torch.randperm(len(self.pairs), generator=generator)

    # ---- one step ------------------------------------------------------------------------
    def train_step(self, rows: torch.Tensor) -> float:
        """One batch (rows of the pairs); each process trains its part, weighted by its share of the batch."""
        world = self.world
        mine = rows.tensor_split(world.size)[world.rank]
        weight = 1.0
        if len(mine) == 0:  # an epoch's last, short batch can leave a process without rows: it adds nothing
            mine, weight = rows[:1], 0.0
        images, inputs, targets = self.pairs.batch(mine, self.tokenizer.bos_id, self.tokenizer.eos_id)
        features = self.train_features.values[images].to(self.device)
        lr = self.learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        cross_entropy, uncovered, tokens, cells = loss_sums(self.forward, self.tokenizer.pad_id, features,
                                                            inputs.to(self.device), targets.to(self.device))
        # Sums over the whole batch divided by the whole batch's counts; times the processes, as DDP averages.
        all_tokens, all_cells, all_cross_entropy = world.sum([tokens * weight, cells * weight,
                                                              cross_entropy.item() * weight])
        loss = cross_entropy / all_tokens
        if self.captioner.decoder.config.attention and self.config.attention_regularization:
            loss = loss + self.config.attention_regularization * uncovered / all_cells
        loss = loss * (weight * world.size)
        value = all_cross_entropy / all_tokens
        if not math.isfinite(value) or not torch.isfinite(loss):
            raise TrainingError(f"the loss became {value} at step {self.progress.step + 1}; training stopped and "
                                f"{kept_checkpoints(self.out_dir)} (try a lower --lr)")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]],
                                           self.config.clip_grad_norm)
        self.optimizer.step()
        self.progress.step += 1
        return value

    # ---- validation -------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict:
        """Teacher-forced cross-entropy and greedy BLEU-1..4 on the validation images."""
        self.captioner.eval()
        readable = self.valid_features.readable
        pairs = Pairs.of(self.valid_data, self.valid_features, self.tokenizer, self.config.max_caption_tokens)
        total, count = 0.0, 0
        for start in range(0, len(pairs), self.config.eval_batch_size):
            rows = torch.arange(start, min(start + self.config.eval_batch_size, len(pairs)))
            images, inputs, targets = pairs.batch(rows, self.tokenizer.bos_id, self.tokenizer.eos_id)
            features = self.valid_features.values[images].to(self.device)
            _, cross_entropy = caption_loss(self.captioner, features, inputs.to(self.device), targets.to(self.device), 0)
            tokens = int((targets != self.tokenizer.pad_id).sum())
            total, count = total + cross_entropy.item() * tokens, count + tokens
        greedy = GenerationConfig(temperature=0.0, max_new_tokens=self.config.max_new_tokens)
        captions = decode_all(self.captioner, self.valid_features.values[readable], greedy, self.config.eval_batch_size)
        bleu = caption_bleu(captions, [self.valid_data.references[i] for i in readable])
        self.captioner.train()
        return {"loss": total / count, **{f"bleu{n}": bleu[f"bleu{n}"] for n in range(1, 5)}}

    # ---- the loop -------------------------------------------------------------------------------
    def fit(self) -> Progress:
        """Train until the epochs, max_time, early stopping or a stop request; returns the progress."""
        from tqdm import tqdm

        config, progress, main = self.config, self.progress, self.world.is_main
        if main:
            self._prepare_out_dir()
        self.captioner.train()
        bar = tqdm(total=self.total_steps, initial=progress.step, disable=not (config.progress and main), unit="step",
                   dynamic_ncols=True)
        last_checkpoint = time.monotonic()
        with bar, deferred_interrupt(self):
            while not self._done():
                order = self.epoch_order(progress.epoch)
                rows = order[progress.batch * config.batch_size : (progress.batch + 1) * config.batch_size]
                started = time.monotonic()
                loss = self.train_step(rows)
                progress.batch += 1
                progress.elapsed += time.monotonic() - started
                checkpoint_due = agree(self, time.monotonic() - last_checkpoint >= config.checkpoint_minutes * 60)
                if progress.step % 10 == 0 or progress.step == 1:
                    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{self.learning_rate():.2e}")
                    self._log({"split": "train", "loss": loss, "lr": self.learning_rate()})
                bar.update()
                if progress.batch >= self.batches_per_epoch:
                    progress.epoch, progress.batch = progress.epoch + 1, 0
                    self._validate_and_record()
                if checkpoint_due:
                    self.save_last()
                    last_checkpoint = time.monotonic()
            if not self._stop_requested:
                if progress.batch:  # a time budget ended the run inside an epoch
                    self._validate_and_record()
                progress.finished = True
            self.save_last()
        self.forward = TeacherForced(self.captioner)  # DDP must be gone before its process group is
        return progress

    def request_stop(self) -> None:
        """Stop after the current step with a resumable checkpoint (what Ctrl-C does)."""
        self._stop_requested = True

    def _done(self) -> bool:
        progress, config = self.progress, self.config
        stopped_early = bool(config.patience) and progress.validations_without_improvement >= config.patience
        out_of_time = config.max_time is not None and progress.elapsed >= config.max_time
        return self._stop_requested or progress.finished or progress.epoch >= config.epochs or stopped_early or out_of_time

    def _validate_and_record(self) -> None:
        """Validate and keep the best captioner: the best BLEU-4, the lower validation loss on a tie."""
        progress, main = self.progress, self.world.is_main
        names = ("loss", "bleu1", "bleu2", "bleu3", "bleu4")
        measured = self.validate() if main else {}  # rank 0 validates, every process follows its result
        metrics = dict(zip(names, self.world.sum([measured.get(name, 0.0) for name in names])))
        improved = (metrics["bleu4"], -metrics["loss"]) > (progress.best_bleu4, -progress.best_valid_loss)
        if improved:
            progress.best_bleu4, progress.best_valid_loss = metrics["bleu4"], metrics["loss"]
            progress.validations_without_improvement = 0
            check_finite_training(self.captioner, self.optimizer, self.out_dir, progress.step)
            if main:
                self.captioner.save(self.out_dir, training_config=asdict(self.config),
                                    training={"step": progress.step, "epoch": progress.epoch, **metrics})
        else:
            progress.validations_without_improvement += 1
        if not main:
            return
        self._log({"split": "valid", **metrics, "best": improved})
        if self.config.progress:
            from tqdm import tqdm

            tqdm.write(f"epoch {progress.epoch}: valid loss {metrics['loss']:.4f}, BLEU-1 {metrics['bleu1']:.3f}, "
                       f"BLEU-4 {metrics['bleu4']:.3f}{' (best)' if improved else ''}")
        atomic_write(self.out_dir / "loss.png", plot_metrics(self.out_dir / "metrics.jsonl"))

    # ---- checkpoints and metrics ---------------------------------------------------------------
    def _prepare_out_dir(self) -> None:
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"cannot write to {self.out_dir}: {error.strerror}") from None

    def save_last(self) -> None:
        """Write the resumable checkpoint last/ as one atomic directory swap (rank 0 writes)."""
        check_finite_training(self.captioner, self.optimizer, self.out_dir, self.progress.step)
        rng = process_rng(self.world)
        if not self.world.is_main:
            return
        state = {"optimizer": self.optimizer.state_dict(), "rng": rng[0].clone(), "process_rng": rng}
        write_last(self.out_dir, self.captioner.files(training_config=asdict(self.config)),
                   {"progress": asdict(self.progress)}, state)

    def resume(self) -> None:
        """Continue from last/: weights, optimizer, progress and RNG."""
        last, saved, state = read_last(self.out_dir)
        progress = progress_from(Progress, saved.get("progress"), last / STATE_JSON)
        load_weights(self.captioner, _float_weights(last / WEIGHTS_FILE), last / WEIGHTS_FILE)
        load_optimizer_state(self.optimizer, state["optimizer"], last)
        self.progress, progress.finished = progress, False
        restore_process_rng(state, self.world, self.config.seed, self.progress.step)
        if self.world.is_main:
            truncate_metrics(self.out_dir / "metrics.jsonl", self.progress.step)

    def _log(self, record: dict) -> None:
        if not self.world.is_main:
            return
        progress = self.progress
        record = {"step": progress.step, "epoch": progress.epoch, "time": round(progress.elapsed, 3), **record}
        with open(self.out_dir / "metrics.jsonl", "a") as file:
            file.write(json.dumps(record) + "\n")


def _float_weights(path: Path) -> dict[str, torch.Tensor]:
    return {name: t.float() if t.is_floating_point() else t for name, t in read_weights(path).items()}


def resume_captioner(out_dir: Path) -> Captioner:
    """The captioner of out_dir/last, as saved (weights loaded by CaptionTrainer.resume)."""
    last = read_directory_path(out_dir / "last")
    config = read_config(last, kind=KIND)
    return build(config.get("model_config"), Tokenizer.load(last / TOKENIZER_FILE), last / "config.json",
                 read_header(last / WEIGHTS_FILE))


# ---- a whole run ---------------------------------------------------------------------------------
@dataclass
class DataSpec:
    """Where the captions come from: --data, --valid and the column and split names."""

    data: str
    valid: str | None = None
    split: str = "train"
    valid_split: str = "validation"
    image_column: str | None = None
    caption_columns: tuple[str, ...] = ()
    valid_fraction: float = 0.05  # held out of --data when there is no validation set

    def load(self, seed: int) -> tuple[CaptionSet, CaptionSet]:
        """(training set, validation set): --valid, else --data's validation split, else a held-out part of --data."""
        columns = dict(image_column=self.image_column, caption_columns=self.caption_columns or None)
        train = load_caption_set(self.data, self.split, **columns)
        if self.valid:
            return train, load_caption_set(self.valid, self.valid_split, **columns)
        try:
            return train, load_caption_set(self.data, self.valid_split, strict=True, **columns)
        except DataError:
            return hold_out(train, self.valid_fraction, seed)


def hold_out(data: CaptionSet, fraction: float, seed: int) -> tuple[CaptionSet, CaptionSet]:
    """Split off a random fraction of the images (at least one) as validation."""
    if len(data) < 2:
        raise DataError(f"{data.name} has {len(data)} image(s); training needs at least 2 (or a --valid set)")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).tolist()
    count = min(len(data) - 1, max(1, round(len(data) * fraction)))
    return data.subset(sorted(order[count:])), data.subset(sorted(order[:count]))


def train_captioner(
    data: DataSpec, out_dir: str | Path, config: CaptionTrainConfig | None = None,
    encoder_config: EncoderConfig | None = None, encoder_weights: str | None = "auto", decoder_options: dict | None = None,
    vocab_size: int = 1000, tokenizer_path: str | None = None, resume: bool = False,
) -> CaptionTrainer:
    """Everything `genseq train captioning` does: data, tokenizer, captioner, then fit(); returns the finished trainer.

    encoder_weights: "auto" (the default captioner's encoder for efficientnet_lite0,
    torchvision's ImageNet weights otherwise), "default", "imagenet", a file, or None for random.
    """
    from genseq.distributed import world as current_world

    out_dir, config = Path(out_dir), config or CaptionTrainConfig()
    world = current_world(resolve_device(config.device))
    if not resume and world.is_main:
        refuse_existing_run(out_dir)  # before the data is read
    train_data, valid_data = data.load(config.seed)
    if resume:
        captioner = resume_captioner(out_dir)
    else:
        if tokenizer_path:
            tokenizer = Tokenizer.load(tokenizer_path)
        else:  # trained by rank 0 and sent to the other processes, so all hold the same one
            trained = (Tokenizer.train((c for refs in train_data.references for c in refs), vocab_size=vocab_size)
                       if world.is_main else None)
            tokenizer = Tokenizer(world.broadcast_bytes(trained.to_bytes() if trained else None))
        torch.manual_seed(config.seed)  # the decoder's initial weights
        captioner = Captioner.create(encoder_config or EncoderConfig(), tokenizer, **(decoder_options or {}))
        load_pretrained(captioner.encoder, pretrained_source(captioner.encoder.config.name, encoder_weights))
        round_to_storage(captioner.encoder)
    trainer = CaptionTrainer(captioner, train_data, valid_data, config, out_dir, world)
    if resume:
        trainer.resume()
    trainer.fit()
    return trainer


def pretrained_source(encoder_name: str, weights: str | None) -> str | None:
    """What load_pretrained reads for --encoder-weights: "default" becomes the shipped captioner's weights file."""
    if weights == "auto":
        weights = "default" if encoder_name == LITE0 else "imagenet"
    if weights == "none":
        return None
    if weights != "default":
        return weights
    if encoder_name != LITE0:
        raise ConfigError(f"--encoder-weights default holds {LITE0} weights, not {encoder_name}; use imagenet or a file")
    from .captioner import default_dir

    return str(default_dir() / WEIGHTS_FILE)
