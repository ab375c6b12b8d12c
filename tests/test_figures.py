"""analyses.figures: distinguishable line styles, labelled references, legends off the data."""

from __future__ import annotations

import itertools

import matplotlib.colors as mcolors
import numpy as np
import pytest

from analyses import figures as F

OKABE_ITO = {"#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"}


def grey(color) -> float:
    """The grey level a colour prints as (ITU-R 601 luma, as PIL's convert('L'))."""
    r, g, b = mcolors.to_rgb(color)
    return 0.299 * r + 0.587 * g + 0.114 * b


def test_styles_differ_in_colour_line_and_marker_and_stay_apart_in_greyscale():
    styles = list(F.cycle_styles(7))
    assert {s["color"] for s in styles} <= OKABE_ITO and len({s["color"] for s in styles}) == 7
    for a, b in itertools.combinations(styles, 2):
        assert a["color"] != b["color"]
        assert a["linestyle"] != b["linestyle"]
        assert a["marker"] != b["marker"]
    for a, b in itertools.pairwise(styles):  # neighbours: filled vs open markers too
        assert (a["markerfacecolor"] == "white") != (b["markerfacecolor"] == "white")
    # transfer's default models: cnn, shared-columns, lc-backprop, codistill; the two
    # unshared models were greys 0.55 and 0.7 before
    lc_backprop, codistill = styles[2], styles[3]
    assert abs(grey(lc_backprop["color"]) - grey(codistill["color"])) > 0.25


def test_chance_line_error_bar_note_and_a_legend_outside_the_axes():
    fig, axes = F.new_figure(1, 1, width_in=4.0, height_in=3.0)
    ax = axes[0, 0]
    x = np.arange(5)
    ax.errorbar(x, 0.5 + 0.1 * x, yerr=0.05, label="codistill", **next(F.cycle_styles(1)))
    line = F.chance_line(ax, 0.1)
    assert line.get_label() == "chance (0.1)" and line.get_linestyle() == ":"
    assert F.chance_line(ax, 3.0, label="prior rule", horizontal=False).get_label() == "prior rule"
    assert F.errorbar_note(3) == "error bars: 95 % CI over 3 seeds"
    assert F.errorbar_note(1, what="range", over="runs") == "error bars: range over 1 run"
    legend = F.legend_outside(ax, note=F.errorbar_note(3))
    assert legend.get_title().get_text() == "error bars: 95 % CI over 3 seeds"
    assert [t.get_text() for t in legend.get_texts()] == ["chance (0.1)", "prior rule", "codistill"]
    fig.canvas.draw()
    box, axes_box = legend.get_window_extent(), ax.get_window_extent()
    assert box.x0 >= axes_box.x1  # beside the axes, not over the data
    below = F.legend_outside(ax, below=True)
    fig.canvas.draw()
    assert below.get_window_extent().y1 <= ax.get_window_extent().y0
    assert F.save_figure(fig, "/nonexistent-never-written", "x", formats=()) == []


def test_save_figure_leaves_nothing_when_interrupted_and_closes_the_figure(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    fig, _ = F.new_figure()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fig, "savefig", interrupted)
    with pytest.raises(KeyboardInterrupt):
        F.save_figure(fig, tmp_path, "fig")
    assert list(tmp_path.iterdir()) == []
    assert not plt.fignum_exists(fig.number)
