"""`genseq tasks`: list the registered task plugins and whether each loads.

A task that cannot be used gets a short status in the table (error,
incompatible, disabled) and its reason on a line of its own below, so that a
long error never widens the table. With --json each task with an option whose
choices come from its model (completion's style) also lists the style labels of
its default model (what --style takes).
"""

from __future__ import annotations

import json


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("tasks", help="list tasks", description="List the registered task plugins.")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(run=run)


def run(args) -> int:
    import warnings

    from ..plugins import discover
    from . import one_line

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        infos = discover()
    if args.json:
        tasks = [{**info.to_dict(), "labels": default_model_labels(info)} for info in infos]
        print(json.dumps({"tasks": tasks, "warnings": [str(w.message) for w in caught]}, indent=2))
        return 0
    if not infos:
        print("no tasks are registered")
        return 0
    print_table([("TASK", "SOURCE", "STATUS", "DESCRIPTION")] + [
        (info.name, f"{info.distribution} {info.version}".strip(), info.state, info.to_dict()["description"])
        for info in infos
    ])
    for info in infos:
        if info.problem and info.state != "disabled":
            print(one_line(f"{info.name} ({info.distribution}) {info.problem}", limit=300))
    for warning in caught:
        print(f"warning: {warning.message}")
    return 0


def print_table(rows: list[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell, the last one left as it is."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])


def default_model_labels(info) -> list[str]:
    """The style labels of the default model of a task with an option whose choices come from its model, read from
    config.json; [] for others (finding their default model may import torch) and for a model without labels."""
    from ..checkpoint_config import read_labels
    from ..errors import GenseqError

    task_class = info.task_class
    if task_class is None or not any(option.choices_from_model for option in task_class.options):
        return []
    try:
        return read_labels(task_class.default_model_dir())
    except GenseqError:  # no default model installed: no labels to show
        return []
