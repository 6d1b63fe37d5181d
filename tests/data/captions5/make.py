"""Writes this fixture: 12 tiny shape images with five captions each, in Karpathy's split format (dataset_tiny.json).

The schema is that of dataset_flickr8k.json (filename, split, sentences with raw and tokens), so the loader,
multi-reference training and evaluation run in tests the way they run on Flickr8k. Run from the repository root:
python tests/data/captions5/make.py
"""

import json
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).parent
SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {"red": (220, 30, 30), "green": (30, 160, 60), "blue": (30, 60, 220)}
WORDINGS = ("a {colour} {shape}", "a {colour} {shape} on a white background", "one {colour} {shape}",
            "a small {colour} {shape} in the middle", "the {shape} is {colour}")
HELD_OUT = {("circle", "green"): "val", ("square", "blue"): "val", ("triangle", "blue"): "test", ("cross", "red"): "test"}


def draw(shape: str, colour: tuple[int, int, int], size: int = 32) -> Image.Image:
    image = Image.new("P", (size, size), 0)
    image.putpalette([255, 255, 255, *colour])
    pen, low, high, middle = ImageDraw.Draw(image), 5, size - 5, size // 2
    if shape == "circle":
        pen.ellipse((low, low, high, high), fill=1)
    elif shape == "square":
        pen.rectangle((low, low, high, high), fill=1)
    elif shape == "triangle":
        pen.polygon([(middle, low), (low, high), (high, high)], fill=1)
    else:
        pen.rectangle((middle - 4, low, middle + 4, high), fill=1)
        pen.rectangle((low, middle - 4, high, middle + 4), fill=1)
    return image


def main() -> None:
    (HERE / "images").mkdir(exist_ok=True)
    entries = []
    for shape in SHAPES:
        for name, colour in COLOURS.items():
            filename = f"{name}_{shape}.png"
            draw(shape, colour).save(HERE / "images" / filename, optimize=True)
            raws = [wording.format(colour=name, shape=shape) for wording in WORDINGS]
            entries.append({"filename": filename, "imgid": len(entries), "split": HELD_OUT.get((shape, name), "train"),
                            "sentences": [{"raw": raw.capitalize() + ".", "tokens": raw.split()} for raw in raws]})
    (HERE / "dataset_tiny.json").write_text(json.dumps({"dataset": "tiny", "images": entries}, indent=1) + "\n")


if __name__ == "__main__":
    main()
