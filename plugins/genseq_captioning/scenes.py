"""Composed scenes: one to three captioned objects pasted on a canvas, captions that say what is where, and boxes.

    python -m genseq_captioning.scenes --source ../shared/data/captions --out runs/scenes

The objects are the single-object captioning data (an imagefolder whose
metadata.jsonl gives each image its caption); an object whose caption is a
short name ("A frog.", "red apple") is kept, under that name. A stamp with
transparency is cut out along its alpha channel; one on a plain background
is cut out by flooding that background from the border; a picture whose
border is not plain is pasted whole. Scenes go on a white or pale plain
canvas or on a texture drawn here (grass, sand, water, bricks, wood: numpy
noise and strokes, named in the caption: "an apple on grass").

Every scene is a function of (seed, split, index) alone, so a split can be
made again without the others, and a smaller set is the start of a larger
one. The splits test composition: each unordered pair of object names
belongs to one split (by a hash of the seed and the names), so validation
and test pair objects never seen together in training, and a fixed share of
the names never appear above or below another object in training
(`new_relation` marks the scenes that show them so). Each split folder holds
the images and a metadata.jsonl whose rows are {"file_name", "text",
"width", "height", "objects": [{"name", "box", "span"}], "kind",
"new_relation"}: box = [x0, y0, x1, y1) in pixels of the visible object,
span = [start, end) of the caption's whitespace-separated words that name
it. Unless --no-singles, the training split also holds the source's
single-object images and captions, with no objects, so a captioner trained
on it keeps what it learned from them; --singles-repeat N lists each of
them N times (one image, its caption N times), which weighs them N times in
training at no extra encoding.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import random
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from genseq.checkpoint import atomic_write
from genseq.errors import DataError, GenseqError

SPLITS = ("train", "validation", "test")
PAIR_SPLIT = {0: "validation", 1: "test"}  # a pair's hash bucket out of PAIR_BUCKETS; every other bucket is train
PAIR_BUCKETS = 10
VERTICAL_HELD_BUCKETS = 7  # one name in this many is never above or below another in training
CANVAS = 224  # the encoder's input side: a scene reaches it unscaled, so its boxes are the encoder's
NAME = re.compile(r"[a-z][a-z'-]*( [a-z][a-z'-]*){0,2}")
ARTICLE = re.compile(r"^(a|an|the)\s+", re.IGNORECASE)
NUMBER = {2: "two"}

RELATIONS = {  # relation -> caption templates; {a} is the first object placed, {b} the second
    "left": ("{a} to the left of {b}", "{a} left of {b}", "{b} to the right of {a}", "{a} next to {b}"),
    "right": ("{a} to the right of {b}", "{a} right of {b}", "{b} to the left of {a}", "{a} next to {b}"),
    "above": ("{a} above {b}", "{a} over {b}", "{b} below {a}", "{b} under {a}"),
    "below": ("{a} below {b}", "{a} under {b}", "{b} above {a}", "{b} beneath {a}"),
}
VERTICAL = ("above", "below")
ROWS = {"row": ("{a}, {b} and {c} from left to right", "{a}, {b} and {c} in a row"),
        "column": ("{a}, {b} and {c} from top to bottom",)}
PLACES = {(0, 0): "in the top left corner", (1, 0): "at the top", (2, 0): "in the top right corner",
          (0, 1): "on the left", (1, 1): "in the middle", (2, 1): "on the right",
          (0, 2): "in the bottom left corner", (1, 2): "at the bottom", (2, 2): "in the bottom right corner"}
TEXTURES = {"grass": "on grass", "sand": "on sand", "water": "on water", "bricks": "in front of a brick wall",
            "wood": "on wood"}
PLAIN = ((255, 255, 255), (255, 255, 255), (250, 246, 235), (236, 240, 245), (240, 245, 236))
KINDS = (("single", 3), ("pair", 5), ("group", 2), ("triple", 2))  # how often each kind of scene is drawn
SIZES = {"single": (80, 160), "pair": (56, 104), "group": (44, 80), "triple": (44, 72)}  # longest side on a CANVAS


# ---- objects ---------------------------------------------------------------------------
@dataclass
class Stamp:
    """One object of the source data: its short name and its image file."""

    name: str
    path: Path

    @functools.cached_property
    def cut(self) -> Image.Image:
        """The object cut out of its image (RGBA, cropped to what is visible), read on first use."""
        with Image.open(self.path) as image:
            return cut_out(image)


def object_name(caption: str) -> str | None:
    """A caption's object name when the caption is one: "A frog." -> "frog", "red apple" -> "red apple"; else None."""
    name = ARTICLE.sub("", caption.strip().rstrip(".!").strip()).lower()
    return name if NAME.fullmatch(name) else None


