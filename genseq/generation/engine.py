"""The batched decoding loop on token ids: sampling and greedy decoding, and the parts beam search shares.

The engine sees token ids and tensors only. Prompts go through the recurrent
core PREFILL_WINDOW tokens at a time (right-padded, with their lengths), the
state carried from window to window, and only each prompt's last position goes
through the output layer: a prompt's memory is bounded by the window, not its
length. After that every live sequence advances by one FusedStep call per
token, with the state carried, so nothing is ever re-run over a prefix.
Sequences that finish leave the batch.

The model needs: encode(ids, state, lengths) -> (features, state), logits(features),
stepper(make_linear) -> step(ids (B,), state) -> (logits (B, V), state), and
parameters(); the state is a tuple of (L, B, H) tensors. LanguageModel is one.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from dataclasses import dataclass
from typing import Iterator, Protocol

import torch
from torch import Tensor

from .config import GenerationConfig
from .precision import decoding_step
from .processors import NO_TOKEN, apply_processors, build_processors
from .sampling import next_token, row_generators

State = tuple[Tensor, ...]
# Prompt tokens per pass of the core. The core's activations for a window (an LSTM's gates: (B, W, 4H) per
# layer) are what a prefill costs; a few MB at this size, where a whole 5 MB prompt once asked for 21 GB.
PREFILL_WINDOW = 1024


@dataclass
class GeneratedSequence:
    """One generated continuation: its token ids (EOS included when generated) and why it ended.

    logprob is the model's own log-probability of the tokens given the prompt
    (before any processor); score is what beam search ranked by (the processed
    log-probability over length ** length_penalty) and equals logprob when sampling.
    """

    tokens: list[int]
    logprob: float
    finish_reason: str  # "eos", "stop", "length" or "time"
    score: float


@dataclass
class Step:
    """What one decoding step produced for each live sequence (index = prompt * num_return_sequences + j)."""

    sequences: list[int]
    tokens: list[int]
    logprobs: list[float]
    finished: dict[int, str]  # sequence -> finish reason, for those that ended at this step


class StopHook(Protocol):
    """Tells the engine when a sequence must end for a reason outside the token ids (stop strings).

    It keeps one entry per live row, in the engine's row order.
    """

    def update(self, tokens: list[int]) -> list[bool]:
        """Each live row's new token; True where that row must stop."""

    def select(self, rows: list[int]) -> None:
        """The live rows are now these previous rows (fewer when some finished; repeated when beams fork)."""


# ---- entry point on ids ----------------------------------------------------------
def generate_ids(
    model, prompts: list[list[int]], config: GenerationConfig, eos_id: int,
    start_id: int | None = None, stop_hook: StopHook | None = None,
) -> list[list[GeneratedSequence]]:
    """For each prompt (token ids, may be empty), its num_return_sequences continuations.

    Each prompt is fed as [start_id] + prompt (start_id defaults to eos_id, the
    separator before every document in training). Beam search returns the best
    hypotheses first; sampling returns them in seed order.
    """
    if config.num_beams > 1:
        from .beam import beam_search

        return beam_search(model, prompts, config, eos_id, start_id, stop_hook)
    return collect(sample_steps(model, prompts, config, eos_id, start_id, stop_hook), len(prompts), config)


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


