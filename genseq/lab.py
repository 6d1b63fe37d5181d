"""Vanishing and exploding gradients, measured: RNN, GRU and LSTM side by side.

Two experiments, both on small freshly built models:

1. Gradient against distance. A sequence of `length` random symbols goes
   through an embedding and one recurrent layer; the loss is the cross-entropy
   of a prediction made from the last hidden state. gradient_norms() gives
   ||d loss / d x_t|| for each input x_t, listed by distance from the end. A
   plain tanh RNN multiplies by W_hh and by tanh' at every step back, so its
   gradient shrinks (or grows) geometrically; the LSTM's cell path is
   multiplied by the forget gates alone (Hochreiter & Schmidhuber 1997).

2. Recall after distractors. The first symbol of a sequence is one of `keys`
   symbols; N distractor symbols follow; the model must name the first symbol
   after the last one (chance: 1 / keys). Each cell type trains for the same
   number of Adam steps, with and without gradient-norm clipping (Pascanu et
   al. 2013), and is scored on fresh sequences, for each N; the largest
   gradient norm of each run is kept, to show whether clipping ever acted.
   The "trained" model of experiment 1 is each cell's clipped model of the
   longest N it learned (accuracy at least 0.5), else of the shortest N. The LSTM's forget-gate bias starts at 1, as in
   genseq's language model (Jozefowicz et al. 2015).

Everything is seeded: the same settings give the same figures.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ConfigError
from .figures import png_bytes, pyplot
from .memory import FLOAT_BYTES, TRAINING_COPIES, check_fits, recurrent_activations, recurrent_parameters
from .model import open_forget_gates

CELL_TYPES = ("rnn", "gru", "lstm")
RECURRENT = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
PROBE_SIZE = 64  # sequences of the gradient measurement
SEED_LIMIT = 2**32  # each run seeds torch with seed * 1000 + ..., which must stay below 2**64


@dataclass
class LabConfig:
    cells: tuple[str, ...] = CELL_TYPES
    length: int = 200  # sequence length of the gradient measurement
    distractors: tuple[int, ...] = (5, 10, 20, 40, 80)  # N of the recall task
    steps: int = 600  # training steps per model
    batch_size: int = 32
    hidden_size: int = 32
    keys: int = 8  # symbols to recall; chance is 1 / keys
    distractor_symbols: int = 8
    lr: float = 1e-2  # Adam
    clip: float = 1.0  # the gradient-norm bound of the clipped runs
    test_size: int = 512
    seed: int = 0

    def __post_init__(self):
        unknown = [cell for cell in self.cells if cell not in CELL_TYPES]
        if unknown or not self.cells:
            raise ConfigError(f"cells must be among {', '.join(CELL_TYPES)}, not {', '.join(unknown) or 'none'}")
        for name in ("length", "steps", "batch_size", "hidden_size", "keys", "distractor_symbols", "test_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not self.distractors or min(self.distractors) < 1:
            raise ConfigError("distractor counts must be at least 1")
        if not (0 < self.lr < math.inf and 0 < self.clip < math.inf):
            raise ConfigError(f"lr and clip must be positive finite numbers, not {self.lr} and {self.clip}")
        if not 0 <= self.seed < SEED_LIMIT:
            raise ConfigError(f"seed must be in [0, 2**32), not {self.seed}")

    def needed_bytes(self) -> int:
        """A lower bound on the memory of the largest step: one cell's gradient measurement over `length` steps,
        training on the longest recall sequences, or scoring them; the widest cell decides."""
        cell = max(self.cells, key=lambda name: CELL_TYPES.index(name))  # rnn < gru < lstm in gates
        longest = 1 + max(self.distractors)
        parameters = recurrent_parameters(cell, self.hidden_size, self.hidden_size, 1)
        values = max(
            recurrent_activations(cell, PROBE_SIZE, self.length, self.hidden_size, 1) * 2,  # forward and its gradient
            recurrent_activations(cell, self.batch_size, longest, self.hidden_size, 1) * 2,
            recurrent_activations(cell, self.test_size, longest, self.hidden_size, 1),
        )
        return FLOAT_BYTES * (TRAINING_COPIES * parameters + values)


class RecallModel(nn.Module):
    """Embedding -> one recurrent layer -> a linear read-out of the last hidden state."""

    def __init__(self, cell: str, vocab_size: int, hidden_size: int, classes: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden_size)
        self.core = RECURRENT[cell](hidden_size, hidden_size, batch_first=True)
        self.readout = nn.Linear(hidden_size, classes)
        if cell == "lstm":
            open_forget_gates(self.core)

    def forward_embedded(self, x: Tensor) -> Tensor:
        """x (B, T, E) -> logits (B, classes) from the last step."""
        output, _ = self.core(x)
        return self.readout(output[:, -1])

    def forward(self, ids: Tensor) -> Tensor:
        return self.forward_embedded(self.embedding(ids))


def recall_batch(size: int, distractors: int, keys: int, distractor_symbols: int,
                 generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(inputs (size, 1 + distractors), targets (size,)): a key in [0, keys), then symbols in [keys, keys + distractor_symbols)."""
    targets = torch.randint(keys, (size,), generator=generator)
    noise = torch.randint(keys, keys + distractor_symbols, (size, distractors), generator=generator)
    return torch.cat([targets[:, None], noise], 1), targets


def gradient_norms(model: RecallModel, inputs: Tensor, targets: Tensor) -> list[float]:
    """||d loss / d x_t||, the embedded inputs' gradient norms averaged over the batch, from the last step back."""
    x = model.embedding(inputs).detach().requires_grad_(True)  # (B, T, E)
    loss = F.cross_entropy(model.forward_embedded(x), targets)
    (gradient,) = torch.autograd.grad(loss, x)
    norms = gradient.norm(dim=2).mean(0)  # (T,)
    return norms.flip(0).tolist()


