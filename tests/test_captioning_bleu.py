"""Corpus BLEU against values counted by hand."""

import math

import pytest

from genseq_captioning.bleu import caption_bleu, closest_length, corpus_bleu, tokenize


def test_clipping_and_no_brevity_penalty_at_equal_length():
    # Papineni et al.'s example: "the" occurs at most twice in one reference, so 2 of 7 unigrams count.
    hypothesis = "the the the the the the the".split()
    references = ["the cat is on the mat".split(), "there is a cat on the mat".split()]
    scores = corpus_bleu([hypothesis], [references])
    assert scores["bleu1"] == pytest.approx(2 / 7)
    assert scores["brevity_penalty"] == 1.0  # c = 7 equals the closest reference length 7
    assert scores["bleu2"] == 0.0  # no "the the" in any reference, and there is no smoothing


def test_counts_are_summed_over_the_corpus_before_dividing():
    hypotheses = ["a cat sits on the mat".split(), "the dog runs".split()]
    references = [["a cat is on the mat".split()], ["a dog runs fast".split(), "the dog runs in the park".split()]]
    scores = corpus_bleu(hypotheses, references)
    # matches / n-grams: unigrams 5/6 + 3/3, bigrams 3/5 + 2/2, trigrams 1/4 + 1/1, 4-grams 0/3 + 0/0
    p1, p2, p3 = 8 / 9, 5 / 7, 2 / 5
    # c = 6 + 3 = 9; r = 6 + 4 (4 is the reference length closest to 3) = 10
    penalty = math.exp(1 - 10 / 9)
    assert scores["brevity_penalty"] == pytest.approx(penalty)
    assert scores["bleu1"] == pytest.approx(penalty * p1)
    assert scores["bleu2"] == pytest.approx(penalty * (p1 * p2) ** (1 / 2))
    assert scores["bleu3"] == pytest.approx(penalty * (p1 * p2 * p3) ** (1 / 3))
    assert scores["bleu4"] == 0.0
    assert scores["length_ratio"] == pytest.approx(0.9)


def test_a_perfect_match_scores_one_and_a_longer_hypothesis_has_no_penalty():
    caption = "a small red bird on a branch".split()
    assert corpus_bleu([caption], [[caption]])["bleu4"] == pytest.approx(1.0)
    longer = corpus_bleu([caption + ["today"]], [[caption]])
    assert longer["brevity_penalty"] == 1.0
    assert longer["bleu1"] == pytest.approx(7 / 8)


def test_closest_reference_length_prefers_the_shorter_on_a_tie():
    assert closest_length(5, [4, 6]) == 4
    assert closest_length(5, [7, 3, 5]) == 5


def test_captions_are_compared_as_lowercase_words_without_punctuation():
    assert tokenize("A frog, sitting.") == ["a", "frog", "sitting"]
    assert tokenize("one o’clock") == ["one", "o’clock"]
    assert caption_bleu(["The letter O."], [["the letter o"]])["bleu3"] == pytest.approx(1.0)


def test_mismatched_lists_are_refused():
    with pytest.raises(ValueError):
        corpus_bleu([["a"]], [])
    with pytest.raises(ValueError):
        corpus_bleu([["a"]], [[]])
