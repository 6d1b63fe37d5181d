import json
import os
import subprocess
import sys

import pytest
from cli_helpers import run_cli
from plugin_helpers import GOOD_TASK, make_distribution

from genseq import ConfigError
from genseq.cli import main
from genseq.plugins import PluginError, discover, get_task_class, run_guarded
from genseq.tasks import API_VERSION


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("echo_plugin", "broken_plugin", "other_echo"):
        sys.modules.pop(name, None)
    return tmp_path


@pytest.fixture
def echo(plugin_path):
    make_distribution(plugin_path, "genseq-echo", {"echo": "echo_plugin:Echo"}, "echo_plugin", GOOD_TASK.format(name="echo"))
    return plugin_path


@pytest.fixture
def broken(plugin_path):
    make_distribution(plugin_path, "genseq-broken", {"broken": "broken_plugin:Task"}, "broken_plugin",
                      "raise ImportError('needs a library that is not installed')")
    return plugin_path


def by_name(infos):
    return {info.name: info for info in infos}


def test_a_registered_task_is_discovered_with_its_distribution(echo):
    info = by_name(discover())["echo"]
    assert (info.distribution, info.version, info.status) == ("genseq-echo", "1.0", "ok")
    assert get_task_class("echo")().run({"text": "hi"}, times=2) == {"text": "hi hi"}


def test_a_broken_plugin_is_listed_with_its_error_and_the_others_still_run(echo, broken, capsys):
    infos = by_name(discover())
    assert infos["broken"].status == "error: ImportError: needs a library that is not installed"
    assert infos["echo"].ok
    assert main(["tasks", "--json"]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)["tasks"]}
    assert listed["broken"]["distribution"] == "genseq-broken" and listed["broken"]["status"].startswith("error")
    with pytest.raises(PluginError) as caught:
        get_task_class("broken")
    assert str(caught.value) == "task broken (genseq-broken) failed to load: ImportError: needs a library that is not installed"


def test_strict_mode_makes_a_broken_plugin_fatal(broken, monkeypatch, capsys):
    monkeypatch.setenv("GENSEQ_STRICT_PLUGINS", "1")
    assert main(["tasks"]) == 2
    assert "task plugin broken (genseq-broken) failed to load" in capsys.readouterr().err


def test_plugins_can_be_disabled_by_name(echo, monkeypatch):
    monkeypatch.setenv("GENSEQ_DISABLE_PLUGINS", "echo")
    assert by_name(discover())["echo"].status == "disabled"
    with pytest.raises(PluginError, match="task echo \\(genseq-echo\\) is disabled by GENSEQ_DISABLE_PLUGINS"):
        get_task_class("echo")


def test_two_distributions_with_one_task_name_warn_and_choose_deterministically(echo):
    make_distribution(echo, "aaa-echo", {"echo": "other_echo:Echo"}, "other_echo", GOOD_TASK.format(name="echo"))
    with pytest.warns(UserWarning, match="registered by aaa-echo, genseq-echo; using aaa-echo"):
        infos = [info for info in discover() if info.name == "echo"]
    assert [(i.distribution, i.status) for i in infos] == [("aaa-echo", "ok"), ("genseq-echo", "shadowed by aaa-echo")]


def test_unknown_task_lists_the_available_ones(echo):
    with pytest.raises(PluginError, match="unknown task 'nope'; available tasks: .*echo"):
        get_task_class("nope")


@pytest.mark.parametrize("options,message", [
    ({"time": 2}, "task echo has no option time; its options are: times"),
    ({"times": 9}, r"option times must be in \[1, 5\], not 9"),
    ({"times": "two"}, "option times must be int, not 'two'"),
    ({"times": 1.5}, "option times must be int"),
])
def test_bad_options_are_rejected_with_the_valid_ones(echo, options, message):
    with pytest.raises(ConfigError, match=message):
        get_task_class("echo")().run({"text": "x"}, **options)


def test_the_model_loads_once_on_first_use(echo):
    task_class = get_task_class("echo")
    task = task_class(model="elsewhere")
    assert task_class.loads == 0
    task.run({"text": "a"})
    task.run_batch([{"text": "b"}, {"text": "c"}])
    assert task_class.loads == 1 and task.model == "elsewhere"


