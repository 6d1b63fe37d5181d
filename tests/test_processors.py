"""Each logits processor against a hand-computed example, their argument checks, and next_token."""

import math

import pytest
import torch

from genseq.errors import ConfigError
from genseq.generation import (
    BannedTokens, GenerationConfig, MinNewTokens, MinP, NoRepeatNGram, RepetitionPenalty, Temperature, TopK, TopP,
    TypicalP, build_processors, next_token,
)

INF = math.inf
NO_HISTORY = torch.zeros(1, 0, dtype=torch.long)


def probs_logits(*probs):
    return torch.tensor([probs]).log()  # (1, V)


def kept(logits):
    return torch.isfinite(logits)[0].tolist()


def test_temperature_divides_the_logits():
    assert Temperature(2.0)(NO_HISTORY, torch.tensor([[2.0, 4.0]])).tolist() == [[1.0, 2.0]]


def test_top_k_keeps_the_k_highest():
    assert TopK(2)(NO_HISTORY, torch.tensor([[1.0, 3.0, 2.0, 0.0]])).tolist() == [[-INF, 3.0, 2.0, -INF]]


def test_top_k_larger_than_the_vocabulary_keeps_everything():
    logits = torch.tensor([[1.0, 3.0]])
    assert torch.equal(TopK(5)(NO_HISTORY, logits), logits)


@pytest.mark.parametrize("p,expected", [(0.7, [True, True, False]), (0.5, [True, False, False]), (1.0, [True, True, True])])
def test_top_p_keeps_the_smallest_set_reaching_p(p, expected):
    # probabilities 0.5, 0.3, 0.2: 0.5 alone reaches 0.5; 0.7 needs 0.5 + 0.3
    assert kept(TopP(p)(NO_HISTORY, probs_logits(0.5, 0.3, 0.2))) == expected


def test_top_p_works_on_unsorted_logits():
    assert kept(TopP(0.7)(NO_HISTORY, probs_logits(0.2, 0.5, 0.3))) == [False, True, True]


def test_min_p_keeps_tokens_at_least_p_times_the_best():
    # threshold 0.5 * 0.5 = 0.25
    assert kept(MinP(0.5)(NO_HISTORY, probs_logits(0.5, 0.3, 0.2))) == [True, True, False]


def test_typical_p_prefers_surprise_close_to_the_entropy():
    # H = 1.0297 nats; |surprise - H| = 0.337 (p=.5), 0.174 (p=.3), 0.580 (p=.2):
    # the most typical token is the 0.3 one, then the 0.5 one.
    logits = probs_logits(0.5, 0.3, 0.2)
    assert kept(TypicalP(0.2)(NO_HISTORY, logits)) == [False, True, False]
    assert kept(TypicalP(0.5)(NO_HISTORY, logits)) == [True, True, False]
    assert kept(TypicalP(1.0)(NO_HISTORY, logits)) == [True, True, True]


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits_of_seen_tokens():
    ids = torch.tensor([[-1, 0, 2]])  # -1 is padding, not token 0
    logits = torch.tensor([[2.0, 1.0, -1.0, 3.0]])
    assert RepetitionPenalty(2.0)(ids, logits).tolist() == [[1.0, 1.0, -2.0, 3.0]]


def test_repetition_penalty_ignores_padding():
    logits = torch.tensor([[2.0, 1.0, -1.0]])
    assert RepetitionPenalty(2.0)(torch.tensor([[-1, -1, 1]]), logits).tolist() == [[2.0, 0.5, -1.0]]


def test_no_repeat_bigram_bans_the_token_that_followed_the_last_one():
    ids = torch.tensor([[1, 2, 3, 1]])  # "1 2" occurred, the last token is 1: 2 is banned
    assert kept(NoRepeatNGram(2)(ids, torch.zeros(1, 5))) == [True, True, False, True, True]


def test_no_repeat_trigram_and_rows_are_independent():
    ids = torch.tensor([[1, 2, 3, 1, 2], [4, 4, 4, 4, 4]])
    out = NoRepeatNGram(3)(ids, torch.zeros(2, 5))
    assert torch.isinf(out).nonzero().tolist() == [[0, 3], [1, 4]]


def test_no_repeat_ngram_ignores_padding():
    ids = torch.tensor([[-1, -1, -1, 1]])
    assert kept(NoRepeatNGram(2)(ids, torch.zeros(1, 3))) == [True, True, True]


