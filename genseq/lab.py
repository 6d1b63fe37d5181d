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

lab_runs() goes one training run at a time, so a front end can show progress
and stop between runs; estimate_seconds() says beforehand how long the
settings take on this machine, from a step's cost measured here (step_costs).
Both run torch on one thread (one_thread). Everything is seeded: the same
settings give the same figures.
"""

from __future__ import annotations

import math
import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ConfigError
from .figures import BADGE_MARGIN, png_bytes, readable
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
        self.cells = tuple(dict.fromkeys(self.cells))  # each cell once, in the order given
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

    @property
    def counts(self) -> tuple[int, ...]:
        """The distinct N of the recall task, smallest first."""
        return tuple(sorted(set(self.distractors)))

    @property
    def runs(self) -> int:
        """Training runs of the recall task: one clipped and one not, per cell and N."""
        return 2 * len(self.cells) * len(self.counts)

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


@contextmanager
def one_thread():
    """torch on one thread while the block runs, then as before. The lab's models are too small to gain from more,
    and on a busy machine threads that wait on each other made the same run 10 times slower
    (benchmarks/bench_lab_estimate.py). torch's count is the process's: a thread started meanwhile gets one too."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def training_step(model: RecallModel, optimizer: torch.optim.Optimizer, inputs: Tensor, targets: Tensor,
                  clip: float) -> float:
    """One Adam step on a batch -> the gradient norm before clipping at clip; an infinite norm: the loss or the
    gradient diverged and the step was not taken."""
    loss = F.cross_entropy(model(inputs), targets)
    optimizer.zero_grad()
    loss.backward()
    norm = nn.utils.clip_grad_norm_(model.parameters(), clip).item()
    if not (math.isfinite(loss.item()) and math.isfinite(norm)):
        return math.inf
    optimizer.step()
    return norm


def train_recall(cell: str, distractors: int, config: LabConfig, clip: bool) -> tuple[RecallModel, float, float]:
    """One model trained on the recall task -> (model, accuracy on fresh sequences, largest gradient norm;
    an infinite norm: it diverged and stopped)."""
    seed = config.seed * 1000 + CELL_TYPES.index(cell) * 100 + distractors
    torch.manual_seed(seed)
    data = torch.Generator().manual_seed(seed)
    model = RecallModel(cell, config.keys + config.distractor_symbols, config.hidden_size, config.keys)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    largest = 0.0
    for _ in range(config.steps):
        inputs, targets = recall_batch(config.batch_size, distractors, config.keys, config.distractor_symbols, data)
        largest = max(largest, training_step(model, optimizer, inputs, targets, config.clip if clip else math.inf))
        if not math.isfinite(largest):
            break
    test = torch.Generator().manual_seed(seed + 1)
    inputs, targets = recall_batch(config.test_size, distractors, config.keys, config.distractor_symbols, test)
    with torch.no_grad():
        logits = model(inputs)
    diverged = not math.isfinite(largest) or not torch.isfinite(logits).all()
    accuracy = 0.0 if diverged else (logits.argmax(1) == targets).float().mean().item()
    return model, accuracy, largest


# ---- how long the lab takes here ------------------------------------------------------------------------------
# A training step's time grows with the sequence length T: fixed + per_position * T. Timing a few steps at two
# lengths on this machine, just before a run, gives both at the machine's present load; the rest is arithmetic on
# the settings.
PROBE_STEPS = 5  # timed training steps per length
PROBE_LENGTHS = (2, 34)
FORWARD_SHARE = 1 / 3  # a forward pass alone costs about a third of a training step (forward, backward, update)


@dataclass(frozen=True)
class StepCost:
    """Seconds of one training step on a batch of sequences of length T: fixed + per_position * T."""

    fixed: float
    per_position: float

    def seconds(self, length: int) -> float:
        return self.fixed + self.per_position * length



