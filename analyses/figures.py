"""Shared figure style and saving for publication figures.

Each experiment module draws its own figures with these helpers, so all figures share one
look, sized for a journal column and saved atomically as PNG and PDF:

* :func:`cycle_styles` gives the lines of a panel colours from the colour-blind-safe palette of
  Okabe & Ito (2008) *and* distinct line styles and markers (alternately filled and open), so
  that they stay apart for colour-blind readers and in greyscale;
* :func:`chance_line` draws a labelled chance level, :func:`errorbar_note` says what the error
  bars are ("error bars: 95 % CI over 3 seeds"), and :func:`legend_outside` puts the legend
  (with that note as its title) beside or below the axes, never over the data.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window
import matplotlib.pyplot as plt  # noqa: E402

from neurosim.atomic import atomic_path  # noqa: E402

__all__ = [
    "STYLE",
    "COLORS",
    "LINESTYLES",
    "MARKERS",
    "CHANCE_COLOR",
    "cycle_styles",
    "chance_line",
    "errorbar_note",
    "legend_outside",
    "figure_style",
    "new_figure",
    "save_figure",
]

STYLE = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 150,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "image.cmap": "gray",
}

#: Okabe & Ito's colour-blind-safe palette (yellow left out: too light for lines on white),
#: ordered so that neighbours also differ in lightness (black, vermillion, blue, orange, ...)
COLORS = ["#000000", "#D55E00", "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9"]
#: line styles and markers in the same order: each line differs in all three
LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 2))]
MARKERS = ["o", "s", "^", "D", "v", "P", "X"]
#: chance levels and other references: grey, thin, dotted
CHANCE_COLOR = "0.45"


def cycle_styles(n: int) -> Iterator[dict]:
    """``n`` keyword dicts (color, linestyle, marker, markerfacecolor) for ``ax.plot``.

    Consecutive styles differ in colour (colour-blind safe), line style, marker shape and
    marker fill (odd ones are open), so lines stay distinguishable in greyscale too.
    """
    for i in range(n):
        color = COLORS[i % len(COLORS)]
        yield {
            "color": color,
            "linestyle": LINESTYLES[i % len(LINESTYLES)],
            "marker": MARKERS[i % len(MARKERS)],
            "markerfacecolor": color if i % 2 == 0 else "white",
        }


def chance_line(ax, value: float, *, label: str | None = None, horizontal: bool = True):
    """A labelled reference line at ``value`` (default label ``"chance (value)"``)."""
    label = f"chance ({value:g})" if label is None else label
    line = ax.axhline if horizontal else ax.axvline
    return line(value, color=CHANCE_COLOR, linewidth=0.8, linestyle=":", label=label, zorder=0)


def errorbar_note(n: int, *, what: str = "95 % CI", over: str = "seeds") -> str:
    """What the error bars show, e.g. ``"error bars: 95 % CI over 3 seeds"``."""
    unit = over[:-1] if n == 1 and over.endswith("s") else over
    return f"error bars: {what} over {n} {unit}"


def legend_outside(ax, *, note: str | None = None, below: bool = False, handles=None, **kwargs):
    """The legend of ``ax``, outside the axes (right of the figure, or below it), never over data.

    It is a figure legend placed by the layout engine (``"outside right upper"`` or
    ``"outside lower center"``), so the axes shrink to make room. ``note`` (e.g.
    :func:`errorbar_note`) becomes its title; ``handles`` overrides the axes' own (for twin
    axes). Extra keyword arguments go to ``Figure.legend``.
    """
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    else:
        labels = [h.get_label() for h in handles]
    where = (
        {"loc": "outside lower center", "ncol": min(len(handles), 3)}
        if below
        else {"loc": "outside right upper"}
    )
    sizes = {"fontsize": STYLE["legend.fontsize"], "title_fontsize": STYLE["legend.title_fontsize"]}
    options = {"frameon": False, "title": note, **sizes, **where, **kwargs}
    legend = ax.figure.legend(handles, labels, **options)
    if note:
        legend.get_title().set_ha("left")
    return legend


def figure_style():
    """A context in which to draw a figure, so titles, labels and texts get the package sizes.

    (Axes made by :func:`new_figure` get the style's tick sizes anywhere, but ``set_title``,
    ``set_xlabel``, ``text`` and ``legend`` read the sizes when they are called.)::

        with figure_style():
            fig, axes = new_figure(1, 2)
            ...
        save_figure(fig, out_dir, "name")
    """
    return plt.rc_context(STYLE)


def new_figure(nrows: int = 1, ncols: int = 1, *, width_in: float = 7.0, height_in: float = 3.0):
    """A figure and its axes array (always 2-d) with the package style applied."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(width_in, height_in), squeeze=False, constrained_layout=True
        )
    return fig, axes


def save_figure(fig, out_dir: str | Path, stem: str, *, formats=("png", "pdf")) -> list[Path]:
    """Save ``fig`` as ``out_dir/stem.{png,pdf}`` atomically, close it, return the paths.

    A file is written to a temporary name and renamed when complete, and the figure is closed
    whatever happens: an interrupt (Ctrl-C, or SIGTERM under ``neurosim run``) while saving
    leaves neither a temporary nor a half-written file.
    """
    out_dir = Path(out_dir)
    paths = []
    try:
        with plt.rc_context(STYLE):
            for fmt in formats:
                path = out_dir / f"{stem}.{fmt}"
                with atomic_path(path) as tmp:
                    fig.savefig(tmp, format=fmt)
                paths.append(path)
    finally:
        plt.close(fig)
    return paths
