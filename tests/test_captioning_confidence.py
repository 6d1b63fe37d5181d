"""The captioning task's honesty: each caption's mean log-probability per token, the per-model threshold calibrated
on in-domain images and kept in card.json, the novelty reference of the training images and its unfamiliar-picture
notice, the notices in results and on the command line, the named examples."""

import json
import shutil
from pathlib import Path

import numpy
import pytest
import torch
from PIL import Image

from captioning_helpers import save_tiny_captioner
from cli_helpers import run_cli
from genseq.cards import write_card_value
from genseq.checkpoint import WEIGHTS_FILE
from genseq.errors import CheckpointError
from genseq.plugins import get_task_class

from genseq_captioning.captioner import DEFAULT_DIR
from genseq_captioning.confidence import (
    CARD_KEY, LOW_CONFIDENCE, calibrate, load_images, main, read_threshold, write_calibration,
)
from genseq_captioning.novelty import REFERENCE_FILE, UNFAMILIAR, build_reference, prototypes, read_reference

COLORS = [(200, 30, 30), (30, 30, 200), (30, 160, 30), (240, 200, 20), (90, 90, 90)]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, tokenizer):
    """A random-weight captioner checkpoint with a card of its own: fast, and enough for everything but quality."""
    directory = save_tiny_captioner(tmp_path_factory.mktemp("models") / "tiny", tokenizer)
    (directory / "card.json").write_text(json.dumps({"name": "tiny", "good_at": "nothing yet"}))
    return directory


@pytest.fixture
def model(saved_model, tmp_path):
    """A copy of the tiny captioner whose card a test may change."""
    return Path(shutil.copytree(saved_model, tmp_path / "model"))


