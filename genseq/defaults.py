"""The default checkpoints embedded in the package, so generation works offline with no training step."""

from __future__ import annotations

from pathlib import Path

from .errors import CheckpointError

MODELS_DIR = Path(__file__).parent / "models"


def default_model_dir(name: str = "lm") -> Path:
    """The embedded checkpoint directory called name (e.g. "lm")."""
    directory = MODELS_DIR / name
    if not (directory / "config.json").exists():
        raise CheckpointError(
            f"this installation has no embedded default model {name!r} ({directory}); "
            "pass --model DIR with a checkpoint from `genseq train`"
        )
    return directory
