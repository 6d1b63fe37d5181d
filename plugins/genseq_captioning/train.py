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
Where the training data has boxes (composed scenes, genseq_captioning.scenes),
attention supervision can add mu * mean -log(the attention's mass inside the
named object's box) over the tokens of naming words: Liu et al., "Attention
Correctness in Neural Image Captioning" (AAAI 2017) train attention so from
grounded phrases, which sharpens where the decoder looks without a change to
the model (it reads no boxes when captioning).

A run can start from a captioner checkpoint's weights, tokenizer and
architecture (init, `--init`), recorded in config.json's "init" as a language
model's fine-tune is.

Under torchrun it trains data-parallel as genseq's language models do (see
genseq.distributed): each process takes its part of every batch, and its loss
is weighted by its share of the batch's tokens, so that the gradients DDP
averages are those of the whole batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genseq import Tokenizer
from genseq.checkpoint import WEIGHTS_FILE, build_saved, load_checkpoint, origin, read_config, read_directory_path, resolve
from genseq.distributed import World
from genseq.errors import ConfigError, DataError
from genseq.generation import GenerationConfig
from genseq.runs import RunConfig, RunLoop, RunProgress, cosine_factor, refuse_existing_run, resolve_device, warmup_factor

from .captioner import CAPTIONER, Captioner
from .data import CaptionSet, Features, cached_features, load_caption_set
from .encoder import LITE0, EncoderConfig, load_pretrained, round_to_storage
from .evaluate import decode_all
from .grounding import located_tokens
from .metrics import caption_bleu



