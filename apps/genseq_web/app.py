"""The app: one tab per usable registered task, each built from the task's declaration (tabs.py).

build_app() discovers the task plugins and gives each usable one a tab; the
ones that fail to load are listed at the top instead. Models load on first use
and are shared by every session; requests queue behind a concurrency limit.
A client may load only the checkpoints the server was started with and those in
its models directory, and send texts of at most max_prompt_chars (access.py).
launch() binds to 127.0.0.1 unless told otherwise; the app sends no analytics
and fetches nothing from the internet; uploads and outputs live in Gradio's
temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # Gradio's telemetry and version check look it up before each use

import gradio as gr  # noqa: E402

from genseq import ConfigError  # noqa: E402
from genseq.jobs import is_loopback  # noqa: E402
from genseq.plugins import DEFAULT_TASK, TaskInfo, discover  # noqa: E402

from .access import DEFAULT_MAX_PROMPT_CHARS, DEFAULT_MODELS_DIR, ServerAccess  # noqa: E402
from .images import MAX_UPLOAD  # noqa: E402
from .openai_api import OpenAIServer, api_routes, serve_api  # noqa: E402
from .page import CSS, SCRIPT, THEME  # noqa: E402
from .pool import TaskPool  # noqa: E402
from .tabs import build_tab, tab_title  # noqa: E402
from .training import DEFAULT_MAX_UPLOAD_MB, TRAIN_TAB, Training, build_training_tab, connect_training  # noqa: E402

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 7860
CONCURRENCY = 2  # requests running at once, one per core of a small machine; the rest wait in the queue
QUEUE_SIZE = 64  # past this many waiting requests a new one is refused with a "queue is full" message
HEADER = ("# genseq\nSmall recurrent neural networks (LSTMs) that run on this server, one task per tab; nothing you "
          "type leaves it. Try an example or your own input, then press Run (or Ctrl+Enter).")


def build_app(model_overrides: dict | None = None, pool: TaskPool | None = None, concurrency: int = CONCURRENCY,
              models_dir: str | os.PathLike = DEFAULT_MODELS_DIR,
              max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS, infos: list[TaskInfo] | None = None,
              max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, allow_training: bool = False) -> gr.Blocks:
    """The app; model_overrides maps a task name to the checkpoint directory its tab uses by default.

    Clients may pick those checkpoints and the ones in models_dir, and send texts of
    at most max_prompt_chars characters. pool holds the loaded models (a new one by default).
    infos: the tasks to show (default: every registered one; genseq.testing shows one task alone).
    The Train tab trains into models_dir from at most max_upload_mb of text, and only on a server that listens
    on this machine alone unless allow_training (training.py).
    """
    infos = discover() if infos is None else infos
    overrides = _checked_overrides(model_overrides or {}, infos)
    access = ServerAccess(list(overrides.values()), models_dir, max_prompt_chars)
    pool = pool or TaskPool()
    with gr.Blocks(title="genseq", analytics_enabled=False) as app:
        gr.Markdown(HEADER)
        _report_unusable(infos)
        boxes, job = [], None
        training = Training(infos, pool, access, max_upload_mb, allow_training)
        with gr.Tabs(overflow_behavior="wrap"):  # on a phone every tab is one tap away, none behind a menu
            for position, info in enumerate(tab_order(infos)):
                if position and tab_title(info) > TRAIN_TAB and job is None:  # the Train tab in its place by name
                    job = _training_tab(training)
                with gr.Tab(tab_title(info), id=info.name, elem_id=f"{info.name}-tab"):
                    boxes.append(build_tab(info, pool, overrides.get(info.name), concurrency, access))
            if job is None:
                job = _training_tab(training)
        for model, list_models in filter(None, boxes):  # each page lists the models there are when it opens
            app.load(list_models, None, model, queue=False, api_visibility="private")
        connect_training(app, training, job, list(filter(None, boxes)))  # a reload finds a running job
    app.training = training  # launch tells it where the server listens
    app.openai_api = OpenAIServer(infos, pool, access, overrides, concurrency, QUEUE_SIZE)  # launch serves it at /v1
    return app.queue(max_size=QUEUE_SIZE, default_concurrency_limit=concurrency)


def _training_tab(training: Training) -> gr.JSON:
    with gr.Tab(TRAIN_TAB, id="train", elem_id="train-tab", visible=bool(training.tasks)):
        return build_training_tab(training)


def tab_order(infos: list[TaskInfo], first: str = DEFAULT_TASK) -> list[TaskInfo]:
    """The usable tasks, the one `genseq generate` runs by default first (the page opens on it: what genseq does
    before anything else), then the others by name."""
    usable = sorted((info for info in infos if info.ok), key=lambda info: info.name)
    return sorted(usable, key=lambda info: info.name != first)


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


def launch(app: gr.Blocks, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, api_key: str | None = None,
           api_only: bool = False, **options):
    """Serve app on host:port (loopback unless told otherwise) with the OpenAI-compatible API at /v1, which
    requires api_key when given (openai_api/); api_only serves the API alone. options go to Blocks.launch."""
    if api_only:
        return serve_api(app.openai_api, host, port, api_key)
    app.training.listen_on(is_loopback(host))
    return app.launch(server_name=host, server_port=port, share=False, ssr_mode=False,
                      max_file_size=max(MAX_UPLOAD, app.training.max_bytes),
                      footer_links=["api", "settings"], theme=THEME, css=CSS, js=SCRIPT,
                      app_kwargs={"routes": api_routes(app.openai_api, api_key)}, **options)
