"""User-facing errors: each message is one sentence that says what went wrong and what to do.

The CLI prints these without a traceback and exits non-zero; anything else
escaping is a bug in genseq.
"""


class GenseqError(Exception):
    """Base class for errors caused by the user's input, data or environment."""


class ConfigError(GenseqError, ValueError):
    """An option is out of range or contradicts another option."""


class DataError(GenseqError):
    """Training or evaluation data is missing, empty, binary or not UTF-8."""


class CheckpointError(GenseqError):
    """A checkpoint directory is missing, corrupt, foreign or from a newer genseq."""


class TrainingError(GenseqError):
    """Training cannot go on (for example the loss became NaN)."""


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first line of an error's message (at most limit characters; its type's name when it has none):
    a library's multi-line dump stays out of a one-line report."""
    lines = str(error).strip().splitlines()
    return lines[0][:limit] if lines else type(error).__name__
