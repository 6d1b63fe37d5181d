import dataclasses
import errno
import json
from pathlib import Path

import pytest
import torch

from genseq import CheckpointError, LanguageModel, from_pretrained, save_pretrained
from genseq.checkpoint import (
    ModelKind, atomic_write, build_saved, load_checkpoint, model_files, read_directory_path, write_directory, write_files,
)


@pytest.fixture
def saved(tmp_path, tiny_config, tokenizer):
    model = LanguageModel(tiny_config)
    save_pretrained(tmp_path / "ckpt", model, tokenizer)
    return tmp_path / "ckpt", model


def test_round_trip_restores_weights_config_and_tokenizer(saved, tokenizer):
    directory, model = saved
    loaded, loaded_tokenizer = from_pretrained(directory)
    assert loaded.config == model.config
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name])
    assert loaded_tokenizer.encode("sweet love") == tokenizer.encode("sweet love")
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.safetensors", "tokenizer.model"]


def test_config_records_versions_and_format(saved):
    config = json.loads((saved[0] / "config.json").read_text())
    assert config["format"] == "genseq" and config["format_version"] == 1
    assert {"genseq", "torch"} <= set(config["versions"])


def test_checkpoint_files_hold_no_pickle(saved):
    for path in saved[0].iterdir():
        assert b"\x80\x04\x95" not in path.read_bytes()[:64]  # pickle protocol 4 header


@pytest.mark.parametrize("damage,message", [
    (lambda d: (d / "config.json").write_text("{not json"), "config.json is corrupt"),
    (lambda d: (d / "config.json").write_text('{"model_type": "gpt2"}'), "not a genseq checkpoint"),
    (lambda d: (d / "config.json").write_text('{"format": "genseq", "format_version": 99, "kind": "lm"}'), "newer than"),
    (lambda d: (d / "config.json").unlink(), "config.json is missing"),
    (lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:1000]), "model.safetensors is corrupt or truncated"),
    (lambda d: (d / "tokenizer.model").write_bytes(b"garbage"), "tokenizer.model is not a readable"),
])
def test_damaged_checkpoints_name_the_file_and_the_problem(saved, damage, message):
    damage(saved[0])
    with pytest.raises(CheckpointError, match=message):
        from_pretrained(saved[0])


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        from_pretrained(tmp_path / "nowhere")


def test_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    target = tmp_path / "weights.bin"
    atomic_write(target, b"good")

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.fsync", disk_full)
    with pytest.raises(CheckpointError, match="No space left on device; the previous checkpoint is left as it was"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


def test_directory_swap_interrupted_between_renames_is_recovered(tmp_path):
    write_directory(tmp_path / "last", {"a": b"1"})
    write_directory(tmp_path / "last", {"a": b"2"})
    assert (tmp_path / "last" / "a").read_bytes() == b"2"
    (tmp_path / "last").rename(tmp_path / ".last.old")  # as if killed after the first rename
    assert (read_directory_path(tmp_path / "last") / "a").read_bytes() == b"2"


def test_fp16_storage_halves_the_file_and_loads_into_float32(tmp_path, tiny_config, tokenizer):
    model = LanguageModel(tiny_config)
    save_pretrained(tmp_path / "fp32", model, tokenizer)
    save_pretrained(tmp_path / "fp16", model, tokenizer, dtype=torch.float16)
    size32 = (tmp_path / "fp32" / "model.safetensors").stat().st_size
    size16 = (tmp_path / "fp16" / "model.safetensors").stat().st_size
    assert size16 < 0.55 * size32
    loaded, _ = from_pretrained(tmp_path / "fp16")
    for name, tensor in model.state_dict().items():
        assert loaded.state_dict()[name].dtype == torch.float32
        torch.testing.assert_close(loaded.state_dict()[name], tensor, atol=1e-3, rtol=1e-3)


# ---- one loader for every kind of model -------------------------------------------------------
@dataclasses.dataclass
class PairConfig:
    vocab_size: int = 8
    width: int = 4


class Pair(torch.nn.Module):
    """A two-part toy model: {"left": PairConfig, "right": PairConfig}."""

    def __init__(self, configs: dict, tokenizer):
        super().__init__()
        self.left = torch.nn.Embedding(configs["left"].vocab_size, configs["left"].width)
        self.right = torch.nn.Linear(configs["right"].width, configs["right"].vocab_size)


PAIR = ModelKind("pair", {"left": PairConfig, "right": PairConfig}, Pair)


@pytest.fixture
def pair(tmp_path, tokenizer):
    configs = {"left": PairConfig(tokenizer.vocab_size, 4), "right": PairConfig(tokenizer.vocab_size, 4)}
    model = Pair(configs, tokenizer)
    model_config = {part: dataclasses.asdict(config) for part, config in configs.items()}
    write_files(tmp_path / "pair", model_files(model, model_config, tokenizer, kind="pair"))
    return tmp_path / "pair", model


def test_the_loader_builds_any_kind_from_its_config_classes_and_loads_its_weights(pair, tokenizer):
    directory, model = pair
    loaded, loaded_tokenizer = load_checkpoint(directory, PAIR)
    assert isinstance(loaded, Pair) and not loaded.training
    assert all(torch.equal(tensor, loaded.state_dict()[name]) for name, tensor in model.state_dict().items())
    assert loaded_tokenizer.vocab_size == tokenizer.vocab_size
    fresh, _ = build_saved(directory, PAIR)  # what a resumed run starts from: checked, weights not read
    assert not torch.equal(fresh.left.weight, model.left.weight)


def test_the_loader_refuses_another_kind_and_a_config_without_its_parts(pair):
    directory, _ = pair
    with pytest.raises(CheckpointError, match="holds a 'pair' checkpoint, not 'lm'"):
        from_pretrained(directory)
    config = json.loads((directory / "config.json").read_text())
    del config["model_config"]["right"]
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r'config.json has an invalid pair model_config \(it needs "left" and "right"\)'):
        load_checkpoint(directory, PAIR)


def test_a_language_model_whose_tokenizer_has_another_vocabulary_is_refused(saved, tmp_path):
    from genseq import Tokenizer

    directory, _ = saved
    other = Tokenizer.train(["a b c d e f g h"] * 50, vocab_size=270)
    (directory / "tokenizer.model").write_bytes(other.to_bytes())
    with pytest.raises(CheckpointError, match="config.json: tokenizer.model has 270 pieces but the model expects 400"):
        from_pretrained(directory)


def test_a_missing_packaged_model_says_which_command_trains_one(tmp_path):
    from genseq.defaults import packaged_model_dir

    with pytest.raises(CheckpointError, match=r"this installation has no default thing \(.*\); pass --model DIR with "
                                              r"a checkpoint from `genseq train thing`"):
        packaged_model_dir(tmp_path / "missing", "default thing", "genseq train thing")
    assert packaged_model_dir(Path(__file__).parent.parent / "genseq" / "models" / "lm", "x").name == "lm"
