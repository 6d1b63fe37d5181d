"""`genseq tasks`: list the registered task plugins and whether each loads.

A task that cannot be used gets a short status in the table (error,
incompatible, disabled) and its reason on a line of its own below, so that a
long error never widens the table.
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
        print(json.dumps({"tasks": [info.to_dict() for info in infos], "warnings": [str(w.message) for w in caught]},
                         indent=2))
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
