"""Command-line flags built from the tasks' declarations, and rendering of a task's outputs.

Every input becomes a repeatable flag (`--prompt`, `--image`; repeating it
makes a batch) and every option a typed flag, so a new task gets its CLI with
no change here. Tasks that declare the same name share one flag; a flag that
belongs to another task than the one chosen is rejected by name.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from typing import Iterable

from ..errors import ConfigError, DataError
from . import shown
from ..tasks import Option, Task


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_task_arguments(parser: argparse.ArgumentParser, task_classes: Iterable[type[Task]]) -> dict[str, list[str]]:
    """One flag per distinct input and option name over all tasks, grouped under the first task declaring it.

    List the default task first: a flag shared by several tasks shows the first
    one's default, and the others' where they differ. Returns, per task, notes on
    the inputs and options whose names another flag already takes.
    """
    notes: dict[str, list[str]] = {}
    task_classes = list(task_classes)
    defaults: dict[str, dict[str, object]] = {}
    for task_class in task_classes:
        for option in task_class.options:
            defaults.setdefault(option.name, {})[task_class.name] = option.default
    seen: set[str] = set()

    def new_flag(task_class, role: str, name: str) -> bool:
        """Whether the role's flag for name is to be added (not yet there, and not another flag's name)."""
        if f"{role}_{name}" in seen:
            return False
        if flag(name) in parser._option_string_actions:
            notes.setdefault(task_class.name, []).append(
                f"the {role} {name} cannot be given here: another task's {flag(name)} takes its name")
            return False
        seen.add(f"{role}_{name}")
        return True

    for task_class in task_classes:
        group = parser.add_argument_group(f"task {task_class.name}", task_class.description)
        for item in task_class.inputs:
            if not new_flag(task_class, "input", item.name):
                continue
            help_text = (item.description or item.kind).replace("%", "%%")
            if item.kind == "text":
                help_text += " ('-' reads standard input)"
            group.add_argument(flag(item.name), dest=f"input_{item.name}", action="append", metavar=item.kind.upper(),
                               help=f"{help_text}; repeat for a batch")
        for option in task_class.options:
            if not new_flag(task_class, "option", option.name):
                continue
            others = {name: value for name, value in defaults[option.name].items() if value != option.default}
            _add_option(group, option, others)
    return notes


def _add_option(group, option: Option, other_defaults: dict[str, object]) -> None:
    default = f"default {option.default!r}" + "".join(f", {name}: {value!r}" for name, value in other_defaults.items())
    details = [default]
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


def collect_options(args, task_class: type[Task]) -> dict:
    """The options given on the command line, checked by the task (which fills in the rest)."""
    own = {option.name: option for option in task_class.options}
    given = {}
    for name, value in vars(args).items():
        if not name.startswith("option_") or value is None:
            continue
        name = name[len("option_"):]
        if name not in own:
            valid = ", ".join(flag(n) for n in own) or "none"
            raise ConfigError(f"{flag(name)} is not an option of task {task_class.name}; its options are: {valid}")
        given[name] = _convert(own[name], value)
    return given


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
    declared = {item.name for item in task_class.inputs}
    for name, value in vars(args).items():
        if name.startswith("input_") and value is not None and name[len("input_"):] not in declared:
            raise ConfigError(f"task {task_class.name} takes no {flag(name[len('input_'):])}")
    values = {item.name: getattr(args, f"input_{item.name}", None) or [] for item in task_class.inputs}
    missing = [flag(name) for name, given in values.items() if not given]
    if missing:
        raise ConfigError(f"task {task_class.name} needs {' and '.join(missing)}")
    size = max(len(given) for given in values.values())
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
            lines.extend(f"  {entry['label']!s:<24} {entry['prob']:.4f}" for entry in value)
        elif output.kind == "label":
            lines.append(f"{output.name}: {value['label']} ({value['prob']:.4f})")
        elif output.kind == "number":
            lines.append(f"{output.name}: {value:.4f}" if isinstance(value, float) else f"{output.name}: {value}")
        else:
            lines.append(f"{output.name}: {value}")
    return "\n".join(lines)
