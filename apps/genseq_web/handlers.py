"""Event handlers: a click runs the task on the shared model and streams its outputs to the page.

A handler's parameters are named after the task's inputs and options, plus
`model` where the tab has a model box, so API clients can pass them by keyword and leave out the rest:
`client.predict(prompt="Once upon a", api_name="/completion")`. The task's own
errors reach the page as gr.Error with the task's message; anything else that
goes wrong reaches it as one sentence too (its traceback stays in the server log),
never as a traceback or a bare "Error". A task's message names its options and
inputs by the labels the page shows ("max new tokens", not max_new_tokens).
"""

from __future__ import annotations

import inspect
import logging
import queue
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import gradio as gr

from genseq import GenseqError
from genseq.memory import is_out_of_memory
from genseq.plugins import TaskInfo, run_guarded
from genseq.tasks import Input, Option, Output

from .access import ServerAccess
from .controls import LEFT_OUT, read_input, read_option, show_output
from .images import page_error
from .pool import TaskPool

MODEL_PARAMETER = "model"
UPDATE_INTERVAL = 0.05  # seconds between a stream's updates to the page: 20 a second reads as smooth
MAX_DETAIL = 200  # characters of an unexpected error's first line shown to the client (allocator dumps run to pages)
_END = object()
log = logging.getLogger(__name__)


@dataclass
class TaskCall:
    """One way of calling a task from a tab: which inputs, options and outputs its components carry."""

    info: TaskInfo
    pool: TaskPool
    inputs: list[Input]
    options: list[Option]
    outputs: list[Output]
    access: ServerAccess
    picks_model: bool = True  # the last value is the model box's (a task that loads no checkpoint has none)
    notice: bool = False  # each update ends with the line that says how the run ended (notice_of)

    @property
    def parameter_names(self) -> list[str]:
        names = [item.name for item in self.inputs] + [option.name for option in self.options]
        return names + [MODEL_PARAMETER] if self.picks_model else names

    def stream(self, values: tuple):
        """Outputs (one value per output component) for each partial result of the task."""
        inputs, options, model = self._read(values)
        task = self._guarded(self.pool.get, self.info.task_class, model)
        partials = on_one_thread(lambda: task.stream(inputs, **options), every=UPDATE_INTERVAL)
        start = time.perf_counter()
        try:
            while (partial := self._guarded(next, partials, _END)) is not _END:
                if isinstance(partial.get("error"), str):  # a task may report a bad item in its result
                    raise page_error(self.in_page_words(partial["error"]))
                shown = [show_output(item, partial.get(item.name)) for item in self.outputs]
                if self.notice:
                    shown.append(notice_of(partial, time.perf_counter() - start))
                yield shown[0] if len(shown) == 1 else tuple(shown)
        finally:  # a cancelled request stops the task at its next partial output
            partials.close()

    def _read(self, values: tuple) -> tuple[dict, dict, str | None]:
        raw_model = values[-1] if self.picks_model else None
        raw_inputs, raw_options = values[: len(self.inputs)], values[len(self.inputs) : len(self.inputs) + len(self.options)]
        inputs = {item.name: self._checked(f"the {item.shown_label}", read_input(item, raw))
                  for item, raw in zip(self.inputs, raw_inputs)}
        options = {option.name: read_option(option, self._checked(f"option {option.shown_label}", raw))
                   for option, raw in zip(self.options, raw_options)}
        options = {name: value for name, value in options.items() if value is not LEFT_OUT}
        return inputs, options, self.access.read_model(raw_model)

    def _checked(self, name: str, value):
        """value, once the text in it (a string, or a list of them from an API client) is within the server's limit;
        the task checks its type."""
        if isinstance(value, (list, tuple)):
            self.access.check_text(name, "".join(item for item in value if isinstance(item, str)))
        elif isinstance(value, str):
            self.access.check_text(name, value)
        return value

    def _guarded(self, function, *args, **kwargs):
        try:
            return run_guarded(self.info.name, self.info.distribution, function, *args, **kwargs)
        except GenseqError as error:
            cause = error.__cause__
            if cause is not None and not isinstance(cause, GenseqError):  # not the user's mistake: say what failed
                raise unexpected_error(f"task {self.info.name}", cause) from error
            raise page_error(self.in_page_words(str(error))) from error

    def in_page_words(self, message: str) -> str:
        """message with the task's option and input names written as the labels of their controls: a name with an
        underscore wherever it stands, a plain word only after "option" (so "stop" in a sentence stays a word)."""
        task_class = self.info.task_class
        labels = {item.name: item.shown_label for item in (*task_class.options, *task_class.inputs)
                  if item.name != item.shown_label}
        if not labels:
            return message
        names = "|".join(map(re.escape, sorted(labels, key=len, reverse=True)))
        coded = "|".join(re.escape(name) for name in labels if "_" in name) or "(?!)"
        return re.sub(rf"\b(option )({names})\b|\b()({coded})\b",
                      lambda found: (found.group(1) or found.group(3) or "") + labels[found.group(2) or found.group(4)],
                      message)


