import errno
import json

import pytest
import torch

from genseq import CheckpointError, LanguageModel, from_pretrained, save_pretrained
from genseq.checkpoint import atomic_write, read_directory_path, write_directory


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
