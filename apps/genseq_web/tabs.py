"""A task's tab, built from its declaration alone: the app names no task.

Inputs with the declared examples; Run, and Stop when the task streams; a button
per declared action (while one runs, Run and the actions are disabled, and Stop
shows only while a streaming Run is under way); the options (advanced ones under
"More options", server-side ones never); a model box offering the checkpoints of
the kinds the task loads; one component per output. The main event has the task's name as its API name
(/completion, /captioning ...) and each action TASK_ACTION (/completion_suggest);
both stay stable.
"""

from __future__ import annotations

import re

import gradio as gr

from genseq.plugins import TaskInfo
from genseq.tasks import Action, Option, Output

from .access import ServerAccess
from .controls import input_control, label_of, option_control, output_control
from .handlers import TaskCall, make_handler
from .pool import TaskPool

CONCURRENCY_ID = "tasks"  # every task event shares one limit, so tabs cannot add up to more than the cores


def api_name(*names: str) -> str:
    return "_".join(re.sub(r"\W", "_", name) for name in names)


def element(info: TaskInfo, name: str) -> str:
    """The HTML id of a tab's component: "completion-prompt", "captioning-run-button" ..."""
    return f"{info.name}-{name}"


def build_tab(info: TaskInfo, pool: TaskPool, model_override: str | None, concurrency: int,
              access: ServerAccess) -> None:
    """The tab's contents, built inside the current gr.Tab."""
    task_class = info.task_class
    options = [option for option in task_class.options if not option.server_side]
    gr.Markdown(task_class.description)
    with gr.Row():
        with gr.Column():
            inputs = {item.name: input_control(item, element(info, item.name)) for item in task_class.inputs}
            with gr.Row():
                run = gr.Button("Run", variant="primary", elem_id=element(info, "run-button"))
                stop = gr.Button("Stop", variant="stop", visible=False, elem_id=element(info, "stop-button")) \
                    if task_class.streams() else None
                buttons = [gr.Button(action.label, elem_id=element(info, f"{action.name}-button"))
                           for action in task_class.actions]
            example_inputs(info, list(inputs.values()))
            option_controls = build_options(info, options)
            model = model_picker(access, task_class.model_kinds, model_override, element(info, "model"))
        with gr.Column():
            output_controls = build_outputs(info)
    wiring = Wiring(info, pool, access, inputs, option_controls, model, output_controls,
                    dict(preprocess=False, concurrency_id=CONCURRENCY_ID, concurrency_limit=concurrency),
                    RunButtons([run, *buttons], stop))
    claimed = {name for action in task_class.actions for name in (*action.options, *action.outputs)}
    event = wiring.connect(run, [option for option in options if option.name not in claimed],
                           [item for item in task_class.outputs if item.name not in claimed], api_name(info.name),
                           stoppable=True)
    if stop is not None:
        stop.click(wiring.buttons.idle, None, wiring.buttons.components, cancels=[event], queue=False,
                   api_visibility="private")
    for action, button in zip(task_class.actions, buttons):
        wiring.connect_action(action, button)


def build_options(info: TaskInfo, options: list[Option]) -> dict[str, gr.components.Component]:
    """One control per option: the primary ones in view, the advanced ones under "More options"."""
    controls = {option.name: option_control(option, element(info, option.name))
                for option in options if not option.advanced}
    advanced = [option for option in options if option.advanced]
    with gr.Accordion("More options", open=False, visible=bool(advanced)):
        controls |= {option.name: option_control(option, element(info, option.name)) for option in advanced}
    return controls


def build_outputs(info: TaskInfo) -> dict[str, gr.components.Component]:
    """One component per output; JSON details fold away when the task has something friendlier to show."""
    outputs = info.task_class.outputs
    foldable = any(item.kind != "json" for item in outputs)
    picked = {action.outputs[0]: action.continues for action in info.task_class.actions if action.continues}
    controls = {}
    for item in outputs:
        if item.kind == "json" and foldable:
            with gr.Accordion(f"{label_of(item.name)} (details)", open=False):
                controls[item.name] = output_control(item, element(info, item.name))
        else:
            label = f"{label_of(item.name)} (click one to add it to the {label_of(picked[item.name])})" \
                if item.name in picked else None
            controls[item.name] = output_control(item, element(info, item.name), label)
    return controls


class RunButtons:
    """A tab's buttons that start a run, and its Stop (None when the task does not stream).

    While a run is under way the starters are disabled, so a second click cannot queue
    a second run behind it, and Stop shows only while there is something to stop.
    """

    def __init__(self, starters: list[gr.Button], stop: gr.Button | None):
        self.starters, self.stop = starters, stop
        self.components = [*starters, stop] if stop is not None else list(starters)

    def running(self, stoppable: bool):
        """The update that disables the starters and shows Stop when stoppable (an event's handler)."""
        def running():
            return self._updates(interactive=False, stop_visible=stoppable)
        return running

    def idle(self):
        return self._updates(interactive=True, stop_visible=False)

    def _updates(self, interactive: bool, stop_visible: bool) -> list[gr.Button]:
        updates = [gr.Button(interactive=interactive) for _ in self.starters]
        return (updates + [gr.Button(visible=stop_visible)]) if self.stop is not None else updates


