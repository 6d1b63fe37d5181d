"""Several references per image, as in Flickr8k and COCO: loading, training on every reference, scoring against all.

The fixture tests/data/captions5 has the schema of Karpathy's dataset_flickr8k.json: 12 tiny images with five
captions each, 8 for training, 2 for validation, 2 for test (made by its make.py).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from genseq.cli import main
from genseq.errors import DataError

from genseq_captioning.cli import format_metrics
from genseq_captioning.data import load_caption_set

CAPTIONS5 = Path(__file__).parent / "data" / "captions5"
METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "cider", "rouge_l")


def karpathy_entries() -> list[dict]:
    return json.loads((CAPTIONS5 / "dataset_tiny.json").read_text())["images"]


def test_the_karpathy_layout_gives_each_image_of_a_split_its_five_references():
    train = load_caption_set(str(CAPTIONS5), "train")
    test = load_caption_set(str(CAPTIONS5), "test")
    assert (len(train), len(load_caption_set(str(CAPTIONS5), "validation")), len(test)) == (8, 2, 2)
    assert all(len(refs) == 5 for refs in train.references + test.references)
    first = next(e for e in karpathy_entries() if e["split"] == "test")
    assert Path(test.images[0]) == CAPTIONS5 / "images" / first["filename"]
    assert test.references[0] == [sentence["raw"] for sentence in first["sentences"]]


def test_restval_images_train_and_coco_filepaths_are_followed(tmp_path):
    (tmp_path / "images" / "val2014").mkdir(parents=True)
    shutil.copy(CAPTIONS5 / "images" / "red_circle.png", tmp_path / "images" / "val2014" / "COCO_val2014_1.png")
    shutil.copy(CAPTIONS5 / "images" / "red_square.png", tmp_path / "images" / "red_square.png")
    entries = [{"filename": "COCO_val2014_1.png", "filepath": "val2014", "split": "restval", "sentences": [{"raw": "a"}]},
               {"filename": "red_square.png", "split": "train", "sentences": [{"raw": "b"}, {"raw": "c"}]}]
    (tmp_path / "dataset_coco.json").write_text(json.dumps({"images": entries}))
    train = load_caption_set(str(tmp_path), "train")
    assert train.images == [str(tmp_path / "images" / "val2014" / "COCO_val2014_1.png"),
                            str(tmp_path / "images" / "red_square.png")]
    assert train.references == [["a"], ["b", "c"]]


def test_a_karpathy_file_without_its_images_or_the_split_is_one_clear_error(tmp_path):
    shutil.copy(CAPTIONS5 / "dataset_tiny.json", tmp_path / "dataset_tiny.json")
    with pytest.raises(DataError, match=r"names images such as \w+\.png, and none is in"):
        load_caption_set(str(tmp_path), "train")
    with pytest.raises(DataError, match="has no images in the split 'restval2'"):
        load_caption_set(str(CAPTIONS5), "restval2")
    (tmp_path / "dataset_tiny.json").write_text('{"images": [{"split": "train"}]}')
    with pytest.raises(DataError, match="is not a Karpathy split file"):
        load_caption_set(str(tmp_path), "train")


def imagefolder_with_caption_columns(folder: Path) -> Path:
    """The fixture as a `datasets` imagefolder: metadata.jsonl with caption_0 .. caption_4 per image."""
    split = folder / "train"
    split.mkdir(parents=True)
    with open(split / "metadata.jsonl", "w") as metadata:
        for entry in karpathy_entries():
            shutil.copy(CAPTIONS5 / "images" / entry["filename"], split / entry["filename"])
            captions = {f"caption_{i}": s["raw"] for i, s in enumerate(entry["sentences"])}
            metadata.write(json.dumps({"file_name": entry["filename"], **captions}) + "\n")
    return folder


def test_a_datasets_folder_with_five_caption_columns_reads_the_same_references(tmp_path):
    data = load_caption_set(str(imagefolder_with_caption_columns(tmp_path / "folder")), "train")
    by_name = {Path(image["path"]).name: refs for image, refs in zip(data.images, data.references)}
    assert by_name == {e["filename"]: [s["raw"] for s in e["sentences"]] for e in karpathy_entries()}


def test_a_hub_id_is_loaded_through_datasets(tmp_path, monkeypatch):
    import datasets

    folder = imagefolder_with_caption_columns(tmp_path / "hub")
    local = datasets.load_dataset("imagefolder", data_files={"train": str(folder / "train" / "**")})
    asked = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, *args, **kwargs: asked.append(name) or local)
    data = load_caption_set("someone/flickr8k", "train")
    assert asked == ["someone/flickr8k"]
    assert len(data) == 12 and all(len(refs) == 5 for refs in data.references)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny captioner trained on the fixture's training split, with its validation split (seconds)."""
    from genseq_captioning.encoder import EncoderConfig
    from genseq_captioning.train import CaptionTrainConfig, DataSpec, train_captioner

    out = tmp_path_factory.mktemp("runs") / "captions5"
    config = CaptionTrainConfig(epochs=2, batch_size=8, warmup_steps=1, patience=0, progress=False)
    decoder = {"feature_size": 16, "embedding_size": 16, "hidden_size": 32, "attention_size": 16, "dropout": 0.0}
    trainer = train_captioner(DataSpec(str(CAPTIONS5)), out, config, EncoderConfig(image_size=32), None, decoder,
                              vocab_size=290)
    return trainer, out


