"""The task contract's words for people: named examples, plain labels, placeholders, and primary options."""

from __future__ import annotations

import pytest

from genseq import ConfigError
from genseq.tasks import PRIMARY, Example, Input, Option, Output, Task, generation_options


class Named(Task):
    name = "named"
    inputs = (Input("some_text", "text", placeholder="Type here"), Input("photo", "image"))
    outputs = (Output("text", "text", label="the answer"),)
    options = (Option("num_things", 2, "how many", minimum=1, label="things"),)
    examples = (Example("a greeting", {"some_text": "hello"}), {"some_text": "a plain example that runs on for longer"},
                {"photo": "pictures/red_apple.png"})


def test_examples_are_named_by_their_label_or_else_by_their_first_value():
    assert Named.example_labels() == ["a greeting", "a plain example that runs on for longer", "red apple"]
    assert Named.example_inputs()[0] == {"some_text": "hello"}
    assert Named.describe()["examples"][0] == {"some_text": "hello"}
    assert Named.describe()["example_labels"][0] == "a greeting"


def test_an_unnamed_examples_long_text_is_shortened_on_its_button():
    class Long(Named):
        examples = ({"some_text": "word " * 30},)

    (label,) = Long.example_labels()
    assert len(label) == 40 and label.endswith("…")


def test_a_named_example_of_an_undeclared_input_is_refused():
    class Wrong(Named):
        examples = (Example("oops", {"prompt": "x"}),)

    with pytest.raises(ConfigError, match="an example of task named names the input prompt, which the task does not"):
        Wrong.check_declaration()


@pytest.mark.parametrize("example", [Example("", {"some_text": "x"}), Example("x", ["some_text"]), "some text"])
def test_an_example_without_a_name_or_values_is_refused_in_one_sentence(example):
    class Wrong(Named):
        examples = (example,)

    with pytest.raises(ConfigError, match=r"an example of task named is .*; declare Example\(label, \{input name"):
        Wrong.check_declaration()


def test_labels_fall_back_to_the_name_in_words():
    some_text, photo = Named.inputs
    assert (some_text.shown_label, photo.shown_label, some_text.placeholder) == ("some text", "photo", "Type here")
    assert Named.outputs[0].shown_label == "the answer" and Named.options[0].shown_label == "things"


def test_generation_options_show_the_named_primary_ones_and_fold_the_rest():
    options = generation_options(primary=("num_beams", "max_new_tokens"))
    shown = {option.name for option in options if not option.advanced}
    assert shown == {"num_beams", "max_new_tokens"}
    assert {option.name for option in generation_options() if not option.advanced} == set(PRIMARY)
    with pytest.raises(ValueError, match="no generation option beams"):
        generation_options(primary=("beams",))


def test_unbounded_engine_options_give_the_app_a_top_and_say_no_range_in_their_help():
    options = {option.name: option for option in generation_options()}
    assert options["max_new_tokens"].shown_maximum == 10_000 and options["max_new_tokens"].maximum is None
    assert options["temperature"].shown_maximum == 2.0
    assert options["temperature"].check(5.0) == 5.0  # the command line and the API still take more
    assert not [option.name for option in options.values() if "range" in option.help or "[" in option.help]
