"""The caption metrics: the COCO caption evaluation's scorers on genseq's tokenisation, against values counted by hand."""

import math
import shutil

import pytest

from genseq_captioning.metrics import CaptionScorer, caption_bleu, caption_metrics, corpus_bleu, tokenize

# Hypotheses and references shared by the agreement tests: the first has no matching 4-gram, where the
# COCO evaluation's (matches + 1e-15) / (n-grams + 1e-9) precision is not 0.
SHARED_CAPTIONS = ["A cat sits on the mat.", "The dog runs", "Two children play tag in a park", "a red circle"]
SHARED_REFERENCES = [["A cat is on the mat."], ["A dog runs fast.", "The dog runs in the park"],
                     ["Two kids play tag in the park", "Children playing a game of tag", "Some kids run in a park"],
                     ["a red circle", "a red disc on white"]]


def coco_bleu(captions, references):
    """BLEU-1..4 as the COCO caption evaluation computes it from tokenized strings."""
    from pycocoevalcap.bleu.bleu import Bleu

    gts = {i: [" ".join(tokenize(r)) for r in refs] for i, refs in enumerate(references)}
    res = {i: [" ".join(tokenize(c))] for i, c in enumerate(captions)}
    return Bleu(4).compute_score(gts, res, verbose=0)[0]


def test_genseq_bleu_agrees_with_the_coco_evaluation_to_1e_6():
    ours = caption_bleu(SHARED_CAPTIONS, SHARED_REFERENCES)
    for n, theirs in enumerate(coco_bleu(SHARED_CAPTIONS, SHARED_REFERENCES), start=1):
        assert ours[f"bleu{n}"] == pytest.approx(theirs, abs=1e-6)
    for i in range(len(SHARED_CAPTIONS)):  # and image by image, where most orders have no match
        one = caption_bleu(SHARED_CAPTIONS[i : i + 1], SHARED_REFERENCES[i : i + 1])
        for n, theirs in enumerate(coco_bleu(SHARED_CAPTIONS[i : i + 1], SHARED_REFERENCES[i : i + 1]), start=1):
            assert one[f"bleu{n}"] == pytest.approx(theirs, abs=1e-6)


def test_clipping_and_no_brevity_penalty_at_equal_length():
    # Papineni et al.'s example: "the" occurs at most twice in one reference, so 2 of 7 unigrams count.
    hypothesis = "the the the the the the the".split()
    references = ["the cat is on the mat".split(), "there is a cat on the mat".split()]
    scores = corpus_bleu([hypothesis], [references])
    assert scores["bleu1"] == pytest.approx(2 / 7)
    assert scores["length_ratio"] == 1.0  # c = 7 equals the closest reference length 7
    assert scores["bleu2"] == pytest.approx(0.0, abs=1e-6)  # no "the the" in any reference


def test_counts_are_summed_over_the_corpus_and_a_missing_4gram_gives_the_coco_floor():
    hypotheses = ["a cat sits on the mat".split(), "the dog runs".split()]
    references = [["a cat is on the mat".split()], ["a dog runs fast".split(), "the dog runs in the park".split()]]
    scores = corpus_bleu(hypotheses, references)
    # matches / n-grams: unigrams 5/6 + 3/3, bigrams 3/5 + 2/2, trigrams 1/4 + 1/1, 4-grams 0/3 + 0/0
    p1, p2, p3, p4 = 8 / 9, 5 / 7, 2 / 5, 1e-15 / 3
    # c = 6 + 3 = 9; r = 6 + 4 (4 is the reference length closest to 3) = 10
    penalty = math.exp(1 - 10 / 9)
    assert scores["bleu1"] == pytest.approx(penalty * p1)
    assert scores["bleu2"] == pytest.approx(penalty * (p1 * p2) ** (1 / 2))
    assert scores["bleu3"] == pytest.approx(penalty * (p1 * p2 * p3) ** (1 / 3))
    assert scores["bleu4"] == pytest.approx(penalty * (p1 * p2 * p3 * p4) ** (1 / 4), rel=1e-6)  # 8.6e-5, not 0
    assert scores["length_ratio"] == pytest.approx(0.9)


