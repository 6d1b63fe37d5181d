"""Checkpoints are checked before anything is allocated, and training never saves what it cannot load.

Damaged or hostile checkpoint files (wrong types, sizes the weights file cannot
hold, FIFOs, devices, non-finite weights) are one CheckpointError each; a run
that diverges stops without replacing its last good checkpoint.
"""

import json
import math
import os
import signal
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from genseq import CheckpointError, ConfigError, LanguageModel, TrainingError, from_pretrained, save_pretrained
from genseq import checkpoint
from genseq.train import TrainConfig
from test_train import make_trainer as make_warm_trainer, streams  # noqa: F401 (streams is a fixture)


@pytest.fixture
def saved(tmp_path, tiny_config, tokenizer):
    directory = tmp_path / "ckpt"
    save_pretrained(directory, LanguageModel(tiny_config), tokenizer)
    return directory


@pytest.fixture
def no_hang():
    """Fail instead of hanging when a test would block on a FIFO."""
    signal.signal(signal.SIGALRM, lambda *args: pytest.fail("the load blocked on a special file"))
    signal.alarm(30)
    yield
    signal.alarm(0)


def edit_model_config(directory, **changes):
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config["model_config"].update(changes)
    path.write_text(json.dumps(config))


def only_meta_builds(monkeypatch):
    """Record the device of every LanguageModel from_pretrained builds."""
    devices = []

    def recording(config):
        model = LanguageModel(config)
        devices.append(model.embedding.weight.device.type)
        return model

    monkeypatch.setattr(checkpoint, "LanguageModel", recording)
    return devices


# ---- the model config: types, ranges, sizes against the weights file -----------------------
@pytest.mark.parametrize("value", [24.0, True, "24", math.nan])
def test_a_size_that_is_not_an_integer_is_refused(saved, value):
    edit_model_config(saved, hidden_size=value)
    with pytest.raises(CheckpointError, match="model_config.hidden_size must be an integer"):
        from_pretrained(saved)


@pytest.mark.parametrize("value", [math.nan, math.inf, "0.1", None])
def test_a_dropout_that_is_not_a_finite_number_is_refused(saved, value):
    edit_model_config(saved, output_dropout=value)
    with pytest.raises(CheckpointError, match="model_config.output_dropout must be a finite number"):
        from_pretrained(saved)


def test_an_out_of_range_size_is_a_checkpoint_error_naming_the_file(saved):
    edit_model_config(saved, hidden_size=0)
    with pytest.raises(CheckpointError, match=r"config.json: hidden_size must be at least 1"):
        from_pretrained(saved)


@pytest.mark.parametrize("hidden_size", [20000, 10**9])
def test_sizes_the_weights_file_cannot_hold_are_refused_before_any_allocation(saved, monkeypatch, hidden_size):
    edit_model_config(saved, hidden_size=hidden_size)
    devices = only_meta_builds(monkeypatch)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        from_pretrained(saved)
    assert set(devices) <= {"meta"}


def test_a_million_layers_is_refused_without_building_them(saved, monkeypatch):
    edit_model_config(saved, num_layers=10**6)
    devices = only_meta_builds(monkeypatch)
    with pytest.raises(CheckpointError, match="num_layers is 1000000 but the weights file holds only"):
        from_pretrained(saved)
    assert devices == []


def test_a_weights_header_that_claims_more_than_the_file_holds_is_refused(saved):
    path = saved / "model.safetensors"
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    header["embedding.weight"]["shape"] = [10**6, 10**6]
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + length :])
    with pytest.raises(CheckpointError, match="entry for embedding.weight does not fit the file"):
        from_pretrained(saved)


# ---- the files themselves: regular, of a sane size ------------------------------------------
@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "tokenizer.model"])
@pytest.mark.parametrize("kind,message", [("fifo", r"is a FIFO \(named pipe\)"), ("directory", "is a directory"),
                                          ("device", "is a character device")])
def test_special_files_are_refused_without_being_opened(saved, no_hang, name, kind, message):
    path = saved / name
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to("/dev/zero")
    with pytest.raises(CheckpointError, match=f"{name} {message}, not a regular file"):
        from_pretrained(saved)


def test_a_config_json_over_a_megabyte_is_refused_unread(saved):
    path = saved / "config.json"
    config = json.loads(path.read_text())
    config["padding"] = "x" * (1 << 20)
    path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="config.json is 1.0 MiB, more than the 1.0 MiB"):
        from_pretrained(saved)


