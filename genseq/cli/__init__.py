"""The `genseq` command: parses arguments, calls the library, prints.

Each subcommand lives in its own module with add_parser(subparsers) and sets
`run` on its parser. User mistakes (GenseqError) become one sentence on stderr
and exit code 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
import shlex
import sys
from pathlib import Path

from .. import __version__
from ..errors import ConfigError, GenseqError

COMMAND_MODULES = ("tasks", "train", "evaluate", "generate", "gates", "lab", "serve")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (exit 2) instead of the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="genseq", description="Sequence generation with recurrent networks.")
    parser.add_argument("--version", action="version", version=f"genseq {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.run(args) or 0
    except GenseqError as error:
        print(f"genseq: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genseq: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def duration(text: str) -> float:
    """Seconds from '90', '90s', '15m' or '1.5h'."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text.strip())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive duration like 300, 300s, 15m or 2h, not {text!r}")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def run_directory(out: str | None, resume: str | None, changes_model: bool) -> str:
    """The run directory of `--out DIR` (a new run) or `--resume DIR` (continue one), for any trainer."""
    if resume:
        if out and out != resume:
            raise ConfigError("--out and --resume name different directories; --resume DIR continues the run in DIR")
        if changes_model:
            raise ConfigError("model and tokenizer options cannot change when resuming; drop them or start a new --out")
        return resume
    if not out:
        raise ConfigError("--out is required (or --resume DIR to continue a run)")
    return out


def training_outcome(task: str, args, out_dir, finished: bool, step: int, best, data_flags: dict | None = None,
                     is_main: bool = True) -> int:
    """Say on stderr how `genseq train TASK` ended and return its exit code: 0 finished, 130 stopped.

    A stopped run is told the command that resumes it: --data, --valid and the
    data_flags ({dest: default}) that differ from their defaults, repeated and
    quoted for the shell. best() words the best validation figure of a finished
    run. Only the main process of a distributed run reports.
    """
    if not is_main:
        return 0 if finished else 130
    if not finished:
        flags = {"data": None, "valid": None, **(data_flags or {})}
        words = []
        for dest, default in flags.items():
            value = getattr(args, dest, None)
            if value is None or value == default:
                continue
            name = "--" + dest.removesuffix("s" if isinstance(value, list) else "").replace("_", "-")
            if value is True:
                words.append(name)
            else:
                words += [item for one in (value if isinstance(value, list) else [value]) for item in (name, shlex.quote(str(one)))]
        print(f"genseq: stopped at step {step}; continue with: genseq train {task} {' '.join(words)} "
              f"--resume {shlex.quote(str(out_dir))}", file=sys.stderr)
        return 130
    print(f"trained {step} steps; {best()}; saved in {out_dir}", file=sys.stderr)
    return 0


def config_flag(group, config_class, name: str, help: str = "", default_text: str | None = None, **options) -> None:
    """A flag setting the field `name` of config_class, its default (or default_text) shown in the help.

    Left out, the flag stays None, so that build_config can tell it was not
    given: a resumed run then keeps the value it was started with.
    """
    if default_text is None:
        default_text = str(next(field.default for field in dataclasses.fields(config_class) if field.name == name))
    group.add_argument("--" + name.replace("_", "-"), default=None, help=f"{help} (default: {default_text})".lstrip(),
                       **options)


def build_config(config_class, args, saved: dict | None = None, frozen: tuple[str, ...] = (), **fixed):
    """config_class from the flags given, else the saved run's values (resuming), else its defaults; fixed wins.

    A resumed run's frozen options (what its data position depends on) may be
    given again but not changed.
    """
    names = {field.name for field in dataclasses.fields(config_class)}
    values = {name: value for name, value in (saved or {}).items() if name in names}
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if saved:
        for name in frozen:
            if name in given and name in saved and given[name] != saved[name]:
                raise ConfigError(f"--{name.replace('_', '-')} cannot change when resuming: the run was started with "
                                  f"{saved[name]}; drop the flag or start a new --out")
    return config_class(**{**values, **given, **fixed})


def saved_training_config(run_dir) -> dict:
    """The training options a run in run_dir was started with ({} when its last/ has none to read)."""
    import json

    from ..checkpoint import read_directory_path

    try:
        last = read_directory_path(Path(run_dir) / "last")
        return json.loads((last / "config.json").read_text()).get("training_config") or {}
    except (GenseqError, OSError, ValueError, AttributeError):
        return {}
