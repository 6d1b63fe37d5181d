"""Model cards: a trained run gets one from its checkpoint, card.json overrides it, and the shipped models say
truthfully what they learned from."""

from __future__ import annotations

import json
import shutil

import pytest

from genseq import CheckpointError
from genseq.cards import CARD_FILE, read_card
from genseq.plugins import discover
from genseq.tasks import Input, Output, Task


def test_a_trained_run_has_a_card_without_writing_one(trained_run):
    card = read_card(trained_run)
    assert card["name"] == trained_run.name
    assert "parameters, kind lm" in card["summary"]
    assert card["figure"].startswith("loss ") and "ppl " in card["figure"] and "saved at step 40" in card["figure"]


def test_a_card_file_overrides_the_read_fields_and_keeps_the_others(trained_run, tmp_path):
    run = shutil.copytree(trained_run, tmp_path / "run")
    (run / CARD_FILE).write_text(json.dumps({"name": "Sonnets", "trained_on": "154 sonnets", "colour": "blue"}))
    card = read_card(run)
    assert card["name"] == "Sonnets" and card["trained_on"] == "154 sonnets" and "colour" not in card
    assert "parameters" in card["summary"] and card["figure"].startswith("loss ")


def test_a_corrupt_card_file_is_refused_naming_the_file(trained_run, tmp_path):
    run = shutil.copytree(trained_run, tmp_path / "run")
    (run / CARD_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match=rf"{CARD_FILE} is corrupt: not valid JSON"):
        read_card(run)
    (run / CARD_FILE).write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="is not a model card: a JSON object"):
        read_card(run)


def built_in(name: str) -> type[Task]:
    info = next((info for info in discover() if info.name == name and info.ok), None)
    if info is None:
        pytest.skip(f"the {name} task is not installed")
    return info.task_class


def test_the_shipped_models_say_what_they_learned_from_and_where_they_fail():
    lm = built_in("completion").model_card()
    assert "State of the Union addresses (half of it)" in lm["trained_on"] and "drifts" in lm["bad_at"]
    sentiment = built_in("sentiment").model_card()
    assert "airlines, only 20% of them positive" in sentiment["trained_on"] and "leans negative" in sentiment["bad_at"]
    captioner = built_in("captioning").model_card()
    assert "emoji" in captioner["trained_on"] and "Photographs" in captioner["bad_at"]
    for card in (lm, sentiment, captioner):
        assert set(card) == {"name", "summary", "trained_on", "good_at", "bad_at", "figure"}, card


class Unloaded(Task):
    name = "unloaded"
    inputs = (Input("text", "text"),)
    outputs = (Output("text", "text"),)


class MissingDefault(Unloaded):
    @classmethod
    def default_model_dir(cls):
        raise CheckpointError("the default model is not installed")


def test_a_task_without_a_checkpoint_or_its_default_has_no_card_and_one_given_a_checkpoint(trained_run):
    assert Unloaded.model_card() is None and MissingDefault.model_card() is None
    assert Unloaded.model_card(str(trained_run))["name"] == trained_run.name
