"""Prompts through the model's core, a window at a time: the start that sampling and beam search share.

Prompts go through the recurrent core PREFILL_WINDOW tokens at a time
(right-padded, with their lengths), the state carried from window to window,
and only each prompt's last position goes through the output layer: a
prompt's memory is bounded by the window, not its length.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .protocol import DecodableModel, State

# Prompt tokens per pass of the core. The core's activations for a window (an LSTM's gates: (B, W, 4H) per
# layer) are what a prefill costs; a few MB at this size, where a whole 5 MB prompt once asked for 21 GB.
PREFILL_WINDOW = 1024


def encode_prompts(
    model: DecodableModel, prompts: list[list[int]], start_id: int, window: int | None = None,
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
    device, window = next(model.network.parameters()).device, window or PREFILL_WINDOW
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


def select_rows(state: State, rows: Tensor) -> State:
    """Keep, reorder or repeat batch rows of every (L, B, H) state tensor."""
    return tuple(s.index_select(1, rows.to(s.device)) for s in state)


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