# ---- sampling and greedy decoding --------------------------------------------------
def sample_steps(
    model, prompts: list[list[int]], config: GenerationConfig, eos_id: int,
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
    history: "History"
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


# ---- shared by sampling and beam search -------------------------------------------
def encode_prompts(
    model, prompts: list[list[int]], start_id: int, window: int | None = None,
) -> tuple[Tensor, State]:
    """The core over [start_id] + each prompt -> (logits after each prompt (P, V), state (L, P, H)).

         window 1     window 2
        [s p p p . .][. . .]   right-padded within a window; each window starts from
        [s p p p p p][p p .]   the state the last one left. A prompt that has ended
                               sits out the later windows: its state and features
                               are the ones after its own last token.

    Only those last features go through the output layer. The first window is
    encode(ids, lengths=...) without a state, so a model that reads its own
    initial state (a captioner's, from its image) needs only that call.
    window defaults to PREFILL_WINDOW.
    """
    device, window = next(model.parameters()).device, window or PREFILL_WINDOW
    lengths = [len(prompt) + 1 for prompt in prompts]
    last: list[Tensor | None] = [None] * len(prompts)
    state: State | None = None
    for start in range(0, max(lengths), window):
        active = [i for i, length in enumerate(lengths) if length > start]
        pieces = [_window(prompts[i], start_id, start, window) for i in active]
        carried = None if state is None else _rows_of(state, active, len(prompts))
        features, reached = _encode_window(model, pieces, carried, device)  # (A, W, F)
        state = reached if state is None else _with_rows(state, active, reached)
        for row, (i, piece) in enumerate(zip(active, pieces)):
            if start + len(piece) == lengths[i]:
                last[i] = features[row, len(piece) - 1]  # (F,)
    return model.logits(torch.stack(last)).float(), state  # (P, V)


def _window(prompt: list[int], start_id: int, start: int, window: int) -> list[int]:
    """Tokens start .. start + window of [start_id] + prompt, without building that list."""
    if start == 0:
        return [start_id, *prompt[: window - 1]]
    return prompt[start - 1 : start - 1 + window]


def _encode_window(model, pieces: list[list[int]], state: State | None, device) -> tuple[Tensor, State]:
    lengths = torch.tensor([len(piece) for piece in pieces])
    ids = torch.zeros(len(pieces), int(lengths.max()), dtype=torch.long)  # (A, W), padded with 0 (pad)
    for i, piece in enumerate(pieces):
        ids[i, : len(piece)] = torch.tensor(piece)
    same_length = bool((lengths == lengths[0]).all())
    carried = {} if state is None else {"state": state}
    return model.encode(ids.to(device), lengths=None if same_length else lengths, **carried)


def _rows_of(state: State, rows: list[int], batch: int) -> State:
    return state if len(rows) == batch else select_rows(state, torch.tensor(rows))


def _with_rows(state: State, rows: list[int], values: State) -> State:
    """state with its batch rows `rows` replaced by values' rows, in order."""
    if len(rows) == state[0].size(1):
        return values
    index = torch.tensor(rows, device=state[0].device)
    return tuple(s.index_copy(1, index, v) for s, v in zip(state, values))


def select_rows(state: State, rows: Tensor) -> State:
    """Keep, reorder or repeat batch rows of every (L, B, H) state tensor."""
    return tuple(s.index_select(1, rows.to(s.device)) for s in state)


@contextlib.contextmanager
def eval_mode(model):
    """Dropout off while generating; the model's mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class History:
    """Each live row's tokens so far in one preallocated buffer, left-padded with NO_TOKEN:

        -1 -1  p  p  p | g g g . . .     prompt_length columns, then up to
         p  p  p  p  p | g g g . . .     max_new_tokens generated ones

    Processors read ids = the filled columns; appending a token costs O(B), not O(B * T).
    """

    def __init__(self, buffer: Tensor, length: int, prompt_length: int):
        self.buffer, self.length, self.prompt_length = buffer, length, prompt_length

    @classmethod
    def of(cls, prompts: list[list[int]], max_new_tokens: int, device) -> "History":
        prompt_length = max(len(prompt) for prompt in prompts)
        buffer = torch.full((len(prompts), prompt_length + max_new_tokens), NO_TOKEN, dtype=torch.long)
        for i, prompt in enumerate(prompts):
            if prompt:
                buffer[i, prompt_length - len(prompt) : prompt_length] = torch.tensor(prompt)
        return cls(buffer.to(device), prompt_length, prompt_length)

    @property
    def ids(self) -> Tensor:
        return self.buffer[:, : self.length]  # (B, T)

    def append(self, tokens: Tensor) -> None:
        self.buffer[:, self.length] = tokens
        self.length += 1

    def select(self, rows: Tensor) -> "History":
        return History(self.buffer.index_select(0, rows.to(self.buffer.device)), self.length, self.prompt_length)