def test_an_exception_inside_a_plugin_becomes_one_error_naming_it():
    def explode():
        raise ZeroDivisionError("division by zero")

    with pytest.raises(PluginError, match=r"task echo \(genseq-echo\) failed: ZeroDivisionError: division by zero"):
        run_guarded("echo", "genseq-echo", explode)


def test_importing_genseq_imports_no_plugin(echo):
    code = "import sys, genseq; print(sorted(m for m in sys.modules if m.endswith('_plugin') or m.startswith('genseq_')))"
    env = {**os.environ, "PYTHONPATH": str(echo)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "[]"


TRAINABLE_TASK = GOOD_TASK + '''
    @classmethod
    def add_train_arguments(cls, parser):
        parser.add_argument("--steps", type=int, required=True)

    @classmethod
    def train(cls, args):
        print(f"trained {{args.steps}} steps")
        return 0

    @classmethod
    def add_eval_arguments(cls, parser):
        parser.add_argument("--data", required=True)

    @classmethod
    def evaluate(cls, args):
        if args.data == "boom":
            raise RuntimeError("evaluation crashed")
        return {{"accuracy": 0.5}}
'''


def test_a_task_with_train_and_eval_hooks_gets_train_and_eval_commands(plugin_path, capsys):
    make_distribution(plugin_path, "genseq-echo", {"echo": "echo_plugin:Echo"}, "echo_plugin", TRAINABLE_TASK.format(name="echo"))
    assert main(["train", "echo", "--steps", "3"]) == 0
    assert capsys.readouterr().out == "trained 3 steps\n"
    assert main(["eval", "echo", "--data", "x", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"accuracy": 0.5}
    assert main(["eval", "echo", "--data", "boom"]) == 2
    assert "task echo (genseq-echo) failed: RuntimeError: evaluation crashed" in capsys.readouterr().err


def test_a_task_taking_the_name_of_a_core_flag_is_reported_and_the_others_still_work(plugin_path, capsys):
    source = GOOD_TASK.replace('Option("times"', 'Option("model"')
    make_distribution(plugin_path, "genseq-echo", {"echo": "echo_plugin:Echo"}, "echo_plugin", source.format(name="echo"))
    echo = next(info for info in discover() if info.name == "echo")
    assert not echo.ok and "input and option names model are genseq's own flags" in echo.status
    assert main(["generate", "--prompt", "x", "--max-new-tokens", "2", "--seed", "0"]) == 0


def test_an_input_named_like_another_tasks_option_is_the_tasks_own_flag(plugin_path, capsys):
    source = GOOD_TASK.replace('inputs = (Input("text", "text"),)', 'inputs = (Input("text", "text"), Input("seed", "text"))')
    make_distribution(plugin_path, "genseq-echo", {"echo": "echo_plugin:Echo"}, "echo_plugin", source.format(name="echo"))
    assert main(["generate", "--task", "echo", "--text", "hi", "--seed", "a text, not completion's number"]) == 0
    assert capsys.readouterr() == ("hi\n", "")
    assert main(["generate", "--prompt", "x", "--max-new-tokens", "2", "--seed", "0"]) == 0


def generate_help(capsys, *argv) -> str:
    with pytest.raises(SystemExit):
        main(["generate", *argv, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_generate_help_shows_only_the_chosen_tasks_flags(capsys):
    completion = generate_help(capsys)
    assert "task completion" in completion and "tokens to generate at most (default 100," in completion
    assert "captioning" not in completion and "--image" not in completion
    captioning = generate_help(capsys, "--task", "captioning")
    assert "task captioning" in captioning and "--image" in captioning and "(default 40," in captioning
    assert "--prompt" not in captioning and "--suggest" not in captioning


COMMANDS_MODULE_TASK = GOOD_TASK + '''
    commands = "echo_plugin"

def add_train_arguments(parser):
    parser.add_argument("--steps", type=int, required=True)

def run_train(args):
    print(f"trained {{args.steps}} steps")
    return 0
'''


def test_a_commands_module_gives_the_commands_it_defines(plugin_path, capsys):
    make_distribution(plugin_path, "genseq-echo", {"echo": "echo_plugin:Echo"}, "echo_plugin", COMMANDS_MODULE_TASK.format(name="echo"))
    task_class = get_task_class("echo")
    assert task_class.trainable() and not task_class.evaluable()
    assert main(["train", "echo", "--steps", "4"]) == 0
    assert capsys.readouterr().out == "trained 4 steps\n"
    with pytest.raises(SystemExit):
        main(["eval", "echo", "--data", "x"])
    assert "invalid choice: 'echo'" in capsys.readouterr().err


def test_a_commands_module_that_fails_to_import_breaks_only_its_own_command(plugin_path, capsys):
    source = GOOD_TASK + """
    commands = "echo_missing_cli"
"""
    make_distribution(plugin_path, "genseq-echo", {"echo": "echo_plugin:Echo"}, "echo_plugin", source.format(name="echo"))
    assert main(["generate", "--task", "echo", "--text", "hi"]) == 0
    assert capsys.readouterr().out == "hi\n"
    assert main(["train", "echo", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "task echo (genseq-echo) failed: ModuleNotFoundError" in err and "Traceback" not in err


@pytest.mark.parametrize("extra,message", [
    (["--text", "y"], "task completion has no flag --text; its inputs and options are --prompt, --max-new-tokens"),
    (["--times=2"], "task completion has no flag --times; its inputs and options are --prompt"),
])
def test_flags_of_another_task_are_rejected_by_name(echo, capsys, extra, message):
    assert main(["generate", "--prompt", "x", *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_plugin_task_runs_through_genseq_generate(echo, capsys):
    assert main(["generate", "--task", "echo", "--text", "hey", "--times", "3"]) == 0
    assert capsys.readouterr().out == "hey hey hey\n"
    assert main(["generate", "--task", "echo", "--text", "a", "--text", "b", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"text": "a"}, {"text": "b"}]


# ---- per-task flags ----------------------------------------------------------------------
THRESHOLD_TASK = '''
from genseq.tasks import Input, Option, Output, Task

class {cls}(Task):
    name = "{name}"
    description = "{description}"
    inputs = (Input("text", "text"),)
    outputs = (Output("text", "text"),)
    options = ({option},)

    def load(self, model_path):
        return None

    def predict(self, model, batch, options):
        return [{{"text": repr(options["{option_name}"])}} for item in batch]
'''


@pytest.fixture
def two_thresholds(plugin_path):
    """Two plugins declaring an option of one name with different types, and one with a bool named like
    completion's int --suggest."""
    for cls, name, option, option_name in [
        ("Words", "words", 'Option("threshold", "high", "how strict", choices=("low", "high"))', "threshold"),
        ("Numbers", "numbers", 'Option("threshold", 0.5, "a probability", minimum=0.0, maximum=1.0)', "threshold"),
        ("Flagged", "flagged", 'Option("suggest", False, "suggest or not")', "suggest"),
    ]:
        source = THRESHOLD_TASK.format(cls=cls, name=name, description=f"The {name} task.", option=option,
                                       option_name=option_name)
        make_distribution(plugin_path, f"genseq-{name}", {name: f"{name}_plugin:{cls}"}, f"{name}_plugin", source)
        sys.modules.pop(f"{name}_plugin", None)
    return plugin_path


@pytest.mark.parametrize("argv,printed", [
    (["--task", "words", "--threshold", "low"], "'low'"),
    (["--task", "numbers", "--threshold", "0.25"], "0.25"),
    (["--task", "flagged", "--suggest"], "True"),
    (["--task", "flagged", "--no-suggest"], "False"),
])
def test_each_task_takes_its_own_options_type_where_another_declares_the_same_name(two_thresholds, capsys, argv, printed):
    assert main(["generate", "--text", "x", *argv]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out == printed + "\n"


@pytest.mark.parametrize("argv,message", [
    (["--task", "numbers", "--threshold", "high"], "--threshold must be a number, not 'high'"),
    (["--task", "words", "--threshold", "0.5"], "argument --threshold: invalid choice: '0.5' (choose from 'low', 'high')"),
])
def test_each_task_checks_its_own_option_by_its_own_declaration(two_thresholds, capsys, argv, message):
    code, _, err = run_cli(capsys, "generate", "--text", "x", *argv)
    assert code == 2 and message in err


def test_completion_keeps_its_int_suggest_beside_a_plugins_bool_one(two_thresholds, capsys):
    assert main(["generate", "--prompt", "x", "--suggest", "two"]) == 2
    assert "--suggest must be a whole number, not 'two'" in capsys.readouterr().err


def test_each_tasks_help_shows_only_its_own_options(two_thresholds, capsys):
    words = generate_help(capsys, "--task", "words")
    assert "how strict" in words and "a probability" not in words and "suggest or not" not in words
    numbers = generate_help(capsys, "--task", "numbers")
    assert "a probability (default 0.5, range [0, 1])" in numbers and "how strict" not in numbers


def test_generate_with_an_unknown_task_names_the_available_ones(echo, capsys):
    assert main(["generate", "--task", "nope", "--text", "x"]) == 2
    assert "unknown task 'nope'; available tasks: " in capsys.readouterr().err


def test_an_input_and_an_option_sharing_a_flag_are_reported_at_discovery(plugin_path):
    source = GOOD_TASK.replace('Option("times"', 'Option("text"')
    make_distribution(plugin_path, "genseq-echo", {"echo": "echo_plugin:Echo"}, "echo_plugin", source.format(name="echo"))
    assert "two inputs or options would both be the flag --text" in by_name(discover())["echo"].status


# ---- contract version --------------------------------------------------------------------
def versioned(version: str) -> str:
    return GOOD_TASK.format(name="echo") + f"    api_version = {version!r}\n"


def test_a_task_built_for_another_major_api_version_is_listed_as_incompatible(plugin_path, capsys):
    make_distribution(plugin_path, "genseq-echo", {"echo": "echo_plugin:Echo"}, "echo_plugin", versioned("2.0"))
    info = by_name(discover())["echo"]
    assert not info.ok and info.state == "incompatible"
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "incompatible" in out
    assert ("echo (genseq-echo) is incompatible: it needs version 2.0 of genseq's task API and this genseq provides "
            f"{API_VERSION}") in out


def test_an_incompatible_task_gets_no_commands_and_the_others_still_run(plugin_path, capsys):
    make_distribution(plugin_path, "genseq-echo", {"echo": "echo_plugin:Echo"}, "echo_plugin", versioned("0.9"))
    assert main(["generate", "--task", "echo", "--text", "x"]) == 2
    assert "task echo (genseq-echo) is incompatible: it needs version 0.9" in capsys.readouterr().err
    assert main(["train", "echo"]) == 2
    err = capsys.readouterr().err
    assert "is incompatible" in err and "invalid choice" not in err
    assert main(["generate", "--prompt", "x", "--max-new-tokens", "2", "--seed", "0"]) == 0


def test_a_newer_minor_api_version_is_compatible(plugin_path):
    make_distribution(plugin_path, "genseq-echo", {"echo": "echo_plugin:Echo"}, "echo_plugin", versioned("1.7"))
    assert by_name(discover())["echo"].ok


def test_an_api_version_that_is_not_a_version_is_an_error(plugin_path):
    make_distribution(plugin_path, "genseq-echo", {"echo": "echo_plugin:Echo"}, "echo_plugin", versioned("one"))
    assert by_name(discover())["echo"].status == "error: ValueError: api_version must be a version such as '1.0', not 'one'"


def test_tasks_json_gives_each_tasks_api_version(echo, capsys):
    assert main(["tasks", "--json"]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)["tasks"]}
    assert listed["echo"]["api_version"] == API_VERSION == "1.0"


# ---- no torch for listing ----------------------------------------------------------------
@pytest.mark.parametrize("code", [
    "import genseq.tasks",
    "from genseq.cli import main; main(['tasks'])",
    "from genseq.cli import main; main(['tasks', '--json'])",
])
def test_listing_tasks_imports_no_torch(code):
    check = f"import sys\n{code}\nprint('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "False"


# ---- what genseq tasks and the commands say of a broken task -----------------------------
def test_a_long_error_does_not_widen_the_tasks_table(echo, plugin_path, capsys):
    make_distribution(plugin_path, "genseq-broken", {"broken": "broken_plugin:Task"}, "broken_plugin",
                      f"raise ImportError({'a very long reason ' * 20!r})")
    assert main(["tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header, rows = lines[0], [line for line in lines[1:] if line.split()[0] in ("broken", "echo", "completion")][:3]
    column = header.index("DESCRIPTION")
    assert column < 60
    assert all(row[column - 2:column] == "  " and row[column] != " " for row in rows if len(row) > column)
    assert "broken (genseq-broken) failed to load: ImportError: a very long reason" in "\n".join(lines)


def test_tasks_json_describes_a_broken_task_by_its_distributions_summary(plugin_path, capsys):
    make_distribution(plugin_path, "genseq-broken", {"broken": "broken_plugin:Task"}, "broken_plugin",
                      "raise ImportError('missing')", summary="Classify bird songs.")
    assert main(["tasks", "--json"]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)["tasks"]}
    assert listed["broken"]["description"] == "Classify bird songs."


@pytest.mark.parametrize("command", ["train", "eval"])
def test_training_a_task_that_failed_to_load_says_why(broken, capsys, command):
    assert main([command, "broken", "--data", "x"]) == 2
    err = capsys.readouterr().err
    assert err == "genseq: error: task broken (genseq-broken) failed to load: ImportError: needs a library that is not installed\n"


def test_a_task_that_failed_to_load_is_not_listed_among_the_commands(broken, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "broken" not in capsys.readouterr().out


# ---- printing ----------------------------------------------------------------------------
def test_eval_aligns_metric_names_longer_than_sixteen_characters(plugin_path, capsys):
    source = TRAINABLE_TASK.replace('return {{"accuracy": 0.5}}', 'return {{"a": 1, "bag_of_words_logistic_regression": {{"f1": 0.25}}}}')
    make_distribution(plugin_path, "genseq-echo", {"echo": "echo_plugin:Echo"}, "echo_plugin", source.format(name="echo"))
    assert main(["eval", "echo", "--data", "x"]) == 0
    short, long = capsys.readouterr().out.splitlines()
    assert long == "bag_of_words_logistic_regression.f1  0.2500"
    assert short == " " * (len("bag_of_words_logistic_regression.f1") - 1) + "a  1"


def test_an_empty_input_in_a_batch_gets_a_numbered_header(echo, capsys):
    assert main(["generate", "--task", "echo", "--text", "", "--text", "b"]) == 0
    assert capsys.readouterr().out == "== item 1 ==\n\n== b ==\nb\n"


@pytest.mark.parametrize("prob,shown", [(0.25, "0.2500"), (3.2e-6, "3.20e-06"), (0.0, "0.0000")])
def test_ranked_and_label_outputs_show_small_probabilities(prob, shown):
    from genseq.cli.task_args import render
    from genseq.tasks import Output, Task

    class Ranker(Task):
        name = "ranker"
        outputs = (Output("words", "ranked"), Output("verdict", "label"))

    text = render(Ranker, {"words": [{"label": "rare", "prob": prob}], "verdict": {"label": "rare", "prob": prob}})
    assert text.split("\n") == ["words:", f"  {'rare':<24} {shown}", f"verdict: rare ({shown})"]


def test_a_streamed_input_the_task_reports_as_an_error_is_not_echoed(plugin_path, capsys):
    make_distribution(plugin_path, "genseq-picky", {"picky": "echo_plugin:Picky"}, "echo_plugin", '''
    from genseq.tasks import Input, Output, Task

    class Picky(Task):
        name = "picky"
        description = "Continue a text of one word."
        inputs = (Input("prefix", "text"),)
        outputs = (Output("text", "text"),)
        echo_input = "prefix"

        def load(self, model_path):
            return None

        def predict(self, model, batch, options):
            return [{"error": "the prefix must be one word"} if " " in item["prefix"] else {"text": "s"} for item in batch]
    ''')
    assert main(["generate", "--task", "picky", "--prefix", "two words", "--stream"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "the prefix must be one word" in err
