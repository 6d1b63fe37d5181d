"""`genseq inspect`: an LSTM's gates, cell and hidden state at every token of a prompt."""

from __future__ import annotations

import json
import sys

from ..commands import check_writable, path, positive_int


def add_parser(subparsers) -> None:
    subparsers.add_parser(
        "inspect", help="look inside an LSTM language model", build=add_flags,
        description="Print, picture or dump an LSTM's input, forget and output gates, cell candidate, cell state and "
                    "hidden state at every token of a prompt.",
    )


def add_flags(parser, words) -> None:
    from ..gates import MAX_TOKENS  # imports torch: only when inspect runs

    parser.add_argument("--model", type=path, help="checkpoint directory (default: the shipped language model)")
    parser.add_argument("--prompt", required=True, help="the text to read")
    parser.add_argument("--layer", type=int, help="the layer to show (default: the last; --json: every layer)")
    parser.add_argument("--top", type=positive_int, default=10, help="how many of the most moving units to list (10)")
    parser.add_argument("--out", type=path, metavar="PNG", help="write the heat maps and cell-state traces to this PNG")
    parser.add_argument("--json", action="store_true", help="print every value as one JSON document")
    parser.add_argument("--max-tokens", type=positive_int, default=MAX_TOKENS,
                        help=f"read at most this many tokens of the prompt, saying so when it has more ({MAX_TOKENS})")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..checkpoint import atomic_write, from_pretrained
    from ..defaults import default_model_dir
    from ..errors import ConfigError
    from ..gates import QUANTITIES, heatmap_png, inspect_text

    if args.out:
        check_writable(args.out, "--out")
    model, tokenizer = from_pretrained(args.model or default_model_dir("lm"))
    layers = model.config.num_layers
    if args.layer is not None and not 0 <= args.layer < layers:
        raise ConfigError(f"--layer must be between 0 and {layers - 1} for this {layers}-layer model, not {args.layer}")
    model.eval()
    inspection = inspect_text(model, tokenizer, args.prompt, args.max_tokens)
    note = inspection.truncation_note()
    if note:
        print(f"genseq: note: {note} (--max-tokens reads more)", file=sys.stderr)
    layer = layers - 1 if args.layer is None else args.layer
    if args.out:
        atomic_write(args.out, heatmap_png(inspection, layer), what="picture")
    if args.json:
        print(json.dumps(inspection.to_json(args.layer, args.top)))
        return 0
    values = inspection.layers[layer]
    print(f"layer {layer} of {layers}, {len(inspection.tokens)} tokens; mean over the units after each token:")
    print(f"{'token':>16} " + " ".join(f"{name:>11}" for name in QUANTITIES))
    for t, token in enumerate(inspection.tokens):
        print(f"{repr(token)[1:-1]:>16} " + " ".join(f"{values[name][t].mean().item():11.3f}" for name in QUANTITIES))
    units = inspection.moving_units(layer, args.top)
    print(f"units whose cell state moves most: {', '.join(map(str, units))}")
    if args.out:
        print(f"heat maps written to {args.out}")
    return 0
