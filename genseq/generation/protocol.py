"""What a model must provide to be decoded, and the types sampling and beam search share.

A DecodableModel is the engine's whole view of a model: it never calls
anything else on it. LanguageModel is one; a captioner bound to a batch of
images (genseq_captioning's BoundDecoder) is another; a plugin's own model
only has to provide these five members:

    encode(ids (B, T), state=None, lengths=None) -> (features (B, T, F), state)   the prompt, all at once
    logits(features (..., F)) -> logits (..., V)                                  only at each prompt's end
    stepper(make_linear) -> step(ids (B,), state) -> (logits (B, V), state)        every later token
    network: the nn.Module holding the weights
    prompt_state: indices of state entries kept once per prompt in beam search

A state is a tuple of tensors with the batch on dim 1 ((L, B, H) for an LSTM),
so the engine drops, repeats and reorders rows with one index_select per
tensor.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from .processors import NO_TOKEN

State = tuple[Tensor, ...]  # every tensor has the batch on dim 1
# make_linear(weight (out, in), bias (out,)) -> x (B, in) -> x W^T + b (B, out), in the precision asked for
MakeLinear = Callable[[Tensor, Tensor], Callable[[Tensor], Tensor]]
DecodingStep = Callable[[Tensor, State], tuple[Tensor, State]]  # (ids (B,), state) -> (logits (B, V), state)


@runtime_checkable
class DecodableModel(Protocol):
    """A model the engine can decode: generate_ids, sample_steps, beam_search and encode_prompts take one."""

    # Indices of state entries that belong to the prompt, not to a sequence (a captioner's image
    # features), which the step passes on unchanged. Beam search keeps those at one row per prompt
    # while the other entries have num_beams rows per prompt, and the step broadcasts them: row r of
    # the others goes with row r // num_beams. () when every entry follows its sequence.
    prompt_state: tuple[int, ...]

    @property
    def network(self) -> nn.Module:
        """The module holding the weights: the engine reads its device, turns its dropout off while
        decoding, and caches one step per network and precision (so the step reads only its weights)."""

    def encode(self, ids: Tensor, state: State | None = None, lengths: Tensor | None = None) -> tuple[Tensor, State]:
        """ids (B, T), right-padded to lengths when given -> (features (B, T, F), the state after each row's last id).

        Without a state the model starts from its own initial one; long prompts come
        in windows, each later window with the state the last one left.
        """

    def logits(self, features: Tensor) -> Tensor:
        """features (..., F) -> logits (..., V)."""

    def stepper(self, make_linear: MakeLinear | None = None) -> DecodingStep:
        """A one-token step over the current weights, its matrix products built by make_linear."""


@contextlib.contextmanager
def eval_mode(model: DecodableModel):
    """Dropout off while generating; the network's mode is restored afterwards."""
    network = model.network
    was_training = network.training
    network.eval()
    try:
        yield
    finally:
        network.train(was_training)


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
