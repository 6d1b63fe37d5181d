"""Next-word suggestions, like a phone keyboard: the k most likely next whole words.

With a subword tokenizer a word spans several pieces, so continuations are
expanded best-first over pieces until a word boundary. A word's probability
is the probability of its pieces followed by a boundary (a piece that starts a
new word, punctuation, a newline or the end of text), summed over the ways
the tokenizer can spell it. A prompt that ends mid-word gets completions of
that word.
"""

from __future__ import annotations

import functools
import heapq
import math
from dataclasses import dataclass
from functools import cached_property

import torch

from genseq.generation import encode_prompts

WORD_START = "▁"  # SentencePiece's marker for a piece that begins with a space


@dataclass
class Vocabulary:
    """What the search needs to know about each piece id."""

    texts: list[str]  # the piece's text, with WORD_START for a leading space
    special: set[int]  # ids that never appear inside a word (pad, unk, bos, byte pieces)
    boundary_extra: set[int]  # ids that end a word without being a piece that starts one (eos, newline, labels)

    @classmethod
    @functools.lru_cache(maxsize=8)
    def from_tokenizer(cls, tokenizer) -> "Vocabulary":
        texts = [tokenizer.id_to_piece(i) for i in range(tokenizer.vocab_size)]
        special = {i for i, text in enumerate(texts) if text.startswith("<") and text.endswith(">")}
        labels = getattr(tokenizer, "styles", {}).values()  # a label's token comes only before a word (genseq.data)
        return cls(texts, special, {tokenizer.eos_id, tokenizer.newline_id, *labels})

    def continues_word(self, token: int) -> bool:
        text = self.texts[token]
        return token not in self.special and _is_word_char(text[:1])

    def starts_word(self, token: int) -> bool:
        """A piece that begins a word: "▁the", or a bare "▁" whose word the next pieces spell."""
        text = self.texts[token]
        return token not in self.special and text.startswith(WORD_START) and (text == WORD_START or _is_word_char(text[1:2]))

    @cached_property
    def masks(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(V,) booleans: tokens that start a word, continue one, and end the word before them."""
        ids = range(len(self.texts))
        starts = torch.tensor([self.starts_word(i) for i in ids])
        continues = torch.tensor([self.continues_word(i) for i in ids])
        ends = torch.tensor([i in self.boundary_extra or (i not in self.special and not self.continues_word(i)) for i in ids])
        return starts, continues, ends


def _is_word_char(char: str) -> bool:
    return bool(char) and (char.isalnum() or char in "'’-")


def split_prompt(prompt: str) -> tuple[str, str]:
    """(context, partial word): 'To be or not t' -> ('To be or not', 't'); a trailing space -> partial ''."""
    stripped = prompt.rstrip(" \t")
    if stripped != prompt or not stripped or not _is_word_char(stripped[-1]):
        return stripped, ""
    start = len(stripped)
    while start > 0 and _is_word_char(stripped[start - 1]):
        start -= 1
    return stripped[:start].rstrip(" \t"), stripped[start:]


@dataclass(order=True)
class _Prefix:
    neg_logprob: float
    word: str
    tokens: tuple[int, ...]


@torch.no_grad()
def suggest_words(
    step, state, first_logits: torch.Tensor, vocabulary: Vocabulary, partial: str = "", k: int = 5,
    max_expansions: int = 200, batch_size: int = 16, max_candidates: int = 64,
) -> list[dict]:
    """Best-first search for the k most likely next words.

    step(ids (B,), state) -> (logits (B, V), state) advances the model one token;
    state and first_logits (V,) are the model after the context. Prefixes are
    expanded in batches of batch_size, most probable first, until the k-th best
    complete word is at least as likely as all unexpanded prefixes together or
    max_expansions prefixes have been expanded. Each prefix is extended by its
    max_candidates most likely pieces.
    """
    search = _Search(vocabulary, partial, max_candidates)
    states: dict[tuple[int, ...], tuple] = {(): state}
    search.extend(_Prefix(0.0, "", ()), first_logits.float().log_softmax(-1))
    words, frontier = search.words, search.frontier
    expansions = 0
    while frontier and expansions < max_expansions:
        open_mass = sum(math.exp(-p.neg_logprob) for p in frontier)
        best = sorted(words.values(), reverse=True)
        if len(best) >= k and best[k - 1] >= open_mass:
            break
        batch = [heapq.heappop(frontier) for _ in range(min(batch_size, len(frontier)))]
        parents = [states[p.tokens[:-1]] for p in batch]
        parent_state = tuple(torch.cat([s[i] for s in parents], dim=1) for i in range(len(state)))
        last = torch.tensor([p.tokens[-1] for p in batch])
        logits, new_state = step(last, parent_state)  # (B, V)
        log_probs = logits.float().log_softmax(-1)
        for row, prefix in enumerate(batch):
            states[prefix.tokens] = tuple(s[:, row : row + 1] for s in new_state)
            search.extend(prefix, log_probs[row])
        expansions += len(batch)
    ranked = sorted(words.items(), key=lambda item: -item[1])[:k]
    return [{"word": word, "prob": prob} for word, prob in ranked]


class _Search:
    """The open prefixes (a heap) and the complete words found so far."""

    def __init__(self, vocabulary: Vocabulary, partial: str, max_candidates: int):
        self.vocabulary, self.partial, self.max_candidates = vocabulary, partial, max_candidates
        self.starts, self.continues, self.ends = vocabulary.masks
        self.words: dict[str, float] = {}
        self.frontier: list[_Prefix] = []

    def extend(self, prefix: _Prefix, log_probs: torch.Tensor) -> None:
        """Close prefix as a word (times the boundary's probability) and push its one-piece extensions."""
        base, texts = -prefix.neg_logprob, self.vocabulary.texts
        if prefix.word and prefix.word.startswith(self.partial):
            ending = torch.logsumexp(log_probs[self.ends], 0).item()
            self.words[prefix.word] = self.words.get(prefix.word, 0.0) + math.exp(base + ending)
        allowed = self.continues if prefix.tokens else self.starts
        masked = log_probs.masked_fill(~allowed, -math.inf)
        top = masked.topk(min(self.max_candidates, int(allowed.sum())))
        for log_prob, token in zip(top.values.tolist(), top.indices.tolist()):
            if log_prob == -math.inf:  # masked ties can fill the top k
                break
            piece = texts[token] if prefix.tokens else texts[token][len(WORD_START):]
            word = prefix.word + piece
            if word.startswith(self.partial) or self.partial.startswith(word):
                heapq.heappush(self.frontier, _Prefix(-(base + log_prob), word, prefix.tokens + (token,)))


@torch.no_grad()
def next_words(model, tokenizer, prompt: str, k: int = 5, style: str | None = None) -> list[dict]:
    """The k most likely next words after prompt (written in style, one of the tokenizer's labels, if given).

    A prompt that ends mid-word ("To be or not t") gets completions of that
    word. When the likeliest completion is the typed word itself ("To be or not
    to"), the word is taken as finished and the words after it are suggested.
    """
    model.eval()
    prefix = tokenizer.style_prefix(style)
    context, partial = split_prompt(prompt)
    suggestions = _search(model, tokenizer, prefix, context, partial, k)
    if partial and suggestions and suggestions[0]["word"] == partial:
        suggestions = _search(model, tokenizer, prefix, prompt.rstrip(" \t"), "", k)
    return suggestions


def _search(model, tokenizer, prefix: list[int], context: str, partial: str, k: int) -> list[dict]:
    # The engine's prefill reads a context of any length a window at a time, and only its last position's logits.
    logits, state = encode_prompts(model, [prefix + tokenizer.encode(context)], tokenizer.eos_id)  # (1, V)
    return suggest_words(model.stepper(), state, logits[0], Vocabulary.from_tokenizer(tokenizer), partial, k)
