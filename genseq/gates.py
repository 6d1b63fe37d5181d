"""Inside an LSTM: the gates, cell candidate, cell state and hidden state at every token of a text.

For a token x_t and the layer's previous (h, c), with PyTorch's nn.LSTM weights:

    i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)     input gate: how much of the candidate to write
    f = sigmoid(W_if x + b_if + W_hf h + b_hf)     forget gate: how much of the old cell to keep
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)        cell candidate
    o = sigmoid(W_io x + b_io + W_ho h + b_ho)     output gate: how much of the cell to show
    c' = f * c + i * g                             cell state
    h' = o * tanh(c')                              hidden state, the next layer's input

inspect_text() runs these equations one token at a time with the model's own
weights (no dropout), so every intermediate value is kept; the outputs equal
nn.LSTM's (tested to 1e-5). It is for looking, not for speed. The pictures
follow Karpathy et al. 2015, "Visualizing and Understanding Recurrent
Networks", and Strobelt et al.'s LSTMVis: tokens x units heat maps and the
traces of the units whose cell state moves most.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import ConfigError
from .figures import png_bytes, pyplot
from .model import LanguageModel
from .tokenizer import Tokenizer

# One heat-map row and one table line per token: past a few hundred the picture is unreadable and the
# step-by-step LSTM slow, so a longer text is read up to this many tokens (what they show is exact:
# an LSTM's state at a token depends only on the tokens before it).
MAX_TOKENS = 300
QUANTITIES = ("input_gate", "forget_gate", "output_gate", "candidate", "cell", "hidden")
TITLES = {"input_gate": "input gate i", "forget_gate": "forget gate f", "output_gate": "output gate o",
          "candidate": "cell candidate g", "cell": "cell state c", "hidden": "hidden state h"}


@dataclass
class Inspection:
    """Per layer and quantity, a (T, H) tensor: row t is the value after reading tokens[t]."""

    tokens: list[str]  # the pieces read, as text
    layers: list[dict[str, Tensor]]
    text_tokens: int = 0  # the text's tokens, more than len(tokens) when only its first ones were read

    def truncation_note(self) -> str | None:
        """A sentence saying that only the text's first tokens were read, or None when all were."""
        if self.text_tokens <= len(self.tokens):
            return None
        return f"the text has {self.text_tokens} tokens; only the first {len(self.tokens)} were read and are shown"

    def moving_units(self, layer: int, count: int = 10) -> list[int]:
        """The units whose cell state changes most over the text (sum of |c_t - c_{t-1}|, from c_0 = 0)."""
        cell = self.layers[layer]["cell"]
        change = torch.cat([cell[:1], cell.diff(dim=0)]).abs().sum(0)  # (H,)
        return change.argsort(descending=True)[:count].tolist()

    def to_json(self, layer: int | None = None, top: int = 10) -> dict:
        chosen = range(len(self.layers)) if layer is None else [layer]
        return {
            "tokens": self.tokens,
            "text_tokens": max(self.text_tokens, len(self.tokens)),
            "layers": [
                {"layer": index, "moving_units": self.moving_units(index, top),
                 **{name: [[round(v, 5) for v in row] for row in self.layers[index][name].tolist()] for name in QUANTITIES}}
                for index in chosen
            ],
        }


@torch.no_grad()
def inspect_text(model: LanguageModel, tokenizer: Tokenizer, text: str, max_tokens: int = MAX_TOKENS) -> Inspection:
    """Read text (after a start-of-document token, as generation does), up to its first max_tokens
    tokens, and record every layer's internals (see Inspection.truncation_note)."""
    if model.config.cell != "lstm":
        raise ConfigError(f"the gate inspector reads LSTMs; this model's cell is {model.config.cell}")
    if max_tokens < 1:
        raise ConfigError(f"max_tokens must be at least 1, not {max_tokens}")
    ids = tokenizer.encode(text)
    if not ids:
        raise ConfigError("there is no text to inspect; type a few words")
    text_tokens, ids = len(ids), ids[:max_tokens]
    x = model.embedding(torch.tensor([tokenizer.eos_id, *ids], device=model.embedding.weight.device))  # (T + 1, E)
    layers = []
    for layer in range(model.config.num_layers):
        record = instrumented_lstm_layer(model.core, layer, x)
        layers.append({name: values[1:].cpu() for name, values in record.items()})  # the start token's row dropped
        x = record["hidden"]
    return Inspection(tokenizer.token_texts(ids), layers, text_tokens)



