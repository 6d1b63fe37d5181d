"""The Train tab: a model trained on the visitor's texts in a process of its own (genseq.jobs), with a progress
bar, a live loss plot, Stop, and a few samples at the end; the new model then joins the model boxes.

The tab names no task: it trains the tasks that declare text_training (genseq.tasks.TextTraining), with a picker
when there are several. Its three events keep stable API names, each answering with the job as a dict
(genseq.jobs.Job.to_dict(), plus the task and the samples): /train_start, /train_poll (the page calls it every
POLL_SECONDS while a job runs, and when it opens, so a reload finds a running job again) and /train_stop.
Uploads are read and checked (size, UTF-8 text, not empty) before a job starts. Training is off, the tab saying
why and the events refusing, when the server listens beyond this machine without allow_training.
"""

from __future__ import annotations

import html
import inspect
import logging
import threading
from pathlib import Path

import gradio as gr

from genseq import ConfigError, GenseqError
from genseq.jobs import ACTIVE, JobManager, read_text_upload, size_text
from genseq.plugins import TaskInfo
from genseq.tasks import Option

from .access import ServerAccess
from .controls import LEFT_OUT, option_control, read_option
from .images import page_error
from .pool import TaskPool
from .tabs import PRIVATE, tab_title

TRAIN_TAB = "Train"
POLL_SECONDS = 2.0
START_PARAMETERS = ["files", "text", "name", "start", "minutes", "valid_share", "task"]  # then the options
BUDGET_MINUTES = (1, 30, 5)  # the slider's lowest, highest and starting value
VALID_SHARE = Option("valid_share", 0.1, "the last part of each text held out to measure the model on",
                     minimum=0.05, maximum=0.5, label="validation share")
DEFAULT_MAX_UPLOAD_MB = 20
OFF = ("Training from the browser is off: this server listens beyond this machine; start it with "
       "genseq serve --allow-training to allow it.")
log = logging.getLogger(__name__)


class Training:
    """What the tab needs on the server: the trainable tasks, the jobs of the models directory, the limits."""

    def __init__(self, infos: list[TaskInfo], pool: TaskPool, access: ServerAccess,
                 max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, allow_training: bool = False):
        if not max_upload_mb > 0:
            raise ConfigError(f"max_upload_mb must be positive, not {max_upload_mb}")
        self.tasks = {tab_title(info): info for info in infos if info.ok and info.task_class.text_training}
        self.options: dict[str, Option] = {}  # every trainable task's, one control each (the first task's wins)
        for info in self.tasks.values():
            for option in info.task_class.text_training.options:
                self.options.setdefault(option.name, option)
        self.pool, self.access, self.allow_training = pool, access, allow_training
        self.max_bytes = int(max_upload_mb * 2**20)
        self.jobs = JobManager(access.models_dir)
        self.refusal: str | None = None  # why training is off, once launch() knows where the server listens
        self._samples: dict[Path, list[str]] = {}
        self._sampling = threading.Lock()  # pages polling at once make a job's samples once

    def listen_on(self, loopback: bool) -> None:
        """Training is off beyond this machine unless the server was started with allow_training."""
        self.refusal = None if loopback or self.allow_training else OFF

    def check_allowed(self) -> None:
        if self.refusal:
            raise page_error(self.refusal)

    # ---- the events' handlers -------------------------------------------------------------------
    def start(self, files, text, name, start, minutes, valid_share, task, *values):
        """Check the texts and settings, start the job, and answer with it."""
        self.check_allowed()
        info = self._task(task)
        declaration = info.task_class.text_training
        budget = self._budget(minutes)
        texts = [*(self._read_upload(path) for path in _paths(files)), *([text] if text and text.strip() else [])]
        if not texts:
            raise page_error("Add your texts: upload .txt files or paste text.")
        total = sum(len(item.encode("utf-8")) for item in texts)
        if total > self.max_bytes:
            raise page_error(f"the texts hold {size_text(total)}; this server takes at most {size_text(self.max_bytes)}: "
                             "upload less")
        declared = {option.name for option in declaration.options}
        options = {option.name: read_option(option, raw) for option, raw in zip(self.options.values(), values)
                   if option.name in declared}
        options = {name: value for name, value in options.items() if value is not LEFT_OUT}
        try:
            share = VALID_SHARE.check(valid_share)
            job = self.jobs.start(str(name or ""), texts, lambda data, valid, out: declaration.command(
                info.name, start or next(iter(declaration.starts)), data, valid, out, budget, options),
                budget=budget, valid_share=share, about={"task": info.name})
        except (GenseqError, TypeError, ValueError) as error:
            raise page_error(_in_page_words(str(error), declaration.options)) from None
        return self._answer(job)

    def poll(self):
        """The job a page shows: the running one, else the last one started; {} when there is none."""
        if self.refusal:
            return {"status": "off", "error": self.refusal}
        job = self.jobs.current()
        return self._answer(job) if job is not None else {}

    def stop(self):
        self.check_allowed()
        try:
            return self._answer(self.jobs.stop())
        except GenseqError as error:
            raise page_error(str(error)) from None

    # ---- helpers ----------------------------------------------------------------------------------
    def _task(self, title) -> TaskInfo:
        if not self.tasks:
            raise page_error("No task here can be trained from the browser.")
        if not title:
            return next(iter(self.tasks.values()))
        if title not in self.tasks:
            raise page_error(f"task {title} cannot be trained here; choose one of {', '.join(self.tasks)}")
        return self.tasks[title]

    @staticmethod
    def _budget(minutes) -> float:
        """Seconds of training for the slider's minutes, which an API client may send out of its range."""
        low, high, _ = BUDGET_MINUTES
        try:
            if low <= float(minutes) <= high:
                return float(minutes) * 60
        except (TypeError, ValueError):
            pass
        raise page_error(f"the time budget must be {low} to {high} minutes, not {minutes!r}")

    def _read_upload(self, path: str) -> str:
        try:
            return read_text_upload(path, Path(path).name, self.max_bytes)
        except GenseqError as error:
            raise page_error(str(error)) from None

    def _answer(self, job) -> dict:
        answer = job.to_dict()
        info = next((info for info in self.tasks.values() if info.name == job.about.get("task")), None)
        answer["task"] = tab_title(info) if info else ""
        answer["samples"] = self._samples_of(job, info) if job.has_model and not job.active and info else []
        return answer

    def _samples_of(self, job, info: TaskInfo) -> list[str]:
        """The declared samples of the ended job's model, made once per job (a few seconds)."""
        with self._sampling:
            if job.directory not in self._samples:
                self.pool.forget(str(job.directory))  # loaded while it trained, it holds an earlier best model
                self._samples[job.directory] = [self._sample(info, job.directory, values)
                                                for values in info.task_class.text_training.samples]
            return self._samples[job.directory]

    def _sample(self, info: TaskInfo, directory: Path, values: dict) -> str:
        task_class = info.task_class
        inputs = {item.name for item in task_class.inputs}
        task = self.pool.get(task_class, str(directory))
        try:
            result = task.run({name: value for name, value in values.items() if name in inputs},
                              **{name: value for name, value in values.items() if name not in inputs})
        except Exception as error:  # a sample is a bonus: the model is trained and saved either way
            log.error("a sample of %s failed", directory, exc_info=error)
            return f"(no sample: {error})"
        text = next((item.name for item in task_class.outputs if item.kind == "text"), None)
        return str(result.get(text, "")) if text else ""


