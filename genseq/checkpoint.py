"""Checkpoints: a directory with config.json, model.safetensors and tokenizer.model.

Nothing is pickled and loading never executes code from the files. Every file
is written to a temporary name and renamed into place, and a checkpoint whose
files must agree with each other (a resumable training state) is written as a
whole directory and swapped in, so a kill at any moment leaves the previous
checkpoint readable.

Loading checks before it allocates: each file must be a regular file of a sane
size (stat, never open, so a FIFO or a device cannot hang or flood a load), the
model config's fields must have their declared types, and the shapes the config
implies must be the ones in the weights file's header, so a config.json that
asks for a billion hidden units is refused instead of allocated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import struct
import typing
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from . import __version__
from .checkpoint_config import (  # noqa: F401  (the config file's readers belong to this module's interface too)
    CONFIG_FILE, FORMAT, FORMAT_VERSION, MAX_CONFIG_BYTES, write_error, atomic_write, check_regular_file, read_config,
)
from .errors import CheckpointError, GenseqError
from .model import LanguageModel, ModelConfig
from .tokenizer import Tokenizer

WEIGHTS_FILE, TOKENIZER_FILE = "model.safetensors", "tokenizer.model"
MAX_TOKENIZER_BYTES = 1 << 30  # a SentencePiece model of a million pieces is tens of megabytes
MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit on its JSON header
COUNT_FIELDS = ("num_layers",)  # config fields that count modules: each one adds tensors to the weights file


# ---- atomic files and directories ------------------------------------------
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
        raise write_error(directory, error) from None


def read_directory_path(directory: str | os.PathLike) -> Path:
    """The directory, or its previous version if a swap was interrupted half way."""
    directory = Path(directory)
    previous = directory.with_name(f".{directory.name}.old")
    if not directory.exists() and previous.exists():
        return previous
    return directory


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

    Weights stored in a lower precision load back into the model's float32 parameters. A tokenizer with
    style labels has them listed in config.json's "labels", so that they can be shown without loading it.
    """
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "model_config": model_config,
        "tokenizer": {"file": TOKENIZER_FILE, "vocab_size": tokenizer.vocab_size},
        **({"labels": list(tokenizer.styles)} if tokenizer.styles else {}),
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
        raise write_error(directory, error) from None
    for name, data in files.items():
        atomic_write(directory / name, data)


