"""The web app in-process: every tab's endpoint through gradio_client (text, image, streaming, errors).

The server runs in this process on a loopback port with a tiny trained checkpoint
as the completion model, the example perplexity plugin, and four throwaway
plugins: an image task shaped like captioning, a text task that counts its model
loads, a streaming text task declaring an action, examples and advanced and
server-side options, and one that fails to import.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image, ImageDraw

import genseq_web
from genseq import ConfigError
from genseq.cli import main
from genseq.plugins import discover
from genseq_web import access, handlers, images, tabs
from genseq_web.pool import TaskPool
from plugin_helpers import GOOD_TASK, make_distribution

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_PLUGIN = ROOT / "examples" / "genseq-perplexity"
EXAMPLE_IMAGE = ROOT / "plugins" / "genseq_captioning" / "examples" / "shark.png"
SHAPE_COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 30)}

IMAGE_TASK = '''
from PIL import ImageOps
from genseq.tasks import Input, Option, Output, Task

class Describe(Task):
    """Shaped like captioning: an image in; a caption, ranked captions and a picture out."""
    name = "describe"
    description = "Name an image's main colour and size."
    inputs = (Input("image", "image"),)
    outputs = (Output("caption", "text"), Output("captions", "ranked"), Output("attention", "image"))
    options = (Option("num_beams", 1, "beams", minimum=1, maximum=4),
               Option("save_to", None, "a file on the server", type=str, server_side=True))
    model_kinds = ()

    def load(self, model_path):
        return None

    def predict(self, model, batch, options):
        return [describe(item["image"].convert("RGB")) for item in batch]

def describe(image):
    mean = image.resize((1, 1)).getpixel((0, 0))
    colour = ("red", "green", "blue")[mean.index(max(mean))]
    return {
        "caption": f"a {colour} picture of {image.width}x{image.height} pixels",
        "captions": [{"label": f"a {colour} picture", "prob": 0.75}, {"label": "a picture", "prob": 0.25}],
        "attention": ImageOps.grayscale(image),
    }
'''

WORDS_TASK = '''
from genseq.tasks import Action, Input, Option, Output, Task

class Words(Task):
    """Declares what the built-in tasks declare: a streamed text, an action whose picks continue the input,
    examples, an advanced option and one with a value of its own in the app."""
    name = "words"
    description = "Spell a text out word by word, or list its words."
    inputs = (Input("text", "text"),)
    outputs = (Output("spelled", "text"), Output("words", "ranked"))
    options = (Option("shout", False, "upper case", advanced=True),
               Option("count", 0, "list this many words instead", minimum=0, maximum=9, app_default=2))
    actions = (Action("list", "List words", options=("count",), outputs=("words",), continues="text"),)
    examples = ({"text": "one two three"},)
    model_kinds = ("captioner",)

    def load(self, model_path):
        return None

    def predict(self, model, batch, options):
        return [list(self.predict_stream(model, item, options))[-1] for item in batch]

    def predict_stream(self, model, inputs, options):
        words = inputs["text"].split()
        if options["count"]:
            yield {"words": [{"label": word, "prob": 1 / len(words)} for word in words[-options["count"]:]]}
            return
        for end in range(1, len(words) + 1):
            text = " ".join(words[:end])
            yield {"spelled": text.upper() if options["shout"] else text}
'''


# ---- fixtures shared with test_browser.py ---------------------------------------------
LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost"}
OUTBOUND: list[str] = []  # every host this process connected to or looked up beyond this machine
AUDITING: list = []


def _record_outbound(event: str, args: tuple) -> None:
    if event == "socket.connect" and isinstance(args[1], tuple) and args[1][0] not in LOCAL_HOSTS:
        OUTBOUND.append(f"connect {args[1][0]}")
    elif event == "socket.getaddrinfo" and args[0] not in LOCAL_HOSTS and args[0] is not None:
        OUTBOUND.append(f"lookup {args[0]}")


@pytest.fixture(scope="module")
def outbound(plugins, trained_run, tiny_captioner) -> list[str]:
    """Hosts beyond this machine that the process reaches from the server's start on (training is done by then)."""
    import huggingface_hub.constants

    if _record_outbound not in AUDITING:  # an audit hook cannot be removed, so it is added once
        sys.addaudithook(_record_outbound)
        AUDITING.append(_record_outbound)
    OUTBOUND.clear()
    with pytest.MonkeyPatch.context() as patch:
        # gradio_client's Client() asks huggingface.co for a registry of agent names unless the hub is offline
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield OUTBOUND


def register_example_plugin(root: Path) -> None:
    """A dist-info on sys.path registering examples/genseq-perplexity's entry points, as `pip install` would."""
    project = tomllib.loads((EXAMPLE_PLUGIN / "pyproject.toml").read_text())["project"]
    info = root / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = "".join(f"{name} = {target}\n" for name, target in project["entry-points"]["genseq.tasks"].items())
    (info / "entry_points.txt").write_text(f"[genseq.tasks]\n{lines}")


