"""The Inspect tab: the default language model's gates, cell and hidden state at every token typed.

It shows genseq.gates' pictures (`genseq inspect` on the command line): tokens x
units heat maps of the input, forget and output gates, the cell candidate, the
cell state and the hidden state, for the units whose cell state moves most,
and the traces of those cells. Its API name is /inspect.
"""

from __future__ import annotations

import functools
import io

import gradio as gr

from genseq.errors import GenseqError

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


def inspect_handler(text: str, layer: float):
    from PIL import Image

    from genseq.gates import heatmap_png, inspect_text

    if len(text) > MAX_CHARACTERS:
        raise page_error(f"the text has {len(text)} characters; the inspector reads at most {MAX_CHARACTERS}")
    try:
        model, tokenizer = default_lm()
        inspection = inspect_text(model, tokenizer, text)
        layer = int(layer)
        picture = Image.open(io.BytesIO(heatmap_png(inspection, layer)))
    except GenseqError as error:
        raise page_error(str(error)) from error
    units = inspection.moving_units(layer, 10)
    cell = inspection.layers[layer]["cell"]
    rows = [f"| {unit} | {cell[:, unit].min().item():.2f} | {cell[:, unit].max().item():.2f} |" for unit in units]
    summary = "\n".join([f"{len(inspection.tokens)} tokens, layer {layer}. The units whose cell state moves most:", "",
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
