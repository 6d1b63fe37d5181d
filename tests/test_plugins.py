import json
import os
import subprocess
import sys

import pytest

from genseq import ConfigError
from genseq.cli import main
from genseq.plugins import PluginError, discover, get_task_class, run_guarded

from plugin_helpers import GOOD_TASK, make_distribution


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
    with pytest.raises(PluginError, match="task broken \\(genseq-broken\\) is not usable: error: ImportError"):
        get_task_class("broken")


def test_strict_mode_makes_a_broken_plugin_fatal(broken, monkeypatch, capsys):
    monkeypatch.setenv("GENSEQ_STRICT_PLUGINS", "1")
    assert main(["tasks"]) == 2
    assert "task plugin broken (genseq-broken) failed to load" in capsys.readouterr().err


def test_plugins_can_be_disabled_by_name(echo, monkeypatch):
    monkeypatch.setenv("GENSEQ_DISABLE_PLUGINS", "echo")
    assert by_name(discover())["echo"].status == "disabled"
    with pytest.raises(PluginError, match="not usable: disabled"):
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


def test_an_input_named_like_another_tasks_flag_is_noted_when_that_task_runs(plugin_path, capsys):
    source = GOOD_TASK.replace('inputs = (Input("text", "text"),)', 'inputs = (Input("text", "text"), Input("seed", "text"))')
    make_distribution(plugin_path, "genseq-echo", {"echo": "echo_plugin:Echo"}, "echo_plugin", source.format(name="echo"))
    assert main(["generate", "--task", "echo", "--text", "hi"]) == 2
    err = capsys.readouterr().err
    assert "note: the input seed cannot be given here: another task's --seed takes its name" in err
    assert main(["generate", "--prompt", "x", "--max-new-tokens", "2", "--seed", "0"]) == 0
    assert "note:" not in capsys.readouterr().err


def test_generate_help_shows_the_default_tasks_defaults_and_the_others_where_they_differ(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "tokens to generate at most (default 100, captioning: 40," in help_text
    assert help_text.index("task completion") < help_text.index("task captioning")


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
    (["--text", "y"], "task completion takes no --text"),
    (["--times", "2"], "--times is not an option of task completion; its options are: --max-new-tokens"),
])
def test_flags_of_another_task_are_rejected_by_name(echo, capsys, extra, message):
    assert main(["generate", "--prompt", "x", *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_plugin_task_runs_through_genseq_generate(echo, capsys):
    assert main(["generate", "--task", "echo", "--text", "hey", "--times", "3"]) == 0
    assert capsys.readouterr().out == "hey hey hey\n"
    assert main(["generate", "--task", "echo", "--text", "a", "--text", "b", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"text": "a"}, {"text": "b"}]
