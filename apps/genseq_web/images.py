"""Uploaded images: open what the browser or an API client sent, or explain why it cannot be used.

Gradio hands the app the uploaded file untouched (the events run with
preprocess=False), so a file that is not an image, is damaged, or is too large
to decode becomes one message on the page instead of a traceback.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import gradio as gr
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000  # a 40-megapixel photo decodes to ~160 MB; anything larger is refused unread
MAX_UPLOAD = 25 * 2**20  # bytes; Gradio refuses larger uploads before they reach a task


def page_error(message: str) -> gr.Error:
    """A message for the page; the user's mistake needs no traceback in the server log."""
    return gr.Error(message, print_exception=False)


def upload_path(payload) -> str | None:
    """The server-side path of an uploaded file: Gradio sends {"path": ...}; Python callers may pass a path."""
    if payload is None or isinstance(payload, (str, Path)):
        return None if payload is None else str(payload)
    return payload.get("path")


def read_image(payload, name: str = "image") -> Image.Image:
    """The uploaded image, decoded and upright (EXIF orientation applied), or a gr.Error saying what is wrong."""
    path = upload_path(payload)
    if not path:
        raise page_error(f"Add an image for {name}: upload one, take one with the webcam or paste one.")
    image = _open(path)
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise page_error(
            f"The image is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels); "
            f"the limit is {MAX_PIXELS / 1e6:.0f} megapixels. Scale it down and try again."
        )
    try:
        image.load()
        return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError):
        raise page_error("The image file is damaged or truncated; try another file.") from None


def _open(path: str) -> Image.Image:
    """Read the header only, so a huge image is measured before anything is decoded."""
    try:
        with warnings.catch_warnings():
            # Pillow only warns about "decompression bombs" below twice its limit; ours is stricter anyway.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except Image.DecompressionBombError:
        raise page_error(f"The image is far larger than the {MAX_PIXELS / 1e6:.0f}-megapixel limit; scale it down.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise page_error(
            f"{Path(path).name} is not an image this app can read; upload a PNG, JPEG, WebP, GIF or BMP file."
        ) from None
