"""How much a picture looks like the images a captioner was trained on, and the threshold under which the task calls
it unfamiliar.

A captioner's reference is a few prototypes of its training images: the
centres of a seeded spherical k-means over the L2-normalised, mean-pooled
encoder features of a sample of them. A picture's familiarity is its largest
cosine similarity to a prototype. The threshold is a low percentile of the
familiarity of validation images (none of them among the prototypes' sample),
so about that share of pictures like those the model learned from is flagged.

Both live in REFERENCE_FILE beside the checkpoint: the prototypes as float16,
the threshold and how it was measured in the safetensors metadata. They stay
together because the threshold belongs to these prototypes and this encoder,
not to the decoder: a decoder retrained on the same encoder keeps the file
(the encoder's fingerprint is stored and checked), while card.json's
"low_confidence" is the decoder's own. A checkpoint without the file flags no
picture as unfamiliar.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from genseq.errors import CheckpointError, DataError

REFERENCE_FILE = "novelty.safetensors"
MAX_REFERENCE_BYTES = 64 << 20  # thousands of prototypes; a bigger file is not a reference
UNFAMILIAR = ("Unfamiliar picture: it looks unlike the pictures this model was trained on, so its caption is "
              "probably wrong.")
EMBED_BATCH = 256  # cached feature maps turned into vectors together: memory stays small for any sample
METADATA = ("below", "percentile", "images", "train_images", "data", "train_data", "seed", "encoder")


def embed(features: Tensor) -> Tensor:
    """Encoder features (B, C, h, w) -> (B, C): each image's mean feature vector, L2-normalised."""
    return F.normalize(features.float().mean((2, 3)), dim=1)


def prototypes(vectors: Tensor, count: int, seed: int, iterations: int = 30) -> Tensor:
    """Spherical k-means of unit vectors (N, C) -> (min(count, N), C) unit centres, the same for the same seed."""
    generator = torch.Generator().manual_seed(seed)
    centres = vectors[_spread_seeds(vectors, min(count, len(vectors)), generator)]
    for _ in range(iterations):
        nearest = (vectors @ centres.T).argmax(1)  # (N,)
        sums = torch.zeros_like(centres).index_add_(0, nearest, vectors)
        empty = sums.norm(dim=1) == 0
        sums[empty] = centres[empty]  # a centre that won no vector stays where it is
        centres = F.normalize(sums, dim=1)
    return centres


def _spread_seeds(vectors: Tensor, count: int, generator: torch.Generator) -> list[int]:
    """k-means++ starting rows: each drawn with weight its cosine distance to the nearest row drawn before."""
    chosen = [int(torch.randint(len(vectors), (1,), generator=generator))]
    distance = 1 - vectors @ vectors[chosen[0]]  # (N,)
    for _ in range(count - 1):
        weights = distance.clamp(min=0)
        if float(weights.sum()) <= 0:  # every row is a copy of one drawn: any will do
            weights = torch.ones_like(weights)
        chosen.append(int(torch.multinomial(weights, 1, generator=generator)))
        distance = torch.minimum(distance, 1 - vectors @ vectors[chosen[-1]])
    return chosen


def familiarity(vectors: Tensor, centres: Tensor) -> Tensor:
    """Unit vectors (B, C) -> (B,): each one's largest cosine similarity to a prototype."""
    return (vectors @ centres.float().T).max(1).values


def encoder_fingerprint(encoder) -> str:
    """A hash of everything an image's features depend on: the encoder's config and all its weights."""
    from .data import encoder_fingerprint as frozen_fingerprint
    from .data import hash_weights

    digest = hashlib.sha256(frozen_fingerprint(encoder).encode())  # the frozen part, as the feature cache names it
    hash_weights(digest, encoder.trainable)
    return digest.hexdigest()


