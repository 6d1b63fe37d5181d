"""Reading any image the same way at training and at inference, and one clear sentence for each bad file.

An image goes: open (a path, bytes, a `datasets` image dict, or a PIL image)
-> first frame -> EXIF orientation applied -> RGB, with transparency
composited onto white and 16-bit or float data scaled down -> letterboxed onto
a white square -> normalised tensor (3, S, S). A file that cannot become an
image raises ImageError with one sentence naming it; load_batch() turns those
into per-item errors so the other images of a batch still get captions.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from genseq.errors import DataError

HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
BACKGROUND = (255, 255, 255)


class ImageError(DataError):
    """One image could not be read; the message is one sentence naming it."""


@dataclass
class LoadedBatch:
    """The images of a batch that could be read, and an error sentence for each one that could not."""

    pixels: torch.Tensor  # (G, 3, S, S) normalised, G = the readable images
    squares: list[Image.Image]  # the letterboxed RGB images the encoder saw, for attention maps
    rows: list[int]  # batch index of each readable image
    errors: dict[int, str]  # batch index -> why it could not be read


def source_name(source: Any, index: int = 0) -> str:
    """How an image is called in messages and JSON: its path, else its file name, else its position."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, dict) and source.get("path"):
        return str(source["path"])
    filename = getattr(source, "filename", "")
    return filename or f"image {index + 1}"


# ---- opening ---------------------------------------------------------------------
def open_image(source: Any, size_hint: int = 0, name: str | None = None) -> Image.Image:
    """An RGB PIL image of the first frame, upright, transparency on white; ImageError if it cannot be read.

    size_hint lets a JPEG decode at a reduced scale (at least this many pixels a side),
    which makes huge photographs cheap to read.
    """
    name = name or source_name(source)
    try:
        image = _open(source, name)
        _check_size(image, name)
        if size_hint and image.format == "JPEG":
            image.draft("RGB", (size_hint, size_hint))
        if getattr(image, "is_animated", False):
            image.seek(0)
        image.load()
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"{name} is too large to decode safely (over {Image.MAX_IMAGE_PIXELS:,} pixels)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(f"{name} is truncated or corrupt and cannot be decoded ({_reason(error)})") from None
    except Exception as error:  # Pillow's format plugins raise many types on malformed files
        raise ImageError(f"{name} could not be decoded ({type(error).__name__}: {_reason(error)})") from None


def _open(source: Any, name: str) -> Image.Image:
    """Open without decoding pixels: only the header is read here."""
    if isinstance(source, Image.Image):  # the caller's image is left as it is
        if getattr(source, "is_animated", False):
            source.seek(0)
        return source.copy()
    if isinstance(source, dict):  # a `datasets` Image(decode=False) value
        source = source.get("bytes") or source.get("path")
    if isinstance(source, (bytes, bytearray)):
        data = io.BytesIO(source)
        if not source:
            raise ImageError(f"{name} is empty (0 bytes), not an image")
    else:
        path = Path(source)
        if not path.exists():
            raise ImageError(f"{name} does not exist")
        if path.is_dir():
            raise ImageError(f"{name} is a folder, not an image")
        if path.stat().st_size == 0:
            raise ImageError(f"{name} is empty (0 bytes), not an image")
        data = path
    try:
        with warnings.catch_warnings():  # over the warning limit: _check_size gives the sentence
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(data)
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image in a format Pillow can read") from None
    except PermissionError:
        raise ImageError(f"{name} cannot be read (permission denied)") from None


def _check_size(image: Image.Image, name: str) -> None:
    width, height = image.size
    if width == 0 or height == 0:
        raise ImageError(f"{name} has zero width or height ({width}x{height})")
    if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
        raise ImageError(
            f"{name} is too large to decode safely ({width}x{height} pixels; the limit is {Image.MAX_IMAGE_PIXELS:,})"
        )


def _reason(error: BaseException) -> str:
    return str(error).rstrip(".") or type(error).__name__


# ---- modes -------------------------------------------------------------------------
def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB; alpha (or a transparent palette entry) is composited onto white."""
    if image.mode in HIGH_DEPTH_MODES:
        image = _high_depth_to_gray(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, RGB


def _high_depth_to_gray(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit or float gray -> 8-bit L by scaling (Pillow's own convert would clip at 255)."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        peak = 65535.0
    elif image.mode == "F":
        peak = 1.0 if values.size and values.max() <= 1.0 else 255.0
    else:
        peak = 65535.0 if values.size and values.max() > 255 else 255.0
    return Image.fromarray(np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")


# ---- to the encoder -------------------------------------------------------------------
def letterbox(image: Image.Image, size: int) -> Image.Image:
    """Scale the longest side to size and centre on a white size x size square (the aspect ratio is kept)."""
    width, height = image.size
    scale = size / max(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = image.resize(new_size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    square = Image.new("RGB", (size, size), BACKGROUND)
    square.paste(resized, ((size - new_size[0]) // 2, (size - new_size[1]) // 2))
    return square


def to_tensor(square: Image.Image, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """RGB image -> (3, S, S) float tensor, (x / 255 - mean) / std per channel."""
    pixels = torch.from_numpy(np.asarray(square, dtype=np.float32).copy()).permute(2, 0, 1) / 255.0  # (3, S, S)
    return (pixels - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def prepare(source: Any, size: int, mean, std, name: str | None = None) -> tuple[torch.Tensor, Image.Image]:
    """One image -> (normalised tensor (3, S, S), the letterboxed square); ImageError if unreadable."""
    square = letterbox(open_image(source, size_hint=size, name=name), size)
    return to_tensor(square, mean, std), square


def load_batch(sources: Sequence[Any], size: int, mean, std) -> LoadedBatch:
    """Prepare every image; an unreadable one becomes an error sentence and the rest go on."""
    tensors, squares, rows, errors = [], [], [], {}
    for index, source in enumerate(sources):
        try:
            tensor, square = prepare(source, size, mean, std, name=source_name(source, index))
        except ImageError as error:
            errors[index] = str(error)
            continue
        tensors.append(tensor)
        squares.append(square)
        rows.append(index)
    pixels = torch.stack(tensors) if tensors else torch.zeros(0, 3, size, size)
    return LoadedBatch(pixels, squares, rows, errors)
