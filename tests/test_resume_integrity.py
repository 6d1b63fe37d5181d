"""A damaged last/ is refused with one CheckpointError naming the file, before a run resumes from it.

Each case damages one part of what RunDirectory.save_last wrote (the counters in training_state.json, the
tensors in training_state.safetensors: optimizer moments, random states, carried hidden state)
the way a disk, a copy or a hand edit might; none may reach a traceback or a first step.
"""

import json
import math
import os
import struct

import pytest
import torch

from genseq import CheckpointError, LanguageModel
from genseq.cli import main
from genseq.data import open_source, tokenize
from genseq.model import ModelConfig
from genseq.runs import STATE_JSON, STATE_TENSORS
from genseq.train import TrainConfig, Trainer


@pytest.fixture(scope="module")
def streams(tokenizer, train_file, valid_file):
    return tokenize(open_source(str(train_file)), tokenizer), tokenize(open_source(str(valid_file)), tokenizer)


def make_trainer(tokenizer, streams, out, max_steps):
    config = TrainConfig(batch_size=4, bptt=12, warmup_steps=1, progress=False, checkpoint_minutes=1e9, max_steps=max_steps)
    torch.manual_seed(123)
    model_config = ModelConfig(vocab_size=tokenizer.vocab_size, embedding_size=16, hidden_size=24, num_layers=2)
    return Trainer(LanguageModel(model_config), tokenizer, *streams, config, out)


# ---- ways to damage last/ ------------------------------------------------------------------------
def record(edit):
    def damage(last):
        document = json.loads((last / STATE_JSON).read_text())
        edit(document)
        (last / STATE_JSON).write_text(json.dumps(document))
    return damage


def header(edit, name=STATE_TENSORS):
    """Rewrite a safetensors file's header (its data kept as it is)."""
    def damage(last):
        data = (last / name).read_bytes()
        (length,) = struct.unpack("<Q", data[:8])
        entries = json.loads(data[8 : 8 + length])
        edit(entries)
        text = json.dumps(entries).encode()
        (last / name).write_bytes(struct.pack("<Q", len(text)) + text + data[8 + length :])
    return damage


def tensors_of(entries, dtype, dims):
    return [name for name, entry in sorted(entries.items())
            if name != "__metadata__" and entry["dtype"] == dtype and len(entry["shape"]) == dims]


def transpose_a_moment(entries):
    """exp_avg or exp_avg_sq of a non-square matrix, given its transposed shape (the same bytes)."""
    name = next(n for n in tensors_of(entries, "F32", 2) if len(set(entries[n]["shape"])) == 2)
    entries[name]["shape"] = entries[name]["shape"][::-1]


def reshape_the_hidden_state(entries):
    """(layers, batch, hidden) read as (hidden, batch, layers): the same bytes, a batch size that still matches."""
    for name in tensors_of(entries, "F32", 3):
        entries[name]["shape"] = entries[name]["shape"][::-1]


def fill_random_states(last):
    """Every byte of every random state 0xFF, which no Mersenne Twister state is."""
    path = last / STATE_TENSORS
    data = bytearray(path.read_bytes())
    (length,) = struct.unpack("<Q", data[:8])
    entries = json.loads(data[8 : 8 + length])
    for name in tensors_of(entries, "U8", 1) + tensors_of(entries, "U8", 2):
        begin, end = entries[name]["data_offsets"]
        data[8 + length + begin : 8 + length + end] = b"\xff" * (end - begin)
    path.write_bytes(bytes(data))


def rewrite(name, change):
    def damage(last):
        (last / name).write_bytes(change((last / name).read_bytes()))
    return damage


def drop_a_tensor_reference(document):
    """Point the first tensor of the state at a name the tensors file does not hold."""
    def walk(value):
        if isinstance(value, dict) and "__tensor__" in value:
            value["__tensor__"] = "state.nowhere"
            return True
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
        return any(walk(child) for child in children)
    walk(document["state"])


