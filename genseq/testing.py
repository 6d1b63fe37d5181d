"""Checks of a task plugin made the way genseq's front ends use it, for the plugin's own tests.

    from genseq.testing import check_task

    def test_my_task():
        check_task(MyTask, inputs=[{"text": "hello"}, {"text": "world"}], options={"top": 3})

The checks, in order (CHECKS): declaration (names, kinds, option defaults and
the contract version), flags (`genseq generate` builds the task's flags and
reads a command line back, and its train/eval flags build), run (predict on one
input), batch (predict on two inputs, one result each), stream (complete
results, the last one predict's), json (what `--json` prints) and web (the web
app built with only this task answers its endpoint and each action's, in this
process). A failed
check raises AssertionError naming the task and the check. TaskChecker runs the
checks one at a time on one loaded task, for one pytest test per check.
Importing this module imports no torch: the checks import what the task does.
"""

from __future__ import annotations

import argparse
import json
import keyword
import math
import os
import re
from typing import Any, Iterable

from .tasks import Input, Option, Output, Task

__all__ = ["CHECKS", "TaskChecker", "check_task"]

CHECKS = ("declaration", "flags", "run", "batch", "stream", "json", "web")
# The parameters of Task.run / run_batch / stream: an option of one of these names could not be passed.
CALL_PARAMETERS = frozenset({"self", "inputs", "batch"})
OPTION_TYPES = (bool, int, float, str, tuple, list)
TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_task(task_class: type[Task], inputs: list[dict], model: str | None = None, options: dict | None = None,
               checks: Iterable[str] = CHECKS, deterministic: bool = True) -> None:
    """Run the checks on task_class; raise AssertionError naming the first that fails.

    inputs: one or more input dicts ({input name: value}; an image as a file
    path); the first is run, streamed and sent to the web app, the first two
    make the batch. model: the checkpoint directory to load (None: the task's
    default model). options: the options of every call. deterministic: whether
    these options give the same output every time (a seed, or no sampling), so
    that the stream's last result and the web app's text must equal predict's.
    """
    checker = TaskChecker(task_class, inputs, model=model, options=options, deterministic=deterministic)
    for name in checks:
        checker.check(name)


class TaskChecker:
    """One task instance and its inputs, checked one named check at a time (the model loads once).

        checker = TaskChecker(MyTask, inputs=[{"text": "hello"}])

        @pytest.mark.parametrize("check", CHECKS)
        def test_my_task(check):
            checker.check(check)
    """

    def __init__(self, task_class: type[Task], inputs: list[dict], model: str | None = None,
                 options: dict | None = None, deterministic: bool = True):
        if not (isinstance(task_class, type) and issubclass(task_class, Task)):
            raise TypeError(f"check_task takes a genseq.tasks.Task subclass, not {task_class!r}")
        if not inputs or not all(isinstance(item, dict) for item in inputs):
            raise ValueError("check_task needs inputs: a list of one or more input dicts {input name: value}")
        self.task_class, self.inputs, self.model = task_class, list(inputs), model
        self.options, self.deterministic = dict(options or {}), deterministic
        self._task: Task | None = None
        self._result: dict | None = None

    @property
    def task(self) -> Task:
        if self._task is None:
            self._task = self.task_class(model=self.model)
        return self._task

    def check(self, name: str) -> None:
        """Run one check; its failure is an AssertionError saying which task, which check and why."""
        if name not in CHECKS:
            raise ValueError(f"there is no check {name!r}; the checks are {', '.join(CHECKS)}")
        label = f"task {self.task_class.name or self.task_class.__name__} fails the {name} check"
        try:
            getattr(self, f"_check_{name}")()
        except AssertionError as error:
            raise AssertionError(f"{label}: {error}") from None
        except Exception as error:  # the task raised: the check names the call that did
            raise AssertionError(f"{label}: {type(error).__name__}: {error}") from error

    # ---- the checks -------------------------------------------------------------------
    def _check_declaration(self) -> None:
        problems = _declaration_problems(self.task_class)
        assert not problems, "; ".join(problems)
        json.dumps(self.task_class.describe(), allow_nan=False)

    def _check_flags(self) -> None:
        _generate_round_trip(self.task_class, self.inputs[0], self.options)
        for command in ("train", "eval"):
            _command_flags(self.task_class, command)

    def _check_run(self) -> None:
        self._predicted()

    def _check_batch(self) -> None:
        batch = (self.inputs * 2)[:2]
        results = self.task.run_batch(batch, **self.options)
        assert isinstance(results, list) and len(results) == 2, (
            f"predict on a batch of 2 inputs returned {_described(results)}; it returns one result per input")
        for index, result in enumerate(results):
            _check_result(self.task_class, result, f"the result for batch item {index}")

    def _check_stream(self) -> None:
        partials = list(self.task.stream(self.inputs[0], **self.options))
        assert partials, "predict_stream yielded nothing; it yields at least the final result"
        for index, partial in enumerate(partials):
            _check_result(self.task_class, partial, f"partial result {index} of the stream")
        if self.deterministic:
            _check_same(self.task_class, partials[-1], self._predicted())

    def _check_json(self) -> None:
        batch = (self.inputs * 2)[:2]
        for items, results in (([batch[0]], [self._predicted()]), (batch, self.task.run_batch(batch, **self.options))):
            document = self.task.to_json(items, results)
            try:
                json.dumps(document, allow_nan=False)
            except (TypeError, ValueError) as error:
                raise AssertionError(f"to_json of {len(items)} result(s) is not a JSON document ({error}); "
                                     "--json prints it with json.dumps") from None

    def _check_web(self) -> None:
        shown = _web_round_trip(self.task_class, self.inputs[0], self.options, self.model)
        if self.deterministic:
            result = self._predicted()
            texts = {value for value in shown if isinstance(value, str)}
            claimed = {name for action in self.task_class.actions for name in action.outputs}  # not the main event's
            for output in self.task_class.outputs:
                value = result.get(output.name)
                if output.kind == "text" and output.name not in claimed and value and value not in texts:
                    raise AssertionError(f"the web app showed {sorted(texts)} but predict's {output.name} is {value!r}")

    # ---- shared ---------------------------------------------------------------------
    def _predicted(self) -> dict:
        """predict's result for the first input, made once and checked."""
        if self._result is None:
            result = self.task.run(self.inputs[0], **self.options)
            _check_result(self.task_class, result, "the result of predict")
            self._result = result
        return self._result


