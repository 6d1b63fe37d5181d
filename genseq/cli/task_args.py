"""Command-line flags built from one task's declaration, and rendering of a task's outputs.

Every input becomes a repeatable flag (`--prompt`, `--image`; repeating it
makes a batch) and every option a typed flag, so a new task gets its CLI with
no change here. Only the chosen task's declaration is read: no task's inputs
or options can change another task's flags.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Iterable

from ..errors import ConfigError, DataError
from ..tasks import Option, Task
from ..commands import shown


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_generate_flags(parser: argparse.ArgumentParser, task_class: type[Task]) -> None:
    """The flags of `genseq generate --task NAME`: one per input and per option of task_class, grouped under the task."""
    group = parser.add_argument_group(f"task {task_class.name}", task_class.description.replace("%", "%%"))
    for item in task_class.inputs:
        help_text = (item.description or item.kind).replace("%", "%%")
        if item.kind == "text":
            help_text += " ('-' reads standard input)"
        group.add_argument(flag(item.name), dest=f"input_{item.name}", action="append", metavar=item.kind.upper(),
                           help=f"{help_text}; repeat for a batch")
    for option in task_class.options:
        _add_option(group, option)


def task_flags(task_class: type[Task]) -> list[str]:
    """The flags of task_class's inputs and options, in declaration order."""
    return [flag(port.name) for port in (*task_class.inputs, *task_class.options)]


def _add_option(group, option: Option) -> None:
    details = [f"default {option.default!r}"]
    if option.minimum is not None or option.maximum is not None:
        details.append(f"range {option.range_text()}")
    help_text = f"{option.help} ({', '.join(details)})".strip().replace("%", "%%")  # plain text, not an argparse format
    kind = option.value_type
    dest = f"option_{option.name}"
    if kind is bool:
        group.add_argument(flag(option.name), dest=dest, action=argparse.BooleanOptionalAction, default=None, help=help_text)
    elif kind in (list, tuple):
        group.add_argument(flag(option.name), dest=dest, nargs="+", action="extend", default=None, metavar="VALUE",
                           help=help_text + r"; \n and \t are understood")
    else:
        group.add_argument(flag(option.name), dest=dest, default=None, metavar=option.name.upper(), help=help_text,
                           choices=option.choices)


def parse_task_options(args, task_class: type[Task]) -> dict:
    """The options given on the command line, converted from text; the task checks them and fills in the rest."""
    return {option.name: _convert(option, getattr(args, f"option_{option.name}")) for option in task_class.options
            if getattr(args, f"option_{option.name}", None) is not None}


def _convert(option: Option, value):
    """Flags arrive as text; the task's Option.check does the typing and bounds."""
    if isinstance(value, list):
        return tuple(_unescape(text) for text in value)
    if option.value_type in (int, float) and isinstance(value, str):
        try:
            number = option.value_type(value)
        except ValueError:
            kind = "a whole number" if option.value_type is int else "a number"
            raise ConfigError(f"{flag(option.name)} must be {kind}, not {shown(value)}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{flag(option.name)} must be a finite number, not {shown(value)}")
        return number
    return value


def _unescape(text: str) -> str:
    r"""\n, \t and \\ become a newline, a tab and a backslash."""
    return re.sub(r"\\([nt\\])", lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m.group(1)], text)


def collect_batch(args, task_class: type[Task]) -> list[dict]:
    """One input dict per batch item; an input given once is shared by every item."""
    values = {item.name: getattr(args, f"input_{item.name}", None) or [] for item in task_class.inputs}
    missing = [flag(name) for name, given in values.items() if not given]
    if missing:
        raise ConfigError(f"task {task_class.name} needs {' and '.join(missing)}")
    size = max((len(given) for given in values.values()), default=1)  # a task without inputs runs once
    for name, given in values.items():
        if len(given) not in (1, size):
            raise ConfigError(f"{flag(name)} is given {len(given)} times but the batch has {size} items")
    kinds = {item.name: item.kind for item in task_class.inputs}
    return [
        {name: _read_input(given[index if len(given) > 1 else 0], kinds[name], name) for name, given in values.items()}
        for index in range(size)
    ]


def _read_input(value: str, kind: str, name: str):
    """Text inputs: '-' reads stdin (less the one newline that echo adds); text must be UTF-8."""
    if kind != "text":
        return value
    if value == "-":
        try:
            data = sys.stdin.buffer.read()  # a closed stdin (`<&-`) is None, or a file that raises
        except (AttributeError, OSError, ValueError):
            raise DataError(f"{flag(name)} - reads standard input, but standard input is closed") from None
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(f"standard input is not UTF-8 text (invalid byte at offset {error.start})") from None
        value = value.removesuffix("\n").removesuffix("\r")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in argv arrive as lone surrogates
        raise DataError("the text given is not valid UTF-8") from None
    return value


def render(task_class: type[Task], result: dict, skip: Iterable[str] = ()) -> str:
    """Human-readable lines for one result; json outputs are left to --json."""
    lines = []
    for output in task_class.outputs:
        value = result.get(output.name)
        if output.name in skip or value is None or output.kind in ("json", "image"):  # pictures are the web app's
            continue
        if output.kind == "text":
            lines.append(str(value))
        elif output.kind == "ranked":
            lines.append(f"{output.name}:")
            lines.extend(f"  {entry['label']!s:<24} {probability(entry['prob'])}" for entry in value)
        elif output.kind == "label":
            lines.append(f"{output.name}: {value['label']} ({probability(value['prob'])})")
        elif output.kind == "number":
            lines.append(f"{output.name}: {value:.4f}" if isinstance(value, float) else f"{output.name}: {value}")
        elif output.kind == "table":
            lines.extend([f"{output.name}:", *table_lines(value)])
        else:
            lines.append(f"{output.name}: {value}")
    return "\n".join(lines)


def table_lines(rows: list[dict]) -> list[str]:
    """A table output as aligned columns under their names, each as wide as its widest entry."""
    columns = list(rows[0]) if rows else []
    cells = [columns, *([str(row[column]) for column in columns] for row in rows)]
    widths = [max(len(line[index]) for line in cells) for index in range(len(columns))]
    return ["  " + "  ".join(entry.ljust(width) for entry, width in zip(line, widths)).rstrip() for line in cells]


def probability(value: float) -> str:
    """Four decimals, or two significant digits with an exponent below 0.0001, which four decimals show as 0."""
    return f"{value:.4f}" if value >= 1e-4 or value == 0 else f"{value:.2e}"