def _paths(files) -> list[str]:
    """The server-side paths of the uploaded files (Gradio's file paths, or the {"path": ...} an API client sends)."""
    items = files if isinstance(files, (list, tuple)) else [files] if files else []
    return [item.get("path") if isinstance(item, dict) else str(item) for item in items if item]


def _in_page_words(message: str, options: tuple[Option, ...]) -> str:
    for option in (*options, VALID_SHARE):
        message = message.replace(f"option {option.name} ", f"option {option.shown_label} ")
    return message


# ---- the tab ------------------------------------------------------------------------------------------------------
def build_training_tab(training: Training) -> gr.JSON:
    """The tab's contents, inside the current gr.Tab; returns the component holding the job shown."""
    gr.Markdown(f"## {TRAIN_TAB}\n\nTeach a model to write like your texts: upload them or paste them, pick where to "
                "start and how long to train, then press Start. Training runs on this server while you keep using "
                "the other tabs; the new model then appears in the model box.")
    if not training.tasks:
        gr.Markdown("No task here can be trained from the browser.")
    with gr.Row(equal_height=False):
        with gr.Column():
            inputs = job_inputs(training)
            with gr.Row():
                start_button = gr.Button("Start", variant="primary", elem_id="train-start-button")
                stop_button = gr.Button("Stop", variant="stop", visible=False, elem_id="train-stop-button")
        with gr.Column():
            shown = [gr.Markdown("", elem_id="train-status", elem_classes="notice"),
                     gr.HTML("", elem_id="train-progress"),
                     gr.LinePlot(x="step", y="loss", color="split", label="Loss", elem_id="train-losses",
                                 x_title="step", y_title="loss"),
                     gr.Markdown("", elem_id="train-samples")]
            with gr.Accordion("Job (details)", open=False):
                job = gr.JSON(label="Job", elem_id="train-job")
    timer = gr.Timer(POLL_SECONDS, active=False)
    start_button.click(_named(training.start, list(inputs)), list(inputs.values()), job, api_name="train_start",
                       concurrency_limit=None)
    inputs["task"].change(_starts_of(training), inputs["task"], inputs["start"], **PRIVATE)
    stop_button.click(training.stop, None, job, api_name="train_stop", concurrency_limit=None)
    timer.tick(training.poll, None, job, api_name="train_poll", concurrency_limit=None)
    job.change(show_job, job, [*shown, start_button, stop_button, timer], **PRIVATE)
    return job


