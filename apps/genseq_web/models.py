"""A tab's model box and model card: which checkpoints the tab offers, and what each one is, in plain words.

The box lists the task's default model, the checkpoints the server was started
with and those of the task's kinds in the server's models directory, each named
by its card. The card under the tab's heading follows the box's choice, and so
does each option whose choices come from the model (completion's style labels).
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from genseq.tasks import Option, Task

from .access import ServerAccess
from .controls import offered_choices

DEFAULT_VALUE = ""  # the model box's value for the task's default model
# the card's lines after the first: (field, its title) of each part of a line
CARD_LINES = ((("trained_on", "Trained on"),), (("good_at", "Good at"), ("bad_at", "Not good at")),
              (("figure", "Measured"),))


def card_text(card: dict | None, default: bool = False) -> str:
    """The card as three short Markdown lines: the model and what it learned from; what it is good and bad at;
    how well it measured."""
    if not card:
        return "**Model:** no description is available for this model."
    which = " (the default)" if default else ""
    lines = [f"**Model: {card['name']}{which}.** {card.get('summary', '')}".rstrip()]
    for keys in CARD_LINES:
        parts = [f"**{title}:** {card[key]}" for key, title in keys if card.get(key)]
        if parts:
            lines.append(" ".join(parts))
    return "  \n".join(lines)


def model_choices(task_class: type[Task], access: ServerAccess, model_override: str | None) -> list[tuple[str, str]]:
    """(name shown, value) of each model the box offers: the tab's default first, then the server's checkpoints."""
    default = task_class.model_card(model_override)
    choices = [(f"{_name(default, model_override)} (default)", model_override or DEFAULT_VALUE)]
    paths = [*access.models_for(task_class.model_kinds)]
    for path in paths:
        if path != model_override:
            choices.append((f"{_name(task_class.model_card(path), path)} ({path})", path))
    return choices


def _name(card: dict | None, path: str | None) -> str:
    if card:
        return card["name"]
    return Path(path).name if path else "the task's default model"


def model_picker(task_class: type[Task], access: ServerAccess, model_override: str | None,
                 elem_id: str) -> gr.Dropdown | None:
    """The model box, or None for a task that loads no checkpoint."""
    if task_class.model_kinds == () and not model_override:
        return None
    choices = model_choices(task_class, access, model_override)
    return gr.Dropdown(choices, value=choices[0][1], label="Model", elem_id=elem_id,
                       info=f"this server's models for this tab; add one by training it into {access.models_dir}/")


def choices_reader(task_class: type[Task], access: ServerAccess, model_override: str | None):
    """The handler that lists the model box's models anew, run at each page load: a run trained into the models
    directory since the server started is offered without a restart."""
    def list_models():
        return gr.Dropdown(choices=model_choices(task_class, access, model_override))
    return list_models


def card_reader(task_class: type[Task], access: ServerAccess, model_override: str | None):
    """The handler that turns the model box's value into the card shown for it."""
    def show_card(value):
        path = access.read_model(value)
        return card_text(task_class.model_card(path or model_override), default=(path or None) == model_override)
    return show_card


def option_choices_reader(task_class: type[Task], access: ServerAccess, model_override: str | None, option: Option):
    """The handler that turns the model box's value and the option's current value into the option's drop-down of
    that model's choices (the value kept when the model offers it too)."""
    def show_choices(value, chosen):
        path = access.read_model(value)
        return gr.Dropdown(**offered_choices(task_class.option_choices(option.name, path or model_override), chosen))
    return show_choices
