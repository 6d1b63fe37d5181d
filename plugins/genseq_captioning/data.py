"""Caption data: any `datasets` dataset with an image column and caption columns, and the encoder-feature cache.

--data is a local folder (an imagefolder with metadata.jsonl or metadata.csv,
or a dataset saved with save_to_disk), a csv/json/parquet file, or a hub name;
or a folder with Karpathy's split file (dataset_flickr8k.json, dataset_coco.json)
and its images, the layout Flickr8k and COCO captioning papers use.
Rows are grouped by image, so a dataset with one row per (image, caption)
pair and one with a list of captions per row both give every image all its
references. A caption column holds a string or a list of strings.

The frozen encoder's features of every image are computed once and kept in
the cache folder (GENSEQ_CACHE_DIR, default ~/.cache/genseq) as a float16
.npy file named after the encoder's weights and the images, so epochs,
resumed runs and later runs on the same data read them from disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from genseq.checkpoint import atomic_write
from genseq.errors import DataError

from .grounding import grounding_of
from .images import ImageError, prepare, source_name

CAPTION_COLUMNS = ("text", "caption", "captions", "sentences", "sentence", "raw")
NUMBERED_CAPTION = re.compile(r"caption_?\d+")
SPLIT_NAMES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
               "val": "validation", "dev": "validation", "test": "test", "testing": "test"}
DATASET_FILES = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


@dataclass
class CaptionSet:
    """Images and their reference captions, one entry per distinct image."""

    name: str
    images: list[Any] = field(default_factory=list)  # paths, bytes or `datasets` image dicts
    references: list[list[str]] = field(default_factory=list)
    groundings: list[Any] = field(default_factory=list)  # a grounding.Grounding or None per image; [] without boxes

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: Sequence[int]) -> "CaptionSet":
        groundings = [self.groundings[i] for i in indices] if self.groundings else []
        return CaptionSet(self.name, [self.images[i] for i in indices], [self.references[i] for i in indices], groundings)


# ---- loading ------------------------------------------------------------------------
def load_caption_set(spec: str, split: str = "train", image_column: str | None = None,
                     caption_columns: Sequence[str] | None = None, strict: bool = False) -> CaptionSet:
    """Read spec's split; unless strict, a dataset with a single split gives it whatever split is asked for."""
    splits_file = karpathy_file(spec)
    if splits_file:
        return load_karpathy(splits_file, split)
    dataset = _load_split(spec, split, strict)
    image_column = image_column or _image_column(dataset, spec)
    caption_columns = list(caption_columns or _caption_columns(dataset, spec, image_column))
    for column in [image_column, *caption_columns]:
        if column not in dataset.column_names:
            raise DataError(f"{spec} has no column {column!r}; its columns are {', '.join(dataset.column_names)}")
    import datasets

    if isinstance(dataset.features.get(image_column), datasets.Image):
        dataset = dataset.cast_column(image_column, datasets.Image(decode=False))  # decoded by images.py instead
    return _group_by_image(dataset, spec, image_column, caption_columns)


