"""Logits processors: one small class per strategy, each a pure (ids, logits) -> logits.

ids (B, T) holds each row's history, prompt then generated tokens, left-padded
with NO_TOKEN so that rows of different lengths line up at the newest token;
every processor ignores the padding. logits (B, V) are the next-token scores.
A processor never changes its inputs, and checks its arguments when built:
a bad one raises ConfigError (a ValueError) naming it and its allowed range.
build_processors() turns a GenerationConfig into the list, in the order they apply.
"""

from __future__ import annotations

import math
from typing import Iterable, Protocol

import torch
from torch import Tensor

from ..errors import ConfigError
from .config import GenerationConfig

NO_TOKEN = -1  # history padding: never a token id
NEG_INF = -math.inf


class LogitsProcessor(Protocol):
    def __call__(self, ids: Tensor, logits: Tensor) -> Tensor: ...


def apply_processors(processors: Iterable[LogitsProcessor], ids: Tensor, logits: Tensor) -> Tensor:
    for processor in processors:
        logits = processor(ids, logits)
    return logits


# ---- constraints: apply to sampling, greedy decoding and beam search ------------
class BannedTokens:
    """These token ids are never generated."""

    def __init__(self, token_ids: Iterable[int]):
        token_ids = list(token_ids)
        if any(isinstance(t, bool) or not isinstance(t, int) or t < 0 for t in token_ids):
            raise ConfigError(f"banned_token_ids must be token ids >= 0, not {token_ids}")
        self.token_ids = torch.tensor(sorted(set(token_ids)), dtype=torch.long)

    def __call__(self, ids: Tensor, logits: Tensor) -> Tensor:
        return logits.index_fill(1, self.token_ids.to(logits.device), NEG_INF)


class MinNewTokens:
    """EOS is masked until min_new_tokens tokens have been generated after the prompt_length history columns."""

    def __init__(self, min_new_tokens: int, eos_id: int, prompt_length: int):
        _check(min_new_tokens >= 1, "min_new_tokens", "[1, max_new_tokens]", min_new_tokens)
        _check(eos_id >= 0, "eos_id", "[0, vocab size)", eos_id)
        _check(prompt_length >= 0, "prompt_length", "[0, inf)", prompt_length)
        self.min_new_tokens, self.eos_id, self.prompt_length = min_new_tokens, eos_id, prompt_length

    def __call__(self, ids: Tensor, logits: Tensor) -> Tensor:
        if ids.size(1) - self.prompt_length >= self.min_new_tokens:
            return logits
        return logits.index_fill(1, torch.tensor([self.eos_id], device=logits.device), NEG_INF)


class RepetitionPenalty:
    """Tokens already in the history become less likely (CTRL, Keskar et al. 2019).

    A seen token's positive logit is divided by the penalty and a negative one
    multiplied by it, so the penalty always pushes towards less likely.
    """

    def __init__(self, penalty: float):
        _check(math.isfinite(penalty) and penalty > 0, "repetition_penalty", "(0, inf)", penalty)
        self.penalty = penalty

    def __call__(self, ids: Tensor, logits: Tensor) -> Tensor:
        seen = _token_mask(ids, ids >= 0, logits)  # (B, V)
        penalized = torch.where(logits > 0, logits / self.penalty, logits * self.penalty)
        return torch.where(seen, penalized, logits)


class NoRepeatNGram:
    """No n-gram of size n occurs twice: a token that would complete a repeat is masked."""

    def __init__(self, size: int):
        _check(isinstance(size, int) and size >= 1, "no_repeat_ngram_size", "[1, inf)", size)
        self.size = size

    def __call__(self, ids: Tensor, logits: Tensor) -> Tensor:
        n, length = self.size, ids.size(1)
        if length < n:
            return logits
        grams = ids.unfold(1, n, 1)  # (B, G, n): every n-gram of the history
        context = ids[:, length - n + 1 :]  # (B, n - 1): what the next token would extend
        repeats = (grams[:, :, :-1] == context[:, None, :]).all(-1) & (grams >= 0).all(-1)  # (B, G)
        banned = _token_mask(grams[:, :, -1], repeats, logits)
        return logits.masked_fill(banned, NEG_INF)


# ---- warpers: reshape the distribution that sampling draws from ----------------
class Temperature:
    """Divides logits by the temperature: below 1 sharpens, above 1 flattens (0 means greedy; no processor)."""

    def __init__(self, temperature: float):
        _check(math.isfinite(temperature) and temperature > 0, "temperature", "(0, inf)", temperature)
        self.temperature = temperature

    def __call__(self, ids: Tensor, logits: Tensor) -> Tensor:
        return logits / self.temperature