# ---- declaration ---------------------------------------------------------------------------
def _declaration_problems(task_class: type[Task]) -> list[str]:
    """Every problem of the task's declaration, each one sentence; [] for a good one. They include the checks
    genseq makes when it loads a plugin (genseq.plugins), which would list the task as failed or incompatible."""
    from .plugins import check_api_version, check_flag_names

    problems = []
    if not (isinstance(task_class.name, str) and TASK_NAME.fullmatch(task_class.name)):
        problems.append(f"name {task_class.name!r} is not a task name (letters, digits, _ . -, as an entry point's)")
    if not (isinstance(task_class.description, str) and task_class.description.strip()):
        problems.append("description is empty; give one line saying what the task does")
    problems += _port_problems("inputs", task_class.inputs, Input)
    problems += _port_problems("outputs", task_class.outputs, Output)
    problems += _port_problems("options", task_class.options, Option)
    if problems:  # the checks below read the declaration's parts
        return problems
    for check in (check_api_version, check_flag_names, _declared_names):
        problems += _raised(check, task_class)
    problems += [problem for option in task_class.options for problem in _option_problems(option)]
    problems += _echo_problems(task_class)
    return problems


def _raised(check, subject: Any) -> list[str]:
    """The message of what check(subject) raises, as a list of problems."""
    try:
        check(subject)
    except Exception as error:
        return [str(error)]
    return []


def _declared_names(task_class: type[Task]) -> None:
    """Examples and actions name only declared inputs, options and outputs; no option takes a parameter of run."""
    task_class.check_declaration()
    called = sorted(CALL_PARAMETERS.intersection(option.name for option in task_class.options))
    if called:
        raise ValueError(f"option names {', '.join(called)} are parameters of Task.run; rename them")


def _port_problems(role: str, ports: Any, kind: type) -> list[str]:
    if not isinstance(ports, tuple):
        return [f"{role} must be a tuple of {kind.__name__}, not {type(ports).__name__}"]
    if role == "outputs" and not ports:
        return ["outputs is empty; a task has at least one"]
    problems = [f"{role} holds {item!r}, which is not a genseq.tasks.{kind.__name__}"
                for item in ports if not isinstance(item, kind)]
    names = [item.name for item in ports if isinstance(item, kind)]
    problems += [f"{role[:-1]} name {name!r} is not a Python identifier; it is a keyword of the API and a flag"
                 for name in names if not (isinstance(name, str) and name.isidentifier()) or keyword.iskeyword(name)]
    problems += [f"{role[:-1]} {name!r} is declared twice" for name in sorted({n for n in names if names.count(n) > 1})]
    return problems


