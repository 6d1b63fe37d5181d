"""Flag types and helpers for a task's train and eval commands (the task floor, beside genseq.tasks).

genseq's own command line uses them too. A task's commands module (see genseq.tasks.Task.commands) builds its flags
with these types, so that its mistakes read like genseq's own: an argparse
type raises argparse.ArgumentTypeError, which the CLI prints as one line naming
the flag; a helper raises genseq.errors.ConfigError, printed as one sentence.
Importing this module imports no torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import shlex
import sys
from pathlib import Path

from .errors import ConfigError, GenseqError

__all__ = [
    "whole_number", "positive_int", "non_negative_int", "seed", "finite_float", "non_negative_float", "positive_float",
    "fraction", "duration", "path", "device", "shown",
    "add_device_flag", "add_tokenizer_flags", "defer_tokenizer_defaults", "given_tokenizer_flags", "add_run_flags",
    "config_flag", "build_config",
    "run_directory", "check_writable", "saved_training_config", "training_outcome",
]

PATH_MAX, NAME_MAX = 4096, 255  # Linux's limits, also above those of macOS and Windows
LARGEST_INT = 2**63 - 1  # torch's int64: no size, count or seed beyond it can be used
SEED_LIMIT = 2**63  # torch.manual_seed and the samplers' generators take seeds in [0, 2**63)
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


# ---- argparse types: text -> value, or argparse.ArgumentTypeError -----------------------
def whole_number(text: str, low: int, high: int = LARGEST_INT) -> int:
    """An integer flag's value in [low, high]; '1e9' and '2.0' are refused as not whole numbers."""
    text = text.strip()
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise argparse.ArgumentTypeError(f"expected a whole number, not {shown(text)}")
    if len(text) > 40:  # int() of thousands of digits is refused by Python itself, and no bound is that large
        raise argparse.ArgumentTypeError(f"must be {'at least' if text[0] == '-' else 'at most'} "
                                         f"{low if text[0] == '-' else high}, not a {len(text)}-digit number")
    value = int(text)
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
    if value > high:
        raise argparse.ArgumentTypeError(f"must be at most {high}, not {value}")
    return value


def positive_int(text: str) -> int:
    return whole_number(text, 1)


def non_negative_int(text: str) -> int:
    return whole_number(text, 0)


def seed(text: str) -> int:
    return whole_number(text, 0, SEED_LIMIT - 1)


def finite_float(text: str) -> float:
    """A real number; NaN and infinities are refused, since no option means anything with them."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {shown(text)}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {shown(text)}")
    return value


def non_negative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def fraction(text: str) -> float:
    """A dropout probability, in [0, 1)."""
    value = finite_float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, not {text}")
    return value


def duration(text: str) -> float:
    """Seconds from '90', '90s', '15m' or '1.5h'."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text.strip())
    if not match or not 0 < float(match.group(1)) < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive duration like 300, 300s, 15m or 2h, not {shown(text)}")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def path(text: str) -> str:
    """A file, directory or dataset name: an empty one would silently mean the current directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, not an empty string")
    encoded = os.fsencode(text)
    # Longer than the system takes: every file call would fail with "File name too long".
    if len(encoded) >= PATH_MAX or any(len(part) > NAME_MAX for part in encoded.split(b"/")):
        raise argparse.ArgumentTypeError(f"{shown(text)} is longer than a path may be ({len(encoded):,} bytes)")
    return text


def device(text: str) -> str:
    """auto, cpu, cuda or cuda:N with N a GPU of this machine; without CUDA, using cuda is refused where it is used."""
    match = DEVICE_PATTERN.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, not {text!r}")
    if match.group(1):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count and int(match.group(1)[1:]) >= count:
            raise argparse.ArgumentTypeError(f"this machine has {count} CUDA GPUs, numbered from 0; {text} is not one")
    return text


def shown(text: str, limit: int = 40) -> str:
    """text quoted for a message, cut short so that a huge value keeps the message one readable line."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


# ---- flags shared by several commands ---------------------------------------------------
def add_device_flag(parser, default: str | None = "cpu", help: str | None = None) -> None:
    parser.add_argument("--device", type=device, default=default, metavar="{auto,cpu,cuda,cuda:N}",
                        help=help or f"(default: {default})")


def add_tokenizer_flags(parser, vocab_size: int = 8000) -> None:
    """--vocab-size, --tokenizer-type and --tokenizer FILE, for a command that trains a tokenizer (or reuses one)."""
    from .tokenizer import MIN_VOCAB_SIZE, MODEL_TYPES

    parser.add_argument("--vocab-size", type=positive_int, default=vocab_size,
                        help=f"pieces of the tokenizer to train, at least {MIN_VOCAB_SIZE} (default: {vocab_size}); "
                             "with --tokenizer-type char, at most this many")
    parser.add_argument("--tokenizer-type", choices=MODEL_TYPES, default=MODEL_TYPES[0],
                        help="unigram or bpe learn word pieces; char keeps one piece per character, rare "
                             f"characters as bytes (default: {MODEL_TYPES[0]})")
    parser.add_argument("--tokenizer", type=path, metavar="FILE", help="reuse this tokenizer.model instead of training one")


