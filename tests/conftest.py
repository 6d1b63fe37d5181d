"""Shared fixtures: a tiny corpus, a tokenizer trained on it, and a tiny trained run.

Everything is small enough to build in seconds on two CPU cores; nothing here
needs ../shared or the network.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from genseq import ModelConfig, Tokenizer
from genseq.data import iter_texts, open_source

DATA = Path(__file__).parent / "data"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


# Tiny models gain nothing from a second thread, and OpenMP threads spinning against
# another busy process can make a millisecond op take a hundred times longer.
torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _token_cache(tmp_path_factory):
    """Keep the token cache out of the user's home directory."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GENSEQ_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def train_file() -> Path:
    return DATA / "corpus" / "sonnets_train.txt"


@pytest.fixture(scope="session")
def valid_file() -> Path:
    return DATA / "corpus" / "sonnets_valid.txt"


@pytest.fixture(scope="session")
def tokenizer(train_file) -> Tokenizer:
    return Tokenizer.train(iter_texts(open_source(str(train_file))), vocab_size=400)


@pytest.fixture
def tiny_config(tokenizer) -> ModelConfig:
    return ModelConfig(vocab_size=tokenizer.vocab_size, embedding_size=16, hidden_size=24, num_layers=2)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, train_file, valid_file) -> Path:
    """A run directory from `genseq train lm` on the tiny corpus (a few seconds)."""
    from genseq.cli import main

    out = tmp_path_factory.mktemp("runs") / "tiny"
    code = main([
        "train", "lm", "--data", str(train_file), "--valid", str(valid_file), "--out", str(out),
        "--vocab-size", "400", "--embedding-size", "32", "--hidden-size", "48", "--batch-size", "8",
        "--bptt", "16", "--max-steps", "40", "--warmup-steps", "5", "--no-progress",
    ])
    assert code == 0
    return out


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test when that folder is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path
