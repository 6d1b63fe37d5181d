"""genseq: sequence generation with recurrent networks.

The core knows no task: a language model, its tokenizer, data, training,
evaluation, checkpoints and the generation engine. Tasks are plugins.

The names below are imported on first use, so `import genseq.tasks` (and
`genseq tasks`) stays free of torch.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import CheckpointError, ConfigError, DataError, GenseqError, TrainingError  # noqa: E402
from .lazy import lazy_attributes  # noqa: E402

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


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
