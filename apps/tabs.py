"""The tabs: a generic one built from any task's declaration, and the completion tab with next-word suggestions.

TAB_BUILDERS names the tasks whose tab has a layout of its own; every other
task, a third party's included, gets generic_tab. Each task's main event has the
API name of the task (/completion, /captioning, ...), which stays stable.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import gradio as gr

from genseq.plugins import TaskInfo

from .access import ServerAccess
from .controls import input_control, label_of, option_control, output_control
from .handlers import TaskCall, make_handler
from .pool import TaskPool

CONCURRENCY_ID = "tasks"  # every task event shares one limit, so tabs cannot add up to more than the cores
EXAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")
APP_EXAMPLES = Path(__file__).parent / "examples"


def api_name(task_name: str) -> str:
    return re.sub(r"\W", "_", task_name)


def element(info: TaskInfo, name: str) -> str:
    """The HTML id of a tab's component: "completion-prompt", "captioning-run-button" ..."""
    return f"{info.name}-{name}"


def build_tab(info: TaskInfo, pool: TaskPool, model_override: str | None, concurrency: int,
              access: ServerAccess) -> None:
    """The tab's contents, built inside the current gr.Tab."""
    TAB_BUILDERS.get(info.name, generic_tab)(info, pool, model_override, concurrency, access)


def generic_tab(info: TaskInfo, pool: TaskPool, model_override: str | None, concurrency: int, access: ServerAccess,
                hidden_options: tuple = (), option_values: dict | None = None) -> None:
    """Inputs, Run and Stop, options (hidden_options left out, option_values as initial values), model; outputs."""
    task_class, option_values = info.task_class, option_values or {}
    shown_options = [option for option in task_class.options if option.name not in hidden_options]
    gr.Markdown(task_class.description)
    with gr.Row():
        with gr.Column():
            inputs = [input_control(item, element(info, item.name)) for item in task_class.inputs]
            with gr.Row():
                run = gr.Button("Run", variant="primary", elem_id=element(info, "run-button"))
                stop = gr.Button("Stop", variant="stop", elem_id=element(info, "stop-button"))
            example_inputs(info, inputs)
            with gr.Accordion("Options", open=False, visible=bool(shown_options)):
                options = [option_control(option, option_values.get(option.name), element(info, option.name))
                           for option in shown_options]
            model = model_picker(access, model_override, element(info, "model"))
        with gr.Column():
            outputs = output_controls(info)
    call = TaskCall(info, pool, list(task_class.inputs), shown_options, list(task_class.outputs), access)
    event = run.click(make_handler(call), [*inputs, *options, model], outputs, api_name=api_name(info.name),
                      preprocess=False, concurrency_id=CONCURRENCY_ID, concurrency_limit=concurrency)
    stop.click(None, cancels=[event], api_visibility="private")


def output_controls(info: TaskInfo) -> list:
    """One component per output; JSON details fold away when the task has something friendlier to show."""
    outputs = info.task_class.outputs
    foldable = any(item.kind != "json" for item in outputs)
    controls = []
    for item in outputs:
        if item.kind == "json" and foldable:
            with gr.Accordion(f"{label_of(item.name)} (details)", open=False):
                controls.append(output_control(item, element(info, item.name)))
        else:
            controls.append(output_control(item, element(info, item.name)))
    return controls


def example_inputs(info: TaskInfo, inputs: list) -> None:
    """Example images for a task with one image input (see example_images)."""
    kinds = [item.kind for item in info.task_class.inputs]
    files = example_images(info) if kinds == ["image"] else []
    if files:
        gr.Examples([[path] for path in files], inputs=inputs, examples_per_page=12)


def example_images(info: TaskInfo) -> list[str]:
    """Images in an `examples/` folder beside the task's module, and in apps/examples/TASK/."""
    folders = [APP_EXAMPLES / info.name]
    try:
        folders.append(Path(inspect.getfile(info.task_class)).parent / "examples")
    except TypeError:  # a class without a source file ships no examples
        pass
    files = [path for folder in folders if folder.is_dir() for path in folder.iterdir()]
    return sorted(str(path) for path in files if path.suffix.lower() in EXAMPLE_SUFFIXES)


def model_picker(access: ServerAccess, model_override: str | None, elem_id: str) -> gr.Dropdown:
    """The task's default model, or a checkpoint directory: one in the server's models directory, or one typed in."""
    choices = [("default model", "")] + [(path, path) for path in access.checkpoint_dirs()]
    if model_override:
        choices.insert(0, (model_override, model_override))
    return gr.Dropdown(choices, value=model_override or "", allow_custom_value=True, label="model", elem_id=elem_id,
                       info=f"the task's default model, or a checkpoint in the server's {access.models_dir}/ folder")


