"""genseq.testing: a good task passes every check; each kind of broken task fails the check that names its fault."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from PIL import Image

from genseq.tasks import Action, Input, Option, Output, Task
from genseq.testing import CHECKS, TaskChecker, check_task


class Shout(Task):
    """A torch-free task with every output kind but image, streaming its text a word at a time."""

    name = "shout"
    description = "Say the text louder."
    inputs = (Input("text", "text", "what to say"),)
    outputs = (Output("loud", "text"), Output("words", "ranked"), Output("mood", "label"), Output("length", "number"),
               Output("details", "json"))
    options = (Option("times", 1, "how many times", minimum=1, maximum=3),
               Option("limit", None, "at most this many words", type=int, minimum=1, advanced=True))
    examples = ({"text": "hello there"},)
    loads = 0

    def load(self, model_path):
        type(self).loads += 1
        return model_path or "default"

    def predict(self, model, batch, options):
        return [self.shout(item["text"], options) for item in batch]

    def predict_stream(self, model, inputs, options):
        final = self.shout(inputs["text"], options)
        words = final["loud"].split(" ")
        for count in range(1, len(words) + 1):
            yield {**final, "loud": " ".join(words[:count])}

    @staticmethod
    def shout(text, options):
        words = (text.upper().split() * options["times"])[: options["limit"]]
        return {"loud": " ".join(words), "words": [{"label": word, "prob": 1 / len(words)} for word in words],
                "mood": {"label": "loud", "prob": 1.0}, "length": len(words), "details": {"words": len(words)}}


INPUTS = [{"text": "hello there"}, {"text": "good morning"}]


def failure(task_class, checks=CHECKS, inputs=INPUTS, **options) -> str:
    with pytest.raises(AssertionError) as raised:
        check_task(task_class, inputs=inputs, options=options, checks=checks)
    return str(raised.value)


def broken(**attributes) -> type[Task]:
    """Shout with some class attributes or methods replaced."""
    return type("Broken", (Shout,), attributes)


# ---- a good task ----------------------------------------------------------------------------
def test_a_good_task_passes_every_check_but_the_web_one():
    check_task(Shout, inputs=INPUTS, options={"times": 2, "limit": 3}, checks=[c for c in CHECKS if c != "web"])


def test_a_good_task_passes_the_web_app_round_trip():
    check_task(Shout, inputs=INPUTS, options={"times": 2}, checks=["web"])


def test_the_web_check_runs_inside_a_running_event_loop():
    """As in a notebook, where an event loop is already running."""
    import asyncio

    async def inside():
        check_task(Shout, inputs=INPUTS, checks=["web"])

    asyncio.run(inside())


def test_task_checker_runs_each_check_on_one_loaded_model():
    Shout.loads = 0
    checker = TaskChecker(Shout, inputs=INPUTS)
    for name in ("run", "batch", "stream", "json"):
        checker.check(name)
    assert Shout.loads == 1


def test_an_unknown_check_is_refused_by_name():
    with pytest.raises(ValueError, match="there is no check 'speed'; the checks are declaration, flags"):
        TaskChecker(Shout, inputs=INPUTS).check("speed")


def test_check_task_needs_inputs():
    with pytest.raises(ValueError, match="check_task needs inputs"):
        check_task(Shout, inputs=[])


# ---- declaration --------------------------------------------------------------------------
def test_an_option_defaulting_to_none_without_a_type_fails_the_declaration_check():
    message = failure(broken(options=(Option("limit", None, "at most this many words"),)), checks=["declaration"])
    assert message.startswith("task shout fails the declaration check: option limit has the default None and no type")
    assert "type=int" in message


def test_a_default_outside_its_own_bounds_fails_the_declaration_check():
    message = failure(broken(options=(Option("times", 0, "how many times", minimum=1),)), checks=["declaration"])
    assert "declaration check: option times's default does not pass its own check" in message


def test_a_web_app_default_outside_the_bounds_fails_the_declaration_check():
    message = failure(broken(options=(Option("times", 1, "how many", minimum=1, maximum=3, app_default=9),)),
                      checks=["declaration"])
    assert "declaration check: option times must be in [1, 3], not 9" in message


def test_a_name_shared_by_an_input_and_an_option_fails_the_declaration_check():
    message = failure(broken(options=(Option("text", "x"),)), checks=["declaration"])
    assert "declaration check: two inputs or options would both be the flag --text" in message


def test_an_output_declared_twice_fails_the_declaration_check():
    message = failure(broken(outputs=(Output("loud", "text"), Output("loud", "json"))), checks=["declaration"])
    assert "declaration check: output 'loud' is declared twice" in message


def test_an_option_named_after_a_generate_flag_fails_the_declaration_check():
    message = failure(broken(options=(Option("device", "cpu"),)), checks=["declaration"])
    assert "declaration check: input and option names device are genseq's own flags" in message


def test_a_name_that_is_no_identifier_fails_the_declaration_check():
    message = failure(broken(inputs=(Input("the text", "text"),)), checks=["declaration"])
    assert "input name 'the text' is not a Python identifier" in message


def test_an_option_named_after_a_parameter_of_run_fails_the_declaration_check():
    message = failure(broken(options=(Option("batch", 1),)), checks=["declaration"])
    assert "declaration check: option names batch are parameters of Task.run" in message


def test_another_major_api_version_fails_the_declaration_check():
    message = failure(broken(api_version="2.0"), checks=["declaration"])
    assert "declaration check: it needs version 2.0 of genseq's task API and this genseq provides 1.0" in message


def test_an_example_naming_no_input_fails_the_declaration_check():
    message = failure(broken(examples=({"prompt": "hi"},)), checks=["declaration"])
    assert "declaration check: an example of task shout names the input prompt" in message


def test_an_action_naming_no_output_fails_the_declaration_check():
    message = failure(broken(actions=(Action("count", "Count", outputs=("count",)),)), checks=["declaration"])
    assert "action count of task shout names the output count" in message


# ---- flags ---------------------------------------------------------------------------------
def test_train_flags_that_clash_fail_the_flags_check():
    def add_train_arguments(cls, parser):
        parser.add_argument("--data")
        parser.add_argument("--data")

    task_class = broken(add_train_arguments=classmethod(add_train_arguments), train=classmethod(lambda cls, args: 0))
    message = failure(task_class, checks=["flags"])
    assert "fails the flags check: the flags of genseq train shout clash" in message


def test_a_good_task_reads_its_options_back_from_its_command_line():
    check_task(Shout, inputs=INPUTS, options={"times": 3, "limit": 2}, checks=["flags"])


# ---- run, batch, stream, json ------------------------------------------------------------------
def test_an_output_of_the_wrong_kind_fails_the_run_check():
    message = failure(broken(shout=staticmethod(lambda text, options: {"loud": 42})), checks=["run"])
    assert "fails the run check: output loud of the result of predict is 42: a text output is a str" in message


def test_an_error_result_fails_the_run_check():
    def predict(self, model, batch, options):
        return [{"error": "no"} for _ in batch]

    message = failure(broken(predict=predict), checks=["run"])
    assert "fails the run check: the result of predict is an error: no" in message


def test_a_task_that_raises_fails_the_run_check_with_its_exception():
    def predict(self, model, batch, options):
        raise KeyError("prompt")

    message = failure(broken(predict=predict), checks=["run"])
    assert "fails the run check: KeyError: 'prompt'" in message


def test_one_result_for_a_batch_of_two_fails_the_batch_check():
    def predict(self, model, batch, options):
        return [Shout.shout(batch[0]["text"], options)]

    message = failure(broken(predict=predict), checks=["batch"])
    assert "fails the batch check: predict on a batch of 2 inputs returned [{" in message
    assert "it returns one result per input" in message


def test_a_stream_ending_elsewhere_than_predict_fails_the_stream_check():
    def predict_stream(self, model, inputs, options):
        yield {"loud": "SOMETHING ELSE"}

    message = failure(broken(predict_stream=predict_stream), checks=["stream"])
    assert "fails the stream check: the stream's last result has loud = 'SOMETHING ELSE'" in message


def test_a_stream_may_end_elsewhere_when_the_task_is_not_deterministic():
    def predict_stream(self, model, inputs, options):
        yield {"loud": "SOMETHING ELSE"}

    check_task(broken(predict_stream=predict_stream), inputs=INPUTS, checks=["stream"], deterministic=False)


def test_an_error_in_the_stream_fails_the_stream_check():
    def predict_stream(self, model, inputs, options):
        yield {"loud": "HELLO"}
        yield {"error": "the model ran dry"}

    message = failure(broken(predict_stream=predict_stream), checks=["stream"])
    assert "fails the stream check: partial result 1 of the stream is an error: the model ran dry" in message


def test_a_json_document_that_is_not_json_fails_the_json_check():
    message = failure(broken(to_json=lambda self, batch, results: {"nan": float("nan")}), checks=["json"])
    assert "fails the json check: to_json of 1 result(s) is not a JSON document (Out of range float values" in message


# ---- web app --------------------------------------------------------------------------------
SIZE_TASK = dict(
    name="size", description="Measure an image.", inputs=(Input("image", "image"),),
    outputs=(Output("size", "text"),), options=(), examples=(), predict_stream=Task.predict_stream,
)


def test_an_image_task_passes_the_web_check(tmp_path):
    def predict(self, model, batch, options):
        return [{"size": "x".join(map(str, image.size))} for image in map(opened, (item["image"] for item in batch))]

    image = tmp_path / "red.png"
    Image.new("RGB", (6, 4), "red").save(image)
    check_task(broken(**SIZE_TASK, predict=predict), inputs=[{"image": str(image)}], checks=["run", "web"])


def test_an_image_task_that_reads_only_paths_fails_the_web_check(tmp_path):
    """The command line hands an image input over as a path, the web app as a PIL image: a task must take both."""

    def predict(self, model, batch, options):
        return [{"size": "x".join(map(str, Image.open(item["image"]).size))} for item in batch]

    image = tmp_path / "red.png"
    Image.new("RGB", (6, 4), "red").save(image)
    task_class = broken(**SIZE_TASK, predict=predict)
    check_task(task_class, inputs=[{"image": str(image)}], checks=["run"])
    message = failure(task_class, inputs=[{"image": str(image)}], checks=["web"])
    assert message.startswith("task size fails the web check: the web app's /size endpoint failed:")


def opened(image):
    return image if isinstance(image, Image.Image) else Image.open(image)


# ---- weight ---------------------------------------------------------------------------------
def test_checking_a_task_that_needs_no_torch_imports_no_torch(tmp_path):
    (tmp_path / "light.py").write_text(textwrap.dedent('''
        import sys
        from genseq.tasks import Input, Output, Task
        from genseq.testing import check_task

        class Upper(Task):
            name = "upper"
            description = "Upper-case a text."
            inputs = (Input("text", "text"),)
            outputs = (Output("text", "text"),)

            def load(self, model_path):
                return None

            def predict(self, model, batch, options):
                return [{"text": item["text"].upper()} for item in batch]

        check_task(Upper, inputs=[{"text": "a"}, {"text": "b"}])
        print(json.dumps(sorted(name for name in ("torch", "numpy") if name in sys.modules)))
    ''').replace("import sys", "import json, sys"))
    result = subprocess.run([sys.executable, str(tmp_path / "light.py")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "torch" not in json.loads(result.stdout)


@pytest.mark.parametrize("name", ["completion", "captioning", "sentiment", "gates", "gradients"])
def test_the_built_in_tasks_pass_the_declaration_and_flags_checks(name):
    from genseq.plugins import get_task_class

    task_class = get_task_class(name)
    inputs = [{item.name: "x" for item in task_class.inputs}]
    check_task(task_class, inputs=inputs, checks=["declaration", "flags"])
