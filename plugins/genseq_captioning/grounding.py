"""Pointing accuracy: whether a captioner's attention, at each caption word that names an object, falls on it.

A grounded caption (a composed scene's reference, with each object's box and
the span of words that name it; genseq_captioning.scenes) is read by teacher
forcing, and the attention behind each naming word (the mean over its
tokenizer pieces, as in the attention maps) is compared with the boxes of
the objects that word names ("two dogs": either dog):

- peak: the centre of the grid cell of highest weight lies inside a box (a hit);
- mass: the share of the word's attention weight inside the boxes, each cell
  counted by the part of it that they cover.

A model that spreads its attention evenly hits as often as a point dropped
anywhere on the image does and puts that same share of its weight inside:
both baselines are the boxes' share of the image area (`uniform`). A Show and
Tell captioner has no attention, so it points at nothing and gets a note
instead of figures. Boxes are in the scene's pixels and mapped onto the
letterboxed square the encoder saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .attention_map import word_groups, words_and_weights

RASTER = 16  # sub-cells a side per grid cell when measuring how much of a cell the boxes cover
NO_ATTENTION = "a captioner without attention (Show and Tell) has nothing to point with"


@dataclass
class Grounding:
    """One image's grounded caption: its objects' boxes [x0, y0, x1, y1) in pixels of a width x height image,
    and the [start, end) span of caption words that names each."""

    caption: str
    objects: list[dict]
    width: int
    height: int

    def mentions(self) -> dict[tuple[int, int], list[list[float]]]:
        """Each naming span and the boxes of the objects it names."""
        spans: dict[tuple[int, int], list[list[float]]] = {}
        for item in self.objects:
            spans.setdefault(tuple(item["span"]), []).append(list(item["box"]))
        return spans

    def in_square(self, box: Sequence[float]) -> tuple[float, ...]:
        """A pixel box as fractions of the letterboxed square (the image centred on a square of its longest side)."""
        side = max(self.width, self.height)
        dx, dy = (side - self.width) / 2, (side - self.height) / 2
        return ((box[0] + dx) / side, (box[1] + dy) / side, (box[2] + dx) / side, (box[3] + dy) / side)


def grounding_of(row: dict, caption_column: str) -> Grounding | None:
    """The grounding of a data row with an "objects" column (scenes.py's metadata), or None when it has none."""
    objects = [item for item in row.get("objects") or [] if item and item.get("box") and item.get("span")]
    caption = row.get(caption_column)
    if not objects or not isinstance(caption, str) or not row.get("width") or not row.get("height"):
        return None
    return Grounding(caption.strip(), objects, int(row["width"]), int(row["height"]))


def coverage(boxes: Sequence[Sequence[float]], rows: int, columns: int) -> np.ndarray:
    """(rows, columns): the share of each grid cell inside the union of boxes given as fractions of the square."""
    height, width = rows * RASTER, columns * RASTER
    mask = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask[round(y0 * height): round(y1 * height), round(x0 * width): round(x1 * width)] = True
    return mask.reshape(rows, RASTER, columns, RASTER).mean(axis=(1, 3))


def point(grid: np.ndarray, boxes: Sequence[Sequence[float]]) -> tuple[bool, float, float]:
    """One word's attention grid (h, w) and the boxes it should look at (fractions of the square) ->
    (the peak is inside a box, the share of the weight inside, the boxes' share of the area)."""
    rows, columns = grid.shape
    row, column = np.unravel_index(int(np.argmax(grid)), grid.shape)
    x, y = (column + 0.5) / columns, (row + 0.5) / rows
    hit = any(x0 <= x < x1 and y0 <= y < y1 for x0, y0, x1, y1 in boxes)
    covered = coverage(boxes, rows, columns)
    mass = float((grid * covered).sum() / max(float(grid.sum()), 1e-12))
    return hit, mass, float(covered.mean())


def located_tokens(pieces: Sequence[str], grounding: Grounding, rows: int, columns: int) -> dict[int, np.ndarray]:
    """Where each token of a naming word should look, for attention supervision: token position -> the share of
    each cell of a rows x columns grid inside the boxes its word names (rows * columns,); {} when the caption's
    pieces (EOS left out, perhaps cut short) do not spell its whitespace-separated words."""
    words, groups = word_groups(list(pieces))
    if len(words) != len(grounding.caption.split()):
        return {}
    located = {}
    for (start, end), boxes in grounding.mentions().items():
        cells = coverage([grounding.in_square(box) for box in boxes], rows, columns).reshape(-1).astype(np.float32)
        for word in range(start, min(end, len(groups))):
            located.update({token: cells for token in groups[word]})
    return located


def word_grids(captioner, features: torch.Tensor, captions: Sequence[str]) -> list[np.ndarray | None]:
    """Each caption's attention per whitespace-separated word (W, h, w), teacher-forced on its image's finished
    features (B, C, h, w); None where the tokenizer's words are not the caption's."""
    tokenizer = captioner.tokenizer
    tokens = [tokenizer.encode(caption) + [tokenizer.eos_id] for caption in captions]
    weights = captioner.attention(features, tokens)  # one (T, h, w) per caption
    grids = []
    for caption, ids, weight in zip(captions, tokens, weights):
        pieces = [tokenizer.id_to_piece(token) for token in ids[:-1]]
        words, per_word = words_and_weights(pieces, weight[: len(pieces)])
        grids.append(per_word if len(words) == len(caption.split()) else None)
    return grids


@torch.no_grad()
def pointing_accuracy(captioner, frozen: torch.Tensor, groundings: Sequence[Grounding | None],
                      batch_size: int = 64) -> dict:
    """Pointing figures of captioner over the images with a grounding, from their frozen features (N, C', h, w).

    -> pointing_{words, peak, mass, uniform, unaligned}: naming words scored, the share of them whose peak
    is inside their object, their mean share of weight inside it, the uniform baseline of both, and the
    grounded captions left out because the tokenizer splits them into other words than spaces do.
    """
    grounded = [i for i, grounding in enumerate(groundings) if grounding and grounding.objects]
    if not captioner.decoder.config.attention:
        return {"pointing_captions": len(grounded), "pointing_note": NO_ATTENTION}
    scores, unaligned = [], 0
    for start in range(0, len(grounded), batch_size):
        chunk = grounded[start: start + batch_size]
        features = captioner.encoder.finish(frozen[chunk].to(captioner.device).float())
        for index, grids in zip(chunk, word_grids(captioner, features, [groundings[i].caption for i in chunk])):
            if grids is None:
                unaligned += 1
                continue
            scores.extend(_score(groundings[index], grids))
    hits, masses, shares = zip(*scores) if scores else ((), (), ())
    return {"pointing_words": len(scores), "pointing_peak": _mean(hits), "pointing_mass": _mean(masses),
            "pointing_uniform": _mean(shares), "pointing_unaligned": unaligned}


def _score(grounding: Grounding, grids: np.ndarray) -> list[tuple[bool, float, float]]:
    """(hit, mass, share) of every word of every naming span of one caption, given its per-word grids (W, h, w)."""
    scores = []
    for (start, end), boxes in grounding.mentions().items():
        square = [grounding.in_square(box) for box in boxes]
        scores.extend(point(grids[word], square) for word in range(start, min(end, len(grids))))
    return scores


def _mean(values) -> float | None:
    return round(float(np.mean(values)), 4) if len(values) else None
