"""genseq: sequence generation with recurrent networks.

The core knows no task: a language model, its tokenizer, data, training,
evaluation, checkpoints and the generation engine. Tasks are plugins.

The names below are imported on first use, so `import genseq.tasks` (and
`genseq tasks`) stays free of torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

from .errors import CheckpointError, ConfigError, DataError, GenseqError, TrainingError  # noqa: E402

_LAZY = {
    "LanguageModel": ".model",
    "ModelConfig": ".model",
    "Tokenizer": ".tokenizer",
    "from_pretrained": ".checkpoint",
    "save_pretrained": ".checkpoint",
    "default_model_dir": ".defaults",
}

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "GenseqError",
    "LanguageModel",
    "ModelConfig",
    "Tokenizer",
    "TrainingError",
    "default_model_dir",
    "from_pretrained",
    "save_pretrained",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'genseq' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
