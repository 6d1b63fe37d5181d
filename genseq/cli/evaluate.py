"""`genseq eval lm`: perplexity and bits per byte of a checkpoint on a text."""

from __future__ import annotations

import json


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a model", description="Evaluate a language model (task lm).")
    parser.add_argument("task", choices=["lm"], help="what to evaluate")
    parser.add_argument("--model", required=True, help="checkpoint directory")
    parser.add_argument("--data", required=True, help="text file, folder, glob or dataset")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--split", default="validation", help="dataset split (default: validation)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..checkpoint import from_pretrained
    from ..data import open_source, tokenize
    from ..evaluate import evaluate
    from ..train import resolve_device

    model, tokenizer = from_pretrained(args.model, device=resolve_device(args.device))
    stream = tokenize(open_source(args.data, args.text_column, split=args.split), tokenizer, progress=not args.json)
    metrics = evaluate(model, stream, progress=not args.json)
    if args.json:
        print(json.dumps(metrics))
    else:
        for name, value in metrics.items():
            print(f"{name:>16}  {value:.4f}" if isinstance(value, float) else f"{name:>16}  {value}")
    return 0
