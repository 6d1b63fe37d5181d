"""The opinion picture: P(positive) after each token of a text, as a PNG image."""

from __future__ import annotations

import io

from genseq.figures import png_bytes, pyplot


def opinion_picture(tokens: list[tuple[str, float]], threshold: float = 0.5):
    """A PIL image of P(positive) after each (token, probability), the threshold drawn across."""
    plt = pyplot()
    from PIL import Image

    labels = [repr(text)[1:-1].strip() or "␣" for text, _ in tokens]
    values = [p for _, p in tokens]
    figure, axis = plt.subplots(figsize=(max(4.0, 0.38 * len(tokens) + 1.5), 3.0))
    colours = ["#2a9d4b" if v >= threshold else "#c8453c" for v in values]
    axis.plot(range(len(values)), values, color="#555555", linewidth=1)
    axis.scatter(range(len(values)), values, c=colours, zorder=3)
    axis.axhline(threshold, color="grey", linestyle=":", linewidth=0.8)
    axis.set_ylim(0, 1)
    axis.set_ylabel("P(positive)")
    axis.set_xticks(range(len(labels)), labels, rotation=60, fontsize=8, ha="right")
    axis.set_title("the LSTM's opinion after each token", fontsize=10)
    return Image.open(io.BytesIO(png_bytes(figure, dpi=90)))
