"""Training and evaluating the sentiment classifier, and the two baselines it is measured against.

Data: any dataset `genseq.data.open_source` reads (a csv/json file, a dataset
folder, a hub name) with a text column and a 0/1 label column (1 = positive).
Training is the article's: binary cross-entropy, Adam (lr 1e-3), batches of 64,
a few epochs; after each epoch the model is validated and the best (by F1 of
the positive class, then by loss) is written to the run directory as a genseq
checkpoint, with metrics.jsonl and loss.png beside it. The loop is
genseq.runs': last/ (weights, optimizer, position in the epoch, best score,
random state) is written every --checkpoint-minutes, at the end and when
Ctrl-C stops the run after the current batch, a resumed run ends with the
weights of an uninterrupted one, and --max-time gives a time budget.

Baselines, measured on the same split: the majority class, and logistic
regression on bags of words (whether a text holds each lower-cased whitespace
word seen at least twice in training; L2 penalty 1e-4 times the squared
weights, full-batch L-BFGS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from genseq import Tokenizer
from genseq.checkpoint import build_saved, read_directory_path
from genseq.errors import ConfigError, DataError
from genseq.runs import RunConfig, RunLoop, RunProgress, refuse_existing_run

from .model import SENTIMENT, SentimentConfig, SentimentModel


@dataclass
class Examples:
    texts: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.texts)


def load_examples(spec: str, text_column: str = "text", label_column: str = "label", split: str = "train") -> Examples:
    """Texts and 0/1 labels of a dataset; a missing column or a label other than 0/1 is one clear error."""
    from genseq.data import HFDataset, open_source

    source = open_source(spec, text_column, split=split)
    if not isinstance(source, HFDataset):
        raise DataError(f"{spec} is plain text; sentiment data is a table with columns {text_column} and {label_column} "
                        "(a csv or json file, or a dataset)")
    columns = source.dataset.column_names or []
    if label_column not in columns:
        raise DataError(f"{spec} has no column {label_column!r}; its columns are {', '.join(columns)} (use --label-column)")
    texts, labels = [], []
    for number, row in enumerate(source.dataset, start=1):
        label = row[label_column]
        if label not in (0, 1):
            raise DataError(f"row {number} of {spec} has label {label!r}; labels are 0 (negative) and 1 (positive)")
        texts.append(str(row[text_column] or ""))
        labels.append(int(label))
    if not texts:
        raise DataError(f"{spec} has no rows")
    return Examples(texts, labels)


def scores(predictions: list[int], labels: list[int]) -> dict:
    """Accuracy, and precision, recall and F1 of the positive class."""
    pairs = list(zip(predictions, labels))
    true_positive = sum(1 for p, y in pairs if p == 1 and y == 1)
    predicted, actual = sum(predictions), sum(labels)
    precision = true_positive / predicted if predicted else 0.0
    recall = true_positive / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = sum(1 for p, y in pairs if p == y) / len(pairs)
    return {"accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1, "examples": len(pairs)}


@torch.no_grad()
def evaluate_model(model: SentimentModel, data: Examples, batch_size: int = 256) -> dict:
    """Scores and mean binary cross-entropy of a model on data."""
    model.eval()
    predictions, loss = [], 0.0
    for start in range(0, len(data), batch_size):
        ids, lengths = model.batch(data.texts[start : start + batch_size])
        logits = model.text_logits(ids, lengths)
        targets = torch.tensor(data.labels[start : start + batch_size], dtype=torch.float, device=logits.device)
        loss += F.binary_cross_entropy_with_logits(logits, targets, reduction="sum").item()
        predictions += (logits > 0).long().tolist()
    return {**scores(predictions, data.labels), "loss": loss / len(data)}


# ---- baselines -------------------------------------------------------------------------
def majority_baseline(train: Examples, valid: Examples) -> dict:
    majority = int(sum(train.labels) * 2 > len(train))
    return scores([majority] * len(valid), valid.labels)


def bag_of_words_baseline(train: Examples, valid: Examples, l2: float = 1e-4, min_count: int = 2) -> dict:
    """Logistic regression on which words a text holds, fitted by L-BFGS with an L2 penalty."""
    from collections import Counter

    counts = Counter(word for text in train.texts for word in set(text.lower().split()))
    vocabulary = {word: i for i, word in enumerate(w for w, c in counts.items() if c >= min_count)}

    def features(texts: list[str]) -> torch.Tensor:
        rows = torch.zeros(len(texts), len(vocabulary))
        for row, text in enumerate(texts):
            for word in set(text.lower().split()):
                if word in vocabulary:
                    rows[row, vocabulary[word]] = 1.0
        return rows

    x, y = features(train.texts), torch.tensor(train.labels, dtype=torch.float)
    torch.manual_seed(0)
    weight, bias = torch.zeros(len(vocabulary), requires_grad=True), torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ weight + bias, y) + l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        predictions = ((features(valid.texts) @ weight + bias) > 0).long().tolist()
    return {**scores(predictions, valid.labels), "vocabulary": len(vocabulary)}


# ---- training ----------------------------------------------------------------------------
@dataclass
class SentimentTrainConfig(RunConfig):
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    clip_grad_norm: float = 0.0  # 0: off, as in the article's Keras example
    patience: int = 0  # the article trains its epochs through
    checkpoint_minutes: float = 5.0
    max_tokens: int = 128  # longer texts are cut for training

    def __post_init__(self):
        super().__post_init__()
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1, not {self.max_tokens}")


@dataclass
class Progress(RunProgress):
    """The run layer's counters, plus the rows of this epoch trained on."""

    position: int = 0  # rows of this epoch already trained on


