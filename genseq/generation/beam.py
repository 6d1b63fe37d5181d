"""Batched beam search: every beam of every prompt advances in one FusedStep call per token.

Each step scores all beams' one-token extensions, keeps the 2 * num_beams best
per prompt, files those ending in EOS as finished hypotheses and continues the
best num_beams others; the state follows its beams by index_select on the batch
dimension. A hypothesis is ranked by its log-probability / length ** length_penalty.

The state entries a model lists in prompt_state (protocol.py) stay at one row
per searching prompt while the others have num_beams consecutive rows per
prompt, so they are never repeated or reordered as beams fork, only selected
when prompts leave.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .config import GenerationConfig
from .precision import decoding_step
from .prefill import encode_prompts
from .processors import NEG_INF, apply_processors, build_processors
from .protocol import DecodableModel, GeneratedSequence, History, StopHook, eval_mode


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
    model: DecodableModel, prompts: list[list[int]], config: GenerationConfig, eos_id: int,
    start_id: int | None = None, stop_hook: StopHook | None = None,
) -> list[list[GeneratedSequence]]:
    """The num_return_sequences best continuations of each prompt, best first."""
    K, last = config.num_beams, config.max_new_tokens - 1
    hypotheses = [Hypotheses(K, config.length_penalty, config.early_stopping) for _ in prompts]
    deadline = time.monotonic() + config.max_time if config.max_time else None
    with eval_mode(model), torch.inference_mode():
        advance = decoding_step(model, config.precision)
        logits, state = encode_prompts(model, prompts, eos_id if start_id is None else start_id)
        invariant = frozenset(model.prompt_state)
        rows = torch.arange(len(prompts)).repeat_interleave(K)  # (R,) R = P * K
        logits, state = logits[rows.to(logits.device)], _follow_beams(state, rows, invariant)
        # All K beams of a prompt start identical, so only the first may expand at the first step.
        # Scores add up in float64: over hundreds of tokens float32 rounding reaches the small
        # gaps between competing beams and would decide between them.
        first = torch.tensor([0.0] + [NEG_INF] * (K - 1), dtype=torch.float64, device=logits.device).repeat(len(prompts))
        history = History.of(prompts, config.max_new_tokens, logits.device).select(rows)
        beams = Beams(list(range(len(prompts))), first, torch.zeros_like(first), history)
        processors = build_processors(config, eos_id, logits.size(-1), history.prompt_length)
        for position in range(config.max_new_tokens):
            beams, sources = _extend(beams, logits, processors, hypotheses, K, eos_id)  # sources (R,)
            state = _follow_beams(state, sources, invariant)
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
                beams, state = _keep_rows(beams, keep, K), _keep_state(state, keep, K, invariant)
                if stop_hook:
                    stop_hook.select(keep.tolist())
            logits, state = advance(beams.last_tokens(), state)  # (R, V)
    return [h.finished[: config.num_return_sequences] for h in hypotheses]


def _extend(beams: Beams, logits: Tensor, processors, hypotheses, K: int, eos_id: int) -> tuple[Beams, Tensor]:
    """Extend every beam by one token; EOS extensions become hypotheses. -> (new beams, their source rows (R,)).

    Per prompt, the 2K best candidates in rank order: the first K that do not end
    in EOS go on as beams, and an EOS among the top K is filed as a hypothesis. This
    is done with tensor operations on all prompts at once, so the Python work of a
    step does not grow with the number of prompts.
    """
    A, V, device = len(beams.prompts), logits.size(-1), logits.device
    processed = apply_processors(processors, beams.history.ids, logits)
    # In float64 (see beam_search), converted first: log_softmax(dtype=torch.float64) gives the same
    # values but takes about 6 times as long on CPUs.
    model_log_probs = logits.double().log_softmax(-1)  # (R, V)
    # Without processors (the usual beam search) both are the same: computed once.
    log_probs = model_log_probs if processed is logits else processed.double().log_softmax(-1)  # (R, V)
    candidates = (beams.scores[:, None] + log_probs).view(A, K * V)  # (A, K * V)
    top_scores, top_index = candidates.topk(2 * K, dim=1)  # (A, 2K), best first
    rows = top_index.div(V, rounding_mode="floor") + torch.arange(0, A * K, K, device=device)[:, None]  # (A, 2K)
    tokens = top_index % V  # (A, 2K)
    is_eos = tokens == eos_id
    rank = torch.arange(2 * K, device=device)
    # An EOS below the top K would not have been kept as a beam, so it is not a hypothesis either.
    _file_eos(beams, hypotheses, rows, tokens, top_scores, model_log_probs, is_eos & (rank < K) & (top_scores > NEG_INF))
    # Each of the K beams has one EOS candidate, so at least K of the 2K are not EOS: take the
    # first K of those in rank order (a stable sort puts the EOS ones last).
    order = torch.where(is_eos, rank + 2 * K, rank).argsort(dim=1, stable=True)[:, :K]  # (A, K)
    sources, tokens = rows.gather(1, order).view(-1), tokens.gather(1, order).view(-1)  # (R,)
    scores = top_scores.gather(1, order).view(-1)  # (R,)
    logprobs = beams.logprobs[sources] + model_log_probs[sources, tokens]  # (R,)
    history = beams.history.select(sources)
    history.append(tokens)
    return Beams(beams.prompts, scores, logprobs, history), sources


def _file_eos(beams: Beams, hypotheses, rows, tokens, scores, model_log_probs, filed) -> None:
    """The candidates where filed (A, 2K) is True become hypotheses, in prompt then rank order."""
    blocks, ranks = filed.nonzero(as_tuple=True)
    if len(blocks) == 0:
        return
    eos_rows, eos_tokens = rows[blocks, ranks], tokens[blocks, ranks]
    logprobs = (beams.logprobs[eos_rows] + model_log_probs[eos_rows, eos_tokens]).tolist()
    history = beams.history
    generated = torch.cat([history.buffer[eos_rows, history.prompt_length : history.length], eos_tokens[:, None]], 1)
    for block, tokens, score, logprob in zip(blocks.tolist(), generated.tolist(), scores[blocks, ranks].tolist(), logprobs):
        hypotheses[beams.prompts[block]].add(tokens, score, logprob, "eos")


def _follow_beams(state, sources: Tensor, invariant: frozenset[int]):
    """Each row's state becomes its source row's (sources (R,)), except for the per-prompt entries:
    sources stay within their prompt's K rows, so those keep their one row per prompt."""
    return tuple(s if i in invariant else s.index_select(1, sources.to(s.device)) for i, s in enumerate(state))


def _keep_state(state, keep: Tensor, K: int, invariant: frozenset[int]):
    """The state of the rows keep (whole blocks of K), per-prompt entries by their block."""
    blocks = keep[::K].div(K, rounding_mode="floor")
    return tuple(s.index_select(1, (blocks if i in invariant else keep).to(s.device)) for i, s in enumerate(state))


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
