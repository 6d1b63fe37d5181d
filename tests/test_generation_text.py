"""The text layer: prompts, completion text, stop strings and streaming."""

import pytest
import torch
from torch import nn

from genseq import LanguageModel, ModelConfig
from genseq.errors import ConfigError
from genseq.generation import GenerationConfig, IncrementalDecoder, generate, stream

UNICODE_TEXT = "Héllo wörld, naïve café: 日本語 and ☃ — thérè!\nA second line, spelled out."


class ScriptedModel(nn.Module):
    """Generates a fixed token script, whatever the prompt: each logit row is a one-hot of the next token."""

    prompt_state = ()

    def __init__(self, script: list[int], vocab_size: int):
        super().__init__()
        self.script, self.vocab_size = script, vocab_size
        self.dummy = nn.Parameter(torch.zeros(1))
        self.prompts: list[list[int]] = []

    @property
    def network(self):
        return self

    def encode(self, ids, state=None, lengths=None):
        self.prompts.extend(ids.tolist())
        return torch.zeros(*ids.shape, 1), (torch.zeros(1, ids.size(0), 1),)  # features: the position, 0

    def logits(self, features):
        return self._one_hot(features[..., 0].long())

    def stepper(self, make_linear=None):
        def step(ids, state):
            position = state[0] + 1  # (1, B, 1)
            return self._one_hot(position[0, :, 0].long()), (position,)
        return step

    def _one_hot(self, positions):
        script = torch.tensor(self.script)
        return nn.functional.one_hot(script[positions.clamp(max=len(self.script) - 1)], self.vocab_size).float() * 100


@pytest.fixture(scope="module")
def scripted(tokenizer):
    return ScriptedModel(tokenizer.encode(UNICODE_TEXT) + [tokenizer.eos_id], tokenizer.vocab_size)


def test_completion_text_is_the_decoded_tokens_without_eos(scripted, tokenizer):
    (completion,) = generate(scripted, tokenizer, "", max_new_tokens=200, seed=0)
    assert completion.text == UNICODE_TEXT and completion.finish_reason == "eos"
    assert completion.tokens == scripted.script


def test_the_first_word_keeps_its_leading_space(tokenizer):
    model = ScriptedModel(tokenizer.encode("compare thee") + [tokenizer.eos_id], tokenizer.vocab_size)
    (completion,) = generate(model, tokenizer, "Shall I", max_new_tokens=20, temperature=0.0)
    assert "Shall I" + completion.text == "Shall I compare thee"


def test_stream_concatenation_equals_the_full_text_with_multibyte_characters(scripted, tokenizer):
    text_stream = stream(scripted, tokenizer, "", max_new_tokens=200, seed=0)
    deltas = list(text_stream)
    assert "".join(deltas) == UNICODE_TEXT == text_stream.completion.text
    assert len(deltas) > 5
    assert all("\ufffd" not in delta for delta in deltas)
    assert all(delta[:1].isspace() for delta in deltas[1:])  # whole words: each delta starts at a boundary


def test_text_without_spaces_still_streams_in_pieces(tokenizer):
    text = "日本語のテキストには単語の間に空白がありません" * 3
    model = ScriptedModel(tokenizer.encode(text) + [tokenizer.eos_id], tokenizer.vocab_size)
    deltas = list(stream(model, tokenizer, "", max_new_tokens=1000, seed=0))
    assert "".join(deltas) == text and len(deltas) > 2 and "\ufffd" not in "".join(deltas)


def test_incremental_decoding_matches_a_full_decode_token_by_token(tokenizer):
    ids = tokenizer.encode(UNICODE_TEXT)
    decoder = IncrementalDecoder(tokenizer, tokenizer.encode("Before"))
    assert "".join(decoder.push(token) for token in ids) == " " + UNICODE_TEXT  # a word after "Before"


@pytest.mark.parametrize("stop,expected", [
    ("wörld, na", "Héllo "),  # spans several pieces and a multi-byte character
    ("本語", "Héllo wörld, naïve café: 日"),  # inside a run of byte pieces
    ("\nA", "Héllo wörld, naïve café: 日本語 and ☃ — thérè!"),
])
def test_stop_strings_match_across_token_boundaries_and_are_left_out(scripted, tokenizer, stop, expected):
    (completion,) = generate(scripted, tokenizer, "", max_new_tokens=200, stop=[stop, "never there"])
    assert completion.text == expected and completion.finish_reason == "stop"
    text_stream = stream(scripted, tokenizer, "", max_new_tokens=200, stop=[stop])
    assert "".join(text_stream) == expected


