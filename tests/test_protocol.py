"""The model protocol: a model that provides DecodableModel's members, and nothing else, decodes; no import cycle."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genseq import LanguageModel, ModelConfig
from genseq.generation import DecodableModel, GenerationConfig, beam_search, generate_ids

V, EOS = 6, 0
GENERATION = Path(__file__).resolve().parents[1] / "genseq" / "generation"


class Successor:
    """A hand-written DecodableModel, not an nn.Module: after token t comes t + 1 (mod V), so 5 is followed by EOS.

    It has the protocol's members only, so the engine calling anything else would fail.
    """

    prompt_state = ()

    def __init__(self):
        table = torch.full((V, V), -5.0)
        table[torch.arange(V), (torch.arange(V) + 1) % V] = 0.0
        self.network = nn.Module()
        self.network.table = nn.Parameter(table)  # (V, V): row = last token
        self.modes: list[bool] = []  # the network's training flag at every step

    def encode(self, ids, state=None, lengths=None):
        last = ids[:, -1] if lengths is None else ids[torch.arange(ids.size(0)), lengths - 1]
        return F.one_hot(ids, V).float(), (F.one_hot(last, V).float()[None],)  # (B, T, V), ((1, B, V),)

    def logits(self, features):
        return features @ self.network.table

    def stepper(self, make_linear=None):
        def step(ids, state):
            self.modes.append(self.network.training)
            return self.network.table[ids], (F.one_hot(ids, V).float()[None],)

        return step


def greedy_or_beams(num_beams: int) -> GenerationConfig:
    if num_beams == 1:
        return GenerationConfig(max_new_tokens=8, temperature=0.0)
    return GenerationConfig(max_new_tokens=8, num_beams=num_beams, early_stopping=False)


def test_the_models_that_decode_meet_the_protocol():
    from genseq_captioning.decoder import BoundDecoder, CaptionDecoder, DecoderConfig

    decoder = CaptionDecoder(DecoderConfig(vocab_size=20, feature_channels=4, feature_size=8, embedding_size=8,
                                           hidden_size=8, attention_size=8))
    language_model = LanguageModel(ModelConfig(vocab_size=300, embedding_size=8, hidden_size=8))
    for model in (Successor(), language_model, BoundDecoder(decoder, torch.randn(1, 4, 2, 2))):
        assert isinstance(model, DecodableModel), type(model).__name__
    assert not isinstance(nn.Linear(2, 2), DecodableModel)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_a_hand_written_model_decodes_by_sampling_loop_and_beam_search(num_beams):
    [[best, *_]] = generate_ids(Successor(), [[2]], greedy_or_beams(num_beams), eos_id=EOS)
    assert best.tokens == [3, 4, 5, EOS] and best.finish_reason == "eos"


def test_beam_search_takes_a_hand_written_model_directly():
    # Without early stopping: the model's equal off-successor scores would otherwise let torch.topk's order among
    # ties (which differs between CPUs) decide which two short hypotheses finish first and end the search.
    config = GenerationConfig(num_beams=2, num_return_sequences=2, early_stopping=False)
    results = beam_search(Successor(), [[1], [4]], config, eos_id=EOS)
    assert [r[0].tokens for r in results] == [[2, 3, 4, 5, EOS], [5, EOS]]
    assert all(len(r) == 2 and r[0].score >= r[1].score for r in results)


@pytest.mark.parametrize("num_beams", [1, 2])
def test_the_engine_decodes_with_the_networks_dropout_off_and_restores_its_mode(num_beams):
    model = Successor()
    model.network.train()
    generate_ids(model, [[1]], greedy_or_beams(num_beams), eos_id=EOS)
    assert model.modes and not any(model.modes)
    assert model.network.training


def _relative_imports(path: Path) -> set[str]:
    """The sibling modules a module of genseq.generation imports (from .x import ..., wherever in the file)."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            imported |= {node.module} if node.module else {alias.name for alias in node.names}
    return imported


def test_sampling_and_beam_search_do_not_import_each_other_or_the_entry_point():
    imports = {path.stem: _relative_imports(path) for path in GENERATION.glob("*.py") if path.stem != "__init__"}
    assert not imports["beam"] & {"engine", "sampling"}
    assert not imports["sampling"] & {"engine", "beam"}
    assert {"beam", "sampling"} <= imports["engine"]  # the one module that chooses between them


def test_the_generation_package_has_no_import_cycle():
    imports = {path.stem: _relative_imports(path) for path in GENERATION.glob("*.py") if path.stem != "__init__"}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for module in imports.get(start, ()):
            if module == target or (module not in seen and reaches(module, target, seen | {module})):
                return True
        return False

    assert [module for module in imports if reaches(module, module, set())] == []


def test_the_task_floors_generation_options_and_the_engines_config_import_no_torch():
    code = ("import sys; import genseq.generation.config; from genseq.tasks import generation_options, generation_config;"
            " generation_options(); print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
