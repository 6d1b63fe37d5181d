"""Composed scenes (genseq_captioning.scenes) and pointing accuracy (genseq_captioning.grounding).

The objects are the tiny stamps of tests/data/scene_objects (alpha, plain
white background, palette, grey with alpha, a picture with no plain border,
and a caption too long to be a name); a test that wants ../shared/data skips
without it.
"""

import itertools
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import DATA, SHARED_DATA
from genseq.cli import main

from genseq_captioning import scenes
from genseq_captioning.data import load_caption_set
from genseq_captioning.grounding import NO_ATTENTION, Grounding, coverage, point, pointing_accuracy
from genseq_captioning.scenes import SceneMaker, cut_out, load_stamps, pair_split, plural, vertical_held

OBJECTS = DATA / "scene_objects"
SEED = 11  # under it the eight fixture names leave pairs for validation and test, one of them with the one name held out of
# vertical relations
NAMES = ("black bar", "blue box", "green tree", "orange cat", "red ball", "ring", "stick", "yellow star")


@pytest.fixture(scope="module")
def maker():
    return SceneMaker(load_stamps(OBJECTS), seed=SEED)


@pytest.fixture(scope="module")
def scene_folder(tmp_path_factory, maker):
    out = tmp_path_factory.mktemp("scenes")
    for split, count in (("train", 24), ("validation", 8), ("test", 8)):
        scenes.write_split(maker, out, split, count)
    return out


def pairs(scene) -> set[frozenset]:
    names = {item["name"] for item in scene.objects}
    return {frozenset(pair) for pair in itertools.combinations(sorted(names), 2)}


# ---- objects and captions ------------------------------------------------------------------
def test_only_captions_that_are_short_names_become_objects():
    assert sorted({stamp.name for stamp in load_stamps(OBJECTS)}) == list(NAMES)  # the sun sentence is left out
    assert scenes.object_name("A spiny lobster, from the Hawaiian islands.") is None
    assert scenes.object_name("An eggplant.") == "eggplant" and plural("dog") == "dogs" and plural("box") == "boxes"


def test_cut_out_keeps_alpha_floods_a_plain_background_and_keeps_a_busy_picture_whole():
    assert cut_out(Image.open(OBJECTS / "ball.png")).size == (24, 24)  # the alpha channel's extent
    box = cut_out(Image.open(OBJECTS / "box.png"))  # a blue rectangle (6..25, 8..23) on white, no alpha
    assert box.size == (20, 16) and box.getchannel("A").getextrema() == (255, 255)
    blank = cut_out(Image.new("RGB", (20, 20), "white"))
    assert blank.size == (20, 20) and blank.getchannel("A").getextrema() == (255, 255)  # whole, not cut to nothing
    photo = Image.open(OBJECTS / "photo.png")
    assert cut_out(photo).size == photo.size and cut_out(photo).getchannel("A").getextrema() == (255, 255)


def test_a_scene_is_a_function_of_the_seed_split_and_index(maker):
    again = SceneMaker(load_stamps(OBJECTS), seed=SEED)
    for index in range(6):
        first, second = maker.scene("train", index), again.scene("train", index)
        assert first.caption == second.caption and first.objects == second.objects
        assert first.image.tobytes() == second.image.tobytes()
    other = SceneMaker(load_stamps(OBJECTS), seed=SEED + 1)
    assert [maker.scene("train", i).caption for i in range(6)] != [other.scene("train", i).caption for i in range(6)]


def test_boxes_lie_inside_the_canvas_and_frame_each_pasted_object(monkeypatch):
    """On a white canvas, what is not white is exactly the objects, and each box is tight around its object."""
    monkeypatch.setattr(scenes, "PLAIN", ((255, 255, 255),))
    monkeypatch.setattr(scenes, "texture", lambda kind, rng, size: Image.new("RGB", (size, size), "white"))
    maker = SceneMaker(load_stamps(OBJECTS), seed=SEED)
    for index in range(30):
        scene = maker.scene("train", index)
        ink = (np.asarray(scene.image, dtype=np.int16) < 250).any(axis=2)  # (H, W)
        covered = np.zeros_like(ink)
        for item in scene.objects:
            x0, y0, x1, y1 = item["box"]
            assert 0 <= x0 < x1 <= scene.image.width and 0 <= y0 < y1 <= scene.image.height
            inside = ink[y0:y1, x0:x1]
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any(), scene.caption
            covered[y0:y1, x0:x1] = True
        assert not (ink & ~covered).any(), f"ink outside the boxes of {scene.caption!r}"


