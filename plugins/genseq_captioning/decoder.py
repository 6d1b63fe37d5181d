"""The caption decoder: an LSTM with soft attention over the image's spatial features, and its fused step.

    features (B, C, h, w) -> annotation vectors a (N, B, D), N = h * w, and their attention keys (N, B, A)
    at each word t:  alpha = softmax(w . tanh(keys + W_h h))                      (N, B)
                     z = sigmoid(W_beta h) * sum_i alpha_i a_i                      (B, D)  gated context
                     h, c = LSTM([embedding(y_{t-1}); z], (h, c))
                     logits = W_out dropout(h)                                     (B, V)

This is Show, Attend and Tell (Xu et al. 2015) with the gating scalar beta
and the doubly stochastic regularisation (in train.py), h and c initialised
from the mean annotation vector. attention=False is Show and Tell (Vinyals et
al. 2015): the image only sets the initial state and the LSTM reads words.

Every per-image tensor is laid out with the batch on dim 1, as the generation
engine expects of a state, so beams and finished rows reorder it with one
index_select. BoundDecoder is the decoder bound to a batch of images as a
genseq.generation.DecodableModel, so greedy decoding, sampling and beam
search are the engine's own, batched over images and beams.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genseq.errors import ConfigError

State = tuple[Tensor, ...]  # (h (1, B, H), c (1, B, H), annotations (N, B, D), keys (N, B, A))


@dataclass
class DecoderConfig:
    vocab_size: int = 1000
    feature_channels: int = 1280  # C, the encoder's output channels
    feature_size: int = 256  # D: each location's features are projected to this
    embedding_size: int = 128
    hidden_size: int = 384
    attention_size: int = 256
    attention: bool = True  # False: Show and Tell, no attention
    dropout: float = 0.3

    def __post_init__(self):
        for name in ("vocab_size", "feature_channels", "feature_size", "embedding_size", "hidden_size", "attention_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), not {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)


def tanh(x: Tensor) -> Tensor:
    """tanh as 2 sigmoid(2x) - 1: the same function, and on CPUs PyTorch's sigmoid is several times faster."""
    return torch.sigmoid(2 * x) * 2 - 1


