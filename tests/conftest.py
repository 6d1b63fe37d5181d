"""Shared fixtures: a tiny corpus, a tokenizer trained on it, and a tiny trained run.

Everything is small enough to build in seconds on two CPU cores; nothing here
needs ../shared or the network.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import Phase, settings

from genseq import LanguageModel, ModelConfig, Tokenizer, save_pretrained
from genseq.data import iter_texts, open_source

DATA = Path(__file__).parent / "data"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


# Tiny models gain nothing from a second thread, and OpenMP threads spinning against
# another busy process can make a millisecond op take a hundred times longer.
torch.set_num_threads(1)

# Budgets of the fuzz suite (tests/test_fuzz.py). "ci", the default, tries the same few examples on every run and
# reports a failing one as found (shrinking an example that takes a second would take minutes); "long" tries
# thousands and shrinks, by hand: pytest -m fuzz --hypothesis-profile long. Neither keeps a database in the tree.
settings.register_profile("ci", max_examples=10, derandomize=True, deadline=None, database=None, print_blob=True,
                          phases=[Phase.explicit, Phase.generate])
settings.register_profile("long", max_examples=250, deadline=None, database=None, print_blob=True)
if settings.get_current_profile_name() == "default":  # --hypothesis-profile, when given, has already chosen
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _auto_trains_in_fp32(request, monkeypatch):
    """Training's precision "auto" means fp32 in tests, so that figures compared across runs and processes do
    not depend on whether this CPU has fast bf16; tests/test_precision.py exercises auto on both answers."""
    if request.module.__name__.rsplit(".", 1)[-1] != "test_precision":
        from genseq import capabilities

        monkeypatch.setattr(capabilities, "bf16_training_is_faster", lambda device: False)


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
    """A run directory from `genseq train completion` on the tiny corpus (a few seconds)."""
    from genseq.cli import main

    out = tmp_path_factory.mktemp("runs") / "tiny"
    code = main([
        "train", "completion", "--data", str(train_file), "--valid", str(valid_file), "--out", str(out),
        "--vocab-size", "400", "--embedding-size", "32", "--hidden-size", "48", "--batch-size", "8",
        "--bptt", "16", "--max-steps", "40", "--warmup-steps", "5", "--no-progress", "--fixed-defaults",
    ])
    assert code == 0
    return out


@pytest.fixture(scope="session")
def untrained_checkpoint(tmp_path_factory, tokenizer) -> str:
    """A checkpoint directory holding an untrained tiny language model (instant to make and to load)."""
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, embedding_size=16, hidden_size=16))
    directory = tmp_path_factory.mktemp("untrained") / "tiny"
    save_pretrained(directory, model, tokenizer)
    return str(directory)


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test when that folder is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path
