"""The PNG charts of the scripts that draw (compare_runs.py, keywords.py, rates.py): matplotlib with its file-only
backend, imported only when a chart is drawn; a figure as PNG bytes, to be written whole (files.atomic_write)."""

from __future__ import annotations

import io


def pyplot():  # noqa: ANN201 (matplotlib.pyplot)
    """matplotlib.pyplot with the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig, dpi: int = 80) -> bytes:  # noqa: ANN001 (a matplotlib Figure)
    """The figure as PNG bytes; the figure closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    pyplot().close(fig)
    return buffer.getvalue()