@dataclass
class CaptionTrainConfig(RunConfig):
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    clip_grad_norm: float = 5.0
    patience: int = 5  # validations without a better BLEU-4 before stopping; 0 never stops
    checkpoint_minutes: float = 5.0
    encoder_lr: float = 1e-4  # for fine-tuned encoder stages
    weight_decay: float = 0.0
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05  # the cosine schedule ends at lr * min_lr_ratio
    attention_regularization: float = 1.0  # lambda of the doubly stochastic regularisation
    attention_supervision: float = 0.0  # mu of the attention supervision from the data's boxes; 0 turns it off
    max_caption_tokens: int = 40  # longer captions are cut for training
    max_new_tokens: int = 40  # caption length limit when validating
    eval_batch_size: int = 64

    def __post_init__(self):
        super().__post_init__()
        for name in ("max_caption_tokens", "max_new_tokens", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not self.encoder_lr > 0:
            raise ConfigError(f"encoder_lr must be positive, not {self.encoder_lr}")
        for name in ("weight_decay", "warmup_steps", "attention_regularization", "attention_supervision"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, not {getattr(self, name)}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"min_lr_ratio must be in [0, 1], not {self.min_lr_ratio}")


@dataclass
class Progress(RunProgress):
    """The run layer's counters, plus the captioner's place in an epoch."""

    batch: int = 0  # next batch of the current epoch


NEEDS_ATTENTION = "attention supervision needs a captioner with attention; drop --no-attention or --attention-supervision"


# ---- data -----------------------------------------------------------------------------
@dataclass
class Pairs:
    """Every (image, caption) pair of the readable images, as image rows and token ids."""

    images: torch.Tensor  # (P,) row of each pair's image in the features
    captions: list[list[int]]
    located: list[dict[int, np.ndarray]] | None = None  # per pair, where its naming tokens should look (grid)

    @classmethod
    def of(cls, data: CaptionSet, features: Features, tokenizer: Tokenizer, max_tokens: int,
           grid: tuple[int, int] | None = None) -> "Pairs":
        """grid (rows, columns of the attention), for the data's grounded captions' located tokens."""
        images, captions, located = [], [], []
        for index in features.readable:
            grounding = data.groundings[index] if data.groundings else None
            for caption in data.references[index]:
                images.append(index)
                captions.append(tokenizer.encode(caption)[:max_tokens])
                if grid and grounding and grounding.caption == caption.strip():
                    pieces = [tokenizer.id_to_piece(token) for token in captions[-1]]
                    located.append(located_tokens(pieces, grounding, *grid))
                else:
                    located.append({})
        if not captions:
            raise DataError(f"{data.name} has no readable image with a caption")
        return cls(torch.tensor(images), captions, located if grid else None)

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

    def located_batch(self, rows: torch.Tensor, width: int, cells: int) -> torch.Tensor:
        """(B, width, cells): per pair and position, the share of each attention cell inside the boxes its
        target token names; all zero where it names nothing."""
        result = torch.zeros(len(rows), width, cells)
        for row, pair in enumerate(rows.tolist()):
            for position, grid in self.located[pair].items():
                result[row, position] = torch.from_numpy(grid)
        return result


class TeacherForced(nn.Module):
    """The captioner's training forward pass as one module (what DistributedDataParallel wraps)."""

    def __init__(self, captioner: Captioner):
        super().__init__()
        self.captioner = captioner

    def forward(self, features: torch.Tensor, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached frozen-encoder features (B, ...), inputs (B, T) -> (logits (B, T, V), alphas (B, T, N))."""
        return self.captioner.decoder(self.captioner.encoder.finish(features.float()), inputs)


class LossSums(NamedTuple):
    """A teacher-forced batch's loss terms, summed, and what each is averaged over."""

    cross_entropy: torch.Tensor  # over the tokens
    uncovered: torch.Tensor  # (1 - coverage)^2 over images and locations
    tokens: int
    cells: int
    misplaced: torch.Tensor  # -log(attention mass inside the named boxes) over the located tokens
    located: int


def loss_sums(forward, pad_id: int, features: torch.Tensor, inputs, targets,
              located: torch.Tensor | None = None) -> LossSums:
    """The loss terms of a batch; located (B, T, N), Pairs.located_batch's, adds the misplaced attention."""
    logits, alphas = forward(features, inputs)  # (B, T, V), (B, T, N)
    mask = targets != pad_id
    cross_entropy = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=pad_id, reduction="sum")
    coverage = (alphas * mask[..., None]).sum(1)  # (B, N): how much each location was looked at over the caption
    misplaced, count = cross_entropy.new_zeros(()), 0
    if located is not None and alphas.numel():
        named = located.sum(-1) > 0  # (B, T) positions whose target token names an object
        inside = (alphas * located).sum(-1)[named]
        misplaced, count = -inside.clamp_min(1e-6).log().sum(), int(named.sum())
    return LossSums(cross_entropy, ((1 - coverage) ** 2).sum(), int(mask.sum()), coverage.numel(), misplaced, count)


def caption_loss(captioner: Captioner, features: torch.Tensor, inputs, targets, regularization: float):
    """-> (total loss, cross-entropy per token) of a teacher-forced batch; features are the cached frozen ones."""
    sums = loss_sums(TeacherForced(captioner), captioner.tokenizer.pad_id, features, inputs, targets)
    cross_entropy = sums.cross_entropy / sums.tokens
    if not captioner.decoder.config.attention or regularization == 0:
        return cross_entropy, cross_entropy
    return cross_entropy + regularization * sums.uncovered / sums.cells, cross_entropy


def check_supervision(config: CaptionTrainConfig, captioner: Captioner, data: CaptionSet) -> None:
    """Refuse attention supervision that the captioner (no attention) or the data (no boxes) cannot have."""
    if not config.attention_supervision:
        return
    if not captioner.decoder.config.attention:
        raise ConfigError(NEEDS_ATTENTION)
    if not any(data.groundings or ()):
        raise DataError(f"{data.name} has no boxes for attention supervision (an 'objects' column with each "
                        "object's box and word span, as genseq_captioning.scenes writes)")


# ---- the trainer -----------------------------------------------------------------------
class CaptionTrainer(RunLoop):
    """Trains a captioner into a run directory (see genseq.runs for its layout); the model is self.model."""

    better_metric = "bleu4"

    def __init__(self, captioner: Captioner, train_data: CaptionSet, valid_data: CaptionSet,
                 config: CaptionTrainConfig, out_dir: str | Path, world: World | None = None, init: dict | None = None):
        """init, for a run started from a checkpoint, says which (config.json's "init")."""
        check_supervision(config, captioner, train_data)  # before a run directory is made or an image encoded
        super().__init__(captioner, config, out_dir, world, network=TeacherForced(captioner))
        self.world.rows(config.batch_size)  # the batch must split evenly over the processes
        self.tokenizer, self.init = captioner.tokenizer, init
        self.valid_data = valid_data
        self.train_features = self._features(train_data, "training")
        self.valid_features = self._features(valid_data, "validation")
        self.grid = self._supervised_grid()
        self.pairs = Pairs.of(train_data, self.train_features, self.tokenizer, config.max_caption_tokens, self.grid)
        self.optimizer = torch.optim.AdamW(self._parameter_groups(), lr=config.lr, weight_decay=config.weight_decay)
        self.progress = Progress()

    def _features(self, data: CaptionSet, what: str) -> Features:
        main = self.world.is_main
        with self.world.main_first():  # rank 0 computes and caches the features, the others then read them
            features = cached_features(self.model.encoder, data.images, progress=self.config.progress and main,
                                       device=self.device)
        if features.errors and self.config.progress and main:
            from tqdm import tqdm

            tqdm.write(f"skipping {len(features.errors)} unreadable {what} image(s), e.g.: {next(iter(features.errors.values()))}")
        return features

    def _supervised_grid(self) -> tuple[int, int] | None:
        """The attention grid's (rows, columns) when attention supervision is on; None when off."""
        if not self.config.attention_supervision:
            return None
        with torch.no_grad():
            sample = self.train_features.values[self.train_features.readable[:1]].to(self.device).float()
            return tuple(self.model.encoder.finish(sample).shape[-2:])

    def checkpoint_files(self, **extra) -> dict[str, bytes]:
        return self.model.files(**({"init": self.init} if self.init else {}), **extra)

    def _parameter_groups(self) -> list[dict]:
        groups = [{"params": list(self.model.decoder.parameters()), "lr_scale": 1.0}]
        encoder = [p for stage in self.model.encoder.trainable for p in stage.parameters()]
        if encoder:
            groups.append({"params": encoder, "lr_scale": self.config.encoder_lr / self.config.lr})
        return groups

    def learning_rate(self) -> float:
        config = self.config
        return config.lr * warmup_factor(self.progress.step, config.warmup_steps) * cosine_factor(
            self.fraction_done(), config.min_lr_ratio)

    # ---- batches ------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.pairs) / self.config.batch_size)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        return torch.randperm(len(self.pairs), generator=generator)

    def next_batch(self) -> torch.Tensor | None:
        """The rows of the pairs in the next batch."""
        progress, size = self.progress, self.config.batch_size
        if progress.batch >= self.steps_per_epoch():
            return None
        progress.batch += 1
        return self.epoch_order(progress.epoch)[(progress.batch - 1) * size : progress.batch * size]

    def start_epoch(self) -> None:
        self.progress.batch = 0

    # ---- one step ------------------------------------------------------------------------
    def loss(self, rows: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Each process's part of the batch, weighted by its share of the batch's tokens."""
        world = self.world
        mine = rows.tensor_split(world.size)[world.rank]
        weight = 1.0
        if len(mine) == 0:  # an epoch's last, short batch can leave a process without rows: it adds nothing
            mine, weight = rows[:1], 0.0
        images, inputs, targets = self.pairs.batch(mine, self.tokenizer.bos_id, self.tokenizer.eos_id)
        features = self.train_features.values[images].to(self.device)
        located = None
        if self.grid:
            located = self.pairs.located_batch(mine, inputs.size(1), math.prod(self.grid)).to(self.device)
        sums = loss_sums(self.network, self.tokenizer.pad_id, features, inputs.to(self.device), targets.to(self.device),
                         located)
        # Sums over the whole batch divided by the whole batch's counts; times the processes, as DDP averages.
        all_tokens, all_cells, all_located, all_cross_entropy = world.sum(
            [sums.tokens * weight, sums.cells * weight, sums.located * weight, sums.cross_entropy.item() * weight])
        loss = sums.cross_entropy / all_tokens
        if self.model.decoder.config.attention and self.config.attention_regularization:
            loss = loss + self.config.attention_regularization * sums.uncovered / all_cells
        if all_located:
            loss = loss + self.config.attention_supervision * sums.misplaced / all_located
        return loss * (weight * world.size), all_cross_entropy / all_tokens

    # ---- validation -------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Teacher-forced cross-entropy and greedy BLEU-1..4 on the validation images."""
        captioner = self.model
        captioner.eval()
        readable = self.valid_features.readable
        pairs = Pairs.of(self.valid_data, self.valid_features, self.tokenizer, self.config.max_caption_tokens)
        total, count = 0.0, 0
        for start in range(0, len(pairs), self.config.eval_batch_size):
            rows = torch.arange(start, min(start + self.config.eval_batch_size, len(pairs)))
            images, inputs, targets = pairs.batch(rows, self.tokenizer.bos_id, self.tokenizer.eos_id)
            features = self.valid_features.values[images].to(self.device)
            _, cross_entropy = caption_loss(captioner, features, inputs.to(self.device), targets.to(self.device), 0)
            tokens = int((targets != self.tokenizer.pad_id).sum())
            total, count = total + cross_entropy.item() * tokens, count + tokens
        greedy = GenerationConfig(temperature=0.0, max_new_tokens=self.config.max_new_tokens)
        captions = decode_all(captioner, self.valid_features.values[readable], greedy, self.config.eval_batch_size)
        bleu = caption_bleu(captions, [self.valid_data.references[i] for i in readable])
        captioner.train()
        return {"loss": total / count, **{f"bleu{n}": bleu[f"bleu{n}"] for n in range(1, 5)}}

    def summary(self, metrics: dict[str, float]) -> str:
        return f"valid loss {metrics['loss']:.4f}, BLEU-1 {metrics['bleu1']:.3f}, BLEU-4 {metrics['bleu4']:.3f}"


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
    vocab_size: int = 1000, tokenizer_type: str = "unigram", tokenizer_path: str | None = None, resume: bool = False,
    init: str | None = None,
) -> CaptionTrainer:
    """Everything `genseq train captioning` does: data, tokenizer, captioner, then fit(); returns the finished trainer.

    encoder_weights: "auto" (the default captioner's encoder for efficientnet_lite0,
    torchvision's ImageNet weights otherwise), "default", "imagenet", a file, or None for random.
    init (a captioner checkpoint directory, hub id, or "default" for the shipped one) starts from that
    captioner: its tokenizer, encoder and decoder, which the encoder and decoder options must then leave out.
    """
    from genseq.distributed import world as current_world

    out_dir, config = Path(out_dir), config or CaptionTrainConfig()
    world = current_world(resolve_device(config.device))
    if not resume and world.is_main:
        refuse_existing_run(out_dir)  # before the data is read
    train_data, valid_data = data.load(config.seed)
    started_from = None
    if resume:
        last = read_directory_path(out_dir / "last")
        captioner, _ = build_saved(last, CAPTIONER)
        started_from = read_config(last, kind=None).get("init")  # build_saved checked the kind
    elif init:
        captioner, started_from = starting_captioner(init)
    else:
        if tokenizer_path:
            tokenizer = Tokenizer.load(tokenizer_path)
        else:  # trained by rank 0 and sent to the other processes, so all hold the same one
            captions = (caption for references in train_data.references for caption in references)
            trained = Tokenizer.train(captions, vocab_size=vocab_size, model_type=tokenizer_type) if world.is_main else None
            tokenizer = Tokenizer(world.broadcast_bytes(trained.to_bytes() if trained else None))
        torch.manual_seed(config.seed)  # the decoder's initial weights
        captioner = Captioner.create(encoder_config or EncoderConfig(), tokenizer, **(decoder_options or {}))
        load_pretrained(captioner.encoder, pretrained_source(captioner.encoder.config.name, encoder_weights))
        round_to_storage(captioner.encoder)
    trainer = CaptionTrainer(captioner, train_data, valid_data, config, out_dir, world, started_from)
    if resume:
        trainer.resume()
    trainer.fit()
    return trainer


def starting_captioner(init: str) -> tuple[Captioner, dict]:
    """(captioner, config.json's "init") of a run that starts from init: a directory, a hub id or "default"."""
    from .captioner import default_dir

    directory = default_dir() if init == "default" else resolve(init)
    captioner = load_checkpoint(directory, CAPTIONER)[0]
    return captioner.train(), origin(init, directory)


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
