"""A task's tab, built from its declaration alone: the app names no task.

A heading and the task's description; the card of its model (models.py); the
inputs with the declared examples, named; Run, and Stop when the task streams;
a button per declared action (while one runs, Run and the actions are disabled,
and Stop shows only while a streaming Run is under way); the primary options in
view, the advanced ones under "More options", server-side ones never (one whose
choices come from the model is a drop-down of the picked model's, hidden when it
has none); the model box. Beside them (below them on a phone, scrolled to after
a click) a line that says how the last run ended and one component per output;
a task whose text output continues its input shows the two as one text with the
continuation marked. The main event has the task's name as its API name
(/completion, /captioning ...) and each action TASK_ACTION (/completion_suggest);
both stay stable.
"""

from __future__ import annotations

import re

import gradio as gr

from genseq.plugins import TaskInfo
from genseq.tasks import Action, Option, Output, label_of

from .access import ServerAccess
from .controls import input_control, option_control, output_control, sentence_case
from .handlers import TaskCall, make_handler
from .models import card_reader, card_text, choices_reader, model_picker, option_choices_reader
from .page import ECHO, scroll_to
from .pool import TaskPool

CONCURRENCY_ID = "tasks"  # every task event shares one limit, so tabs cannot add up to more than the cores
RUNNING, STOPPED = "Running…", "Stopped: what was written so far is kept."
PRIVATE = dict(queue=False, api_visibility="private")  # the page's own bookkeeping, not part of the API


def api_name(*names: str) -> str:
    return "_".join(re.sub(r"\W", "_", name) for name in names)


def element(info: TaskInfo, name: str) -> str:
    """The HTML id of a tab's component: "completion-prompt", "captioning-run-button" ..."""
    return f"{info.name}-{name}"


def tab_title(info: TaskInfo) -> str:
    """The tab's name, in one style for every task: the task's name in words, capitalised ("Completion")."""
    return sentence_case(label_of(info.name))


def build_tab(info: TaskInfo, pool: TaskPool, model_override: str | None, concurrency: int,
              access: ServerAccess) -> tuple[gr.Dropdown, object] | None:
    """The tab's contents, built inside the current gr.Tab; returns its model box and the handler that lists the
    box's models anew (for the page's load event), or None when it has no model box."""
    task_class = info.task_class
    options = [option for option in task_class.options if not option.server_side]
    gr.Markdown(f"## {tab_title(info)}\n\n{task_class.description}")
    card = gr.Markdown(card_text(task_class.model_card(model_override), default=True), elem_id=element(info, "card"),
                       elem_classes="model-card") if task_class.model_kinds != () or model_override else None
    with gr.Row(equal_height=False):
        with gr.Column():
            inputs = {item.name: input_control(item, element(info, item.name)) for item in task_class.inputs}
            with gr.Row():
                run = gr.Button("Run", variant="primary", elem_id=element(info, "run-button"))
                stop = gr.Button("Stop", variant="stop", visible=False, elem_id=element(info, "stop-button")) \
                    if task_class.streams() else None
                buttons = [gr.Button(action.label, elem_id=element(info, f"{action.name}-button"))
                           for action in task_class.actions]
            example_inputs(info, list(inputs.values()))
            option_controls = build_options(info, options, model_override)
            model = model_picker(task_class, access, model_override, element(info, "model"))
        with gr.Column(elem_id=element(info, "results")):
            notice = gr.Markdown("", elem_id=element(info, "notice"), elem_classes="notice")
            output_controls, echo = build_outputs(info)
    wiring = Wiring(info, pool, access, inputs, option_controls, model, output_controls,
                    dict(preprocess=False, concurrency_id=CONCURRENCY_ID, concurrency_limit=concurrency),
                    RunButtons([run, *buttons], stop, notice))
    claimed = {name for action in task_class.actions for name in (*action.options, *action.outputs)}
    main_outputs = [item for item in task_class.outputs if item.name not in claimed]
    event = wiring.connect(run, [option for option in options if option.name not in claimed], main_outputs,
                           api_name(info.name), element(info, "results"), stoppable=True)
    if stop is not None:
        stop.click(wiring.buttons.stopped, None, wiring.buttons.with_notice, cancels=[event], **PRIVATE)
    for action, button in zip(task_class.actions, buttons):
        wiring.connect_action(action, button)
    if echo is not None:
        wiring.echo(echo)
    if model is None:
        return None
    if card is not None:
        model.change(card_reader(task_class, access, model_override), model, card, **PRIVATE)
    for option in options:
        if option.choices_from_model:
            control = option_controls[option.name]
            model.change(option_choices_reader(task_class, access, model_override, option), [model, control], control,
                         **PRIVATE)
    return model, choices_reader(task_class, access, model_override)


