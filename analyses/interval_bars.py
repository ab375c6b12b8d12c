"""Bar charts of means over seeds with labelled confidence-interval error bars.

The islands and column-similarity figures draw the same thing: for every tick (a level, an
output, a layer) one bar per model, the mean over seeds, with the 95 % interval of
:func:`analyses.metrics.confidence_interval` clipped to the measure's range as error bar.
:func:`model_bars` draws one panel; :func:`error_bar_text` says what the bars are, for a title
or a caption. Grayscale-legible (hatches and grays), as :mod:`analyses.figures`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["HATCHES", "GRAYS", "model_bars", "error_bar_text", "set_ticks"]

#: bar hatches and fills, one per model in order
HATCHES = ["", "//", "xx", "..", "\\\\", "oo"]
GRAYS = ["0.9", "0.6", "0.35", "0.15", "0.75", "0.5"]


def error_bar_text(n_seeds: int, bounds: tuple[float, float] | None = None) -> str:
    """``"bars: mean over 2 seeds; error bars: 95 % t CI over 2 seeds, clipped to [0, 1]"``
    (``"... no error bars (1 seed)"`` for one seed)."""
    from analyses.metrics import interval_description

    seeds = "seed" if n_seeds == 1 else "seeds"
    if n_seeds < 2:
        return f"bars: mean over {n_seeds} {seeds}; no error bars ({n_seeds} {seeds})"
    return (
        f"bars: mean over {n_seeds} {seeds}; error bars: "
        f"{interval_description(n_seeds, bounds=bounds)}"
    )


def model_bars(
    ax,
    values: dict[str, Any],
    *,
    bounds: tuple[float, float] | None,
    seed_dim: str = "seed",
    width: float = 0.8,
) -> list:
    """One group of bars per tick, one bar per model: the mean over seeds and its interval.

    Args:
        ax: the matplotlib Axes.
        values: ``{model label: DataArray [tick, seed]}`` (every array has the same ticks, in
            order; the models keep the dict's order).
        bounds: the measure's range, passed to :func:`analyses.metrics.confidence_interval`.
        seed_dim: name of the seed dim.
        width: total width of a group, in tick units.

    Returns:
        the bar containers, one per model (for a legend).
    """
    from analyses.metrics import confidence_interval

    bars = []
    n_models = max(len(values), 1)
    step = width / n_models
    for mi, (label, vals) in enumerate(values.items()):
        ci = confidence_interval(vals, seed_dim, bounds=bounds)
        mean = np.asarray(ci.mean, dtype=float)
        x = np.arange(mean.size) + (mi - (n_models - 1) / 2) * step
        low, high = np.asarray(ci.low, dtype=float), np.asarray(ci.high, dtype=float)
        has = np.isfinite(low) & np.isfinite(high)
        # >= 0: a mean at the bound (1.0 of tied weights, up to rounding) has a zero-length arm
        yerr = np.stack([np.where(has, mean - low, 0.0), np.where(has, high - mean, 0.0)])
        yerr = np.maximum(yerr, 0.0)
        bars.append(
            ax.bar(
                x,
                mean,
                step,
                yerr=yerr if has.any() else None,
                color=GRAYS[mi % len(GRAYS)],
                hatch=HATCHES[mi % len(HATCHES)],
                edgecolor="0.0",
                linewidth=0.5,
                capsize=2,
                error_kw={"elinewidth": 0.8},
                label=label,
            )
        )
    return bars


def set_ticks(ax, labels: Sequence[str], *, rotation: float = 0.0) -> None:
    """Tick labels at 0, 1, ... (the groups of :func:`model_bars`)."""
    ax.set_xticks(np.arange(len(labels)))
    if rotation:
        ax.set_xticklabels(labels, rotation=rotation, ha="right")
    else:
        ax.set_xticklabels(labels)
