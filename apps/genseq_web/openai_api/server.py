"""The models the API offers, and how a request runs on them within the web app's limits.

A model is a checkpoint the web app may load too (ServerAccess): "default", the
default task's model, and each checkpoint the server was started with or finds
in its models directory, by its directory's name (its path works as well). The
task that serves it is found from the checkpoint's kind, never by name: a usable
task that takes that kind, continues a text input and answers with text, the
default task first. Requests share the web app's models (one TaskPool) and its
limits: the prompt size, and at most `concurrency` requests running with
`queue_size` waiting; past that a request is refused with 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import anyio
import gradio as gr

from genseq import GenseqError
from genseq.checkpoint_config import read_labels
from genseq.plugins import DEFAULT_TASK, TaskInfo, run_guarded
from genseq.tasks import Task

from ..access import ServerAccess, _shown, checkpoint_kind
from ..handlers import UPDATE_INTERVAL, on_one_thread, unexpected_error
from ..pool import TaskPool
from .bodies import OPTION_OF_FIELD, Sampling
from .errors import ApiError
from .responses import TextShape, finish_reason, usage
from .scoring import count_tokens, parts_of, score_tokens

DEFAULT_MODEL = "default"
_END = object()


# ---- which task serves a checkpoint ---------------------------------------------------------------------------
def text_input(task_class: type[Task]):
    return next((item for item in task_class.inputs if item.kind == "text"), None)


def text_output(task_class: type[Task]):
    return next((item for item in task_class.outputs if item.kind == "text"), None)


def continues_text(task_class: type[Task]) -> bool:
    """Whether the task takes one text (every input is text) and answers with text."""
    inputs_are_text = all(item.kind == "text" for item in task_class.inputs)
    return inputs_are_text and text_input(task_class) is not None and text_output(task_class) is not None


def text_task(infos: list[TaskInfo], kind: str | None) -> TaskInfo | None:
    """The task that continues text with checkpoints of this kind: one declaring the kind before one taking any,
    the default task before the others."""
    fitting = [info for info in infos if info.ok and continues_text(info.task_class)
               and (info.task_class.model_kinds is None or kind in info.task_class.model_kinds)]
    fitting.sort(key=lambda info: (info.task_class.model_kinds is None, info.name != DEFAULT_TASK, info.name))
    return fitting[0] if fitting else None


def request_options(task_class: type[Task]) -> list[str]:
    """The options a client may set: the main run's (an action's own options belong to its button), none server-side."""
    reserved = {name for action in task_class.actions for name in action.options}
    return [option.name for option in task_class.options if not option.server_side and option.name not in reserved]


# ---- the models on offer -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServedModel:
    id: str
    directory: str | None  # what the task loads: None for its own default model
    kind: str | None
    info: TaskInfo
    config_dir: str | None  # where its config.json is read from (the default model's may be unknown)

    def card(self) -> dict:
        """Its /v1/models entry: OpenAI's fields, and genseq's kind, task and style labels."""
        return {"id": self.id, "object": "model", "created": _created(self.config_dir), "owned_by": "genseq",
                "kind": self.kind, "task": self.info.name, "styles": read_labels(self.config_dir)}


def _created(directory: str | None) -> int:
    try:
        return int((Path(directory) / "config.json").stat().st_mtime) if directory else 0
    except OSError:
        return 0


# ---- the queue -------------------------------------------------------------------------------------------------------
class Limiter:
    """At most concurrency requests run at once and queue_size wait for a turn; one more is refused (429)."""

    def __init__(self, concurrency: int, queue_size: int):
        self.concurrency, self.queue_size, self.waiting, self.running = concurrency, queue_size, 0, 0
        self._turns: asyncio.Semaphore | None = None  # made in the server's event loop, on first use

    def refuse_when_full(self) -> None:
        if self._turns is not None and self._turns.locked() and self.waiting >= self.queue_size:
            raise ApiError(429, f"this server is busy: {self.concurrency} requests are running and {self.waiting} "
                                "waiting, its limit; try again in a moment")

    @contextlib.asynccontextmanager
    async def turn(self):
        """Wait for a turn to run (or be refused at once when the queue is full), and hold it until the block ends."""
        if self._turns is None:
            self._turns = asyncio.Semaphore(self.concurrency)
        self.refuse_when_full()
        self.waiting += 1
        try:
            await self._turns.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self._turns.release()


# ---- a request -----------------------------------------------------------------------------------------------------
@dataclass
class Job:
    """A checked request: the model, the texts to continue and the task's options."""

    model: ServedModel
    body: Sampling
    texts: list[str]
    options: dict
    fields: dict[str, str]  # task option -> the request field that set it, for messages in the client's words

    @property
    def task_class(self) -> type[Task]:
        return self.model.info.task_class

    def streamed_live(self) -> bool:
        """Whether the task streams these options (else the whole text comes at the end, as one delta)."""
        return self.task_class.streams() and self.task_class.stream_refusal(self.task_class.check_options(self.options)) is None

    def in_client_words(self, message: str) -> str:
        """message with each task option the client set through an OpenAI field named by that field."""
        renamed = {option: field for option, field in self.fields.items() if option != field}
        if not renamed:
            return message
        return re.sub(rf"\b(?:{'|'.join(map(re.escape, renamed))})\b", lambda found: renamed[found.group()], message)


