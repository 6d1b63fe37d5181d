"""Attention-map pictures, as in the Show, Attend and Tell figures: the image, then one heat map per word.

A word spelled by several tokenizer pieces gets the mean of their attention
weights. Each weight grid (h, w) is upsampled smoothly to the letterboxed
image the encoder saw, so the heat lies over what the decoder looked at.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from genseq.figures import BADGE_MARGIN, png_bytes, pyplot

WORD_START = "▁"  # SentencePiece's marker of a piece that begins a word
COLUMNS = 3  # pictures per line, each large enough to see what it covers in a page column; a caption wraps onto more lines


@dataclass
class AttentionRow:
    """One image's part of the picture."""

    square: Image.Image  # the letterboxed image the encoder saw
    caption: str
    words: list[str]
    weights: np.ndarray  # (W, h, w), one grid per word


def word_groups(pieces: list[str]) -> tuple[list[str], list[list[int]]]:
    """Tokenizer pieces (EOS left out) -> the whole words they spell and each word's piece indices."""
    words: list[str] = []
    groups: list[list[int]] = []
    for index, piece in enumerate(pieces):
        if piece.startswith(WORD_START) or not words:
            words.append(piece.removeprefix(WORD_START))
            groups.append([index])
        else:
            words[-1] += piece
            groups[-1].append(index)
    kept = [i for i, word in enumerate(words) if word]  # a bare "▁" piece spells nothing
    return [words[i] for i in kept], [groups[i] for i in kept]


def words_and_weights(pieces: list[str], weights: torch.Tensor) -> tuple[list[str], np.ndarray]:
    """Tokenizer pieces (EOS left out) and their weights (T, h, w) -> whole words and their mean weights (W, h, w)."""
    words, groups = word_groups(pieces)
    grids = [weights[group].mean(0).numpy() for group in groups]
    return words, np.stack(grids) if grids else np.zeros((0, *weights.shape[1:]))


def upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """(h, w) weights -> (size, size), scaled to [0, 1] for display."""
    image = Image.fromarray(grid.astype(np.float32), mode="F").resize((size, size), Image.Resampling.BICUBIC)
    values = np.asarray(image)
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def render(rows: list[AttentionRow]) -> bytes:
    """The PNG of every row: each image and its caption, then one heat map per word, wrapping every COLUMNS pictures."""
    plt = pyplot()

    lines = [(row, chunk) for row in rows for chunk in _chunks(len(row.words) + 1)]
    figure, axes = plt.subplots(len(lines), COLUMNS, figsize=(3.0 * COLUMNS, 3.3 * len(lines)), squeeze=False)
    for (row, chunk), line_axes in zip(lines, axes):
        for axis, index in zip(line_axes, list(chunk) + [None] * (COLUMNS - len(chunk))):
            axis.axis("off")
            if index is None:
                continue
            axis.imshow(row.square)
            if index == 0:
                axis.set_title(_shorten(row.caption), fontsize=12)
                continue
            heat = upsample(row.weights[index - 1], row.square.size[0])
            axis.imshow(heat, cmap="inferno", alpha=0.6, vmin=0.0, vmax=1.0)
            axis.set_title(row.words[index - 1], fontsize=16)
    return png_bytes(figure, dpi=80, top_margin=BADGE_MARGIN)


def _chunks(count: int) -> list[range]:
    return [range(start, min(start + COLUMNS, count)) for start in range(0, count, COLUMNS)]


def _shorten(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
