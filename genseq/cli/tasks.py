"""`genseq tasks`: list the registered task plugins and whether each loads."""

from __future__ import annotations

import json


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("tasks", help="list tasks", description="List the registered task plugins.")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(run=run)


def run(args) -> int:
    import warnings

    from ..plugins import discover

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        infos = discover()
    rows = [info.to_dict() for info in infos]
    if args.json:
        print(json.dumps({"tasks": rows, "warnings": [str(w.message) for w in caught]}, indent=2))
        return 0
    if not rows:
        print("no tasks are registered")
        return 0
    table = [("TASK", "SOURCE", "STATUS", "DESCRIPTION")] + [
        (row["name"], f"{row['distribution']} {row['version']}".strip(), row["status"], row["description"]) for row in rows
    ]
    widths = [max(len(line[column]) for line in table) for column in range(3)]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[3])
    for warning in caught:
        print(f"warning: {warning.message}")
    return 0
