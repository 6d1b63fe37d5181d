"""The example third-party plugin, installed with pip the way a user would, runs through genseq's CLI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "genseq-perplexity"


def pip(*args):
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def genseq(*args):
    return subprocess.run([sys.executable, "-m", "genseq", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def installed():
    result = pip("install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    yield
    pip("uninstall", "--quiet", "--yes", "genseq-perplexity")


def test_genseq_tasks_lists_the_installed_plugin(installed):
    result = genseq("tasks", "--json")
    tasks = {row["name"]: row for row in json.loads(result.stdout)["tasks"]}
    assert tasks["perplexity"]["distribution"] == "genseq-perplexity"
    assert tasks["perplexity"]["version"] == "0.1.0" and tasks["perplexity"]["status"] == "ok"
    assert tasks["completion"]["status"] == "ok"


def test_genseq_generate_runs_the_plugin(installed, trained_run):
    result = genseq("generate", "--task", "perplexity", "--text", "Shall I compare thee to a summer's day?",
                    "--model", trained_run, "--top", "3", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["perplexity"] > 1 and len(document["surprises"]) == 3
    assert all(0 < s["prob"] <= 1 for s in document["surprises"])


def test_the_plugin_options_are_checked_by_the_contract(installed, trained_run):
    result = genseq("generate", "--task", "perplexity", "--text", "x", "--model", trained_run, "--top", "500")
    assert result.returncode == 2 and "option top must be in [1, 50], not 500" in result.stderr
