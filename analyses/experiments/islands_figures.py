"""Figures of the islands experiment (:mod:`analyses.experiments.islands`).

``islands_embeddings``: the example two-digit canvas and, per model, retina and level, the
settled embeddings as colours (their first three principal components, :func:`pca_rgb`) at the
columns' places. ``islands_ari``: per retina and level, the ARI (top) and the distance-matched
cosine gap (bottom) of the settled embeddings, a bar per model (mean over seeds, 95 % t CI
clipped to the measure's range), with the place-only references and chance labelled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

__all__ = ["figures", "pca_rgb"]


def pca_rgb(embeddings: np.ndarray) -> np.ndarray:
    """``[C, D]`` embeddings -> ``[C, 3]`` colours in [0, 1]: their first 3 principal components.

    Centred, projected on the top right singular vectors (``numpy.linalg.svd``); each component
    is scaled to [0, 1] by its own min and max (a constant component becomes 0.5). With fewer
    than 3 dimensions the missing channels are 0.5.
    """
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"embeddings must be [C, D]; got shape {e.shape}")
    e = e - e.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(e, full_matrices=False)
    proj = e @ vt[:3].T
    out = np.full((e.shape[0], 3), 0.5)
    lo, hi = proj.min(axis=0), proj.max(axis=0)
    span = hi - lo
    ok = span > 1e-12
    out[:, : proj.shape[1]] = np.where(ok, (proj - lo) / np.where(ok, span, 1.0), 0.5)
    return out


def figures(ds: xr.Dataset, out_dir: str | Path) -> list[Path]:
    """Write ``islands_embeddings`` and ``islands_ari`` (PNG and PDF); return their paths."""
    import matplotlib.pyplot as plt

    from analyses.figures import STYLE

    with plt.rc_context(STYLE):  # the package style for every text drawn, not only the axes
        return _embeddings_figure(ds, out_dir) + _ari_figure(ds, out_dir)


def _embeddings_figure(ds: xr.Dataset, out_dir) -> list[Path]:
    from analyses.figures import new_figure, save_figure

    models = ds["model"].values.tolist()
    retinas = ds["retina"].values.tolist()
    levels = ds["level"].values.tolist()
    image = ds["example_image"].values
    h, w = image.shape
    extent = (-0.5, w - 0.5, h - 0.5, -0.5)
    n_rows = len(models) * len(retinas)
    fig, axes = new_figure(
        n_rows, 1 + len(levels), width_in=1.6 * (1 + len(levels)), height_in=1.6 * n_rows
    )
    for ri, r in enumerate(retinas):
        rows = ds["row_px"].sel(retina=r).values
        cols = ds["col_px"].sel(retina=r).values
        lab = ds["example_label"].sel(retina=r).values
        for mi, m in enumerate(models):
            row_axes = axes[ri * len(models) + mi]
            ax = row_axes[0]
            ax.imshow(image, cmap="gray_r", vmin=0, vmax=1, extent=extent)
            for k, marker in ((0, "."), (1, "o"), (2, "s")):
                sel = lab == k
                ax.scatter(
                    cols[sel],
                    rows[sel],
                    s=6 if k == 0 else 10,
                    marker=marker,
                    facecolors="none" if k else "0.5",
                    edgecolors="0.3" if k else "none",
                    linewidths=0.6,
                )
            ax.set_ylabel(f"{m}\n{r}", fontsize=7)
            if ri == 0 and mi == 0:
                ax.set_title("canvas (o digit 1, s digit 2)", fontsize=7)
            for lv in levels:
                ax = row_axes[1 + lv]
                emb = ds["example_embedding"].sel(model=m, retina=r, level=lv).values
                ax.imshow(image, cmap="gray_r", vmin=0, vmax=4, extent=extent)
                if np.all(np.isfinite(emb)):
                    ax.scatter(cols, rows, c=pca_rgb(emb), s=28, edgecolors="0.2", linewidths=0.3)
                ari = float(ds["ari"].sel(model=m, retina=r, level=lv, dynamics="settled").mean())
                ax.set_title(f"level {lv} (ARI {ari:.2f}, seed mean)", fontsize=7)
            for ax in row_axes:
                ax.set_xlim(-0.5, w - 0.5)
                ax.set_ylim(h - 0.5, -0.5)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_aspect("equal")
    fig.suptitle("settled embeddings of one test canvas (first seed) as PCA colours", fontsize=8)
    return save_figure(fig, out_dir, "islands_embeddings")


def _ari_figure(ds: xr.Dataset, out_dir) -> list[Path]:
    from analyses.experiments.islands import BOUNDS
    from analyses.figures import new_figure, save_figure
    from analyses.interval_bars import error_bar_text, model_bars, set_ticks

    models = ds["model"].values.tolist()
    retinas = ds["retina"].values.tolist()
    levels = ds["level"].values.tolist()
    n_seeds = ds.sizes["seed"]
    fig, axes = new_figure(2, len(retinas), width_in=3.4 * len(retinas), height_in=5.2)
    panels = (
        ("ari", "adjusted Rand index (settled)"),
        ("cos_gap_matched", "cosine gap at matched distance"),
    )
    for ri, r in enumerate(retinas):
        for row, (var, ylabel) in enumerate(panels):
            ax = axes[row, ri]
            sel = dict(retina=r, dynamics="settled")
            vals = {m: ds[var].sel(model=m, **sel).transpose("level", "seed") for m in models}
            model_bars(ax, vals, bounds=BOUNDS[var])
            if var == "ari":
                _ari_markers(ax, ds, models, sel)
                for ref, style, text in (
                    ("ari_position_only", "--", "positions alone (k=3)"),
                    ("ari_objects_position_only", ":", "positions alone, digit columns (k=2)"),
                ):
                    ax.axhline(
                        float(ds[ref].sel(retina=r).mean()),
                        color="0.3",
                        linestyle=style,
                        linewidth=0.8,
                        label=f"{text}, seed mean",
                    )
            chance = "chance (ARI 0)" if var == "ari" else "no preference for objects (0)"
            ax.axhline(0.0, color="0.0", linewidth=0.6, label=chance)
            set_ticks(ax, [f"level {lv}" for lv in levels])
            ax.set_ylabel(ylabel)
            if row == 0:
                ax.set_title(f"{r} retina", fontsize=8)
    handles, labels = _unique_legend(axes, models)
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=6, frameon=False)
    fig.suptitle(
        f"{error_bar_text(n_seeds, BOUNDS['ari'])} (ARI), [-2, 2] (gap); "
        "markers: seed means without bars",
        fontsize=7,
    )
    return save_figure(fig, out_dir, "islands_ari")


def _ari_markers(ax, ds: xr.Dataset, models: list[str], sel: dict) -> None:
    """The other two ARIs (not normalised; digit columns only) as markers on the bars."""
    width = 0.8 / max(len(models), 1)
    for mi, m in enumerate(models):
        x = np.arange(ds.sizes["level"]) + (mi - (len(models) - 1) / 2) * width
        for extra, marker, text in (
            ("ari_unnormalized", "o", "ARI not normalised (k=3)"),
            ("ari_objects", "v", "ARI of the digit columns (k=2)"),
        ):
            more = ds[extra].sel(model=m, **sel).mean("seed")
            ax.plot(
                x,
                more.values,
                linestyle="none",
                marker=marker,
                markerfacecolor="none" if marker == "o" else "0.0",
                color="0.0",
                markersize=3,
                label=text if mi == 0 else None,
            )


def _unique_legend(axes, first: list[str]) -> tuple[list, list]:
    """Handles and labels of every panel, each label once: ``first`` (the models), then the
    others in order of appearance."""
    seen: dict[str, object] = {}
    for ax in np.ravel(axes):
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    order = [k for k in first if k in seen] + [k for k in seen if k not in first]
    return [seen[k] for k in order], order