def test_no_repeat_unigram_bans_every_seen_token():
    assert kept(NoRepeatNGram(1)(torch.tensor([[0, 2]]), torch.zeros(1, 3))) == [False, True, False]


def test_banned_tokens_are_masked():
    assert kept(BannedTokens([1, 3])(NO_HISTORY, torch.zeros(1, 4))) == [True, False, True, False]


def test_min_new_tokens_masks_eos_until_reached():
    processor = MinNewTokens(2, eos_id=3, prompt_length=2)
    one_generated, two_generated = torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long)
    assert kept(processor(one_generated, torch.zeros(1, 4))) == [True, True, True, False]
    assert kept(processor(two_generated, torch.zeros(1, 4))) == [True, True, True, True]


def test_processors_do_not_change_their_inputs():
    ids, logits = torch.tensor([[1, 2, 1]]), torch.tensor([[1.0, 2.0, 3.0, -1.0]])
    before = logits.clone()
    for processor in (Temperature(0.5), TopK(1), TopP(0.5), MinP(0.5), TypicalP(0.5), RepetitionPenalty(2.0),
                      NoRepeatNGram(2), BannedTokens([0]), MinNewTokens(5, 3, 1)):
        processor(ids, logits)
    assert torch.equal(logits, before)


@pytest.mark.parametrize("build,name", [
    (lambda: Temperature(0.0), "temperature"), (lambda: Temperature(-1.0), "temperature"),
    (lambda: TopK(0), "top_k"), (lambda: TopP(0.0), "top_p"), (lambda: TopP(1.5), "top_p"),
    (lambda: MinP(0.0), "min_p"), (lambda: TypicalP(2.0), "typical_p"),
    (lambda: RepetitionPenalty(0.0), "repetition_penalty"), (lambda: NoRepeatNGram(0), "no_repeat_ngram_size"),
    (lambda: BannedTokens([-1]), "banned_token_ids"), (lambda: MinNewTokens(0, 3, 0), "min_new_tokens"),
])
def test_bad_arguments_raise_a_value_error_naming_the_argument_and_range(build, name):
    with pytest.raises(ValueError, match=rf"{name} must be"):
        build()


def test_build_processors_leaves_warpers_out_of_greedy_decoding():
    sampling = GenerationConfig(temperature=0.7, top_k=5, top_p=0.9, repetition_penalty=1.2)
    greedy = GenerationConfig(temperature=0.0, top_k=5, top_p=0.9, repetition_penalty=1.2)
    assert [type(p).__name__ for p in build_processors(sampling, 3, 10, 0)] == ["RepetitionPenalty", "Temperature", "TopK", "TopP"]
    assert [type(p).__name__ for p in build_processors(greedy, 3, 10, 0)] == ["RepetitionPenalty"]


def test_banned_ids_outside_the_vocabulary_are_rejected():
    with pytest.raises(ConfigError, match=r"banned_token_ids must be in \[0, 9\]"):
        build_processors(GenerationConfig(banned_token_ids=(12,)), 3, 10, 0)


# ---- next_token ---------------------------------------------------------------------
def test_next_token_without_generators_is_the_argmax():
    assert next_token(torch.tensor([[0.1, 2.0, 1.0], [3.0, 0.0, 0.0]])).tolist() == [1, 0]


def test_sampling_follows_the_distribution_and_never_picks_a_masked_token():
    logits = torch.tensor([[math.log(0.2), math.log(0.8), -INF]]).repeat(4000, 1)
    generators = [torch.Generator().manual_seed(i) for i in range(4000)]
    tokens = next_token(logits, generators)
    assert set(tokens.tolist()) <= {0, 1}
    assert tokens.float().mean().item() == pytest.approx(0.8, abs=0.03)


def test_each_row_draws_only_from_its_own_generator():
    logits = torch.randn(3, 50)
    together = next_token(logits, [torch.Generator().manual_seed(s) for s in (1, 2, 3)])
    alone = next_token(logits[1:2], [torch.Generator().manual_seed(2)])
    assert together[1] == alone[0]


def test_a_row_with_every_token_excluded_is_a_clear_error():
    with pytest.raises(ConfigError, match="every token was excluded"):
        next_token(torch.full((1, 4), -INF))
