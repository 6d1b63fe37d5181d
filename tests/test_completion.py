"""The completion task through the task contract, on a tiny trained checkpoint."""

import pytest

from genseq import ConfigError
from genseq.plugins import get_task_class


@pytest.fixture(scope="module")
def task(trained_run):
    return get_task_class("completion")(model=str(trained_run))


def test_completion_is_discovered_as_a_builtin_task():
    from genseq.plugins import discover

    info = next(info for info in discover() if info.name == "completion")
    assert (info.distribution, info.status) == ("genseq", "ok")


def test_same_seed_gives_the_same_text(task):
    first = task.run({"prompt": "Shall I compare thee"}, max_new_tokens=15, seed=7)
    again = task.run({"prompt": "Shall I compare thee"}, max_new_tokens=15, seed=7)
    assert first["text"] == again["text"] and first["completions"] == again["completions"]


def test_stream_ends_with_the_full_result_and_grows_by_prefixes(task):
    parts = list(task.stream({"prompt": "My love"}, max_new_tokens=20, seed=3))
    texts = [part["text"] for part in parts]
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:]))
    assert parts[-1]["text"] == task.run({"prompt": "My love"}, max_new_tokens=20, seed=3)["text"]


def test_suggestions_are_ranked_words_with_probabilities(task):
    suggestions = task.run({"prompt": "Shall I compare thee to a"}, suggest=5)["suggestions"]
    probs = [s["prob"] for s in suggestions]
    assert len(suggestions) == 5 and probs == sorted(probs, reverse=True)
    assert all(0 < p <= 1 for p in probs) and sum(probs) <= 1
    assert all(s["label"] and " " not in s["label"] for s in suggestions)


def test_a_typed_word_that_is_its_own_likeliest_completion_is_taken_as_finished(task, monkeypatch):
    import genseq_completion.suggest as suggest

    calls = []
    original = suggest.suggest_words

    def record(step, state, logits, vocabulary, partial, k):
        calls.append(partial)
        found = original(step, state, logits, vocabulary, partial, k)
        return [{"word": partial, "prob": 1.0}, *found] if partial else found

    monkeypatch.setattr(suggest, "suggest_words", record)
    task.run({"prompt": "Shall I compare thee to"}, suggest=3)
    assert calls == ["to", ""]


def test_json_documents(task):
    batch = [{"prompt": "Thy"}]
    document = task.to_json(batch, task.run_batch(batch, max_new_tokens=5, seed=1, num_return_sequences=2))
    assert set(document) == {"prompt", "model", "seed", "completions", "seconds"}
    assert len(document["completions"]) == 2
    assert set(document["completions"][0]) == {"text", "tokens", "logprob", "finish_reason"}
    suggestions = task.to_json(batch, task.run_batch(batch, suggest=3))
    assert [set(s) for s in suggestions] == [{"word", "prob"}] * 3


def test_absurd_max_new_tokens_is_capped_with_a_warning(task):
    with pytest.warns(UserWarning, match="capped at 10000"):
        task.run({"prompt": "x"}, max_new_tokens=10**9, max_time=0.05, seed=0)


@pytest.mark.parametrize("options,message", [
    ({"top_p": 0}, r"option top_p must be in \(0, 1\]"),
    ({"temperature": -1}, "option temperature must be in"),
    ({"num_beams": 0}, "option num_beams must be in"),
    ({"top_k": -1}, "option top_k must be in"),
    ({"topp": 0.5}, "has no option topp; its options are: max_new_tokens, temperature"),
    ({"num_beams": 3, "temperature": 0.7}, "cannot be combined with beam search"),
    ({"stop": [""]}, "stop strings must not be empty"),
])
def test_bad_options_are_clear_errors(task, options, message):
    with pytest.raises(ConfigError, match=message):
        task.run({"prompt": "x"}, **options)


def test_a_prompt_with_a_trailing_space_continues_with_a_whole_word(task):
    spaced = task.run({"prompt": "Shall I compare thee to a "}, max_new_tokens=8, temperature=0)
    plain = task.run({"prompt": "Shall I compare thee to a"}, max_new_tokens=8, temperature=0)
    assert plain["text"].startswith(" ") and spaced["text"] == plain["text"][1:]
    streamed = list(task.stream({"prompt": "Shall I compare thee to a "}, max_new_tokens=8, temperature=0))
    assert streamed[-1]["text"] == spaced["text"]
