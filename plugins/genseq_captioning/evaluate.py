"""Evaluating a captioner: the field's caption metrics of greedy and beam-search captions against every reference.

BLEU-1..4, CIDEr-D, ROUGE-L and, where Java runs, METEOR, from the COCO
caption evaluation's scorers (see metrics.py).
"""

from __future__ import annotations

import time
from typing import Sequence

import torch

from genseq.generation import GenerationConfig

from .captioner import Captioner
from .data import CaptionSet, cached_features
from .grounding import pointing_accuracy
from .metrics import CaptionScorer


def decode_all(captioner: Captioner, features: torch.Tensor, config: GenerationConfig, batch_size: int = 64) -> list[str]:
    """The best caption of each image's frozen features (G, C', h, w), in batches of images."""
    captions = []
    for start in range(0, features.size(0), batch_size):
        chunk = features[start : start + batch_size].to(captioner.device).float()
        captions.extend(best[0].text for best in captioner.generate(captioner.encoder.finish(chunk), config))
    return captions


def decoding_name(num_beams: int) -> str:
    return "greedy" if num_beams == 1 else f"beam{num_beams}"


@torch.no_grad()
def evaluate_captioner(captioner: Captioner, data: CaptionSet, beams: Sequence[int] = (1, 3), max_new_tokens: int = 40,
                       batch_size: int = 64, progress: bool = True, meteor: bool = True) -> dict:
    """Metrics of captioner on data for each beam width (1 is greedy), with counts and timings.

    Keys are flat, decoding then metric (greedy_bleu4, beam3_cider, beam3_meteor), so they print as
    JSON; without METEOR, meteor_skipped says why.
    """
    captioner.eval()
    features = cached_features(captioner.encoder, data.images, progress=progress, device=captioner.device)
    readable = features.readable
    references = [data.references[i] for i in readable]
    metrics: dict = {"images": len(readable), "unreadable_images": len(features.errors),
                     "references": sum(len(refs) for refs in references)}
    with CaptionScorer(meteor) as score:
        for num_beams in beams:
            config = (GenerationConfig(temperature=0.0, max_new_tokens=max_new_tokens) if num_beams == 1
                      else GenerationConfig(num_beams=num_beams, max_new_tokens=max_new_tokens))
            start = time.perf_counter()
            captions = decode_all(captioner, features.values[readable], config, batch_size)
            seconds = time.perf_counter() - start
            scores = {metric: value for metric, value in score(captions, references).items()
                      if metric not in ("length_ratio", "meteor_skipped")}
            name = decoding_name(num_beams)
            metrics.update({f"{name}_{metric}": round(value, 4) for metric, value in scores.items()})
            metrics[f"{name}_seconds"] = round(seconds, 3)
        if score.meteor_skipped:
            metrics["meteor_skipped"] = score.meteor_skipped
    if any(data.groundings):  # composed scenes: where the attention is when a word names an object
        metrics.update(pointing_accuracy(captioner, features.values[readable], [data.groundings[i] for i in readable],
                                         batch_size))
    return metrics
