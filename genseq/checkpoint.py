"""Checkpoints: a directory with config.json, model.safetensors and tokenizer.model.

Nothing is pickled and loading never executes code from the files. Every file
is written to a temporary name and renamed into place, and a checkpoint whose
files must agree with each other (a resumable training state) is written as a
whole directory and swapped in, so a kill at any moment leaves the previous
checkpoint readable.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from . import __version__
from .errors import CheckpointError, GenseqError
from .model import LanguageModel, ModelConfig
from .tokenizer import Tokenizer

FORMAT = "genseq"
FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE = "config.json", "model.safetensors", "tokenizer.model"
_UMASK = os.umask(0o022)
os.umask(_UMASK)


# ---- atomic files and directories ------------------------------------------
def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write data to path so that readers see either the old file or the whole new one."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file ordinary permissions
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as error:
        raise _write_error(path, error) from None


def write_directory(directory: str | os.PathLike, files: dict[str, bytes]) -> None:
    """Replace directory with one holding exactly files, as one step as far as readers can tell.

    The new directory is written beside the old one and swapped in; if a kill lands
    between the two renames, read_directory_path() finds the previous one under .old.
    """
    directory = Path(directory)
    staging = directory.with_name(f".{directory.name}.tmp")
    previous = directory.with_name(f".{directory.name}.old")
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name, data in files.items():
            with open(staging / name, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
        if directory.exists():
            shutil.rmtree(previous, ignore_errors=True)
            directory.rename(previous)
        staging.rename(directory)
        shutil.rmtree(previous, ignore_errors=True)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise _write_error(directory, error) from None


def read_directory_path(directory: str | os.PathLike) -> Path:
    """The directory, or its previous version if a swap was interrupted half way."""
    directory = Path(directory)
    previous = directory.with_name(f".{directory.name}.old")
    if not directory.exists() and previous.exists():
        return previous
    return directory


def _write_error(path: Path, error: OSError) -> GenseqError:
    reason = error.strerror or str(error)
    return CheckpointError(f"cannot write {path}: {reason}; the previous checkpoint is left as it was")


# ---- nested state <-> (json, tensors) --------------------------------------
def split_tensors(obj: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Turn a nested structure into JSON-able data plus a flat dict of its tensors."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(value, key):
        if isinstance(value, torch.Tensor):
            tensors[key] = value.detach().cpu().contiguous()
            return {"__tensor__": key}
        if isinstance(value, dict):
            return {"__dict__": [[walk(k, f"{key}.k{i}"), walk(v, f"{key}.{i}")] for i, (k, v) in enumerate(value.items())]}
        if isinstance(value, (list, tuple)):
            return {"__list__" if isinstance(value, list) else "__tuple__": [walk(v, f"{key}.{i}") for i, v in enumerate(value)]}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"cannot store {type(value).__name__} in a checkpoint")

    return walk(obj, prefix), tensors


def join_tensors(data: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of split_tensors."""
    if isinstance(data, dict):
        if "__tensor__" in data:
            return tensors[data["__tensor__"]]
        if "__dict__" in data:
            return {join_tensors(k, tensors): join_tensors(v, tensors) for k, v in data["__dict__"]}
        if "__list__" in data:
            return [join_tensors(v, tensors) for v in data["__list__"]]
        if "__tuple__" in data:
            return tuple(join_tensors(v, tensors) for v in data["__tuple__"])
    return data


# ---- model checkpoints ------------------------------------------------------
def versions() -> dict[str, str]:
    return {"genseq": __version__, "torch": torch.__version__}


def model_files(
    model: torch.nn.Module, model_config: dict, tokenizer: Tokenizer, kind: str = "lm",
    dtype: torch.dtype | None = None, **extra: Any,
) -> dict[str, bytes]:
    """The three files of a checkpoint, as bytes; dtype (e.g. torch.float16) stores float weights smaller.

    Weights stored in a lower precision load back into the model's float32 parameters.
    """
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "model_config": model_config,
        "tokenizer": {"file": TOKENIZER_FILE, "vocab_size": tokenizer.vocab_size},
        "versions": versions(),
        **extra,
    }
    return {
        CONFIG_FILE: json.dumps(config, indent=2).encode(),
        WEIGHTS_FILE: save_safetensors(weights_of(model, dtype)),
        TOKENIZER_FILE: tokenizer.to_bytes(),
    }