def estimate_seconds(config: LabConfig, costs: dict[str, StepCost]) -> float:
    """The lab's running time from each cell's StepCost: every recall run's training and its scoring of test_size
    sequences (forward only), and each cell's two gradient measurements over PROBE_SIZE sequences of `length`."""
    scoring = FORWARD_SHARE * config.test_size / config.batch_size  # in training steps
    measuring = 2 * PROBE_SIZE / config.batch_size
    total = 0.0
    for cell in config.cells:
        cost = costs[cell]
        total += sum(2 * (config.steps + scoring) * cost.seconds(1 + n) for n in config.counts)
        total += measuring * cost.seconds(config.length)
    return total


def step_costs(config: LabConfig) -> dict[str, StepCost]:
    """Each of config's cells' StepCost at its hidden and batch size, measured now on this machine, on one thread
    as the lab runs."""
    with one_thread():
        return {cell: measure_step_cost(cell, config) for cell in config.cells}


def measure_step_cost(cell: str, config: LabConfig) -> StepCost:
    """A cell's StepCost from PROBE_STEPS timed training steps at each of PROBE_LENGTHS: a tenth of a second on
    an idle machine, once torch has run its first step in the process."""
    (short, long), (low, high) = [_seconds_per_step(cell, config, length) for length in PROBE_LENGTHS], PROBE_LENGTHS
    per_position = max(0.0, (long - short) / (high - low))
    return StepCost(max(0.0, short - per_position * low), per_position)


def _seconds_per_step(cell: str, config: LabConfig, length: int) -> float:
    """The median of PROBE_STEPS timed training steps: a busy machine's slowest steps do not make the estimate."""
    with torch.random.fork_rng(devices=[]):  # the lab's own runs seed themselves; the probe leaves no trace
        torch.manual_seed(0)
        model = RecallModel(cell, config.keys + config.distractor_symbols, config.hidden_size, config.keys)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        data = torch.Generator().manual_seed(0)
        batches = [recall_batch(config.batch_size, length - 1, config.keys, config.distractor_symbols, data)
                   for _ in range(PROBE_STEPS + 1)]
        training_step(model, optimizer, *batches[0], config.clip)  # the first step allocates: untimed
        times = []
        for inputs, targets in batches[1:]:
            start = time.perf_counter()
            training_step(model, optimizer, inputs, targets, config.clip)
            times.append(time.perf_counter() - start)
        return statistics.median(times)