@pytest.fixture(scope="module")
def plugins(tmp_path_factory):
    """The example plugin and the throwaway ones, importable and registered for this module's tests."""
    root = tmp_path_factory.mktemp("webapp_plugins")
    make_distribution(root, "genseq-describe", {"describe": "webapp_describe:Describe"}, "webapp_describe", IMAGE_TASK)
    make_distribution(root, "genseq-echo", {"echo": "webapp_echo:Echo"}, "webapp_echo", GOOD_TASK.format(name="echo"))
    make_distribution(root, "genseq-words", {"words": "webapp_words:Words"}, "webapp_words", WORDS_TASK)
    make_distribution(root, "genseq-broken", {"broken": "webapp_broken:Task"}, "webapp_broken",
                      "raise ImportError('needs a library that is not installed')")
    register_example_plugin(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root))
        patch.syspath_prepend(str(EXAMPLE_PLUGIN))
        yield root
    for module in ("webapp_describe", "webapp_echo", "webapp_words", "webapp_broken", "genseq_perplexity"):
        sys.modules.pop(module, None)


def has_captioning() -> bool:
    return any(info.name == "captioning" and info.ok for info in discover())


@pytest.fixture(scope="module")
def tiny_captioner(tmp_path_factory, tokenizer) -> Path | None:
    """A captioner from `genseq train captioning` on eight drawn shapes (random encoder, one epoch: seconds)."""
    if not has_captioning():
        return None
    data = tmp_path_factory.mktemp("shapes")
    tokenizer_file = tmp_path_factory.mktemp("tokenizer") / "tokenizer.model"  # conftest's: it spells every caption
    tokenizer_file.write_bytes(tokenizer.to_bytes())
    rows = []
    for colour, rgb in SHAPE_COLOURS.items():
        for shape in ("square", "circle"):
            image = Image.new("RGB", (48, 48), "white")
            draw = ImageDraw.Draw(image)
            (draw.rectangle if shape == "square" else draw.ellipse)([8, 8, 40, 40], fill=rgb)
            image.save(data / f"{colour}_{shape}.png")
            rows.append({"file_name": f"{colour}_{shape}.png", "text": f"a {colour} {shape}"})
    (data / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path_factory.mktemp("captioner") / "run"
    code = main([
        "train", "captioning", "--data", str(data), "--valid", str(data), "--out", str(out), "--encoder", "resnet18",
        "--encoder-weights", "none", "--image-size", "32", "--feature-size", "16", "--embedding-size", "16",
        "--hidden-size", "16", "--attention-size", "16", "--tokenizer", str(tokenizer_file), "--epochs", "1", "--batch-size", "4",
        "--no-progress",
    ])
    assert code == 0
    return out


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def served_models(tmp_path_factory, trained_run) -> Path:
    """The server's models directory, holding a copy of the tiny run as "tiny" (made once per session)."""
    root = tmp_path_factory.getbasetemp() / "served_models"
    if not root.exists():
        shutil.copytree(trained_run, root / "tiny")
    return root


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, trained_run) -> Path:
    return served_models(tmp_path_factory, trained_run)


@pytest.fixture(scope="module")
def server(plugins, trained_run, tiny_captioner, outbound, tmp_path_factory):
    """The app's URL on a loopback port, with tiny checkpoints as the models of its tabs; outbound records from here on."""
    models = {"completion": trained_run, "perplexity": trained_run}
    if tiny_captioner:
        models["captioning"] = tiny_captioner
    app = genseq_web.build_app(models, pool=TaskPool(), models_dir=served_models(tmp_path_factory, trained_run))
    _, url, _ = genseq_web.launch(app, port=free_port(), prevent_thread_lock=True, quiet=True)
    yield url
    app.close()


def connect(url: str, downloads: Path | None = None) -> Client:
    return Client(url, verbose=False, analytics_enabled=False, download_files=str(downloads) if downloads else False)


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    return connect(server, tmp_path_factory.mktemp("downloads"))


def picture(path: Path, size=(40, 30), colour=(200, 20, 20)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


# ---- the API ----------------------------------------------------------------------------
def test_every_usable_task_has_a_tab_with_a_stable_api_name(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/completion", "/completion_suggest", "/describe", "/echo", "/perplexity", "/gates", "/gradients",
            "/words", "/words_list"} <= set(endpoints)
    assert not any("broken" in name for name in endpoints)
    names = [parameter["parameter_name"] for parameter in endpoints["/completion"]["parameters"]]
    assert names[:5] == ["prompt", "max_new_tokens", "temperature", "top_k", "top_p"]
    assert names[-1] == "model" and "seed" in names and "suggest" not in names
    if has_captioning():  # attention_map writes a file on the server: the CLI's business, not the web's
        captioning = [parameter["parameter_name"] for parameter in endpoints["/captioning"]["parameters"]]
        assert captioning[0] == "image" and "attention" in captioning and "attention_map" not in captioning


def test_completion_by_keyword_is_reproducible_with_a_seed(client):
    text, tokens, completions = client.predict(prompt="Shall I compare thee", max_new_tokens=12, seed=5,
                                               api_name="/completion")
    again, _, _ = client.predict(prompt="Shall I compare thee", max_new_tokens=12, seed=5, api_name="/completion")
    assert text and text == again
    assert completions[0]["text"] == text and len(completions[0]["tokens"]) <= 12
    # the page's table: each token written with the model's probability of it
    assert tokens["headers"] == ["token", "probability"] and len(tokens["data"]) == len(completions[0]["tokens"])
    assert all(0 < probability <= 1 for _, probability in tokens["data"])


def test_completion_streams_text_that_grows_by_prefixes(client):
    job = client.submit(prompt="My love", max_new_tokens=60, seed=3, api_name="/completion")
    texts = [text for text, _, _ in job]
    assert len(texts) >= 2
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:]))
    assert texts[-1] == job.result()[0]