@pytest.fixture(scope="module")
def validation(tmp_path_factory):
    """An imagefolder of five plain pictures with captions, standing for a captioner's validation set."""
    folder = tmp_path_factory.mktemp("captions") / "validation"
    folder.mkdir()
    rows = []
    for index, color in enumerate(COLORS):
        Image.new("RGB", (40, 30), color).save(folder / f"{index}.png")
        rows.append(json.dumps({"file_name": f"{index}.png", "text": f"colour number {index}"}))
    (folder / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    return folder


def with_threshold(directory: Path, below: float) -> Path:
    write_card_value(directory, CARD_KEY, {"below": below, "percentile": 5.0, "images": 5, "data": "test"})
    return directory


def test_calibration_is_the_percentile_of_the_mean_logprobs_and_is_written_to_the_card(model, validation):
    task = get_task_class("captioning")(model=str(model))
    means = [result["mean_logprob"] for result in task.run_batch([{"image": str(path)} for path in
                                                                   sorted(validation.glob("*.png"))])]
    calibration = calibrate(task, load_images([str(validation)], "validation"), "test", percentile=20)
    assert calibration.below == pytest.approx(numpy.percentile(means, 20), abs=1e-4)
    assert (calibration.images, calibration.percentile) == (5, 20)
    write_calibration(model, calibration)
    assert read_threshold(model) == calibration.below
    assert json.loads((model / "card.json").read_text())["good_at"] == "nothing yet"  # the card's other fields stay


def test_the_calibration_command_writes_the_threshold(model, validation, capsys):
    assert main(["--model", str(model), "--data", str(validation), "--percentile", "50"]) == 0
    assert "50th percentile" in capsys.readouterr().out
    task = get_task_class("captioning")(model=str(model))
    assert read_threshold(model) == calibrate(task, load_images([str(validation)], "validation"), "", 50).below
    assert not (model / REFERENCE_FILE).exists()  # without --train, no novelty reference


def test_the_mean_logprob_is_the_caption_log_probability_per_token(model, validation):
    result = get_task_class("captioning")(model=str(model)).run({"image": str(validation / "0.png")}, num_beams=2)
    assert result["mean_logprob"] < 0
    assert numpy.exp(result["mean_logprob"]) == pytest.approx(result["captions"][0]["prob"], abs=1e-3)


def test_a_model_without_a_threshold_flags_nothing(model, validation):
    assert read_threshold(model) is None
    result = get_task_class("captioning")(model=str(model)).run({"image": str(validation / "0.png")})
    assert "notice" not in result and result["caption"] is not None


def test_a_caption_below_the_threshold_gets_the_notice(model, validation):
    with_threshold(model, 0.0)  # every caption's mean log-probability is below 0
    result = get_task_class("captioning")(model=str(model)).run({"image": str(validation / "0.png")})
    assert result["notice"] == LOW_CONFIDENCE
    assert result["caption"]  # the guess is still shown, with the notice beside it


def test_a_caption_above_the_threshold_gets_no_notice(model, validation):
    with_threshold(model, -1e6)
    result = get_task_class("captioning")(model=str(model)).run({"image": str(validation / "0.png")})
    assert "notice" not in result


def test_the_command_line_prints_the_notice_and_puts_it_in_json(model, validation, capsys):
    with_threshold(model, 0.0)
    code, out, err = run_cli(capsys, "generate", "--task", "captioning", "--model", model,
                             "--image", validation / "0.png", "--max-new-tokens", 5)
    assert code == 0 and f"genseq: note: {LOW_CONFIDENCE}" in err and "mean_logprob: -" in out
    code, out, err = run_cli(capsys, "generate", "--task", "captioning", "--model", model, "--json",
                             "--image", validation / "0.png", "--image", validation / "1.png", "--max-new-tokens", 5)
    assert code == 0 and [item["notice"] for item in json.loads(out)] == [LOW_CONFIDENCE] * 2


def test_the_command_line_prints_no_notice_above_the_threshold(model, validation, capsys):
    with_threshold(model, -1e6)
    code, out, err = run_cli(capsys, "generate", "--task", "captioning", "--model", model,
                             "--image", validation / "0.png", "--max-new-tokens", 5)
    assert code == 0 and "Low confidence" not in err + out


def test_an_invalid_threshold_is_one_clear_error(model, validation):
    with_threshold(model, "low")
    with pytest.raises(CheckpointError, match="invalid low_confidence"):
        get_task_class("captioning")(model=str(model)).run({"image": str(validation / "0.png")})


def test_the_shipped_captioner_has_a_calibrated_threshold():
    assert -10 < read_threshold(DEFAULT_DIR) < 0


def test_the_examples_load_and_run_including_composed_scenes(saved_model):
    task_class = get_task_class("captioning")
    inputs = task_class.example_inputs()
    scenes = [Path(item["image"]) for item in inputs if Path(item["image"]).name.startswith("scene_")]
    assert len(scenes) >= 2 and all(path.stat().st_size < 100_000 for path in scenes)
    assert len(set(task_class.example_labels())) == len(inputs)
    results = task_class(model=str(saved_model)).run_batch(inputs, max_new_tokens=4)
    assert all("error" not in result and "caption" in result for result in results)


# ---- the novelty reference: how like the training images a picture is -------------------------------
def unit_vectors(count: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(count, size, generator=torch.Generator().manual_seed(seed)), dim=1)


def striped(folder: Path, count: int, seed: int) -> Path:
    """An imagefolder of pictures of coloured stripes, standing for a captioner's training or validation images."""
    folder.mkdir()
    rows, generator = [], numpy.random.default_rng(seed)
    for index in range(count):
        stripes = generator.integers(0, 255, (4, 1, 3)).repeat(10, 0).repeat(40, 1).astype(numpy.uint8)
        Image.fromarray(stripes).save(folder / f"{index}.png")
        rows.append(json.dumps({"file_name": f"{index}.png", "text": f"stripes {index}"}))
    (folder / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def seeing_model(tmp_path_factory, tokenizer):
    """The tiny captioner with the shipped captioner's encoder: a random one gives every picture the same features."""
    return save_tiny_captioner(tmp_path_factory.mktemp("models") / "seeing", tokenizer, str(DEFAULT_DIR / WEIGHTS_FILE))


@pytest.fixture
def seeing(seeing_model, tmp_path):
    return Path(shutil.copytree(seeing_model, tmp_path / "seeing"))


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    return striped(tmp_path_factory.mktemp("train") / "train", 12, seed=1)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENSEQ_CACHE_DIR", str(tmp_path / "cache"))  # the feature cache of these tests stays theirs


def with_reference(directory: Path, training: Path, validation: Path, percentile: float = 5.0, count: int = 4):
    """Write a novelty reference of the training pictures into directory, its threshold from the validation ones."""
    task = get_task_class("captioning")(model=str(directory))
    reference = build_reference(task.model.encoder, load_images([str(training)], "train"),
                                load_images([str(validation)], "validation"), count=count, seed=0,
                                percentile=percentile, progress=False)
    reference.save(directory)
    return reference


def test_prototypes_are_the_same_for_the_same_seed_and_unit_length():
    vectors = unit_vectors(200)
    first, again, other = prototypes(vectors, 8, seed=3), prototypes(vectors, 8, seed=3), prototypes(vectors, 8, seed=4)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.shape == (8, 16) and torch.allclose(first.norm(dim=1), torch.ones(8))


def test_prototypes_of_clustered_vectors_find_the_clusters():
    centres = unit_vectors(3, seed=1)
    noisy = torch.nn.functional.normalize(centres.repeat(30, 1) + 0.05 * unit_vectors(90, seed=2), dim=1)
    found = prototypes(noisy, 3, seed=0)
    assert (found @ centres.T).max(0).values.min() > 0.99  # every cluster has its prototype


def test_the_reference_round_trips_through_its_file(seeing, training, validation, cache):
    reference = with_reference(seeing, training, validation)
    read = read_reference(seeing, get_task_class("captioning")(model=str(seeing)).model.encoder)
    assert torch.equal(read.prototypes, reference.prototypes) and read.prototypes.shape == (4, 1280)
    assert (read.below, read.images, read.train_images, read.seed) == (reference.below, 5, 12, 0)


def test_a_training_image_scores_about_one_and_is_not_flagged(seeing, training, validation, cache):
    reference = with_reference(seeing, training, validation, count=12)  # as many prototypes as images: one each
    results = get_task_class("captioning")(model=str(seeing)).run_batch([{"image": str(training / "0.png")},
                                                                        {"image": str(training / "7.png")}])
    assert [result["familiarity"] for result in results] == pytest.approx([1.0, 1.0], abs=2e-3)
    assert reference.below < 0.99 and all(UNFAMILIAR not in result.get("notice", "") for result in results)


def test_a_picture_unlike_the_training_images_is_flagged_with_one_sentence_per_reason(seeing, training, validation,
                                                                                      cache, tmp_path):
    with_reference(seeing, training, validation)
    odd = tmp_path / "noise.png"
    Image.fromarray(numpy.random.default_rng(0).integers(0, 255, (64, 64, 3)).astype(numpy.uint8)).save(odd)
    task = get_task_class("captioning")(model=str(seeing))
    result = task.run({"image": str(odd)})
    assert result["familiarity"] < task.novelty.below
    assert result["notice"] == UNFAMILIAR and result["caption"]
    with_threshold(seeing, 0.0)  # and the decoder doubts every caption too
    result = get_task_class("captioning")(model=str(seeing)).run({"image": str(odd)})
    assert result["notice"] == f"{UNFAMILIAR} {LOW_CONFIDENCE}"


def test_a_model_without_a_reference_has_no_familiarity_and_no_novelty_flag(model, validation):
    result = get_task_class("captioning")(model=str(model)).run({"image": str(validation / "0.png")})
    assert "familiarity" not in result and "notice" not in result


def test_a_reference_made_for_another_encoder_is_one_clear_error(seeing, training, validation, cache):
    with_reference(seeing, training, validation)
    encoder = get_task_class("captioning")(model=str(seeing)).model.encoder
    with torch.no_grad():
        next(iter(encoder.parameters())).add_(0.5)  # as a captioner retrained with another encoder would have
    with pytest.raises(CheckpointError, match="made for another image encoder"):
        read_reference(seeing, encoder)


def test_a_corrupt_reference_is_one_clear_error(model):
    (model / REFERENCE_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="novelty.safetensors is corrupt"):
        get_task_class("captioning")(model=str(model)).run({"image": str(DEFAULT_DIR.parent.parent / "examples" /
                                                                          "shark.png")})


def test_the_calibration_command_writes_the_reference_with_train(seeing, training, validation, cache, capsys):
    assert main(["--model", str(seeing), "--data", str(validation), "--train", str(training), "--sample", "8",
                 "--prototypes", "3"]) == 0
    out = capsys.readouterr().out
    assert "3 prototypes of 8 images" in out and str(seeing / REFERENCE_FILE) in out
    reference = read_reference(seeing, get_task_class("captioning")(model=str(seeing)).model.encoder)
    assert reference.prototypes.shape[0] == 3 and reference.train_images == 8
    assert read_threshold(seeing) is not None  # the decoder's threshold is calibrated by the same command


def test_the_shipped_captioner_has_a_novelty_reference_under_a_megabyte():
    from genseq_captioning.captioner import load_captioner

    assert (DEFAULT_DIR / REFERENCE_FILE).stat().st_size < 1 << 20
    reference = read_reference(DEFAULT_DIR, load_captioner(None).encoder)
    assert 0 < reference.below < 1 and reference.train_images >= 1000
