"""genseq's Gradio web app: one tab per registered task, built from each task's declaration (see app.py)."""
