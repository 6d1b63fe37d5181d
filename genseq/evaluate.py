"""Evaluation of a language model on a text: NLL, token and word perplexity, bits per byte.

Word perplexity (exp of the total NLL over whitespace-separated words) and bits
per byte (total NLL / (ln 2 * UTF-8 bytes)) do not depend on the tokenizer, so
models with different vocabularies can be compared. The recurrent state is
carried across the whole text, never reset between windows.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .data import TokenStream
from .model import LanguageModel


@torch.no_grad()
def evaluate(model: LanguageModel, stream: TokenStream, window: int = 2048, progress: bool = False) -> dict:
    """Score every token of stream after the first, in one pass with the state carried."""
    from tqdm import tqdm

    model.eval()
    device = next(model.parameters()).device
    tokens = stream.tokens
    nll, state = 0.0, None
    for start in tqdm(range(0, len(tokens) - 1, window), disable=not progress, unit="window", leave=False):
        chunk = torch.from_numpy(tokens[start : start + window + 1].astype("int64")).to(device)[None]  # (1, T + 1)
        logits, state = model(chunk[:, :-1], state)
        nll += F.cross_entropy(logits.float()[0], chunk[0, 1:], reduction="sum").item()
    predicted = len(tokens) - 1
    return {
        "tokens": predicted,
        "words": stream.words,
        "bytes": stream.bytes,
        "nll": nll,
        "token_perplexity": _exp(nll / predicted),
        "word_perplexity": _exp(nll / stream.words) if stream.words else None,
        "bits_per_byte": nll / (math.log(2) * stream.bytes) if stream.bytes else None,
    }


def _exp(value: float) -> float:
    return math.exp(value) if value < 700 else math.inf
