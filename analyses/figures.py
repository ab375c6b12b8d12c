"""Shared figure style and saving for publication figures.

Each experiment module draws its own figures with these helpers, so all figures share one
look: legible in grayscale (line styles and markers differ, not only colours), sized for a
journal column, saved atomically as PNG and PDF.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window
import matplotlib.pyplot as plt  # noqa: E402

from neurosim.atomic import atomic_path  # noqa: E402

__all__ = ["STYLE", "LINESTYLES", "MARKERS", "cycle_styles", "new_figure", "save_figure"]

STYLE = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 150,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "image.cmap": "gray",
}

#: grayscale-distinguishable styles, used in this order for the lines of one panel
LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1))]
MARKERS = ["o", "s", "^", "D", "v", "x"]
GRAYS = ["0.0", "0.35", "0.55", "0.7", "0.2", "0.45"]


def cycle_styles(n: int) -> Iterator[dict]:
    """``n`` keyword dicts (color, linestyle, marker) distinguishable in grayscale."""
    for i in range(n):
        yield {
            "color": GRAYS[i % len(GRAYS)],
            "linestyle": LINESTYLES[i % len(LINESTYLES)],
            "marker": MARKERS[i % len(MARKERS)],
        }


def new_figure(nrows: int = 1, ncols: int = 1, *, width_in: float = 7.0, height_in: float = 3.0):
    """A figure and its axes array (always 2-d) with the package style applied."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(width_in, height_in), squeeze=False, constrained_layout=True
        )
    return fig, axes


def save_figure(fig, out_dir: str | Path, stem: str, *, formats=("png", "pdf")) -> list[Path]:
    """Save ``fig`` as ``out_dir/stem.{png,pdf}`` atomically, close it, return the paths."""
    out_dir = Path(out_dir)
    paths = []
    with plt.rc_context(STYLE):
        for fmt in formats:
            path = out_dir / f"{stem}.{fmt}"
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt)
            paths.append(path)
    plt.close(fig)
    return paths
