"""The completion task through the task contract, on a tiny trained checkpoint."""

import pytest

from genseq import ConfigError
from genseq.plugins import get_task_class
from genseq.tasks import Task, generation_config, generation_options


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
    ({"num_beams": 3, "temperature": 0.5}, "cannot be combined with beam search"),
    ({"stop": [""]}, "stop strings must not be empty"),
])
def test_bad_options_are_clear_errors(task, options, message):
    with pytest.raises(ConfigError, match=message):
        task.run({"prompt": "x"}, **options)


# ---- a task's generation defaults and beam search ---------------------------------------------
class WarmTask(Task):
    """A generative task whose defaults are sampling ones, as generation_options lets a task declare."""

    name = "warm"
    options = generation_options(temperature=0.8, num_return_sequences=8)


def test_a_tasks_default_temperature_gives_way_to_beams():
    config, _ = generation_config(WarmTask.check_options({"num_beams": 5}))
    assert (config.num_beams, config.temperature, config.num_return_sequences) == (5, 1.0, 5)
    sampled, _ = generation_config(WarmTask.check_options({}))
    assert (sampled.temperature, sampled.num_return_sequences) == (0.8, 8)


def test_an_option_given_at_its_default_is_a_default():
    # The web app passes every control's value, the untouched ones at their defaults.
    config, _ = generation_config(WarmTask.check_options({"num_beams": 5, "temperature": 0.8, "num_return_sequences": 8}))
    assert (config.temperature, config.num_return_sequences) == (1.0, 5)


def test_options_the_caller_gives_conflict_with_beams_as_before():
    with pytest.raises(ConfigError, match=r"^the sampling-only options temperature cannot be combined with beam search "
                                          r"\(num_beams=5\), which is deterministic; drop them or set num_beams to 1$"):
        generation_config(WarmTask.check_options({"num_beams": 5, "temperature": 0.5}))
    with pytest.raises(ConfigError, match=r"num_return_sequences must be between 1 and num_beams \(2\) in beam search, not 4"):
        generation_config(WarmTask.check_options({"num_beams": 2, "num_return_sequences": 4}))


def test_a_plain_dict_of_options_counts_as_all_given():
    with pytest.raises(ConfigError, match="cannot be combined with beam search"):
        generation_config({**WarmTask.check_options({}), "num_beams": 5})


def test_a_completion_task_with_sampling_defaults_runs_beam_search(trained_run):
    class WarmCompletion(get_task_class("completion")):
        options = tuple(generation_options(temperature=0.8)) + tuple(
            option for option in get_task_class("completion").options if option.name == "suggest")

    result = WarmCompletion(model=str(trained_run)).run({"prompt": "Shall I"}, num_beams=3, max_new_tokens=4)
    assert len(result["completions"]) == 1 and result["completions"][0]["tokens"]


def test_a_generation_option_defaults_to_none_only_where_none_has_a_meaning():
    (returned,) = generation_options(without=tuple(o.name for o in generation_options() if o.name != "num_return_sequences"),
                                     num_return_sequences=None)
    assert returned.default is None and returned.value_type is int and "one per beam" in returned.help
    with pytest.raises(ValueError, match="generation option top_k cannot default to None"):
        generation_options(top_k=None)


def test_a_prompt_with_a_trailing_space_continues_with_a_whole_word(task):
    spaced = task.run({"prompt": "Shall I compare thee to a "}, max_new_tokens=8, temperature=0)
    plain = task.run({"prompt": "Shall I compare thee to a"}, max_new_tokens=8, temperature=0)
    assert plain["text"].startswith(" ") and spaced["text"] == plain["text"][1:]
    streamed = list(task.stream({"prompt": "Shall I compare thee to a "}, max_new_tokens=8, temperature=0))
    assert streamed[-1]["text"] == spaced["text"]
