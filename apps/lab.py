"""The lab tabs, beside the task tabs.

Inspect: the default language model's gates, cell and hidden state at every
token typed, as genseq.gates draws them (`genseq inspect` on the command line):
tokens x units heat maps of the input, forget and output gates, the cell
candidate, the cell state and the hidden state, for the units whose cell state
moves most, and the traces of those cells. API name /inspect.

Gradients: genseq.lab's experiments at small settings (`genseq lab gradients`
runs the full ones). API name /gradients.
"""

from __future__ import annotations

import functools
import io

import gradio as gr

from .handlers import shown_errors
from .images import page_error

EXAMPLE = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer"
MAX_CHARACTERS = 2000  # the picture has one row per token: past a few hundred it stops being readable


@functools.lru_cache(maxsize=1)
def default_lm():
    """The shipped language model, loaded on first use and shared by every session."""
    from genseq import from_pretrained
    from genseq.defaults import default_model_dir

    model, tokenizer = from_pretrained(default_model_dir("lm"))
    return model.eval(), tokenizer


def layer_count() -> int:
    from genseq.checkpoint import read_config
    from genseq.defaults import default_model_dir

    return read_config(default_model_dir("lm"))["model_config"]["num_layers"]


@shown_errors("the Inspect tab")
def inspect_handler(text: str, layer: float):
    from PIL import Image

    from genseq.gates import heatmap_png, inspect_text

    if len(text) > MAX_CHARACTERS:
        raise page_error(f"the text has {len(text)} characters; the inspector reads at most {MAX_CHARACTERS}")
    model, tokenizer = default_lm()
    inspection = inspect_text(model, tokenizer, text)
    layer = int(layer)
    picture = Image.open(io.BytesIO(heatmap_png(inspection, layer)))
    units = inspection.moving_units(layer, 10)
    cell = inspection.layers[layer]["cell"]
    rows = [f"| {unit} | {cell[:, unit].min().item():.2f} | {cell[:, unit].max().item():.2f} |" for unit in units]
    note = inspection.truncation_note()  # a long text is read up to genseq.gates.MAX_TOKENS tokens
    summary = "\n".join([*([f"Note: {note}.", ""] if note else []),
                         f"{len(inspection.tokens)} tokens, layer {layer}. The units whose cell state moves most:", "",
                         "| unit | lowest c | highest c |", "|---:|---:|---:|", *rows])
    return picture, summary


def build_inspect_tab(concurrency_id: str, concurrency: int) -> None:
    layers = layer_count()
    gr.Markdown("Look inside the default language model: at every token, each LSTM unit's input, forget and output "
                "gates, its cell candidate, cell state and hidden state (`genseq inspect` on the command line).")
    with gr.Row():
        with gr.Column(scale=1):
            text = gr.Textbox(label="Text", value=EXAMPLE, lines=4, elem_id="inspect-text")
            layer = gr.Slider(0, layers - 1, value=layers - 1, step=1, label="Layer", elem_id="inspect-layer")
            run = gr.Button("Inspect", variant="primary", elem_id="inspect-run-button")
            summary = gr.Markdown("", elem_id="inspect-summary")
        with gr.Column(scale=3):
            picture = gr.Image(label="Gates, cell and hidden state", type="pil", format="png", interactive=False,
                               elem_id="inspect-picture")
    run.click(inspect_handler, [text, layer], [picture, summary], api_name="inspect",
              concurrency_id=concurrency_id, concurrency_limit=concurrency)


@shown_errors("the Gradients tab")
def gradients_handler(cells: list[str], length: float, longest: float, steps: float):
    from PIL import Image

    from genseq.lab import LabConfig, lab_png, run_lab

    counts = tuple(sorted({max(1, int(longest) // 4), int(longest)}))
    result = run_lab(LabConfig(cells=tuple(cells or ()), length=int(length), distractors=counts, steps=int(steps)))
    header = "| cell | " + " | ".join(f"N = {n}, clipped | N = {n}, not clipped" for n in counts) + " |"
    rows = [header, "|---|" + "---:|" * (2 * len(counts))]
    for cell, kinds in result.recall.items():
        rows.append(f"| {cell} | " + " | ".join(f"{kinds['clipped'][n]:.2f} | {kinds['unclipped'][n]:.2f}" for n in counts) + " |")
    summary = "\n".join([f"Recall accuracy after N distractors ({int(steps)} Adam steps each; chance "
                         f"{1 / result.config.keys:.3f}):", "", *rows])
    return Image.open(io.BytesIO(lab_png(result))), summary


def build_gradients_tab(concurrency_id: str, concurrency: int) -> None:
    gr.Markdown("Vanishing and exploding gradients, measured on small freshly trained models: how much gradient "
                "reaches each input of a sequence in RNN, GRU and LSTM layers, and how well each learns to recall a "
                "symbol across N distractors with and without gradient clipping. Small settings run in seconds; "
                "`genseq lab gradients` runs the full ones.")
    with gr.Row():
        with gr.Column(scale=1):
            cells = gr.CheckboxGroup(["rnn", "gru", "lstm"], value=["rnn", "gru", "lstm"], label="Cells",
                                     elem_id="gradients-cells")
            length = gr.Slider(10, 300, value=100, step=10, label="Sequence length (gradient)", elem_id="gradients-length")
            longest = gr.Slider(4, 40, value=20, step=4, label="Longest N (distractors)", elem_id="gradients-longest")
            steps = gr.Slider(50, 400, value=150, step=50, label="Training steps per model", elem_id="gradients-steps")
            run = gr.Button("Run", variant="primary", elem_id="gradients-run-button")
            summary = gr.Markdown("", elem_id="gradients-summary")
        with gr.Column(scale=3):
            picture = gr.Image(label="Gradient against distance; recall against N", type="pil", format="png",
                               interactive=False, elem_id="gradients-picture")
    run.click(gradients_handler, [cells, length, longest, steps], [picture, summary], api_name="gradients",
              concurrency_id=concurrency_id, concurrency_limit=concurrency)
