"""The generation engine: decoding loop, beam search, reproducibility, precision, configs."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genseq import LanguageModel, ModelConfig
from genseq.errors import ConfigError
from genseq.generation import GenerationConfig, decoding_step, generate, generate_ids, sample_steps

EOS, A, B = 3, 4, 5


class MarkovModel(nn.Module):
    """A hand-built bigram model: the next token's log-probabilities depend on the last token only.

    It is a DecodableModel without any recurrent core.
    """

    prompt_state = ()

    def __init__(self, log_probs: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(log_probs)  # (V, V): row = last token

    @property
    def network(self):
        return self

    def encode(self, ids, state=None, lengths=None):
        V = self.table.size(0)
        last = ids[:, -1] if lengths is None else ids[torch.arange(ids.size(0)), lengths - 1]
        return F.one_hot(ids, V).float(), (F.one_hot(last, V).float()[None],)  # (B, T, V), ((1, B, V),)

    def logits(self, features):
        return features @ self.table

    def stepper(self, make_linear=None):
        V = self.table.size(0)
        return lambda ids, state: (self.table[ids], (F.one_hot(ids, V).float()[None],))


def markov(transitions: dict[int, dict[int, float]], V: int = 6) -> MarkovModel:
    table = torch.full((V, V), 1e-9)
    for source, targets in transitions.items():
        for target, prob in targets.items():
            table[source, target] = prob
    return MarkovModel((table / table.sum(1, keepdim=True)).log())


# After the start (EOS): A 0.55, B 0.45. After A the model is unsure; after B it is sure.
# Greedy takes A then EOS (0.55 * 0.35); the best sequence is B EOS (0.45 * 0.95).
UNSURE_AFTER_A = {EOS: {A: 0.55, B: 0.45}, A: {EOS: 0.35, A: 0.33, B: 0.32}, B: {EOS: 0.95, A: 0.05}}


@pytest.fixture(scope="module")
def lstm():
    torch.manual_seed(0)
    return LanguageModel(ModelConfig(vocab_size=60, embedding_size=16, hidden_size=24, num_layers=2)).eval()


PROMPTS = [[7, 8, 9, 10, 11], [], [12, 13]]


def tokens_of(results):
    return [[s.tokens for s in sequences] for sequences in results]


# ---- the decoding loop -----------------------------------------------------------------
def test_temperature_zero_is_greedy(lstm):
    config = GenerationConfig(max_new_tokens=12, temperature=0.0)
    got = generate_ids(lstm, [[7, 8, 9]], config, eos_id=EOS)[0][0].tokens
    ids = [EOS, 7, 8, 9]
    with torch.no_grad():  # the reference re-runs the whole prefix every step
        for _ in range(12):
            ids.append(int(lstm(torch.tensor([ids]))[0][0, -1].argmax()))
            if ids[-1] == EOS:
                break
    assert got == ids[4:]


def test_seed_reproducibility(lstm):
    config = GenerationConfig(max_new_tokens=20, seed=7, top_k=30)
    first = generate_ids(lstm, PROMPTS, config, eos_id=EOS)
    assert tokens_of(first) == tokens_of(generate_ids(lstm, PROMPTS, config, eos_id=EOS))
    other = generate_ids(lstm, PROMPTS, config.updated(seed=8), eos_id=EOS)
    assert tokens_of(first) != tokens_of(other)


def test_steps_can_be_consumed_from_other_threads_outside_inference_mode(lstm):
    from concurrent.futures import ThreadPoolExecutor

    config = GenerationConfig(max_new_tokens=10, seed=5, top_k=20)
    steps = sample_steps(lstm, [[7, 8, 9]], config, eos_id=EOS)
    seen, modes = [], []

    def take():  # on whichever worker is free, as a web server resumes a stream
        return next(steps, None), torch.is_inference_mode_enabled()

    with ThreadPoolExecutor(2) as pool:
        while (taken := pool.submit(take).result())[0] is not None:
            seen += taken[0].tokens
            modes.append(taken[1])
    assert len(modes) == 10 and not any(modes)
    assert seen == generate_ids(lstm, [[7, 8, 9]], config, eos_id=EOS)[0][0].tokens


@pytest.mark.parametrize("options", [
    dict(top_p=0.9, repetition_penalty=1.3, num_return_sequences=2),
    dict(temperature=0.0, no_repeat_ngram_size=2),
    dict(num_beams=3, num_return_sequences=2, repetition_penalty=1.2),
])
def test_a_batch_gives_each_prompt_what_it_gets_alone(lstm, options):
    config = GenerationConfig(max_new_tokens=15, seed=3, **options)
    batch = generate_ids(lstm, PROMPTS, config, eos_id=EOS)
    for prompt, together in zip(PROMPTS, batch):
        alone = generate_ids(lstm, [prompt], config, eos_id=EOS)[0]
        assert [s.tokens for s in together] == [s.tokens for s in alone]
        assert [s.logprob for s in together] == pytest.approx([s.logprob for s in alone], abs=1e-4)


def test_return_sequences_are_independent_draws(lstm):
    config = GenerationConfig(max_new_tokens=20, seed=1, num_return_sequences=3)
    sequences = generate_ids(lstm, [[7]], config, eos_id=EOS)[0]
    assert len({tuple(s.tokens) for s in sequences}) == 3


def test_the_prompt_is_encoded_once_and_each_token_costs_one_step(monkeypatch):
    lstm = LanguageModel(ModelConfig(vocab_size=60, embedding_size=16, hidden_size=24)).eval()  # no cached step
    calls = {"encode": [], "step": []}
    encode, stepper = lstm.encode, lstm.stepper

    def counting_encode(ids, state=None, lengths=None):
        calls["encode"].append(tuple(ids.shape))
        return encode(ids, state, lengths)

    def counting_stepper(make_linear=None):
        step = stepper(make_linear)
        return lambda ids, state: calls["step"].append(tuple(ids.shape)) or step(ids, state)

    monkeypatch.setattr(lstm, "encode", counting_encode)
    monkeypatch.setattr(lstm, "stepper", counting_stepper)
    config = GenerationConfig(max_new_tokens=10, seed=0, banned_token_ids=(EOS,), num_return_sequences=2)
    generate_ids(lstm, [[7, 8, 9], [10]], config, eos_id=EOS)
    assert calls["encode"] == [(2, 4)]  # both prompts in one call over the whole sequence
    assert calls["step"] == [(4,)] * 9  # then one step per token, all four sequences together


def test_fused_step_equals_nn_lstm_called_one_step_at_a_time(lstm):
    step, state = lstm.stepper(), lstm.initial_state(3)
    hidden = tuple(s.clone() for s in state)
    ids = torch.randint(0, 60, (3, 6))
    with torch.no_grad():
        for t in range(6):
            logits, state = step(ids[:, t], state)
            output, hidden = lstm.core(lstm.embedding(ids[:, t : t + 1]), hidden)
            torch.testing.assert_close(logits, lstm.output(output[:, 0]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_lower_precision_steps_stay_close_to_fp32(cell, precision):
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(vocab_size=60, cell=cell, embedding_size=16, hidden_size=24, projection_size=8))
    ids, state = torch.randint(0, 60, (4,)), tuple(torch.randn(2, 4, 24) * 0.5 for _ in range(2 if cell == "lstm" else 1))
    exact, exact_state = decoding_step(model, "fp32")(ids, state)
    approximate, approximate_state = decoding_step(model, precision)(ids, state)
    assert (approximate - exact).abs().max() < 0.05
    assert all((a - e).abs().max() < 0.05 for a, e in zip(approximate_state, exact_state))
    assert all(s.dtype == torch.float32 for s in approximate_state)  # the carried state stays fp32


def test_the_decoding_step_is_rebuilt_after_the_weights_change():
    model = LanguageModel(ModelConfig(vocab_size=30, embedding_size=8, hidden_size=8))
    before = decoding_step(model)
    assert decoding_step(model) is before
    with torch.no_grad():
        model.output.bias.add_(1.0)
    assert decoding_step(model) is not before


def test_eos_ends_a_sequence_and_min_new_tokens_masks_it():
    model = markov({EOS: {EOS: 0.9, A: 0.1}, A: {EOS: 0.9, A: 0.1}})
    greedy = GenerationConfig(max_new_tokens=5, temperature=0.0)
    (ended,) = generate_ids(model, [[]], greedy, eos_id=EOS)[0]
    assert (ended.tokens, ended.finish_reason) == ([EOS], "eos")
    (longer,) = generate_ids(model, [[]], greedy.updated(min_new_tokens=2), eos_id=EOS)[0]
    assert (longer.tokens, longer.finish_reason) == ([A, A, EOS], "eos")


def test_length_and_time_limits_are_finish_reasons(lstm):
    config = GenerationConfig(max_new_tokens=4, banned_token_ids=(EOS,), seed=0)
    assert generate_ids(lstm, [[7]], config, eos_id=EOS)[0][0].finish_reason == "length"
    (timed,) = generate_ids(lstm, [[7]], config.updated(max_new_tokens=500, max_time=1e-9), eos_id=EOS)[0]
    assert timed.finish_reason == "time" and len(timed.tokens) < 500


def test_logprob_is_the_model_probability_of_the_tokens():
    model = markov(UNSURE_AFTER_A)
    (sequence,) = generate_ids(model, [[]], GenerationConfig(max_new_tokens=2, temperature=0.0), eos_id=EOS)[0]
    assert sequence.tokens == [A, EOS]
    assert sequence.logprob == pytest.approx(math.log(0.55 * 0.35), abs=1e-5)


# ---- beam search -------------------------------------------------------------------------------
def test_beam_search_finds_the_best_sequence_where_greedy_does_not():
    model = markov(UNSURE_AFTER_A)
    greedy = generate_ids(model, [[]], GenerationConfig(max_new_tokens=3, temperature=0.0), eos_id=EOS)[0][0]
    beams = generate_ids(model, [[]], GenerationConfig(max_new_tokens=3, num_beams=2, num_return_sequences=2), eos_id=EOS)[0]
    assert greedy.tokens == [A, EOS]
    assert [b.tokens for b in beams] == [[B, EOS], [A, EOS]]
    assert [b.logprob for b in beams] == pytest.approx([math.log(0.45 * 0.95), math.log(0.55 * 0.35)], abs=1e-5)
    assert all(b.finish_reason == "eos" for b in beams)


def test_length_penalty_decides_between_short_and_long_hypotheses():
    # Stopping at once costs 0.4; going on, A EOS costs 0.6 * 0.9 = 0.54 in total.
    model = markov({EOS: {EOS: 0.4, A: 0.6}, A: {EOS: 0.9, A: 0.1}})
    config = GenerationConfig(max_new_tokens=4, num_beams=2, early_stopping=False)
    longer_wins = generate_ids(model, [[]], config.updated(length_penalty=1.0), eos_id=EOS)[0][0]
    shorter_wins = generate_ids(model, [[]], config.updated(length_penalty=-2.0), eos_id=EOS)[0][0]
    assert longer_wins.tokens == [A, EOS] and shorter_wins.tokens == [EOS]


def test_beam_search_at_the_length_limit_returns_the_live_beams(lstm):
    config = GenerationConfig(max_new_tokens=5, num_beams=4, num_return_sequences=4, banned_token_ids=(EOS,))
    beams = generate_ids(lstm, [[7, 8]], config, eos_id=EOS)[0]
    assert len(beams) == 4 and all(len(b.tokens) == 5 and b.finish_reason == "length" for b in beams)
    assert [b.score for b in beams] == sorted((b.score for b in beams), reverse=True)
    assert len({tuple(b.tokens) for b in beams}) == 4



class PromptBiased(nn.Module):
    """The lstm with a per-prompt logit bias (P, V) carried as the last state entry, one row per prompt when declared."""

    def __init__(self, lm, biases, invariant: bool):
        super().__init__()
        self.lm, self.biases = lm, biases
        self.prompt_state = (2,) if invariant else ()  # the bias comes after the LSTM's h and c

    @property
    def network(self):
        return self

    def encode(self, ids, state=None, lengths=None):
        features, state = self.lm.encode(ids, lengths=lengths)
        return features, (*state, self.biases[None])

    def logits(self, features):
        return self.lm.logits(features)

    def stepper(self, make_linear=None):
        step = self.lm.stepper(make_linear)

        def biased(ids, state):
            logits, inner = step(ids, state[:-1])
            bias = state[-1][0]  # (P, V): one row per prompt, or per row when not declared
            return logits + bias.repeat_interleave(len(ids) // len(bias), 0), (*inner, state[-1])

        return biased


def test_per_prompt_state_entries_give_the_same_beams(lstm):
    # The bias steers each prompt differently, so an entry that followed the wrong rows would show;
    # early_stopping=False and EOS made likely let prompts finish at different steps (rows leave the batch).
    biases = torch.randn(len(PROMPTS), 60, generator=torch.Generator().manual_seed(1))
    biases[:, EOS] = torch.tensor([2.0, 0.0, 4.0])
    config = GenerationConfig(max_new_tokens=12, num_beams=3, num_return_sequences=3, early_stopping=False)
    declared = generate_ids(PromptBiased(lstm, biases, True), PROMPTS, config, eos_id=EOS)
    reordered = generate_ids(PromptBiased(lstm, biases, False), PROMPTS, config, eos_id=EOS)
    assert [[(s.tokens, s.score) for s in r] for r in declared] == [[(s.tokens, s.score) for s in r] for r in reordered]
    assert len({tuple(r[0].tokens) for r in declared}) > 1


# ---- configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize("options,message", [
    (dict(temperature=-0.5), r"temperature must be in \[0, inf\)"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(top_k=-1), "top_k must be between 0 and inf"),
    (dict(num_beams=0), "num_beams must be between 1 and inf"),
    (dict(max_new_tokens=0), "max_new_tokens must be between 1 and 10000"),
    (dict(max_new_tokens=10**6), "max_new_tokens must be between 1 and 10000"),
    (dict(min_new_tokens=200), r"min_new_tokens must be between 0 and max_new_tokens \(100\)"),
    (dict(stop=("",)), "stop strings must not be empty"),
    (dict(precision="fp8"), "precision must be one of fp32, bf16, int8"),
    (dict(num_beams=4, top_k=10), "sampling-only options top_k cannot be combined with beam search"),
    (dict(num_beams=2, num_return_sequences=3), r"num_return_sequences must be between 1 and num_beams \(2\)"),
    (dict(max_time=0), r"max_time must be in \(0, inf\)"),
])
def test_bad_options_are_config_errors_naming_the_option_and_range(options, message):
    with pytest.raises(ConfigError, match=message):
        GenerationConfig(**options)


def test_default_sampling_options_yield_to_beam_search():
    config = GenerationConfig(num_beams=3, temperature=0.8, top_k=5, defaulted={"temperature", "top_k"})
    assert (config.temperature, config.top_k, config.num_beams, config.do_sample) == (1.0, 0, 3, False)


def test_a_default_num_return_sequences_above_num_beams_is_lowered_to_it():
    config = GenerationConfig(num_beams=3, num_return_sequences=8, defaulted={"num_return_sequences"})
    assert config.num_return_sequences == 3
    assert GenerationConfig(num_return_sequences=8, defaulted={"num_return_sequences"}).num_return_sequences == 8


def test_options_the_caller_sets_still_conflict_with_beam_search():
    warm = GenerationConfig(temperature=0.8, defaulted={"temperature"})
    assert warm.updated(num_beams=4).temperature == 1.0
    with pytest.raises(ConfigError, match="the sampling-only options temperature cannot be combined with beam search"):
        warm.updated(num_beams=4, temperature=0.8)
    with pytest.raises(ConfigError, match="cannot be combined with beam search"):
        GenerationConfig(temperature=0.7, num_beams=3)


def test_defaulted_names_only_generation_options():
    with pytest.raises(ConfigError, match="unknown generation option 'warmth'"):
        GenerationConfig(defaulted={"warmth"})


def test_unknown_options_are_rejected_with_the_known_ones():
    with pytest.raises(ConfigError, match="unknown generation option 'topk'.*top_k"):
        GenerationConfig().updated(topk=5)


def test_generate_takes_options_as_keywords(lstm, tokenizer):
    model = LanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, embedding_size=8, hidden_size=8))
    (completion,) = generate(model, tokenizer, "Shall I", max_new_tokens=3, seed=0, banned_token_ids=[EOS])
    assert len(completion.tokens) == 3 and completion.finish_reason == "length"