def train_recall(cell: str, distractors: int, config: LabConfig, clip: bool) -> tuple[RecallModel, float, float]:
    """One model trained on the recall task -> (model, accuracy on fresh sequences, largest gradient norm;
    an infinite norm: it diverged and stopped)."""
    seed = config.seed * 1000 + CELL_TYPES.index(cell) * 100 + distractors
    torch.manual_seed(seed)
    data = torch.Generator().manual_seed(seed)
    vocab = config.keys + config.distractor_symbols
    model = RecallModel(cell, vocab, config.hidden_size, config.keys)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    largest = 0.0
    for _ in range(config.steps):
        inputs, targets = recall_batch(config.batch_size, distractors, config.keys, config.distractor_symbols, data)
        loss = F.cross_entropy(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        norm = nn.utils.clip_grad_norm_(model.parameters(), config.clip if clip else math.inf).item()
        largest = max(largest, norm)
        if not (math.isfinite(loss.item()) and math.isfinite(norm)):
            largest = math.inf
            break
        optimizer.step()
    test = torch.Generator().manual_seed(seed + 1)
    inputs, targets = recall_batch(config.test_size, distractors, config.keys, config.distractor_symbols, test)
    with torch.no_grad():
        logits = model(inputs)
    diverged = not math.isfinite(largest) or not torch.isfinite(logits).all()
    accuracy = 0.0 if diverged else (logits.argmax(1) == targets).float().mean().item()
    return model, accuracy, largest


@dataclass
class LabResult:
    config: LabConfig
    gradients: dict = field(default_factory=dict)  # cell -> {"fresh": [...], "trained": [...], "trained_at": N}
    recall: dict = field(default_factory=dict)  # cell -> {"clipped": {N: accuracy}, "unclipped": {N: accuracy}}
    largest_norm: dict = field(default_factory=dict)  # cell -> {"clipped": {N: norm}, "unclipped": {N: norm}}

    def to_json(self) -> dict:
        def keyed(table):
            return {cell: {kind: {str(n): v if math.isfinite(v) else None for n, v in runs.items()}
                           for kind, runs in kinds.items()} for cell, kinds in table.items()}

        return {"config": asdict(self.config), "gradients": self.gradients, "recall": keyed(self.recall),
                "largest_gradient_norm": keyed(self.largest_norm), "chance": 1 / self.config.keys}


def run_lab(config: LabConfig, progress=None) -> LabResult:
    """Both experiments for every cell type; progress(message) is told of each training run."""
    check_fits(config.needed_bytes(), f"the lab with hidden size {config.hidden_size}, length {config.length} and "
               f"{max(config.distractors)} distractors", "use smaller --hidden-size, --length or --distractors")
    result = LabResult(config)
    probe = torch.Generator().manual_seed(config.seed + 7)
    inputs, targets = recall_batch(PROBE_SIZE, config.length - 1, config.keys, config.distractor_symbols, probe)
    for cell in config.cells:
        torch.manual_seed(config.seed)
        fresh = RecallModel(cell, config.keys + config.distractor_symbols, config.hidden_size, config.keys)
        result.recall[cell] = {"clipped": {}, "unclipped": {}}
        result.largest_norm[cell] = {"clipped": {}, "unclipped": {}}
        trained = {}
        for n in sorted(config.distractors):
            for clip in (True, False):
                kind = "clipped" if clip else "unclipped"
                if progress:
                    progress(f"{cell}, {n} distractors, {kind}")
                model, accuracy, largest = train_recall(cell, n, config, clip)
                result.recall[cell][kind][n], result.largest_norm[cell][kind][n] = accuracy, largest
                if clip and (accuracy >= 0.5 or not trained):
                    trained = {"model": model, "distractors": n}
        result.gradients[cell] = {"fresh": gradient_norms(fresh, inputs, targets),
                                  "trained": gradient_norms(trained["model"], inputs, targets),
                                  "trained_at": trained["distractors"]}
    return result


def lab_png(result: LabResult) -> bytes:
    """Left: gradient norm against distance from the end (log scale); right: recall accuracy against N."""
    plt = pyplot()

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    for index, (cell, norms) in enumerate(result.gradients.items()):
        colour = f"C{index}"
        left.semilogy(norms["fresh"], color=colour, label=f"{cell}, freshly initialised")
        left.semilogy(norms["trained"], color=colour, linestyle="--", label=f"{cell}, trained (N = {norms['trained_at']})")
    left.set(xlabel="distance from the last step (t' = T - t)", ylabel="||d loss / d x_t|| (mean over 64 sequences)",
             title=f"gradient reaching each input, length {result.config.length}")
    left.legend(fontsize=8)
    for index, (cell, kinds) in enumerate(result.recall.items()):
        colour = f"C{index}"
        counts = sorted(kinds["clipped"])
        right.plot(counts, [kinds["clipped"][n] for n in counts], "o-", color=colour, label=f"{cell}, clipped")
        right.plot(counts, [kinds["unclipped"][n] for n in counts], "x--", color=colour, label=f"{cell}, not clipped")
    right.axhline(1 / result.config.keys, color="grey", linewidth=0.8, linestyle=":", label="chance")
    right.set_xscale("log")
    counts = sorted(result.config.distractors)
    right.set_xticks(counts, [str(n) for n in counts])
    right.minorticks_off()
    right.set(xlabel="distractors N between the key and the question", ylabel="accuracy", ylim=(0, 1.05),
              title=f"recall the first symbol ({result.config.steps} Adam steps each)")
    right.legend(fontsize=8)
    return png_bytes(figure, dpi=90)