def test_training_takes_one_example_per_reference(trained):
    trainer, _ = trained
    train = load_caption_set(str(CAPTIONS5), "train")
    assert len(trainer.pairs) == 40 == sum(len(refs) for refs in train.references)
    encoded = {tuple(trainer.tokenizer.encode(r)) for refs in train.references for r in refs}
    assert {tuple(caption) for caption in trainer.pairs.captions} == encoded
    assert trainer.progress.step == 2 * 5  # 40 pairs in batches of 8, two epochs


def test_eval_json_reports_every_metric_per_decoding_against_all_references(trained, capsys):
    _, out = trained
    capsys.readouterr()
    assert main(["eval", "captioning", "--model", str(out), "--data", str(CAPTIONS5), "--split", "test",
                 "--num-beams", "1", "2", "--json", "--no-progress"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert (metrics["images"], metrics["references"]) == (2, 10)
    for decoding in ("greedy", "beam2"):
        assert all(0 <= metrics[f"{decoding}_{metric}"] for metric in METRICS)
        assert f"{decoding}_seconds" in metrics
        if shutil.which("java"):
            assert 0 <= metrics[f"{decoding}_meteor"] <= 1
    if not shutil.which("java"):
        assert metrics["meteor_skipped"] == "no Java runtime (java) on PATH"


def test_eval_prints_a_table_for_people(trained, capsys):
    _, out = trained
    capsys.readouterr()
    assert main(["eval", "captioning", "--model", str(out), "--data", str(CAPTIONS5), "--split", "test",
                 "--num-beams", "1", "--no-meteor", "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["decoding", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr-D", "ROUGE-L", "seconds"]
    assert lines[1].split()[0] == "greedy" and len(lines[1].split()) == 8
    assert "meteor_skipped: not asked for" in lines


def test_the_table_puts_each_decoding_on_a_row_and_the_rest_below():
    table = format_metrics({"images": 2, "greedy_bleu4": 0.25, "greedy_cider": 1.5, "beam3_bleu4": 0.3,
                            "beam3_cider": 1.75, "beam3_seconds": 0.125})
    assert table.splitlines() == [
        "decoding   BLEU-4  CIDEr-D  seconds",
        "greedy     0.2500   1.5000        -",
        "beam3      0.3000   1.7500   0.1250",
        "images: 2",
    ]



def test_the_flickr8k_recipe_skips_the_download_for_a_prepared_folder_and_its_commands_parse(tmp_path):
    """The recipe run with a stand-in genseq that parses each command with the real parser and logs it."""
    bin_dir, log = tmp_path / "bin", tmp_path / "commands.jsonl"
    bin_dir.mkdir()
    (bin_dir / "genseq").write_text(f"#!{sys.executable}\nimport json, sys\nfrom genseq.cli import parse\n"
                                    f"parse(sys.argv[1:])\nopen({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    (bin_dir / "genseq").chmod(0o755)
    (tmp_path / "run").mkdir()  # what the real train command makes, for the metrics the recipe keeps there
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "flickr8k-captioner.sh"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "DATA": str(CAPTIONS5)}
    result = subprocess.run(["bash", str(recipe), str(tmp_path / "run")], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    train, evaluate = [json.loads(line) for line in log.read_text().splitlines()]
    assert train[:4] == ["train", "captioning", "--data", str(CAPTIONS5)] and "resnet101" in train
    assert evaluate[:2] == ["eval", "captioning"] and ["--split", "test"] == evaluate[6:8]