def test_a_running_stream_can_be_cancelled_and_the_tab_keeps_working(client):
    # 10,000 tokens take the tiny model half a minute; the cancelled one must stop within seconds
    job = client.submit(prompt="My love", max_new_tokens=10_000, min_new_tokens=10_000, api_name="/completion")
    deadline = time.monotonic() + 20
    while not job.outputs() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert job.outputs(), "no partial output arrived"
    assert job.cancel()
    deadline = time.monotonic() + 5
    while any(thread.name == "genseq-task" for thread in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(thread.name == "genseq-task" for thread in threading.enumerate()), "the generation went on"
    text, _, _ = client.predict(prompt="My love", max_new_tokens=5, seed=1, api_name="/completion")
    assert text


def test_next_word_suggestions_come_ranked_with_probabilities(client):
    shown = client.predict(prompt="Shall I compare thee to a", suggest=3, api_name="/completion_suggest")
    probabilities = [entry["confidence"] for entry in shown["confidences"]]
    assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
    assert shown["label"] == shown["confidences"][0]["label"]


def test_requests_with_one_seed_agree_when_they_run_at_once(client):
    jobs = [client.submit(prompt="Thy", max_new_tokens=30, seed=11, api_name="/completion") for _ in range(3)]
    assert len({job.result()[0] for job in jobs}) == 1


def test_a_task_error_reaches_the_client_as_the_tasks_message(client):
    with pytest.raises(AppError, match=r"option temperature must be in \[0, inf\), not -1"):
        client.predict(prompt="x", temperature=-1, api_name="/completion")
    with pytest.raises(AppError, match="option seed must be int, not 'abc'"):
        client.predict(prompt="x", seed="abc", api_name="/completion")
    with pytest.raises(AppError, match="model /nonexistent/checkpoint is not one of this server's models"):
        client.predict(prompt="x", model="/nonexistent/checkpoint", api_name="/completion")


def test_an_option_error_names_the_option_by_its_label_in_the_page(client):
    with pytest.raises(AppError, match=r"option max new tokens must be int, not 2\.5"):
        client.predict(prompt="x", max_new_tokens=2.5, api_name="/completion")
    with pytest.raises(AppError, match=r"option min new tokens \(50\) must not exceed max new tokens \(10\); lower it "
                                       r"or raise max new tokens"):
        client.predict(prompt="x", max_new_tokens=10, min_new_tokens=50, api_name="/completion")


def test_another_checkpoint_can_be_picked_by_directory(client, trained_run):
    text, _, _ = client.predict(prompt="x", max_new_tokens=3, model=str(trained_run), api_name="/completion")
    assert isinstance(text, str)


def refusal(client, **request) -> str:
    with pytest.raises(AppError) as refused:
        client.predict(**request)
    return str(refused.value)


def test_the_model_box_says_the_same_of_every_directory_outside_the_servers_models(client, tmp_path, models_dir):
    (tmp_path / "exists").mkdir()
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "config.json").write_text("{}")
    outside = [tmp_path / "exists", tmp_path / "missing", tmp_path / "checkpoint", ROOT / "genseq" / "models" / "lm",
               models_dir / ".." / models_dir.name / ".." / "elsewhere", Path("/etc")]
    answers = {refusal(client, prompt="x", model=str(path), api_name="/completion").replace(str(path), "DIR")
               for path in outside}
    assert len(answers) == 1 and "model DIR is not one of this server's models" in answers.pop()


def test_a_checkpoint_in_the_models_directory_loads_and_is_listed(client, models_dir):
    text, _, _ = client.predict(prompt="Thy", max_new_tokens=3, model=str(models_dir / "tiny"), api_name="/completion")
    assert isinstance(text, str)
    assert access.ServerAccess(models_dir=models_dir).checkpoint_dirs() == [str(models_dir / "tiny")]
    assert "is not a checkpoint directory; choose one listed" in refusal(client, prompt="x", api_name="/completion",
                                                                         model=str(models_dir / "absent"))


