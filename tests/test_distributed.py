"""Data-parallel training under torchrun (gloo, 2 CPU processes, a tiny model) and streamed corpora.

A run on 2 processes must end with the weights of a run on 1 process with the
same global batch, resume on a different number of processes, and leave one
set of files written by rank 0 alone.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genseq.cli import main
from genseq.data import HFDataset, StreamingBatches, TextFiles, open_source, stream_pieces
from genseq.distributed import World
from genseq.errors import ConfigError

MODEL = ["--vocab-size", "400", "--embedding-size", "16", "--hidden-size", "24", "--layers", "2", "--dropout", "0"]
SCHEDULE = ["--batch-size", "4", "--bptt", "16", "--warmup-steps", "0", "--schedule", "constant", "--eval-every", "3",
            "--seed", "3", "--no-progress", "--precision", "fp32"]  # auto may pick bf16 on some machines


def train(out, *extra, processes=1, data=None, model=True):
    """genseq train completion in a new process, or in torchrun's processes; -> (exit code, stdout + stderr)."""
    data = data or ["--data", str(Path(__file__).parent / "data" / "corpus")]
    argv = ["train", "completion", *data, *SCHEDULE, *(MODEL if model else []), *extra]
    argv += ["--out", str(out)] if "--resume" not in extra else []
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command = [*launcher, "-m", "genseq", *argv] if processes > 1 else [sys.executable, "-m", "genseq", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    return done.returncode, done.stdout + done.stderr


def weights(run) -> dict:
    return load_file(Path(run) / "last" / "model.safetensors")


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    run = tmp_path_factory.mktemp("one") / "run"
    code, output = train(run, "--max-steps", "6")
    assert code == 0, output
    return run


def test_two_processes_end_with_the_weights_of_one_with_the_same_global_batch(one_process, tmp_path):
    code, output = train(tmp_path / "two", "--max-steps", "6", processes=2)
    assert code == 0, output
    assert max_difference(weights(one_process), weights(tmp_path / "two")) < 1e-5
    # rank 0 alone reports and writes: one closing line, one record per logged step
    assert output.count("trained 6 steps") == 1
    records = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["split"]) for r in records] == [(1, "train"), (3, "valid"), (6, "valid")]
    one_valid = [json.loads(l)["loss"] for l in (one_process / "metrics.jsonl").read_text().splitlines() if '"valid"' in l]
    assert [r["loss"] for r in records if r["split"] == "valid"] == pytest.approx(one_valid, abs=1e-5)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in one_process.iterdir())


@pytest.mark.parametrize("first,then", [(2, 1), (1, 2)])
def test_a_run_resumes_on_a_different_number_of_processes(one_process, tmp_path, first, then):
    code, output = train(tmp_path / "run", "--max-steps", "4" if first == 2 else "2", processes=first)
    assert code == 0, output
    code, output = train(None, "--max-steps", "6", "--resume", str(tmp_path / "run"), processes=then, model=False)
    assert code == 0, output
    assert max_difference(weights(one_process), weights(tmp_path / "run")) < 1e-5


