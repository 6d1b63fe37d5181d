"""`genseq generate`: run a task on one input or a batch, with flags from that task's declaration.

`--task` (default: completion) picks the task, and only then are its flags
built: each input a flag (`--prompt`, `--image`; repeat it for a batch) and
each option a typed flag, so a new task plugin gets its flags with no change
here and no task's declaration changes another's command line. Text streams
to the terminal when the task can stream; `--json` prints the task's JSON
document. A bad item of a batch is reported on stderr while the others run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import warnings

from . import Parser, one_line
from ..commands import add_device_flag, path
from ..plugins import DEFAULT_TASK
from .task_args import add_generate_flags, collect_batch, parse_task_options, render, task_flags



def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate", help="run a task (default: continue a prompt)", build=add_chosen_task_flags,
        description="Run a task on one input or a batch. The flags of its inputs and options are the task's own: "
                    "genseq generate --task NAME --help lists them.",
    )
    parser.add_argument("--task", default=DEFAULT_TASK, help=f"the task to run (default: {DEFAULT_TASK}; see genseq tasks)")
    parser.add_argument("--model", type=path, help="checkpoint directory or Hugging Face Hub id (default: the task's embedded model)")
    add_device_flag(parser)
    parser.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                        help="print text as it is generated (default: on for one input of a task whose first output is text, "
                             "off with --json)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(run=run)


def add_chosen_task_flags(parser, words: list[str]) -> None:
    """Add the flags of the task that --task names among words (the default task's when none does)."""
    from ..plugins import get_task_info

    chooser = Parser(prog=parser.prog, add_help=False)
    chooser.add_argument("--task", default=DEFAULT_TASK)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # `genseq tasks` reports duplicate registrations
        info = get_task_info(chooser.parse_known_args(words)[0].task)
    add_generate_flags(parser, info.task_class)
    parser.set_defaults(task_info=info, refuse_unknown=lambda unknown: refuse_unknown(info.task_class, unknown))


def refuse_unknown(task_class, unknown: list[str]) -> None:
    """Name the first flag that task_class does not take, with the flags it does take."""
    from ..errors import ConfigError

    given = next((word.partition("=")[0] for word in unknown if word.startswith("-")), None)
    if given is not None:
        raise ConfigError(f"task {task_class.name} has no flag {given}; its inputs and options are "
                          f"{', '.join(task_flags(task_class)) or 'none'} (see genseq generate --task {task_class.name} --help)")


def run(args) -> int:
    from ..errors import ConfigError
    from ..plugins import run_guarded
    from ..train import resolve_device

    info = args.task_info
    task_class = info.task_class
    options = parse_task_options(args, task_class)
    batch = collect_batch(args, task_class)
    task = task_class(model=args.model, device=str(resolve_device(args.device)))
    streaming = _wants_stream(args, task_class, len(batch), task_class.check_options(options))
    if streaming and args.json:
        raise ConfigError("--stream prints text as it grows and --json prints one document at the end; choose one")
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        if streaming:
            results = [run_guarded(info.name, info.distribution, _print_stream, task, task_class, batch[0], options)]
        else:
            results = run_guarded(info.name, info.distribution, task.run_batch, batch, **options)
    for note in notes:
        print(f"genseq: note: {note.message}", file=sys.stderr)
    failed = _report_errors(batch, results)
    if args.json:
        print(json.dumps(task.to_json(batch, results)))
    else:
        if not streaming:
            _print_results(task_class, batch, results)
        _print_notices(batch, results)
    return 1 if failed else 0


def _print_notices(batch: list[dict], results: list[dict]) -> None:
    """Each result's notice (the line the web app shows when a run ends), such as captioning's low confidence,
    after everything printed on stdout, which a terminal shows in the same place."""
    sys.stdout.flush()
    for index, (inputs, result) in enumerate(zip(batch, results)):
        if isinstance(result.get("notice"), str) and result["notice"]:
            where = f"{_item_label(inputs, index)}: " if len(batch) > 1 else ""
            print(f"genseq: note: {where}{result['notice']}", file=sys.stderr)


def _wants_stream(args, task_class, batch_size: int, options: dict) -> bool:
    """Whether to stream: asked for with --stream (refused where it cannot), else where one text can grow."""
    first_output_is_text = bool(task_class.outputs) and task_class.outputs[0].kind == "text"
    refusal = task_class.stream_refusal(options)
    if args.stream is None:
        return first_output_is_text and batch_size == 1 and not args.json and refusal is None
    if args.stream:
        from ..errors import ConfigError

        if batch_size > 1 or not first_output_is_text:
            raise ConfigError(f"--stream follows one text output; task {task_class.name} with this input cannot stream")
        if refusal:
            raise ConfigError(f"--stream cannot show task {task_class.name}'s text as it grows: {refusal}; "
                              "drop --stream or that option")
    return args.stream


def _print_stream(task, task_class, inputs: dict, options: dict) -> dict:
    """Print the first text output as it grows, then the other outputs; returns the final result.

    Nothing is printed before the first partial result, so that a bad option or
    model, or an input the task reports as an error, is said before anything is
    echoed; an error after that ends the printed line first, so that its message
    starts a line of its own.
    """
    name = task_class.outputs[0].name
    partials = task.stream(inputs, **options)
    result = next(partials, {})
    if result.get("error"):
        return result
    echo = getattr(task_class, "echo_input", None)
    if echo:
        print(inputs[echo], end="", flush=True)
    shown = ""
    try:
        for result in itertools.chain([result], partials):
            text = result.get(name) or ""
            if text.startswith(shown):
                print(text[len(shown):], end="", flush=True)
                shown = text
    except BaseException:
        print(flush=True)
        raise
    print()
    rest = render(task_class, result, skip=(name,))
    if rest:
        print(rest)
    return result


def _report_errors(batch: list[dict], results: list[dict]) -> bool:
    failed = False
    for result in results:
        if result.get("error"):
            print(f"genseq: error: {one_line(str(result['error']))}", file=sys.stderr)
            failed = True
    return failed


def _print_results(task_class, batch: list[dict], results: list[dict]) -> None:
    echo = getattr(task_class, "echo_input", None)
    first = task_class.outputs[0].name if task_class.outputs and task_class.outputs[0].kind == "text" else None
    for index, (inputs, result) in enumerate(zip(batch, results)):
        if result.get("error"):
            continue
        if len(batch) > 1:
            print(f"{'' if index == 0 else chr(10)}== {_item_label(inputs, index)} ==")
        if echo and first:
            print(inputs[echo] + (result.get(first) or ""))
        rest = render(task_class, result, skip=(first,) if echo and first else ())
        if rest:
            print(rest)


def _item_label(inputs: dict, index: int) -> str:
    """A batch item's header: its first input when that is a text or a path, else its number from 1."""
    first = next(iter(inputs.values()), None)
    return first if isinstance(first, str) and first.strip() else f"item {index + 1}"