@dataclass
class Counts:
    """The tokens of a streamed response so far, for its usage."""

    prompt_tokens: int = 0
    generated: int = 0


class OpenAIServer:
    """The API's side of a running app: its models, the shared TaskPool, the server's limits and queue."""

    def __init__(self, infos: list[TaskInfo], pool: TaskPool, access: ServerAccess, overrides: dict[str, str],
                 concurrency: int, queue_size: int):
        self.infos, self.pool, self.access, self.overrides = infos, pool, access, overrides
        self.limiter = Limiter(concurrency, queue_size)

    # ---- models
    def models(self) -> list[ServedModel]:
        found = {}
        default = self._default_model()
        if default is not None:
            found[default.id] = default
        for directory in self.access.models_for():
            if Path(directory).name not in found and (model := self._checkpoint(directory)) is not None:
                found[model.id] = model
        return list(found.values())

    def find(self, name: str) -> ServedModel:
        """The model a request names: an id /v1/models lists, or a checkpoint path the web app's model box takes."""
        if name == DEFAULT_MODEL and (default := self._default_model()) is not None:
            return default
        for directory in self.access.models_for():  # in the order models() lists them, reading only those named so
            if Path(directory).name == name and (model := self._checkpoint(directory)) is not None:
                return model
        refusal = ApiError(404, f"model {_shown(name)} is not one of this server's models; GET /v1/models lists them",
                           "model")
        try:
            directory = self.access.read_model(name)
        except gr.Error:
            raise refusal from None
        model = self._checkpoint(directory, name) if directory else None
        if model is None:
            raise ApiError(400, f"model {_shown(name)} holds a {checkpoint_kind(Path(directory))} checkpoint, which no "
                                "task here continues text with; GET /v1/models lists the ones that do", "model")
        return model

    def _default_model(self) -> ServedModel | None:
        info = next((info for info in self.infos if info.name == DEFAULT_TASK and info.ok), None)
        if info is None or not continues_text(info.task_class):
            return None
        override = self.overrides.get(DEFAULT_TASK)
        directory = self.access.read_model(override) if override else None
        config_dir = directory or _default_dir(info.task_class)
        kind = checkpoint_kind(Path(config_dir)) if config_dir else None
        return ServedModel(DEFAULT_MODEL, directory, kind, info, config_dir)

    def _checkpoint(self, directory: str, name: str | None = None) -> ServedModel | None:
        """The checkpoint in directory as a model called name (its directory's name by default), or None when no
        task continues text with its kind."""
        kind = checkpoint_kind(Path(directory))
        info = text_task(self.infos, kind) if kind else None
        if info is None:
            return None
        return ServedModel(name or Path(directory).name, self.access.read_model(directory), kind, info, directory)

    # ---- requests
    def prepare(self, body: Sampling) -> Job:
        """The Job of a request, every check that needs no model done: limits, fields and option values."""
        model = self.find(body.model)
        task_class = model.info.task_class
        texts = body.texts()
        what = body.text_name(text_input(task_class).name)
        for text in texts:
            self._check_text(what, text)
        allowed = request_options(task_class)
        options, fields = {}, {}
        for field, value in body.api_options().items():
            _set(options, fields, allowed, OPTION_OF_FIELD[field], field, value, model)
        for name, value in (body.model_extra or {}).items():
            _set(options, fields, allowed, name, name, value, model)
        for stop in options.get("stop", ()):
            self._check_text("a stop string", stop)
        job = Job(model, body, texts, options, fields)
        try:
            task_class.check_options(options)
        except GenseqError as error:
            raise ApiError(400, job.in_client_words(str(error))) from None
        return job

    def _check_text(self, what: str, text) -> None:
        try:
            self.access.check_text(what, text if isinstance(text, str) else "")
        except gr.Error as error:
            raise ApiError(400, error.message) from None

    async def complete(self, job: Job, shape: TextShape) -> dict:
        async with self.limiter.turn():
            return await anyio.to_thread.run_sync(self._complete, job, shape)

    def _complete(self, job: Job, shape: TextShape) -> dict:
        task = self._guarded(job, self.pool.get, job.task_class, job.model.directory)
        field = text_input(job.task_class).name
        results = self._guarded(job, task.run_batch, [{field: text} for text in job.texts], **job.options)
        model, tokenizer = parts_of(self._guarded(job, lambda: task.model))
        choices, generated = [], 0
        for text, result in zip(job.texts, results):
            for completion in self._completions(job, result):
                scores = self._scores(job, model, tokenizer, text, completion["tokens"])
                echoed = text if job.body.echo else ""
                choices.append(shape.choice(len(choices), echoed + completion["text"],
                                            finish_reason(completion["finish_reason"]), scores, len(echoed)))
                generated += len(completion["tokens"])
        return shape.response(choices, usage(sum(count_tokens(tokenizer, text) for text in job.texts), generated))

    async def stream(self, job: Job, shape: TextShape) -> AsyncIterator[dict]:
        """The response's chunks, made in a turn of the queue held until the stream ends or the client goes away."""
        async with self.limiter.turn():
            counts = Counts()
            for number, text in enumerate(job.texts):
                async for chunk in self._stream_one(job, shape, number * job.body.n, text, counts):
                    yield chunk
            if job.body.include_usage:
                yield shape.response([], usage(counts.prompt_tokens, counts.generated), streamed=True)

    async def _stream_one(self, job: Job, shape: TextShape, first_index: int, text: str, counts: Counts):
        """The chunks of one text: its deltas as they come, then each choice's end; counts adds its tokens."""
        task = await anyio.to_thread.run_sync(self._guarded, job, self.pool.get, job.task_class, job.model.directory)
        inputs, output, live = {text_input(job.task_class).name: text}, text_output(job.task_class).name, job.streamed_live()
        sent, last = "", None
        if job.body.echo:
            yield shape.response([shape.delta(first_index, text, True)], None, streamed=True)
        partials = on_one_thread(lambda: task.stream(inputs, **job.options), every=UPDATE_INTERVAL)
        try:
            while (partial := await anyio.to_thread.run_sync(self._guarded, job, next, partials, _END)) is not _END:
                last = self._checked_result(job, partial)
                current = partial.get(output) or ""
                if live and current.startswith(sent) and len(current) > len(sent):
                    yield shape.response([shape.delta(first_index, current[len(sent):], not sent)], None, streamed=True)
                    sent = current
        finally:
            partials.close()
        counts.prompt_tokens += count_tokens(parts_of(task.model)[1], text)  # loaded by now: no wait in the event loop
        for offset, completion in enumerate(self._completions(job, last or {})):
            rest = completion["text"][len(sent):] if offset == 0 and live else completion["text"]
            choices = [shape.delta(first_index + offset, rest, not (offset == 0 and sent))] if rest else []
            choices.append(shape.end(first_index + offset, finish_reason(completion["finish_reason"])))
            counts.generated += len(completion["tokens"])
            yield shape.response(choices, None, streamed=True)

    def _completions(self, job: Job, result: dict) -> list[dict]:
        """Each continuation of a result with its tokens and finish reason: the task's list of them (an output holding
        genseq's Completion records), or its text output as one continuation."""
        self._checked_result(job, result)
        for value in result.values():
            if isinstance(value, list) and value and all(isinstance(item, dict) and {"text", "tokens"} <= item.keys()
                                                         for item in value):
                return [{"finish_reason": None, **item} for item in value]
        return [{"text": result.get(text_output(job.task_class).name) or "", "tokens": [], "finish_reason": None}]

    def _scores(self, job: Job, model, tokenizer, text: str, tokens: list[int]):
        if not job.body.wants_logprobs:
            return None
        if model is None or tokenizer is None:
            raise ApiError(400, f"model {_shown(job.model.id)} is not a genseq language model, whose tokens could be "
                                "scored; ask without logprobs", "logprobs")
        style = job.options.get("style") or None
        return self._guarded(job, score_tokens, model, tokenizer, text, list(tokens), job.body.top_logprobs or 0, style)

    def _checked_result(self, job: Job, result: dict) -> dict:
        if isinstance(result.get("error"), str):  # a task may report a bad input in its result
            raise ApiError(400, job.in_client_words(result["error"]))
        return result

    def _guarded(self, job: Job, function, *args, **kwargs):
        """function's result; the task's own error as a 400 in the client's words, anything else as a 500."""
        info = job.model.info
        try:
            return run_guarded(info.name, info.distribution, function, *args, **kwargs)
        except GenseqError as error:
            cause = error.__cause__
            if cause is not None and not isinstance(cause, GenseqError):
                raise ApiError(500, unexpected_error(f"task {info.name}", cause).message) from error
            raise ApiError(400, job.in_client_words(str(error))) from error


def _set(options: dict, fields: dict, allowed: list[str], name: str, field: str, value, model: ServedModel) -> None:
    """options[name] = value, set by the request field `field`, once and only for an option the task has."""
    if name not in allowed:
        extra = "" if field in OPTION_OF_FIELD else "; extra fields are the task's options: " + ", ".join(allowed)
        raise ApiError(400, f"{field} is not an option of model {_shown(model.id)} (task {model.info.name}){extra}",
                       field)
    if name in options:
        raise ApiError(400, f"{field} and {fields[name]} both set {name}; send one of them", field)
    options[name], fields[name] = value, field


def _default_dir(task_class: type[Task]) -> str | None:
    """The checkpoint the task loads when given none, or None where it is not installed."""
    try:
        return task_class.default_model_dir()
    except (GenseqError, OSError):
        return None
