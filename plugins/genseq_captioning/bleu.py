"""Corpus-level BLEU (Papineni et al. 2002) with multiple references, as captioning papers report it.

For n = 1..4, clipped n-gram matches and hypothesis n-grams are summed over
the whole corpus before dividing (not averaged per sentence). BLEU-n is the
brevity penalty times the geometric mean of the precisions of orders 1..n.
The penalty compares the total hypothesis length c with the total of each
sentence's closest reference length r (the shorter one on a tie):
BP = 1 if c > r else exp(1 - r / c). There is no smoothing, so a corpus
without a single matching 4-gram has BLEU-4 = 0, as in NLTK's corpus_bleu
and the COCO caption evaluation.

Captions are compared as lowercase word tokens with punctuation dropped
(tokenize()), which is what the COCO evaluation's PTB tokenizer does too.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

WORD = re.compile(r"\w+(?:['’]\w+)*")


def tokenize(text: str) -> list[str]:
    """'A frog, sitting.' -> ['a', 'frog', 'sitting']"""
    return WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]], max_order: int = 4) -> dict:
    """BLEU-1..max_order of tokenized hypotheses, each with one or more tokenized references.

    Returns {"bleu1": ..., "bleu4": ..., "brevity_penalty": ..., "length_ratio": c / r}.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if any(not refs for refs in references):
        raise ValueError("every hypothesis needs at least one reference")
    matches, totals = [0] * max_order, [0] * max_order
    hypothesis_length = reference_length = 0
    for hypothesis, refs in zip(hypotheses, references):
        hypothesis_length += len(hypothesis)
        reference_length += closest_length(len(hypothesis), [len(r) for r in refs])
        for n in range(1, max_order + 1):
            counts = ngrams(hypothesis, n)
            most = Counter()
            for ref in refs:
                most |= ngrams(ref, n)  # the most times each n-gram occurs in one reference
            matches[n - 1] += sum(min(count, most[gram]) for gram, count in counts.items())
            totals[n - 1] += sum(counts.values())
    penalty = brevity_penalty(hypothesis_length, reference_length)
    scores = {}
    for order in range(1, max_order + 1):
        precisions = [m / t if t else 0.0 for m, t in zip(matches[:order], totals[:order])]
        geometric = math.exp(sum(math.log(p) for p in precisions) / order) if min(precisions) > 0 else 0.0
        scores[f"bleu{order}"] = penalty * geometric
    scores["brevity_penalty"] = penalty
    scores["length_ratio"] = hypothesis_length / reference_length if reference_length else 0.0
    return scores


def closest_length(length: int, reference_lengths: list[int]) -> int:
    """The reference length nearest to length; the shorter one on a tie."""
    return min(reference_lengths, key=lambda r: (abs(r - length), r))


def brevity_penalty(hypothesis_length: int, reference_length: int) -> float:
    if hypothesis_length == 0:
        return 0.0
    if hypothesis_length > reference_length:
        return 1.0
    return math.exp(1 - reference_length / hypothesis_length)


def caption_bleu(captions: Sequence[str], references: Sequence[Sequence[str]]) -> dict:
    """corpus_bleu of caption strings against reference caption strings, tokenized with tokenize()."""
    return corpus_bleu([tokenize(c) for c in captions], [[tokenize(r) for r in refs] for refs in references])