def test_generation_stops_at_the_token_completing_the_stop_string(scripted, tokenizer):
    (completion,) = generate(scripted, tokenizer, "", max_new_tokens=200, stop=["café"])
    assert "café" in tokenizer.decode(completion.tokens)
    assert "café" not in tokenizer.decode(completion.tokens[:-1])


def test_stop_strings_in_beam_search(tokenizer):
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, embedding_size=8, hidden_size=8))
    plain = generate(model, tokenizer, "Shall I", max_new_tokens=12, num_beams=3, num_return_sequences=3)
    stop = plain[0].text[2:4]
    stopped = generate(model, tokenizer, "Shall I", max_new_tokens=12, num_beams=3, num_return_sequences=3, stop=[stop])
    assert all(stop not in c.text for c in stopped)
    assert any(c.finish_reason == "stop" for c in stopped)


def test_an_empty_prompt_starts_from_eos(tokenizer):
    model = ScriptedModel([7, tokenizer.eos_id], tokenizer.vocab_size)
    generate(model, tokenizer, "", max_new_tokens=5, seed=0)
    assert model.prompts == [[tokenizer.eos_id]]
    generate(model, tokenizer, ["", "Shall I"], max_new_tokens=5, seed=0)
    shall_i = tokenizer.encode("Shall I")
    assert model.prompts[1:] == [[tokenizer.eos_id] + [0] * len(shall_i), [tokenizer.eos_id, *shall_i]]  # right-padded


def test_unseen_characters_and_very_long_prompts_are_fine(tokenizer):
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, embedding_size=8, hidden_size=8))
    (odd,) = generate(model, tokenizer, "ℵ₀ ∀x∈ℝ 🦜 Ω", max_new_tokens=3, seed=0)
    (long,) = generate(model, tokenizer, "Shall I compare thee to a summer's day? " * 400, max_new_tokens=3, seed=0)
    assert len(odd.tokens) <= 3 and len(long.tokens) <= 3


def test_a_stream_of_a_sampled_model_equals_its_generated_text(tokenizer):
    torch.manual_seed(1)
    model = LanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, embedding_size=8, hidden_size=8))
    for seed in range(5):  # an untrained model emits stray byte pieces: broken UTF-8 on purpose
        options = dict(max_new_tokens=40, seed=seed, stop=["th"])
        (full,) = generate(model, tokenizer, "Shall I", **options)
        text_stream = stream(model, tokenizer, "Shall I", **options)
        assert "".join(text_stream) == full.text
        assert text_stream.completion == full


def test_prompt_plus_completion_is_the_decoded_whole(tokenizer):
    torch.manual_seed(2)
    model = LanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, embedding_size=8, hidden_size=8))
    prompt = "When in disgrace with fortune and men's eyes,\nI all alone beweep — café 日本"
    for seed in range(5):
        (completion,) = generate(model, tokenizer, prompt, max_new_tokens=30, seed=seed)
        assert prompt + completion.text == tokenizer.decode(tokenizer.encode(prompt) + completion.tokens)


def test_a_batch_of_text_prompts_gives_one_list_per_prompt(tokenizer):
    torch.manual_seed(3)
    model = LanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, embedding_size=8, hidden_size=8))
    results = generate(model, tokenizer, ["Shall I", "When"], max_new_tokens=4, seed=0, num_return_sequences=2)
    assert [len(r) for r in results] == [2, 2]
    alone = generate(model, tokenizer, ["When"], max_new_tokens=4, seed=0, num_return_sequences=2)[0]
    assert [(c.text, c.tokens) for c in alone] == [(c.text, c.tokens) for c in results[1]]
    assert [c.logprob for c in alone] == pytest.approx([c.logprob for c in results[1]], abs=1e-4)


def test_streaming_several_sequences_is_refused(scripted, tokenizer):
    with pytest.raises(ConfigError, match="streaming follows one sequence"):
        stream(scripted, tokenizer, "x", GenerationConfig(num_beams=2))
