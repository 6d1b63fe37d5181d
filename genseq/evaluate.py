"""Evaluation of a language model on a text: NLL, token and word perplexity, bits per byte.

Word perplexity (exp of the total NLL over whitespace-separated words) and bits
per byte (total NLL / (ln 2 * UTF-8 bytes)) do not depend on the tokenizer, so
models with different vocabularies can be compared. Every token after the first
is scored exactly once, in either of two ways:

- batched (the default): the text is cut into segments scored side by side,
  each with its own carried state. Cuts fall at documents' EOS, and a
  document longer than a segment is cut into equal contiguous pieces. Every
  segment after the first reads the CONTEXT tokens before it (not scored)
  first: the model was trained with the state carried across documents, and
  a cold zero state costs it several nats per cut, at a document's start too.

      stream:  [EOS] d o c u m e n t 1 [EOS] d o c 2 [EOS]
      row 0:   [EOS] d o c u m                                scores d o c u m
      row 1:        (c u m) e n t 1 [EOS]                     scores e n t 1 [EOS]
      row 2:                     (t 1 [EOS]) d o c 2 [EOS]    scores d o c 2 [EOS]

  Measured on the default model: within 0.5% of the exact NLL (docs/models.md).
- exact: one stream, the state carried across the whole text.
- passages: the text cut into passages of a few tokens, each read from a fresh
  start, as a prompt is: after a prefix of [EOS] (and a style's label), never
  after the text before it. This scores what a model predicts from its prefix
  alone, where a style label tells it most (docs/training.md#style-labels).

      stream:  [EOS] d o c u m e n t 1 [EOS] d o c 2 [EOS]
      rows:    [EOS] <style> d o c u             scores d o c u
               [EOS] <style> m e n t             scores m e n t
               [EOS] <style> 1 [EOS] d o         scores 1 [EOS] d o  ...

Batched, only the scored positions reach the output layer, a few hundred
rows at a time, so context and padding cost the recurrent layers only. With
precision "int8" every matrix product of an LSTM model runs in int8
(Int8Scorer): on a CPU faster, its NLL about 0.1% higher (docs/models.md).

A text with style labels (genseq.data) holds their control tokens: the model
reads them, but they are not text, so they are not scored and text is scored
among text tokens only (the labels' logits are masked), the same whether the
text carries its label, none or another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .data import TokenStream
from .errors import ConfigError
from .generation.precision import Int8Linear
from .model import LanguageModel, State, layer_weights, lstm_gates

STREAMS = 128  # segments scored side by side: enough rows for the recurrent matrix products to run at speed
# Measured on the default model (Moby-Dick's valid split, 15 chapters): 256-token pieces reading 64 tokens
# of context scored 0.8% above the exact NLL, 512 reading 128 0.13%, for a quarter more work at most.
MIN_SEGMENT = 512  # no shorter segments: a short text is cut into fewer of them instead
CONTEXT = 128  # tokens a segment reads before its first scored token
PRECISIONS = ("fp32", "int8")
IGNORED = -100  # target of a position that is not scored (context, padding)
ROWS = 256  # positions whose logits are computed at a time: 8 MB at 8,000 ids, within a CPU's cache


@dataclass(frozen=True)
class Segment:
    """The model reads tokens[start:end]; its predictions of tokens[first + 1:end + 1] are scored."""

    start: int
    first: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def evaluate(model: LanguageModel, stream: TokenStream, window: int | None = None, progress: bool = False,
             exact: bool = False, eos_id: int | None = None, unscored: tuple[int, ...] = (),
             precision: str = "fp32", passage: int | None = None, prefix: tuple[int, ...] = ()) -> dict:
    """Score every token of stream after the first: batched segments, with exact one stream with the state
    carried, or with passage passages of that many tokens, each read after prefix alone.

    eos_id marks where documents end (None: the text is one document). window is the tokens of each model
    call: of the one stream (default 2048), or of each row of a batch (default 32). The result does not
    depend on it. Tokens in unscored (style labels' ids) are read but not scored. precision is "fp32" or "int8".
    prefix (at least the EOS) is what each passage is read after: a prompt's start.
    """
    if exact and passage:
        raise ConfigError("exact scoring carries the state through the whole text and passages read each piece "
                          "from a fresh start; choose one")
    model.eval()
    scorer = scorer_for(model, precision)
    if passage:
        laid, cut = passages(stream.tokens, passage, prefix)
        nll = score_segments(scorer, laid, cut, window or 32, progress, unscored=unscored)
    elif exact:
        nll = score_single_stream(scorer, stream.tokens, window or 2048, progress, unscored)
    else:
        nll = score_segments(scorer, stream.tokens, segments(stream.tokens, eos_id), window or 32, progress,
                             unscored=unscored)
    predicted = scored_count(stream.tokens, unscored)
    return {
        "tokens": predicted,
        "words": stream.words,
        "bytes": stream.bytes,
        "nll": nll,
        "token_perplexity": _exp(nll / predicted),
        "word_perplexity": _exp(nll / stream.words) if stream.words else None,
        "bits_per_byte": nll / (math.log(2) * stream.bytes) if stream.bytes else None,
    }


def scored_count(tokens: np.ndarray, unscored: tuple[int, ...] = ()) -> int:
    """How many tokens of tokens[1:] are scored: all but those in unscored."""
    return len(tokens) - 1 - (int(np.isin(tokens[1:], unscored).sum()) if unscored else 0)


@torch.no_grad()
def score_single_stream(model: LanguageModel, tokens: np.ndarray, window: int = 2048, progress: bool = False,
                        unscored: tuple[int, ...] = ()) -> float:
    """Total NLL of tokens[1:] but those in unscored, one stream with the state carried through every window."""
    device, nll, state = _device(model), 0.0, None
    with _progress_bar(len(tokens) - 1, progress) as bar:
        for start in range(0, len(tokens) - 1, window):
            chunk = tokens[start : start + window + 1].astype(np.int64)
            inputs = torch.from_numpy(chunk[:-1]).to(device)[None]  # (1, T)
            features, state = model.encode(inputs, state)
            logits = model.logits(features)  # (1, T, V)
            targets = torch.from_numpy(_unscored_ignored(chunk[1:], unscored)).to(device)
            nll += F.cross_entropy(_text_logits(logits, unscored)[0], targets, ignore_index=IGNORED, reduction="sum").item()
            bar.update(len(chunk) - 1)
    return nll


def _text_logits(logits: torch.Tensor, unscored: tuple[int, ...]) -> torch.Tensor:
    """logits in fp32, those of the unscored tokens (never text) masked out."""
    logits = logits.float()
    if unscored:
        logits[..., list(unscored)] = -math.inf
    return logits


def _unscored_ignored(targets: np.ndarray, unscored: tuple[int, ...]) -> np.ndarray:
    """targets with those in unscored set to IGNORED."""
    return np.where(np.isin(targets, unscored), IGNORED, targets) if unscored else targets


def segments(tokens: np.ndarray, eos_id: int | None = None, streams: int = STREAMS, min_length: int = MIN_SEGMENT,
             context: int = CONTEXT) -> list[Segment]:
    """Cut tokens into segments that together score every token after the first once (see the module docstring)."""
    last = len(tokens) - 1
    ends = np.flatnonzero(np.asarray(tokens[1:last]) == eos_id) + 1 if eos_id is not None else np.empty(0, np.int64)
    bounds = [0, *ends.tolist(), last]
    longest = max(min_length, -(-last // streams))
    cut = []
    for start, end in zip(bounds, bounds[1:]):
        pieces = -(-(end - start) // longest)
        edges = [start + (end - start) * piece // pieces for piece in range(pieces + 1)]
        cut += [Segment(max(0, first - context), first, stop) for first, stop in zip(edges, edges[1:])]
    return cut


def passages(tokens: np.ndarray, length: int, prefix: tuple[int, ...]) -> tuple[np.ndarray, list[Segment]]:
    """tokens[1:] cut into passages of length tokens, laid out one after another each behind prefix, and the
    segments that score each passage from prefix alone: together every token after the first, once."""
    if length < 1 or not prefix:
        raise ConfigError(f"a passage needs at least one token and a prefix to start from, not {length} after {list(prefix)}")
    body = np.asarray(tokens[1:])
    laid, cut, at = [], [], 0
    for start in range(0, len(body), length):
        piece = body[start : start + length]
        laid += [np.asarray(prefix, dtype=body.dtype), piece]
        # the last prefix token predicts the passage's first token; the model reads up to its last but one
        cut.append(Segment(at, at + len(prefix) - 1, at + len(prefix) + len(piece) - 1))
        at += len(prefix) + len(piece)
    return (np.concatenate(laid) if laid else np.asarray(prefix, dtype=body.dtype)), cut


@torch.no_grad()
def score_segments(model: LanguageModel, tokens: np.ndarray, cut: list[Segment], window: int = 32,
                   progress: bool = False, streams: int = STREAMS, unscored: tuple[int, ...] = ()) -> float:
    """Total NLL of the scored tokens of every segment, less those in unscored; up to streams segments of similar
    length share a batch."""
    device, nll = _device(model), 0.0
    ordered = sorted(cut, key=lambda segment: segment.length, reverse=True)
    with _progress_bar(sum(segment.end - segment.first for segment in cut), progress) as bar:
        for group_start in range(0, len(ordered), streams):
            group, state = ordered[group_start : group_start + streams], None
            for offset in range(0, group[0].length, window):  # the group's first segment is its longest
                inputs, targets = (part.to(device) for part in _window(tokens, group, offset, window, unscored))
                features, state = model.encode(inputs, state)  # (B, W, P)
                scored = targets != IGNORED
                nll += summed_nll(model.logits, features[scored], targets[scored], unscored)
                bar.update(int(scored.sum()))
    return nll


def summed_nll(logits_of, features: torch.Tensor, targets: torch.Tensor, unscored: tuple[int, ...] = ()) -> float:
    """Total NLL of targets (N,) under logits_of(features (N, P)) (N, V), computed ROWS at a time.

    Only scored positions reach the output layer, and a few hundred rows of logits at a time stay in the CPU's
    cache where the whole window's would not.
    """
    total = features.new_zeros((), dtype=torch.float32)
    for start in range(0, len(targets), ROWS):
        logits = _text_logits(logits_of(features[start : start + ROWS]), unscored)  # (ROWS, V)
        total += F.cross_entropy(logits, targets[start : start + ROWS], reduction="sum")
    return total.item()


def _window(tokens: np.ndarray, group: list[Segment], offset: int, width: int,
            unscored: tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets (B, width) of columns offset to offset + width of a group of segments, read from tokens
    window by window so that a long text is never copied whole. Context, unscored tokens and the padding after a
    row's end are IGNORED targets; padding only ever follows a row's real tokens, so it cannot change how they
    are scored."""
    inputs = np.zeros((len(group), width), np.int64)
    targets = np.full((len(group), width), IGNORED, np.int64)
    for row, segment in enumerate(group):
        begin, stop = segment.start + offset, min(segment.start + offset + width, segment.end)
        scored = max(begin, segment.first)
        inputs[row, : max(stop - begin, 0)] = tokens[begin:stop]
        targets[row, scored - begin : max(stop - begin, 0)] = tokens[scored + 1 : stop + 1]
    return torch.from_numpy(inputs), torch.from_numpy(_unscored_ignored(targets, unscored))


def scorer_for(model: LanguageModel, precision: str):
    """model itself for "fp32", its Int8Scorer for "int8"."""
    if precision not in PRECISIONS:
        raise ConfigError(f"evaluation precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return model if precision == "fp32" else Int8Scorer(model)


class Int8Scorer:
    """An LSTM model's encode and logits with every matrix product in int8 (Int8Linear, fbgemm's dynamic
    quantization), for scoring only.

    The recurrence runs layer by layer, as cuDNN does: a layer's input product covers a whole window in one
    call, and only h W_hh^T is computed step by step, for all the rows of a batch at once.
    """

    def __init__(self, model: LanguageModel):
        if model.config.cell != "lstm":
            raise ConfigError(f"precision int8 evaluates LSTM models only, not a {model.config.cell.upper()}; "
                              "leave --precision at fp32")
        self.model, core = model, model.core
        self.layers = []
        for layer in range(model.config.num_layers):
            w_ih, w_hh, b_ih, b_hh = layer_weights(core, layer)
            self.layers.append((Int8Linear(w_ih, b_ih + b_hh), Int8Linear(w_hh, torch.zeros_like(b_hh))))
        self.projection = _int8_linear(model.projection)
        self.output = _int8_linear(model.output)

    def parameters(self):
        return self.model.parameters()

    def encode(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """features (B, T, P or H) of ids (B, T) and the state after them, as LanguageModel.encode."""
        B, T = ids.shape
        hidden, cells = state or self.model.initial_state(B)
        x, last_hidden, last_cells = self.model.embedding.weight[ids], [], []  # (B, T, E)
        for layer, (input_linear, recurrent_linear) in enumerate(self.layers):
            inputs = input_linear(x.reshape(B * T, -1)).view(B, T, -1)  # (B, T, 4H)
            h, c, outputs = hidden[layer], cells[layer], []
            for t in range(T):
                h, c = lstm_gates(inputs[:, t] + recurrent_linear(h), c)
                outputs.append(h)
            x = torch.stack(outputs, 1)  # (B, T, H)
            last_hidden.append(h)
            last_cells.append(c)
        if self.projection is not None:
            x = self.projection(x.reshape(B * T, -1)).view(B, T, -1)  # (B, T, P)
        return x, (torch.stack(last_hidden), torch.stack(last_cells))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.output(features.reshape(-1, features.size(-1))).view(*features.shape[:-1], -1)  # (..., V)


def _int8_linear(linear: torch.nn.Linear | None) -> Int8Linear | None:
    return Int8Linear(linear.weight.detach(), linear.bias.detach()) if linear is not None else None


def _progress_bar(total: int, enabled: bool):
    """A tqdm bar on stderr counting scored tokens, so its rate is tokens per second."""
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="tok", unit_scale=True, desc="scoring", leave=False)


def _device(model: LanguageModel) -> torch.device:
    return next(model.parameters()).device


def _exp(value: float) -> float:
    return math.exp(value) if value < 700 else math.inf