def duration_text(seconds: float) -> str:
    """"40 s", "3 min 20 s": a duration as a person reads it, to the second below two minutes, else to ten seconds."""
    if seconds < 120:
        return f"{max(1, round(seconds))} s"
    minutes, rest = divmod(round(seconds / 10) * 10, 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def norm_text(value: float) -> str:
    """A gradient norm in a table: "inf" when training diverged, one decimal below 100, else its order."""
    return "inf" if not math.isfinite(value) else f"{value:.1f}" if value < 100 else f"{value:.0e}"


# ---- the experiments ------------------------------------------------------------------------------------------
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


@dataclass(frozen=True)
class LabRun:
    """One finished training run of the recall experiment, as lab_runs reports it."""

    number: int  # from 1
    total: int  # LabConfig.runs
    cell: str
    distractors: int
    clipped: bool
    accuracy: float
    largest_norm: float

    def describe(self) -> str:
        clipping = "clipped" if self.clipped else "not clipped"
        return f"{self.cell}, N = {self.distractors}, {clipping}: accuracy {self.accuracy:.2f}"


def lab_runs(config: LabConfig) -> Iterator[tuple[LabRun, LabResult]]:
    """Both experiments for every cell type, one training run at a time: after each, the run and the result so far
    (one LabResult, filled in as the runs finish; a cell's gradients come with its last run). Closing the
    iterator between runs stops the lab there. torch runs on one thread until it ends (one_thread)."""
    check_fits(config.needed_bytes(), f"the lab with hidden size {config.hidden_size}, length {config.length} and "
               f"{max(config.distractors)} distractors", "use smaller --hidden-size, --length or --distractors")
    with one_thread():
        yield from _runs(config)


def _runs(config: LabConfig) -> Iterator[tuple[LabRun, LabResult]]:
    result = LabResult(config)
    probe = torch.Generator().manual_seed(config.seed + 7)
    inputs, targets = recall_batch(PROBE_SIZE, config.length - 1, config.keys, config.distractor_symbols, probe)
    number = 0
    for cell in config.cells:
        torch.manual_seed(config.seed)
        fresh = RecallModel(cell, config.keys + config.distractor_symbols, config.hidden_size, config.keys)
        result.recall[cell] = {"clipped": {}, "unclipped": {}}
        result.largest_norm[cell] = {"clipped": {}, "unclipped": {}}
        trained = {}
        for n in config.counts:
            for clip in (True, False):
                kind = "clipped" if clip else "unclipped"
                model, accuracy, largest = train_recall(cell, n, config, clip)
                result.recall[cell][kind][n], result.largest_norm[cell][kind][n] = accuracy, largest
                if clip and (accuracy >= 0.5 or not trained):
                    trained = {"model": model, "distractors": n}
                if n == config.counts[-1] and not clip:
                    result.gradients[cell] = {"fresh": gradient_norms(fresh, inputs, targets),
                                              "trained": gradient_norms(trained["model"], inputs, targets),
                                              "trained_at": trained["distractors"]}
                number += 1
                yield LabRun(number, config.runs, cell, n, clip, accuracy, largest), result


def run_lab(config: LabConfig) -> LabResult:
    """Both experiments for every cell type, to the end (lab_runs reports each run as it finishes)."""
    for _, result in lab_runs(config):
        pass
    return result


def lab_png(result: LabResult) -> bytes:
    """Above: gradient norm against distance from the end (log scale); below: recall accuracy against N. Either
    may be partial: the runs finished so far. Titles are left to the text around the picture."""
    with readable() as plt:
        figure, (above, below) = plt.subplots(2, 1, figsize=(8, 9.5))
        _draw_gradients(above, result)
        _draw_recall(below, result)
        return png_bytes(figure, dpi=100, top_margin=BADGE_MARGIN)


def _draw_gradients(axis, result: LabResult) -> None:
    for cell, norms in result.gradients.items():
        colour = f"C{CELL_TYPES.index(cell)}"
        axis.semilogy(norms["fresh"], color=colour, label=f"{cell}, fresh")
        axis.semilogy(norms["trained"], color=colour, linestyle="--", label=f"{cell}, trained (N = {norms['trained_at']})")
    axis.set(xlabel=f"distance from the last of {result.config.length} steps (T - t)",
             ylabel="gradient ||d loss / d x_t||")
    axis.set_xlim(0, result.config.length - 1)
    _legend(axis, columns=3)


def _draw_recall(axis, result: LabResult) -> None:
    for kind, style, words in (("clipped", "o-", "clipped"), ("unclipped", "x--", "not clipped")):
        for cell, kinds in result.recall.items():  # clipped runs first: the legend's first column
            counts = sorted(kinds[kind])
            if counts:
                axis.plot(counts, [kinds[kind][n] for n in counts], style, color=f"C{CELL_TYPES.index(cell)}",
                          label=f"{cell}, {words}")
    chance = 1 / result.config.keys
    axis.axhline(chance, color="grey", linewidth=1, linestyle=":")
    axis.set_xscale("log")
    counts = result.config.counts
    axis.set_xticks(counts, [str(n) for n in counts])
    axis.minorticks_off()
    axis.set_xlim(counts[0] / 1.3, counts[-1] * 1.3)
    axis.set(xlabel="distractors N between the key and the question",
             ylabel=f"recall accuracy (chance {chance:.3g}: dotted)", ylim=(0, 1.05))
    _legend(axis, columns=2)


def _legend(axis, columns: int) -> None:
    """The legend under the plot, where it covers no curve; none before there is anything to name."""
    if axis.get_legend_handles_labels()[0]:
        axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=columns, frameon=False)