def _load_split(spec: str, split: str, strict: bool):
    import datasets

    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    path = Path(spec)
    try:
        if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "state.json").exists()
                              or (path / "dataset_dict.json").exists()):
            loaded = datasets.load_from_disk(spec)
        elif path.is_dir():
            loaded = datasets.load_dataset("imagefolder", data_files=imagefolder_files(path))
        elif path.is_file() and path.suffix in DATASET_FILES:
            loaded = datasets.load_dataset(DATASET_FILES[path.suffix], data_files=spec)
        elif path.exists() or spec.startswith((".", "/")) or spec.count("/") > 1:
            raise DataError(f"{spec} is neither a dataset folder, a csv/json/parquet file nor a hub dataset name")
        else:
            loaded = datasets.load_dataset(spec)
    except DataError:
        raise
    except Exception as error:  # datasets raises many types for a missing hub name, no network, a bad folder
        raise DataError(f"cannot load the dataset {spec} ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None
    return _pick_split(loaded, spec, split, strict)


def imagefolder_files(folder: Path) -> dict[str, str]:
    """{split: glob} of a local imagefolder: its split subfolders, else the whole folder as "train".

    datasets would guess splits from file names, and a single image called
    e.g. "steam_train.png" would become the whole training split.
    """
    splits = {SPLIT_NAMES[child.name]: str(child / "**") for child in sorted(folder.iterdir())
              if child.is_dir() and child.name in SPLIT_NAMES}
    return splits or {"train": str(folder / "**")}


def _pick_split(loaded, spec: str, split: str, strict: bool):
    import datasets

    if not isinstance(loaded, datasets.DatasetDict):
        if strict:
            raise DataError(f"{spec} has no split {split!r}")
        return loaded
    if split in loaded:
        return loaded[split]
    if len(loaded) == 1 and not strict:
        return next(iter(loaded.values()))
    raise DataError(f"{spec} has no split {split!r}; its splits are {', '.join(loaded)}")


def _image_column(dataset, spec: str) -> str:
    import datasets

    for name, feature in dataset.features.items():
        if isinstance(feature, datasets.Image):
            return name
    if "image" in dataset.column_names:
        return "image"
    raise DataError(f"{spec} has no image column (columns: {', '.join(dataset.column_names)}); name it with --image-column")


def _caption_columns(dataset, spec: str, image_column: str) -> list[str]:
    names = [name for name in dataset.column_names if name != image_column]
    for candidate in CAPTION_COLUMNS:
        if candidate in names:
            return [candidate]
    numbered = [name for name in names if NUMBERED_CAPTION.fullmatch(name)]
    if numbered:
        return numbered
    raise DataError(f"{spec} has no caption column named {', '.join(CAPTION_COLUMNS)} or caption_N "
                    f"(columns: {', '.join(names)}); name it with --caption-column")


def _group_by_image(dataset, spec: str, image_column: str, caption_columns: list[str]) -> CaptionSet:
    result, position = CaptionSet(spec), {}
    for row in dataset:
        image = row[image_column]
        key = image_key(image)
        if key not in position:
            position[key] = len(result.images)
            result.images.append(image)
            result.references.append([])
            if "objects" in dataset.column_names:  # a composed scene's boxes (scenes.py)
                result.groundings.append(grounding_of(row, caption_columns[0]))
        result.references[position[key]].extend(_captions(row, caption_columns))
    kept = [i for i, refs in enumerate(result.references) if refs]
    if not kept:
        raise DataError(f"{spec} has no captions in {', '.join(caption_columns)}")
    return result.subset(kept) if len(kept) < len(result) else result


def _captions(row: dict, columns: list[str]) -> list[str]:
    captions = []
    for column in columns:
        value = row[column]
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            text = item.get("raw") if isinstance(item, dict) else item  # e.g. {"raw": ..., "tokens": ...}
            if isinstance(text, str) and text.strip():
                captions.append(text.strip())
    return captions


def image_key(image: Any) -> str:
    """What identifies an image for grouping and caching: its path with size and time, or its bytes' hash."""
    if isinstance(image, dict):
        if image.get("path") and not image.get("bytes"):
            image = image["path"]
        elif image.get("bytes"):
            return "sha1:" + hashlib.sha1(image["bytes"]).hexdigest()
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        try:
            stat = path.stat()
            return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            return str(path)
    if isinstance(image, (bytes, bytearray)):
        return "sha1:" + hashlib.sha1(image).hexdigest()
    return f"object:{id(image)}"


# ---- Karpathy's splits: Flickr8k, Flickr30k, COCO ----------------------------------------
# The splits captioning papers use (Show, Attend and Tell among them) are Karpathy and Fei-Fei's
# dataset_flickr8k.json, dataset_flickr30k.json and dataset_coco.json:
#   {"images": [{"filename": ..., "filepath": ... (COCO only), "split": "train" | "restval" | "val" | "test",
#                "sentences": [{"raw": ..., "tokens": [...]}, ...]}, ...]}
# A folder holding one of them, with the images beside it or in images/, is read as such.
KARPATHY_SPLITS = {"train": ("train", "restval"), "validation": ("val",), "test": ("test",)}


def karpathy_file(spec: str) -> Path | None:
    """The dataset_*.json of Karpathy's splits in the folder spec, if it holds one."""
    folder = Path(spec)
    found = sorted(folder.glob("dataset_*.json")) if folder.is_dir() else []
    return found[0] if found else None


def load_karpathy(path: Path, split: str) -> CaptionSet:
    """One split of a Karpathy json, every sentence of an image a reference; "train" includes "restval"."""
    wanted = KARPATHY_SPLITS.get(SPLIT_NAMES.get(split, split), (split,))
    images = path.parent / "images" if (path.parent / "images").is_dir() else path.parent
    result = CaptionSet(str(path.parent))
    try:
        for entry in json.loads(path.read_text())["images"]:
            captions = _captions(entry, ["sentences"]) if entry.get("split") in wanted else []
            if captions:
                result.images.append(str(images / entry.get("filepath", "") / entry["filename"]))
                result.references.append(captions)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise DataError(f"{path} is not a Karpathy split file: images with a filename, a split and sentences "
                        f"({type(error).__name__}: {error})") from None
    if not result.images:
        raise DataError(f"{path} has no images in the split {split!r}")
    if not any(Path(image).exists() for image in result.images):
        raise DataError(f"{path} names images such as {Path(result.images[0]).name}, and none is in {images}")
    return result


# ---- the feature cache -----------------------------------------------------------
def cache_dir() -> Path:
    return Path(os.environ.get("GENSEQ_CACHE_DIR", Path.home() / ".cache" / "genseq")) / "captioning"


def encoder_fingerprint(encoder) -> str:
    """A hash of everything the cached features depend on: the config, the frozen stages' weights."""
    digest = hashlib.sha256(json.dumps(encoder.config.to_dict(), sort_keys=True).encode())
    digest.update(str(len(encoder.frozen)).encode())
    hash_weights(digest, encoder.frozen)
    return digest.hexdigest()


def hash_weights(digest, modules) -> None:
    """Feed every tensor of the modules, with its name, into the hashlib digest."""
    for module in modules:
        for name, tensor in module.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())


