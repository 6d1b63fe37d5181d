"""`genseq generate`: run a task on one input or a batch, with flags from the tasks' declarations.

`--task` (default: completion) picks the task. Each input of a task is a flag
(`--prompt`, `--image`; repeat it for a batch) and each option a typed flag,
so a new task plugin gets its flags with no change here. Text streams to the
terminal when the task can stream; `--json` prints the task's JSON document.
A bad item of a batch is reported on stderr while the others still run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import warnings

from . import add_device_flag, one_line, path
from .task_args import add_task_arguments, collect_batch, collect_options, render

DEFAULT_TASK = "completion"


def add_parser(subparsers) -> None:
    from ..plugins import discover

    parser = subparsers.add_parser(
        "generate", help="run a task (default: continue a prompt)",
        description="Run a task on one input or a batch. Each task adds the flags of its inputs and options.",
    )
    parser.add_argument("--task", default=DEFAULT_TASK, help=f"the task to run (default: {DEFAULT_TASK}; see genseq tasks)")
    parser.add_argument("--model", type=path, help="checkpoint directory or Hugging Face Hub id (default: the task's embedded model)")
    add_device_flag(parser)
    parser.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                        help="print text as it is generated (default: on for one input of a task whose first output is text, "
                             "off with --json)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # `genseq tasks` reports duplicate registrations
        task_classes = [info.task_class for info in discover() if info.ok]
    task_classes.sort(key=lambda task_class: task_class.name != DEFAULT_TASK)  # its defaults show in --help
    flag_notes = add_task_arguments(parser, task_classes)
    parser.set_defaults(run=run, flag_notes=flag_notes)


def run(args) -> int:
    from ..errors import ConfigError
    from ..plugins import get_task_info, run_guarded
    from ..train import resolve_device

    info = get_task_info(args.task)
    task_class = info.task_class
    for note in args.flag_notes.get(task_class.name, []):
        print(f"genseq: note: {note}", file=sys.stderr)
    options = collect_options(args, task_class)
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
    elif not streaming:
        _print_results(task_class, batch, results)
    return 1 if failed else 0


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
    model is reported before the input is echoed; an error after that ends the
    printed line first, so that its message starts a line of its own.
    """
    name = task_class.outputs[0].name
    partials = task.stream(inputs, **options)
    result = next(partials, {})
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
            label = next(iter(inputs.values()))
            print(f"{'' if index == 0 else chr(10)}== {label if isinstance(label, str) else index} ==")
        if echo and first:
            print(inputs[echo] + (result.get(first) or ""))
        rest = render(task_class, result, skip=(first,) if echo and first else ())
        if rest:
            print(rest)
