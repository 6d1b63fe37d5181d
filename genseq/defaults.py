"""The default checkpoints shipped inside packages, so generation works offline with no training step."""

from __future__ import annotations

from pathlib import Path

from .errors import CheckpointError

MODELS_DIR = Path(__file__).parent / "models"


def packaged_model_dir(directory: Path, what: str, trained_by: str = "genseq train") -> Path:
    """directory, a checkpoint shipped in a package (what: its name in the error); CheckpointError when
    this installation lacks it, saying to pass a checkpoint that the command trained_by makes."""
    if not (directory / "config.json").exists():
        raise CheckpointError(
            f"this installation has no {what} ({directory}); pass --model DIR with a checkpoint from `{trained_by}`"
        )
    return directory


def default_model_dir(name: str = "lm") -> Path:
    """The embedded checkpoint directory called name (e.g. "lm")."""
    return packaged_model_dir(MODELS_DIR / name, f"embedded default model {name!r}")