@dataclass
class Features:
    """The frozen encoder's output for each image of a CaptionSet; unreadable images are listed in errors."""

    values: torch.Tensor  # (N, C', h, w) float16
    errors: dict[int, str]  # image index -> why it could not be read (its row of values is zeros)

    @property
    def readable(self) -> list[int]:
        return [i for i in range(self.values.size(0)) if i not in self.errors]


def cached_features(encoder, images: Sequence[Any], batch_size: int = 32, progress: bool = True,
                    device: torch.device | str = "cpu") -> Features:
    """The frozen part of encoder over every image, from the cache when it holds them, else computed and stored."""
    keys = [image_key(image) for image in images]
    name = hashlib.sha256((encoder_fingerprint(encoder) + "\n" + "\n".join(keys)).encode()).hexdigest()[:24]
    path = cache_dir() / f"features-{name}.npy"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        errors = {int(k): v for k, v in json.loads(meta_path.read_text())["errors"].items()}
        return Features(torch.from_numpy(np.load(path)), errors)
    values, errors = compute_features(encoder, images, batch_size, progress, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, _npy_bytes(values.numpy()))
    atomic_write(meta_path, json.dumps({"errors": errors, "shape": list(values.shape), "images": len(images)}).encode())
    return Features(values, errors)


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@torch.no_grad()
def compute_features(encoder, images: Sequence[Any], batch_size: int = 32, progress: bool = True,
                     device: torch.device | str = "cpu") -> tuple[torch.Tensor, dict[int, str]]:
    """-> (frozen features (N, C', h, w) float16, {index: error} for images that could not be read)."""
    from tqdm import tqdm

    config, errors, chunks = encoder.config, {}, []
    was_training = encoder.training
    encoder.eval()
    with tqdm(total=len(images), desc="encoding images", unit="image", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(images), batch_size):
            batch, rows = [], []
            for index in range(start, min(start + batch_size, len(images))):
                try:
                    batch.append(prepare(images[index], config.image_size, config.mean, config.std,
                                         name=source_name(images[index], index))[0])
                    rows.append(index - start)
                except ImageError as error:
                    errors[index] = str(error)
            size = min(batch_size, len(images) - start)
            chunks.append(_place(encoder, batch, rows, size, device))
            bar.update(size)
    encoder.train(was_training)
    return torch.cat(chunks), errors


def _place(encoder, batch: list[torch.Tensor], rows: list[int], size: int, device) -> torch.Tensor:
    """Features of the readable images in their rows of a (size, C', h, w) block; unreadable rows stay zero."""
    if not batch:
        shape = encoder.frozen_features(torch.zeros(1, 3, encoder.config.image_size, encoder.config.image_size)).shape[1:]
        return torch.zeros(size, *shape, dtype=torch.float16)
    features = encoder.frozen_features(torch.stack(batch).to(device)).cpu()  # (G, C', h, w)
    block = torch.zeros(size, *features.shape[1:], dtype=torch.float16)
    block[rows] = features.half()
    return block
