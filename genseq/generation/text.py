"""The text side of generation: prompts to ids, ids to completions, stop strings and streaming.

A prompt is fed as [EOS] + tokenizer.encode(prompt), as every document follows
an EOS in training (an empty prompt is just [EOS]); with a style, the style's
control token comes between them, as it starts each document of its label in
training, and adds no text. A completion's text is what
its tokens add after the prompt's text, so the first word keeps its leading
space. Stop strings are matched on that decoded text, also across token
boundaries, and are left out of it. A stream yields text deltas whose
concatenation is exactly the non-streamed text: whole words only (text up to
a space or newline; a run of LONGEST_WORD characters without one, as in CJK
text, is released as it is), never a broken UTF-8 character, and never text
that may still turn out to be the start of a stop string.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any, Iterator

from ..errors import ConfigError
from .config import GenerationConfig
from .engine import generate_ids
from .protocol import DecodableModel, GeneratedSequence
from .sampling import sample_steps

CONTEXT_TOKENS = 4  # prompt tokens an incremental decoder starts from, to space the first word right
LONGEST_WORD = 32  # a stream releases a run of text without spaces (CJK, say) once it is this long


@dataclass
class Completion:
    """One continuation of a prompt, as text and as the token ids that were generated."""

    text: str
    tokens: list[int]  # the generated ids, EOS included when generated
    logprob: float  # the model's log-probability of tokens given the prompt
    finish_reason: str  # "eos", "stop", "length" or "time"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- one call, whole completions ---------------------------------------------------
def generate(model: DecodableModel, tokenizer, prompts: str | list[str], config: GenerationConfig | None = None,
             style: str | None = None, **options):
    """Continue a prompt (-> list of Completion) or a list of prompts (-> one such list per prompt).

    style names one of the tokenizer's style labels (None or "": none). options override fields of config,
    e.g. generate(model, tokenizer, "Once", temperature=0.8, seed=1).
    """
    config = _config(config, options)
    single = isinstance(prompts, str)
    texts = [prompts] if single else list(prompts)
    if not texts:
        return []
    prefix, config = _style_prefix(tokenizer, style), _keeping_style(config, tokenizer, style)
    prompt_ids = [prefix + tokenizer.encode(text) for text in texts]
    hook = StopStrings(tokenizer, config.stop, _rows(prompt_ids, config)) if config.stop else None
    results = generate_ids(model, prompt_ids, config, tokenizer.eos_id, stop_hook=hook)
    completions = [
        [completion(tokenizer, ids, sequence, config.stop) for sequence in sequences]
        for ids, sequences in zip(prompt_ids, results)
    ]
    return completions[0] if single else completions


def completion(tokenizer, prompt_ids: list[int], sequence: GeneratedSequence, stops=()) -> Completion:
    """The Completion of generated ids: their text after the prompt's, cut before the first stop string.

    Only the prompt's last tokens are decoded with them: enough to space the first word
    as a full decode would, and the same window the incremental decoder starts from.
    """
    context = prompt_ids[-CONTEXT_TOKENS:]
    text = tokenizer.decode(context + sequence.tokens)[len(tokenizer.decode(context)) :]
    cut = _first_stop(text, stops)
    return Completion(text[:cut], sequence.tokens, sequence.logprob, sequence.finish_reason)


# ---- streaming -----------------------------------------------------------------------
def stream(model: DecodableModel, tokenizer, prompt: str, config: GenerationConfig | None = None,
           style: str | None = None, **options) -> "TextStream":
    """Iterate over the text of one sampled (or greedy) continuation as it is generated (style: as for generate)."""
    return TextStream(model, tokenizer, prompt, _keeping_style(_config(config, options), tokenizer, style), style)


class TextStream:
    """An iterator of text deltas; afterwards .completion holds the whole Completion.

    for delta in stream(model, tokenizer, "Once upon a"): print(delta, end="", flush=True)
    """

    def __init__(self, model, tokenizer, prompt: str, config: GenerationConfig, style: str | None = None):
        if config.num_beams > 1 or config.num_return_sequences > 1:
            raise ConfigError(
                "streaming follows one sequence; it cannot be combined with num_beams > 1 or num_return_sequences > 1"
            )
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.prompt_ids = _style_prefix(tokenizer, style) + tokenizer.encode(prompt)
        self.completion: Completion | None = None

    def __iter__(self) -> Iterator[str]:
        tokenizer, config = self.tokenizer, self.config
        decoder = IncrementalDecoder(tokenizer, self.prompt_ids)
        hook = StopStrings(tokenizer, config.stop, [self.prompt_ids]) if config.stop else None
        hold = max((len(s) for s in config.stop), default=1) - 1  # chars that may begin a stop string
        tokens, logprob, reason = [], 0.0, ""
        text, shown = "", 0
        for step in sample_steps(self.model, [self.prompt_ids], config, tokenizer.eos_id, stop_hook=hook):
            tokens.append(step.tokens[0])
            logprob += step.logprobs[0]
            reason = step.finished.get(0, reason)
            text += decoder.push(step.tokens[0])
            end = _word_boundary(text, shown, len(text) - hold)
            if end > shown:
                yield text[shown:end]
                shown = end
        sequence = GeneratedSequence(tokens, logprob, reason, logprob)
        self.completion = completion(tokenizer, self.prompt_ids, sequence, config.stop)
        if len(self.completion.text) > shown:
            yield self.completion.text[shown:]


# ---- incremental decoding and stop strings --------------------------------------------
class IncrementalDecoder:
    """Decodes a growing list of ids into text deltas, a short window of ids at a time.

    The window starts at the tokens decoded last time, so SentencePiece treats a
    word's leading space as in a full decode; text is released only when it does
    not end in an incomplete UTF-8 character (decoded as U+FFFD).
    """

    def __init__(self, tokenizer, context_ids: list[int]):
        self.tokenizer = tokenizer
        self.ids = list(context_ids[-CONTEXT_TOKENS:])  # [released before | not yet released]
        self.released = len(self.ids)

    def push(self, token: int) -> str:
        """Add one token; returns the text it completes ("" while no character is complete)."""
        self.ids.append(token)
        before = self.tokenizer.decode(self.ids[: self.released])
        after = self.tokenizer.decode(self.ids)
        if after.endswith("\ufffd") or len(after) <= len(before):
            return ""
        self.ids = self.ids[self.released :]  # the window slides past what is no longer needed
        self.released = len(self.ids)
        return after[len(before) :]

    def fork(self) -> "IncrementalDecoder":
        clone = copy.copy(self)
        clone.ids = list(self.ids)
        return clone


class StopStrings:
    """The engine's stop hook: one incremental decoder per live row, matching stop strings on its text."""

    def __init__(self, tokenizer, stops: tuple[str, ...], contexts: list[list[int]]):
        self.stops = stops
        self.keep = max(len(s) for s in stops) - 1  # chars of text a match may still begin in
        self.rows = [_RowText(IncrementalDecoder(tokenizer, context)) for context in contexts]

    def update(self, tokens: list[int]) -> list[bool]:
        return [row.push(token, self.stops, self.keep) for row, token in zip(self.rows, tokens)]

    def select(self, rows: list[int]) -> None:
        taken: set[int] = set()
        selected = []
        for row in rows:  # a beam that forks gets its own copy of the decoder
            selected.append(self.rows[row].fork() if row in taken else self.rows[row])
            taken.add(row)
        self.rows = selected


