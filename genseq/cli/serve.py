"""`genseq serve`: start the Gradio web app (apps/app.py), one tab per task.

The app lives in the source tree beside the package, not inside it, so this
command needs a checkout installed in place (`pip install -e .`); anything else
gets a clear error. It binds to 127.0.0.1 unless --host says otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from . import positive_int
from ..errors import ConfigError, GenseqError

APPS_DIR = Path(__file__).resolve().parents[2] / "apps"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="start the web app",
                                   description="Start the Gradio web app: one tab per registered task.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="(default 7860)")
    parser.add_argument("--model", action="append", default=[], metavar="TASK=DIR", type=task_model,
                        help="the checkpoint a task's tab uses by default, e.g. completion=runs/tiny; repeatable")
    parser.add_argument("--concurrency", type=positive_int, default=2, metavar="N",
                        help="requests running at once; the rest queue (default 2)")
    parser.set_defaults(run=run)


def task_model(text: str) -> tuple[str, str]:
    task, separator, directory = text.partition("=")
    if not (separator and task and directory):
        raise argparse.ArgumentTypeError(f"expected TASK=DIR, not {text!r}")
    return task, directory


def run(args) -> int:
    for task, directory in args.model:
        if not Path(directory).is_dir():
            raise ConfigError(f"--model {task}={directory}: {directory} is not a checkpoint directory")
    app_module = load_app_module()
    app = app_module.build_app(dict(args.model), concurrency=args.concurrency)
    try:
        app_module.launch(app, host=args.host, port=args.port)
    except OSError:  # Gradio raises it for a port in use and for an address this machine does not have
        raise GenseqError(f"cannot serve on {args.host}:{args.port}: the port is taken or the address is not this "
                          "machine's; choose another --port or --host") from None
    return 0


def load_app_module():
    """apps/app.py, imported as `apps.app` from the source tree that holds this genseq."""
    if not (APPS_DIR / "app.py").is_file():
        raise GenseqError(
            f"the web app is not installed: {APPS_DIR / 'app.py'} is missing; "
            "`genseq serve` runs from a source checkout installed with `pip install -e .`"
        )
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise GenseqError("the web app needs Gradio: pip install 'gradio>=6'") from None
    root = str(APPS_DIR.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module("apps.app")
