"""The recurrent language model: one config dataclass, the model, and its fused decoding step.

    ids (B, T) -> embedding (B, T, E) -> N-layer LSTM | GRU | RNN (B, T, H)
               -> optional projection (B, T, P) -> output layer (B, T, V)

The recurrent state is always a tuple of (L, B, H) tensors, (h, c) for an LSTM
and (h,) otherwise, and is passed in and returned explicitly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from .errors import ConfigError

State = tuple[Tensor, ...]
CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


@dataclass
class ModelConfig:
    vocab_size: int = 8000
    cell: str = "lstm"
    embedding_size: int = 256
    hidden_size: int = 512
    num_layers: int = 2
    projection_size: int = 0  # 0: no projection between the core and the output layer
    embedding_dropout: float = 0.1
    layer_dropout: float = 0.2  # between recurrent layers
    output_dropout: float = 0.2
    tie_weights: bool = False

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ConfigError(f"cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        for name in ("vocab_size", "embedding_size", "hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.projection_size < 0:
            raise ConfigError(f"projection_size must be 0 (none) or positive, not {self.projection_size}")
        for name in ("embedding_dropout", "layer_dropout", "output_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), not {getattr(self, name)}")
        if self.tie_weights and self.output_input_size != self.embedding_size:
            raise ConfigError(
                f"tied weights need the output layer's input ({self.output_input_size}) to equal the "
                f"embedding size ({self.embedding_size}); set --projection-size {self.embedding_size} "
                "or make the sizes equal"
            )

    @property
    def output_input_size(self) -> int:
        return self.projection_size or self.hidden_size

    def to_dict(self) -> dict:
        return asdict(self)


class LanguageModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size)
        self.core = CELLS[config.cell](
            config.embedding_size,
            config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.layer_dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.projection = (
            nn.Linear(config.hidden_size, config.projection_size) if config.projection_size else None
        )
        self.output = nn.Linear(config.output_input_size, config.vocab_size)
        if config.tie_weights:
            self.output.weight = self.embedding.weight
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.output_dropout = nn.Dropout(config.output_dropout)
        self._init_weights()

    def _init_weights(self):
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.zeros_(self.output.bias)
        if self.config.cell == "lstm":
            open_forget_gates(self.core)

    # ---- state ----------------------------------------------------------
    def initial_state(self, batch_size: int) -> State:
        weight = self.embedding.weight
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
        count = 2 if self.config.cell == "lstm" else 1
        return tuple(weight.new_zeros(shape) for _ in range(count))

    def _pack_state(self, state: State):
        return state if self.config.cell == "lstm" else state[0]

    def _unpack_state(self, state) -> State:
        return tuple(state) if self.config.cell == "lstm" else (state,)

    # ---- full-sequence path (training, prompts, evaluation) -------------
    def encode(self, ids: Tensor, state: State | None = None, lengths: Tensor | None = None):
        """Run the core over ids (B, T); returns features (B, T, P or H) and the new state.

        With lengths, ids are right-padded and each row's returned state is the one
        after its own last real token.
        """
        if state is None:
            state = self.initial_state(ids.size(0))
        x = self.embedding_dropout(self.embedding(ids))  # (B, T, E)
        if lengths is not None:
            x = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, new_state = self.core(x, self._pack_state(state))
        if lengths is not None:
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=ids.size(1))
        if self.projection is not None:
            out = self.projection(out)  # (B, T, P)
        return out, self._unpack_state(new_state)

    def logits(self, features: Tensor) -> Tensor:
        return self.output(self.output_dropout(features))  # (..., V)

    def forward(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        features, state = self.encode(ids, state)
        return self.logits(features), state

    # ---- incremental decoding (genseq.generation.DecodableModel) ----------
    prompt_state = ()  # every state entry follows its sequence

    @property
    def network(self) -> "LanguageModel":
        return self

    def stepper(self, make_linear: "Callable[[Tensor, Tensor], Callable[[Tensor], Tensor]] | None" = None) -> "FusedStep":
        """A fast one-token step over the current weights (inference only; rebuild after training).

        make_linear(weight (out, in), bias) builds each matrix product of the step;
        the default is PackedLinear (fp32). Lower-precision kinds plug in here.
        """
        return FusedStep(self, make_linear or PackedLinear)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class PackedLinear:
    """x (B, in) -> x W^T + b (B, out), with W packed once for the fastest kernel at hand.

    On CPU the weight is reordered into oneDNN's blocked layout: for the few rows
    of a decoding step that is 2-3x faster than addmm on MKL, with the same result
    to ~1e-7. Elsewhere (GPU, a build without oneDNN) it is one addmm.
    """

    def __init__(self, weight: Tensor, bias: Tensor):
        self.bias = bias
        self.packed = _onednn_packed(weight)
        self.weight = weight.t().contiguous() if self.packed is None else None  # (in, out) for addmm

    def __call__(self, x: Tensor) -> Tensor:
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        return torch.addmm(self.bias, x, self.weight)


def _onednn_packed(weight: Tensor) -> Tensor | None:
    if weight.device.type != "cpu" or weight.dtype not in (torch.float32, torch.bfloat16):
        return None
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._reorder_linear_weight(weight.contiguous())
    except (AttributeError, RuntimeError):  # a oneDNN build without the op: addmm it is
        return None


class FusedStep:
    """One decoding step for a whole batch: (ids (B,), state) -> (logits (B, V), state).

    Calling nn.LSTM for a single time step pays its per-call overhead every
    token; here each layer's [W_ih | W_hh] is packed once so a step is one
    matrix product per layer plus the gate arithmetic, and it gives nn.LSTM's
    outputs to 1e-6. make_linear builds those products (see PackedLinear).
    """

    def __init__(self, model: LanguageModel, make_linear=PackedLinear):
        config = model.config
        self.cell = config.cell
        self.embedding = model.embedding.weight.detach()
        self.layers = []
        for layer in range(config.num_layers):
            w_ih, w_hh, b_ih, b_hh = layer_weights(model.core, layer)
            if self.cell == "gru":  # the candidate gate applies r to W_hh h only, so keep them apart
                self.layers.append((make_linear(w_ih, b_ih), make_linear(w_hh, b_hh)))
            else:
                self.layers.append(make_linear(torch.cat([w_ih, w_hh], 1), b_ih + b_hh))
        self.projection = (
            make_linear(model.projection.weight.detach(), model.projection.bias.detach())
            if model.projection is not None
            else None
        )
        self.output = make_linear(model.output.weight.detach(), model.output.bias.detach())

    @torch.inference_mode()
    def __call__(self, ids: Tensor, state: State) -> tuple[Tensor, State]:
        x = self.embedding[ids]  # (B, E)
        new_h, new_c = [], []
        for layer, linear in enumerate(self.layers):
            h = state[0][layer]
            if self.cell == "lstm":
                x, c = _lstm_cell(x, h, state[1][layer], linear)
                new_c.append(c)
            elif self.cell == "gru":
                x = _gru_cell(x, h, *linear)
            else:
                x = torch.tanh(linear(torch.cat([x, h], 1)))
            new_h.append(x)
        if self.projection is not None:
            x = self.projection(x)  # (B, P)
        logits = self.output(x)  # (B, V)
        state = (torch.stack(new_h), torch.stack(new_c)) if new_c else (torch.stack(new_h),)
        return logits, state


def layer_weights(core: nn.Module, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(W_ih, W_hh, b_ih, b_hh) of one layer of an nn.LSTM, nn.GRU or nn.RNN, detached."""
    return tuple(getattr(core, f"{name}_l{layer}").detach() for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def _lstm_cell(x, h, c, linear):
    return lstm_gates(linear(torch.cat([x, h], 1)), c)


def lstm_gates(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """h and c after one LSTM step from its summed gate pre-activations (B, 4H), PyTorch's order i, f, g, o."""
    i, f, g, o = gates.chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _gru_cell(x, h, input_linear, hidden_linear):
    gi = input_linear(x)  # (B, 3H), PyTorch's order r, z, n
    gh = hidden_linear(h)
    i_r, i_z, i_n = gi.chunk(3, 1)
    h_r, h_z, h_n = gh.chunk(3, 1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


def open_forget_gates(lstm: nn.LSTM) -> None:
    """Start every layer's forget-gate bias at 1 (b_ih) + 0 (b_hh): the cell keeps most of itself, so
    gradients flow through it early in training (Jozefowicz et al. 2015)."""
    H = lstm.hidden_size
    for name, bias in lstm.named_parameters():
        if name.startswith("bias_ih"):
            bias.data[H : 2 * H].fill_(1.0)
        elif name.startswith("bias_hh"):
            bias.data[H : 2 * H].fill_(0.0)


def detach_state(state: State) -> State:
    """Cut the graph between BPTT windows while keeping the values."""
    return tuple(s.detach() for s in state)


def with_vocabulary(model: LanguageModel, vocab_size: int) -> LanguageModel:
    """model with vocab_size ids, the ones it has keeping their weights (a tokenizer that gained pieces).

    Each new id's embedding, output row and output bias start at the mean of the existing ones: an
    average token, which the model's layers already know what to do with, where a random row would
    be a token it has never met.
    """
    grown = vocab_size - model.config.vocab_size
    if grown < 0:
        raise ValueError(f"a vocabulary only grows: {vocab_size} ids for a model of {model.config.vocab_size}")
    if grown == 0:
        return model
    state = model.state_dict()
    for name in ("embedding.weight", "output.weight", "output.bias"):
        old = state[name]
        state[name] = torch.cat([old, old.mean(dim=0, keepdim=True).expand(grown, *old.shape[1:])])
    larger = LanguageModel(ModelConfig(**{**model.config.to_dict(), "vocab_size": vocab_size}))
    larger.load_state_dict(state)
    return larger.train(model.training)
