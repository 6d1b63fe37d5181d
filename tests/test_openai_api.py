"""The OpenAI-compatible API, driven by the official `openai` client against `genseq serve`'s app in this process.

The server runs on a loopback port with the tiny trained run as the default
model, a models directory holding a copy of it ("tiny") and one whose
config.json lists style labels ("styled"), and an API key.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
import time

import openai
import pytest

import genseq_web
from genseq.cli import main
from genseq_web.openai_api import api_app
from genseq_web.openai_api.errors import ApiError
from genseq_web.openai_api.server import Limiter
from genseq_web.pool import TaskPool

KEY = "test-key-0123"
PROMPT = "Shall I compare thee"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, trained_run):
    root = tmp_path_factory.mktemp("api_models")
    shutil.copytree(trained_run, root / "tiny")
    shutil.copytree(trained_run, root / "styled")
    config = json.loads((root / "styled" / "config.json").read_text())
    (root / "styled" / "config.json").write_text(json.dumps({**config, "labels": ["austen", "poe"]}))
    return root


@pytest.fixture(scope="module")
def app(trained_run, models_dir):
    return genseq_web.build_app({"completion": str(trained_run)}, pool=TaskPool(), models_dir=models_dir)


@pytest.fixture(scope="module")
def url(app):
    _, address, _ = genseq_web.launch(app, port=free_port(), prevent_thread_lock=True, quiet=True, api_key=KEY)
    yield address.rstrip("/") + "/v1"
    app.close()


@pytest.fixture(scope="module")
def client(url):
    return openai.OpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=60)


def complete(client, **request):
    return client.completions.create(**{"model": "tiny", "prompt": PROMPT, "max_tokens": 12, "seed": 7, **request})


def test_models_lists_the_servers_checkpoints_with_their_kind_and_styles(client):
    models = {model.id: model.model_extra for model in client.models.list().data}
    assert {"default", "tiny", "styled"} <= set(models)
    assert models["tiny"] == {"kind": "lm", "task": "completion", "styles": []}
    assert models["styled"]["styles"] == ["austen", "poe"]
    assert client.models.retrieve("tiny").id == "tiny"


def test_a_completion_is_reproducible_with_a_seed_and_counts_its_tokens(client):
    first, second = complete(client), complete(client)
    assert first.object == "text_completion" and first.model == "tiny"
    assert first.choices[0].text == second.choices[0].text != ""
    assert first.choices[0].finish_reason in ("stop", "length")
    assert 0 < first.usage.completion_tokens <= 12 and first.usage.prompt_tokens > 0
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens


def test_streamed_deltas_join_to_the_non_streamed_text_for_the_same_seed(client):
    whole = complete(client, max_tokens=30)
    chunks = list(complete(client, max_tokens=30, stream=True, stream_options={"include_usage": True}))
    texts = [chunk.choices[0].text for chunk in chunks if chunk.choices]
    assert len([text for text in texts if text]) >= 2  # it came in pieces, not at once
    assert "".join(texts) == whole.choices[0].text
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_a_client_that_leaves_a_stream_frees_its_turn(client, app):
    chunks = complete(client, stream=True, max_tokens=5000)
    next(iter(chunks))
    chunks.close()
    deadline = time.monotonic() + 20
    while app.openai_api.limiter.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app.openai_api.limiter.running == 0


def test_n_returns_that_many_choices_streamed_or_not(client):
    whole = complete(client, n=3)
    assert [choice.index for choice in whole.choices] == [0, 1, 2]
    assert len({choice.text for choice in whole.choices}) > 1
    streamed = {}
    for chunk in complete(client, n=3, stream=True):
        for choice in chunk.choices:
            streamed[choice.index] = streamed.get(choice.index, "") + choice.text
    assert streamed == {choice.index: choice.text for choice in whole.choices}


def test_a_list_of_prompts_gets_n_choices_each_in_order(client):
    answer = client.completions.create(model="tiny", prompt=["Shall I", "To be"], n=2, max_tokens=4, seed=1)
    assert [choice.index for choice in answer.choices] == [0, 1, 2, 3]
    alone = client.completions.create(model="tiny", prompt="To be", n=2, max_tokens=4, seed=1)
    assert [choice.text for choice in answer.choices[2:]] == [choice.text for choice in alone.choices]


def test_a_stop_string_ends_the_text_before_it(client):
    free = complete(client, max_tokens=30).choices[0].text
    stop = free[8:10]  # what the same seed generates, so it is met
    stopped = complete(client, max_tokens=30, stop=["never in the text", stop]).choices[0]
    assert stopped.finish_reason == "stop" and stopped.text == free[: free.index(stop)]


def test_engine_options_the_api_lacks_are_extra_body_fields(client):
    greedy = complete(client, temperature=0)
    top_one = complete(client, extra_body={"top_k": 1})  # sampling from the single most likely token is greedy
    assert top_one.choices[0].text == greedy.choices[0].text


def test_best_of_runs_beam_search_and_echo_repeats_the_prompt(client):
    beams = complete(client, best_of=4, n=2)
    direct = complete(client, extra_body={"num_beams": 4, "num_return_sequences": 2})
    assert [choice.text for choice in beams.choices] == [choice.text for choice in direct.choices]
    assert complete(client, echo=True).choices[0].text == PROMPT + complete(client).choices[0].text


def test_logprobs_score_each_generated_token_and_sum_to_the_tasks_logprob(client, trained_run):
    from genseq_completion import CompletionTask

    answer = complete(client, logprobs=3)
    table = answer.choices[0].logprobs
    assert len(table.tokens) == len(table.token_logprobs) == answer.usage.completion_tokens
    assert all(len(top) == 3 and max(top.values()) >= logprob - 1e-5 for top, logprob
               in zip(table.top_logprobs, table.token_logprobs))
    echoed = complete(client, logprobs=0, echo=True).choices[0].logprobs
    assert table.text_offset[0] == 0 and echoed.text_offset[0] == len(PROMPT)  # where in the choice's text
    result = CompletionTask(model=str(trained_run)).run({"prompt": PROMPT}, max_new_tokens=12, seed=7)
    assert sum(table.token_logprobs) == pytest.approx(result["completions"][0]["logprob"], abs=1e-3)


def test_chat_completions_continue_the_messages_joined_by_newlines(client):
    messages = [{"role": "system", "content": "Shall I"}, {"role": "user", "content": "compare thee"}]
    chat = client.chat.completions.create(model="tiny", messages=messages, max_tokens=10, seed=3)
    plain = client.completions.create(model="tiny", prompt="Shall I\ncompare thee", max_tokens=10, seed=3)
    assert chat.object == "chat.completion" and chat.choices[0].message.role == "assistant"
    assert chat.choices[0].message.content == plain.choices[0].text
    deltas = client.chat.completions.create(model="tiny", messages=messages, max_tokens=10, seed=3, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in deltas if chunk.choices) == plain.choices[0].text


def bad_request(client, **request) -> dict:
    with pytest.raises(openai.BadRequestError) as refused:
        complete(client, **request)
    assert refused.value.status_code == 400
    return refused.value.body


def test_a_bad_request_gets_400_with_the_apis_error_body(client):
    body = bad_request(client, temperature=-1)
    assert body["type"] == "invalid_request_error" and body["param"] == "temperature"
    assert "greater than or equal to 0" in body["message"]
    assert "not an option" in bad_request(client, extra_body={"colour": "red"})["message"]
    assert "repetition_penalty" in bad_request(client, frequency_penalty=0.5)["message"]
    # a task's own check, worded with the API's field names
    assert "must not exceed max_tokens (2)" in bad_request(client, max_tokens=2, extra_body={"min_new_tokens": 5})["message"]


def test_an_error_after_a_stream_began_is_its_last_event_which_the_client_raises(client):
    chunks = complete(client, stream=True, max_tokens=2, extra_body={"min_new_tokens": 5})
    with pytest.raises(openai.APIError, match="must not exceed max_tokens"):
        list(chunks)


def test_a_prompt_over_the_servers_limit_gets_400_before_any_work(client):
    with pytest.raises(openai.BadRequestError, match="this server takes at most 20,000"):
        client.completions.create(model="tiny", prompt="x" * 20_001, max_tokens=2)


def test_an_unknown_model_gets_404_and_the_same_answer_for_a_path_outside_the_servers(client, tmp_path):
    for name in ("nope", str(tmp_path)):
        with pytest.raises(openai.NotFoundError) as refused:
            client.completions.create(model=name, prompt="x", max_tokens=2)
        assert refused.value.body["code"] == "model_not_found"


def test_a_wrong_or_missing_key_gets_401(url):
    import urllib.error
    import urllib.request

    with pytest.raises(openai.AuthenticationError) as refused:
        openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
    assert refused.value.body["code"] == "invalid_api_key"
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{url}/models")
    assert missing.value.code == 401 and json.load(missing.value)["error"]["code"] == "invalid_api_key"


def test_a_full_queue_refuses_the_next_request_with_429():
    async def scenario():
        limiter = Limiter(concurrency=1, queue_size=1)
        async with limiter.turn():
            waiting = asyncio.create_task(limiter.turn().__aenter__())
            await asyncio.sleep(0)
            with pytest.raises(ApiError) as refused:
                async with limiter.turn():
                    pass
            assert refused.value.status == 429
        await waiting

    asyncio.run(scenario())


def test_the_api_and_the_web_page_share_one_server(url):
    import urllib.request

    with urllib.request.urlopen(url.removesuffix("/v1") + "/") as page:
        assert page.status == 200 and b"genseq" in page.read()


def test_the_api_alone_serves_v1_and_no_web_page(app):
    import urllib.error
    import urllib.request

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(api_app(app.openai_api), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        assert client.completions.create(model="tiny", prompt="x", max_tokens=2).choices
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/")
        assert missing.value.code == 404
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def launched(monkeypatch):
    """`genseq serve` with the app stubbed out: what launch was given."""
    calls = {}

    class App:
        build_app = staticmethod(lambda overrides, **settings: None)
        launch = staticmethod(lambda app, **where: calls.update(where))

    monkeypatch.setattr("genseq.cli.serve.load_app_module", lambda: App)
    monkeypatch.delenv("GENSEQ_API_KEY", raising=False)
    return calls


def test_serve_listens_beyond_this_machine_only_with_a_key(launched, monkeypatch, capsys):
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "--host 0.0.0.0 listens beyond this machine, which needs an API key" in capsys.readouterr().err
    assert main(["serve", "--host", "0.0.0.0", "--api-key", "k"]) == 0 and launched["api_key"] == "k"
    monkeypatch.setenv("GENSEQ_API_KEY", "from-env")
    assert main(["serve", "--host", "0.0.0.0", "--api-only"]) == 0
    assert launched["api_key"] == "from-env" and launched["api_only"] is True
    launched.clear()
    monkeypatch.delenv("GENSEQ_API_KEY")
    assert main(["serve", "--host", "::1"]) == 0 and "api_key" not in launched


def test_serve_refuses_an_empty_key(launched, capsys):
    assert main(["serve", "--api-key", " "]) == 2
    assert "--api-key is empty" in capsys.readouterr().err