def job_inputs(training: Training) -> dict[str, gr.components.Component]:
    """The controls of a new job, by the start handler's parameter names (its API's): the texts, the name, the
    start, the budget, then under "More options" the validation share and the tasks' options."""
    tasks = list(training.tasks)
    starts = list(training.tasks[tasks[0]].task_class.text_training.starts) if tasks else []
    low, high, value = BUDGET_MINUTES
    inputs = {
        "task": gr.Dropdown(tasks, value=tasks[0] if tasks else None, label="Task", visible=len(tasks) > 1,
                            elem_id="train-task"),
        "files": gr.File(file_count="multiple", file_types=[".txt"], label="Your texts (.txt files)",
                         elem_id="train-files"),
        "text": gr.Textbox(label="Or paste text", lines=6, elem_id="train-text",
                           placeholder="Paste a few pages or more of the kind of text the model should write"),
        "name": gr.Textbox(label="Name of the new model", elem_id="train-name",
                           placeholder="letters (empty: the date and time)"),
        "start": gr.Radio(starts, value=starts[0] if starts else None, label="Start from", elem_id="train-start"),
        "minutes": gr.Slider(low, high, value=value, step=1, label="Time budget (minutes)", elem_id="train-minutes",
                             info="training stops then, or earlier when it stops improving"),
    }
    with gr.Accordion("More options", open=False):
        inputs["valid_share"] = option_control(VALID_SHARE, "train-valid_share")
        inputs |= {name: option_control(option, f"train-{name}") for name, option in training.options.items()}
    return {name: inputs[name] for name in (*START_PARAMETERS, *training.options)}


def connect_training(app: gr.Blocks, training: Training, job: gr.JSON, model_boxes: list) -> None:
    """A page shows the current job when it opens, and once a job has saved a model every model box lists it
    (model_boxes: each tab's (box, the handler listing its models))."""
    app.load(training.poll, None, job, **PRIVATE)
    if model_boxes:
        job.change(_model_lists(model_boxes), job, [box for box, _ in model_boxes], **PRIVATE)


def _named(handler, names: list[str]):
    """handler with these API parameter names, each of which an API client may leave out."""
    def start(*values):
        return handler(*values)

    start.__signature__ = inspect.Signature(
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for name in names])
    return start


def _starts_of(training: Training):
    """The handler that offers the starting points of the task picked."""
    def starts(title):
        choices = list(training.tasks[title].task_class.text_training.starts) if title in training.tasks else []
        return gr.Radio(choices=choices, value=choices[0] if choices else None)
    return starts


def _model_lists(model_boxes: list):
    """The handler that lists every model box's models anew once a job has saved a model."""
    def refresh(answer):
        if not answer or answer.get("status") in ACTIVE or not answer.get("has_model"):
            return [gr.skip() for _ in model_boxes]
        return [list_models() for _, list_models in model_boxes]
    return refresh


# ---- what the page shows of a job --------------------------------------------------------------------------------
def show_job(answer: dict):
    """Status line, progress bar, loss plot, samples, Start, Stop and the poll timer for the job answered."""
    answer = answer or {}
    active = answer.get("status") in ACTIVE
    off = answer.get("status") == "off"
    return (status_line(answer), progress_bar(answer) if answer and not off else "", loss_table(answer),
            sample_text(answer.get("samples") or []), gr.Button(interactive=not (active or off)),
            gr.Button(visible=active and answer.get("status") != "stopping"), gr.Timer(active=active))


def status_line(answer: dict) -> str:
    name, status = f"**{answer.get('name', '')}**", answer.get("status")
    where = f"the {answer['task']} tab's model box" if answer.get("task") else "the model box"
    lines = {
        None: "No model has been trained here yet.",
        "off": answer.get("error", ""),
        "queued": f"Starting {name}…",
        "running": f"Training {name}…" if answer.get("step") else f"Training {name}: preparing the texts…",
        "stopping": f"Stopping {name} after its current step…",
        "finished": f"Finished: {name} is in {where}.",
        "stopped": f"Stopped: the best model so far, {name}, is in {where}." if answer.get("has_model")
        else f"Stopped {name} before its first validation, so it saved no model.",
        "failed": f"Failed: {answer.get('error', '')}",
    }
    return lines.get(status, "")


def progress_bar(answer: dict) -> str:
    """A bar of the budget spent, with the steps and minutes in words."""
    fraction, elapsed, budget = answer.get("fraction", 0), answer.get("elapsed", 0), answer.get("budget", 0)
    words = f"step {answer.get('step', 0):,} · {_clock(elapsed)} of {_clock(budget)} trained"
    return (f'<progress value="{fraction:.4f}" max="1" style="width:100%" aria-label="training progress">'
            f"</progress><div>{html.escape(words)}</div>")


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


def loss_table(answer: dict):
    """The losses as the plot takes them: one row per (step, loss, split)."""
    import pandas as pd

    losses = answer.get("losses") or {}
    rows = [(step, loss, split) for split in ("train", "valid") for step, loss in losses.get(split, [])]
    return pd.DataFrame(rows, columns=["step", "loss", "split"])


def sample_text(samples: list[str]) -> str:
    if not samples:
        return ""
    quoted = "\n\n".join(f"> {html.escape(sample).strip() or '(empty)'}".replace("\n", "\n> ") for sample in samples)
    return f"**Samples from the new model:**\n\n{quoted}"
