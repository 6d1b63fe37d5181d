"""`genseq train captioning` and `genseq eval captioning` end to end on a tiny imagefolder made here."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from genseq.cli import main
from genseq.errors import ConfigError, DataError

from genseq_captioning.data import load_caption_set

DATA = Path(__file__).parent / "data"

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
PATTERNS = ("solid", "outlined", "striped", "checked")
TINY_MODEL = ["--encoder-weights", "none", "--image-size", "64", "--feature-size", "32", "--embedding-size", "32",
              "--hidden-size", "64", "--attention-size", "32", "--dropout", "0"]


def draw(shape: str, pattern: str, size: int = 64) -> Image.Image:
    """A black shape, solid, outlined, striped or checked, on white.

    An ImageNet encoder tells shapes and textures apart at once; it is nearly blind
    to flat colours, and attention has no notion of where in the image it looks.
    """
    silhouette = Image.new("L", (size, size), 0)
    pen, low, high, middle = ImageDraw.Draw(silhouette), 6, size - 6, size // 2
    if shape == "circle":
        pen.ellipse((low, low, high, high), fill=255)
    elif shape == "square":
        pen.rectangle((low + 6, low + 6, high - 6, high - 6), fill=255)
    elif shape == "triangle":
        pen.polygon([(middle, low), (low, high), (high, high)], fill=255)
    elif shape == "diamond":
        pen.polygon([(middle, low), (high, middle), (middle, high), (low, middle)], fill=255)
    else:
        pen.rectangle((middle - 10, low, middle + 10, high), fill=255)
        pen.rectangle((low, middle - 10, high, middle + 10), fill=255)
    if pattern == "outlined":
        silhouette = ImageChops.subtract(silhouette, silhouette.filter(ImageFilter.MinFilter(7)))
    ink = Image.new("RGB", (size, size), "white")
    pen = ImageDraw.Draw(ink)
    for x in range(0, size, 8):
        if pattern == "striped":
            pen.rectangle((x, 0, x + 3, size), fill="black")
        for y in range(0, size, 8):
            if pattern in ("solid", "outlined") or (pattern == "checked" and (x + y) // 8 % 2 == 0):
                pen.rectangle((x, y, x + 7, y + 7), fill="black")
    image = Image.new("RGB", (size, size), "white")
    image.paste(ink, (0, 0), silhouette)
    return image


def caption(shape: str, pattern: str) -> str:
    return f"a {pattern} {shape} on white"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """20 images, one caption each, in the imagefolder layout with metadata.jsonl."""
    folder = tmp_path_factory.mktemp("shapes")
    with open(folder / "metadata.jsonl", "w") as metadata:
        for shape in SHAPES:
            for pattern in PATTERNS:
                draw(shape, pattern).save(folder / f"{pattern}_{shape}.png")
                metadata.write(json.dumps({"file_name": f"{pattern}_{shape}.png", "text": caption(shape, pattern)}) + "\n")
    return folder


def word_tokenizer():
    """A tokenizer in which the caption words are whole pieces (one trained on 20 captions alone spells letters)."""
    from genseq import Tokenizer

    captions = [caption(shape, pattern) for shape in SHAPES for pattern in PATTERNS]
    sonnets = (DATA / "corpus" / "sonnets_train.txt").read_text()
    return Tokenizer.train(captions * 30 + [sonnets], vocab_size=500)


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.model"
    path.write_bytes(word_tokenizer().to_bytes())
    return path


@pytest.fixture(scope="module")
def overfit_run(shapes, tokenizer_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "shapes"
    tokenizer = tokenizer_file
    # The shipped captioner's ImageNet encoder at 64 pixels: random-weight features of these
    # images differ too little for a decoder to learn them in a few hundred steps.
    code = main(["train", "captioning", "--data", str(shapes), "--valid", str(shapes), "--out", str(out), *TINY_MODEL,
                 "--encoder-weights", "default", "--image-size", "96", "--tokenizer", str(tokenizer), "--epochs", "60",
                 "--batch-size", "5", "--lr", "1e-2", "--warmup-steps", "5", "--patience", "0", "--no-progress"])
    assert code == 0
    return out


def test_a_tiny_captioner_overfits_twenty_pairs(overfit_run, shapes, capsys):
    capsys.readouterr()
    assert main(["eval", "captioning", "--model", str(overfit_run), "--data", str(shapes), "--num-beams", "1", "3",
                 "--no-meteor", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["images"] == 20 and metrics["references"] == 20
    assert metrics["greedy_bleu4"] > 0.9 and metrics["beam3_bleu4"] > 0.9


def test_the_run_directory_has_metrics_a_plot_and_a_resumable_checkpoint(overfit_run):
    records = [json.loads(line) for line in (overfit_run / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in records if r["split"] == "valid"]
    assert len(valid) == 60 and {"loss", "bleu1", "bleu4", "best"} <= set(valid[0])
    assert (overfit_run / "loss.png").read_bytes().startswith(b"\x89PNG")
    assert {"training_state.json", "model.safetensors"} <= {p.name for p in (overfit_run / "last").iterdir()}
    config = json.loads((overfit_run / "config.json").read_text())
    assert config["kind"] == "captioner" and config["model_config"]["encoder"]["name"] == "efficientnet_lite0"


def test_features_are_computed_once_and_read_from_the_cache(overfit_run, shapes, monkeypatch):
    from genseq_captioning import data

    def fail(*args, **kwargs):
        raise AssertionError("features were computed again")

    monkeypatch.setattr(data, "compute_features", fail)
    assert main(["eval", "captioning", "--model", str(overfit_run), "--data", str(shapes), "--num-beams", "1",
                 "--no-meteor", "--no-progress"]) == 0


def test_an_interrupted_run_resumes_to_the_same_weights(shapes, tokenizer_file, tmp_path):
    from safetensors.torch import load_file

    args = ["--data", str(shapes), *TINY_MODEL, "--tokenizer", str(tokenizer_file), "--epochs", "2", "--batch-size", "8", "--patience", "0", "--no-progress"]
    assert main(["train", "captioning", *args, "--out", str(tmp_path / "whole")]) == 0

    from genseq_captioning import train

    original_step = train.CaptionTrainer.train_step

    def stop_after_three(self, rows):
        loss = original_step(self, rows)
        if self.progress.step == 3:
            self.request_stop()
        return loss

    train.CaptionTrainer.train_step = stop_after_three
    try:
        assert main(["train", "captioning", *args, "--out", str(tmp_path / "split")]) == 130
    finally:
        train.CaptionTrainer.train_step = original_step
    assert main(["train", "captioning", "--data", str(shapes), "--resume", str(tmp_path / "split"), "--epochs", "2",
                 "--batch-size", "8", "--patience", "0", "--no-progress"]) == 0
    whole = load_file(str(tmp_path / "whole" / "last" / "model.safetensors"))
    split = load_file(str(tmp_path / "split" / "last" / "model.safetensors"))
    assert all(torch.equal(whole[name], split[name]) for name in whole)


def test_several_caption_columns_and_a_csv_dataset(tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    draw("circle", "solid").save(folder / "one.png")
    draw("square", "striped").save(folder / "two.png")
    (folder / "metadata.csv").write_text(
        "file_name,caption_0,caption_1\none.png,a red circle,a round red thing\ntwo.png,a blue square,a blue box\n"
    )
    data = load_caption_set(str(folder))
    assert data.references == [["a red circle", "a round red thing"], ["a blue square", "a blue box"]]
    assert load_caption_set(str(folder), caption_columns=["caption_1"]).references == [["a round red thing"], ["a blue box"]]
    with pytest.raises(DataError, match="no column 'words'"):
        load_caption_set(str(folder), caption_columns=["words"])


def test_an_image_folder_whose_file_names_look_like_split_names_is_read_whole(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    for name in ("steam_train.png", "car.png", "bus.png"):
        draw("square", "checked").save(folder / name)
    lines = [json.dumps({"file_name": name, "text": name.split(".")[0]}) for name in ("steam_train.png", "car.png", "bus.png")]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    assert len(load_caption_set(str(folder))) == 3


def test_user_mistakes_are_one_sentence(shapes, tokenizer_file, tmp_path, capsys):
    assert main(["train", "captioning", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["train", "captioning", "--data", str(shapes), "--out", str(tmp_path / "y"), "--encoder",
                 "no_such_net", "--encoder-weights", "none", "--tokenizer", str(tokenizer_file)]) == 2
    error = capsys.readouterr().err
    assert "unknown encoder 'no_such_net'" in error and error.count("\n") == 1
    with pytest.raises(ConfigError):
        from genseq_captioning.train import CaptionTrainConfig

        CaptionTrainConfig(batch_size=0)


def test_two_processes_train_the_captioner_of_one(shapes, tokenizer_file, tmp_path):
    """torchrun with 2 CPU processes (gloo) and the same global batch: the same weights, one set of files."""
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    # Batches of 6, 6, 6 and 2 pairs: the last splits into one row per process. Adam turns the rounding
    # noise of a near-zero gradient into a step of up to lr (the attention score's bias has no gradient at
    # all in exact arithmetic, softmax ignores it), so a small lr keeps that noise below the tolerance.
    args = ["train", "captioning", "--data", str(shapes), "--valid", str(shapes), *TINY_MODEL, "--tokenizer",
            str(tokenizer_file), "--epochs", "2", "--batch-size", "6", "--lr", "1e-4", "--patience", "0", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {}
    for processes in (1, 2):
        out = tmp_path / f"run{processes}"
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        command = [*launcher, "-m", "genseq"] if processes > 1 else [sys.executable, "-m", "genseq"]
        done = subprocess.run([*command, *args, "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        assert (done.stdout + done.stderr).count("trained 8 steps") == 1
        runs[processes] = out
    one, two = (load_file(str(runs[n] / "last" / "model.safetensors")) for n in (1, 2))
    assert max((one[k].float() - two[k].float()).abs().max().item() for k in one) < 1e-5
    metrics = [(runs[n] / "metrics.jsonl").read_text().splitlines() for n in (1, 2)]
    assert [json.loads(line)["step"] for line in metrics[0]] == [json.loads(line)["step"] for line in metrics[1]]


def test_a_character_level_caption_tokenizer_is_trained_with_tokenizer_type_char(shapes, tmp_path):
    from genseq import Tokenizer

    out = tmp_path / "run"
    assert main(["train", "captioning", "--data", str(shapes), "--valid", str(shapes), "--out", str(out), *TINY_MODEL,
                 "--encoder-weights", "none", "--image-size", "64", "--tokenizer-type", "char", "--epochs", "1",
                 "--max-steps", "1", "--no-progress"]) == 0
    tokenizer = Tokenizer.load(out / "tokenizer.model")
    assert all(len(tokenizer.id_to_piece(i).lstrip("▁")) <= 1 for i in tokenizer.encode("a red square"))
