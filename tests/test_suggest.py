"""Next-word suggestions against exact enumeration on a hand-built Markov model."""

import math

import pytest
import torch

from genseq_completion.suggest import Vocabulary, split_prompt, suggest_words

PIECES = ["<pad>", "<unk>", "<s>", "</s>", "<0x0A>", "▁to", "▁be", "▁b", "e", "ee", ",", "▁", "st"]
EOS, NEWLINE, CONTINUATIONS = 3, 4, {8, 9, 12}
VOCAB = Vocabulary(PIECES, special={0, 1, 2, 3, 4}, boundary_extra={EOS, NEWLINE})


def transition_matrix() -> torch.Tensor:
    """P[previous, next]: random, but a continuation piece is never followed by another."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(len(PIECES), len(PIECES), generator=generator) * 2
    logits[:, [0, 1, 2]] = -math.inf
    for piece in CONTINUATIONS:
        logits[piece, list(CONTINUATIONS)] = -math.inf
    return logits.log_softmax(-1)


LOG_P = transition_matrix()


def markov_step(ids, state):
    return LOG_P[ids], state


def exact_word_probabilities(previous: int) -> dict[str, float]:
    """Sum over every spelling: P(first piece) * P(continuations) * P(a boundary next)."""
    p = LOG_P.exp()
    ends = [i for i in range(len(PIECES)) if i in (EOS, NEWLINE) or (i > 4 and i not in CONTINUATIONS)]
    words: dict[str, float] = {}

    def walk(word, last, prob):
        if word:  # a bare "▁" starts a word that the following pieces spell
            words[word] = words.get(word, 0.0) + prob * p[last, ends].sum().item()
        for piece in CONTINUATIONS:
            if p[last, piece] > 0:
                walk(word + PIECES[piece], piece, prob * p[last, piece].item())

    for first in (5, 6, 7, 11):
        walk(PIECES[first][1:], first, p[previous, first].item())
    return words


def run(partial="", k=10, previous=5):
    state = (torch.zeros(1, 1, 1),)
    return suggest_words(markov_step, state, LOG_P[previous], VOCAB, partial=partial, k=k, max_expansions=1000)


def test_probabilities_equal_exact_enumeration():
    exact = exact_word_probabilities(previous=5)
    found = {s["word"]: s["prob"] for s in run(k=50)}
    assert set(found) == set(exact)
    for word, prob in exact.items():
        assert found[word] == pytest.approx(prob, rel=1e-5), word


def test_suggestions_are_ranked_probabilities_summing_to_at_most_one():
    suggestions = run(k=3)
    probs = [s["prob"] for s in suggestions]
    assert len(suggestions) == 3 and probs == sorted(probs, reverse=True)
    assert all(0 < p <= 1 for p in probs) and sum(probs) <= 1


@pytest.mark.parametrize("partial", ["b", "be", "bes"])
def test_a_partial_word_gets_completions_of_that_word(partial):
    exact = {w: p for w, p in exact_word_probabilities(previous=5).items() if w.startswith(partial)}
    found = {s["word"]: s["prob"] for s in run(partial=partial, k=50)}
    assert set(found) == set(exact) and all(w.startswith(partial) for w in found)
    for word in exact:
        assert found[word] == pytest.approx(exact[word], rel=1e-5)


@pytest.mark.parametrize("prompt,expected", [
    ("To be or not to", ("To be or not", "to")),
    ("To be or not to ", ("To be or not to", "")),
    ("Hello,", ("Hello,", "")),
    ("", ("", "")),
    ("line one\nwor", ("line one\n", "wor")),
    ("don't", ("", "don't")),
])
def test_split_prompt_separates_the_word_being_typed(prompt, expected):
    assert split_prompt(prompt) == expected