def test_every_object_is_named_at_its_span_and_scenes_vary(maker):
    captions, kinds = set(), set()
    for index in range(40):
        scene = maker.scene("train", index)
        words = scene.caption.split()
        for item in scene.objects:
            start, end = item["span"]
            assert " ".join(words[start:end]).rstrip(",") in (item["name"], plural(item["name"])), scene.caption
        captions.add(scene.caption)
        kinds.add(scene.kind)
    assert kinds == {"single", "pair", "group", "triple"} and len(captions) > 30
    assert any(" on grass" in c or " on sand" in c or " on water" in c or "brick wall" in c or " on wood" in c for c in captions)
    assert any(c.startswith("two ") for c in captions)


# ---- splits --------------------------------------------------------------------------------
def test_validation_and_test_pairs_are_never_together_in_training(maker):
    seen = {split: set().union(*(pairs(maker.scene(split, i)) for i in range(count)))
            for split, count in (("train", 150), ("validation", 40), ("test", 40))}
    assert seen["validation"] and seen["test"]
    assert not seen["train"] & seen["validation"] and not seen["train"] & seen["test"]
    assert all(pair_split(SEED, *sorted(pair)) == "validation" for pair in seen["validation"])


def test_held_out_names_are_never_above_or_below_in_training_and_are_in_held_out_scenes(maker):
    held = [name for name in NAMES if vertical_held(SEED, name)]
    assert held == ["blue box"]
    for index in range(150):
        scene = maker.scene("train", index)
        assert not scene.new_relation
        if scene.kind != "single" and "blue box" in {item["name"] for item in scene.objects}:
            assert not any(word in scene.caption.split() for word in ("above", "below", "under", "over", "beneath", "top"))
    assert any(maker.scene(split, i).new_relation for split in ("validation", "test") for i in range(60))


# ---- the data loader -------------------------------------------------------------------------
def test_the_loader_reads_each_scenes_boxes_and_spans(scene_folder):
    rows = [json.loads(line) for line in (scene_folder / "validation" / "metadata.jsonl").read_text().splitlines()]
    data = load_caption_set(str(scene_folder), "validation", strict=True)
    assert len(data) == 8 == len(data.groundings)
    by_caption = {grounding.caption: grounding for grounding in data.groundings}
    for row in rows:
        grounding = by_caption[row["text"]]
        assert grounding.objects == row["objects"] and (grounding.width, grounding.height) == (224, 224)
    assert len(data.subset([0, 2]).groundings) == 2


def test_a_caption_set_without_boxes_has_no_groundings(scene_folder, tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "text": "a dot"}) + "\n")
    assert load_caption_set(str(tmp_path)).groundings == []


# ---- pointing accuracy ---------------------------------------------------------------------
def test_a_peak_inside_the_box_is_a_hit_and_the_mass_is_exact():
    grid = np.full((7, 7), 0.5 / 48)
    grid[1, 5] = 0.5  # half the weight on one cell, the rest spread evenly
    box = (5 / 7, 1 / 7, 6 / 7, 3 / 7)  # cells (1, 5) and (2, 5)
    hit, mass, share = point(grid, [box])
    assert hit and mass == pytest.approx(0.5 + 0.5 / 48) and share == pytest.approx(2 / 49)
    hit, mass, _ = point(grid, [(0.0, 0.0, 2 / 7, 2 / 7)])
    assert not hit and mass == pytest.approx(4 * 0.5 / 48)
    assert point(grid, [(0.0, 0.0, 0.1, 0.1), box])[0]  # "two dogs": either box counts


def test_a_half_covered_cell_counts_half_its_weight():
    assert coverage([(0.0, 0.0, 0.5 / 7, 1 / 7)], 7, 7)[0, 0] == pytest.approx(0.5)
    assert Grounding("x", [], 200, 100).in_square((0, 0, 200, 100)) == (0.0, 0.25, 1.0, 0.75)  # letterboxed


class UniformCaptioner:
    """Stands in for a captioner whose attention is spread evenly over a 7 x 7 grid."""

    class decoder:
        class config:
            attention = True

    class encoder:
        @staticmethod
        def finish(features):
            return features

    device = torch.device("cpu")

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def attention(self, features, captions):
        return [torch.full((len(tokens), 7, 7), 1 / 49) for tokens in captions]


