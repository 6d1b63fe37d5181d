"""`genseq export onnx`: a language model's decoding step as an ONNX graph, with its tokenizer and config
(genseq.export), to run with onnxruntime where there is no PyTorch. Its flags are built, and torch imported,
only when it is the command chosen."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError

DEFAULT_MODEL = "default"


def add_parser(subparsers) -> None:
    subparsers.add_parser("export", help="export a model to run outside genseq",
                          description="Export a model to run outside genseq.", build=add_formats)


def add_formats(parser, words) -> None:
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    onnx = formats.add_parser(
        "onnx", help="the language model's decoding step as an ONNX graph",
        description="Write the language model's decoding step (token ids and state in, logits and state out) as "
                    "model.onnx, with tokenizer.model and config.json, for onnxruntime; see docs/onnx.md.")
    onnx.add_argument("--model", required=True, metavar="DIR",
                      help=f"a language model checkpoint directory, or {DEFAULT_MODEL} for the embedded one")
    onnx.add_argument("--out", required=True, metavar="DIR",
                      help="the directory to write (new, empty or an earlier export)")
    onnx.add_argument("--precision", default="fp32", metavar="P",
                      help="fp32 (default; the same logits as genseq to 1e-5) or int8 (4x smaller, faster)")
    onnx.set_defaults(run=run)


def run(args) -> int:
    from ..checkpoint import from_pretrained, read_config, resolve
    from ..defaults import default_model_dir
    from ..export import check_export, export_onnx

    check_export(args.out, args.precision)  # before the model is loaded
    directory = default_model_dir() if args.model == DEFAULT_MODEL else resolve(args.model)
    kind = read_config(directory, kind=None).get("kind")
    if kind != "lm":
        raise ConfigError(f"{args.model} holds a {kind!r} model, and only language models (kind 'lm') export to ONNX; "
                          "see docs/onnx.md for the captioning decoder")
    model, tokenizer = from_pretrained(directory)
    config = export_onnx(model, tokenizer, args.out, args.precision)
    size = (Path(args.out) / config["files"]["model"]).stat().st_size
    print(f"wrote {args.out}: {config['files']['model']} ({size / 1e6:.1f} MB, {args.precision}), "
          f"{config['files']['tokenizer']}, config.json")
    return 0
