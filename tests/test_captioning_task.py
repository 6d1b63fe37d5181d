"""The captioning task through the task contract: the shipped default model, batches with bad files, beams, attention maps."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from genseq.errors import ConfigError
from genseq.plugins import get_task_class

from captioning_helpers import save_tiny_captioner
from genseq_captioning.captioner import DEFAULT_DIR

EXAMPLES = Path(__file__).resolve().parents[1] / "plugins" / "genseq_captioning" / "examples"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, tokenizer):
    """A random-weight captioner checkpoint: fast, and enough to exercise everything but caption quality."""
    return save_tiny_captioner(tmp_path_factory.mktemp("models") / "tiny", tokenizer)


@pytest.fixture(scope="module")
def task(tiny_model):
    return get_task_class("captioning")(model=str(tiny_model))


@pytest.fixture
def pictures(tmp_path):
    paths = []
    for index, color in enumerate([(200, 30, 30), (30, 30, 200)]):
        path = tmp_path / f"picture{index}.png"
        Image.new("RGB", (50, 30), color).save(path)
        paths.append(str(path))
    return paths


def test_captioning_is_discovered_as_a_builtin_task():
    from genseq.plugins import discover

    info = next(info for info in discover() if info.name == "captioning")
    assert (info.distribution, info.status) == ("genseq", "ok")
    names = {option.name for option in info.task_class.options}
    assert {"num_beams", "temperature", "top_p", "seed", "precision", "attention_map"} <= names


def test_the_shipped_default_captions_a_shipped_example_offline():
    assert (DEFAULT_DIR / "model.safetensors").stat().st_size < 30_000_000
    task = get_task_class("captioning")()
    result = task.run({"image": str(EXAMPLES / "emoji_1f600.png")})
    assert "error" not in result and result["caption"] and "face" in result["caption"]
    assert result["logprob"] < 0 and len(result["words"]) == len(result["attention_weights"])


def test_the_shipped_captioner_looks_at_each_object_of_a_scene_as_it_names_it():
    """A test scene of two objects never seen together (examples/README.md): the attention peak of the words that
    name each lies inside its box (pixels of the 224 x 224 scene, its 7 x 7 grid's cell centres)."""
    result = get_task_class("captioning")().run({"image": str(EXAMPLES / "scene_phones_button.png")})
    assert "no mobile phones" in result["caption"] and "japanese here button" in result["caption"]
    phones, button = (34, 91, 136, 193), (147, 114, 224, 191)
    boxes = {"no": phones, "mobile": phones, "here": button, "button": button}
    for word, weights in zip(result["words"], result["attention_weights"]):
        if word in boxes:
            row, column = divmod(int(torch.as_tensor(weights).argmax()), 7)
            x, y = (column + 0.5) * 32, (row + 0.5) * 32
            x0, y0, x1, y1 = boxes[word]
            assert x0 <= x < x1 and y0 <= y < y1, (word, x, y)


def test_a_bad_file_gives_one_sentence_and_the_others_are_captioned(task, pictures, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    batch = [{"image": pictures[0]}, {"image": str(tmp_path / "missing.png")}, {"image": str(tmp_path / "notes.txt")},
             {"image": Image.open(pictures[1])}]
    results = task.run_batch(batch, max_new_tokens=6)
    assert "caption" in results[0] and "caption" in results[3]
    assert results[1]["error"].endswith("missing.png does not exist")
    assert "notes.txt is not an image" in results[2]["error"]
    document = task.to_json(batch, results)
    captioned = {"image", "caption", "logprob", "mean_logprob"}  # no "notice": this model has no threshold
    assert [set(item) for item in document] == [captioned, {"image", "error"}, {"image", "error"}, captioned]
    assert document[0]["image"] == pictures[0]
    json.dumps(document)


def test_only_bad_files_still_answer_each(task, tmp_path):
    results = task.run_batch([{"image": str(tmp_path / "a.png")}, {"image": str(tmp_path / "b.png")}])
    assert all("does not exist" in result["error"] for result in results)


def test_beams_are_ranked_and_the_best_one_is_the_caption(task, pictures):
    result = task.run({"image": pictures[0]}, num_beams=3, max_new_tokens=6)
    probs = [entry["prob"] for entry in result["captions"]]
    assert len(probs) == 3 and probs[0] > 0
    assert result["captions"][0]["label"] == result["caption"]


def test_a_caption_per_beam_and_one_when_sampling_unless_asked(task, pictures):
    # temperature 0 is this task's default: given as such (the web app sends every value) it gives way to beams
    beams = task.run({"image": pictures[0]}, num_beams=2, temperature=0.0, max_new_tokens=5)
    sampled = task.run({"image": pictures[0]}, temperature=1.0, seed=1, max_new_tokens=5)
    assert (len(beams["captions"]), len(sampled["captions"])) == (2, 1)


def test_one_beam_gives_the_greedy_caption(task, pictures):
    greedy = task.run_batch([{"image": p} for p in pictures], max_new_tokens=8)
    beam = task.run_batch([{"image": p} for p in pictures], max_new_tokens=8, num_beams=1, temperature=0.0)
    assert [r["caption"] for r in greedy] == [r["caption"] for r in beam]


def test_sampling_options_reach_the_engine(task, pictures):
    first = task.run({"image": pictures[0]}, temperature=1.0, top_k=5, seed=3, max_new_tokens=6, num_return_sequences=2)
    again = task.run({"image": pictures[0]}, temperature=1.0, top_k=5, seed=3, max_new_tokens=6, num_return_sequences=2)
    assert first["captions"] == again["captions"] and len(first["captions"]) == 2
    with pytest.raises(ConfigError, match="cannot be combined with beam search"):
        task.run({"image": pictures[0]}, temperature=0.7, num_beams=2)


def test_attention_maps_as_a_png_file_and_as_images(task, pictures, tmp_path):
    out = tmp_path / "attention.png"
    results = task.run_batch([{"image": p} for p in pictures], max_new_tokens=4, min_new_tokens=2,
                             attention_map=str(out), attention=True)
    assert Image.open(out).format == "PNG"
    assert all(isinstance(result["attention"], Image.Image) for result in results)
    grid = torch.tensor(results[0]["attention_weights"])
    assert grid.shape[1:] == (2, 2) and torch.allclose(grid.sum((1, 2)), torch.ones(len(grid)), atol=1e-3)
