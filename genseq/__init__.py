"""genseq: sequence generation with recurrent networks.

The core knows no task: a language model, its tokenizer, data, training,
evaluation, checkpoints and the generation engine. Tasks are plugins.
"""

__version__ = "0.1.0"

from .errors import CheckpointError, ConfigError, DataError, GenseqError, TrainingError  # noqa: E402
from .model import LanguageModel, ModelConfig  # noqa: E402
from .tokenizer import Tokenizer  # noqa: E402
from .checkpoint import from_pretrained, save_pretrained  # noqa: E402
from .defaults import default_model_dir  # noqa: E402

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
