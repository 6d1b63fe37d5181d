"""Training the word model on genseq's run layer: genseq.runs.RunLoop runs the loop, this file says what a step is.

RunLoop owns the epochs, step and time limits, validation, the best model (by
default the lowest validation loss) and last/ in the run directory, Ctrl-C and
--resume; WordTrainer supplies the batches, the loss, the validation and the
checkpoint files.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from genseq.errors import DataError
from genseq.runs import RunConfig, RunLoop, RunProgress
from genseq.tokenizer import Tokenizer

from .model import WordModel, batches, mean_loss, padded, word_files, word_ids, word_loss

BATCH_OF_WORDS = 512  # words per validation batch


@dataclass
class WordTrainConfig(RunConfig):
    epochs: int = 3
    batch_size: int = 64
    lr: float = 0.01
    patience: int = 0


@dataclass
class WordProgress(RunProgress):
    batch: int = 0  # the next batch of the current epoch


class WordTrainer(RunLoop):
    def __init__(self, model: WordModel, tokenizer: Tokenizer, train_words: list[str], valid_words: list[str],
                 config: WordTrainConfig, out_dir: str | Path):
        super().__init__(model, config, out_dir)
        self.tokenizer = tokenizer
        self.train_rows = word_ids(tokenizer, train_words)
        valid_rows = word_ids(tokenizer, valid_words)
        self.valid_batches = [batch.to(self.device) for batch in batches(valid_rows, BATCH_OF_WORDS)]
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.progress = WordProgress()
        self._order: tuple[int, list[int]] = (-1, [])  # (epoch, the order of its words)

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_rows) / self.config.batch_size)

    def next_batch(self) -> torch.Tensor | None:
        if self.progress.batch >= self.steps_per_epoch():
            return None
        start = self.progress.batch * self.config.batch_size
        rows = self.epoch_order()[start:start + self.config.batch_size]
        self.progress.batch += 1
        return padded([self.train_rows[row] for row in rows]).to(self.device)

    def epoch_order(self) -> list[int]:
        """The words' order in this epoch: a shuffle drawn from the seed and the epoch, the same when resumed."""
        if self._order[0] != self.progress.epoch:
            generator = torch.Generator().manual_seed(self.config.seed * 1000 + self.progress.epoch)
            self._order = (self.progress.epoch, torch.randperm(len(self.train_rows), generator=generator).tolist())
        return self._order[1]

    def start_epoch(self) -> None:
        self.progress.batch = 0

    def loss(self, batch: torch.Tensor):
        loss = word_loss(self.network, batch)
        return loss, loss.item()

    def validate(self) -> dict[str, float]:
        loss = mean_loss(self.model, self.valid_batches)
        return {"loss": loss, "perplexity": math.exp(loss)}

    def checkpoint_files(self, **extra) -> dict[str, bytes]:
        return word_files(self.model, self.tokenizer, **extra)


def read_words(path: str | Path) -> list[str]:
    """The lower-case words of a text file, or of every .txt file in a directory (runs of letters; no digits)."""
    path = Path(path)
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    if not files or not all(file.is_file() for file in files):
        raise DataError(f"{path} is neither a text file nor a directory of .txt files")
    words = [word for file in files for word in re.findall(r"[^\W\d_]+", file.read_text(encoding="utf-8", errors="replace").lower())]
    if not words:
        raise DataError(f"{path} holds no words")
    return words
