"""The captioning task's honesty: each caption's mean log-probability per token, the per-model threshold calibrated
on in-domain images and kept in card.json, the low-confidence notice in results and on the command line, the
named examples."""

import json
import shutil
from pathlib import Path

import numpy
import pytest
from PIL import Image

from captioning_helpers import save_tiny_captioner
from cli_helpers import run_cli
from genseq.errors import CheckpointError
from genseq.plugins import get_task_class

from genseq_captioning.captioner import DEFAULT_DIR
from genseq_captioning.confidence import CARD_KEY, LOW_CONFIDENCE, calibrate, main, read_threshold, write_calibration

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
    card = json.loads((directory / "card.json").read_text())
    card[CARD_KEY] = {"below": below, "percentile": 5.0, "images": 5, "data": "test"}
    (directory / "card.json").write_text(json.dumps(card))
    return directory


def test_calibration_is_the_percentile_of_the_mean_logprobs_and_is_written_to_the_card(model, validation):
    task = get_task_class("captioning")(model=str(model))
    means = [result["mean_logprob"] for result in task.run_batch([{"image": str(path)} for path in
                                                                   sorted(validation.glob("*.png"))])]
    calibration = calibrate(str(model), str(validation), percentile=20)
    assert calibration.below == pytest.approx(numpy.percentile(means, 20), abs=1e-4)
    assert (calibration.images, calibration.percentile) == (5, 20)
    write_calibration(model, calibration)
    assert read_threshold(model) == calibration.below
    assert json.loads((model / "card.json").read_text())["good_at"] == "nothing yet"  # the card's other fields stay


def test_the_calibration_command_writes_the_threshold(model, validation, capsys):
    assert main(["--model", str(model), "--data", str(validation), "--percentile", "50"]) == 0
    assert "50th percentile" in capsys.readouterr().out
    assert read_threshold(model) == calibrate(str(model), str(validation), percentile=50).below


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
    assert len(scenes) >= 2 and all(path.stat().st_size < 60_000 for path in scenes)
    assert len(set(task_class.example_labels())) == len(inputs)
    results = task_class(model=str(saved_model)).run_batch(inputs, max_new_tokens=4)
    assert all("error" not in result and "caption" in result for result in results)
