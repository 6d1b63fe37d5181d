"""The `gradients` task: genseq.lab's experiments at settings that run in seconds.

No input: the options choose the cells, the sequence length of the gradient
measurement, the longest run of distractors and the training steps. Out come
the two plots, a table of recall accuracy and every figure as JSON.
`genseq lab gradients` runs the full experiments.
"""

from __future__ import annotations

from genseq.tasks import Option, Output, Task

CELLS = ("rnn", "gru", "lstm")  # genseq.lab.CELL_TYPES, which imports torch


class GradientsTask(Task):
    name = "gradients"
    description = "Vanishing and exploding gradients in RNN, GRU and LSTM, measured on small models trained in seconds."
    outputs = (
        Output("summary", "text", "recall accuracy after N distractors, clipped and not"),
        Output("picture", "image", "gradient against distance; recall against N"),
        Output("results", "json", "every figure of both experiments"),
    )
    options = (
        Option("cells", CELLS, "the recurrent cells to compare", type=tuple, choices=CELLS),
        Option("length", 100, "sequence length of the gradient measurement", minimum=10, maximum=300),
        Option("longest", 20, "the longest N of distractors (N/4 is run too)", minimum=4, maximum=40),
        Option("steps", 150, "training steps per model", minimum=10, maximum=400),
    )
    model_kinds = ()

    def load(self, model_path):
        return None  # every run trains fresh small models

    def predict(self, model, batch, options):
        return [self._run(options) for _ in batch]

    def to_json(self, batch, results):
        kept = [result["results"] for result in results]
        return kept[0] if len(kept) == 1 else kept

    @staticmethod
    def _run(options: dict) -> dict:
        import io

        from PIL import Image

        from genseq.lab import LabConfig, lab_png, run_lab

        longest = options["longest"]
        counts = tuple(sorted({max(1, longest // 4), longest}))
        config = LabConfig(cells=options["cells"], length=options["length"], distractors=counts,
                           steps=options["steps"])
        result = run_lab(config)
        return {"summary": _summary(result, counts), "picture": Image.open(io.BytesIO(lab_png(result))),
                "results": result.to_json()}


def _summary(result, counts: tuple[int, ...]) -> str:
    header = "| cell | " + " | ".join(f"N = {n}, clipped | N = {n}, not clipped" for n in counts) + " |"
    rows = [header, "|---|" + "---:|" * (2 * len(counts))]
    for cell, kinds in result.recall.items():
        rows.append(f"| {cell} | " + " | ".join(f"{kinds['clipped'][n]:.2f} | {kinds['unclipped'][n]:.2f}" for n in counts) + " |")
    return "\n".join([f"Recall accuracy after N distractors ({result.config.steps} Adam steps each; chance "
                      f"{1 / result.config.keys:.3f}):", "", *rows])