def test_style_rows_split_over_two_processes_as_the_batch_does(tmp_path, train_file):
    """Each process reads its share of the step's style rows: two processes end with one process's weights."""
    lines = train_file.read_text().splitlines()
    for label, part in (("early", lines[: len(lines) // 2]), ("late", lines[len(lines) // 2 :])):
        (tmp_path / "text" / label).mkdir(parents=True)
        (tmp_path / "text" / label / "sonnets.txt").write_text("\n".join(part) + "\n")
    data = ["--data", str(tmp_path / "text"), "--labels-from", "folders", "--style-rows", "2"]
    for processes in (1, 2):
        code, output = train(tmp_path / f"run{processes}", "--max-steps", "4", processes=processes, data=data)
        assert code == 0, output
    assert max_difference(weights(tmp_path / "run1"), weights(tmp_path / "run2")) < 1e-5


def test_a_batch_that_does_not_split_over_the_processes_is_refused_in_one_sentence():
    with pytest.raises(ConfigError, match="does not split evenly over 3 processes"):
        World(rank=0, size=3).rows(4)
    assert World(rank=1, size=2).rows(8) == range(4, 8)
    with pytest.raises(ConfigError, match="--style-rows 3 does not split evenly over 2 processes"):
        World(rank=0, size=2).rows(3, "--style-rows")


# ---- streaming -----------------------------------------------------------------------
@pytest.fixture
def documents(tmp_path, train_file):
    """The sonnets as one JSON-lines dataset row per paragraph."""
    paragraphs = [p for p in train_file.read_text().split("\n\n") if p.strip()]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": p}) + "\n" for p in paragraphs))
    return path, paragraphs


def test_each_process_streams_its_own_share_of_a_dataset(documents):
    path, paragraphs = documents
    shares = [[text for text, _ in stream_pieces(open_source(str(path), streaming=True), rank, 2)] for rank in (0, 1)]
    assert isinstance(open_source(str(path), streaming=True), HFDataset)
    assert sorted(shares[0] + shares[1]) == sorted(paragraphs) and not set(shares[0]) & set(shares[1])


def test_each_process_streams_its_own_pieces_of_local_files(tmp_path):
    for name in "abc":
        (tmp_path / f"{name}.txt").write_text(f"file {name}\n")
    source = open_source(str(tmp_path))
    assert isinstance(source, TextFiles)
    shares = [list(stream_pieces(source, rank, 2)) for rank in (0, 1)]
    assert shares == [[("file a\n", True), ("file c\n", True)], [("file b\n", True)]]


def test_streamed_rows_are_contiguous_runs_of_documents(tokenizer, documents):
    path, paragraphs = documents
    batches = StreamingBatches(lambda: stream_pieces(open_source(str(path), streaming=True)), tokenizer, rows=3, bptt=8)
    rows = [[] for _ in range(3)]
    index = 0
    while (window := batches.window(index)) is not None:
        inputs, targets = window
        assert torch.equal(inputs[:, 1:], targets[:, :-1])
        for row, ids in zip(rows, inputs.tolist()):
            row.extend(ids)
        index += 1
    assert index > 10
    eos = tokenizer.eos_id
    text = tokenizer.decode([t for t in rows[0] if t != eos])
    assert rows[0][0] == eos and text.startswith(paragraphs[0])  # row 0 took the first document, then its next ones
    assert sum(1 for t in rows[0] if t == eos) > 2  # several documents, each closed with EOS


def test_a_streamed_run_resumes_exactly(tmp_path, documents, capsys):
    path, _ = documents
    data = ["--data", str(path), "--valid", str(Path(__file__).parent / "data" / "corpus" / "sonnets_valid.txt"),
            "--streaming"]
    args = ["train", "completion", *data, *SCHEDULE]
    assert main([*args, *MODEL, "--max-steps", "8", "--out", str(tmp_path / "straight")]) == 0
    assert main([*args, *MODEL, "--max-steps", "5", "--out", str(tmp_path / "resumed")]) == 0
    saved = json.loads((tmp_path / "resumed" / "last" / "training_state.json").read_text())["stream"]
    assert len(saved) == 1 and saved[0]["taken"] > 0
    assert main([*args, "--max-steps", "8", "--resume", str(tmp_path / "resumed")]) == 0
    assert max_difference(weights(tmp_path / "straight"), weights(tmp_path / "resumed")) == 0


@pytest.mark.parametrize("extra,message", [
    (["--max-steps", "5"], "--streaming needs --valid"),
    (["--valid", "VALID"], "give --max-steps or --max-time"),
    (["--valid", "VALID", "--max-steps", "5", "--batch-size", "64", "--bptt", "512"], "the stream ended before it filled"),
])
def test_streaming_mistakes_get_one_sentence(tmp_path, documents, capsys, extra, message):
    valid = str(Path(__file__).parent / "data" / "corpus" / "sonnets_valid.txt")
    argv = ["train", "completion", "--data", str(documents[0]), "--streaming", "--out", str(tmp_path / "run"), *MODEL,
            "--warmup-steps", "0", "--no-progress", *[valid if a == "VALID" else a for a in extra]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    if err and err[0].startswith("chosen for this budget"):  # the stream fails once training has started
        err = err[-1:]
    assert message in err[0] and "Traceback" not in "".join(err) and len(err) == 1
