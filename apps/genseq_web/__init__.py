"""genseq's web app: a Gradio app with one tab per registered task, built from the tasks' declarations.

    from genseq_web import build_app, launch
    app = build_app({"completion": "runs/tiny"}, models_dir="runs")   # nothing is served yet
    launch(app, port=7860)                                            # or `genseq serve`

Each task's main event has the task's name as API name (/completion), each declared
action TASK_ACTION (/completion_suggest); call them with gradio_client (docs/webapp.md).
"""

from .app import build_app, launch

__all__ = ["build_app", "launch"]
