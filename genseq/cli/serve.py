"""`genseq serve`: start the Gradio web app (the installed package genseq_web), one tab per task, with its
OpenAI-compatible API at /v1 (or the API alone with --api-only).

It binds to 127.0.0.1 unless --host says otherwise, and listens beyond this
machine only with an API key (--api-key or GENSEQ_API_KEY); an installation
without the app or without Gradio gets one sentence saying what to install.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..commands import positive_float, positive_int, shown, whole_number
from ..errors import ConfigError, GenseqError
from ..jobs import is_loopback

API_KEY_VARIABLE = "GENSEQ_API_KEY"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="start the web app and its OpenAI-compatible API",
                                   description="Start the Gradio web app: one tab per registered task, with an "
                                               "OpenAI-compatible API at /v1 (docs/api.md).")
    parser.add_argument("--host", type=host, default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=port, default=7860, help="1 to 65535 (default 7860)")
    parser.add_argument("--model", action="append", default=[], metavar="TASK=DIR", type=task_model,
                        help="the checkpoint a task's tab uses by default, e.g. completion=runs/tiny; repeatable")
    parser.add_argument("--concurrency", type=positive_int, default=2, metavar="N",
                        help="requests running at once; the rest queue (default 2)")
    parser.add_argument("--models-dir", metavar="DIR",
                        help="the checkpoints in DIR may be picked in a tab's model box, beside the --model ones; "
                             "no other directory can be (default runs)")
    parser.add_argument("--max-prompt-chars", type=positive_int, metavar="N",
                        help="the longest text, in characters, a request may send (default 20000)")
    parser.add_argument("--api-key", metavar="KEY",
                        help=f"the key OpenAI API clients must send (Authorization: Bearer KEY); default: the "
                             f"{API_KEY_VARIABLE} environment variable; required with a --host beyond this machine")
    parser.add_argument("--api-only", action="store_true",
                        help="serve only the OpenAI-compatible API (/v1/models, /v1/completions, /v1/chat/completions)")
    parser.add_argument("--allow-training", action="store_true",
                        help="keep the Train tab on with a --host beyond this machine (it is off there by default: "
                             "anyone who reaches the page could keep the server's CPU busy training)")
    parser.add_argument("--max-upload-mb", type=positive_float, metavar="N",
                        help="the most text, in MB, the Train tab takes for one job (default 20)")
    parser.set_defaults(run=run)


def port(text: str) -> int:
    return whole_number(text, 1, 65535)


def host(text: str) -> str:
    """A host name or address: not empty, no spaces or control characters (the resolver decides the rest)."""
    refusal = argparse.ArgumentTypeError(f"expected a host name or address such as 127.0.0.1 or 0.0.0.0, not {shown(text)}")
    if not text or not text.isprintable() or " " in text or len(text) > 253:
        raise refusal
    try:
        text.encode("idna")  # what the resolver will do with a name; one it cannot encode fails deep in the server
    except UnicodeError:
        raise refusal from None
    return text


def task_model(text: str) -> tuple[str, str]:
    task, separator, directory = text.partition("=")
    if not (separator and task and directory):
        raise argparse.ArgumentTypeError(f"expected TASK=DIR, not {text!r}")
    return task, directory


def run(args) -> int:
    for task, directory in args.model:
        if not is_directory(directory):
            raise ConfigError(f"--model {task}={directory}: {directory} is not a checkpoint directory")
    if args.models_dir is not None and not is_directory(args.models_dir):
        raise ConfigError(f"--models-dir {args.models_dir} is not a directory")
    app_module = load_app_module()
    # Left out, they take the app's defaults (genseq_web/access.py, training.py), which the help text repeats.
    limits = {name: value for name, value in (("models_dir", args.models_dir), ("max_prompt_chars", args.max_prompt_chars),
                                              ("max_upload_mb", args.max_upload_mb),
                                              ("allow_training", args.allow_training or None)) if value is not None}
    api = api_settings(args)
    app = app_module.build_app(dict(args.model), concurrency=args.concurrency, **limits)
    try:
        app_module.launch(app, host=args.host, port=args.port, **api)
    except OSError:  # Gradio raises it for a port in use and for an address this machine does not have
        raise GenseqError(f"cannot serve on {args.host}:{args.port}: the port is taken or the address is not this "
                          "machine's; choose another --port or --host") from None
    return 0


def api_settings(args) -> dict:
    """launch()'s API keywords: the key (from --api-key or the environment) and api_only, each only when set.

    Without a key the API answers anyone who can reach it, so the server then listens on this machine only."""
    key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_VARIABLE)
    if key is not None and not key.strip():
        source = "--api-key" if args.api_key is not None else API_KEY_VARIABLE
        raise ConfigError(f"{source} is empty; give a key clients must send, or leave it out to serve this machine only")
    if key is None and not is_loopback(args.host):
        raise ConfigError(f"--host {args.host} listens beyond this machine, which needs an API key: pass --api-key KEY "
                          f"or set {API_KEY_VARIABLE}")
    settings = {"api_key": key.strip()} if key is not None else {}  # clients send it without surrounding spaces
    return {**settings, "api_only": True} if args.api_only else settings


def is_directory(path: str) -> bool:
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):  # a name too long or with a NUL byte names no directory either
        return False


def load_app_module():
    """The web app package, genseq_web, installed with genseq; imported only here, as it imports Gradio."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise GenseqError("the web app needs Gradio: pip install 'gradio>=6'") from None
    try:
        import genseq_web
    except ImportError as error:
        if error.name != "genseq_web":  # the app is there but something it imports is not: say what
            raise
        raise GenseqError("the web app is not installed: this genseq has no genseq_web package; "
                          "reinstall genseq (pip install genseq)") from None
    return genseq_web
