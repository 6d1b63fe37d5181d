"""What the browser runs and how the page looks: the theme, the style sheet and the page's own scripts.

The theme raises Gradio's faint help and placeholder text to WCAG AA contrast
(4.5:1) in light and dark mode. The scripts run in the browser alone, with no
round trip to the server: Ctrl+Enter presses the open tab's Run, pictures get
their labels as text alternatives, a result that lands below the fold is
scrolled to, and a task whose text output continues its input shows the two as
one text with the continuation marked.
"""

from __future__ import annotations

import gradio as gr

# Gradio's default subdued text is neutral-400, #bbbbc2: 1.9:1 on white. neutral-600 is 7.7:1 there, and neutral-300
# on the dark mode's blocks (neutral-800) 10.1:1.
THEME = gr.themes.Default().set(
    body_text_color_subdued="*neutral_600", body_text_color_subdued_dark="*neutral_300",
    block_info_text_color="*neutral_600", block_info_text_color_dark="*neutral_300",
    input_placeholder_color="*neutral_600", input_placeholder_color_dark="*neutral_300",
)

CSS = """
.echo { white-space: pre-wrap; line-height: 1.6; padding: var(--size-2) 0; }
.echo mark { background: var(--color-accent-soft); color: inherit; border-bottom: 2px solid var(--color-accent);
             padding: 0 1px; }
.picture-output img { min-height: 240px; object-fit: contain; }
.notice { min-height: 1.5em; }
.model-card { font-size: var(--text-sm); border-left: 3px solid var(--color-accent); padding-left: var(--size-3); }
.model-card p { margin: 0; }
"""

# Ctrl+Enter (Cmd+Enter on a Mac) presses the Run button of the tab in view, wherever the focus is; every picture
# Gradio draws without a text alternative gets its component's label as one, for screen readers.
SCRIPT = """
() => {
  const name = () => document.querySelectorAll(".block img:not([alt]), .block img[alt='']").forEach((image) => {
    const label = image.closest(".block")?.querySelector("[data-testid='block-label']")?.textContent?.trim();
    if (label) image.alt = label;
  });
  new MutationObserver(name).observe(document.body, {childList: true, subtree: true});
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    const run = [...document.querySelectorAll("button[id$='-run-button']")]
      .find((button) => button.offsetParent !== null && !button.disabled);
    if (run) { event.preventDefault(); run.click(); }
  });
}
"""


def scroll_to(elem_id: str) -> str:
    """A script that brings an element into view when less than its top part shows (on a phone, the results sit
    below the inputs, the examples and the options)."""
    return f"""
() => {{
  const target = document.getElementById({elem_id!r});
  if (target && target.getBoundingClientRect().top > window.innerHeight * 0.6) {{
    target.scrollIntoView({{block: "start"}});
  }}
}}
"""


# (input, continuation) -> the HTML of the two as one text, the continuation marked; nothing before a result.
ECHO = """
(input, continuation) => {
  if (!continuation) return "";
  const escape = (text) => String(text ?? "").replace(/[&<>"']/g,
    (character) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[character]);
  return `<div class="echo">${escape(input)}<mark title="written by the model">${escape(continuation)}</mark></div>`;
}
"""
