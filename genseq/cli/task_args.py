"""Command-line flags built from a task's declaration, and rendering of its outputs.

Every input becomes a repeatable flag (`--prompt`, `--image`; repeating it
makes a batch) and every option a typed flag, so a new task gets its CLI with
no change here.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Iterable

from ..errors import ConfigError
from ..tasks import Option, Task


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_task_arguments(parser: argparse.ArgumentParser, task_class: type[Task]) -> None:
    inputs = parser.add_argument_group(f"inputs of task {task_class.name}")
    for item in task_class.inputs:
        help_text = item.description or item.kind
        if item.kind == "text":
            help_text += " ('-' reads standard input)"
        inputs.add_argument(flag(item.name), dest=f"input_{item.name}", action="append", metavar=item.kind.upper(),
                            help=f"{help_text}; repeat for a batch")
    options = parser.add_argument_group(f"options of task {task_class.name}")
    for option in task_class.options:
        _add_option(options, option)


def _add_option(group, option: Option) -> None:
    details = [f"default {option.default!r}"]
    if option.minimum is not None or option.maximum is not None:
        details.append(f"range {option.range_text()}")
    help_text = f"{option.help} ({', '.join(details)})".strip()
    kind = option.value_type
    dest = f"option_{option.name}"
    if kind is bool:
        group.add_argument(flag(option.name), dest=dest, action=argparse.BooleanOptionalAction, default=None, help=help_text)
    elif kind in (list, tuple):
        group.add_argument(flag(option.name), dest=dest, nargs="+", default=None, help=help_text)
    else:
        group.add_argument(flag(option.name), dest=dest, type=_typed(option), choices=option.choices,
                           default=None, metavar=option.name.upper(), help=help_text)


def _typed(option: Option):
    """Convert the flag's text to the option's type; bounds are checked by the task."""

    def convert(text: str):
        try:
            return option.value_type(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {option.value_type.__name__}, not {text!r}") from None

    convert.__name__ = option.value_type.__name__
    return convert


def collect_options(args, task_class: type[Task]) -> dict:
    """The options given on the command line (the task fills in the rest)."""
    given = {}
    for option in task_class.options:
        value = getattr(args, f"option_{option.name}")
        if value is not None:
            given[option.name] = value
    return given


def collect_batch(args, task_class: type[Task]) -> list[dict]:
    """One input dict per batch item; an input given once is shared by every item."""
    values = {item.name: getattr(args, f"input_{item.name}") or [] for item in task_class.inputs}
    missing = [flag(name) for name, given in values.items() if not given]
    if missing:
        raise ConfigError(f"task {task_class.name} needs {' and '.join(missing)}")
    size = max(len(given) for given in values.values())
    for name, given in values.items():
        if len(given) not in (1, size):
            raise ConfigError(f"{flag(name)} is given {len(given)} times but the batch has {size} items")
    kinds = {item.name: item.kind for item in task_class.inputs}
    return [
        {name: _read_input(given[index if len(given) > 1 else 0], kinds[name]) for name, given in values.items()}
        for index in range(size)
    ]


def _read_input(value: str, kind: str):
    if kind == "text" and value == "-":
        return sys.stdin.read()
    return value


def render(task_class: type[Task], result: dict, skip: Iterable[str] = ()) -> str:
    """Human-readable lines for one result, output by output."""
    lines = []
    for output in task_class.outputs:
        if output.name in skip or output.name not in result or result[output.name] is None:
            continue
        value = result[output.name]
        if output.kind == "text":
            lines.append(str(value))
        elif output.kind == "ranked":
            lines.append(f"{output.name}:")
            lines.extend(f"  {entry['label']!s:<20} {entry['prob']:.4f}" for entry in value)
        elif output.kind == "label":
            lines.append(f"{output.name}: {value['label']} ({value['prob']:.4f})")
        elif output.kind == "number":
            lines.append(f"{output.name}: {value:.4f}" if isinstance(value, float) else f"{output.name}: {value}")
        elif output.kind == "image":
            lines.append(f"{output.name}: {value}")
        else:
            lines.append(f"{output.name}: {json.dumps(value)}")
    return "\n".join(lines)
