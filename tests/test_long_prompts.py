"""Prompts of any length: the prefill reads them a window at a time, in memory bounded by the window.

The windowed prefill must give what one pass over the whole prompt gives, and a
multi-megabyte prompt must generate, beam-search and suggest next words without
its memory growing with the prompt (one pass once held every position's
activations: 21.5 GB for a 5 MB prompt on the default model).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from genseq import ModelConfig
from genseq.generation import generate, prefill
from genseq.generation.prefill import encode_prompts
from genseq.model import LanguageModel

PROMPT_MEGABYTES = 3
# Measured with this script: 44 MB with the windowed prefill, 784 MB with one pass over the whole prompt.
MAX_GROWTH_MB = 200


@pytest.fixture
def model(tiny_config) -> LanguageModel:
    torch.manual_seed(0)
    return LanguageModel(tiny_config).eval()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_windowed_prefill_gives_the_whole_prompt_forwards_next_token_logits(tiny_config, cell):
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(**{**tiny_config.to_dict(), "cell": cell})).eval()
    prompts = [[], [5, 6, 7, 8], list(range(10, 23)), list(range(30, 59))]  # end before, at and across windows
    with torch.inference_mode():
        logits, state = encode_prompts(model, prompts, start_id=3, window=5)
        for row, prompt in enumerate(prompts):
            whole, whole_state = model(torch.tensor([[3, *prompt]]))  # (1, T, V)
            torch.testing.assert_close(logits[row], whole[0, -1], atol=1e-5, rtol=0)
            for carried, expected in zip(state, whole_state):
                torch.testing.assert_close(carried[:, row], expected[:, 0], atol=1e-5, rtol=0)


def test_generation_is_the_same_whatever_the_prefill_window(model, tokenizer, monkeypatch):
    prompt = "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\n" * 3
    expected = generate(model, tokenizer, prompt, max_new_tokens=8, temperature=0)
    beams = generate(model, tokenizer, prompt, max_new_tokens=8, num_beams=3, num_return_sequences=2)
    monkeypatch.setattr(prefill, "PREFILL_WINDOW", 7)
    assert generate(model, tokenizer, prompt, max_new_tokens=8, temperature=0) == expected
    assert [c.tokens for c in generate(model, tokenizer, prompt, max_new_tokens=8, num_beams=3, num_return_sequences=2)] \
        == [c.tokens for c in beams]


def test_suggestions_read_a_long_context_a_window_at_a_time(model, tokenizer, monkeypatch):
    from genseq_completion.suggest import next_words

    prompt = "From fairest creatures we desire increase, that thereby beauty's rose might never die, but as the ri"
    expected = next_words(model, tokenizer, prompt, k=3)
    monkeypatch.setattr(prefill, "PREFILL_WINDOW", 4)
    windowed = next_words(model, tokenizer, prompt, k=3)
    assert [s["word"] for s in windowed] == [s["word"] for s in expected]
    assert [s["prob"] for s in windowed] == pytest.approx([s["prob"] for s in expected], abs=1e-6)


MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import torch
    from genseq import ModelConfig, Tokenizer
    from genseq.generation import generate
    from genseq.model import LanguageModel
    from genseq_completion.suggest import next_words

    torch.set_num_threads(1)
    torch.manual_seed(0)
    tokenizer = Tokenizer.load(sys.argv[1])
    # Wide enough that one pass over the prompt would hold far more than the bound: (T, 4H) gates and more.
    model = LanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, embedding_size=16, hidden_size=64, num_layers=1))
    def run(prompt):
        sampled = generate(model, tokenizer, prompt, max_new_tokens=4, seed=0)
        beams = generate(model, tokenizer, prompt, max_new_tokens=3, num_beams=2)
        return [sampled[0].tokens, beams[0].tokens, next_words(model, tokenizer, prompt, k=2)]
    run("warm up every path once\\n")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    prompt = ("beauty " * 11 + "beauty\\n") * (int(float(sys.argv[2]) * 1e6) // 84)
    sampled, beams, words = run(prompt)
    growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024  # ru_maxrss is in KiB on Linux
    print(json.dumps({"chars": len(prompt), "growth_mb": growth, "sampled": len(sampled), "beams": len(beams),
                      "words": len(words)}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss is in KiB on Linux, in bytes elsewhere")
def test_a_multi_megabyte_prompt_runs_in_memory_bounded_by_the_window(tokenizer, tmp_path):
    tokenizer_file = tmp_path / "tokenizer.model"
    tokenizer_file.write_bytes(tokenizer.to_bytes())
    done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(tokenizer_file), str(PROMPT_MEGABYTES)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout.splitlines()[-1])
    assert measured["chars"] > PROMPT_MEGABYTES * 0.99e6
    assert (measured["sampled"], measured["beams"], measured["words"]) == (4, 3, 2)
    assert measured["growth_mb"] < MAX_GROWTH_MB, f"{measured['growth_mb']:.0f} MB for a {PROMPT_MEGABYTES} MB prompt"


# ---- sentiment reads the first tokens only ------------------------------------------------------
@pytest.mark.parametrize("text", [
    "", "one line", "a\nb\n", "\n\nblank lines first\n\n", "short\n" + "x " * 400, "mixed é 日本語\nline two\n" * 40,
])
@pytest.mark.parametrize("max_tokens", [1, 7, 256])
def test_sentiment_reads_the_same_first_tokens_as_encoding_the_whole_text(tokenizer, text, max_tokens):
    from genseq_sentiment.model import leading_ids

    assert leading_ids(tokenizer, text, max_tokens) == tokenizer.encode(text)[:max_tokens]


def test_sentiment_encodes_only_the_lines_its_tokens_come_from(tokenizer, monkeypatch):
    from genseq_sentiment.model import leading_ids

    encoded: list[str] = []
    original = type(tokenizer).encode
    monkeypatch.setattr(type(tokenizer), "encode", lambda self, text: encoded.append(text) or original(self, text))
    document = "Thank you, the crew was wonderful!\n" * 200_000  # 7 MB
    assert len(leading_ids(tokenizer, document, 16)) == 16
    assert sum(map(len, encoded)) < 200