class CaptionDecoder(nn.Module):
    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = config
        D, E, H, A = config.feature_size, config.embedding_size, config.hidden_size, config.attention_size
        self.project = nn.Linear(config.feature_channels, D)
        self.normalize = nn.LayerNorm(D)  # backbones differ wildly in feature scale; this keeps the LSTM's inputs tame
        self.init_h, self.init_c = nn.Linear(D, H), nn.Linear(D, H)
        self.embedding = nn.Embedding(config.vocab_size, E)
        if config.attention:
            self.key = nn.Linear(D, A)  # applied once per image
            self.query = nn.Linear(H, A)  # applied to h at every word
            self.score = nn.Linear(A, 1)
            self.gate = nn.Linear(H, D)  # the gating scalar beta, one per feature channel
        self.cell = nn.LSTMCell(E + (D if config.attention else 0), H)
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(H, config.vocab_size)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)

    # ---- per image -------------------------------------------------------------------
    def initial_state(self, features: Tensor) -> State:
        """features (B, C, h, w) -> the state before the first word."""
        # The per-location projection as a 1x1 convolution on the (B, C, h, w) map: the same
        # weights as the Linear, without first transposing the large map (3x faster on CPU).
        projected = F.conv2d(features, self.project.weight[:, :, None, None], self.project.bias)  # (B, D, h, w)
        annotations = self.dropout(self.normalize(projected.flatten(2).permute(2, 0, 1)))  # (N, B, D)
        mean = annotations.mean(0)  # (B, D)
        h, c = torch.tanh(self.init_h(mean))[None], torch.tanh(self.init_c(mean))[None]  # (1, B, H)
        keys = self.key(annotations) if self.config.attention else annotations[:, :, :0]  # (N, B, A) or (N, B, 0)
        return h, c, annotations, keys

    # ---- one word ----------------------------------------------------------------------
    def attend(self, h: Tensor, annotations: Tensor, keys: Tensor) -> tuple[Tensor, Tensor]:
        """h (B, H) -> (weights alpha (N, B) summing to 1 over N, gated context (B, D))."""
        energy = self.score(tanh(keys + self.query(h)[None]))[..., 0]  # (N, B)
        alpha = energy.softmax(0)
        context = (alpha[..., None] * annotations).sum(0)  # (B, D)
        return alpha, torch.sigmoid(self.gate(h)) * context

    def forward(self, features: Tensor, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher forcing: features (B, C, h, w), inputs (B, T) = [BOS, w1, ...] -> (logits (B, T, V), alphas (B, T, N))."""
        hidden, alphas, _ = self.run(inputs, self.initial_state(features))
        return self.logits(hidden), alphas

    def run(self, inputs: Tensor, state: State) -> tuple[Tensor, Tensor, State]:
        """Feed inputs (B, T) from state -> (hidden (B, T, H), alphas (B, T, N), the state after the last input)."""
        h, c, annotations, keys = state
        h, c = h[0], c[0]  # (B, H)
        embedded = self.dropout(self.embedding(inputs))  # (B, T, E)
        outputs, weights = [], []
        for t in range(inputs.size(1)):
            x = embedded[:, t]
            if self.config.attention:
                alpha, context = self.attend(h, annotations, keys)
                weights.append(alpha.t())  # (B, N)
                x = torch.cat([x, context], 1)
            h, c = self.cell(x, (h, c))
            outputs.append(h)
        hidden = torch.stack(outputs, 1)  # (B, T, H)
        alphas = torch.stack(weights, 1) if weights else hidden.new_zeros(*inputs.shape, 0)  # (B, T, N)
        return hidden, alphas, (h[None], c[None], annotations, keys)

    def logits(self, hidden: Tensor) -> Tensor:
        return self.output(self.dropout(hidden))  # (..., V)

    def stepper(self, make_linear=None) -> "AttentionStep":
        """A fast one-word step over the current weights (inference only; rebuild after training)."""
        from genseq.model import PackedLinear

        return AttentionStep(self, make_linear or PackedLinear)


class AttentionStep:
    """One word for a whole batch: (ids (B,), state) -> (logits (B, V), state), as genseq's engine calls it.

    Each matrix product is built once by make_linear (packed fp32, bf16 or int8,
    from genseq.generation.precision): the LSTM's [W_ih | W_hh] as one product,
    and the attention query and the gate, both read from h, as another. The
    word's share of the gates, embedding(y) W_e^T + b, is a lookup in a (V, 4H)
    table made once, so the product reads only [context; h]. It gives
    CaptionDecoder.run's outputs to 1e-5 in fp32.

    The annotations and keys may hold one row per image while h and c hold
    several (beam search keeps the image's features once for all its beams):
    row r of h goes with image r // (B / images).
    """

    def __init__(self, decoder: CaptionDecoder, make_linear):
        self.attention = decoder.config.attention
        cell, E = decoder.cell, decoder.config.embedding_size
        weight_word, weight_rest = cell.weight_ih[:, :E], cell.weight_ih[:, E:]
        self.word_gates = (decoder.embedding.weight @ weight_word.t() + cell.bias_ih + cell.bias_hh).detach()  # (V, 4H)
        self.cell = make_linear(torch.cat([weight_rest, cell.weight_hh], 1).detach(), torch.zeros_like(cell.bias_ih).detach())
        if self.attention:
            self.attention_size = decoder.config.attention_size
            weight = torch.cat([decoder.query.weight, decoder.gate.weight]).detach()  # (A + D, H)
            self.query_and_gate = make_linear(weight, torch.cat([decoder.query.bias, decoder.gate.bias]).detach())
            self.score_weight = decoder.score.weight.detach()[0]  # (A,)
            self.score_offset = (decoder.score.bias - decoder.score.weight.sum()).detach()
        self.output = make_linear(decoder.output.weight.detach(), decoder.output.bias.detach())

    @torch.inference_mode()
    def __call__(self, ids: Tensor, state: State) -> tuple[Tensor, State]:
        state = self.advance(ids, state)
        return self.output(state[0][0]), state

    def advance(self, ids: Tensor, state: State) -> State:
        """The state after reading ids (B,), without the logits."""
        h, c, annotations, keys = state
        h, c = h[0], c[0]  # (B, H)
        x = torch.cat([self.attend(h, annotations, keys)[1], h], 1) if self.attention else h  # (B, D + H) or (B, H)
        gates = self.cell(x).add_(self.word_gates[ids])  # (B, 4H), PyTorch's order i, f, g, o
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h[None], c[None], annotations, keys

    def attend(self, h: Tensor, annotations: Tensor, keys: Tensor) -> tuple[Tensor, Tensor]:
        """As CaptionDecoder.attend: -> (alpha (N, B), gated context (B, D))."""
        (N, P, A), B = keys.shape, h.size(0)  # P images, B / P rows of h each
        projected = self.query_and_gate(h)  # (B, A + D)
        query, gate = projected[:, :A], projected[:, A:]
        # w . tanh(x) + b = 2 w . sigmoid(2x) - sum(w) + b, in place on the one (N, P, B / P, A) tensor;
        # 2 (keys + query) as 2 query + 2 keys in one pass (doubling is exact: the same bits)
        pre = torch.add(2 * query.view(1, P, B // P, A), keys[:, :, None], alpha=2).sigmoid_()  # (N, P, B / P, A)
        energy = (pre @ self.score_weight).mul_(2).add_(self.score_offset)  # (N, P, B / P)
        alpha = energy.softmax(0)
        # sum_i alpha_i a_i as P (B / P x N) @ (N x D) products: one pass over each image's annotations
        context = torch.bmm(alpha.permute(1, 2, 0), annotations.transpose(0, 1)).view(B, -1)  # (B, D)
        return alpha.view(N, B), torch.sigmoid(gate) * context


class BoundDecoder:
    """The decoder bound to a batch of images: a genseq.generation.DecodableModel.

    encode() runs the prompt ([BOS]) from each image's initial state; stepper()
    advances every row by one word. The image features live in the state, so
    when the engine repeats rows for beams or drops finished ones, they follow.
    """

    # The annotations and keys (state[2:]) are the image's, the same for all its beams, and the
    # step passes them on unchanged: beam search keeps them at one row per image.
    prompt_state = (2, 3)

    def __init__(self, decoder: CaptionDecoder, features: Tensor):
        self.decoder, self.features = decoder, features  # features (P, C, h, w)

    @property
    def network(self) -> CaptionDecoder:
        # A BoundDecoder lives for one batch of images; the engine keeps its built and measured steps per
        # network, and the step reads only the decoder's weights, so they are built once, not every batch.
        return self.decoder

    def encode(self, ids: Tensor, state: State | None = None, lengths: Tensor | None = None) -> tuple[Tensor, State]:
        """ids (P, T), one row per image -> (hidden (P, T, H), state after the last id), from state or each image's own."""
        if lengths is not None:
            raise ConfigError("caption prompts must all have the same length")
        state = self.decoder.initial_state(self.features) if state is None else state
        if ids.size(1) == 1 and not (torch.is_grad_enabled() or self.decoder.training):  # the usual [BOS]: one fused step
            from genseq.generation import decoding_step

            state = decoding_step(self, "fp32").advance(ids[:, 0], state)
            return state[0][0][:, None], state
        hidden, _, state = self.decoder.run(ids, state)
        return hidden, state

    def logits(self, hidden: Tensor) -> Tensor:
        return self.decoder.logits(hidden)

    def stepper(self, make_linear=None) -> AttentionStep:
        return self.decoder.stepper(make_linear)
