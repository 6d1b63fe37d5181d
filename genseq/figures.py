"""Pictures as PNG bytes: matplotlib without a display, the one way every module that draws gets pyplot."""

from __future__ import annotations

import io


def pyplot():
    """matplotlib.pyplot on the Agg backend, which needs no display; imported on first use, as it takes a second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(figure, dpi: int) -> bytes:
    """figure laid out and saved as PNG bytes; the figure is closed, so pyplot keeps no reference to it."""
    buffer = io.BytesIO()
    try:
        figure.tight_layout()
        figure.savefig(buffer, format="png", dpi=dpi)
    finally:
        pyplot().close(figure)
    return buffer.getvalue()