def test_a_text_over_the_servers_limit_is_refused_with_a_message(client):
    limit = access.DEFAULT_MAX_PROMPT_CHARS
    too_long = "Shall I compare thee " * (limit // 21 + 1)
    expected = f"has {len(too_long):,} characters; this server takes at most {limit:,}: shorten it"
    assert f"the prompt {expected}" in refusal(client, prompt=too_long, api_name="/completion")
    assert f"the prompt {expected}" in refusal(client, prompt=too_long, suggest=3, api_name="/completion_suggest")
    assert f"the text {expected}" in refusal(client, text=too_long, api_name="/perplexity")
    assert f"option stop at {expected}" in refusal(client, prompt="x", stop=too_long, api_name="/completion")
    halves = [too_long[: limit // 2], too_long[limit // 2 :]]  # an API client may send a list
    assert f"option stop at {expected}" in refusal(client, prompt="x", stop=halves, api_name="/completion")
    text, _, _ = client.predict(prompt=too_long[:limit], max_new_tokens=3, seed=1, api_name="/completion")
    assert isinstance(text, str)


def test_a_long_prompt_completes_and_gets_suggestions_under_a_raised_limit(plugins, trained_run):
    completion = next(info for info in discover() if info.name == "completion")
    task_class = completion.task_class
    server = access.ServerAccess([str(trained_run)], max_prompt_chars=200_000)
    option = {option.name: option for option in task_class.options}
    prompt = "From fairest creatures we desire increase,\n" * 2_500  # 107,500 characters: 5 times the default limit
    outputs = {item.name: item for item in task_class.outputs}
    pool = TaskPool()
    generate = handlers.TaskCall(completion, pool, list(task_class.inputs), [option["max_new_tokens"]],
                                 [outputs["text"]], server)
    suggest = handlers.TaskCall(completion, pool, list(task_class.inputs), [option["suggest"]], [outputs["suggestions"]],
                                server)
    assert isinstance(list(handlers.make_handler(generate)(prompt, 4, str(trained_run)))[-1], str)
    assert len(list(handlers.make_handler(suggest)(prompt, 3, str(trained_run)))[-1]) == 3


def test_an_unforeseen_failure_reaches_the_client_as_one_sentence(client, monkeypatch):
    import genseq.gates
    import genseq.generation

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried "
                           "to allocate 21474836480 bytes.\n" + "allocator dump\n" * 50)

    def bug(*args, **kwargs):
        raise ZeroDivisionError("division by zero\n  in some deep frame")

    monkeypatch.setattr(genseq.generation, "stream", out_of_memory)
    message = refusal(client, prompt="x", api_name="/completion")
    assert "task completion ran out of memory on this request; try a shorter input" in message
    assert "allocator dump" not in message and "Traceback" not in message
    monkeypatch.setattr(genseq.generation, "stream", bug)
    assert "task completion failed on this request (ZeroDivisionError: division by zero); the server's log" \
        in refusal(client, prompt="x", api_name="/completion")
    monkeypatch.setattr(genseq.gates, "inspect_text", bug)
    assert "task gates failed on this request (ZeroDivisionError: division by zero)" \
        in refusal(client, text="x", layer=0, api_name="/gates")


# ---- images -------------------------------------------------------------------------------
def test_an_image_task_gets_the_upload_and_returns_caption_ranking_and_picture(client, tmp_path):
    caption, captions, attention = client.predict(image=handle_file(picture(tmp_path / "red.png")), api_name="/describe")
    assert caption == "a red picture of 40x30 pixels"
    assert [entry["label"] for entry in captions["confidences"]] == ["a red picture", "a picture"]
    assert Image.open(attention).size == (40, 30)


def test_bad_uploads_get_a_message_and_the_tab_keeps_working(client, tmp_path, monkeypatch):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(AppError, match="notes.png is not an image this app can read"):
        client.predict(image=handle_file(tmp_path / "notes.png"), api_name="/describe")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(picture(tmp_path / "whole.png", size=(300, 300)).read_bytes()[:200])
    with pytest.raises(AppError, match="damaged or truncated"):
        client.predict(image=handle_file(truncated), api_name="/describe")
    with pytest.raises(AppError, match="Add an image"):
        client.predict(api_name="/describe")
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)  # 40x30 is 1200 pixels
    with pytest.raises(AppError, match="The image is 40x30 pixels"):
        client.predict(image=handle_file(picture(tmp_path / "big.png")), api_name="/describe")
    monkeypatch.undo()
    caption, _, _ = client.predict(image=handle_file(picture(tmp_path / "blue.png", colour=(0, 0, 250))), api_name="/describe")
    assert caption.startswith("a blue picture")


def test_the_captioning_tab_captions_an_upload_with_scores_and_attention_map(client):
    if not has_captioning():
        pytest.skip("the captioning task is not installed")
    caption, captions, attention, confidence, mean_logprob = client.predict(image=handle_file(EXAMPLE_IMAGE),
                                                                            num_beams=2, api_name="/captioning")
    assert isinstance(caption, str) and len(captions["confidences"]) == 2 and mean_logprob < 0
    assert confidence["headers"] == ["word", "confidence"]  # each word of the caption, with the model's probability
    assert all(0 <= probability <= 1 for _, probability in confidence["data"])
    assert captions["label"] == captions["confidences"][0]["label"]
    assert Image.open(attention).width > Image.open(EXAMPLE_IMAGE).width  # the picture and one map per word


def test_the_sentiment_tab_shows_the_label_and_the_opinion_picture(client):
    label, picture, tokens = client.predict(text="Thank you, the crew was wonderful!", api_name="/sentiment")
    assert label["label"] == "positive" and label["confidences"][0]["label"] == "positive"
    assert Image.open(picture).width > 300 and tokens[-1]["token"] == "!"
    with pytest.raises(AppError, match="there is no text to classify"):
        client.predict(text=" ", api_name="/sentiment")


def test_the_gates_tab_pictures_the_default_models_gates(client):
    summary, picture, units = client.predict(text="To be, or not to be", layer=0, top=4, api_name="/gates")
    assert Image.open(picture).width > 800 and "layer 0" in summary and "cell state moves most" in summary
    assert len(units) == 4 and units[0]["lowest"] <= units[0]["highest"]
    with pytest.raises(AppError, match="there is no text to inspect"):
        client.predict(text="", layer=1, api_name="/gates")
    with pytest.raises(AppError, match="option layer must be between 0 and 1 for this 2-layer model, not 7"):
        client.predict(text="x", layer=7, api_name="/gates")


def test_the_gradients_tab_runs_the_lab_at_small_settings(client):
    progress, picture, recall, results = client.predict(cells=["rnn", "lstm"], length=20, longest=4, steps=20,
                                                        api_name="/gradients")
    assert Image.open(picture).width >= 800 and "on this machine" in progress and "Step 8 of 8" in progress
    assert recall["headers"] == ["cell", "clipping", "N = 1", "N = 4"] and [row[0] for row in recall["data"]] == \
        ["rnn", "rnn", "lstm", "lstm"]
    assert set(results["recall"]) == {"rnn", "lstm"}
    with pytest.raises(AppError, match="cells must be among"):
        client.predict(cells=[], length=20, longest=4, steps=20, api_name="/gradients")
    with pytest.raises(AppError, match="option cells must be only items among rnn, gru, lstm"):
        client.predict(cells=["transformer"], api_name="/gradients")


# ---- tabs from declarations ----------------------------------------------------------------
@pytest.fixture(scope="module")
def built(plugins, trained_run, tmp_path_factory):
    """The app built in-process (not served), for looking at its components."""
    return genseq_web.build_app({"completion": trained_run}, models_dir=served_models(tmp_path_factory, trained_run))


def component(app, elem_id: str):
    return next((block for block in app.blocks.values() if getattr(block, "elem_id", None) == elem_id), None)


def folded_under(block) -> str | None:
    """The label of the accordion that holds block, or None when it is in view."""
    import gradio as gr

    while block is not None and not isinstance(block, gr.Accordion):
        block = block.parent
    return None if block is None else block.label


def test_a_third_party_task_gets_stop_an_action_examples_and_folded_options_like_the_built_ins(built):
    import gradio as gr

    for task in ("words", "completion"):
        assert component(built, f"{task}-stop-button") is not None, f"{task} streams, so its tab has Stop"
    assert component(built, "describe-stop-button") is None and component(built, "describe-run-button") is not None
    assert component(built, "words-list-button").value == "List words"
    assert folded_under(component(built, "words-shout")) == "More options"
    assert folded_under(component(built, "words-count")) is None and component(built, "words-count").value == 2
    assert folded_under(component(built, "completion-min_p")) == "More options"
    assert folded_under(component(built, "completion-temperature")) is None
    assert component(built, "words-words").label == "Words (click one to add it to the text)"
    samples = [block.samples for block in built.blocks.values() if isinstance(block, gr.Dataset)]
    assert [["one two three"]] in samples and [["Call me Ishmael."]] in [rows[-1:] for rows in samples]


def test_the_page_opens_on_completion_under_a_header_then_the_other_tabs_by_name(built):
    import gradio as gr

    labels = [block.label for block in built.blocks.values() if isinstance(block, gr.Tab)]
    assert labels[0] == "Completion" and labels[1:] == sorted(labels[1:]) and "Words" in labels
    assert all(label[0].isupper() and "_" not in label for label in labels), "one naming style for every tab"
    header = next(block.value for block in built.blocks.values() if isinstance(block, gr.Markdown))
    assert header.startswith("# genseq\n") and len(header.splitlines()) == 2 and "Run" in header


def test_completion_starts_at_the_sampling_defaults_readme_shows(built, client):
    assert component(built, "completion-temperature").value == 0.7
    assert component(built, "completion-top_p").value == 0.9
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    defaults = {parameter["parameter_name"]: parameter["parameter_default"]
                for parameter in endpoints["/completion"]["parameters"]}
    assert (defaults["temperature"], defaults["top_p"]) == (0.7, 0.9)
    # defaults give way to beams: the page sends them with num_beams > 1 and gets beam search, not a refusal
    text, _, completions = client.predict(prompt="Shall I", max_new_tokens=4, num_beams=3, api_name="/completion")
    assert completions[0]["text"] == text


def test_no_picture_offers_to_share_and_every_one_says_which_buttons_it_has(built):
    import gradio as gr

    pictures = [block for block in built.blocks.values() if isinstance(block, gr.Image)]
    assert pictures, "the tabs show no picture to check"
    assert all(block.buttons == ["download", "fullscreen"] for block in pictures)
    assert not [block for block in built.blocks.values() if "share" in (getattr(block, "buttons", None) or [])]


def test_stop_is_hidden_until_a_run_starts_and_every_run_sets_the_buttons_back(built):
    assert component(built, "completion-stop-button").visible is False
    assert component(built, "words-stop-button").visible is False
    ids = {block.elem_id: block._id for block in built.blocks.values() if getattr(block, "elem_id", None)}
    switched = {ids[f"words-{name}"] for name in ("run-button", "list-button", "stop-button", "notice")}
    setters = [dependency for dependency in built.get_config_file()["dependencies"]
               if set(dependency["outputs"]) == switched]
    # Run, List words and a picked word each disable the buttons before their run and set them back after it
    # succeeds or fails, saying so in the notice; Stop sets them back itself. None waits in the queue behind the
    # runs it guards.
    assert len(setters) == 3 * 3 + 1 and not any(dependency["queue"] for dependency in setters)


def test_declared_example_images_are_files_shipped_beside_the_task():
    if not has_captioning():
        pytest.skip("the captioning task is not installed")
    from genseq_captioning import CaptioningTask

    paths = [Path(example["image"]) for example in CaptioningTask.example_inputs()]
    assert EXAMPLE_IMAGE in paths and all(path.is_file() for path in paths) and len(paths) == 11


def test_the_model_box_offers_only_checkpoints_of_a_kind_the_task_loads(built, models_dir):
    tiny = str(models_dir / "tiny")  # a language model: "kind": "lm"
    assert tiny in [value for _, value in component(built, "completion-model").choices]
    assert tiny not in [value for _, value in component(built, "words-model").choices]  # it loads captioners
    assert tiny in [value for _, value in component(built, "echo-model").choices]  # no kinds declared: every one
    assert component(built, "describe-model") is None and component(built, "gradients-model") is None  # none loaded
    server = access.ServerAccess(models_dir=models_dir)
    assert server.checkpoint_dirs(("lm",)) == [tiny] and server.checkpoint_dirs(("captioner",)) == []


def test_a_server_side_option_has_no_control_and_no_api_parameter(built, client):
    assert component(built, "describe-save_to") is None
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert [parameter["parameter_name"] for parameter in endpoints["/describe"]["parameters"]] == ["image", "num_beams"]


def test_the_api_types_whole_number_options_as_integers(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    types = {(name, parameter["parameter_name"]): parameter["type"]["type"]
             for name in ("/completion", "/describe", "/gradients") for parameter in endpoints[name]["parameters"]}
    assert types["/completion", "num_beams"] == types["/describe", "num_beams"] == "integer"  # bounded: a slider
    assert types["/completion", "max_new_tokens"] == types["/gradients", "steps"] == "integer"
    assert types["/completion", "temperature"] == types["/completion", "top_p"] == "number"
    seed = next(parameter for parameter in endpoints["/completion"]["parameters"] if parameter["parameter_name"] == "seed")
    assert seed["parameter_default"] == ""  # none: a fresh seed per request, although the option is bounded


def test_a_declared_action_runs_with_its_own_options_and_outputs(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert [parameter["parameter_name"] for parameter in endpoints["/words"]["parameters"]] == ["text", "shout", "model"]
    assert [parameter["parameter_name"] for parameter in endpoints["/words_list"]["parameters"]] == ["text", "count",
                                                                                                    "model"]
    listed = client.predict(text="one two three", api_name="/words_list")  # count starts at its app value, 2
    assert [entry["label"] for entry in listed["confidences"]] == ["two", "three"]
    assert client.predict(text="one two three", shout=True, api_name="/words") == "ONE TWO THREE"
    job = client.submit(text="one two three", api_name="/words")
    assert job.result() == "one two three" and len(job.outputs()) >= 1


# ---- plugins and sharing ----------------------------------------------------------------
def test_the_example_third_party_plugin_works_as_a_tab(client):
    perplexity, surprises = client.predict(text="Shall I compare thee to a summer's day", top=3, api_name="/perplexity")
    assert perplexity > 1 and len(surprises["confidences"]) == 3


def test_a_model_loads_once_and_is_shared_by_every_session(server):
    echo = sys.modules["webapp_echo"].Echo
    loads_before = echo.loads
    sessions = [connect(server) for _ in range(3)]
    threads = [threading.Thread(target=session.predict, kwargs={"text": "hi", "api_name": "/echo"}) for session in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sessions[0].predict(text="hi", times=2, api_name="/echo") == "hi hi"
    assert echo.loads - loads_before == 1


def test_a_broken_plugin_is_listed_and_the_others_still_get_tabs(plugins):
    import gradio as gr

    app = genseq_web.build_app()
    labels = {block.label for block in app.blocks.values() if isinstance(block, gr.Tab)}
    notes = " ".join(block.value for block in app.blocks.values() if isinstance(block, gr.Markdown))
    assert {"Completion", "Describe", "Echo", "Perplexity", "Gates", "Gradients"} <= labels and "Broken" not in labels
    assert "broken** (genseq-broken 1.0): error: ImportError: needs a library that is not installed" in notes


def test_a_plugin_whose_action_names_an_undeclared_option_is_listed_instead_of_getting_a_tab(plugins, tmp_path):
    import gradio as gr

    source = WORDS_TASK.replace('name = "words"', 'name = "misdeclared"').replace('options=("count",)',
                                                                                'options=("counts",)')
    make_distribution(tmp_path, "genseq-misdeclared", {"misdeclared": "webapp_misdeclared:Words"}, "webapp_misdeclared",
                      source)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(tmp_path))
        app = genseq_web.build_app()
    sys.modules.pop("webapp_misdeclared", None)
    notes = " ".join(block.value for block in app.blocks.values() if isinstance(block, gr.Markdown))
    assert "action list of task misdeclared names the option counts, which the task does not declare" in notes
    assert "Misdeclared" not in {block.label for block in app.blocks.values() if isinstance(block, gr.Tab)}


def test_a_model_for_an_unknown_task_is_refused(plugins):
    with pytest.raises(ConfigError, match="no usable task nope to give a model"):
        genseq_web.build_app({"nope": "."})


def test_the_server_and_its_clients_reached_nothing_beyond_this_machine(client, outbound):
    client.predict(prompt="x", max_new_tokens=2, api_name="/completion")
    assert outbound == []


# ---- genseq serve ------------------------------------------------------------------------
def test_serve_explains_a_bad_flag_a_taken_port_and_a_missing_app(monkeypatch, tmp_path, capsys):
    with pytest.raises(SystemExit) as usage_error:
        main(["serve", "--model", "completion"])
    assert usage_error.value.code == 2 and "expected TASK=DIR, not 'completion'" in capsys.readouterr().err
    assert main(["serve", "--model", f"completion={tmp_path / 'missing'}"]) == 2
    assert "is not a checkpoint directory" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", "--port", str(taken.getsockname()[1])]) == 2
    assert "the port is taken or the address is not this machine's" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "genseq_web", None)  # an installation without the app package
    assert main(["serve"]) == 2
    assert "the web app is not installed" in capsys.readouterr().err


def test_serve_refuses_a_missing_models_dir_and_a_limit_below_one_and_passes_both_on(monkeypatch, tmp_path, capsys):
    assert main(["serve", "--models-dir", str(tmp_path / "missing")]) == 2
    assert f"--models-dir {tmp_path / 'missing'} is not a directory" in capsys.readouterr().err
    assert main(["serve", "--models-dir", "x" * 5000]) == 2 and "is not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage_error:
        main(["serve", "--max-prompt-chars", "0"])
    assert usage_error.value.code == 2
    built = {}

    class App:
        @staticmethod
        def build_app(overrides, **settings):
            built.update(settings)

        @staticmethod
        def launch(app, **where):
            pass

    monkeypatch.setattr("genseq.cli.serve.load_app_module", lambda: App)
    assert main(["serve", "--models-dir", str(tmp_path), "--max-prompt-chars", "500"]) == 0
    assert built == {"concurrency": 2, "models_dir": str(tmp_path), "max_prompt_chars": 500}
    built.clear()
    assert main(["serve"]) == 0 and built == {"concurrency": 2}  # the app's own defaults apply


def test_the_app_builder_refuses_a_prompt_limit_below_one(plugins):
    with pytest.raises(ConfigError, match="max_prompt_chars must be a whole number of characters >= 1, not 0"):
        genseq_web.build_app(max_prompt_chars=0)


def test_picking_a_suggestion_completes_the_last_word_or_follows_it():
    import gradio as gr

    def pick(prompt, word):
        return tabs.continue_text(prompt, gr.SelectData(None, {"value": word, "index": 0}))

    assert pick("Shall I compare thee to a", "summer") == "Shall I compare thee to a summer "
    assert pick("Shall I compare thee to a sum", "summer") == "Shall I compare thee to a summer "
    assert pick("Shall I ", "compare") == "Shall I compare "
    assert pick("", "Shall") == "Shall "


def test_a_stream_faster_than_its_reader_hands_on_the_newest_result_and_then_the_end():
    on_one_thread = handlers.on_one_thread

    def results():
        yield from ({"text": "x" * length} for length in range(1, 2001))

    seen = [item["text"] for item in on_one_thread(results, every=0.01)]
    assert seen[-1] == "x" * 2000, "the last result was lost"
    assert len(seen) < 2000, "every partial result was handed on although the reader was slower"
    assert all(len(a) < len(b) for a, b in zip(seen, seen[1:]))


def test_an_error_after_a_fast_stream_arrives_after_its_last_result():
    on_one_thread = handlers.on_one_thread

    def results():
        yield from ({"text": "x" * length} for length in range(1, 101))
        raise ValueError("the model gave up")

    seen = []
    with pytest.raises(ValueError, match="gave up"):
        for item in on_one_thread(results, every=0.01):
            seen.append(item["text"])
    assert seen[-1] == "x" * 100


# ---- for people: cards, examples, controls ----------------------------------------------------------
def test_every_tab_with_a_model_shows_its_card_and_the_model_box_names_each_model(built, trained_run, models_dir):
    completion = component(built, "completion-card").value  # the server's own model: a card read from the run
    assert f"**Model: {trained_run.name} (the default).**" in completion and "parameters, kind lm" in completion
    sentiment = component(built, "sentiment-card").value  # the packaged default, with its card.json
    assert "airlines, only 20% of them positive" in sentiment and "**Not good at:**" in sentiment
    assert component(built, "describe-card") is None and component(built, "gradients-card") is None  # no model
    choices = component(built, "completion-model").choices
    assert choices[0] == (f"{trained_run.name} (default)", str(trained_run.resolve()))
    assert (f"tiny ({models_dir / 'tiny'})", str(models_dir / "tiny")) in choices
    assert component(built, "sentiment-model").choices == [("genseq's default sentiment classifier (default)", "")]


def test_the_card_follows_the_model_box_and_refuses_a_model_the_server_does_not_offer(models_dir, trained_run):
    from genseq_web import models

    completion = next(info for info in discover() if info.name == "completion").task_class
    server = access.ServerAccess(models_dir=models_dir)
    show_card = models.card_reader(completion, server, None)
    assert show_card(str(models_dir / "tiny")).startswith("**Model: tiny.**")
    assert show_card("").startswith("**Model: genseq's default language model (the default).**")
    with pytest.raises(Exception, match="is not one of this server's models"):
        show_card(str(trained_run))


def test_a_run_trained_into_the_models_directory_is_offered_when_a_page_opens(trained_run, tmp_path):
    import shutil

    from genseq_web import models

    completion = next(info for info in discover() if info.name == "completion").task_class
    list_models = models.choices_reader(completion, access.ServerAccess(models_dir=tmp_path), None)
    assert [value for _, value in list_models().choices] == [""]  # the default alone
    shutil.copytree(trained_run, tmp_path / "fresh")
    assert (f"fresh ({tmp_path / 'fresh'})", str(tmp_path / "fresh")) in list_models().choices


def test_examples_have_names_and_inputs_have_placeholders(built):
    import gradio as gr

    labelled = {tuple(block.sample_labels or ()) for block in built.blocks.values() if isinstance(block, gr.Dataset)}
    assert ("A speech to Congress", "Shakespeare", "Jane Austen", "Moby-Dick") in labelled
    assert ("thanks", "a delay", "mild praise") in labelled and ("one two three",) in labelled
    assert component(built, "completion-prompt").placeholder.startswith("Type the start of a text")
    assert component(built, "sentiment-text").placeholder.startswith("Type a short text")


def test_every_tab_has_a_heading_and_its_controls_plain_labels_bounds_and_no_range_notation(built):
    import gradio as gr

    headings = [block.value.splitlines()[0] for block in built.blocks.values()
                if isinstance(block, gr.Markdown) and block.value.startswith("## ")]
    assert headings[:2] == ["## Completion", "## Captioning"] if has_captioning() else headings[0] == "## Completion"
    assert isinstance(component(built, "completion-temperature"), gr.Slider)
    assert component(built, "completion-temperature").maximum == 2.0 and component(built, "completion-top_k").maximum == 500
    length = component(built, "completion-max_new_tokens")
    assert isinstance(length, gr.Number) and length.maximum == 10_000 and length.info.endswith("(up to 10,000)")
    assert component(built, "completion-num_beams").label == "Beams"
    assert folded_under(component(built, "completion-top_k")) == "More options"
    infos = [getattr(block, "info", None) or "" for block in built.blocks.values()]
    assert not [info for info in infos if "range [" in info or "inf)" in info]


def test_captioning_shows_only_beams_and_length_unless_advanced(built):
    if not has_captioning():
        pytest.skip("the captioning task is not installed")
    import gradio as gr

    names = {option.name for option in next(info for info in discover() if info.name == "captioning").task_class.options}
    controls = [block for block in built.blocks.values() if isinstance(block, gr.components.FormComponent)
                and not isinstance(block, gr.Image)]  # its attention picture shares a name with an option
    shown = {block.elem_id.removeprefix("captioning-") for block in controls if folded_under(block) is None
             and (block.elem_id or "").removeprefix("captioning-") in names and block.elem_id.startswith("captioning-")}
    assert shown == {"max_new_tokens", "num_beams"}


def test_a_finished_run_reports_how_it_ended_and_a_labelled_error_keeps_plain_words():
    completion = next(info for info in discover() if info.name == "completion")
    call = handlers.TaskCall(completion, TaskPool(), [], [], [], access.ServerAccess())
    assert handlers.notice_of({"notice": "Finished: length (max new tokens reached)"}, 0.42) == \
        "Finished: length (max new tokens reached) (0.4 s)."
    assert handlers.notice_of({}, 1.0) == "Finished (1.0 s)."
    assert call.in_page_words("option num_beams must be in [1, 64]; a stop string") == \
        "option beams must be in [1, 64]; a stop string"
    assert call.in_page_words("option stop has 30 characters") == "option stop at has 30 characters"


# ---- style labels: options whose choices come from the model --------------------------------------------------
def test_a_model_without_style_labels_hides_the_style_dropdown_which_follows_the_model_box(built):
    import gradio as gr

    style = component(built, "completion-style")
    assert isinstance(style, gr.Dropdown) and style.visible is False and style.choices == [("(none)", "")]
    assert folded_under(style) is None  # a primary control, shown when a model with labels is picked
    ids = {block.elem_id: block._id for block in built.blocks.values() if getattr(block, "elem_id", None)}
    followers = [dependency for dependency in built.get_config_file()["dependencies"]
                 if dependency["outputs"] == [ids["completion-style"]]]
    assert [dependency["inputs"] for dependency in followers] == [[ids["completion-model"], ids["completion-style"]]]


def test_suggestions_take_the_tabs_style_and_a_model_without_labels_says_it_has_none(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    names = [parameter["parameter_name"] for parameter in endpoints["/completion_suggest"]["parameters"]]
    assert names == ["prompt", "suggest", "style", "model"]
    for api in ("/completion", "/completion_suggest"):
        with pytest.raises(AppError, match="style 'gothic' cannot be used: this model was trained without style labels"):
            client.predict(prompt="Shall I", style="gothic", api_name=api)