def _option_problems(option: Option) -> list[str]:
    if option.default is None and option.type is None:
        return [f"option {option.name} has the default None and no type; declare it as "
                f"Option({option.name!r}, None, ..., type=int) (or the type it takes)"]
    if option.value_type not in OPTION_TYPES:
        return [f"option {option.name} has the type {option.value_type.__name__}; "
                f"options are {', '.join(kind.__name__ for kind in OPTION_TYPES)}"]
    problems = []
    if option.minimum is not None and option.maximum is not None and option.minimum > option.maximum:
        problems.append(f"option {option.name} has minimum {option.minimum} above maximum {option.maximum}")
    try:
        checked = option.check(option.default)
        if checked != option.default and not (isinstance(checked, tuple) and list(checked) == option.default):
            problems.append(f"option {option.name}'s default {option.default!r} checks as {checked!r}; "
                            f"give the default as a {option.value_type.__name__}")
    except Exception as error:
        problems.append(f"option {option.name}'s default does not pass its own check: {error}")
    if option.app_default is not None:
        problems += _raised(option.check, option.app_default)
    return problems


def _echo_problems(task_class: type[Task]) -> list[str]:
    echo = task_class.echo_input
    if echo is None:
        return []
    texts = [item.name for item in task_class.inputs if isinstance(item, Input) and item.kind == "text"]
    first = task_class.outputs[0] if task_class.outputs else None
    if echo not in texts or not isinstance(first, Output) or first.kind != "text":
        return [f"echo_input {echo!r} must name a text input, continued by a first output of kind text"]
    return []


# ---- results -------------------------------------------------------------------------------
def _check_result(task_class: type[Task], result: Any, what: str) -> None:
    """A result is a dict with no error, holding at least one declared output, each of its declared kind."""
    assert isinstance(result, dict), f"{what} is {_described(result)}; it must be a dict keyed by output name"
    assert not result.get("error"), f"{what} is an error: {result['error']}"
    declared = [output for output in task_class.outputs if result.get(output.name) is not None]
    assert declared, (f"{what} holds none of the declared outputs "
                      f"({', '.join(output.name for output in task_class.outputs)}); its keys: {sorted(result)}")
    for output in declared:
        problem = _kind_problem(output.kind, result[output.name])
        assert problem is None, f"output {output.name} of {what} is {_described(result[output.name])}: {problem}"


def _kind_problem(kind: str, value: Any) -> str | None:
    """Why value is not an output of kind, or None."""
    if kind == "text":
        return None if isinstance(value, str) else "a text output is a str"
    if kind == "number":
        good = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if good else "a number output is an int or a float"
    if kind == "label":
        return _label_problem(value)
    if kind == "ranked":
        if not isinstance(value, list):
            return "a ranked output is a list of {'label', 'prob'} dicts, most likely first"
        return next((problem for problem in map(_label_problem, value) if problem), None)
    if kind == "image":
        if hasattr(value, "save") or (isinstance(value, (str, os.PathLike)) and os.path.isfile(value)):
            return None
        return "an image output is a PIL image or the path of an image file"
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        return f"a json output must be JSON-able ({error})"
    return None


def _label_problem(value: Any) -> str | None:
    if not (isinstance(value, dict) and "label" in value and isinstance(value.get("prob"), (int, float))):
        return "a label is a dict {'label': ..., 'prob': a number}"
    if not 0 <= value["prob"] <= 1:
        return f"a label's prob is a probability in [0, 1], not {value['prob']}"
    return None


def _check_same(task_class: type[Task], streamed: dict, predicted: dict) -> None:
    for output in task_class.outputs:
        if output.kind == "image":  # pictures are drawn anew; their content is the task's own business
            continue
        if not _same(streamed.get(output.name), predicted.get(output.name)):
            raise AssertionError(
                f"the stream's last result has {output.name} = {_described(streamed.get(output.name))} but predict "
                f"gives {_described(predicted.get(output.name))}; the last partial result is the final one "
                "(pass deterministic=False when these options sample without a seed)")