def test_the_closest_reference_length_is_the_shorter_on_a_tie():
    # hypothesis of 5 words, references of 4 and 6: r = 4, so c > r and there is no penalty
    scores = corpus_bleu([["a", "b", "c", "d", "e"]], [[["a", "b", "c", "d"], ["a", "b", "c", "d", "e", "f"]]])
    assert scores["length_ratio"] == pytest.approx(5 / 4)
    assert scores["bleu1"] == pytest.approx(1.0)


def test_cider_d_weighs_ngrams_by_rarity_over_the_corpus():
    # "a" is in every image's references, so its idf is 0; each other n-gram of orders 1 to 3 matches with
    # cosine 1, and there are no 4-grams: per image mean(1, 1, 1, 0) * 10 = 7.5.
    scores = caption_metrics(["a red circle", "a blue square"], [["a red circle"], ["a blue square"]], meteor=False)
    assert scores["cider"] == pytest.approx(7.5)
    alone = caption_metrics(["a red circle"], [["a red circle"]], meteor=False)
    assert alone["cider"] == 0.0  # one image: every n-gram is in every image's references


def test_rouge_l_is_the_longest_common_subsequence_f_measure_with_beta_1_2():
    # LCS of "a cat on the mat" (5 words) and "the cat was on the mat" (6) is "cat on the mat" (4)
    precision, recall, beta = 4 / 5, 4 / 6, 1.2
    expected = (1 + beta**2) * precision * recall / (recall + beta**2 * precision)
    scores = caption_metrics(["A cat on the mat."], [["The cat was on the mat"]], meteor=False)
    assert scores["rouge_l"] == pytest.approx(expected)
    # with two references, the best precision and the best recall are taken separately
    two = caption_metrics(["a cat on the mat"], [["the cat was on the mat", "a cat"]], meteor=False)
    best_precision, best_recall = 4 / 5, 2 / 2
    assert two["rouge_l"] == pytest.approx((1 + beta**2) * best_precision * best_recall
                                           / (best_recall + beta**2 * best_precision))


def test_without_java_meteor_is_left_out_with_the_reason(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    scores = caption_metrics(["a red circle"], [["a red circle"]])
    assert "meteor" not in scores and scores["meteor_skipped"] == "no Java runtime (java) on PATH"
    assert {"bleu1", "bleu2", "bleu3", "bleu4", "cider", "rouge_l"} <= set(scores)


def test_a_meteor_jar_that_fails_is_left_out_with_the_reason(monkeypatch):
    from pycocoevalcap.meteor import meteor

    class Broken:
        def __init__(self):
            raise OSError("java: cannot reserve the heap")

    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/java")
    monkeypatch.setattr(meteor, "Meteor", Broken)
    with CaptionScorer() as score:
        scores = score(["a red circle"], [["a red circle"]])
    assert scores["meteor_skipped"] == "the METEOR jar failed (OSError: java: cannot reserve the heap)"


def test_captions_are_compared_as_lowercase_words_without_punctuation():
    assert tokenize("A frog, sitting.") == ["a", "frog", "sitting"]
    assert tokenize("one o’clock") == ["one", "o’clock"]
    assert caption_bleu(["The letter O."], [["the letter o"]])["bleu3"] == pytest.approx(1.0)


@pytest.mark.skipif(shutil.which("java") is None, reason="the COCO evaluation's PTB tokenizer runs Java")
def test_on_plain_captions_genseq_tokenisation_is_the_coco_evaluations():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    def ptb(texts):
        return PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(texts)})

    flat = [r for refs in SHARED_REFERENCES for r in refs]
    tokenized = ptb(flat)
    assert [tokenized[i][0] for i in range(len(flat))] == [" ".join(tokenize(r)) for r in flat]
    assert [v[0] for v in ptb(SHARED_CAPTIONS).values()] == [" ".join(tokenize(c)) for c in SHARED_CAPTIONS]


def test_mismatched_lists_are_refused():
    with pytest.raises(ValueError):
        corpus_bleu([["a"]], [])
    with pytest.raises(ValueError):
        corpus_bleu([["a"]], [[]])
