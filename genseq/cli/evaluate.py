"""`genseq eval lm`: perplexity and bits per byte of a checkpoint on a text."""

from __future__ import annotations

import json

from . import add_device_flag, path


def add_parser(subparsers) -> None:
    from .train import add_task_parsers

    evaluate = subparsers.add_parser("eval", help="evaluate a model", description="Evaluate a model: lm, or a task that can be evaluated.")
    tasks = evaluate.add_subparsers(dest="task", required=True, metavar="TASK")
    def evaluate_task(task_class, args):
        print_metrics(task_class.evaluate(args), args.json)
        return 0

    for task_parser in add_task_parsers(tasks, "evaluable", "add_eval_arguments", evaluate_task):
        task_parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser = tasks.add_parser("lm", help="a language model", description="Perplexity and bits per byte of a language model.")
    parser.add_argument("--model", required=True, type=path, help="checkpoint directory")
    parser.add_argument("--data", required=True, type=path, help="text file, folder, glob or dataset")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--split", default="validation", help="dataset split (default: validation)")
    add_device_flag(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..checkpoint import from_pretrained
    from ..data import open_source, tokenize
    from ..evaluate import evaluate
    from ..train import resolve_device

    model, tokenizer = from_pretrained(args.model, device=resolve_device(args.device))
    stream = tokenize(open_source(args.data, args.text_column, split=args.split), tokenizer, progress=not args.json)
    print_metrics(evaluate(model, stream, progress=not args.json), args.json)
    return 0


def print_metrics(metrics: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(metrics))
        return
    for name, value in _flat(metrics):
        print(f"{name:>16}  {value:.4f}" if isinstance(value, float) else f"{name:>16}  {value}")


def _flat(metrics: dict, prefix: str = ""):
    """(name, value) pairs; nested dicts give dotted names (model.accuracy)."""
    for name, value in metrics.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value
