"""The word model: a small character-level LSTM that reads the letters of a word and predicts the next one.

A word is the token ids [BOS, "▁", letters..., EOS] of genseq's character
tokenizer (`Tokenizer.train(..., model_type="char")`: a piece per letter, "▁"
starts a word). A checkpoint is genseq's own (config.json, model.safetensors,
tokenizer.model), written by word_files and read, checked, by
genseq.checkpoint.load_checkpoint with WORD_MODEL.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from genseq.checkpoint import ModelKind, load_checkpoint, model_files
from genseq.defaults import packaged_model_dir
from genseq.errors import CheckpointError, ConfigError
from genseq.tokenizer import Tokenizer

KIND = "wordgen"  # config.json's "kind"; the task's model_kinds names it for the web app's model box


@dataclass
class WordModelConfig:
    vocab_size: int
    embedding_size: int = 16
    hidden_size: int = 32

    def __post_init__(self):
        for name in ("vocab_size", "embedding_size", "hidden_size"):
            if not 1 <= getattr(self, name) <= 1 << 16:
                raise ConfigError(f"{name} must be in [1, 65536], not {getattr(self, name)}")


class WordModel(nn.Module):
    def __init__(self, config: WordModelConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size)
        self.lstm = nn.LSTM(config.embedding_size, config.hidden_size, batch_first=True)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, ids: torch.Tensor, state=None):
        hidden, state = self.lstm(self.embedding(ids), state)  # (B, T, H)
        return self.head(hidden), state  # (B, T, V)


def build_word_model(config: WordModelConfig, tokenizer: Tokenizer) -> WordModel:
    if tokenizer.vocab_size != config.vocab_size:
        raise CheckpointError(f"the tokenizer has {tokenizer.vocab_size} pieces but the model expects "
                              f"{config.vocab_size}")
    return WordModel(config)


WORD_MODEL = ModelKind(KIND, WordModelConfig, build_word_model)


def default_model_dir() -> Path:
    """The model shipped inside this package as package data (see pyproject.toml)."""
    shipped = Path(str(resources.files(__package__) / "models" / "default"))
    return packaged_model_dir(shipped, "wordgen default model", trained_by="genseq train wordgen")


def load_word_model(path: str | None, device: str = "cpu") -> tuple[WordModel, Tokenizer]:
    """(model, tokenizer) of the checkpoint at path (None: the shipped one), checked before anything is allocated."""
    return load_checkpoint(path or default_model_dir(), WORD_MODEL, device)


def word_files(model: WordModel, tokenizer: Tokenizer, **extra) -> dict[str, bytes]:
    """The checkpoint's files as bytes; extra goes into config.json."""
    return model_files(model, asdict(model.config), tokenizer, kind=KIND, **extra)


# ---- words ------------------------------------------------------------------------------------
def word_ids(tokenizer: Tokenizer, words: list[str]) -> list[list[int]]:
    return [[tokenizer.bos_id, *tokenizer.encode(word), tokenizer.eos_id] for word in words]


def padded(rows: list[list[int]]) -> torch.Tensor:
    """(B, T) ids, short rows padded with the pad id (0), which the loss ignores."""
    batch = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
    for index, row in enumerate(rows):
        batch[index, : len(row)] = torch.tensor(row)
    return batch


def batches(rows: list[list[int]], size: int) -> list[torch.Tensor]:
    return [padded(rows[start:start + size]) for start in range(0, len(rows), size)]


def word_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each next piece of the words in batch (B, T), padding left out."""
    logits, _ = model(batch[:, :-1])  # (B, T-1, V)
    return nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten(), ignore_index=0)


@torch.no_grad()
def mean_loss(model: nn.Module, batches: list[torch.Tensor]) -> float:
    """word_loss over several batches, each weighted by the pieces it predicts."""
    pieces = [int((batch[:, 1:] != 0).sum()) for batch in batches]
    return sum(word_loss(model, batch).item() * count for batch, count in zip(batches, pieces)) / sum(pieces)


# ---- generating -------------------------------------------------------------------------------
@torch.no_grad()
def continuations(model: WordModel, tokenizer: Tokenizer, prefix: str, max_letters: int, temperature: float,
                  generator: torch.Generator) -> Iterator[str]:
    """The text that continues prefix, longer by a letter each time, until the word ends or max_letters are out."""
    start = tokenizer.encode(prefix)
    ids = list(start)
    logits, state = model(torch.tensor([[tokenizer.bos_id, *start]]))
    for _ in range(max_letters):
        last = logits[0, -1]  # (V,)
        if temperature == 0:
            chosen = int(last.argmax())
        else:
            chosen = int(torch.multinomial((last / temperature).softmax(-1), 1, generator=generator))
        if chosen == tokenizer.eos_id:
            return
        ids.append(chosen)
        yield tokenizer.decode(ids)[len(prefix):]
        logits, state = model(torch.tensor([[chosen]]), state)


@torch.no_grad()
def likeliest_next(model: WordModel, tokenizer: Tokenizer, prefix: str, top: int = 5) -> list[dict]:
    """The top pieces after prefix with their probabilities, most likely first ("(end)": the word ends there)."""
    logits, _ = model(torch.tensor([[tokenizer.bos_id, *tokenizer.encode(prefix)]]))
    found = logits[0, -1].softmax(-1).topk(top)
    return [{"label": "(end)" if index == tokenizer.eos_id else tokenizer.id_to_piece(index), "prob": prob}
            for prob, index in zip(found.values.tolist(), found.indices.tolist())]