def notice_of(result: dict, seconds: float) -> str:
    """The line under a tab's outputs once a run ends: the task's own notice (a result's "notice", such as why a
    text ended) or just "Finished", with the time it took."""
    notice = result.get("notice")
    return f"{notice if isinstance(notice, str) and notice else 'Finished'} ({seconds:.1f} s)."


def on_one_thread(start: Callable[[], Iterator], every: float = 0.0) -> Iterator:
    """The items of start(), produced on one thread of their own, at most one per `every` seconds.

    Gradio resumes a streaming handler on whichever worker thread is free, but a
    plugin's generator may hold thread-local state across its yields (torch's
    inference or no-grad mode, for one), so it always resumes on the thread that
    began it. (genseq's own engine leaves that mode at every yield.) Each partial
    output is the full result so far, so when the page reads slower than the model
    writes, only the newest is handed on: a fast model updates the page at a pace
    the browser keeps up with, and the last result and any error always arrive.
    """
    items: queue.Queue = queue.Queue()
    stopped = threading.Event()

    def produce():
        try:
            for item in start():
                items.put((True, item))
                if stopped.is_set():
                    break
            items.put((True, _END))
        except BaseException as error:  # handed over and raised on the consumer's side
            items.put((False, error))

    threading.Thread(target=produce, daemon=True, name="genseq-task").start()
    waiting = None  # an end or an error read while skipping ahead, handed on after the item before it
    try:
        while True:
            ok, item = waiting or items.get()
            waiting = None
            if not ok:
                raise item
            if item is _END:
                return
            while waiting is None and not items.empty():
                entry = items.get_nowait()
                if entry[0] and entry[1] is not _END:
                    item = entry[1]
                else:
                    waiting = entry
            yield item
            if waiting is None:
                time.sleep(every)
    finally:
        stopped.set()


def make_handler(call: TaskCall):
    """A generator function Gradio can stream, with a signature naming its API parameters."""

    def handler(*values):
        try:
            yield from call.stream(values)
        except gr.Error:
            raise
        except Exception as error:  # the app's own code on a result it did not expect
            raise unexpected_error(f"the {call.info.name} tab", error) from error

    # Every parameter defaults to None so API clients may leave it out: Gradio then offers the
    # component's initial value (the task's default), and None means "default" to the readers.
    handler.__signature__ = inspect.Signature(
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for name in call.parameter_names]
    )
    handler.__name__ = f"run_{call.info.name}"
    return handler


def unexpected_error(what: str, error: BaseException) -> gr.Error:
    """One sentence for an exception no check foresaw; its traceback goes to the server log, not to the client."""
    log.error("%s failed", what, exc_info=error)
    if is_out_of_memory(error):
        return page_error(f"{what} ran out of memory on this request; try a shorter input or smaller settings "
                          "(fewer tokens, beams or sequences)")
    detail = (str(error).strip().splitlines() or [""])[0][:MAX_DETAIL]
    return page_error(f"{what} failed on this request ({type(error).__name__}{': ' + detail if detail else ''}); "
                      "the server's log has the details")


