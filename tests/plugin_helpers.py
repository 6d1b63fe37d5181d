"""Build throwaway installed distributions (a module plus a .dist-info) on a sys.path folder."""

from __future__ import annotations

import textwrap
from pathlib import Path

GOOD_TASK = '''
from genseq.tasks import Input, Option, Output, Task

class Echo(Task):
    name = "{name}"
    description = "Repeat the text."
    inputs = (Input("text", "text"),)
    outputs = (Output("text", "text"),)
    options = (Option("times", 1, "how many times", minimum=1, maximum=5),)
    loads = 0

    def load(self, model_path):
        type(self).loads += 1
        return model_path or "default"

    def predict(self, model, batch, options):
        return [{{"text": " ".join([item["text"]] * options["times"])}} for item in batch]
'''


def make_distribution(root: Path, distribution: str, tasks: dict[str, str], module: str, source: str, version="1.0",
                      summary: str = "") -> None:
    """Write module.py and a dist-info registering tasks {name: "module:Class"} in genseq.tasks."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{distribution.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    summary_line = f"Summary: {summary}\n" if summary else ""
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n{summary_line}")
    lines = "".join(f"{name} = {target}\n" for name, target in tasks.items())
    (info / "entry_points.txt").write_text(f"[genseq.tasks]\n{lines}")
