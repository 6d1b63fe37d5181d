"""Sampling and greedy decoding: the token-by-token loop, and one pure function that picks each token.

After the prefill (prefill.py) every live sequence advances by one call of the
model's step per token, with the state carried, so nothing is ever re-run over
a prefix; sequences that finish leave the batch.

Each row draws from its own torch.Generator, so a sequence gets the same tokens
whatever else shares its batch. A draw is one uniform number per row placed on
the cumulative distribution (inverse-CDF sampling): an exact draw from
softmax(logits) that costs one random number per row instead of one per
vocabulary entry, which is what torch.multinomial spends.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import Tensor

from ..errors import ConfigError
from .config import GenerationConfig
from .precision import decoding_step
from .prefill import encode_prompts, select_rows
from .processors import apply_processors, build_processors
from .protocol import DecodableModel, GeneratedSequence, History, State, Step, StopHook, eval_mode


# ---- picking one token ---------------------------------------------------------------
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


# ---- the token-by-token loop ----------------------------------------------------------
def sample_steps(
    model: DecodableModel, prompts: list[list[int]], config: GenerationConfig, eos_id: int,
    start_id: int | None = None, stop_hook: StopHook | None = None,
) -> Iterator[Step]:
    """Generate token by token, yielding each step's new tokens as soon as they exist.

    Sequence i * n + j (n = num_return_sequences) continues prompt i with seed + j,
    so a prompt gets the same tokens alone as in any batch. The steps may be
    consumed from any thread, and between two steps the caller is not in
    inference mode.
    """
    return in_inference_mode(_sample_steps(model, prompts, config, eos_id, start_id, stop_hook))


def in_inference_mode(steps: Iterator) -> Iterator:
    """The items of a generator, its code run in torch's inference mode but every yield outside it.

    Inference mode is thread-local: a generator that held it across its yields
    would leak it into the consumer's code and break when resumed on another thread.
    """
    try:
        while True:
            with torch.inference_mode():
                try:
                    item = next(steps)
                except StopIteration:
                    return
            yield item
    finally:
        steps.close()


def _sample_steps(model, prompts, config, eos_id, start_id, stop_hook) -> Iterator[Step]:
    n = config.num_return_sequences
    seed = config.seed if config.seed is not None else secrets.randbits(62)
    deadline = time.monotonic() + config.max_time if config.max_time else None
    with eval_mode(model):
        advance = decoding_step(model, config.precision)
        logits, state = encode_prompts(model, prompts, eos_id if start_id is None else start_id)  # (P, V)
        rows = torch.arange(len(prompts)).repeat_interleave(n)  # (S,): sequence -> its prompt
        logits = logits[rows.to(logits.device)]  # (S, V)
        live = LiveRows(
            list(range(len(rows))), select_rows(state, rows),
            History.of(prompts, config.max_new_tokens, logits.device).select(rows),
            row_generators([seed + s % n for s in range(len(rows))]) if config.do_sample else None,
        )
        processors = build_processors(config, eos_id, logits.size(-1), live.history.prompt_length)
        for position in range(config.max_new_tokens):
            tokens = next_token(apply_processors(processors, live.history.ids, logits), live.generators)  # (S,)
            logprobs = logits.log_softmax(-1).gather(1, tokens[:, None])[:, 0]  # (S,)
            live.history.append(tokens)
            token_list = tokens.tolist()
            stopped = stop_hook.update(token_list) if stop_hook else [False] * len(token_list)
            out_of_time = deadline is not None and time.monotonic() > deadline
            last = position == config.max_new_tokens - 1
            finished = _finish_reasons(live.sequences, token_list, stopped, eos_id, last, out_of_time)
            yield Step(live.sequences, token_list, logprobs.tolist(), finished)
            if len(finished) == len(live.sequences):
                return
            if finished:
                kept = [i for i, sequence in enumerate(live.sequences) if sequence not in finished]
                live.keep(kept)
                tokens = tokens[torch.tensor(kept, device=tokens.device)]
                if stop_hook:
                    stop_hook.select(kept)
            logits, live.state = advance(tokens, live.state)  # (S, V)


@dataclass
class LiveRows:
    """The sequences still generating, row-aligned with their state, history and generators."""

    sequences: list[int]
    state: State
    history: History
    generators: list | None

    def keep(self, rows: list[int]) -> None:
        """Drop every row not in rows (the finished sequences)."""
        index = torch.tensor(rows)
        self.sequences = [self.sequences[i] for i in rows]
        self.generators = [self.generators[i] for i in rows] if self.generators else None
        self.state, self.history = select_rows(self.state, index), self.history.select(index)


def _finish_reasons(sequences, tokens, stopped, eos_id, last, out_of_time) -> dict[int, str]:
    finished = {}
    for sequence, token, stop in zip(sequences, tokens, stopped):
        if token == eos_id:
            finished[sequence] = "eos"
        elif stop:
            finished[sequence] = "stop"
        elif last:
            finished[sequence] = "length"
        elif out_of_time:
            finished[sequence] = "time"
    return finished


def collect(steps: Iterator[Step], num_prompts: int, config: GenerationConfig) -> list[list[GeneratedSequence]]:
    """Drain sample_steps into finished sequences, grouped by prompt."""
    count = num_prompts * config.num_return_sequences
    tokens: list[list[int]] = [[] for _ in range(count)]
    logprobs = [0.0] * count
    reasons = [""] * count
    for step in steps:
        for sequence, token, logprob in zip(step.sequences, step.tokens, step.logprobs):
            tokens[sequence].append(token)
            logprobs[sequence] += logprob
        for sequence, reason in step.finished.items():
            reasons[sequence] = reason
    done = [GeneratedSequence(t, lp, r, lp) for t, lp, r in zip(tokens, logprobs, reasons)]
    n = config.num_return_sequences
    return [done[i * n : (i + 1) * n] for i in range(num_prompts)]
