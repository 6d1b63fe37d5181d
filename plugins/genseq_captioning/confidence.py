"""How sure a captioner is of its caption, the per-model threshold under which the task calls a caption a guess,
and the one command that calibrates it and the novelty reference (novelty.py).

    python -m genseq_captioning.confidence --data VALIDATION [--data ...] [--train TRAIN [--train ...]]
                                           [--sample 2000] [--model DIR] [--percentile 5]

A caption's confidence is its mean log-probability per token (its end token
included). A captioner's card.json may hold "low_confidence": {"below": L, ...}:
the given percentile (default 5) of that mean over the greedy captions of
in-domain validation images, so that about that share of images like those it
learned from is flagged. The decoder alone misses pictures unlike its training
images: it can be sure of a wrong caption (the shipped one is, of photographs),
so with --train the command also writes the novelty reference, whose threshold
comes from the same validation images; docs/captioning.md has the figures.
The captioning task adds LOW_CONFIDENCE as the notice of a caption below L; a
captioner without the field flags nothing. The threshold holds for the task's
default decoding (greedy, at most 40 tokens), the decoding it was measured with.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from genseq.errors import CheckpointError, DataError, GenseqError

CARD_KEY = "low_confidence"
LOW_CONFIDENCE = "Low confidence: the model is unsure of this caption, so it is probably a guess."
CALIBRATION_BATCH = 32  # images captioned together: memory stays small for any dataset


def mean_logprob(caption) -> float:
    """A caption's log-probability per token, so that a long caption is not made to look less likely than a short one."""
    return caption.logprob / max(len(caption.tokens), 1)


def low_confidence_notice(mean: float, threshold: float | None) -> str | None:
    """LOW_CONFIDENCE for a caption whose mean log-probability per token is below threshold; None without one."""
    return LOW_CONFIDENCE if threshold is not None and mean < threshold else None


def read_threshold(directory: str | os.PathLike) -> float | None:
    """The checkpoint's calibrated threshold from its card.json, or None when it has none."""
    from genseq.cards import CARD_FILE, card_value

    entry = card_value(directory, CARD_KEY)
    if entry is None:
        return None
    below = entry.get("below") if isinstance(entry, dict) else None
    if isinstance(below, bool) or not isinstance(below, (int, float)) or not math.isfinite(below):
        raise CheckpointError(f"{Path(directory) / CARD_FILE} has an invalid {CARD_KEY}: it needs \"below\", a "
                              f"finite mean log-probability per token, not {entry!r}")
    return float(below)


@dataclass
class Calibration:
    """A threshold and how it was measured: the percentile of the mean log-probabilities of images captioned."""

    below: float
    percentile: float
    images: int
    data: str

    def sentence(self) -> str:
        return (f"{self.percentile:g}th percentile of the mean log-probability per token of greedy captions of "
                f"{self.images} images of {self.data}: {self.below:.4f}")


def caption_scores(task, images: list) -> list[float]:
    """Each readable image's caption's mean log-probability per token, as the task (default options) gives it."""
    scores = []
    for start in range(0, len(images), CALIBRATION_BATCH):
        results = task.run_batch([{"image": image} for image in images[start : start + CALIBRATION_BATCH]])
        scores.extend(result["mean_logprob"] for result in results if "mean_logprob" in result)
    return scores


def load_images(specs: list[str], split: str) -> list:
    """The images of the split of every dataset in specs, in order."""
    from .data import load_caption_set

    return [image for spec in specs for image in load_caption_set(spec, split).images]


def sample(images: list, size: int | None, seed: int) -> list:
    """A seeded sample of size images (all of them when size is None or not smaller), in their order."""
    import numpy

    if size is None or size >= len(images):
        return images
    chosen = numpy.random.default_rng(seed).choice(len(images), size, replace=False)
    return [images[index] for index in sorted(chosen)]


def calibrate(task, images: list, data: str, percentile: float = 5.0) -> Calibration:
    """The threshold of the task's captioner from images of data (its validation set)."""
    import numpy

    scores = caption_scores(task, images)
    if not scores:
        raise DataError(f"{data} has no readable image to calibrate on")
    below = float(numpy.percentile(scores, percentile))
    return Calibration(round(below, 4), percentile, len(scores), data)


def write_calibration(directory: str | os.PathLike, calibration: Calibration) -> None:
    from genseq.cards import write_card_value

    write_card_value(directory, CARD_KEY, asdict(calibration))


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m genseq_captioning.confidence", description=(
        "Calibrate a captioner's low-confidence threshold on in-domain images and write it into its card.json; "
        "with --train, also its novelty reference (novelty.safetensors) of the images it was trained on."))
    parser.add_argument("--data", required=True, action="append",
                        help="captioning data the model's images are like (its validation set); may be repeated")
    parser.add_argument("--split", default="validation", help="split of --data (default: validation)")
    parser.add_argument("--train", action="append", default=[],
                        help="the model's training data, for the novelty reference's prototypes; may be repeated")
    parser.add_argument("--sample", type=int, default=2000,
                        help="training images (a seeded sample of all --train) the prototypes summarise (default: 2000)")
    parser.add_argument("--prototypes", type=int, default=128, help="prototypes in the reference (default: 128)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample and of the prototypes (default: 0)")
    parser.add_argument("--model", help="captioner checkpoint directory (default: the shipped captioner)")
    parser.add_argument("--percentile", type=float, default=5.0,
                        help="share of such images, in percent, that will be flagged by each test (default: 5)")
    parser.add_argument("--reference-only", action="store_true",
                        help="with --train, build the novelty reference only and keep card.json's threshold as it is")
    parser.add_argument("--dry-run", action="store_true", help="print the thresholds without writing them")
    return parser


def check_arguments(args) -> None:
    if not 0 <= args.percentile <= 100:
        parser().error(f"--percentile must be in [0, 100], not {args.percentile:g}")
    if args.sample < 1 or args.prototypes < 1:
        parser().error(f"--sample and --prototypes must be at least 1, not {args.sample} and {args.prototypes}")
    if args.reference_only and not args.train:
        parser().error("--reference-only needs --train, the training data of the reference")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    check_arguments(args)
    try:
        lines = run(args)
    except GenseqError as error:
        parser().error(str(error))
    print("\n".join(lines))
    return 0


def run(args) -> list[str]:
    """Calibrate as args ask, write unless a dry run; -> a line per threshold."""
    from genseq.plugins import get_task_class

    from .captioner import default_dir
    from .novelty import build_reference

    directory = Path(args.model) if args.model else default_dir()
    task = get_task_class("captioning")(model=args.model)
    data = ", ".join(args.data)
    images = load_images(args.data, args.split)
    lines = []
    if not args.reference_only:
        calibration = calibrate(task, images, data, args.percentile)
        lines.append(calibration.sentence())
        if not args.dry_run:
            write_calibration(directory, calibration)
            lines[-1] += f" -> {directory / 'card.json'}"
    if args.train:
        training = sample(load_images(args.train, "train"), args.sample, args.seed)
        reference = build_reference(task.model.encoder, training, images, args.prototypes, args.seed,
                                    args.percentile, ", ".join(args.train), data)
        lines.append(reference.sentence() + ("" if args.dry_run else f" -> {reference.save(directory)}"))
    return lines


if __name__ == "__main__":
    sys.exit(main())
