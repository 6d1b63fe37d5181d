"""Model cards: what a front end tells people about a checkpoint, in a few plain sentences.

A checkpoint directory may hold card.json beside config.json, with any of the
CARD_FIELDS as strings. Whatever it leaves out is read from the checkpoint
itself, so every trained run has a card without writing one: its folder's
name, its kind and size, and the figures it was saved with. A task may keep
other fields of its own there (card_value), such as a calibrated threshold.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .checkpoint import (
    CONFIG_FILE, MAX_CONFIG_BYTES, WEIGHTS_FILE, atomic_write, check_regular_file, read_config, read_header,
)
from .errors import CheckpointError

CARD_FILE = "card.json"
CARD_FIELDS = ("name", "summary", "trained_on", "good_at", "bad_at", "figure")
COUNTERS = ("step", "epoch", "examples")  # saved beside the metrics: where, not how well


def read_card(directory: str | os.PathLike) -> dict[str, str]:
    """The checkpoint's card: card.json's fields over those read from config.json and the weights' header."""
    directory = Path(directory)
    config = read_config(directory, kind=None)
    card = {"name": directory.name, "summary": _summary(directory, config)}
    figure = _figure(config.get("training"))
    if figure:
        card["figure"] = figure
    return card | _written(directory / CARD_FILE)


def card_value(directory: str | os.PathLike, key: str):
    """One field of the directory's card.json as JSON holds it (a number, an object ...); None when it has none."""
    return _card_json(Path(directory) / CARD_FILE).get(key)


def write_card_value(directory: str | os.PathLike, key: str, value) -> None:
    """Set one field of the directory's card.json (made if need be), its other fields kept; atomic."""
    path = Path(directory) / CARD_FILE
    card = _card_json(path) | {key: value}
    atomic_write(path, (json.dumps(card, indent=2, ensure_ascii=False) + "\n").encode(), what="model card")


def _written(path: Path) -> dict[str, str]:
    return {key: str(value) for key, value in _card_json(path).items() if key in CARD_FIELDS and value}


def _card_json(path: Path) -> dict:
    if not os.path.lexists(path):
        return {}
    check_regular_file(path, MAX_CONFIG_BYTES)
    try:
        written = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is corrupt: not valid JSON ({error})") from None
    if not isinstance(written, dict):
        raise CheckpointError(f"{path} is not a model card: a JSON object with the fields {', '.join(CARD_FIELDS)}")
    return written


def _summary(directory: Path, config: dict) -> str:
    """"8.5 M parameters, kind lm", counted from the weights file's header alone."""
    shapes = read_header(directory / WEIGHTS_FILE).values()
    parameters = sum(math.prod(shape) for shape in shapes)
    return f"{_count(parameters)} parameters, kind {config.get('kind')} ({CONFIG_FILE} has the details)"


def _figure(training) -> str:
    """The metrics the checkpoint was saved with: "valid loss 3.65, after step 10,652"."""
    if not isinstance(training, dict):
        return ""
    metrics = [f"{name.replace('_', ' ')} {value:.3g}" for name, value in training.items()
               if name not in COUNTERS and isinstance(value, float)]
    where = [f"{name} {value:,}" for name, value in training.items() if name in COUNTERS[:2] and isinstance(value, int)]
    return ", ".join(metrics) + (f" (saved at {', '.join(where)})" if metrics and where else "")


def _count(number: int) -> str:
    return f"{number / 1e6:.1f} M" if number >= 1e6 else f"{number:,}"
