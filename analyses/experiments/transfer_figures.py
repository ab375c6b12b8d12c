"""The transfer experiment's figures: accuracy and gap closed, the location split, the wave and
the training loss curves (PNG and PDF)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

__all__ = ["figures"]


def _errorbar(ax, x, ds, var, sel, label, style):
    mean = ds[f"{var}_mean"].sel(sel).values
    lo = ds[f"{var}_ci_low"].sel(sel).values
    hi = ds[f"{var}_ci_high"].sel(sel).values
    err = np.where(np.isfinite(lo), np.vstack([mean - lo, hi - mean]), 0.0)
    ax.errorbar(x, mean, yerr=err, label=label, capsize=2, markersize=4, **style)


def _chance(ax):
    from analyses.figures import chance_line

    chance_line(ax, 0.1)


def _legend(ax, n_seeds: int, what: str = "95 % CI (t, clipped to [0, 1])") -> None:
    """One legend for the figure, below the panels, titled with what the error bars show."""
    from analyses.figures import errorbar_note, legend_outside

    legend_outside(ax, note=errorbar_note(n_seeds, what=what), below=True, ncol=4)


def _accuracy(ds: xr.Dataset, out_dir: Path) -> list[Path]:
    from analyses.figures import cycle_styles, new_figure, save_figure

    retinas = [str(r) for r in ds["retina"].values]
    models = [str(m) for m in ds["model"].values]
    n = ds["n_train"].values
    n_seeds = ds.sizes["seed"]
    fig, axes = new_figure(1, len(retinas) + 1, width_in=3.0 * (len(retinas) + 1), height_in=3.0)
    styles = list(cycle_styles(len(models)))
    for ax, rk in zip(axes[0], retinas, strict=False):
        for m, style in zip(models, styles, strict=True):
            _errorbar(ax, n, ds, "accuracy", dict(model=m, retina=rk), m, style)
        _chance(ax)
        ax.set_xscale("log")
        ax.set_xticks(n, [str(int(v)) for v in n])
        ax.minorticks_off()
        ax.set_xlabel("training images")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0.0, 1.0)
        ax.set_title(f"{rk} retina")
    ax = axes[0][-1]
    for control, style in zip(ds["control"].values, cycle_styles(2), strict=True):
        for rk, ls, mk in zip(retinas, ("-", "--"), ("o", "^"), strict=False):
            v = ds["gap_closed"].sel(control=control, retina=rk).values
            if not np.any(np.isfinite(v)):
                continue
            lo = ds["gap_closed_ci_low"].sel(control=control, retina=rk).values
            hi = ds["gap_closed_ci_high"].sel(control=control, retina=rk).values
            err = np.where(np.isfinite(lo), np.vstack([v - lo, hi - v]), 0.0)
            ax.errorbar(
                n,
                v,
                yerr=err,
                capsize=2,
                markersize=4,
                label=f"vs {control}, {rk}",
                **{**style, "linestyle": ls, "marker": mk, "markerfacecolor": "white"},
            )
    if not np.any(np.isfinite(ds["gap_closed"].values)):
        ax.text(
            0.5,
            0.5,
            "not available\n(a model not run, or no\nsignificant cnn - control gap)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.axhline(0.0, color="0.5", linewidth=0.7, label="0: no better than the control")
    ax.axhline(1.0, color="0.5", linewidth=0.7, linestyle="--", label="1: as good as the cnn")
    ax.set_xscale("log")
    ax.set_xlim(float(n.min()) / 1.5, float(n.max()) * 1.5)
    ax.set_xticks(n, [str(int(v)) for v in n])
    ax.minorticks_off()
    ax.set_xlabel("training images")
    ax.set_ylabel("gap closed")
    ax.set_title("(codistill - control) / (cnn - control)")
    _legend(axes[0][0], n_seeds)
    ax.legend(
        frameon=False,
        fontsize=6,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        title="gap: 95 % paired\nbootstrap CI",
        title_fontsize=6,
    )
    return save_figure(fig, out_dir, "transfer_accuracy")


def _location(ds: xr.Dataset, out_dir: Path) -> list[Path]:
    from analyses.figures import new_figure, save_figure

    retinas = [str(r) for r in ds["retina"].values]
    models = [str(m) for m in ds["model"].values]
    fig, axes = new_figure(1, len(retinas), width_in=3.4 * len(retinas), height_in=3.0)
    x = np.arange(len(models))
    for ax, rk in zip(axes[0], retinas, strict=True):
        for j, (var, hatch, label, color) in enumerate(
            (
                ("accuracy_train_region", "", "training region", "0.8"),
                ("accuracy_heldout_location", "///", "held-out region", "0.45"),
            )
        ):
            mean = ds[f"{var}_mean"].sel(retina=rk).values
            lo = ds[f"{var}_ci_low"].sel(retina=rk).values
            hi = ds[f"{var}_ci_high"].sel(retina=rk).values
            err = np.where(np.isfinite(lo), np.vstack([mean - lo, hi - mean]), 0.0)
            ax.bar(
                x + (j - 0.5) * 0.4,
                mean,
                0.4,
                yerr=err,
                color=color,
                edgecolor="0.0",
                hatch=hatch,
                label=label,
                capsize=2,
            )
        _chance(ax)
        ax.set_xticks(x, models, rotation=30, ha="right")
        ax.set_ylim(0.0, 1.0)
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{rk} retina: {ds.attrs.get('heldout_regions', '')}", fontsize=7)
    _legend(axes[0][0], ds.sizes["seed"])
    return save_figure(fig, out_dir, "transfer_location")


def _wave(ds: xr.Dataset, out_dir: Path) -> list[Path]:
    from analyses.figures import cycle_styles, new_figure, save_figure

    retinas = [str(r) for r in ds["retina"].values]
    models = [str(m) for m in ds["model"].values]
    marks = ds["checkpoint"].values
    fig, axes = new_figure(
        len(retinas), len(marks), width_in=2.6 * len(marks), height_in=2.4 * len(retinas)
    )
    offs = ds["offset_px"].values
    styles = list(cycle_styles(len(models)))
    for i, rk in enumerate(retinas):
        for j, step in enumerate(marks):
            ax = axes[i][j]
            for m, style in zip(models, styles, strict=True):
                v = ds["accuracy_by_offset"].sel(model=m, retina=rk, checkpoint=step)
                ci = _ci(v)
                err = np.where(np.isfinite(ci[1]), np.vstack([ci[0] - ci[1], ci[2] - ci[0]]), 0)
                ax.errorbar(offs, ci[0], yerr=err, label=m, capsize=2, markersize=3, **style)
            _chance(ax)
            trained = str(ds.attrs.get("train_offsets_px", ""))
            if "-" in trained:
                lo, hi = (float(v) for v in trained.split("-"))
                ax.axvspan(lo - 0.5, hi + 0.5, color="0.9", zorder=0, label="offsets trained on")
            ax.set_ylim(0.0, 1.0)
            ax.set_xticks(offs)
            ax.set_xlabel("digit offset (px, left edge)")
            ax.set_ylabel("accuracy")
            ax.set_title(f"{rk}, after {int(step)} steps", fontsize=7)
    fig.suptitle("how far knowledge travels from the trained (left) region", fontsize=8)
    _legend(axes[0][0], ds.sizes["seed"])
    return save_figure(fig, out_dir, "transfer_wave")


def _ci(v: xr.DataArray):
    from analyses.intervals import ACCURACY_BOUNDS, confidence_interval

    ci = confidence_interval(v, axis="seed", bounds=ACCURACY_BOUNDS)
    return np.asarray(ci.mean), np.asarray(ci.low), np.asarray(ci.high)


def _curves(ds: xr.Dataset, out_dir: Path) -> list[Path]:
    from analyses.figures import cycle_styles, new_figure, save_figure

    retinas = [str(r) for r in ds["retina"].values]
    models = [str(m) for m in ds["model"].values]
    n_max = ds["n_train"].values.max()
    fig, axes = new_figure(1, len(retinas), width_in=3.2 * len(retinas), height_in=2.8)
    steps = ds["curve_step"].values
    for ax, rk in zip(axes[0], retinas, strict=True):
        for m, style in zip(models, cycle_styles(len(models)), strict=True):
            c = ds["loss_curve"].sel(model=m, retina=rk, n_train=n_max)
            ax.plot(steps, c.mean("seed").values, label=m, markersize=0, **style)
        ax.axvspan(0.8 * steps.max(), steps.max(), color="0.92", label="last 20 % (convergence)")
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("training loss (nats, mean over seeds)")
        ax.set_title(f"{rk} retina, n_train = {int(n_max)}", fontsize=7)
    from analyses.figures import legend_outside

    legend_outside(axes[0][0], below=True, ncol=4)
    return save_figure(fig, out_dir, "transfer_loss")


def figures(ds: xr.Dataset, out_dir) -> list[Path]:
    """``transfer_accuracy`` (accuracy vs training-set size per retina, and the gap closed vs
    both controls), ``transfer_location`` (held-out and training region), ``transfer_wave``
    (accuracy by digit offset over training), ``transfer_loss`` (training loss curves)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = _accuracy(ds, out_dir) + _curves(ds, out_dir)
    if "accuracy_heldout_location_mean" in ds:
        paths += _location(ds, out_dir) + _wave(ds, out_dir)
    return paths
