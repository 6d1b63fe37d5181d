"""Development entry point: `gradio apps/app.py` serves the app and reloads it on every edit under apps/.

The app itself is the installed package genseq_web (`genseq serve` runs it); this
file only builds it for Gradio's reload mode, which looks for `demo`.
"""

import gradio as gr

from genseq_web import build_app, launch
from genseq_web.pool import TaskPool

if gr.NO_RELOAD:  # a reload re-runs this file but skips this block, so loaded models survive an edit
    pool = TaskPool()

demo = build_app(pool=pool)

if __name__ == "__main__":
    launch(demo)