def weights_of(model: torch.nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The state dict with tied copies dropped (safetensors stores each storage once), floats cast to dtype."""
    tensors, seen = {}, set()
    for name, tensor in model.state_dict().items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key not in seen:
            seen.add(key)
            tensor = tensor.detach().cpu()
            if dtype is not None and tensor.is_floating_point():
                tensor = tensor.to(dtype)
            tensors[name] = tensor.contiguous()
    return tensors


def save_pretrained(
    directory: str | os.PathLike, model: LanguageModel, tokenizer: Tokenizer,
    dtype: torch.dtype | None = None, **extra: Any,
) -> None:
    """Write a loadable checkpoint; each file is replaced atomically (dtype: see model_files)."""
    write_files(directory, model_files(model, model.config.to_dict(), tokenizer, dtype=dtype, **extra))


def write_files(directory: str | os.PathLike, files: dict[str, bytes]) -> None:
    """Write files into directory (made if need be), each replaced atomically; its other files stay.

    A run directory keeps its metrics and plot beside the best model this way;
    write_directory replaces a whole directory instead.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _write_error(directory, error) from None
    for name, data in files.items():
        atomic_write(directory / name, data)


def read_config(directory: str | os.PathLike, kind: str | None = "lm") -> dict:
    """Read and check config.json; kind=None accepts any kind of genseq checkpoint."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is not a checkpoint directory (it does not exist)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing, so {directory} is not a genseq checkpoint") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is corrupt: not valid JSON ({error})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a genseq checkpoint config (no \"format\": \"genseq\")")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {version}, newer than this genseq reads ({FORMAT_VERSION}); upgrade genseq"
        )
    if kind is not None and config.get("kind") != kind:
        raise CheckpointError(f"{directory} holds a {config.get('kind')!r} checkpoint, not {kind!r}")
    return config


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    try:
        return load_safetensors(Path(path).read_bytes())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (SafetensorError, ValueError, OSError) as error:
        raise CheckpointError(f"{path} is corrupt or truncated ({error})") from None


def load_weights(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path) -> None:
    """Load tensors into model, allowing only tied copies to be absent."""
    expected = model.state_dict()
    tied = set(expected) - set(weights_of(model))
    missing = set(expected) - set(tensors) - tied
    unexpected = set(tensors) - set(expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match its config.json (missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    for name, tensor in tensors.items():
        if expected[name].shape != tensor.shape:
            raise CheckpointError(
                f"{path}: {name} has shape {tuple(tensor.shape)} but config.json implies {tuple(expected[name].shape)}"
            )
    model.load_state_dict(tensors, strict=False)


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A local checkpoint directory, downloading a Hugging Face Hub repo id when not local."""
    path = Path(name_or_path)
    if path.exists() or str(name_or_path).count("/") != 1 or str(name_or_path).startswith((".", "/")):
        return read_directory_path(path)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name_or_path)))
    except Exception as error:  # the hub client raises many types; all mean "not available"
        raise CheckpointError(
            f"{name_or_path} is not a local directory and could not be fetched from the Hugging Face Hub ({type(error).__name__})"
        ) from None


def from_pretrained(name_or_path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load (model, tokenizer) from a checkpoint directory or hub id; the model is in eval mode."""
    directory = resolve(name_or_path)
    config = read_config(directory, kind="lm")
    try:
        model_config = ModelConfig(**config["model_config"])
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"{directory / CONFIG_FILE} has an invalid model_config ({error})") from None
    tokenizer = Tokenizer.load(directory / TOKENIZER_FILE)
    if tokenizer.vocab_size != model_config.vocab_size:
        raise CheckpointError(
            f"{directory / TOKENIZER_FILE} has {tokenizer.vocab_size} pieces but the model expects {model_config.vocab_size}"
        )
    model = LanguageModel(model_config)
    load_weights(model, read_weights(directory / WEIGHTS_FILE), directory / WEIGHTS_FILE)
    return model.to(device).eval(), tokenizer