# ---- completion ---------------------------------------------------------------------
PRIMARY_COMPLETION_OPTIONS = ("max_new_tokens", "temperature", "top_k", "top_p", "num_beams", "seed")
SUGGEST_OPTION, SUGGESTIONS_SHOWN = "suggest", 5


def completion_tab(info: TaskInfo, pool: TaskPool, model_override: str | None, concurrency: int,
                   access: ServerAccess) -> None:
    """Prompt, streamed continuation with Stop, sampling controls, and next words that click into the prompt."""
    task_class = info.task_class
    if not _declares_completion(task_class):  # a changed declaration still gets a working (generic) tab
        return generic_tab(info, pool, model_override, concurrency, access)
    outputs = {item.name: item for item in task_class.outputs}
    generate_options = [option for option in task_class.options if option.name != SUGGEST_OPTION]
    suggest_option = next(option for option in task_class.options if option.name == SUGGEST_OPTION)
    gr.Markdown(task_class.description)
    with gr.Row():
        with gr.Column(scale=3):
            prompt = input_control(task_class.inputs[0], element(info, "prompt"))
            with gr.Row():
                generate = gr.Button("Generate", variant="primary", elem_id=element(info, "generate-button"))
                stop = gr.Button("Stop", variant="stop", elem_id=element(info, "stop-button"))
                suggest = gr.Button("Suggest next words", elem_id=element(info, "suggest-button"))
            text = output_control(outputs["text"], element(info, "text"))
            suggestions = gr.Label(label="next words (click one to add it to the prompt)", elem_id=element(info, "suggestions"))
            with gr.Accordion("completions (details)", open=False):
                completions = output_control(outputs["completions"], element(info, "completions"))
        with gr.Column(scale=2):
            controls = {option.name: option_control(option, elem_id=element(info, option.name))
                        for option in generate_options if option.name in PRIMARY_COMPLETION_OPTIONS}
            with gr.Accordion("More options", open=False):
                controls |= {option.name: option_control(option, elem_id=element(info, option.name))
                             for option in generate_options if option.name not in PRIMARY_COMPLETION_OPTIONS}
                count = option_control(suggest_option, SUGGESTIONS_SHOWN, element(info, SUGGEST_OPTION))
            model = model_picker(access, model_override, element(info, "model"))
    ordered = [controls[option.name] for option in generate_options]
    generate_call = TaskCall(info, pool, [task_class.inputs[0]], generate_options,
                             [outputs["text"], outputs["completions"]], access)
    suggest_call = TaskCall(info, pool, [task_class.inputs[0]], [suggest_option], [outputs["suggestions"]], access)
    shared = dict(preprocess=False, concurrency_id=CONCURRENCY_ID, concurrency_limit=concurrency)
    event = generate.click(make_handler(generate_call), [prompt, *ordered, model], [text, completions],
                           api_name=api_name(info.name), **shared)
    stop.click(None, cancels=[event], api_visibility="private")
    suggest_handler = make_handler(suggest_call)
    suggest.click(suggest_handler, [prompt, count, model], suggestions, api_name=f"{api_name(info.name)}_suggest", **shared)
    suggestions.select(append_word, prompt, prompt, queue=False, api_visibility="private").then(
        suggest_handler, [prompt, count, model], suggestions, api_visibility="private", **shared
    )


def _declares_completion(task_class) -> bool:
    outputs = {item.name for item in task_class.outputs}
    options = {option.name for option in task_class.options}
    return [item.kind for item in task_class.inputs] == ["text"] and {"text", "completions", "suggestions"} <= outputs \
        and SUGGEST_OPTION in options


def append_word(prompt: str, selected: gr.SelectData) -> str:
    """The prompt with the picked word: it completes a word the prompt ends in, or follows after a space."""
    word = str(selected.value)
    partial = re.search(r"[\w'’-]*$", prompt).group()
    if partial and word.startswith(partial):
        return prompt[: len(prompt) - len(partial)] + word + " "
    separator = "" if not prompt or prompt[-1].isspace() else " "
    return prompt + separator + word + " "


# ---- captioning -----------------------------------------------------------------------
def captioning_tab(info: TaskInfo, pool: TaskPool, model_override: str | None, concurrency: int,
                   access: ServerAccess) -> None:
    """The generic tab with the attention picture on; attention_map is left out, as it writes a file on the server."""
    generic_tab(info, pool, model_override, concurrency, access, hidden_options=("attention_map",),
                option_values={"attention": True})


TAB_BUILDERS = {"completion": completion_tab, "captioning": captioning_tab}
