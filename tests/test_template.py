"""examples/task-template, installed from a copy the way a plugin author installs it, passes its own tests,
genseq.testing's checks among them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[1] / "examples" / "task-template"
SHIPPED_MODEL = TEMPLATE / "genseq_wordgen" / "models" / "default"
MAX_SHIPPED_BYTES = 200_000


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    """(the template's copy, an environment whose PYTHONPATH holds it installed); nothing is fetched."""
    root = tmp_path_factory.mktemp("template")
    copy = root / "task-template"
    shutil.copytree(TEMPLATE, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = root / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                             "--no-index", "--target", str(site), str(copy)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return copy, {**os.environ, "PYTHONPATH": str(site)}


def test_the_installed_template_passes_its_own_tests(installed):
    copy, environment = installed
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(copy / "tests")],
                            capture_output=True, text=True, env=environment, cwd=copy.parent, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "passed" in result.stdout and "skipped" not in result.stdout


def test_genseq_lists_the_installed_template_task(installed):
    _, environment = installed
    result = subprocess.run([sys.executable, "-m", "genseq", "tasks", "--json"], capture_output=True, text=True,
                            env=environment)
    tasks = {row["name"]: row for row in json.loads(result.stdout)["tasks"]}
    assert tasks["wordgen"]["status"] == "ok" and tasks["wordgen"]["distribution"] == "genseq-wordgen"


def test_the_shipped_model_is_small_and_holds_no_pickle():
    files = sorted(path.name for path in SHIPPED_MODEL.iterdir())
    assert files == ["config.json", "model.safetensors", "tokenizer.model"]
    assert sum(path.stat().st_size for path in SHIPPED_MODEL.iterdir()) < MAX_SHIPPED_BYTES
