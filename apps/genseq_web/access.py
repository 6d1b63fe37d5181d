"""What a client may ask of this server: which checkpoints the model box loads, and how long a text may be.

The model box loads only the checkpoints the server was started with and those
under its models directory, and lists those of the kinds the task loads. Any other name gets the same answer whether or not
it exists on the server, so the box tells a client nothing about the server's
files. Every text a client sends (a prompt, a text to classify, a stop string)
is refused past max_prompt_chars characters, before any work is done on it.
"""

from __future__ import annotations

import os
from pathlib import Path

from genseq import ConfigError, GenseqError

from .images import page_error

DEFAULT_MODELS_DIR = "runs"  # where `genseq train --out runs/NAME` leaves checkpoints
# A few thousand tokens: a prefill of seconds on the default model, well within what a page shows.
DEFAULT_MAX_PROMPT_CHARS = 20_000
SHOWN_NAME = 120  # characters of a refused model name that the message repeats


class ServerAccess:
    """The checkpoints a client may load and the longest text it may send."""

    def __init__(self, models: list[str] = (), models_dir: str | os.PathLike = DEFAULT_MODELS_DIR,
                 max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS):
        if isinstance(max_prompt_chars, bool) or not isinstance(max_prompt_chars, int) or max_prompt_chars < 1:
            raise ConfigError(f"max_prompt_chars must be a whole number of characters >= 1, not {max_prompt_chars!r}")
        self.models = frozenset(Path(model).resolve() for model in models)
        self.models_dir = Path(models_dir)  # as given, for the model box's list
        self.root = self.models_dir.resolve()  # resolved once: what a requested path must lie under
        self.max_prompt_chars = max_prompt_chars

    def checkpoint_dirs(self, kinds: tuple[str, ...] | None = None) -> list[str]:
        """The checkpoints in the models directory, for the model box's list: those of the given kinds
        (config.json "kind"), or every one when kinds is None."""
        found = sorted(path.parent for path in self.models_dir.glob("*/config.json"))
        return [str(path) for path in found if kinds is None or checkpoint_kind(path) in kinds]

    def models_for(self, kinds: tuple[str, ...] | None = None) -> list[str]:
        """The checkpoints a tab's model box lists: those the server was started with, then those in its models
        directory, of the given kinds (every one when kinds is None)."""
        started = [str(path) for path in sorted(self.models) if kinds is None or checkpoint_kind(path) in kinds]
        return list(dict.fromkeys(started + self.checkpoint_dirs(kinds)))

    def read_model(self, raw) -> str | None:
        """None for the task's default model, else a checkpoint directory this server offers."""
        if not raw:
            return None
        path = _resolved(str(raw))
        if path is None or not (path in self.models or path.is_relative_to(self.root) and path != self.root):
            raise page_error(
                f"model {_shown(str(raw))} is not one of this server's models; choose the default model, one listed "
                f"in the model box, or a checkpoint under {self.models_dir}/"
            )
        if not _is_directory(path):
            raise page_error(f"model {_shown(str(raw))} is not a checkpoint directory; choose one listed in the model box")
        return str(path)

    def check_text(self, name: str, text: str) -> str:
        """text, when it is short enough for this server; else a gr.Error naming the input and the limit."""
        if len(text) > self.max_prompt_chars:
            raise page_error(
                f"{name} has {len(text):,} characters; this server takes at most {self.max_prompt_chars:,}: shorten it"
            )
        return text


def checkpoint_kind(directory: Path) -> str | None:
    """The kind a checkpoint's config.json declares ("lm", "captioner" ...), or None when it is no readable checkpoint."""
    from genseq.checkpoint import read_config

    try:
        return read_config(directory, kind=None).get("kind")
    except GenseqError:
        return None


def _resolved(name: str) -> Path | None:
    """The absolute path name stands for, or None when it cannot be one (a NUL byte, an unknown ~user)."""
    try:
        return Path(name).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return None


def _is_directory(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):  # a name too long for the file system names no directory either
        return False


def _shown(name: str) -> str:
    return name if len(name) <= SHOWN_NAME else name[:SHOWN_NAME] + "…"