def test_a_weights_file_larger_than_memory_is_refused_unread(saved, monkeypatch):
    monkeypatch.setattr(checkpoint, "max_weights_bytes", lambda: 1000)
    with pytest.raises(CheckpointError, match="model.safetensors is .* more than the 1000 bytes"):
        from_pretrained(saved)


# ---- format version --------------------------------------------------------------------
@pytest.mark.parametrize("version", [-5, 0, 1.0, "1", True, None])
def test_only_the_integer_format_versions_genseq_wrote_are_accepted(saved, version):
    path = saved / "config.json"
    config = json.loads(path.read_text())
    config["format_version"] = version
    path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="which is not one genseq wrote"):
        from_pretrained(saved)


def test_a_newer_integer_format_version_asks_for_an_upgrade(saved):
    path = saved / "config.json"
    path.write_text(path.read_text().replace('"format_version": 1', '"format_version": 2'))
    with pytest.raises(CheckpointError, match="newer than this genseq reads"):
        from_pretrained(saved)


# ---- non-finite weights ---------------------------------------------------------------------
@pytest.mark.parametrize("poison", ["all_nan", "one_inf"])
def test_non_finite_weights_are_refused_at_load(saved, poison):
    path = saved / "model.safetensors"
    tensors = load_file(path)
    if poison == "all_nan":
        tensors = {name: torch.full_like(tensor, math.nan) for name, tensor in tensors.items()}
    else:
        tensors["output.bias"][3] = math.inf
    save_file(tensors, path)
    with pytest.raises(CheckpointError, match="holds non-finite weights"):
        from_pretrained(saved)


# ---- the tokenizer file --------------------------------------------------------------------
@pytest.mark.parametrize("content,reason", [(b"", "the file is empty"), (b"garbage", "it cannot be parsed")])
def test_an_empty_or_garbage_tokenizer_is_one_sentence_and_nothing_else_on_stderr(saved, capfd, content, reason):
    (saved / "tokenizer.model").write_bytes(content)
    with pytest.raises(CheckpointError, match=f"tokenizer.model is not a readable SentencePiece model \\({reason}\\)"):
        from_pretrained(saved)
    assert capfd.readouterr().err == ""  # SentencePiece's C++ logging is silenced


# ---- the plugins' loaders share the checks ---------------------------------------------------
def test_the_sentiment_loader_checks_its_config_against_the_weights(tmp_path, tokenizer, monkeypatch):
    from genseq_sentiment import model as sentiment

    directory = tmp_path / "sentiment"
    config = sentiment.SentimentConfig(vocab_size=tokenizer.vocab_size, hidden_size=8)
    sentiment.SentimentModel(config, tokenizer).save(directory)
    edit_model_config(directory, hidden_size=8.5)
    with pytest.raises(CheckpointError, match="model_config.hidden_size must be an integer"):
        sentiment.load_sentiment(directory)
    edit_model_config(directory, hidden_size=10**9)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        sentiment.load_sentiment(directory)


def test_the_captioner_loader_checks_its_config_against_the_weights(tmp_path, tokenizer):
    from genseq_captioning.captioner import Captioner, load_captioner
    from genseq_captioning.encoder import EncoderConfig

    directory = tmp_path / "captioner"
    options = dict(feature_size=8, embedding_size=8, hidden_size=8, attention_size=8, dropout=0.0)
    Captioner.create(EncoderConfig(name="squeezenet1_0", image_size=64), tokenizer, **options).save(directory)
    config = json.loads((directory / "config.json").read_text())
    config["model_config"]["decoder"]["hidden_size"] = 10**9
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_captioner(directory)
    config["model_config"]["encoder"]["image_size"] = "64"
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model_config.image_size must be an integer"):
        load_captioner(directory)


# ---- training never saves what it could not load ---------------------------------------------
def make_trainer(*args, **options):
    """test_train's trainer without warm-up, so that runs of a step or two are allowed."""
    return make_warm_trainer(*args, **{"warmup_steps": 0, **options})


def finite(directory) -> bool:
    return all(torch.isfinite(t).all() for t in load_file(directory / "model.safetensors").values())


