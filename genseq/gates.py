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
from .figures import BADGE_MARGIN, png_bytes, readable
from .model import LanguageModel
from .tokenizer import Tokenizer

# One heat-map row and one table line per token: past a few hundred the picture is unreadable and the
# step-by-step LSTM slow, so a longer text is read up to this many tokens (what they show is exact:
# an LSTM's state at a token depends only on the tokens before it).
MAX_TOKENS = 300
QUANTITIES = ("input_gate", "forget_gate", "output_gate", "candidate", "cell", "hidden")
TITLES = {"input_gate": "input i", "forget_gate": "forget f", "output_gate": "output o", "candidate": "candidate g",
          "cell": "cell c", "hidden": "hidden h"}
# The picture: WIDTH_INCHES at 100 dpi, so that shown in a column about 650 px wide its 11 pt labels stay 11 px
# tall; a token row of ROW_INCHES (its label reads), the maps at least MIN_MAP_INCHES tall (the
# colours of a few tokens stay easy to tell) and at most MAX_MAP_INCHES, so past MAX_LABELS tokens only every
# k-th is named.
WIDTH_INCHES = 9.0
ROW_INCHES = 0.24
MIN_MAP_INCHES = 2.5
MAX_MAP_INCHES = 14.0
MAX_LABELS = 58
TRACE_INCHES = 3.0


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


def heatmap_png(inspection: Inspection, layer: int, units: int = 16, traces: int = 4) -> bytes:
    """A PNG: one tokens x units heat map per quantity, side by side on one token axis (the units whose cell state
    moves most, most first), and below, the cell-state traces of the top few. Titles are left to the text around it."""
    if not 0 <= layer < len(inspection.layers):
        raise ConfigError(f"layer must be between 0 and {len(inspection.layers) - 1}, not {layer}")
    values, chosen = inspection.layers[layer], inspection.moving_units(layer, units)
    positions, labels = token_ticks(inspection.tokens)
    rows = min(max(ROW_INCHES * len(inspection.tokens), MIN_MAP_INCHES), MAX_MAP_INCHES)
    with readable() as plt:
        # Beside the maps and traces: 0.12 inches of colour bars, 2.6 for titles, labels, legend and the top margin.
        figure = plt.figure(figsize=(WIDTH_INCHES, rows + TRACE_INCHES + 2.6), layout="constrained")
        grid = figure.add_gridspec(3, len(QUANTITIES), height_ratios=[rows, 0.12, TRACE_INCHES])
        first = None
        for index, name in enumerate(QUANTITIES):
            axis = figure.add_subplot(grid[0, index], sharey=first)
            first = first or axis
            _heat_map(figure, axis, figure.add_subplot(grid[1, index]), name, values[name][:, chosen].numpy())
            axis.tick_params(labelleft=index == 0)
        first.set_yticks(positions, labels)
        first.set_ylabel("tokens read, in order")
        trace = figure.add_subplot(grid[2, :])
        for unit in chosen[:traces]:
            trace.plot(values["cell"][:, unit].numpy(), marker=".", label=f"unit {unit}")
        trace.set_xticks(positions, labels, rotation=90)
        trace.set_xlim(-0.5, len(inspection.tokens) - 0.5)
        trace.set(ylabel="cell state c")
        trace.legend(loc="upper center", bbox_to_anchor=(0.5, 1.18), ncol=traces, frameon=False)
        return png_bytes(figure, dpi=100, top_margin=BADGE_MARGIN)


def _heat_map(figure, axis, colour_bar, name: str, data) -> None:
    """One quantity's tokens x units map; its scale in a bar beneath: 0 to 1 for gates, symmetric about 0 for the rest."""
    signed = name in ("candidate", "cell", "hidden")
    limit = max(float(abs(data).max()), 1e-6) if signed else 1.0
    image = axis.imshow(data, aspect="auto", interpolation="nearest", cmap="RdBu_r" if signed else "viridis",
                        vmin=-limit if signed else 0.0, vmax=limit)
    axis.set_title(TITLES[name])
    axis.set_xticks([])
    axis.set_xlabel(f"{data.shape[1]} units")
    bar = figure.colorbar(image, cax=colour_bar, orientation="horizontal")
    bar.set_ticks([-limit, 0, limit] if signed else [0, 1], labels=[f"{-limit:.2g}", "0", f"{limit:.2g}"]
                  if signed else ["0", "1"])
    ends = bar.ax.get_xticklabels()
    ends[0].set_horizontalalignment("left")  # each bar's labels stay under it, clear of its neighbours'
    ends[-1].set_horizontalalignment("right")


def token_ticks(tokens: list[str]) -> tuple[list[int], list[str]]:
    """Positions and labels of the tokens to name on an axis: every one, or every k-th when more would overlap;
    newlines and tabs shown as escapes, so an empty-looking label still says what it is."""
    every = max(1, -(-len(tokens) // MAX_LABELS))
    positions = list(range(0, len(tokens), every))
    return positions, [repr(tokens[index])[1:-1] for index in positions]
