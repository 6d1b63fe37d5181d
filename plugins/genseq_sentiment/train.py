"""Training and evaluating the sentiment classifier, and the two baselines it is measured against.

Data: any dataset `genseq.data.open_source` reads (a csv/json file, a dataset
folder, a hub name) with a text column and a 0/1 label column (1 = positive).
Training is the article's: binary cross-entropy, Adam (lr 1e-3), batches of 64,
a few epochs; after each epoch the model is validated and the best (by F1 of
the positive class, then by loss) is written to the run directory as a genseq
checkpoint, with metrics.jsonl and loss.png beside it. last/ holds what a
resumed run continues from (weights, optimizer, position in the epoch, best
score, random state), written after each epoch and when Ctrl-C stops the run
after the current batch; a resumed run ends with the weights of an
uninterrupted one.

Baselines, measured on the same split: the majority class, and logistic
regression on bags of words (whether a text holds each lower-cased whitespace
word seen at least twice in training; L2 penalty 1e-4 times the squared
weights, full-batch L-BFGS).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from genseq import Tokenizer
from genseq.checkpoint import (
    TOKENIZER_FILE, WEIGHTS_FILE, atomic_write, check_buildable, load_weights, model_config_from, read_config,
    read_directory_path, read_header, read_weights,
)
from genseq.errors import ConfigError, DataError, TrainingError
from genseq.train import (
    STATE_JSON, check_finite_training, checked_fields, deferred_interrupt, kept_checkpoints, load_optimizer_state,
    plot_metrics, read_last, refuse_existing_run, require_finite, resolve_device, restore_cuda_rng, truncate_metrics, write_last,
)

from .model import KIND, SentimentConfig, SentimentModel


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
class SentimentTrainConfig:
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    clip_grad_norm: float = 0.0  # 0: off, as in the article's Keras example
    max_tokens: int = 128  # longer texts are cut for training
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self):
        require_finite(self)
        for name in ("epochs", "batch_size", "max_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not self.lr > 0 or self.clip_grad_norm < 0:
            raise ConfigError("lr must be positive and clip_grad_norm not negative")


class SentimentTrainer:
    def __init__(self, model: SentimentModel, train: Examples, valid: Examples, config: SentimentTrainConfig, out_dir):
        self.model, self.train_data, self.valid_data, self.config = model, train, valid, config
        self.out_dir = Path(out_dir)
        self.device = resolve_device(config.device)
        self.model.to(self.device)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        self.step, self.epoch, self.position = 0, 0, 0  # position: rows of this epoch already trained on
        self.best, self.best_metrics, self.finished = (-1.0, -math.inf), {}, False
        self.elapsed = 0.0
        self._stop_requested = False

    def request_stop(self) -> None:
        self._stop_requested = True

    def fit(self) -> dict:
        """Train for the epochs (or until Ctrl-C, saving last/); -> the best validation metrics."""
        from tqdm import tqdm

        config = self.config
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"cannot write to {self.out_dir}: {error.strerror}") from None
        metrics_path = self.out_dir / "metrics.jsonl"
        if self.step == 0:
            atomic_write(metrics_path, b"")
        started = time.monotonic() - self.elapsed
        per_epoch = math.ceil(len(self.train_data) / config.batch_size)
        with tqdm(total=config.epochs * per_epoch, initial=self.step, disable=not config.progress, unit="step") as bar, \
                deferred_interrupt(self):
            while self.epoch < config.epochs:
                order = torch.randperm(len(self.train_data), generator=torch.Generator().manual_seed(config.seed + self.epoch))
                self.model.train()
                while self.position < len(order):
                    loss = self._train_step(order[self.position : self.position + config.batch_size].tolist())
                    self.position += config.batch_size
                    bar.update()
                    bar.set_postfix(loss=f"{loss:.3f}")
                    if self.step % 20 == 0:
                        self._log(metrics_path, {"step": self.step, "epoch": self.epoch, "split": "train", "loss": loss})
                    if self._stop_requested:
                        self.elapsed = time.monotonic() - started
                        self.save_last()
                        return self.best_metrics
                self.epoch, self.position = self.epoch + 1, 0
                measured = evaluate_model(self.model, self.valid_data)
                key = (measured["f1"], -measured["loss"])
                improved = key > self.best
                if improved:
                    self.best, self.best_metrics = key, {**measured, "epoch": self.epoch, "step": self.step}
                    check_finite_training(self.model, self.optimizer, self.out_dir, self.step)
                    self.model.save(self.out_dir, training_config=asdict(config), training=self.best_metrics)
                self.elapsed = time.monotonic() - started
                self._log(metrics_path, {"step": self.step, "epoch": self.epoch, "split": "valid", **measured,
                                         "best": improved, "time": round(self.elapsed, 1)})
                atomic_write(self.out_dir / "loss.png", plot_metrics(metrics_path))
                self.save_last()
                if config.progress:
                    tqdm.write(f"epoch {self.epoch}: valid accuracy {measured['accuracy']:.4f}, F1 {measured['f1']:.4f}, "
                               f"loss {measured['loss']:.4f}{' (best)' if improved else ''}")
        self.finished = True
        return self.best_metrics

    # ---- last/: resuming --------------------------------------------------------------------
    # What training continues from besides tensors, with the types read_last's record must have.
    COUNTERS = {"step": int, "epoch": int, "position": int, "best": tuple[float, float], "best_metrics": dict,
                "elapsed": float}

    def save_last(self) -> None:
        """Write last/ (the model and everything training continues from) as one atomic directory swap."""
        check_finite_training(self.model, self.optimizer, self.out_dir, self.step)
        counters = {name: getattr(self, name) for name in self.COUNTERS}
        write_last(self.out_dir, self.model.files(training_config=asdict(self.config)), counters,
                   {"optimizer": self.optimizer.state_dict(), "rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None})

    def resume(self) -> None:
        """Continue from last/: weights, optimizer, counters and random state."""
        last, saved, state = read_last(self.out_dir)
        counters = checked_fields(saved, self.COUNTERS, last / STATE_JSON, "counters")
        load_weights(self.model, read_weights(last / WEIGHTS_FILE), last / WEIGHTS_FILE)
        load_optimizer_state(self.optimizer, state["optimizer"], last)
        for name, value in counters.items():
            setattr(self, name, value)
        self.best = tuple(self.best)
        torch.set_rng_state(state["rng"])
        restore_cuda_rng(state, self.device, last)
        truncate_metrics(self.out_dir / "metrics.jsonl", self.step)

    def _train_step(self, rows: list[int]) -> float:
        texts = [self.train_data.texts[i] for i in rows]
        ids, lengths = self.model.batch(texts, self.config.max_tokens)
        targets = torch.tensor([self.train_data.labels[i] for i in rows], dtype=torch.float, device=self.device)
        loss = F.binary_cross_entropy_with_logits(self.model.text_logits(ids, lengths), targets)
        if not torch.isfinite(loss):
            raise TrainingError(f"the loss became {loss.item()} at step {self.step + 1}; training stopped and "
                                f"{kept_checkpoints(self.out_dir)} (try a lower --lr or --clip-grad-norm)")
        self.optimizer.zero_grad()
        loss.backward()
        if self.config.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad_norm)
        self.optimizer.step()
        self.step += 1
        return loss.item()

    @staticmethod
    def _log(path: Path, record: dict) -> None:
        with open(path, "a") as file:
            file.write(json.dumps(record) + "\n")


def train_sentiment(data: str, valid: str, out_dir, config: SentimentTrainConfig | None = None,
                    model_options: dict | None = None, vocab_size: int = 5000, tokenizer_path: str | None = None,
                    text_column: str = "text", label_column: str = "label", resume: bool = False) -> SentimentTrainer:
    """Everything `genseq train sentiment` does (resume: continue the run in out_dir); returns the trainer."""
    config = config or SentimentTrainConfig()
    out_dir = Path(out_dir)
    if not resume:
        refuse_existing_run(out_dir)
    train = load_examples(data, text_column, label_column, "train")
    held_out = load_examples(valid, text_column, label_column, "validation")
    if resume:
        last = read_directory_path(out_dir / "last")
        header = read_header(last / WEIGHTS_FILE)
        model_config = model_config_from(SentimentConfig, read_config(last, kind=KIND).get("model_config"),
                                         last / "config.json", header)
        tokenizer = Tokenizer.load(last / TOKENIZER_FILE)
        check_buildable(lambda: SentimentModel(model_config, tokenizer), header, last / WEIGHTS_FILE)
    else:
        tokenizer = Tokenizer.load(tokenizer_path) if tokenizer_path else Tokenizer.train(train.texts, vocab_size=vocab_size)
        model_config = SentimentConfig(**{**(model_options or {}), "vocab_size": tokenizer.vocab_size})
    torch.manual_seed(config.seed)
    trainer = SentimentTrainer(SentimentModel(model_config, tokenizer), train, held_out, config, out_dir)
    if resume:
        trainer.resume()
    trainer.fit()
    return trainer
