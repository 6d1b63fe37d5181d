"""The `gates` task: a text in; an LSTM language model's gates, cell and hidden state at every token out.

The picture is genseq.gates' heat maps and cell-state traces (`genseq inspect` on
the command line), for one layer; the summary and the JSON list the units whose
cell state moves most, in the order of the picture's columns. A long text is read up to genseq.gates.MAX_TOKENS tokens,
and the summary says so.
"""

from __future__ import annotations

from genseq.tasks import Input, Option, Output, Task

EXAMPLE = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer"


class GatesTask(Task):
    name = "gates"
    description = "Look inside an LSTM language model: its gates, cell and hidden state at every token of a text."
    inputs = (Input("text", "text", "the text to read"),)
    outputs = (
        Output("summary", "text", "the tokens read and the units whose cell state moves most"),
        Output("picture", "image", "a heat map per gate and state, a row per token and a column per unit (the 16 "
                                   "whose cell state moves most, most first), and the top four's cell-state traces"),
        Output("units", "json", "the units whose cell state moves most, with their lowest and highest cell state"),
    )
    options = (
        Option("layer", None, "the layer to show; empty for the last", type=int, minimum=0),
        Option("top", 10, "how many of the most moving units to list", minimum=1, maximum=100, advanced=True),
    )
    examples = ({"text": EXAMPLE},)
    model_kinds = ("lm",)

    def load(self, model_path):
        from genseq import default_model_dir, from_pretrained

        model, tokenizer = from_pretrained(model_path or default_model_dir("lm"), device=self.device)
        return model.eval(), tokenizer

    def predict(self, loaded, batch, options):
        return [self._inspect(loaded, item["text"], options) for item in batch]

    def to_json(self, batch, results):
        kept = [{key: value for key, value in result.items() if key != "picture"} for result in results]
        return kept[0] if len(kept) == 1 else kept

    @staticmethod
    def _inspect(loaded, text: str, options: dict) -> dict:
        import io

        from PIL import Image

        from genseq.errors import ConfigError
        from genseq.gates import heatmap_png, inspect_text

        model, tokenizer = loaded
        layers = model.config.num_layers
        layer = layers - 1 if options["layer"] is None else options["layer"]
        if layer >= layers:
            raise ConfigError(f"option layer must be between 0 and {layers - 1} for this {layers}-layer model, "
                              f"not {layer}")
        inspection = inspect_text(model, tokenizer, text)
        cell = inspection.layers[layer]["cell"]
        units = [{"unit": unit, "lowest": round(cell[:, unit].min().item(), 4),
                  "highest": round(cell[:, unit].max().item(), 4)} for unit in inspection.moving_units(layer, options["top"])]
        return {"summary": _summary(inspection, layer, units), "layer": layer, "tokens": inspection.tokens,
                "text_tokens": max(inspection.text_tokens, len(inspection.tokens)), "units": units,
                "picture": Image.open(io.BytesIO(heatmap_png(inspection, layer)))}


def _summary(inspection, layer: int, units: list[dict]) -> str:
    note = inspection.truncation_note()
    rows = [f"  unit {entry['unit']:>5}: cell state from {entry['lowest']:.2f} to {entry['highest']:.2f}" for entry in units]
    return "\n".join([*([f"Note: {note}."] if note else []),
                      f"{len(inspection.tokens)} tokens, layer {layer}. The units whose cell state moves most "
                      "(the picture's first columns, in this order):", *rows])