def build_options(info: TaskInfo, options: list[Option], model_override: str | None) -> dict[str, gr.components.Component]:
    """One control per option: the primary ones in view, the advanced ones under "More options"; an option whose
    choices come from the model offers those of the tab's starting model (model_override, or the default)."""
    def control(option: Option):
        choices = info.task_class.option_choices(option.name, model_override) if option.choices_from_model else ()
        return option_control(option, element(info, option.name), choices)

    controls = {option.name: control(option) for option in options if not option.advanced}
    advanced = [option for option in options if option.advanced]
    with gr.Accordion("More options", open=False, visible=bool(advanced)):
        controls |= {option.name: control(option) for option in advanced}
    return controls


def build_outputs(info: TaskInfo) -> tuple[dict[str, gr.components.Component], gr.HTML | None]:
    """One component per output, and the echo: JSON details fold away when the task has something friendlier to
    show, and a text output that continues an input is shown with it in the echo (Wiring.echo) instead of alone."""
    task_class = info.task_class
    foldable = any(item.kind != "json" for item in task_class.outputs)
    picked = {action.outputs[0]: action.continues for action in task_class.actions if action.continues}
    echoed = echo_output(info)
    labels = {item.name: item.shown_label for item in task_class.inputs}
    controls, echo = {}, None
    for item in task_class.outputs:
        if item.advanced or (item.kind == "json" and foldable):
            with gr.Accordion(sentence_case(f"{item.shown_label} (details)"), open=False):
                controls[item.name] = output_control(item, element(info, item.name))
        elif item is echoed:
            echo = gr.HTML("", label=sentence_case(f"{labels[task_class.echo_input]} and {item.shown_label} (marked)"),
                           show_label=True,
                    container=True, js_on_load=None, elem_id=element(info, "echo"))
            controls[item.name] = output_control(item, element(info, item.name), visible="hidden")
        else:
            label = f"{item.shown_label} (click one to add it to the {labels[picked[item.name]]})" \
                if item.name in picked else None
            controls[item.name] = output_control(item, element(info, item.name), label)
    return controls, echo


def echo_output(info: TaskInfo) -> Output | None:
    """The text output that continues the task's echo_input, or None."""
    task_class = info.task_class
    first = task_class.outputs[0] if task_class.outputs else None
    return first if task_class.echo_input and first is not None and first.kind == "text" else None


class RunButtons:
    """A tab's buttons that start a run, its Stop (None when the task does not stream) and its notice line.

    While a run is under way the starters are disabled, so a second click cannot queue
    a second run behind it, Stop shows only while there is something to stop, and the
    notice says it runs; when it ends, the notice says how.
    """

    def __init__(self, starters: list[gr.Button], stop: gr.Button | None, notice: gr.Markdown):
        self.starters, self.stop, self.notice = starters, stop, notice
        self.components = [*starters, stop] if stop is not None else list(starters)
        self.with_notice = [*self.components, notice]

    def running(self, stoppable: bool):
        """The update that disables the starters and shows Stop when stoppable (an event's handler)."""
        def running():
            return [*self._updates(interactive=False, stop_visible=stoppable), RUNNING]
        return running

    def idle(self):
        return self._updates(interactive=True, stop_visible=False)

    def stopped(self):
        return [*self.idle(), STOPPED]

    def failed(self, notice: str):
        """After an error, whose own message says what went wrong, or after a Stop, which says so in the notice."""
        return [*self.idle(), notice if notice == STOPPED else ""]

    def _updates(self, interactive: bool, stop_visible: bool) -> list[gr.Button]:
        updates = [gr.Button(interactive=interactive) for _ in self.starters]
        return (updates + [gr.Button(visible=stop_visible)]) if self.stop is not None else updates


