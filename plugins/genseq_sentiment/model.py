"""The sentiment classifier: embedding -> LSTM -> one logit per token, and its checkpoints.

    ids (B, T) -> embedding (B, T, E) -> LSTM (B, T, H) -> dropout -> linear -> logits (B, T)

The logit after the last real token is the text's; sigmoid(logit_t) after each
token t is the opinion so far. The defaults are the article's: embedding 32,
one LSTM layer of 100 units.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from genseq import Tokenizer
from genseq.model import CELLS
from genseq.checkpoint import ModelKind, load_checkpoint, model_files, write_files
from genseq.defaults import packaged_model_dir
from genseq.errors import ConfigError

KIND = "sentiment"
DEFAULT_DIR = Path(__file__).parent / "models" / "sentiment"
LABELS = ("negative", "positive")


@dataclass
class SentimentConfig:
    vocab_size: int = 5000
    embedding_size: int = 32
    hidden_size: int = 100
    num_layers: int = 1
    cell: str = "lstm"
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("vocab_size", "embedding_size", "hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.cell not in CELLS:
            raise ConfigError(f"cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), not {self.dropout}")


class SentimentModel(nn.Module):
    def __init__(self, config: SentimentConfig, tokenizer: Tokenizer):
        super().__init__()
        if tokenizer.vocab_size != config.vocab_size:
            raise ConfigError(f"the tokenizer has {tokenizer.vocab_size} pieces but the model expects {config.vocab_size}")
        self.config, self.tokenizer = config, tokenizer
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=tokenizer.pad_id)
        self.core = CELLS[config.cell](config.embedding_size, config.hidden_size, num_layers=config.num_layers,
                                       dropout=config.dropout if config.num_layers > 1 else 0.0, batch_first=True)
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(config.hidden_size, 1)

    def forward(self, ids: Tensor) -> Tensor:
        """ids (B, T), right-padded with pad -> the logit after each token (B, T)."""
        hidden, _ = self.core(self.embedding(ids))
        return self.output(self.dropout(hidden))[..., 0]

    def text_logits(self, ids: Tensor, lengths: Tensor) -> Tensor:
        """The logit of each text (B,): after its last real token (an LSTM reads left to right, so padding after it is ignored)."""
        return self(ids).gather(1, (lengths - 1).clamp(min=0)[:, None])[:, 0]

    def batch(self, texts: list[str], max_tokens: int = 256) -> tuple[Tensor, Tensor]:
        """Texts -> (ids (B, T) right-padded, lengths (B,)); an empty text reads as one EOS."""
        encoded = [leading_ids(self.tokenizer, text, max_tokens) or [self.tokenizer.eos_id] for text in texts]
        lengths = torch.tensor([len(ids) for ids in encoded])
        ids = torch.full((len(encoded), int(lengths.max())), self.tokenizer.pad_id, dtype=torch.long)
        for row, tokens in enumerate(encoded):
            ids[row, : len(tokens)] = torch.tensor(tokens)
        device = self.embedding.weight.device
        return ids.to(device), lengths.to(device)

    @torch.no_grad()
    def classify(self, texts: list[str]) -> list[dict]:
        """Per text: label, probability of that label, P(positive), and (token, P(positive) after it) pairs."""
        if not texts:
            return []
        ids, lengths = self.batch(texts)
        probabilities = torch.sigmoid(self(ids)).cpu()  # (B, T)
        results = []
        for row, length in enumerate(lengths.tolist()):
            trace = probabilities[row, :length].tolist()
            positive = trace[-1]
            label = LABELS[int(positive >= 0.5)]
            tokens = self.tokenizer.token_texts(ids[row, :length].tolist())
            results.append({"label": label, "prob": positive if label == "positive" else 1 - positive,
                            "positive": positive, "tokens": list(zip(tokens, trace))})
        return results

    def files(self, **extra) -> dict[str, bytes]:
        return model_files(self, asdict(self.config), self.tokenizer, kind=KIND, **extra)

    def save(self, directory: str | os.PathLike, **extra) -> None:
        """Write a loadable checkpoint into directory (its other files stay); each file is replaced atomically."""
        write_files(directory, self.files(**extra))


def leading_ids(tokenizer: Tokenizer, text: str, max_tokens: int) -> list[int]:
    """tokenizer.encode(text)[:max_tokens], encoding only the lines those tokens come from.

    The tokenizer encodes each line on its own, so the first lines' ids do not depend
    on the rest: a long document costs what its first max_tokens tokens cost.
    """
    ids: list[int] = []
    start = 0
    while len(ids) < max_tokens and start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1  # the line with its newline, whose id follows the line's
        ids.extend(tokenizer.encode(text[start:end]))
        start = end
    return ids[:max_tokens]


SENTIMENT = ModelKind(KIND, SentimentConfig, SentimentModel)


def load_sentiment(name_or_path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> SentimentModel:
    """A sentiment checkpoint (None: the shipped default), in eval mode; checked before it is allocated."""
    return load_checkpoint(default_dir() if name_or_path is None else name_or_path, SENTIMENT, device)[0]


def default_dir() -> Path:
    return packaged_model_dir(DEFAULT_DIR, "default sentiment model", "genseq train sentiment")
