"""Runs that start from a captioner (--init), attention supervision from the scenes' boxes, and weighted singles.

The scenes are composed from the tiny stamps of tests/data/scene_objects
(genseq_captioning.scenes), the captioners are tiny random ones.
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import DATA
from genseq.cli import main

from genseq_captioning import scenes
from genseq_captioning.captioner import load_captioner
from genseq_captioning.data import load_caption_set
from genseq_captioning.grounding import Grounding, coverage, located_tokens, pointing_accuracy
from genseq_captioning.scenes import SceneMaker, load_stamps
from genseq_captioning.train import loss_sums

OBJECTS = DATA / "scene_objects"
SEED = 11


@pytest.fixture(scope="module")
def scene_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes")
    maker = SceneMaker(load_stamps(OBJECTS), seed=SEED)
    for split, count in (("train", 32), ("validation", 8)):
        scenes.write_split(maker, out, split, count)
    return out


@pytest.fixture(scope="module")
def start(tmp_path_factory, tokenizer):
    """A tiny decoder on the shipped captioner's ImageNet encoder at 128 pixels (a 4 x 4 grid): random encoder
    weights give every cell nearly the same features, so there would be nothing to point at."""
    from genseq_captioning.captioner import Captioner
    from genseq_captioning.encoder import LITE0, EncoderConfig, load_pretrained
    from genseq_captioning.train import pretrained_source

    torch.manual_seed(0)
    captioner = Captioner.create(EncoderConfig(image_size=128), tokenizer, feature_size=16, embedding_size=12,
                                 hidden_size=20, attention_size=10)
    load_pretrained(captioner.encoder, pretrained_source(LITE0, "default"))
    directory = tmp_path_factory.mktemp("start") / "captioner"
    captioner.save(directory)
    return directory


def test_each_token_of_a_naming_word_looks_at_the_cells_of_its_box():
    objects = [{"name": "cat", "box": [0, 0, 112, 112], "span": [1, 2]}, {"name": "dog", "box": [112, 112, 224, 224], "span": [7, 8]}]
    grounding = Grounding("a cat to the left of a dog", objects, 224, 224)
    pieces = ["▁a", "▁c", "at", "▁to", "▁the", "▁left", "▁of", "▁a", "▁", "dog"]
    located = located_tokens(pieces, grounding, 4, 4)
    assert sorted(located) == [1, 2, 8, 9]  # both pieces of "cat", and a bare word-start piece goes with its word
    top_left, bottom_right = np.zeros((4, 4)), np.zeros((4, 4))
    top_left[:2, :2], bottom_right[2:, 2:] = 1, 1
    assert np.array_equal(located[1].reshape(4, 4), top_left) and np.array_equal(located[9].reshape(4, 4), bottom_right)
    assert located_tokens(pieces[:-2], grounding, 4, 4) == {}  # a caption cut short spells other words


def test_the_misplaced_term_is_minus_log_the_attention_mass_inside_the_box():
    cells = torch.tensor(coverage([(0.0, 0.0, 0.5, 0.5)], 2, 2).reshape(-1), dtype=torch.float32)
    alphas = torch.tensor([[[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]]])  # (B=1, T=2, N=4)

    def forward(features, inputs):
        return torch.zeros(1, 2, 5), alphas

    located = torch.zeros(1, 2, 4)
    located[0, 1] = cells  # only the second token names the object (the top-left cell)
    sums = loss_sums(forward, 0, None, torch.ones(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.long), located)
    assert sums.located == 1 and sums.misplaced.item() == pytest.approx(-np.log(0.7))
    assert loss_sums(forward, 0, None, torch.ones(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.long)).located == 0


def pointing_mass(run, folder) -> float:
    from genseq_captioning.data import cached_features

    captioner = load_captioner(run)
    data = load_caption_set(str(folder), "train", strict=True)
    features = cached_features(captioner.encoder, data.images, progress=False)
    return pointing_accuracy(captioner, features.values, data.groundings)["pointing_mass"]


def test_supervision_puts_the_attention_inside_the_named_objects(scene_folder, start, tmp_path):
    """The same start, data and steps, with and without supervision: only the supervised run looks at the objects."""
    common = ["train", "captioning", "--data", str(scene_folder), "--init", str(start), "--epochs", "25",
              "--batch-size", "8", "--lr", "3e-2", "--warmup-steps", "0", "--patience", "0", "--seed", "0", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "plain")]) == 0
    assert main([*common, "--out", str(tmp_path / "supervised"), "--attention-supervision", "5"]) == 0
    plain, supervised = (pointing_mass(tmp_path / name / "last", scene_folder) for name in ("plain", "supervised"))
    assert supervised > plain + 0.15, (plain, supervised)
    config = json.loads((tmp_path / "supervised" / "config.json").read_text())
    assert config["training_config"]["attention_supervision"] == 5


def test_a_run_from_init_keeps_the_captioner_and_records_where_it_started(scene_folder, start, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "captioning", "--data", str(scene_folder), "--init", str(start), "--out", str(out),
                 "--max-steps", "1", "--lr", "1e-9", "--warmup-steps", "0", "--no-progress"]) == 0
    config, started = (json.loads((path / "config.json").read_text()) for path in (out, start))
    assert config["model_config"] == started["model_config"]
    assert (out / "tokenizer.model").read_bytes() == (start / "tokenizer.model").read_bytes()
    assert config["init"]["from"] == str(start.resolve()) and len(config["init"]["sha256"]) == 64
    trained, initial = load_captioner(out), load_captioner(start)
    for (name, value), (_, before) in zip(trained.decoder.state_dict().items(), initial.decoder.state_dict().items()):
        assert torch.allclose(value, before, atol=1e-6), name
    resumed = json.loads((out / "last" / "config.json").read_text())
    assert resumed["init"] == config["init"]  # a resumed run keeps saying where it started


@pytest.mark.parametrize("flags, words", [
    (["--hidden-size", "32"], "--hidden-size would change the captioner --init"),
    (["--encoder-weights", "none"], "--encoder-weights would change the captioner --init"),
    (["--vocab-size", "500"], "--vocab-size would change the captioner --init"),
    (["--resume", "somewhere"], "drop --init"),
])
def test_a_run_from_init_refuses_to_change_the_captioner_in_one_sentence(scene_folder, start, tmp_path, capsys, flags, words):
    assert main(["train", "captioning", "--data", str(scene_folder), "--init", str(start), "--out", str(tmp_path / "x"),
                 *flags]) == 2
    error = capsys.readouterr().err
    assert words in error and error.count("\n") == 1


def test_supervision_without_boxes_or_without_attention_is_one_sentence(scene_folder, start, tmp_path, capsys):
    singles = tmp_path / "singles"
    singles.mkdir()
    (singles / "metadata.jsonl").write_text("".join(
        json.dumps({"file_name": f"{index}.png", "text": "a red ball"}) + "\n" for index in range(4)))
    for index in range(4):
        Image.new("RGB", (32, 32), (200, 0, 0)).save(singles / f"{index}.png")
    assert main(["train", "captioning", "--data", str(singles), "--valid", str(singles), "--init", str(start), "--out",
                 str(tmp_path / "a"), "--attention-supervision", "1", "--no-progress"]) == 2
    assert "has no boxes for attention supervision" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()  # refused before a run directory is made
    assert main(["train", "captioning", "--data", str(scene_folder), "--out", str(tmp_path / "b"), "--no-attention",
                 "--encoder-weights", "none", "--image-size", "64", "--attention-supervision", "1", "--no-progress"]) == 2
    assert "attention supervision needs a captioner with attention" in capsys.readouterr().err


def test_singles_repeat_weighs_each_single_object_image_without_copying_it_again(tmp_path):
    out = tmp_path / "scenes"
    assert scenes.main(["--source", str(OBJECTS), "--out", str(out), "--train", "4", "--valid", "2", "--test", "2",
                        "--seed", str(SEED), "--singles-repeat", "3", "--split", "train"]) == 0
    rows = [json.loads(line) for line in (out / "train" / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 4 + 3 * 9 and len(list((out / "train" / "singles").rglob("*.png"))) == 9
    data = load_caption_set(str(out), "train", strict=True)
    assert len(data) == 4 + 9 and sorted(len(references) for references in data.references) == [1] * 4 + [3] * 9
