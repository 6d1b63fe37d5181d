"""Task declarations to Gradio components, and values in both directions.

Each declared input, option and output kind maps to one component here. The
readers turn what the page or an API client sent into what the task expects,
and show_output turns a task's output into what its component displays, so a
new task gets working controls with no change to this file.
"""

from __future__ import annotations

import gradio as gr

from genseq.tasks import Input, Option, Output

from .images import read_image

LEFT_OUT = object()  # an option the user cleared: the task's default applies
IMAGE_SOURCES = ["upload", "webcam", "clipboard"]
NO_CHOICE = "(none)"  # how a drop-down of the model's choices shows the empty value: none of them
SLIDER_STEPS = 100  # a float slider moves in hundredths of its range
MAX_SLIDER_STOPS = 1000  # a whole-number range wider than this is typed: a slider's steps would be too fine to hit
# Gradio's own default adds "share", which uploads the picture to Hugging Face: nothing leaves this server.
PICTURE_BUTTONS = ["download", "fullscreen"]


def sentence_case(label: str) -> str:
    """A control's label as the page shows it, capitalised: "Max new tokens". (Gradio also reads a lowercase label
    that matches one of its own message ids, such as "image", as that message, and warns.)"""
    return label[:1].upper() + label[1:]


# ---- inputs --------------------------------------------------------------------
def input_control(item: Input, elem_id: str | None = None) -> gr.components.Component:
    if item.kind == "image":
        return gr.Image(label=sentence_case(item.shown_label), type="filepath", image_mode=None, sources=IMAGE_SOURCES,
                        height=320, buttons=PICTURE_BUTTONS, elem_id=elem_id)
    return gr.Textbox(label=sentence_case(item.shown_label), info=item.description or None,
                      placeholder=item.placeholder or None, lines=4, elem_id=elem_id)


def read_input(item: Input, raw):
    if item.kind == "image":
        return read_image(raw, item.shown_label)
    return "" if raw is None else str(raw)


# ---- options -------------------------------------------------------------------
def option_control(option: Option, elem_id: str | None = None,
                   model_choices: tuple[str, ...] = ()) -> gr.components.Component:
    """A control showing the option's starting value (Option.shown_default), help text and bounds; model_choices
    are those of the tab's starting model, for an option whose choices come from the model."""
    kind, shown = option.value_type, option.shown_default
    named = dict(label=sentence_case(option.shown_label), elem_id=elem_id)
    info = option.help
    if option.choices_from_model:
        return gr.Dropdown(**offered_choices(model_choices, shown), info=info, **named)
    if kind is bool:
        return gr.Checkbox(value=bool(shown), info=info, **named)
    if kind in (tuple, list) and option.choices is not None:
        return gr.CheckboxGroup(list(option.choices), value=list(shown or ()), info=info, **named)
    if option.choices is not None:
        return gr.Dropdown(choices=list(option.choices), value=shown, info=info, **named)
    if kind in (int, float) and shown is None:
        # gr.Number and gr.Slider show and send a number for an empty value, which would make "none" impossible
        # to choose.
        return gr.Textbox(value="", placeholder="none", info=info, **named)
    if kind in (int, float) and _slides(option):
        return _slider(option, shown, info, named)
    if kind in (int, float):
        top = option.shown_maximum
        return gr.Number(value=shown, info=info if top is None else f"{info} (up to {_number_text(top)})",
                         minimum=option.minimum, maximum=top, precision=_precision(kind),
                         step=1 if kind is int else 0.1, **named)
    if kind in (tuple, list):
        return gr.Textbox(value="\n".join(map(str, shown or ())), info=f"{info}; one per line", lines=2, **named)
    return gr.Textbox(value="" if shown is None else str(shown), info=info, **named)


def offered_choices(model_choices: tuple[str, ...], value: str) -> dict:
    """The drop-down of an option whose choices come from the model: "(none)" (the empty value) and the model's
    choices, value kept when the model offers it, shown only when it offers some (a model with no style labels)."""
    return dict(choices=[(NO_CHOICE, ""), *((choice, choice) for choice in model_choices)],
                value=value if value in model_choices else "", visible=bool(model_choices))


def _precision(kind: type) -> int | None:
    """Whole numbers for an int option: the API then types it as an integer, not a float."""
    return 0 if kind is int else None


def _slides(option: Option) -> bool:
    """Whether the option's control is a slider: a number bounded on both sides (in the app), in whole steps
    few enough to pick one."""
    top = option.shown_maximum
    if option.minimum is None or top is None:
        return False
    return option.value_type is float or top - option.minimum <= MAX_SLIDER_STOPS


def _slider(option: Option, value, info: str, named: dict) -> gr.Slider:
    top = option.shown_maximum
    step = 1 if option.value_type is int else (top - option.minimum) / SLIDER_STEPS
    # A slider cannot leave out its lower end, so an exclusive minimum starts one step above it.
    low = option.minimum + step if option.exclusive_minimum else option.minimum
    return gr.Slider(minimum=low, maximum=top, value=value, step=step, precision=_precision(option.value_type),
                     info=info, **named)


def _number_text(number: float) -> str:
    return f"{number:,}" if float(number).is_integer() else f"{number:g}"


def read_option(option: Option, raw):
    """The value to pass to the task, or LEFT_OUT for an emptied field; the task checks type and range."""
    if raw is None or raw == "":
        return LEFT_OUT
    if option.value_type in (tuple, list) and isinstance(raw, str):
        return tuple(line for line in raw.splitlines() if line)
    return raw


# ---- outputs -------------------------------------------------------------------
def output_control(item: Output, elem_id: str | None = None, label: str | None = None,
                   visible: bool | str = True) -> gr.components.Component:
    named = dict(label=sentence_case(label or item.shown_label), elem_id=elem_id, visible=visible)
    if item.kind == "text":
        return gr.Textbox(info=item.description or None, lines=6, max_lines=20, interactive=False, buttons=["copy"], **named)
    if item.kind in ("ranked", "label"):
        return gr.Label(**named)
    if item.kind == "number":
        return gr.Number(info=item.description or None, interactive=False, **named)
    if item.kind == "image":
        return gr.Image(format="png", interactive=False, buttons=PICTURE_BUTTONS, elem_classes="picture-output", **named)
    if item.kind == "table":  # columns as wide as their words, scrolling sideways in a narrow column
        return gr.Dataframe(interactive=False, wrap=False, show_search="none", buttons=["copy"], **named)
    return gr.JSON(**named)


def show_output(item: Output, value):
    """What the output's component displays for the task's value."""
    if value is None:
        return None
    if item.kind == "ranked":
        return confidences(value)
    if item.kind == "label":
        return {str(value["label"]): value["prob"]}
    if item.kind == "text":
        return str(value)
    if item.kind == "table":
        return {"headers": list(value[0]) if value else [], "data": [list(row.values()) for row in value]}
    return value


def confidences(ranked: list[dict]) -> dict[str, float]:
    """gr.Label's {label: probability}; a label listed twice keeps its first (most likely) entry."""
    shown: dict[str, float] = {}
    for entry in ranked:
        shown.setdefault(str(entry["label"]), float(entry["prob"]))
    return shown
