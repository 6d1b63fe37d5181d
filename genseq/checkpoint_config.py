"""A checkpoint's config.json, read and checked without torch, and the atomic file write every writer uses.

What a listing shows of a checkpoint (`genseq tasks --json`, the web app's
model box and style drop-down, the API's model list) comes from here, so that
listing never loads a model. genseq.checkpoint builds on these readers, and
what must not import torch (genseq.jobs) writes its files with atomic_write.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from .errors import CheckpointError, GenseqError
from .memory import byte_size

FORMAT = "genseq"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
MAX_CONFIG_BYTES = 1 << 20  # a config.json is a few kilobytes


def read_config(directory: str | os.PathLike, kind: str | None = "lm") -> dict:
    """Read and check config.json; kind=None accepts any kind of genseq checkpoint."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is not a checkpoint directory (it does not exist)")
    if not os.path.lexists(path):
        raise CheckpointError(f"{path} is missing, so {directory} is not a genseq checkpoint")
    check_regular_file(path, MAX_CONFIG_BYTES)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is corrupt: not valid JSON ({error})") from None
    except OSError as error:
        raise CheckpointError(f"cannot read {path}: {error.strerror}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a genseq checkpoint config (no \"format\": \"genseq\")")
    check_format_version(config.get("format_version"), path)
    if kind is not None and config.get("kind") != kind:
        raise CheckpointError(f"{directory} holds a {config.get('kind')!r} checkpoint, not {kind!r}")
    return config


def read_labels(directory: str | os.PathLike | None) -> list[str]:
    """The style labels config.json lists (those of the checkpoint's tokenizer, in id order); [] for none, no
    directory, or no readable checkpoint: a listing shows what it can, and loading the model says what is wrong."""
    if directory is None:
        return []
    try:
        labels = read_config(directory, kind=None).get("labels")
    except GenseqError:
        return []
    return [label for label in labels if isinstance(label, str)] if isinstance(labels, list) else []


def check_format_version(version: Any, path: Path) -> None:
    """Accept exactly the versions this genseq reads: the integers 1 to FORMAT_VERSION."""
    if type(version) is int and version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {version}, newer than this genseq reads ({FORMAT_VERSION}); upgrade genseq"
        )
    if type(version) is not int or version < 1:
        raise CheckpointError(
            f"{path} has format version {version!r}, which is not one genseq wrote "
            f"(an integer from 1 to {FORMAT_VERSION})"
        )


def check_regular_file(path: str | os.PathLike, max_bytes: int) -> int:
    """The size of path, refusing a missing file, a FIFO, a device or a directory, and one over max_bytes.

    Only stat() looks at the file: open() on a FIFO blocks and a device like /dev/zero never ends.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except OSError as error:
        raise CheckpointError(f"cannot read {path}: {error.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"{path} is {_file_kind(info.st_mode)}, not a regular file, so it is not read")
    if info.st_size > max_bytes:
        raise CheckpointError(
            f"{path} is {byte_size(info.st_size)}, more than the {byte_size(max_bytes)} such a file can sensibly be, "
            "so it is not read"
        )
    return info.st_size


def _file_kind(mode: int) -> str:
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]
    return next((name for test, name in kinds if test(mode)), "a special file")


def atomic_write(path: str | os.PathLike, data: bytes, what: str | None = "checkpoint") -> None:
    """Write data to path so that readers see either the old file or the whole new one (what: its kind, for errors)."""
    path = Path(path)
    try:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        # Mode 0666 less the process's umask, as for any new file (mkstemp would make it 0600).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as error:
        raise write_error(path, error, what) from None


def write_error(path: Path, error: OSError, what: str | None = "checkpoint") -> GenseqError:
    """The one sentence of a failed write of path; what names its kind, whose previous version a failure leaves."""
    reason = error.strerror or str(error)
    kept = f"; the previous {what} is left as it was" if what else ""
    return CheckpointError(f"cannot write {path}: {reason}{kept}")