TOKENIZER_FLAGS = ("vocab_size", "tokenizer_type", "tokenizer")


def defer_tokenizer_defaults(parser) -> None:
    """Leave --vocab-size and --tokenizer-type None until given_tokenizer_flags() has seen whether they were
    given: a run that starts from a checkpoint keeps its tokenizer, so it must tell them apart from defaults."""
    defaults = {name: parser.get_default(name) for name in ("vocab_size", "tokenizer_type")}
    parser.set_defaults(tokenizer_defaults=defaults, **dict.fromkeys(defaults))


def given_tokenizer_flags(args) -> list[str]:
    """The tokenizer flags given on the command line (names as in args); those left out get their defaults."""
    given = [name for name in TOKENIZER_FLAGS if getattr(args, name) is not None]
    for name, default in args.tokenizer_defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    return given


def config_flag(group, config_class, name: str, help: str = "", default_text: str | None = None, **options) -> None:
    """A flag setting the field `name` of config_class, its default (or default_text) shown in the help.

    Left out, the flag stays None, so that build_config can tell it was not
    given: a resumed run then keeps the value it was started with.
    """
    if default_text is None:
        default_text = str(next(field.default for field in dataclasses.fields(config_class) if field.name == name))
    group.add_argument("--" + name.replace("_", "-"), default=None, help=f"{help} (default: {default_text})".lstrip(),
                       **options)


# The fields of genseq.runs.RunConfig, which every trainer's config has: (argparse type, help, default_text).
RUN_FLAGS = {
    "epochs": (positive_int, "", None),
    "batch_size": (positive_int, "", None),
    "lr": (positive_float, "learning rate", None),
    "clip_grad_norm": (non_negative_float, "0 turns clipping off", None),
    "max_steps": (positive_int, "", "none"),
    "max_time": (duration, "wall-clock budget (300, 15m, 2h)", "none"),
    "patience": (non_negative_int, "validations without improvement before stopping; 0 never stops", None),
    "eval_every": (positive_int, "steps between validations", "each epoch"),
    "checkpoint_every": (positive_int, "steps between resumable checkpoints", "none"),
    "checkpoint_minutes": (non_negative_float, "minutes between resumable checkpoints", None),
    "seed": (seed, "", None),
    "device": (device, "auto, cpu, cuda or cuda:N", None),
}


def add_run_flags(group, config_class, helps: dict[str, str] | None = None) -> None:
    """A config_flag for each field of genseq.runs.RunConfig (the schedule, the budget in steps or time,
    validation and checkpoint intervals, seed, device), and --no-progress; helps rewords some for this trainer."""
    for name, (kind, help, default_text) in RUN_FLAGS.items():
        config_flag(group, config_class, name, (helps or {}).get(name, help), default_text, type=kind)
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


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


# ---- run directories ---------------------------------------------------------------------
def run_directory(out: str | None, resume: str | None, changes_model: bool) -> str:
    """The run directory of `--out DIR` (a new run) or `--resume DIR` (continue one), for any trainer.

    A new run's directory is checked here, before any data is read: it must not
    hold a run already, and it must be a directory that can be created.
    """
    if resume:
        if out and out != resume:
            raise ConfigError("--out and --resume name different directories; --resume DIR continues the run in DIR")
        if changes_model:
            raise ConfigError("model and tokenizer options cannot change when resuming; drop them or start a new --out")
        if not Path(resume).is_dir():
            raise ConfigError(f"--resume {resume} is not a run directory (it does not exist or is a file)")
        return resume
    if not out:
        raise ConfigError("--out is required (or --resume DIR to continue a run)")
    from .train import refuse_existing_run  # imports torch: only for the commands that train

    refuse_existing_run(out)
    check_writable(out, "--out", directory=True)
    return out


def check_writable(target: str, flag: str, directory: bool = False) -> None:
    """Refuse, before any work, an output path that cannot be written: a file where a directory is to be made
    (or the reverse), a missing or read-only parent, or a parent that is a file."""
    path = Path(target).absolute()
    if path.exists():
        if path.is_dir() != directory:
            raise ConfigError(f"cannot write {target}: it is a {'file' if directory else 'directory'}; choose another {flag}")
        place = path if directory else path.parent
    else:
        place = next(parent for parent in path.parents if parent.exists())
        if not place.is_dir():
            raise ConfigError(f"cannot write {target}: {place} is a file, not a directory; choose another {flag}")
        if not directory and place != path.parent:
            raise ConfigError(f"cannot write {target}: the directory {path.parent} does not exist; choose another {flag}")
    if not os.access(place, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {target}: {place} is not writable by this user; choose another {flag}")


def saved_training_config(run_dir) -> dict:
    """The training options a run in run_dir was started with ({} when its last/ has none to read: resuming
    then refuses that checkpoint with the reason)."""
    from .checkpoint import read_config, read_directory_path

    try:
        saved = read_config(read_directory_path(Path(run_dir) / "last"), kind=None).get("training_config")
    except (GenseqError, OSError):
        return {}
    return saved if isinstance(saved, dict) else {}


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