def source_rows(source: Path) -> tuple[Path, list[dict]]:
    """The folder and rows of the source's metadata.jsonl (its train/ split when it has one)."""
    folder = source / "train" if (source / "train" / "metadata.jsonl").exists() else source
    metadata = folder / "metadata.jsonl"
    if not metadata.is_file():
        raise DataError(f"{source} has no metadata.jsonl (nor train/metadata.jsonl) of captioned object images")
    rows = []
    for number, line in enumerate(metadata.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or "file_name" not in row:
            raise DataError(f"line {number} of {metadata} is not a JSON object with a file_name")
        rows.append(row)
    return folder, rows


def load_stamps(source: Path) -> list[Stamp]:
    """Every source image whose caption is a short object name, in file order (cut out on first use)."""
    folder, rows = source_rows(source)
    stamps = [Stamp(name, folder / row["file_name"]) for row in rows if (name := object_name(str(row.get("text", ""))))]
    if len({stamp.name for stamp in stamps}) < 4:
        raise DataError(f"{source} has fewer than 4 differently named objects with a short caption such as 'A frog.'")
    return stamps


def cut_out(image: Image.Image) -> Image.Image:
    """The visible object of an image as RGBA cropped to it: its alpha channel, else its plain background
    flooded away from the border, else (a busy border, or nothing left) the whole picture."""
    rgba = image.convert("RGBA")
    if rgba.getchannel("A").getextrema()[0] < 250:
        alpha = rgba.getchannel("A").point(lambda value: value if value >= 16 else 0)
    else:
        alpha = _foreground(rgba.convert("RGB"))
    box = alpha.getbbox()
    if box is None:  # nothing but background: the picture is the object
        return rgba
    rgba.putalpha(alpha)
    return rgba.crop(box)


def _foreground(image: Image.Image, tolerance: int = 24) -> Image.Image:
    """An "L" mask: 0 where the border's colour reaches in from the border, 255 elsewhere (all 255 when the
    border is not one plain colour, as around a photograph)."""
    pixels = np.asarray(image, dtype=np.int16)  # (H, W, 3)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    colour = np.median(border, axis=0)
    if (np.abs(border - colour).max(axis=1) <= tolerance).mean() < 0.8:
        return Image.new("L", image.size, 255)
    # copied: an image made from an array is read-only, and floodfill would leave it unchanged without a word
    near = Image.fromarray(np.where(np.abs(pixels - colour).max(axis=2) <= tolerance, 255, 0).astype(np.uint8)).copy()
    width, height = image.size
    edge = [(x, y) for x in range(width) for y in (0, height - 1)] + [(x, y) for y in range(height) for x in (0, width - 1)]
    for point in edge:
        if near.getpixel(point) == 255:
            ImageDraw.floodfill(near, point, 128)
    return near.point(lambda value: 0 if value == 128 else 255)


# ---- splits ------------------------------------------------------------------------------
def _bucket(seed: int, *names: str, buckets: int) -> int:
    digest = hashlib.sha256("\n".join([str(seed), *sorted(names)]).encode()).digest()
    return int.from_bytes(digest[:8], "big") % buckets


def pair_split(seed: int, first: str, second: str) -> str:
    """The one split whose scenes may show these two names together."""
    return PAIR_SPLIT.get(_bucket(seed, first, second, buckets=PAIR_BUCKETS), "train")


def vertical_held(seed: int, name: str) -> bool:
    """Whether training never shows this name above or below another object."""
    return _bucket(seed, "vertical", name, buckets=VERTICAL_HELD_BUCKETS) == 0


# ---- captions ----------------------------------------------------------------------------
def plural(name: str) -> str:
    head, _, last = name.rpartition(" ")
    if last.endswith(("s", "x", "z", "ch", "sh")):
        last += "es"
    elif last.endswith("y") and last[-2:-1] not in tuple("aeiou"):
        last = last[:-1] + "ies"
    else:
        last += "s"
    return f"{head} {last}".strip()


def fill(template: str, phrases: dict[str, tuple[str, str]]) -> tuple[str, dict[str, tuple[int, int]]]:
    """A template with each slot's phrase, and the word span of each slot's name in the result.

    phrases maps a slot ("a", "b", "c") to (its words before the name, the name): ("two", "dogs").
    """
    words: list[str] = []
    spans = {}
    for part in template.split():
        slot = re.fullmatch(r"\{(\w)\}(,?)", part)
        if not slot:
            words.append(part)
            continue
        before, name = phrases[slot[1]]
        words.extend(before.split())
        spans[slot[1]] = (len(words), len(words) + len(name.split()))
        words.extend(name.split())
        words[-1] += slot[2]
    return " ".join(words), spans


def phrase(name: str, count: int) -> tuple[str, str]:
    """(the words before a name, the name) for count objects of that name: ("an", "apple"), ("two", "apples")."""
    if count == 1:
        return ("an" if name[0] in "aeiou" else "a"), name
    return NUMBER[count], plural(name)


# ---- drawing -----------------------------------------------------------------------------
def _noise(rng: np.random.Generator, size: int, cell: int) -> np.ndarray:
    """Smooth noise in [0, 1] of shape (size, size): a coarse random grid scaled up bicubically."""
    coarse = Image.fromarray((rng.random((max(2, size // cell),) * 2) * 255).astype(np.uint8))
    return np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32) / 255


def _shade(base: tuple[int, int, int], light: np.ndarray, spread: float) -> np.ndarray:
    """(size, size, 3) colours around base, brighter or darker by light in [0, 1]."""
    values = np.asarray(base, dtype=np.float32) * (1 + spread * (light[..., None] - 0.5))
    return np.clip(values, 0, 255)


def texture(kind: str, rng: np.random.Generator, size: int = CANVAS) -> Image.Image:
    """A drawn background: grass, sand, water, bricks or wood."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == "sand":
        light = 0.5 * _noise(rng, size, 24) + 0.3 * rng.random((size, size))
        light += 0.2 * (np.sin(y / 5 + 3 * _noise(rng, size, 48)) > 0)  # ripples
        return Image.fromarray(_shade((214, 186, 140), light, 0.35).astype(np.uint8))
    if kind == "water":
        waves = np.sin(y / 4 + 6 * _noise(rng, size, 40) + x / 30)
        return Image.fromarray(_shade((46, 104, 168), 0.5 + 0.35 * waves * _noise(rng, size, 16), 0.6).astype(np.uint8))
    if kind == "wood":
        grain = np.sin(y / 3 + 8 * _noise(rng, size, 56)) * 0.5 + 0.5
        return Image.fromarray(_shade((150, 98, 56), 0.6 * grain + 0.4 * _noise(rng, size, 8), 0.5).astype(np.uint8))
    if kind == "bricks":
        return _bricks(rng, size)
    return _grass(rng, size)


def _grass(rng: np.random.Generator, size: int) -> Image.Image:
    image = Image.fromarray(_shade((70, 132, 48), _noise(rng, size, 20), 0.5).astype(np.uint8))
    pen = ImageDraw.Draw(image)
    for _ in range(size * 6):
        x, y = rng.integers(0, size, 2)
        green = tuple(int(v) for v in rng.integers((30, 90, 20), (110, 190, 70)))
        pen.line((int(x), int(y), int(x + rng.integers(-3, 4)), int(y - rng.integers(4, 12))), fill=green, width=1)
    return image


def _bricks(rng: np.random.Generator, size: int) -> Image.Image:
    image = Image.new("RGB", (size, size), (200, 196, 188))  # mortar
    pen = ImageDraw.Draw(image)
    height, width = 18, 40
    for row, top in enumerate(range(0, size, height)):
        for left in range(-(row % 2) * width // 2, size, width):
            red = tuple(int(v) for v in rng.integers((140, 50, 40), (190, 85, 70)))
            pen.rectangle((left + 2, top + 2, left + width - 2, top + height - 2), fill=red)
    light = _noise(rng, size, 6)
    return Image.fromarray(np.clip(np.asarray(image, np.float32) * (0.85 + 0.3 * light[..., None]), 0, 255).astype(np.uint8))


def resized(cut: Image.Image, longest: int) -> Image.Image:
    scale = longest / max(cut.size)
    return cut.resize((max(1, round(cut.width * scale)), max(1, round(cut.height * scale))), Image.Resampling.LANCZOS)


def group_of_two(cut: Image.Image) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """Two copies of a cut-out side by side, and each copy's box in the group."""
    gap = max(4, cut.width // 6)
    group = Image.new("RGBA", (2 * cut.width + gap, cut.height), (0, 0, 0, 0))
    group.paste(cut, (0, 0))
    group.paste(cut, (cut.width + gap, 0))
    return group, [(0, 0, cut.width, cut.height), (cut.width + gap, 0, 2 * cut.width + gap, cut.height)]


def _overlap(first, second, margin: int) -> bool:
    return not (first[2] + margin <= second[0] or second[2] + margin <= first[0]
                or first[3] + margin <= second[1] or second[3] + margin <= first[1])


def _holds(relation: str, first, second) -> bool:
    """Whether first's box lies clearly to the relation's side of second's (beyond it, and more so than across)."""
    dx = (first[0] + first[2] - second[0] - second[2]) / 2
    dy = (first[1] + first[3] - second[1] - second[3]) / 2
    apart = {"left": first[2] < second[0], "right": first[0] > second[2],
             "above": first[3] < second[1], "below": first[1] > second[3]}[relation]
    along, across = (abs(dx), abs(dy)) if relation in ("left", "right") else (abs(dy), abs(dx))
    return apart and across < along / 2


# ---- scenes ------------------------------------------------------------------------------
@dataclass
class Scene:
    """One composed scene: its picture, its caption, and each object's name, box and caption span."""

    image: Image.Image
    caption: str
    objects: list[dict]  # {"name", "box": [x0, y0, x1, y1], "span": [start, end]}
    kind: str
    new_relation: bool = False

    def row(self, file_name: str) -> dict:
        return {"file_name": file_name, "text": self.caption, "width": self.image.width, "height": self.image.height,
                "objects": self.objects, "kind": self.kind, "new_relation": self.new_relation}


class SceneMaker:
    """Scenes of one source's objects; scene(split, index) depends only on the seed, the split and the index."""

    def __init__(self, stamps: list[Stamp], seed: int = 0, canvas: int = CANVAS):
        self.seed, self.canvas = seed, canvas
        self.by_name: dict[str, list[Stamp]] = {}
        for stamp in stamps:
            self.by_name.setdefault(stamp.name, []).append(stamp)
        self.names = sorted(self.by_name)

    def scene(self, split: str, index: int) -> Scene:
        rng = random.Random(f"{self.seed}:{split}:{index}")
        kinds, weights = zip(*KINDS)
        for _ in range(50):  # a layout that cannot fit (a very wide pair above each other) is drawn again
            scene = getattr(self, "_" + rng.choices(kinds, weights)[0])(rng, split)
            if scene is not None:
                return scene
        raise DataError(f"no {split} scene fits on a {self.canvas}-pixel canvas after 50 tries; use a larger canvas")

    # ---- one kind each
    def _single(self, rng: random.Random, split: str) -> Scene | None:
        name = rng.choice(self.names)
        cuts = [resized(self._cut(rng, name), self._size(rng, "single"))]
        placed = self._place(rng, cuts, None)
        if placed is None:
            return None
        templates = ["{a}"] * 3 + ["{a} " + PLACES[self._third(placed[0])]]
        text, spans = fill(rng.choice(templates), {"a": phrase(name, 1)})
        return self._finish(rng, "single", text, [(name, placed[0], spans["a"])], cuts, placed)

    def _pair(self, rng: random.Random, split: str, count: int = 1) -> Scene | None:
        first, second = self._two_names(rng, split)
        relation = rng.choice([r for r in RELATIONS if split != "train" or r not in VERTICAL
                               or not (vertical_held(self.seed, first) or vertical_held(self.seed, second))])
        size = self._size(rng, "group" if count == 2 else "pair")
        cut = resized(self._cut(rng, first), size)
        boxes_in_first = [(0, 0, cut.width, cut.height)]
        if count == 2:
            cut, boxes_in_first = group_of_two(cut)
        cuts = [cut, resized(self._cut(rng, second), self._size(rng, "pair"))]
        placed = self._place(rng, cuts, relation)
        if placed is None:
            return None
        text, spans = fill(rng.choice(RELATIONS[relation]), {"a": phrase(first, count), "b": phrase(second, 1)})
        left, top = placed[0][:2]
        objects = [(first, (left + b[0], top + b[1], left + b[2], top + b[3]), spans["a"]) for b in boxes_in_first]
        objects.append((second, placed[1], spans["b"]))
        new_relation = relation in VERTICAL and (vertical_held(self.seed, first) or vertical_held(self.seed, second))
        return self._finish(rng, "group" if count == 2 else "pair", text, objects, cuts, placed, new_relation)

    def _group(self, rng: random.Random, split: str) -> Scene | None:
        return self._pair(rng, split, count=2)

    def _triple(self, rng: random.Random, split: str) -> Scene | None:
        names = list(self._two_names(rng, split))
        third = self._partner(rng, split, names, exclude=names)
        if third is None:
            return None
        names.append(third)
        vertical = split != "train" or not any(vertical_held(self.seed, name) for name in names)
        layout = rng.choice(["row", "row", "column"] if vertical else ["row"])
        cuts = [resized(self._cut(rng, name), self._size(rng, "triple")) for name in names]
        placed = self._place(rng, cuts, "left" if layout == "row" else "above")
        if placed is None:
            return None
        text, spans = fill(rng.choice(ROWS[layout]), {slot: phrase(name, 1) for slot, name in zip("abc", names)})
        objects = [(name, box, spans[slot]) for slot, name, box in zip("abc", names, placed)]
        new_relation = layout == "column" and any(vertical_held(self.seed, n) for n in names)
        return self._finish(rng, "triple", text, objects, cuts, placed, new_relation)

    # ---- helpers
    def _cut(self, rng: random.Random, name: str) -> Image.Image:
        return rng.choice(self.by_name[name]).cut

    def _size(self, rng: random.Random, kind: str) -> int:
        return round(rng.randint(*SIZES[kind]) * self.canvas / CANVAS)

    def _two_names(self, rng: random.Random, split: str) -> tuple[str, str]:
        for _ in range(1000):
            first = rng.choice(self.names)
            second = self._partner(rng, split, [first], exclude=[first])
            if second is not None:
                return first, second
        raise DataError(f"the source has too few object names to draw {split} pairs from")

    def _partner(self, rng: random.Random, split: str, names: list[str], exclude: list[str]) -> str | None:
        """A name that may appear with every one of names in this split, or None after a bounded search."""
        for _ in range(200):
            other = rng.choice(self.names)
            if other not in exclude and all(pair_split(self.seed, name, other) == split for name in names):
                return other
        return None

    def _third(self, box) -> tuple[int, int]:
        return (min(2, (box[0] + box[2]) * 3 // (2 * self.canvas)), min(2, (box[1] + box[3]) * 3 // (2 * self.canvas)))

    def _place(self, rng: random.Random, cuts: list[Image.Image], relation: str | None) -> list[tuple] | None:
        """A box for each cut-out inside the canvas, apart from the others, each in relation to the next; None
        when 200 draws find none."""
        if any(cut.width > self.canvas or cut.height > self.canvas for cut in cuts):
            return None
        for _ in range(200):
            boxes = [self._draw_box(rng, cut, position, len(cuts), relation) for position, cut in enumerate(cuts)]
            if any(_overlap(a, b, 6) for i, a in enumerate(boxes) for b in boxes[i + 1:]):
                continue
            if relation is None or all(_holds(relation, a, b) for a, b in zip(boxes, boxes[1:])):
                return boxes
        return None

    def _draw_box(self, rng: random.Random, cut: Image.Image, position: int, count: int, relation: str | None) -> tuple:
        """A random box for a cut-out; with a relation, its centre falls in the position-th of count strips across
        the canvas along the relation's axis (reversed for right and below), so that the boxes come in order."""
        spans = [self.canvas - cut.width, self.canvas - cut.height]
        corner = [rng.randint(0, spans[0]), rng.randint(0, spans[1])]
        if relation is not None:
            axis = 0 if relation in ("left", "right") else 1
            strip = count - 1 - position if relation in ("right", "below") else position
            size = cut.size[axis]
            centre = rng.uniform(strip, strip + 1) * self.canvas / count
            corner[axis] = min(max(0, round(centre - size / 2)), spans[axis])
        return (corner[0], corner[1], corner[0] + cut.width, corner[1] + cut.height)

    def _finish(self, rng: random.Random, kind: str, text: str, objects: list[tuple], cuts: list[Image.Image],
                placed: list[tuple], new_relation: bool = False) -> Scene:
        """Paste the placed cut-outs on a background and name the background in the caption when it is a texture."""
        surface = rng.choice(list(TEXTURES) + [None] * len(TEXTURES))
        if surface is None:
            image = Image.new("RGB", (self.canvas, self.canvas), rng.choice(PLAIN))
        else:
            image = texture(surface, np.random.default_rng(rng.getrandbits(64)), self.canvas)
            text = f"{text} {TEXTURES[surface]}"
        for cut, box in zip(cuts, placed):
            image.paste(cut, box[:2], cut)
        rows = [{"name": name, "box": [int(v) for v in box], "span": list(span)} for name, box, span in objects]
        return Scene(image, text, rows, kind, new_relation)


# ---- writing a split -----------------------------------------------------------------------
def write_split(maker: SceneMaker, out: Path, split: str, count: int) -> int:
    """Scenes 0 .. count-1 of split as PNGs and rows in out/split/metadata.jsonl; returns the row count."""
    folder = out / split / "scenes"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(count):
        scene = maker.scene(split, index)
        name = f"scenes/{split}_{index:06d}.png"
        scene.image.save(out / split / name)
        rows.append(scene.row(name))
    return _write_metadata(out / split, rows)


def copy_singles(source: Path, out: Path, repeat: int = 1) -> int:
    """The source's single-object images and captions into out/train/singles, as rows without objects, each
    row repeat times (the image once)."""
    folder, rows = source_rows(source)
    target = out / "train" / "singles"
    kept = []
    for row in rows:
        destination = target / row["file_name"]
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / row["file_name"], destination)
        kept.append({"file_name": f"singles/{row['file_name']}", "text": row["text"], "width": row.get("width"),
                     "height": row.get("height"), "objects": [], "kind": "source", "new_relation": False})
    return _write_metadata(out / "train", kept * repeat)


def _write_metadata(folder: Path, rows: list[dict]) -> int:
    """Append rows to folder/metadata.jsonl (rewritten whole, atomically)."""
    metadata = folder / "metadata.jsonl"
    old = metadata.read_text(encoding="utf-8") if metadata.exists() else ""
    new = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    atomic_write(metadata, (old + new).encode("utf-8"), what="scene metadata")
    return len(rows)


# ---- command line ----------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    from genseq.commands import non_negative_int, path, positive_int, seed

    result = argparse.ArgumentParser(prog="python -m genseq_captioning.scenes", description=__doc__.split("\n")[0])
    result.add_argument("--source", required=True, type=path, help="single-object caption data: a folder with "
                        "metadata.jsonl, or with train/metadata.jsonl (e.g. ../shared/data/captions)")
    result.add_argument("--out", required=True, type=path, help="folder to write the split folders into")
    result.add_argument("--split", choices=SPLITS, action="append", help="split to write; repeat (default: all three)")
    result.add_argument("--train", type=non_negative_int, default=10000, help="training scenes (default 10000)")
    result.add_argument("--valid", type=non_negative_int, default=1000, help="validation scenes (default 1000)")
    result.add_argument("--test", type=non_negative_int, default=1000, help="test scenes (default 1000)")
    result.add_argument("--seed", type=seed, default=0)
    result.add_argument("--canvas", type=positive_int, default=CANVAS, help=f"side of the square scenes (default {CANVAS})")
    result.add_argument("--no-singles", dest="singles", action="store_false",
                        help="leave the source's single-object images out of the training split")
    result.add_argument("--singles-repeat", type=positive_int, default=1, metavar="N",
                        help="list each single-object image N times in the training split (default 1)")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    counts = {"train": args.train, "validation": args.valid, "test": args.test}
    out = Path(args.out)
    try:
        if any((out / split / "metadata.jsonl").exists() for split in args.split or SPLITS):
            raise DataError(f"{out} already holds scene splits; give an empty or new --out")
        maker = SceneMaker(load_stamps(Path(args.source)), args.seed, args.canvas)
        for split in args.split or SPLITS:
            start = time.perf_counter()
            written = write_split(maker, out, split, counts[split])
            if split == "train" and args.singles:
                written += copy_singles(Path(args.source), out, args.singles_repeat)
            print(f"{split}: {written} images in {time.perf_counter() - start:.0f} s -> {out / split}")
    except GenseqError as error:
        parser().error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