def max_weights_bytes() -> int:
    """A weights file is loaded whole, so it may be no larger than this machine's memory."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): a generous fixed cap
        return 64 << 30


# ---- the weights file's header, read without its data ---------------------------------
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def read_header(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """name -> shape of every tensor in a safetensors file, from its header alone.

    The file is 8 bytes of little-endian header length, the JSON header, then the data;
    the header is checked against the file's size so its shapes can be trusted for sizing a model.
    """
    size = check_regular_file(path, max_weights_bytes())
    corrupt = f"{path} is corrupt or truncated"
    with open(path, "rb") as file:
        prefix = file.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{corrupt} (it has {len(prefix)} bytes, fewer than a header)")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(f"{corrupt} (its header claims {length} bytes)")
        try:
            header = json.loads(file.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointError(f"{corrupt} (its header is not valid JSON: {error})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{corrupt} (its header is not a JSON object)")
    header.pop("__metadata__", None)
    return {name: _checked_entry(name, entry, size - 8 - length, corrupt) for name, entry in header.items()}


def _checked_entry(name: str, entry: Any, data_bytes: int, corrupt: str) -> tuple[int, ...]:
    try:
        shape, (begin, end) = entry["shape"], entry["data_offsets"]
        width = _DTYPE_BYTES[entry["dtype"]]
        ok = all(type(n) is int and n >= 0 for n in (*shape, begin, end)) and end - begin == width * math.prod(shape)
    except (TypeError, KeyError, ValueError):
        ok = False
    if not ok or end > data_bytes:
        raise CheckpointError(f"{corrupt} (the header's entry for {name} does not fit the file)")
    return tuple(shape)


# ---- model configs, checked before a model is built ---------------------------------------
def model_config_from(config_class: type, values: Any, path: str | os.PathLike, header: dict[str, tuple[int, ...]]):
    """config_class(**values), or a CheckpointError naming path: each field must have its declared
    type (an int size is never a float, bool, string or NaN), each count of layers must be one the
    weights file can hold, and the class's own range checks must pass."""
    if not isinstance(values, dict):
        raise CheckpointError(f"{path} has no model_config object")
    hints = typing.get_type_hints(config_class)
    known = {field.name for field in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise CheckpointError(f"{path} has a model_config with unknown fields ({', '.join(unknown)})")
    for name, value in values.items():
        expected = _type_name(hints.get(name), value)
        if expected:
            raise CheckpointError(f"{path}: model_config.{name} must be {expected}, not {value!r}")
        if name in COUNT_FIELDS and value > len(header):
            raise CheckpointError(f"{path}: model_config.{name} is {value} but the weights file holds only "
                                  f"{len(header)} tensors")
    try:
        return config_class(**values)
    except GenseqError as error:
        raise CheckpointError(f"{path}: {error}") from None
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has an invalid model_config ({error})") from None


def _type_name(hint: Any, value: Any) -> str | None:
    """What value should be when it does not match hint (None when it does or hint is not checked)."""
    if hint is int:
        return None if type(value) is int else "an integer"
    if hint is float:
        finite = type(value) in (int, float) and math.isfinite(value)
        return None if finite else "a finite number"
    if hint is bool:
        return None if type(value) is bool else "true or false"
    if hint is str:
        return None if type(value) is str else "a string"
    if typing.get_origin(hint) is tuple:
        numbers = isinstance(value, (list, tuple)) and all(type(v) in (int, float) and math.isfinite(v) for v in value)
        return None if numbers else "a list of finite numbers"
    return None


def build_checked(build: Callable[[], torch.nn.Module], header: dict[str, tuple[int, ...]], path) -> torch.nn.Module:
    """build(), once check_buildable has shown that its tensors are those of the weights file."""
    check_buildable(build, header, path)
    return build()


def check_buildable(build: Callable[[], torch.nn.Module], header: dict[str, tuple[int, ...]], path) -> None:
    """Refuse a model whose tensors are not exactly those in the weights file's header, found by
    a dry run of build() on the meta device, which allocates nothing."""
    try:
        with torch.device("meta"):
            probe = build()
    except (RuntimeError, ValueError, OverflowError) as error:  # e.g. "Storage size calculation overflowed"
        raise CheckpointError(
            f"{path} cannot hold the model its config.json describes, which cannot even be sized "
            f"({str(error).splitlines()[0][:200]})"
        ) from None
    expected = _stored_shapes(probe)
    missing, unexpected = sorted(set(expected) - set(header)), sorted(set(header) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match its config.json (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for name, shape in expected.items():
        if header[name] != shape:
            raise CheckpointError(f"{path}: {name} has shape {header[name]} but config.json implies {shape}")


def _stored_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """name -> shape of what weights_of() stores: the state dict less tied copies (found by identity,
    since meta tensors have no storage to compare)."""
    state = model.state_dict(keep_vars=True)
    first: dict[int, str] = {}
    for name, tensor in state.items():
        first.setdefault(id(tensor), name)
    return {name: tuple(tensor.shape) for name, tensor in state.items() if first[id(tensor)] == name}


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, refusing a file that is not regular, too large, corrupt or non-finite."""
    check_regular_file(path, max_weights_bytes())
    try:
        tensors = load_safetensors(Path(path).read_bytes())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (SafetensorError, ValueError, OSError) as error:
        raise CheckpointError(f"{path} is corrupt or truncated ({error})") from None
    check_finite(tensors, path)
    return tensors


def check_finite(tensors: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Refuse weights holding NaN or infinity: they come from a run that diverged and generate nothing."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"{path} holds non-finite weights (NaN or infinity in {name}, as a diverged run leaves), "
                "so it can be neither used nor resumed"
            )


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


def origin(name: str, directory: str | os.PathLike) -> dict:
    """What a fine-tune's config.json records as its "init": the checkpoint it started from (name when that is
    "default", an embedded model, else its resolved directory), its weights' SHA-256 and its genseq version."""
    weights = hashlib.sha256(Path(directory, WEIGHTS_FILE).read_bytes()).hexdigest()
    return {"from": name if name == "default" else str(Path(directory).resolve()), "sha256": weights,
            "genseq": read_config(directory, kind=None).get("versions", {}).get("genseq")}


# ---- the one loader ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ModelKind:
    """One kind of model as checkpoints hold it: config.json's "kind", the dataclass of its "model_config"
    (or one per part, for a model_config of parts such as {"encoder": ..., "decoder": ...}), and
    build(model_config, tokenizer), which makes the model with fresh weights."""

    name: str
    config: type | dict[str, type]
    build: Callable[[Any, Tokenizer], torch.nn.Module]

    def model_config(self, values: Any, path: Path, header: dict[str, tuple[int, ...]]) -> Any:
        """The checked config (or dict of configs) of a config.json's model_config; see model_config_from."""
        if not isinstance(self.config, dict):
            return model_config_from(self.config, values, path, header)
        if not isinstance(values, dict) or not set(self.config) <= set(values):
            parts = " and ".join(f'"{part}"' for part in self.config)
            raise CheckpointError(f"{path} has an invalid {self.name} model_config (it needs {parts})")
        return {part: model_config_from(config, values[part], path, header) for part, config in self.config.items()}


def build_saved(directory: str | os.PathLike, kind: ModelKind) -> tuple[torch.nn.Module, Tokenizer]:
    """(the model a checkpoint directory describes, with fresh weights; its tokenizer), every file checked:
    config.json's kind and fields, the weights file's header, the tokenizer, and the model's shapes
    against the header by a dry run that allocates nothing. Loading the weights is load_checkpoint's
    (or a resumed run's) part."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    config = read_config(directory, kind=kind.name)
    header = read_header(weights_path)
    model_config = kind.model_config(config.get("model_config"), config_path, header)
    tokenizer = Tokenizer.load(directory / TOKENIZER_FILE)

    def build() -> torch.nn.Module:
        try:
            return kind.build(model_config, tokenizer)
        except GenseqError as error:
            raise CheckpointError(f"{config_path}: {error}") from None

    return build_checked(build, header, weights_path), tokenizer


def load_checkpoint(name_or_path: str | os.PathLike, kind: ModelKind,
                    device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Tokenizer]:
    """(model, tokenizer) of a checkpoint directory or hub id holding a model of kind, checked before anything
    is allocated (build_saved) and its weights before they are loaded; the model is in eval mode."""
    directory = resolve(name_or_path)
    model, tokenizer = build_saved(directory, kind)
    load_weights(model, read_weights(directory / WEIGHTS_FILE), directory / WEIGHTS_FILE)
    return model.to(device).eval(), tokenizer


def build_language_model(config: ModelConfig, tokenizer: Tokenizer) -> LanguageModel:
    if tokenizer.vocab_size != config.vocab_size:
        raise CheckpointError(f"{TOKENIZER_FILE} has {tokenizer.vocab_size} pieces but the model expects {config.vocab_size}")
    return LanguageModel(config)


LANGUAGE_MODEL = ModelKind("lm", ModelConfig, build_language_model)


def from_pretrained(name_or_path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load (model, tokenizer) of a language model from a checkpoint directory or hub id; the model is in eval mode."""
    return load_checkpoint(name_or_path, LANGUAGE_MODEL, device)