DAMAGES = {
    "progress is a number": (record(lambda d: d.__setitem__("progress", 1)), r"training_state.json: progress is 1, not an object"),
    "a step is a string": (record(lambda d: d["progress"].__setitem__("step", "x")), r'progress.step must be an integer, not "x"'),
    "a step is negative": (record(lambda d: d["progress"].__setitem__("step", -3)), r"progress.step must be non-negative, not -3"),
    "a step is a float": (record(lambda d: d["progress"].__setitem__("step", 2.5)), r"progress.step must be an integer, not 2.5"),
    "a loss is NaN": (record(lambda d: d["progress"]["best"].__setitem__("loss", math.nan)), r'progress.best must be an object of numbers, not {"loss": NaN'),
    "the elapsed time is NaN": (record(lambda d: d["progress"].__setitem__("elapsed", math.nan)), r"progress.elapsed must be a number, not NaN"),
    "finished is a string": (record(lambda d: d["progress"].__setitem__("finished", "no")), r'progress.finished must be true or false, not "no"'),
    "progress has an unknown field": (record(lambda d: d["progress"].__setitem__("zzz", 1)), r"progress has unknown fields \(zzz\)"),
    "the stream positions are a number": (record(lambda d: d.__setitem__("stream", 5)), r"training_state.json: its stream positions are not a list"),
    "the state is null": (record(lambda d: d.__setitem__("state", None)), r'training_state.json: its "state" does not hold'),
    "the record is a list": (lambda last: (last / STATE_JSON).write_text("[1, 2]"), r'training_state.json is not an object with a "state"'),
    "the record is not JSON": (lambda last: (last / STATE_JSON).write_bytes(b"\xff{"), r"training_state.json is not valid JSON"),
    "the record is missing": (lambda last: (last / STATE_JSON).unlink(), r"training_state.json is missing"),
    "a tensor reference is dangling": (record(drop_a_tensor_reference), r"training_state.json refers to tensors training_state.safetensors does not hold"),
    "a header claims 2**63 bytes": (rewrite(STATE_TENSORS, lambda b: struct.pack("<Q", 2**63) + b[8:]), r"training_state.safetensors is corrupt or truncated \(its header claims 9223372036854775808 bytes\)"),
    "the tensors are cut to 5 bytes": (rewrite(STATE_TENSORS, lambda b: b[:5]), r"training_state.safetensors is corrupt or truncated \(it has 5 bytes, fewer than a header\)"),
    "the tensors are random bytes": (rewrite(STATE_TENSORS, lambda b: os.urandom(300)), r"training_state.safetensors is corrupt or truncated"),
    "the tensors are missing": (lambda last: (last / STATE_TENSORS).unlink(), r"training_state.safetensors is missing"),
    "a random state is cut to one byte": (header(lambda h: h[tensors_of(h, "U8", 1)[0]].__setitem__("shape", [1])), r"training_state.safetensors is corrupt or truncated \(the header's entry for .* does not fit the file\)"),
    "a moment is transposed": (header(transpose_a_moment), r"training_state.safetensors: the optimizer's exp_avg(_sq)? of parameter \d+ has shape \(\d+, \d+\), the parameter \(\d+, \d+\)"),
    "the hidden state is reshaped": (header(reshape_the_hidden_state), r"training_state.safetensors: the hidden state has shapes"),
    "the random states are not Mersenne Twister states": (fill_random_states, r"training_state.safetensors: its random state is not one a generator takes \(Invalid mt19937 state\)"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_training_state_is_one_checkpoint_error_naming_the_file(tokenizer, streams, tmp_path, damage):
    run = tmp_path / "run"
    make_trainer(tokenizer, streams, run, max_steps=2).fit()
    change, message = DAMAGES[damage]
    change(run / "last")
    with pytest.raises(CheckpointError, match=message) as raised:
        make_trainer(tokenizer, streams, run, max_steps=4).resume()
    text = str(raised.value)
    assert text.startswith(str(run / "last")) and "it cannot be resumed" in text and "\n" not in text


def test_an_undamaged_training_state_still_resumes(tokenizer, streams, tmp_path):
    run = tmp_path / "run"
    make_trainer(tokenizer, streams, run, max_steps=2).fit()
    resumed = make_trainer(tokenizer, streams, run, max_steps=4)
    resumed.resume()
    assert resumed.progress.step == 2 and resumed.fit().step == 4


def test_the_cli_reports_a_damaged_training_state_in_one_line(trained_run, train_file, valid_file, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    DAMAGES["a moment is transposed"][0](run / "last")
    code = main(["train", "completion", "--data", str(train_file), "--valid", str(valid_file), "--resume", str(run),
                 "--max-steps", "45", "--no-progress"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and error.startswith("genseq: error: ") and len(error.splitlines()) == 1
    assert "training_state.safetensors" in error and "cannot be resumed" in error


# ---- the plugins' trainers read last/ through the same read_last ----------------------------------
@pytest.fixture(scope="module")
def sentiment_run(tmp_path_factory):
    from test_sentiment import reviews, write_csv

    folder = tmp_path_factory.mktemp("sentiment")
    data = write_csv(folder / "train.csv", reviews(300, 0)), write_csv(folder / "valid.csv", reviews(60, 1))
    out = folder / "run"
    assert main(["train", "sentiment", "--data", data[0], "--valid", data[1], "--out", str(out), "--vocab-size", "300",
                 "--epochs", "1", "--batch-size", "32", "--no-progress"]) == 0
    return out, ["--data", data[0], "--valid", data[1], "--epochs", "2", "--no-progress"]


@pytest.fixture(scope="module")
def captioning_run(tmp_path_factory):
    from test_captioning_train import TINY_MODEL, PATTERNS, SHAPES, caption, draw, word_tokenizer

    folder = tmp_path_factory.mktemp("shapes")
    with open(folder / "metadata.jsonl", "w") as metadata:
        for shape in SHAPES[:3]:
            for pattern in PATTERNS[:2]:
                draw(shape, pattern).save(folder / f"{pattern}_{shape}.png")
                metadata.write(json.dumps({"file_name": f"{pattern}_{shape}.png", "text": caption(shape, pattern)}) + "\n")
    (folder / "tokenizer.model").write_bytes(word_tokenizer().to_bytes())
    out = tmp_path_factory.mktemp("runs") / "captioner"
    assert main(["train", "captioning", "--data", str(folder), "--out", str(out), *TINY_MODEL, "--tokenizer",
                 str(folder / "tokenizer.model"), "--epochs", "1", "--batch-size", "4", "--no-progress"]) == 0
    return out, ["--data", str(folder), "--epochs", "2", "--batch-size", "4", "--no-progress"]


PLUGIN_DAMAGES = {
    "sentiment: a counter is a string": ("sentiment", record(lambda d: d["progress"].__setitem__("position", "x")),
                                         r"training_state.json: progress.position must be an integer"),
    "sentiment: the best score is a word": ("sentiment", record(lambda d: d["progress"]["best"].__setitem__("f1", "good")),
                                            r'training_state.json: progress.best must be an object of numbers'),
    "sentiment: progress is missing": ("sentiment", record(lambda d: d.pop("progress")), r"progress is null, not an object"),
    "sentiment: a moment is transposed": ("sentiment", header(transpose_a_moment), r"the optimizer's exp_avg"),
    "captioning: progress is a list": ("captioning", record(lambda d: d.__setitem__("progress", [1])), r"progress is \[1\], not an object"),
    "captioning: a batch is a string": ("captioning", record(lambda d: d["progress"].__setitem__("batch", "x")),
                                        r'progress.batch must be an integer, not "x"'),
    "captioning: the random states are not Mersenne Twister states": ("captioning", fill_random_states,
                                                                     r"its random state is not one a generator takes"),
}


@pytest.mark.parametrize("damage", PLUGIN_DAMAGES)
def test_the_plugin_trainers_refuse_a_damaged_training_state_in_one_line(request, tmp_path, capsys, damage):
    import re
    import shutil

    task, change, message = PLUGIN_DAMAGES[damage]
    trained, flags = request.getfixturevalue(f"{task}_run")
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    change(run / "last")
    capsys.readouterr()
    code = main(["train", task, *flags, "--resume", str(run)])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1, error
    assert error.startswith(f"genseq: error: {run / 'last'}") and re.search(message, error) and "cannot be resumed" in error


def test_the_random_states_of_several_processes_are_checked_without_crashing(tmp_path):
    from genseq.runs import RunDirectory

    # Generator.set_state on a row of a (processes, n) tensor, a view at an offset, crashes torch.
    rng = torch.stack([torch.get_rng_state()] * 2)
    run = RunDirectory(tmp_path)
    run.save_last({}, {}, {"optimizer": {"state": {}, "param_groups": []}, "rng": rng[0].clone(), "process_rng": rng})
    _, _, state = run.read_last()
    assert torch.equal(state["process_rng"], rng)
