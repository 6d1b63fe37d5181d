"""The `gradients` task: genseq.lab's experiments at settings a person can wait for, with progress and Stop.

No input: the options choose the cells, the sequence length of the gradient
measurement, the longest run of distractors and the training steps. The task
streams: first an estimate of the run's time on this machine (from a training
step's cost measured here), then a line per training run with the plots and
the recall table so far, so a front end shows progress and can stop between
runs. Out come the progress log, the two plots, the recall table and every
figure as JSON. `genseq lab gradients` runs the full experiments.
"""

from __future__ import annotations

import time

from genseq.tasks import Option, Output, Task

CELLS = ("rnn", "gru", "lstm")  # genseq.lab.CELL_TYPES, which imports torch
PICTURE_EVERY = 2.0  # seconds between redrawn plots while the lab runs: drawing takes a good part of a second


class GradientsTask(Task):
    name = "gradients"
    description = ("Vanishing and exploding gradients in RNN, GRU and LSTM, measured on small models trained here: "
                   "from under a minute to several, depending on the settings. A run starts with its estimate for "
                   "this machine and shows its progress; Stop ends it.")
    outputs = (
        Output("progress", "text", "the estimate for this machine, then each training run as it finishes"),
        Output("picture", "image", "above: the gradient reaching each input, by distance from the end; "
                                   "below: recall accuracy against the number of distractors N"),
        Output("recall", "table", "recall accuracy after N distractors (in brackets: the largest gradient norm "
                                  "met in training); chance is 1/8"),
        Output("results", "json", "every figure of both experiments"),
    )
    options = (
        Option("cells", CELLS, "the recurrent cells to compare", type=tuple, choices=CELLS),
        Option("length", 100, "sequence length of the gradient measurement", minimum=10, maximum=300),
        Option("longest", 20, "the longest N of distractors (N/4 is run too)", minimum=4, maximum=40),
        Option("steps", 150, "training steps per model", minimum=10, maximum=400),
        Option("seed", 0, "seed of the models and data (below 2**32): the same seed gives the same figures",
               minimum=0, advanced=True),  # no maximum: a number box, not a slider four billion wide
    )
    model_kinds = ()

    def load(self, model_path):
        return None  # every run trains fresh small models

    def predict(self, model, batch, options):
        results = []
        for _ in batch:
            for result in _stream(lab_config(options), pictures=False):
                pass
            results.append(result)
        return results

    def predict_stream(self, model, inputs, options):
        yield from _stream(lab_config(options), pictures=True)

    def to_json(self, batch, results):
        kept = [result["results"] for result in results]
        return kept[0] if len(kept) == 1 else kept


def lab_config(options: dict):
    """The LabConfig of the task's checked options: N at longest and a quarter of it."""
    from genseq.lab import LabConfig

    longest = options["longest"]
    return LabConfig(cells=options["cells"], length=options["length"], distractors=(max(1, longest // 4), longest),
                     steps=options["steps"], seed=options["seed"])


def estimate_line(config) -> str:
    """"About 40 s on this machine: ...", from each cell's training-step cost, measured here and now."""
    from genseq.lab import duration_text, estimate_seconds, step_costs

    seconds = estimate_seconds(config, step_costs(config))
    return (f"About {duration_text(seconds)} on this machine: {config.runs} training runs of {config.steps} steps "
            f"(from the speed of a few steps measured just now).")


def _stream(config, pictures: bool):
    """The task's outputs after the estimate, after each training run and at the end. With pictures, the plots
    are redrawn at most every PICTURE_EVERY seconds while the lab runs, each partial output keeping the last
    one drawn; without, they are drawn once, at the end."""
    from genseq.lab import duration_text, lab_runs

    lines, picture, result = [estimate_line(config)], None, None
    start = drawn = time.perf_counter()  # the estimate is of the training, which starts here
    yield {"progress": lines[0], "recall": recall_table(None, config)}
    for run, result in lab_runs(config):
        lines.append(f"Step {run.number} of {run.total}: {run.describe()} "
                     f"({duration_text(time.perf_counter() - start)} so far)")
        if run.number == run.total:
            continue  # the last run's outputs are the final ones
        if pictures and time.perf_counter() - drawn >= PICTURE_EVERY:
            picture, drawn = _picture(result), time.perf_counter()
        yield {"progress": "\n".join(lines), "picture": picture, "recall": recall_table(result, config)}
    lines.append(f"Finished in {duration_text(time.perf_counter() - start)}.")
    yield {"progress": "\n".join(lines), "picture": _picture(result), "recall": recall_table(result, config),
           "results": result.to_json()}


def _picture(result):
    import io

    from PIL import Image

    from genseq.lab import lab_png

    return Image.open(io.BytesIO(lab_png(result)))


def recall_table(result, config) -> list[dict]:
    """A row per cell and clipping, a column per N: the accuracy and, in brackets, the largest gradient norm met in
    training; "…" for a run still to come (result None: before the first)."""
    from genseq.lab import norm_text

    rows = []
    for cell in config.cells:
        for kind, words in (("clipped", "clipped"), ("unclipped", "not clipped")):
            accuracy = result.recall.get(cell, {}).get(kind, {}) if result else {}
            norms = result.largest_norm.get(cell, {}).get(kind, {}) if result else {}
            rows.append({"cell": cell, "clipping": words, **{
                f"N = {n}": f"{accuracy[n]:.2f} ({norm_text(norms[n])})" if n in accuracy else "…"
                for n in config.counts}})
    return rows