@dataclass
class Reference:
    """A captioner's prototypes of its training images, and the familiarity under which a picture is unfamiliar."""

    prototypes: Tensor  # (K, C) unit vectors, float16 as stored
    below: float
    percentile: float
    images: int  # validation images the threshold was measured on
    train_images: int  # training images the prototypes summarise
    data: str
    train_data: str
    seed: int
    encoder: str  # encoder_fingerprint of the captioner it was made for

    def scores(self, features: Tensor) -> list[float]:
        """Encoder features (B, C, h, w), as the decoder gets them -> each image's familiarity."""
        return familiarity(embed(features.cpu()), self.prototypes).tolist()

    def notice(self, score: float) -> str | None:
        return UNFAMILIAR if score < self.below else None

    def sentence(self) -> str:
        return (f"{len(self.prototypes)} prototypes of {self.train_images} images of {self.train_data}; "
                f"{self.percentile:g}th percentile of the familiarity of {self.images} images of {self.data}: "
                f"{self.below:.4f}")

    def save(self, directory: str | os.PathLike) -> Path:
        """Write REFERENCE_FILE into directory, atomically."""
        from safetensors.torch import save

        from genseq.checkpoint import atomic_write

        path = Path(directory) / REFERENCE_FILE
        metadata = {key: str(getattr(self, key)) for key in METADATA}
        atomic_write(path, save({"prototypes": self.prototypes.half().contiguous()}, metadata=metadata),
                     what="novelty reference")
        return path


def build_reference(encoder, train_images: list, validation_images: list, count: int = 128, seed: int = 0,
                    percentile: float = 5.0, train_data: str = "", data: str = "", progress: bool = True) -> Reference:
    """Prototypes of train_images, threshold at the percentile of validation_images' familiarity to them."""
    import numpy

    train = image_vectors(encoder, train_images, progress)
    validation = image_vectors(encoder, validation_images, progress)
    if not len(train) or not len(validation):
        raise DataError(f"{train_data if not len(train) else data} has no readable image to build the reference from")
    centres = prototypes(train, count, seed).half().float()  # scored as stored, so the threshold holds as read
    below = round(float(numpy.percentile(familiarity(validation, centres).numpy(), percentile)), 4)
    return Reference(centres, below, percentile, len(validation), len(train), data, train_data, seed,
                     encoder_fingerprint(encoder))


def read_reference(directory: str | os.PathLike, encoder) -> Reference | None:
    """The checkpoint's reference, or None when it has none; refused when made for another encoder."""
    path = Path(directory) / REFERENCE_FILE
    if not os.path.lexists(path):
        return None
    reference = _read(path)
    if reference.encoder != encoder_fingerprint(encoder):
        raise CheckpointError(f"{path} was made for another image encoder than this captioner's: delete it, then "
                              "rebuild it with python -m genseq_captioning.confidence --train DATA --data VALIDATION")
    return reference


def _read(path: Path) -> Reference:
    from safetensors import SafetensorError, safe_open

    from genseq.checkpoint import check_regular_file

    check_regular_file(path, MAX_REFERENCE_BYTES)
    try:
        with safe_open(str(path), "pt") as file:
            metadata, centres = file.metadata() or {}, file.get_tensor("prototypes")
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is corrupt or not a novelty reference ({error})") from None
    try:
        values = _parsed(metadata)
    except (KeyError, ValueError):
        raise CheckpointError(f"{path} is not a novelty reference: its metadata needs {', '.join(METADATA)}, "
                              "with a finite threshold \"below\"") from None
    if centres.dim() != 2 or not centres.shape[0] or not bool(torch.isfinite(centres).all()):
        raise CheckpointError(f"{path} is corrupt: its prototypes are not a finite (K, C) matrix")
    return Reference(centres.float(), **values)


def _parsed(metadata: dict[str, str]) -> dict:
    below = float(metadata["below"])
    if not math.isfinite(below):
        raise ValueError(below)
    return {"below": below, "percentile": float(metadata["percentile"]), "images": int(metadata["images"]),
            "train_images": int(metadata["train_images"]), "data": metadata["data"],
            "train_data": metadata["train_data"], "seed": int(metadata["seed"]), "encoder": metadata["encoder"]}


def image_vectors(encoder, images: list, progress: bool = True) -> Tensor:
    """The embed() vector of each readable image, from the training feature cache (computed there when missing)."""
    from .data import cached_features

    features = cached_features(encoder, images, progress=progress)
    rows = features.readable
    with torch.no_grad():
        chunks = [embed(encoder.finish(features.values[rows[start : start + EMBED_BATCH]].float()))
                  for start in range(0, len(rows), EMBED_BATCH)]
    return torch.cat(chunks) if chunks else torch.zeros(0, encoder.channels)