def instrumented_lstm_layer(lstm: torch.nn.LSTM, layer: int, inputs: Tensor, state: tuple[Tensor, Tensor] | None = None
                            ) -> dict[str, Tensor]:
    """One layer of an nn.LSTM over inputs (T, in), step by step -> each of QUANTITIES as (T, H)."""
    weight_ih, weight_hh = getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}")
    bias = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
    if lstm.proj_size or lstm.bidirectional:
        raise ConfigError("the gate inspector reads one-directional LSTMs without projections")
    hidden_size = weight_hh.size(1)
    h, c = state if state is not None else (inputs.new_zeros(hidden_size), inputs.new_zeros(hidden_size))
    from_inputs = inputs @ weight_ih.t() + bias  # (T, 4H), all tokens at once
    record = {name: [] for name in QUANTITIES}
    for t in range(inputs.size(0)):
        i, f, g, o = (from_inputs[t] + weight_hh @ h).chunk(4)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g
        h = o * torch.tanh(c)
        for name, value in zip(QUANTITIES, (i, f, o, g, c, h)):
            record[name].append(value)
    return {name: torch.stack(values) for name, values in record.items()}


def heatmap_png(inspection: Inspection, layer: int, units: int = 48, traces: int = 6) -> bytes:
    """A PNG: one tokens x units heat map per quantity (the most moving units), and their cell-state traces."""
    plt = pyplot()

    if not 0 <= layer < len(inspection.layers):
        raise ConfigError(f"layer must be between 0 and {len(inspection.layers) - 1}, not {layer}")
    values, tokens = inspection.layers[layer], inspection.tokens
    chosen = inspection.moving_units(layer, units)
    labels = [repr(t)[1:-1] for t in tokens]
    height = max(3.0, 0.22 * len(tokens) + 1.2)
    figure = plt.figure(figsize=(18, 2 * height + 3.2))
    grid = figure.add_gridspec(3, 3, height_ratios=[height, height, 3.2])
    for index, name in enumerate(QUANTITIES):
        axis = figure.add_subplot(grid[index // 3, index % 3])
        signed = name in ("candidate", "cell", "hidden")
        data = values[name][:, chosen].numpy()
        limit = max(float(abs(data).max()), 1e-6) if signed else 1.0
        image = axis.imshow(data, aspect="auto", interpolation="nearest", cmap="RdBu_r" if signed else "viridis",
                            vmin=-limit if signed else 0.0, vmax=limit)
        axis.set_title(f"{TITLES[name]} (layer {layer})", fontsize=10)
        axis.set_yticks(range(len(tokens)), labels, fontsize=7)
        axis.set_xlabel(f"the {len(chosen)} units whose cell moves most", fontsize=8)
        axis.set_xticks(range(len(chosen)), [str(u) for u in chosen], fontsize=5, rotation=90)
        figure.colorbar(image, ax=axis, fraction=0.04)
    trace = figure.add_subplot(grid[2, :])
    for unit in chosen[:traces]:
        trace.plot(values["cell"][:, unit].numpy(), marker=".", label=f"unit {unit}")
    trace.set_xticks(range(len(tokens)), labels, fontsize=7, rotation=60)
    trace.set(ylabel="cell state c", title="cell-state traces of the units that move most")
    trace.legend(fontsize=7, ncol=traces)
    return png_bytes(figure, dpi=80)