class _RowText:
    """One row's decoder and the end of its text that a stop string may still begin in."""

    def __init__(self, decoder: IncrementalDecoder, tail: str = ""):
        self.decoder, self.tail = decoder, tail

    def push(self, token: int, stops: tuple[str, ...], keep: int) -> bool:
        delta = self.decoder.push(token)
        if not delta:
            return False
        self.tail += delta
        found = any(stop in self.tail for stop in stops)
        self.tail = self.tail[-keep:] if keep else ""
        return found

    def fork(self) -> "_RowText":
        return _RowText(self.decoder.fork(), self.tail)


# ---- helpers --------------------------------------------------------------------------------
def continuation_logprobs(model: DecodableModel, tokenizer, prompt: str, tokens: list[int], style: str | None = None):
    """(N, V) log-probabilities under the model's own distribution (before temperature or any other processor) at
    each of the N tokens written after prompt, read as generate() reads it; one pass over prompt and tokens."""
    import torch

    context = [tokenizer.eos_id, *_style_prefix(tokenizer, style), *tokenizer.encode(prompt)]
    ids = torch.tensor([context + tokens[:-1]], device=next(model.parameters()).device)  # (1, T)
    with torch.inference_mode():
        logits, _ = model(ids)  # (1, T, V)
    return torch.log_softmax(logits[0, len(context) - 1 :].float(), dim=-1)  # the position before each token


def _config(config: GenerationConfig | None, options: dict) -> GenerationConfig:
    config = config or GenerationConfig()
    return config.updated(**options) if options else config


def _style_prefix(tokenizer, style: str | None) -> list[int]:
    """The ids a prompt in style starts with; a tokenizer is asked only when there is a style (a plugin's own
    tokenizer may know none)."""
    return tokenizer.style_prefix(style) if style else []


def _keeping_style(config: GenerationConfig, tokenizer, style: str | None) -> GenerationConfig:
    """config with the other styles' tokens banned, so that a continuation in style cannot switch to another
    (a labelled model repeats its label as it writes, see genseq.data)."""
    if not style:
        return config
    others = tuple(token for name, token in tokenizer.styles.items() if name != style)
    return config.updated(banned_token_ids=(*config.banned_token_ids, *others)) if others else config


def _rows(prompt_ids: list[list[int]], config: GenerationConfig) -> list[list[int]]:
    """The prompt of each engine row at the start: num_beams or num_return_sequences rows per prompt."""
    per_prompt = config.num_beams if config.num_beams > 1 else config.num_return_sequences
    return [ids for ids in prompt_ids for _ in range(per_prompt)]


def _first_stop(text: str, stops) -> int:
    positions = [text.find(stop) for stop in stops]
    return min((p for p in positions if p >= 0), default=len(text))


def _word_boundary(text: str, start: int, limit: int) -> int:
    """How far a stream may show text: its last whitespace in text[start:limit + 1] (the text
    before it is whole words), else start; a run longer than LONGEST_WORD goes up to limit."""
    for index in range(min(limit, len(text) - 1), start, -1):
        if text[index].isspace():
            return index
    return max(start, limit) if limit - start >= LONGEST_WORD else start