def test_uniform_attention_scores_the_baseline(tokenizer):
    objects = [{"name": "cat", "box": [0, 0, 64, 64], "span": [1, 2]}, {"name": "dog", "box": [128, 32, 224, 224], "span": [7, 8]}]
    groundings = [Grounding("a cat to the left of a dog", objects, 224, 224), None]
    figures = pointing_accuracy(UniformCaptioner(tokenizer), torch.zeros(2, 1, 7, 7), groundings)
    share = ((64 * 64) + (96 * 192)) / 2 / 224**2
    assert figures["pointing_words"] == 2 and figures["pointing_unaligned"] == 0
    assert figures["pointing_uniform"] == pytest.approx(share, abs=2e-3)
    assert figures["pointing_mass"] == pytest.approx(figures["pointing_uniform"], abs=1e-4)


@pytest.fixture(scope="module")
def tiny_captioners(tmp_path_factory, tokenizer):
    from genseq_captioning.captioner import Captioner
    from genseq_captioning.encoder import EncoderConfig

    folder = tmp_path_factory.mktemp("captioners")
    for name, attention in (("attend", True), ("tell", False)):
        torch.manual_seed(0)
        Captioner.create(EncoderConfig(image_size=64), tokenizer, feature_size=16, embedding_size=12, hidden_size=16,
                         attention_size=8, attention=attention).save(folder / name)
    return folder


def test_eval_reports_pointing_accuracy_on_scenes_and_a_note_without_attention(tiny_captioners, scene_folder, capsys):
    args = ["eval", "captioning", "--data", str(scene_folder), "--split", "test", "--num-beams", "1", "--max-new-tokens", "3",
            "--no-meteor", "--json"]
    assert main([*args, "--model", str(tiny_captioners / "attend")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["pointing_words"] > 0 and metrics["pointing_unaligned"] == 0
    assert 0 <= metrics["pointing_peak"] <= 1 and 0 < metrics["pointing_uniform"] < 1
    assert main([*args, "--model", str(tiny_captioners / "tell")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["pointing_note"] == NO_ATTENTION and "pointing_peak" not in metrics


# ---- the command ----------------------------------------------------------------------------
def test_the_command_writes_three_splits_with_the_single_objects_in_training(tmp_path, capsys):
    out = tmp_path / "scenes"
    assert scenes.main(["--source", str(OBJECTS), "--out", str(out), "--train", "6", "--valid", "3", "--test", "3",
                        "--seed", str(SEED)]) == 0
    train = [json.loads(line) for line in (out / "train" / "metadata.jsonl").read_text().splitlines()]
    assert len(train) == 6 + 9 and sum(row["kind"] == "source" for row in train) == 9
    assert all((out / "train" / row["file_name"]).is_file() for row in train)
    assert len(load_caption_set(str(out), "test", strict=True)) == 3
    groundings = load_caption_set(str(out), "train", strict=True).groundings
    assert len(groundings) == 15 and sum(grounding is None for grounding in groundings) == 9  # the singles have no boxes
    with pytest.raises(SystemExit) as stopped:  # a second run would mix two sets
        scenes.main(["--source", str(OBJECTS), "--out", str(out)])
    assert stopped.value.code == 2 and "already holds scene splits" in capsys.readouterr().err


def test_a_source_without_metadata_is_one_sentence(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        scenes.main(["--source", str(tmp_path), "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert stopped.value.code == 2 and error.endswith("of captioned object images") and "metadata.jsonl" in error
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "a dot"}\n{"file_name": \n')
    with pytest.raises(SystemExit):
        scenes.main(["--source", str(tmp_path), "--out", str(tmp_path / "out")])
    assert capsys.readouterr().err.strip().endswith("line 2 of " + str(tmp_path / "metadata.jsonl") + " is not a JSON object with a file_name")


@pytest.mark.skipif(not (SHARED_DATA / "captions" / "train" / "metadata.jsonl").exists(), reason="needs ../shared/data")
def test_the_shared_stamps_and_emoji_give_over_a_thousand_objects_and_scenes():
    stamps = load_stamps(SHARED_DATA / "captions")
    assert len({stamp.name for stamp in stamps}) > 1000
    maker = SceneMaker(stamps, seed=0)
    for index in range(5):
        scene = maker.scene("test", index)
        assert scene.image.size == (224, 224) and scene.objects