class SentimentTrainer(RunLoop):
    """Trains a sentiment classifier into a run directory (see genseq.runs for its layout)."""

    better_metric = "f1"  # of the positive class

    def __init__(self, model: SentimentModel, train: Examples, valid: Examples, config: SentimentTrainConfig,
                 out_dir: str | Path):
        super().__init__(model, config, out_dir)
        self.train_data, self.valid_data = train, valid
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        self.progress = Progress()

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_data) / self.config.batch_size)

    def next_batch(self) -> list[int] | None:
        """The rows of the next batch, in an order drawn from the seed and the epoch."""
        progress, size = self.progress, self.config.batch_size
        if progress.position >= len(self.train_data):
            return None
        generator = torch.Generator().manual_seed(self.config.seed + progress.epoch)
        order = torch.randperm(len(self.train_data), generator=generator)
        progress.position += size
        return order[progress.position - size : progress.position].tolist()

    def start_epoch(self) -> None:
        self.progress.position = 0

    def loss(self, rows: list[int]) -> tuple[torch.Tensor, float]:
        ids, lengths = self.model.batch([self.train_data.texts[i] for i in rows], self.config.max_tokens)
        targets = torch.tensor([self.train_data.labels[i] for i in rows], dtype=torch.float, device=self.device)
        loss = F.binary_cross_entropy_with_logits(self.model.text_logits(ids, lengths), targets)
        return loss, loss.item()

    def validate(self) -> dict[str, float]:
        measured = evaluate_model(self.model, self.valid_data)
        self.model.train()
        return measured

    def summary(self, metrics: dict[str, float]) -> str:
        return f"valid accuracy {metrics['accuracy']:.4f}, F1 {metrics['f1']:.4f}, loss {metrics['loss']:.4f}"


def train_sentiment(data: str, valid: str, out_dir, config: SentimentTrainConfig | None = None,
                    model_options: dict | None = None, vocab_size: int = 5000, tokenizer_type: str = "unigram",
                    tokenizer_path: str | None = None, text_column: str = "text", label_column: str = "label", resume: bool = False) -> SentimentTrainer:
    """Everything `genseq train sentiment` does (resume: continue the run in out_dir); returns the trainer."""
    config = config or SentimentTrainConfig()
    out_dir = Path(out_dir)
    if not resume:
        refuse_existing_run(out_dir)
    train = load_examples(data, text_column, label_column, "train")
    held_out = load_examples(valid, text_column, label_column, "validation")
    if resume:
        model, _ = build_saved(read_directory_path(out_dir / "last"), SENTIMENT)
    else:
        tokenizer = (Tokenizer.load(tokenizer_path) if tokenizer_path
                     else Tokenizer.train(train.texts, vocab_size=vocab_size, model_type=tokenizer_type))
        torch.manual_seed(config.seed)
        model = SentimentModel(SentimentConfig(**{**(model_options or {}), "vocab_size": tokenizer.vocab_size}), tokenizer)
    trainer = SentimentTrainer(model, train, held_out, config, out_dir)
    if resume:
        trainer.resume()
    trainer.fit()
    return trainer
