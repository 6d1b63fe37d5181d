"""Evaluating a captioner: corpus BLEU-1..4 of greedy and beam-search captions against every reference.

METEOR and CIDEr are not reported: the libraries that compute them (the COCO
caption evaluation, NLTK) need Java or a WordNet download, neither of which
is available offline.
"""

from __future__ import annotations

import time
from typing import Sequence

import torch

from genseq.generation import GenerationConfig

from .bleu import caption_bleu
from .captioner import Captioner
from .data import CaptionSet, cached_features


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
                       batch_size: int = 64, progress: bool = True) -> dict:
    """Metrics of captioner on data: BLEU-1..4 for each beam width (1 is greedy), with counts and timings.

    Keys are flat, e.g. greedy_bleu4 and beam3_bleu4, so they print as a table or JSON.
    """
    captioner.eval()
    features = cached_features(captioner.encoder, data.images, progress=progress, device=captioner.device)
    readable = features.readable
    references = [data.references[i] for i in readable]
    metrics: dict = {"images": len(readable), "unreadable_images": len(features.errors),
                     "references": sum(len(refs) for refs in references)}
    for num_beams in beams:
        config = (GenerationConfig(temperature=0.0, max_new_tokens=max_new_tokens) if num_beams == 1
                  else GenerationConfig(num_beams=num_beams, max_new_tokens=max_new_tokens))
        start = time.perf_counter()
        captions = decode_all(captioner, features.values[readable], config, batch_size)
        seconds = time.perf_counter() - start
        bleu = caption_bleu(captions, references) if captions else {f"bleu{n}": 0.0 for n in range(1, 5)}
        name = decoding_name(num_beams)
        metrics.update({f"{name}_bleu{n}": round(bleu[f"bleu{n}"], 4) for n in range(1, 5)})
        metrics[f"{name}_seconds"] = round(seconds, 3)
    return metrics