def test_a_diverging_run_keeps_only_finite_checkpoints_and_says_which(tiny_config, tokenizer, streams, tmp_path):
    run = tmp_path / "run"
    trainer = make_trainer(tiny_config, tokenizer, streams, run, max_steps=30, lr=1e30, clip_grad_norm=0,
                           checkpoint_every=1)
    with pytest.raises(TrainingError) as caught:
        trainer.fit()
    message = str(caught.value)
    assert ("last good checkpoint" in message) == (run / "last").exists()
    assert ("best model" in message) == (run / "model.safetensors").exists()
    if (run / "last").exists():
        assert finite(run / "last")
        resumed = make_trainer(tiny_config, tokenizer, streams, run, max_steps=30)
        resumed.resume()
        assert all(torch.isfinite(p).all() for p in resumed.model.parameters())


def test_non_finite_weights_are_not_saved_and_the_error_says_nothing_was_kept(tiny_config, tokenizer, streams, tmp_path):
    trainer = make_trainer(tiny_config, tokenizer, streams, tmp_path / "run", max_steps=5)
    trainer.run.prepare()
    with torch.no_grad():
        trainer.model.output.bias[0] = math.inf
    with pytest.raises(TrainingError, match=r"weights \(output.bias\) became NaN or infinite at step 0, so they were "
                                            r"not saved; training stopped and no checkpoint had been saved yet"):
        trainer.save_last()
    assert not (tmp_path / "run" / "last").exists()


def test_non_finite_optimizer_state_is_not_saved_over_the_last_good_checkpoint(tiny_config, tokenizer, streams,
                                                                                 tmp_path):
    run = tmp_path / "run"
    trainer = make_trainer(tiny_config, tokenizer, streams, run, max_steps=2)
    trainer.fit()
    before = (run / "last" / "training_state.safetensors").read_bytes()
    for state in trainer.optimizer.state.values():
        state["exp_avg_sq"].fill_(math.nan)
    with pytest.raises(TrainingError, match="optimizer state became NaN or infinite.*the last good checkpoint"):
        trainer.save_last()
    assert (run / "last" / "training_state.safetensors").read_bytes() == before


@pytest.mark.parametrize("damaged", ["model.safetensors", "training_state.safetensors"])
def test_a_last_checkpoint_with_non_finite_tensors_cannot_be_resumed(tiny_config, tokenizer, streams, tmp_path, damaged):
    run = tmp_path / "run"
    make_trainer(tiny_config, tokenizer, streams, run, max_steps=2).fit()
    path = run / "last" / damaged
    tensors = load_file(path)
    name = next(name for name, tensor in tensors.items() if tensor.is_floating_point())
    tensors[name].fill_(math.nan)
    save_file(tensors, path)
    with pytest.raises(CheckpointError, match=f"{damaged} holds non-finite"):
        make_trainer(tiny_config, tokenizer, streams, run, max_steps=4).resume()


@pytest.mark.parametrize("option", ["lr", "weight_decay", "min_lr_ratio", "clip_grad_norm", "max_time",
                                    "checkpoint_minutes", "plateau_factor"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_training_configs_refuse_non_finite_numbers(option, value):
    with pytest.raises(ConfigError, match=f"{option} must be a finite number, not {value}"):
        TrainConfig(**{option: value})


@pytest.mark.parametrize("config_path", ["genseq_captioning.train.CaptionTrainConfig",
                                         "genseq_sentiment.train.SentimentTrainConfig"])
def test_plugin_training_configs_refuse_a_non_finite_rate(config_path):
    import importlib

    module, name = config_path.rsplit(".", 1)
    config_class = getattr(importlib.import_module(module), name)
    with pytest.raises(ConfigError, match="lr must be a finite number, not nan"):
        config_class(lr=math.nan)


def test_the_sentiment_trainer_does_not_save_non_finite_weights(tmp_path, tokenizer):
    from genseq_sentiment.model import SentimentConfig, SentimentModel
    from genseq_sentiment.train import Examples, SentimentTrainConfig, SentimentTrainer

    model = SentimentModel(SentimentConfig(vocab_size=tokenizer.vocab_size, hidden_size=8), tokenizer)
    examples = Examples(["good", "bad"], [1, 0])
    trainer = SentimentTrainer(model, examples, examples, SentimentTrainConfig(progress=False, device="cpu"), tmp_path)
    with torch.no_grad():
        model.output.weight.fill_(math.nan)
    with pytest.raises(TrainingError, match=r"weights \(output.weight\) became NaN or infinite"):
        trainer.save_last()
    assert not (tmp_path / "last").exists()
