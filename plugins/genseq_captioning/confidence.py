"""How sure a captioner is of its caption, and the per-model threshold under which the task calls a caption a guess.

    python -m genseq_captioning.confidence --data ../shared/data/captions/validation [--model DIR] [--percentile 5]

A caption's confidence is its mean log-probability per token (its end token
included). A captioner's card.json may hold "low_confidence": {"below": L, ...}:
the given percentile (default 5) of that mean over the greedy captions of
in-domain validation images, so that about that share of images like those it
learned from is flagged. A picture unlike them is flagged only when the decoder
doubts its caption: a captioner can be sure of a wrong one (the shipped one is,
of photographs; docs/captioning.md has the figures).
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
LOW_CONFIDENCE = "Low confidence: this picture looks unlike anything the model was trained on; the caption is a guess."
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


def calibrate(model: str | None, data: str, split: str = "validation", percentile: float = 5.0) -> Calibration:
    """The threshold of the captioner in model (None: the shipped one) from the images of data's split."""
    import numpy

    from genseq.plugins import get_task_class

    from .data import load_caption_set

    images = load_caption_set(data, split).images
    scores = caption_scores(get_task_class("captioning")(model=model), images)
    if not scores:
        raise DataError(f"{data} has no readable image to calibrate on")
    below = float(numpy.percentile(scores, percentile))
    return Calibration(round(below, 4), percentile, len(scores), data)


def write_calibration(directory: str | os.PathLike, calibration: Calibration) -> None:
    from genseq.cards import write_card_value

    write_card_value(directory, CARD_KEY, asdict(calibration))


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m genseq_captioning.confidence", description=(
        "Calibrate a captioner's low-confidence threshold on in-domain images and write it into its card.json."))
    parser.add_argument("--data", required=True, help="captioning data the model's images are like (its validation set)")
    parser.add_argument("--split", default="validation", help="split of --data (default: validation)")
    parser.add_argument("--model", help="captioner checkpoint directory (default: the shipped captioner)")
    parser.add_argument("--percentile", type=float, default=5.0,
                        help="share of such images, in percent, that will be flagged (default: 5)")
    parser.add_argument("--dry-run", action="store_true", help="print the threshold without writing it")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not 0 <= args.percentile <= 100:
        parser().error(f"--percentile must be in [0, 100], not {args.percentile:g}")
    try:
        from .captioner import default_dir

        calibration = calibrate(args.model, args.data, args.split, args.percentile)
        directory = Path(args.model) if args.model else default_dir()
        if not args.dry_run:
            write_calibration(directory, calibration)
    except GenseqError as error:
        parser().error(str(error))
    print(calibration.sentence() + ("" if args.dry_run else f" -> {directory / 'card.json'}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