def _same(a: Any, b: Any) -> bool:
    """Equal, with floats equal to a relative 1e-5 (one input and a batch of it may sum in another order)."""
    if isinstance(a, float) or isinstance(b, float):
        numbers = isinstance(a, (int, float)) and isinstance(b, (int, float))
        return numbers and math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-8)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _described(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# ---- flags -----------------------------------------------------------------------------------
def _generate_round_trip(task_class: type[Task], inputs: dict, options: dict) -> None:
    """`genseq generate --task NAME`'s parser, with genseq's own flags and the task's, reads back the inputs and
    options as given."""
    from .cli import generate
    from .cli.task_args import add_generate_flags, parse_task_options

    parser = _command_parser(generate, "generate")
    try:
        add_generate_flags(parser, task_class)
    except argparse.ArgumentError as error:
        raise AssertionError(f"the task's flags clash with those of genseq generate: {error}") from None
    words = [word for name, value in inputs.items() for word in _flag_words(task_class, name, value)]
    words += [word for name, value in options.items() for word in _flag_words(task_class, name, value)]
    args = _parsed(parser, words)
    given = parse_task_options(args, task_class)
    assert task_class.check_options(given) == task_class.check_options(options), (
        f"genseq generate read the options {given} from {words}, not {options}")


def _flag_words(task_class: type[Task], name: str, value: Any) -> list[str]:
    """The command-line words that give value to the input or option name."""
    flag = f"--{name.replace('_', '-')}"
    option = next((option for option in task_class.options if option.name == name), None)
    if option is not None and option.value_type is bool:
        return [flag if value else f"--no-{name.replace('_', '-')}"]
    if isinstance(value, (list, tuple)):
        return [flag, *map(str, value)]
    return [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]


def _command_flags(task_class: type[Task], command: str) -> None:
    """The flags of `genseq train NAME` / `genseq eval NAME` build, beside those genseq adds."""
    from .cli import Parser, evaluate

    offered = task_class.trainable() if command == "train" else task_class.evaluable()
    if not offered:
        return
    parser = Parser(prog=f"genseq {command} {task_class.name}")
    try:
        if command == "train":
            task_class.add_train_arguments(parser)
        else:
            task_class.add_eval_arguments(parser)
            evaluate.add_json_flag(parser)
    except argparse.ArgumentError as error:
        raise AssertionError(f"the flags of genseq {command} {task_class.name} clash: {error}") from None


def _command_parser(module, name: str) -> argparse.ArgumentParser:
    """The parser of `genseq NAME` as module builds it, before the flags it adds for the task chosen."""
    from .cli import Parser

    commands = Parser(prog="genseq").add_subparsers(dest="command")
    module.add_parser(commands)
    return commands.choices[name]


def _parsed(parser: argparse.ArgumentParser, words: list[str]) -> argparse.Namespace:
    """words parsed, or an AssertionError with what the command line would print."""
    import contextlib
    import io

    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed):
            return parser.parse_args(words)
    except SystemExit:
        raise AssertionError(f"{parser.prog} refused {words}: {printed.getvalue().strip()}") from None


# ---- web app ---------------------------------------------------------------------------------
def _web_round_trip(task_class: type[Task], inputs: dict, options: dict, model: str | None) -> list:
    """Build the web app with only this task, call its endpoint and each action's in this process; return what
    the main endpoint shows last."""
    import tempfile

    from genseq_web import build_app
    from genseq_web.tabs import api_name

    from .plugins import TaskInfo

    info = TaskInfo(task_class.name, f"{task_class.__module__}:{task_class.__qualname__}", "genseq.testing", "",
                    task_class=task_class)
    app = build_app({task_class.name: model} if model else None, infos=[info])
    endpoints = {function.api_name: function for function in app.fns.values() if function.api_name}
    shown = []
    for name in [api_name(task_class.name), *(api_name(task_class.name, action.name) for action in task_class.actions)]:
        assert name in endpoints, f"the web app has no endpoint /{name}; it has /{', /'.join(sorted(endpoints))}"
        with tempfile.TemporaryDirectory() as folder:
            values = _web_values(task_class, endpoints[name], inputs, options, model, folder)
            try:
                shown.append(_run_coroutine(_call_endpoint(app, endpoints[name], values)))
            except Exception as error:
                message = getattr(error, "message", None) or str(error)
                raise AssertionError(f"the web app's /{name} endpoint failed: {message}") from error
    return shown[0]


def _web_values(task_class: type[Task], function, inputs: dict, options: dict, model: str | None, folder: str) -> list:
    """The endpoint's arguments, as an API client sends them, in the order of its parameters: inputs, options
    (None: the default) and the model box."""
    import inspect

    images = {item.name for item in task_class.inputs if item.kind == "image"}
    given = {**inputs, **options, "model": model}
    return [_image_file(given[name], folder) if name in images else _web_value(given.get(name))
            for name in inspect.signature(function.fn).parameters]


def _image_file(image: Any, folder: str) -> dict:
    """An image input as Gradio's FileData: a file path, or a PIL image first saved as a PNG file in folder."""
    if hasattr(image, "save"):
        path = os.path.join(folder, "image.png")
        image.save(path, format="PNG")
        image = path
    return {"path": os.fspath(image), "meta": {"_type": "gradio.FileData"}}


def _web_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return "\n".join(map(str, value))
    return value


def _run_coroutine(coroutine):
    """The coroutine's result; on a thread of its own when this one already runs an event loop (a notebook)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


async def _call_endpoint(app, function, values: list) -> list:
    """Drive the endpoint as Gradio's queue does: one call per partial output, each postprocessed for the page."""
    from gradio.state_holder import SessionState

    state, iterator, shown = SessionState(app), None, None
    while True:
        response = await app.process_api(block_fn=function, inputs=values, state=state, iterator=iterator,
                                         explicit_call=True)
        if not response["is_generating"]:
            return shown if shown is not None else response["data"]
        iterator, shown = response["iterator"], response["data"]