class TopK:
    """Keeps the k highest logits (and any tied with the k-th)."""

    def __init__(self, k: int):
        _check(isinstance(k, int) and k >= 1, "top_k", "[1, inf)", k)
        self.k = k

    def __call__(self, ids: Tensor, logits: Tensor) -> Tensor:
        if self.k >= logits.size(-1):
            return logits
        kth = logits.topk(self.k, dim=-1).values[:, -1:]  # (B, 1)
        return logits.masked_fill(logits < kth, NEG_INF)


class TopP:
    """Nucleus sampling (Holtzman et al. 2020): the smallest set of most likely tokens holding at least p."""

    def __init__(self, p: float):
        _check(0 < p <= 1, "top_p", "(0, 1]", p)
        self.p = p

    def __call__(self, ids: Tensor, logits: Tensor) -> Tensor:
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V)
        return logits.masked_fill(_beyond_mass(sorted_logits.softmax(-1), order, self.p), NEG_INF)


class MinP:
    """Keeps tokens at least p times as likely as the most likely one."""

    def __init__(self, p: float):
        _check(0 < p <= 1, "min_p", "(0, 1]", p)
        self.p = p

    def __call__(self, ids: Tensor, logits: Tensor) -> Tensor:
        probs = logits.softmax(-1)  # (B, V)
        return logits.masked_fill(probs < self.p * probs.amax(-1, keepdim=True), NEG_INF)


class TypicalP:
    """Locally typical sampling (Meister et al. 2023): tokens whose surprise is closest to the
    entropy, in that order, until they hold at least p of the probability."""

    def __init__(self, p: float):
        _check(0 < p <= 1, "typical_p", "(0, 1]", p)
        self.p = p

    def __call__(self, ids: Tensor, logits: Tensor) -> Tensor:
        log_probs = logits.log_softmax(-1)  # (B, V)
        probs = log_probs.exp()
        entropy = -torch.where(probs > 0, probs * log_probs, 0.0).sum(-1, keepdim=True)  # (B, 1)
        _, order = (-log_probs - entropy).abs().sort(dim=-1)  # most typical first; masked tokens last
        return logits.masked_fill(_beyond_mass(probs.gather(1, order), order, self.p), NEG_INF)


# ---- from a config ---------------------------------------------------------------
def build_processors(config: GenerationConfig, eos_id: int, vocab_size: int, prompt_length: int) -> list:
    """The processors a config asks for: constraints first, then (when sampling) the warpers.

    prompt_length is the number of history columns before the first generated token.
    Under greedy decoding and beam search the warpers are left out: none of them
    changes which token is most likely, except typical_p, which greedy ignores.
    """
    processors: list = []
    outside = [t for t in config.banned_token_ids if t >= vocab_size]
    if outside:
        raise ConfigError(f"banned_token_ids must be in [0, {vocab_size - 1}] for this vocabulary, not {outside[0]}")
    if config.banned_token_ids:
        processors.append(BannedTokens(config.banned_token_ids))
    if config.min_new_tokens:
        processors.append(MinNewTokens(config.min_new_tokens, eos_id, prompt_length))
    if config.repetition_penalty != 1.0:
        processors.append(RepetitionPenalty(config.repetition_penalty))
    if config.no_repeat_ngram_size:
        processors.append(NoRepeatNGram(config.no_repeat_ngram_size))
    if config.do_sample:
        processors.extend(_warpers(config))
    return processors


def _warpers(config: GenerationConfig) -> list:
    warpers: list = []
    if config.temperature != 1.0:
        warpers.append(Temperature(config.temperature))
    if config.top_k:
        warpers.append(TopK(config.top_k))
    if config.top_p < 1.0:
        warpers.append(TopP(config.top_p))
    if config.min_p > 0.0:
        warpers.append(MinP(config.min_p))
    if config.typical_p < 1.0:
        warpers.append(TypicalP(config.typical_p))
    return warpers


# ---- helpers ------------------------------------------------------------------------
def _check(ok: bool, name: str, allowed: str, value) -> None:
    if not ok:
        raise ConfigError(f"{name} must be in {allowed}, not {value!r}")


def _token_mask(tokens: Tensor, valid: Tensor, logits: Tensor) -> Tensor:
    """(B, V) True at each row's tokens where valid; tokens (B, N) may repeat and may be NO_TOKEN."""
    counts = torch.zeros_like(logits).scatter_add_(1, tokens.clamp(min=0), valid.to(logits.dtype))
    return counts > 0


def _beyond_mass(sorted_probs: Tensor, order: Tensor, p: float) -> Tensor:
    """(B, V) True for tokens past the shortest prefix of order whose probability reaches p.

    The first token is always kept: the mass before it is 0 < p.
    """
    mass_before = sorted_probs.cumsum(-1) - sorted_probs  # (B, V), in sorted order
    remove_sorted = mass_before >= p
    return remove_sorted.scatter(1, order, remove_sorted)
