"""The embedded default language model: loads offline, is deterministic, and keeps its quality."""

from pathlib import Path

import pytest

from genseq import default_model_dir, from_pretrained
from genseq.data import open_source, tokenize
from genseq.evaluate import evaluate
from genseq.generation import generate
from genseq.plugins import get_task_class

SLICES = Path(__file__).parent / "data" / "valid_slices"
# Bits per byte of the shipped model on each slice (measured: 1.728, 1.544, 1.745, 1.109), plus a margin
# that a numerics change may take but a worse model would not.
BITS_PER_BYTE_BOUNDS = {"shakespeare": 1.76, "austen": 1.57, "mobydick": 1.78, "sotu": 1.14}


@pytest.fixture(scope="module")
def default_lm():
    return from_pretrained(default_model_dir("lm"))


def test_the_default_model_is_embedded_in_the_package(default_lm):
    import genseq

    assert default_model_dir("lm").is_relative_to(Path(genseq.__file__).parent)
    model, tokenizer = default_lm
    assert tokenizer.vocab_size == model.config.vocab_size == 8000


@pytest.mark.parametrize("corpus", BITS_PER_BYTE_BOUNDS)
def test_bits_per_byte_on_held_out_text_stays_below_the_recorded_bound(default_lm, corpus):
    model, tokenizer = default_lm
    metrics = evaluate(model, tokenize(open_source(str(SLICES / f"{corpus}.txt")), tokenizer))
    assert metrics["bits_per_byte"] < BITS_PER_BYTE_BOUNDS[corpus]


def test_a_fixed_seed_gives_the_same_text(default_lm):
    model, tokenizer = default_lm
    first = generate(model, tokenizer, "It is a truth universally acknowledged", max_new_tokens=30, seed=11)
    second = generate(model, tokenizer, "It is a truth universally acknowledged", max_new_tokens=30, seed=11)
    assert first[0].text == second[0].text and len(first[0].tokens) > 0


def test_suggestions_of_the_default_model_are_sensible():
    completion = get_task_class("completion")()
    after_to = [s["label"] for s in completion.run({"prompt": "To be or not to"}, suggest=3)["suggestions"]]
    assert "be" in after_to
    names = completion.run({"prompt": "My dear Mr. Ben"}, suggest=3)["suggestions"]
    assert names[0]["label"] == "Bennet" and all(s["label"].startswith("Ben") for s in names)
