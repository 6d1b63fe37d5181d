"""Pictures as PNG bytes: matplotlib without a display, the one way every module that draws gets pyplot.

A picture is read where it is shown, often a column about 650 px wide: readable()
sets font sizes that stay legible there, and a top margin (BADGE_MARGIN) keeps
text clear of the label a viewer lays over a picture's top-left corner.
"""

from __future__ import annotations

import io
from contextlib import contextmanager

# Points at 100 dpi; a figure 8 inches wide shown 650 px wide keeps them at 10 to 13 px on screen.
READABLE = {"font.size": 12, "axes.labelsize": 12, "axes.titlesize": 13, "xtick.labelsize": 11,
            "ytick.labelsize": 11, "legend.fontsize": 11}
BADGE_MARGIN = 0.45  # inches left empty above the plots: the web app's image label covers that corner


def pyplot():
    """matplotlib.pyplot on the Agg backend, which needs no display; imported on first use, as it takes a second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def readable():
    """pyplot with READABLE's font sizes, for drawing and saving a figure inside the block."""
    plt = pyplot()
    with plt.rc_context(READABLE):
        yield plt


def png_bytes(figure, dpi: int, top_margin: float = 0.0) -> bytes:
    """figure laid out (by its own layout engine, else tightly), with top_margin inches left empty above it, and
    saved as PNG bytes; the figure is closed, so pyplot keeps no reference to it."""
    buffer = io.BytesIO()
    rect = (0, 0, 1, 1 - top_margin / figure.get_figheight())
    try:
        if figure.get_layout_engine() is None:
            figure.tight_layout(rect=rect)
        else:
            figure.get_layout_engine().set(rect=rect)
        figure.savefig(buffer, format="png", dpi=dpi)
    finally:
        pyplot().close(figure)
    return buffer.getvalue()
