"""Picking the next token from logits: one pure function, with an explicit generator per row.

Each row draws from its own torch.Generator, so a sequence gets the same tokens
whatever else shares its batch. A draw is one uniform number per row placed on
the cumulative distribution (inverse-CDF sampling): an exact draw from
softmax(logits) that costs one random number per row instead of one per
vocabulary entry, which is what torch.multinomial spends.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..errors import ConfigError


def next_token(logits: Tensor, generators: Sequence[torch.Generator] | None = None) -> Tensor:
    """logits (B, V) -> token ids (B,): the argmax without generators, else a draw with row i's generator."""
    if generators is None:
        best, tokens = logits.max(-1)  # (B,), (B,): the first of tied maxima, as argmax
        _check_some_token_allowed(best)
        return tokens
    if len(generators) != logits.size(0):
        raise ValueError(f"next_token needs one generator per row: {logits.size(0)} rows, {len(generators)} generators")
    cdf = torch.softmax(logits, -1).cumsum(-1, dtype=torch.float64)  # (B, V); float64 keeps the tail exact
    total = cdf[:, -1]  # (B,): 1 up to rounding, NaN where every token was masked
    _check_some_token_allowed(total)
    uniform = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in generators]).to(cdf.device)  # (B,)
    # Strictly below the total mass, so a trailing zero-probability token can never be hit.
    target = torch.minimum(uniform * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, target[:, None], right=True).squeeze(1)  # (B,)


def _check_some_token_allowed(per_row: Tensor) -> None:
    if (torch.isneginf(per_row) | torch.isnan(per_row)).any():
        raise ConfigError("every token was excluded (banned_token_ids, no_repeat_ngram_size ...), so none can be generated")


def row_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per row, seeded independently (CPU draws are the same on any device)."""
    return [torch.Generator().manual_seed(seed) for seed in seeds]
