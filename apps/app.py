"""The genseq web app: one tab per registered task, built from the tasks' declarations, and Inspect.

    genseq serve [--host 127.0.0.1] [--port 7860] [--models-dir runs] [--max-prompt-chars 20000]
    gradio apps/app.py                              serve it, reloading on every edit under apps/

build_app() discovers the task plugins and gives each usable one a tab; the
ones that fail to load are listed at the top instead. The Inspect and Gradients
tabs (apps/lab.py) show the default language model's gates and the gradients lab. Models load on first use
and are shared by every session; requests queue behind a concurrency limit.
A client may load only the checkpoints the server was started with and those in
its models directory, and send texts of at most max_prompt_chars (apps/access.py).
The app binds to 127.0.0.1, sends no analytics and fetches nothing from the
internet; uploads and outputs live in Gradio's temporary folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # Gradio's telemetry and version check look it up before each use

if __package__ in (None, ""):  # run as a file (`gradio apps/app.py`): make the `apps` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gradio as gr  # noqa: E402

from apps.access import DEFAULT_MAX_PROMPT_CHARS, DEFAULT_MODELS_DIR, ServerAccess  # noqa: E402
from apps.images import MAX_UPLOAD  # noqa: E402
from apps.lab import build_gradients_tab, build_inspect_tab  # noqa: E402
from apps.pool import TaskPool  # noqa: E402
from apps.tabs import CONCURRENCY_ID, build_tab  # noqa: E402
from genseq import ConfigError  # noqa: E402
from genseq.plugins import TaskInfo, discover  # noqa: E402

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 7860
CONCURRENCY = 2  # requests running at once, one per core of a small machine; the rest wait in the queue
QUEUE_SIZE = 64  # past this many waiting requests a new one is refused with a "queue is full" message
HEADER = "# genseq\nSequence generation with recurrent networks: one tab per task."

if gr.NO_RELOAD:  # live reload re-runs this file but skips this block, so loaded models survive an edit
    SHARED_POOL = TaskPool()


def build_app(model_overrides: dict | None = None, pool: TaskPool | None = None, concurrency: int = CONCURRENCY,
              models_dir: str | os.PathLike = DEFAULT_MODELS_DIR,
              max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS) -> gr.Blocks:
    """The app; model_overrides maps a task name to the checkpoint directory its tab uses by default.

    Clients may pick those checkpoints and the ones in models_dir, and send texts of
    at most max_prompt_chars characters.
    """
    infos = discover()
    overrides = _checked_overrides(model_overrides or {}, infos)
    access = ServerAccess(list(overrides.values()), models_dir, max_prompt_chars)
    with gr.Blocks(title="genseq", analytics_enabled=False) as app:
        gr.Markdown(HEADER)
        _report_unusable(infos)
        with gr.Tabs():
            for info in (info for info in infos if info.ok):
                with gr.Tab(info.name, id=info.name):
                    build_tab(info, pool or SHARED_POOL, overrides.get(info.name), concurrency, access)
            with gr.Tab("Inspect", id="inspect"):
                build_inspect_tab(CONCURRENCY_ID, concurrency)
            with gr.Tab("Gradients", id="gradients"):
                build_gradients_tab(CONCURRENCY_ID, concurrency)
    return app.queue(max_size=QUEUE_SIZE, default_concurrency_limit=concurrency)


def _checked_overrides(model_overrides: dict, infos: list[TaskInfo]) -> dict[str, str]:
    usable = {info.name for info in infos if info.ok}
    unknown = sorted(set(model_overrides) - usable)
    if unknown:
        raise ConfigError(f"no usable task {', '.join(unknown)} to give a model; tasks: {', '.join(sorted(usable)) or 'none'}")
    return {name: str(Path(path).resolve()) for name, path in model_overrides.items()}


def _report_unusable(infos: list[TaskInfo]) -> None:
    """Plugins that failed to load get a line each instead of a tab; disabled ones are left out on purpose."""
    broken = [info for info in infos if not info.ok and info.status != "disabled"]
    if broken:
        lines = [f"- **{info.name}** ({info.distribution} {info.version}): {info.status}" for info in broken]
        gr.Markdown("\n".join(["Some tasks are not available:", *lines]))
    if not any(info.ok for info in infos):
        gr.Markdown("No task is usable: install a task plugin (see docs/plugins.md), then restart the app.")


def launch(app: gr.Blocks, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, **options):
    """Serve app on host:port (loopback unless told otherwise); options go to Blocks.launch."""
    return app.launch(server_name=host, server_port=port, share=False, ssr_mode=False, max_file_size=MAX_UPLOAD,
                      footer_links=["api", "settings"], **options)


demo = build_app()

if __name__ == "__main__":
    launch(demo)