class Wiring:
    """The events of one tab: which components each event reads and writes, and the handler behind it."""

    def __init__(self, info: TaskInfo, pool: TaskPool, access: ServerAccess, inputs: dict, options: dict, model,
                 outputs: dict, shared: dict, buttons: RunButtons):
        self.info, self.pool, self.access, self.shared, self.buttons = info, pool, access, shared, buttons
        self.inputs, self.options, self.model, self.outputs = inputs, options, model, outputs

    def connect(self, button: gr.Button, options: list[Option], outputs: list[Output], api: str,
                stoppable: bool = False):
        """A click on button runs the task with these options and shows these outputs; returns the task's event
        (the one with the API name, which a Stop cancels)."""
        started = button.click(self.buttons.running(stoppable), None, self.buttons.components, queue=False,
                               api_visibility="private")
        return self.run_after(started, options, outputs, api_name=api)

    def run_after(self, started, options: list[Option], outputs: list[Output], **named):
        """The task's event, run after the event started, with the buttons set back however it ends."""
        handler, components = self.handler(options, outputs)
        event = started.then(handler, components, [self.outputs[item.name] for item in outputs], **named, **self.shared)
        # Gradio's page follows a failed event with its .failure listeners alone, not with its .then ones as
        # documented, so the buttons come back through one listener for each ending. Stop sets them back itself,
        # which does not depend on how the cancelled event reports its end.
        for ending in (event.success, event.failure):
            ending(self.buttons.idle, None, self.buttons.components, queue=False, api_visibility="private")
        return event

    def handler(self, options: list[Option], outputs: list[Output]):
        """The handler and the components it reads: inputs, options, then the model box when there is one."""
        picks_model = self.model is not None
        call = TaskCall(self.info, self.pool, list(self.info.task_class.inputs), options, outputs, self.access,
                        picks_model)
        components = [*self.inputs.values(), *(self.options[option.name] for option in options)]
        return make_handler(call), (components + [self.model] if picks_model else components)

    def connect_action(self, action: Action, button: gr.Button) -> None:
        """The action's button; a label picked from its output continues its input, then the action runs again."""
        task_class = self.info.task_class  # an option and an output may share a name (captioning's attention)
        options_by_name = {option.name: option for option in task_class.options}
        outputs_by_name = {item.name: item for item in task_class.outputs}
        options = [options_by_name[name] for name in action.options if not options_by_name[name].server_side]
        outputs = [outputs_by_name[name] for name in action.outputs]
        self.connect(button, options, outputs, api_name(self.info.name, action.name))
        if action.continues is None:
            return
        target = self.inputs[action.continues]
        picked = self.outputs[action.outputs[0]]
        started = picked.select(continue_text, target, target, queue=False, api_visibility="private").then(
            self.buttons.running(False), None, self.buttons.components, queue=False, api_visibility="private")
        self.run_after(started, options, outputs, api_visibility="private")


def example_inputs(info: TaskInfo, inputs: list) -> None:
    """The task's declared examples, under its inputs; a click fills them in."""
    examples = info.task_class.example_inputs()
    if examples and inputs:
        names = [item.name for item in info.task_class.inputs]
        rows = [[example.get(name) for name in names] for example in examples]
        gr.Examples(rows, inputs=inputs, examples_per_page=12)


def model_picker(access: ServerAccess, kinds: tuple[str, ...] | None, model_override: str | None,
                 elem_id: str) -> gr.Dropdown | None:
    """The task's default model, or a checkpoint of a kind it loads: one the server was started with, one in the
    server's models directory, or one typed in; None for a task that loads no checkpoint."""
    if kinds == () and not model_override:
        return None
    choices = [("default model", "")] + [(path, path) for path in access.checkpoint_dirs(kinds)]
    if model_override:
        choices.insert(0, (model_override, model_override))
    return gr.Dropdown(choices, value=model_override or "", allow_custom_value=True, label="model", elem_id=elem_id,
                       info=f"the task's default model, or a checkpoint in the server's {access.models_dir}/ folder")


def continue_text(text: str, selected: gr.SelectData) -> str:
    """The text with the picked word: it completes a word the text ends in, or follows after a space."""
    word = str(selected.value)
    partial = re.search(r"[\w'’-]*$", text).group()
    if partial and word.startswith(partial):
        return text[: len(text) - len(partial)] + word + " "
    separator = "" if not text or text[-1].isspace() else " "
    return text + separator + word + " "
