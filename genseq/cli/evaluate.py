"""`genseq eval TASK`: a task's evaluation (its commands' run_eval), printed as a table or as JSON."""

from __future__ import annotations

import functools
import json

from .train import add_task_commands

EVAL = ("evaluable", "add_eval_arguments")


def add_parser(subparsers) -> None:
    subparsers.add_parser("eval", help="evaluate a task's model", description="Evaluate the model of a task (see genseq tasks).",
                          build=functools.partial(add_task_commands, kind=EVAL, action=evaluate_task, extra=add_json_flag))


def add_json_flag(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def evaluate_task(task_class, args) -> int:
    metrics = task_class.evaluate(args)
    table = None if args.json else task_class.format_metrics(metrics)
    if table:
        print(table)
    else:
        print_metrics(metrics, args.json)
    return 0


def print_metrics(metrics: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(metrics))
        return
    rows = list(_flat(metrics))
    width = max((len(name) for name, _ in rows), default=0)
    for name, value in rows:
        print(f"{name:>{width}}  {value:.4f}" if isinstance(value, float) else f"{name:>{width}}  {value}")


def _flat(metrics: dict, prefix: str = ""):
    """(name, value) pairs; nested dicts give dotted names (model.accuracy)."""
    for name, value in metrics.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value
