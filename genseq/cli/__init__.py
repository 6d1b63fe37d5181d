"""The `genseq` command: parses arguments, calls the library, prints.

Each subcommand lives in its own module with add_parser(subparsers) and sets
`run` on its parser. A command whose flags are costly to build (those of the
tasks: their plugins, their commands modules, torch) passes build= to
add_parser, and its flags are added only when it is the command chosen, so
that `genseq tasks` imports no task's commands and no torch. User mistakes
(GenseqError) become one sentence on stderr and exit code 2; Ctrl-C exits 130.

Plugin commands build their flags with genseq.commands.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

from .. import __version__
from ..errors import GenseqError

__all__ = ["main"]

COMMAND_MODULES = ("tasks", "train", "evaluate", "generate", "gates", "lab", "serve", "export")


class Commands(argparse._SubParsersAction):
    """Sub-commands whose flags may be added when the command is chosen: add_parser(name, build=f) calls
    f(parser, words after the name) just before that parser reads them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._builders = {}

    def add_parser(self, name, build=None, **kwargs):
        parser = super().add_parser(name, **kwargs)
        if build is not None:
            self._builders[name] = build
        return parser

    def __call__(self, parser, namespace, values, option_string=None):
        build = self._builders.pop(values[0], None)
        if build is not None:
            build(self.choices[values[0]], values[1:])
        super().__call__(parser, namespace, values, option_string)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (exit 2) instead of the usage block."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", Commands)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="genseq", description="Sequence generation with recurrent networks.")
    parser.add_argument("--version", action="version", version=f"genseq {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").add_parser(subparsers)
    return parser


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The parsed command line. Words no parser took are refused by the chosen command's refuse_unknown(words),
    when it has one, to name what it does take."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        refuse_unknown = getattr(args, "refuse_unknown", None)
        if refuse_unknown is not None:
            refuse_unknown(unknown)
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        args = parse(argv)
        return args.run(args) or 0
    except GenseqError as error:
        print(f"genseq: error: {one_line(str(error))}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as error:
        from ..errors import first_line
        from ..memory import is_out_of_memory

        if not is_out_of_memory(error):
            raise
        print(f"genseq: error: {_command(args)} needs more memory than this machine has ({first_line(error)}); "
              "try smaller sizes, a smaller batch or a shorter input", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genseq: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def one_line(message: str, limit: int = 1000) -> str:
    """A message as one line of readable length: control characters the user typed (a newline in a path or an
    argument) are escaped, and a huge value quoted inside is cut short: from the middle, because the end of a
    message usually says what is wrong with the value."""
    message = re.sub(r"[\x00-\x1f\x7f]", lambda match: repr(match.group())[1:-1], message)
    if len(message) <= limit:
        return message
    return f"{message[:limit // 2]}...{message[-(limit // 2):]}"


def _command(args) -> str:
    """The words naming the command that ran: `genseq train completion`."""
    words = [getattr(args, name, None) for name in ("command", "task", "experiment")]
    return " ".join(["genseq", *[word for word in words if isinstance(word, str)]])
