"""A wheel of genseq serves the web app: built from the source tree, installed into a fresh virtual environment.

The fresh environment downloads nothing: a .pth line lends it this environment's
site-packages for the heavy dependencies (torch, Gradio ...), which the
environment's own site-packages, holding the wheel, comes before; and it runs
from a temporary directory, so the genseq it imports is the wheel's, not this
checkout's.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "genseq", "plugins", "apps")  # what the wheel is built from
UNBUILT = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
STARTUP_SECONDS = 60


def run(command: list, cwd: Path, **options) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, **options)
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """genseq's wheel, built from a copy of the sources (the build leaves nothing in the checkout)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheels")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=UNBUILT)
        else:
            shutil.copy(path, source / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(out), "."],
        cwd=source)
    (built,) = out.glob("genseq-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed, borrowing this one's dependencies; its bin folder."""
    root = tmp_path_factory.mktemp("venv") / "env"
    run([sys.executable, "-m", "venv", "--without-pip", str(root)], cwd=root.parent)
    python = root / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root).strip())
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet", str(wheel)],
        cwd=root)
    return root / "bin"


def clean_environment(tmp_path: Path) -> dict:
    environment = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return environment | {"HF_HUB_OFFLINE": "1", "GENSEQ_CACHE_DIR": str(tmp_path / "cache"),
                          "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(port: int, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"genseq serve exited with {server.returncode}:\n{server.stderr.read()}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    pytest.fail(f"genseq serve did not answer on port {port} within {STARTUP_SECONDS} s")


def test_the_wheel_holds_the_app_and_the_task_packages_and_imports_them_from_the_new_environment(venv, tmp_path):
    code = "import genseq, genseq_web, genseq_lab, genseq_captioning; print(genseq.__file__); print(genseq_web.__file__)"
    files = run([str(venv / "python"), "-c", code], cwd=tmp_path, env=clean_environment(tmp_path)).split()
    assert all(Path(file).is_relative_to(venv.parent) for file in files), files
    examples = Path(files[0]).parents[1] / "genseq_captioning" / "examples"
    assert (examples / "shark.png").is_file(), "the captioning examples are package data"


def test_genseq_serve_from_the_wheel_answers_a_client(venv, tmp_path, trained_run, monkeypatch):
    import huggingface_hub.constants
    from gradio_client import Client

    # gradio_client's Client() asks huggingface.co for a registry of agent names unless the hub is offline
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    port = free_port()
    server = subprocess.Popen(
        [str(venv / "genseq"), "serve", "--port", str(port), "--model", f"completion={trained_run}",
         "--models-dir", str(tmp_path)],
        cwd=tmp_path, env=clean_environment(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(port, server)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False, download_files=False)
        text, _, completions = client.predict(prompt="Shall I", max_new_tokens=3, seed=1, api_name="/completion")
        assert isinstance(text, str) and len(completions[0]["tokens"]) <= 3
    finally:
        server.terminate()
        server.wait(timeout=30)
