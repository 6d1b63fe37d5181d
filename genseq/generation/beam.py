"""Batched beam search: every beam of every prompt advances in one FusedStep call per token.

Each step scores all beams' one-token extensions, keeps the 2 * num_beams best
per prompt, files those ending in EOS as finished hypotheses and continues the
best num_beams others; the state follows its beams by index_select on the batch
dimension. A hypothesis is ranked by its log-probability / length ** length_penalty.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .config import GenerationConfig
from .engine import GeneratedSequence, History, StopHook, encode_prompts, eval_mode, select_rows
from .precision import decoding_step
from .processors import apply_processors, build_processors

NEG_INF = -math.inf


@dataclass
class Hypotheses:
    """The best finished hypotheses of one prompt, at most num_beams of them."""

    num_beams: int
    length_penalty: float
    early_stopping: bool
    finished: list[GeneratedSequence] = field(default_factory=list)

    def add(self, tokens: list[int], score: float, logprob: float, reason: str) -> None:
        normalized = score / len(tokens) ** self.length_penalty
        self.finished.append(GeneratedSequence(tokens, logprob, reason, normalized))
        self.finished.sort(key=lambda h: -h.score)
        del self.finished[self.num_beams :]

    def is_done(self, best_live_score: float, length: int) -> bool:
        """True when no live beam can enter the list any more (early_stopping: as soon as it is full)."""
        if len(self.finished) < self.num_beams:
            return best_live_score == NEG_INF
        if self.early_stopping or best_live_score == NEG_INF:
            return True
        # As in the usual heuristic, a live beam is judged by its score at the current length.
        return best_live_score / length**self.length_penalty <= self.finished[-1].score


@dataclass
class Beams:
    """The live beams: num_beams rows per searching prompt, with their scores and tokens so far."""

    prompts: list[int]  # the prompts still searching, in row-block order
    scores: Tensor  # (R,) processed log-probability, what beams are ranked by
    logprobs: Tensor  # (R,) the model's own log-probability
    history: History

    def last_tokens(self) -> Tensor:
        return self.history.buffer[:, self.history.length - 1]  # (R,)


def beam_search(
    model, prompts: list[list[int]], config: GenerationConfig, eos_id: int,
    start_id: int | None = None, stop_hook: StopHook | None = None,
) -> list[list[GeneratedSequence]]:
    """The num_return_sequences best continuations of each prompt, best first."""
    K, last = config.num_beams, config.max_new_tokens - 1
    hypotheses = [Hypotheses(K, config.length_penalty, config.early_stopping) for _ in prompts]
    deadline = time.monotonic() + config.max_time if config.max_time else None
    with eval_mode(model), torch.inference_mode():
        advance = decoding_step(model, config.precision)
        logits, state = encode_prompts(model, prompts, eos_id if start_id is None else start_id)
        rows = torch.arange(len(prompts)).repeat_interleave(K)  # (R,) R = P * K
        logits, state = logits[rows.to(logits.device)], select_rows(state, rows)
        # All K beams of a prompt start identical, so only the first may expand at the first step.
        # Scores add up in float64: over hundreds of tokens float32 rounding reaches the small
        # gaps between competing beams and would decide between them.
        first = torch.tensor([0.0] + [NEG_INF] * (K - 1), dtype=torch.float64, device=logits.device).repeat(len(prompts))
        history = History.of(prompts, config.max_new_tokens, logits.device).select(rows)
        beams = Beams(list(range(len(prompts))), first, torch.zeros_like(first), history)
        processors = build_processors(config, eos_id, logits.size(-1), history.prompt_length)
        for position in range(config.max_new_tokens):
            beams, sources = _extend(beams, logits, processors, hypotheses, K, eos_id)  # sources (R,)
            state = select_rows(state, sources)
            if stop_hook:
                stop_hook.select(sources.tolist())
                _file_stopped(beams, stop_hook.update(beams.last_tokens().tolist()), hypotheses, K)
            out_of_time = deadline is not None and time.monotonic() > deadline
            if position == last or out_of_time:
                _file_live(beams, hypotheses, K, "length" if position == last else "time")
                break
            keep = _searching_rows(beams, hypotheses, K, position + 1)
            if keep is None:
                break
            if len(keep) < len(sources):
                beams, state = _keep_rows(beams, keep, K), select_rows(state, keep)
                if stop_hook:
                    stop_hook.select(keep.tolist())
            logits, state = advance(beams.last_tokens(), state)  # (R, V)
    return [h.finished[: config.num_return_sequences] for h in hypotheses]


def _extend(beams: Beams, logits: Tensor, processors, hypotheses, K: int, eos_id: int) -> tuple[Beams, Tensor]:
    """Extend every beam by one token; EOS extensions become hypotheses. -> (new beams, their source rows (R,))."""
    V = logits.size(-1)
    log_probs = apply_processors(processors, beams.history.ids, logits).log_softmax(-1, dtype=torch.float64)  # (R, V)
    model_log_probs = logits.log_softmax(-1, dtype=torch.float64)  # (R, V)
    candidates = (beams.scores[:, None] + log_probs).view(len(beams.prompts), K * V)  # (A, K * V)
    top_scores, top_index = candidates.topk(2 * K, dim=1)  # (A, 2K)
    sources, tokens, scores = [], [], []
    for block, (block_scores, block_index) in enumerate(zip(top_scores.tolist(), top_index.tolist())):
        chosen = []
        for rank, (score, index) in enumerate(zip(block_scores, block_index)):
            row, token = block * K + index // V, index % V
            if token != eos_id:
                chosen.append((row, token, score))
            elif rank < K and score > NEG_INF:  # an EOS below the top K would not have been kept as a beam
                logprob = beams.logprobs[row].item() + model_log_probs[row, token].item()
                hypotheses[beams.prompts[block]].add(_generated(beams.history, row) + [token], score, logprob, "eos")
            if len(chosen) == K:
                break
        chosen += [(block * K, 0, NEG_INF)] * (K - len(chosen))  # too few candidates (a tiny vocabulary): dead beams
        for row, token, score in chosen:
            sources.append(row), tokens.append(token), scores.append(score)
    device = logits.device
    sources_t, tokens_t = torch.tensor(sources, device=device), torch.tensor(tokens, device=device)
    logprobs = beams.logprobs[sources_t] + model_log_probs[sources_t, tokens_t]  # (R,)
    history = beams.history.select(sources_t)
    history.append(tokens_t)
    return Beams(beams.prompts, torch.tensor(scores, dtype=torch.float64, device=device), logprobs, history), sources_t


def _file_stopped(beams: Beams, stopped: list[bool], hypotheses, K: int) -> None:
    """Beams that produced a stop string are finished: filed as hypotheses, and dead as beams."""
    for row in [row for row, stop in enumerate(stopped) if stop]:
        score = beams.scores[row].item()
        if score > NEG_INF:
            hypotheses[beams.prompts[row // K]].add(_generated(beams.history, row), score, beams.logprobs[row].item(), "stop")
            beams.scores[row] = NEG_INF


def _file_live(beams: Beams, hypotheses, K: int, reason: str) -> None:
    """At the length or time limit, every live beam becomes a hypothesis."""
    for row, score in enumerate(beams.scores.tolist()):
        if score > NEG_INF:
            hypotheses[beams.prompts[row // K]].add(_generated(beams.history, row), score, beams.logprobs[row].item(), reason)


def _searching_rows(beams: Beams, hypotheses, K: int, length: int) -> Tensor | None:
    """The rows of the prompts whose search goes on, or None when every prompt is done."""
    best = beams.scores.view(len(beams.prompts), K).max(1).values.tolist()  # (A,)
    going_on = [b for b, prompt in enumerate(beams.prompts) if not hypotheses[prompt].is_done(best[b], length)]
    if not going_on:
        return None
    return torch.tensor([block * K + beam for block in going_on for beam in range(K)])


def _keep_rows(beams: Beams, keep: Tensor, K: int) -> Beams:
    blocks = keep[::K].div(K, rounding_mode="floor").tolist()
    keep = keep.to(beams.scores.device)
    return Beams([beams.prompts[b] for b in blocks], beams.scores[keep], beams.logprobs[keep], beams.history.select(keep))


def _generated(history: History, row: int) -> list[int]:
    return history.buffer[row, history.prompt_length : history.length].tolist()