class Wiring:
    """The events of one tab: which components each event reads and writes, and the handler behind it."""

    def __init__(self, info: TaskInfo, pool: TaskPool, access: ServerAccess, inputs: dict, options: dict, model,
                 outputs: dict, shared: dict, buttons: RunButtons):
        self.info, self.pool, self.access, self.shared, self.buttons = info, pool, access, shared, buttons
        self.inputs, self.options, self.model, self.outputs = inputs, options, model, outputs
        self.ending = gr.State("")  # how the last run ended, for the notice (API clients do not see a State)

    def connect(self, button: gr.Button, options: list[Option], outputs: list[Output], api: str, shown: str,
                stoppable: bool = False):
        """A click on button runs the task with these options and shows these outputs, bringing the element shown
        into view; returns the task's event (the one with the API name, which a Stop cancels)."""
        started = button.click(self.buttons.running(stoppable), None, self.buttons.with_notice, **PRIVATE)
        button.click(None, None, None, js=scroll_to(shown), **PRIVATE)
        return self.run_after(started, options, outputs, api_name=api)

    def run_after(self, started, options: list[Option], outputs: list[Output], **named):
        """The task's event, run after the event started, with the buttons set back however it ends."""
        handler, components = self.handler(options, outputs)
        shown = [self.outputs[item.name] for item in outputs] + [self.ending]
        event = started.then(handler, components, shown, **named, **self.shared)
        # Gradio's page follows a failed event with its .failure listeners alone, not with its .then ones as
        # documented, so the buttons come back through one listener for each ending. Stop sets them back itself,
        # which does not depend on how the cancelled event reports its end.
        event.success(self.finished, self.ending, self.buttons.with_notice, **PRIVATE)
        event.failure(self.buttons.failed, self.buttons.notice, self.buttons.with_notice, **PRIVATE)
        return event

    def finished(self, ending: str):
        return [*self.buttons.idle(), ending]

    def handler(self, options: list[Option], outputs: list[Output]):
        """The handler and the components it reads: inputs, options, then the model box when there is one."""
        picks_model = self.model is not None
        call = TaskCall(self.info, self.pool, list(self.info.task_class.inputs), options, outputs, self.access,
                        picks_model, notice=True)
        components = [*self.inputs.values(), *(self.options[option.name] for option in options)]
        return make_handler(call), (components + [self.model] if picks_model else components)

    def connect_action(self, action: Action, button: gr.Button) -> None:
        """The action's button; a label picked from its output continues its input, then the action runs again."""
        task_class = self.info.task_class  # an option and an output may share a name (captioning's attention)
        options_by_name = {option.name: option for option in task_class.options}
        outputs_by_name = {item.name: item for item in task_class.outputs}
        options = [options_by_name[name] for name in (*action.options, *action.shares)
                   if not options_by_name[name].server_side]
        outputs = [outputs_by_name[name] for name in action.outputs]
        self.connect(button, options, outputs, api_name(self.info.name, action.name),
                     element(self.info, outputs[0].name if outputs else "results"))
        if action.continues is None:
            return
        target = self.inputs[action.continues]
        picked = self.outputs[action.outputs[0]]
        started = picked.select(continue_text, target, target, **PRIVATE).then(
            self.buttons.running(False), None, self.buttons.with_notice, **PRIVATE)
        self.run_after(started, options, outputs, api_visibility="private")

    def echo(self, shown: gr.HTML) -> None:
        """The text output that continues an input shows with it as one text; a changed input clears both."""
        source = self.inputs[self.info.task_class.echo_input]
        text = self.outputs[echo_output(self.info).name]
        text.change(None, [source, text], shown, js=ECHO, **PRIVATE)
        source.change(None, None, [text, self.buttons.notice], js="() => ['', '']", **PRIVATE)


def example_inputs(info: TaskInfo, inputs: list) -> None:
    """The task's declared examples, under its inputs, each on a button of its name; a click fills them in."""
    task_class = info.task_class
    examples = task_class.example_inputs()
    if examples and inputs:
        names = [item.name for item in task_class.inputs]
        rows = [[example.get(name) for name in names] for example in examples]
        gr.Examples(rows, inputs=inputs, example_labels=task_class.example_labels(), examples_per_page=12,
                    label="Examples (click one to fill it in)")


def continue_text(text: str, selected: gr.SelectData) -> str:
    """The text with the picked word: it completes a word the text ends in, or follows after a space."""
    word = str(selected.value)
    partial = re.search(r"[\w'’-]*$", text).group()
    if partial and word.startswith(partial):
        return text[: len(text) - len(partial)] + word + " "
    separator = "" if not text or text[-1].isspace() else " "
    return text + separator + word + " "
