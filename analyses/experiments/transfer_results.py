"""The transfer experiment's results: the Dataset written to ``results.nc`` and its summary.

Variables (dims in brackets; every accuracy in [0, 1], chance 0.1):

* ``accuracy [model, retina, n_train, seed]`` and its seed mean with a 95 % Student-t interval
  clipped to [0, 1]: ``accuracy_mean``, ``accuracy_ci_low``, ``accuracy_ci_high``;
* ``gap_closed [control, retina, n_train]`` = ``(codistill - control) / (cnn - control)`` of
  seed means for ``control`` in ``lc-backprop`` and ``local``, with a paired-bootstrap 95 %
  interval (``gap_closed_ci_low``, ``gap_closed_ci_high``) and, where it is NaN, the reason
  (``gap_closed_reason``: the cnn–control difference is not significant, or a model is
  missing) — :func:`analyses.intervals.gap_closed_interval`;
* training diagnostics per model: ``final_train_loss`` (mean of the last 10 % of steps),
  ``final_loss_change`` (least-squares change over the last 20 %: ~0 when converged; the
  ``convergence_tolerance`` attribute says how small counts), ``loss_curve [.., curve_step]``
  (the training loss at a few steps), ``train_seconds``;
* the location-restricted split: ``accuracy_heldout_location`` and ``accuracy_train_region
  [model, retina, seed]`` with means and intervals, and the wave
  ``accuracy_by_offset [model, retina, seed, offset_px, checkpoint]`` (digits at a fixed
  horizontal offset, scored after ``checkpoint`` training steps);
* ``n_parameters``, ``n_parameters_per_column [model, retina]``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from analyses.intervals import ACCURACY_BOUNDS, confidence_interval, gap_closed_interval

__all__ = ["results_dataset", "summary", "verdict_lines", "GAP_CONTROLS"]

#: the controls the gap closed is measured against
GAP_CONTROLS = ("lc-backprop", "local")
_ACC = {"units": "1", "valid_min": 0.0, "valid_max": 1.0}


def _array(shape, fill=np.nan):
    return np.full(shape, fill, dtype=float)


def _with_interval(ds: xr.Dataset, name: str, text: str, dims_kept: tuple[str, ...]) -> str:
    """Add ``{name}_mean``, ``_ci_low``, ``_ci_high`` (over ``seed``); returns the method."""
    ci = confidence_interval(ds[name], axis="seed", bounds=ACCURACY_BOUNDS)
    for suffix, field, what in (
        ("mean", ci.mean, "mean over seeds"),
        ("ci_low", ci.low, "95% CI low over seeds"),
        ("ci_high", ci.high, "95% CI high over seeds"),
    ):
        ds[f"{name}_{suffix}"] = field.transpose(*dims_kept)
        ds[f"{name}_{suffix}"].attrs = {**_ACC, "long_name": f"{text}, {what}"}
    return ci.method


def _gap(ds: xr.Dataset, models: list[str], var: str, dims: tuple[str, ...]) -> None:
    """``gap_closed`` variables of ``var`` (per control), with interval and reason."""
    shape = (len(GAP_CONTROLS), *(ds.sizes[d] for d in dims))
    value, low, high = _array(shape), _array(shape), _array(shape)
    reason = np.full(shape, "", dtype=object)
    method = ""
    for i, control in enumerate(GAP_CONTROLS):
        missing = [m for m in ("cnn", control, "codistill") if m not in models]
        if missing:
            reason[i] = f"not run: {', '.join(missing)}"
            continue
        acc = ds[var]
        g = gap_closed_interval(
            acc.sel(model="codistill"), acc.sel(model=control), acc.sel(model="cnn"), axis="seed"
        )
        value[i] = g.value.transpose(*dims).values
        low[i] = g.low.transpose(*dims).values
        high[i] = g.high.transpose(*dims).values
        reason[i] = g.reason.transpose(*dims).values
        method = g.method
    prefix = "gap_closed" if var == "accuracy" else f"gap_closed_{var.removeprefix('accuracy_')}"
    full_dims = ("control", *dims)
    ds[prefix] = (
        full_dims,
        value,
        {
            "units": "1",
            "long_name": "(codistill - control) / (cnn - control) of seed means",
            "method": method,
        },
    )
    ds[f"{prefix}_ci_low"] = (full_dims, low, {"units": "1", "long_name": "gap closed, CI low"})
    ds[f"{prefix}_ci_high"] = (full_dims, high, {"units": "1", "long_name": "gap closed, CI high"})
    ds[f"{prefix}_reason"] = (
        full_dims,
        reason.astype(str),
        {"units": "1", "long_name": "why the gap closed is NaN (empty where it has a value)"},
    )


def results_dataset(
    config, n_sizes: list[int], results: dict, checkpoints: list[int], held_steps: int
) -> xr.Dataset:
    """The Dataset of a run from its ``{job key: JobResult}`` (keys of
    :func:`analyses.experiments.transfer._retina_jobs`, per model kind)."""
    models, retinas, seeds = list(config.models), list(config.retinas), config.seeds
    steps = config.baseline.steps
    (acc, secs, loss, change, curves, n_par, n_col), first = _job_arrays(
        models, retinas, n_sizes, seeds, results
    )
    dims4 = ("model", "retina", "n_train", "seed")
    ds = xr.Dataset(coords=_coords(models, retinas, n_sizes, seeds, first.curve_steps))
    ds["accuracy"] = (dims4, acc, {**_ACC, "long_name": "test accuracy"})
    ci_method = _with_interval(ds, "accuracy", "test accuracy", ("model", "retina", "n_train"))
    _gap(ds, models, "accuracy", ("retina", "n_train"))
    _add_training(ds, dims4, secs, loss, change, curves, n_par, n_col)
    _add_convergence(ds, config, n_sizes)
    if config.heldout:
        _add_location_split(ds, config, results, checkpoints, held_steps)
    _verdict(ds, config)
    ds.attrs.update(_run_attrs(config, ci_method, steps))
    return ds


def _job_arrays(
    models: list[str], retinas: list[str], n_sizes: list[int], seeds, results: dict
) -> tuple[tuple[np.ndarray, ...], object]:
    """The per-job arrays ``[model, retina, n_train, seed]`` and the first result."""
    shape = (len(models), len(retinas), len(n_sizes), len(seeds))
    acc, secs, loss, change = _array(shape), _array(shape), _array(shape), _array(shape)
    first = next(iter(results.values()))
    n_curve = len(first.curve_steps)
    curves = _array((*shape, n_curve))
    n_par = _array((len(models), len(retinas)))
    n_col = _array((len(models), len(retinas)))
    for (m, kind), (r, rk), (ni, n), (si, seed) in (
        (a, b, c, d)
        for a in enumerate(models)
        for b in enumerate(retinas)
        for c in enumerate(n_sizes)
        for d in enumerate(seeds)
    ):
        res = results.get((kind, ("full", rk, n, seed)))
        if res is None:
            continue
        acc[m, r, ni, si] = res.accuracies["test"]
        secs[m, r, ni, si], loss[m, r, ni, si] = res.train_seconds, res.final_loss
        change[m, r, ni, si] = res.final_loss_change
        curves[m, r, ni, si, : len(res.loss_curve)] = res.loss_curve
        n_par[m, r], n_col[m, r] = res.n_parameters, res.n_parameters_per_column
    return (acc, secs, loss, change, curves, n_par, n_col), first


def _coords(models: list[str], retinas: list[str], n_sizes: list[int], seeds, curve_steps) -> dict:
    """The coordinates of the results Dataset."""
    return {
        "model": ("model", np.array(models, dtype=object)),
        "retina": ("retina", np.array(retinas, dtype=object)),
        "n_train": ("n_train", np.array(n_sizes, dtype=np.int64), {"units": "images"}),
        "seed": ("seed", np.array(seeds, dtype=np.int64)),
        "control": ("control", np.array(GAP_CONTROLS, dtype=object)),
        "curve_step": (
            "curve_step",
            np.array(curve_steps, dtype=np.int64),
            {"units": "steps"},
        ),
    }


def _add_training(
    ds: xr.Dataset,
    dims4: tuple[str, ...],
    secs: np.ndarray,
    loss: np.ndarray,
    change: np.ndarray,
    curves: np.ndarray,
    n_par: np.ndarray,
    n_col: np.ndarray,
) -> None:
    """Add the training diagnostics and the parameter counts."""
    ds["train_seconds"] = (
        dims4,
        secs,
        {
            "units": "s",
            "long_name": "training wall time of the model's unit (its replicas trained together)",
        },
    )
    ds["final_train_loss"] = (
        dims4,
        loss,
        {"units": "nats", "long_name": "training loss, mean of the last 10% of steps"},
    )
    ds["final_loss_change"] = (
        dims4,
        change,
        {
            "units": "nats",
            "long_name": "change of the "
            "training loss over the last 20% of steps "
            "(least-squares line)",
        },
    )
    ds["loss_curve"] = (
        (*dims4, "curve_step"),
        curves,
        {"units": "nats", "long_name": "training loss"},
    )
    ds["n_parameters"] = (
        ("model", "retina"),
        n_par,
        {"units": "1", "long_name": "trainable parameters stored"},
    )
    ds["n_parameters_per_column"] = (
        ("model", "retina"),
        n_col,
        {"units": "1", "long_name": "parameters used by each column / place"},
    )


def _add_convergence(ds: xr.Dataset, config, n_sizes: list[int]) -> None:
    """Add ``training_steps`` per ``n_train`` and the ``convergence_ratio``."""
    from analyses.experiments.transfer import job_steps

    ds["training_steps"] = (
        ("n_train",),
        np.array([job_steps(config, n) for n in n_sizes], dtype=np.int64),
        {"units": "steps", "long_name": "Adam steps of a model trained on n_train canvases"},
    )
    initial = ds["loss_curve"].isel(curve_step=0)
    decrease = initial - ds["final_train_loss"]
    ds["convergence_ratio"] = (
        np.abs(ds["final_loss_change"]) / decrease.where(decrease > 0)
    ).assign_attrs(
        units="1",
        long_name="|change of the loss over the last 20% of steps| / its whole decrease",
    )


def _add_location_split(
    ds: xr.Dataset, config, results: dict, checkpoints: list[int], held_steps: int
) -> None:
    """Add the location-restricted split, its wave and the generalisation radius."""
    _held(ds, config, results, checkpoints, held_steps)
    ds["generalisation_radius_px"] = (
        ("model", "retina"),
        _radius(ds, config),
        {
            "units": "px",
            "long_name": "distance beyond the trained digit offsets at which the seed-mean "
            "accuracy (end of training) has fallen half-way from its trained level to chance",
        },
    )


def _run_attrs(config, ci_method: str, steps: int) -> dict:
    """The global attributes of the results Dataset."""
    return {
        "title": "co-distilled unshared columns vs weight sharing, uniform vs foveated retina",
        "chance_accuracy": 0.1,
        "ci_method": ci_method,
        "confidence_level": 0.95,
        "convergence_tolerance": config.convergence_tolerance,
        "cnn_input": "retina.render(responses): the responses resampled onto the pixel grid",
        "heldout_regions": f"train {config.heldout_train_region}, test "
        f"{config.heldout_test_region}, overlap {config.heldout_overlap}",
        "train_offsets_px": _trained_offsets(config),
        "n_cells": config.n_cells,
        "n_columns": config.baseline.model.n_columns,
        "canvas_px": config.canvas_px,
        "digit_px": config.digit_px,
        "training_steps": steps,
        "max_epochs": config.max_epochs,
        "batch_size": config.baseline.batch_size,
    }


def _radius(ds: xr.Dataset, config) -> np.ndarray:
    """``[model, retina]`` the generalisation radius (see its long_name)."""
    lo, hi = (int(v) for v in _trained_offsets(config).split("-"))
    offs = ds["offset_px"].values.astype(float)
    chance = 0.1
    out = np.full((ds.sizes["model"], ds.sizes["retina"]), np.nan)
    mean = ds["accuracy_by_offset"].isel(checkpoint=-1).mean("seed")
    inside = (offs >= lo) & (offs <= hi)
    beyond = offs > hi
    if not inside.any() or not beyond.any():
        return out
    for m in range(ds.sizes["model"]):
        for r in range(ds.sizes["retina"]):
            acc = mean.isel(model=m, retina=r).values
            level = 0.5 * (np.nanmean(acc[inside]) + chance)
            x = np.concatenate([[hi], offs[beyond]])
            y = np.concatenate([[np.nanmean(acc[inside])], acc[beyond]])
            below = np.flatnonzero(y < level)
            if below.size == 0:
                out[m, r] = x[-1] - hi  # never drops: at least the widest offset measured
                continue
            j = below[0]
            frac = (y[j - 1] - level) / (y[j - 1] - y[j]) if y[j - 1] != y[j] else 0.0
            out[m, r] = x[j - 1] + frac * (x[j] - x[j - 1]) - hi
    return out


def _trained_offsets(config) -> str:
    """The horizontal offsets (px) of the training digits of the location split, "lo-hi"."""
    from analyses.canvases import Region

    region = Region.named(config.heldout_train_region, config.heldout_overlap)
    _, _, lo, hi = region.pixels(config.canvas_px, config.canvas_px)
    return f"{lo}-{hi - config.digit_px}"


def _held(ds: xr.Dataset, config, results: dict, checkpoints: list[int], steps: int) -> None:
    models, retinas, seeds = list(config.models), list(config.retinas), config.seeds
    offsets = list(config.wave_offsets_px)
    marks = sorted({*checkpoints, steps})
    held = _array((2, len(models), len(retinas), len(seeds)))
    wave = _array((len(models), len(retinas), len(seeds), len(offsets), len(marks)))
    for m, kind in enumerate(models):
        for r, rk in enumerate(retinas):
            for si, seed in enumerate(seeds):
                res = results.get((kind, ("held", rk, seed)))
                if res is None:
                    continue
                held[0, m, r, si] = res.accuracies["heldout"]
                held[1, m, r, si] = res.accuracies["in_region"]
                for ci, step in enumerate(marks):
                    scores = res.checkpoint_accuracies.get(step, {})
                    for oi, o in enumerate(offsets):
                        wave[m, r, si, oi, ci] = scores.get(f"offset_{o}", np.nan)
    ds.coords["offset_px"] = ("offset_px", np.array(offsets, dtype=np.int64), {"units": "px"})
    ds.coords["checkpoint"] = (
        "checkpoint",
        np.array(marks, dtype=np.int64),
        {"units": "training steps"},
    )
    dims3 = ("model", "retina", "seed")
    for i, (var, text) in enumerate(
        (
            ("accuracy_heldout_location", "accuracy on digits in the held-out region"),
            ("accuracy_train_region", "accuracy on new digits in the training region"),
        )
    ):
        ds[var] = (dims3, held[i], {**_ACC, "long_name": text})
        _with_interval(ds, var, text, ("model", "retina"))
    _gap(ds, models, "accuracy_heldout_location", ("retina",))
    ds["accuracy_by_offset"] = (
        (*dims3, "offset_px", "checkpoint"),
        wave,
        {
            **_ACC,
            "long_name": "accuracy on digits whose left edge is at offset_px, trained "
            "in the left region, after checkpoint steps",
        },
    )


# ------------------------------------------------------------------------------------ verdict


def _verdict(ds: xr.Dataset, config) -> None:
    """The verdict's numbers (see :func:`verdict_lines`): ``codistill - local`` per retina on
    all the training data and on the held-out location, and codistill's held-out accuracy
    above chance, each with a paired 95 % t-interval over seeds."""
    from analyses.intervals import paired_difference

    models = list(config.models)
    if not {"codistill", "local"} <= set(models):
        return
    splits, diffs = [], []
    full = ds["accuracy"].sel(n_train=ds["n_train"].values.max())
    splits.append(f"all data (n_train={int(ds['n_train'].values.max())})")
    diffs.append(
        paired_difference(full.sel(model="codistill"), full.sel(model="local"), axis="seed")
    )
    if "accuracy_heldout_location" in ds:
        held = ds["accuracy_heldout_location"]
        splits.append("held-out location")
        diffs.append(
            paired_difference(held.sel(model="codistill"), held.sel(model="local"), axis="seed")
        )
    ds.coords["split"] = ("split", np.array(splits, dtype=object))
    for name, field in (("", "mean"), ("_ci_low", "low"), ("_ci_high", "high")):
        ds[f"codistill_minus_local{name}"] = (
            ("retina", "split"),
            np.stack([np.asarray(getattr(d, field).transpose("retina").values) for d in diffs], 1),
            {
                "units": "1",
                "long_name": f"codistill - local accuracy, paired over seeds ({field})",
                "valid_min": -1.0,
                "valid_max": 1.0,
            },
        )
    if "accuracy_heldout_location" in ds:
        held = ds["accuracy_heldout_location"].sel(model="codistill")
        above = paired_difference(
            held, 0.0 * held + float(ds.attrs.get("chance_accuracy", 0.1)), axis="seed"
        )
        for name, field in (("", "mean"), ("_ci_low", "low"), ("_ci_high", "high")):
            ds[f"heldout_above_chance{name}"] = (
                ("retina",),
                np.asarray(getattr(above, field).transpose("retina").values),
                {"units": "1", "long_name": f"codistill held-out accuracy - chance ({field})"},
            )
    ds.attrs["protocol"] = (
        f"video ({config.video_mode}, {config.video_frames} frames) for the location split"
        if config.video
        else "static images"
    )


def _word(lo: float, hi: float) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "cannot be compared with (too few seeds)"
    if lo > 0:
        return "beats"
    if hi < 0:
        return "is worse than"
    return "does not differ significantly from"


def verdict_lines(ds: xr.Dataset) -> list[str]:
    """Per retina: does co-distillation beat ``local`` (difference and 95 % interval), how much
    of the gap to the cnn does it close, and is its held-out accuracy above chance (under which
    protocol)? Recomputed from the stored per-seed accuracies."""
    if "codistill_minus_local" not in ds:
        return ["Verdict: not available (codistill and local must both be run)"]
    lines = [
        f"Verdict ({ds.sizes['seed']} seeds, 95 % paired t-intervals; protocol: "
        f"{ds.attrs.get('protocol', 'static images')})"
    ]
    for rk in ds["retina"].values:
        parts = []
        for sp in ds["split"].values:
            sel = dict(retina=rk, split=sp)
            m = float(ds["codistill_minus_local"].sel(sel))
            lo = float(ds["codistill_minus_local_ci_low"].sel(sel))
            hi = float(ds["codistill_minus_local_ci_high"].sel(sel))
            parts.append(f"{_word(lo, hi)} local on {sp} ({m:+.3f} [{lo:+.3f}, {hi:+.3f}])")
        lines.append(f"  {rk}: co-distillation " + "; ".join(parts) + ".")
        if "gap_closed" in ds and "local" in ds["control"].values:
            n = ds["n_train"].values.max()
            sel = dict(control="local", retina=rk, n_train=n)
            g = float(ds["gap_closed"].sel(sel))
            if np.isfinite(g):
                lo, hi = (float(ds[f"gap_closed_ci_{e}"].sel(sel)) for e in ("low", "high"))
                lines.append(
                    f"    gap to the cnn closed (vs local, n_train={int(n)}): "
                    f"{g:+.2f} [{lo:+.2f}, {hi:+.2f}]"
                )
            else:
                lines.append(
                    f"    gap closed vs local: n/a ({ds['gap_closed_reason'].sel(sel).item()})"
                )
        if "gap_closed_heldout_location" in ds and "local" in ds["control"].values:
            sel = dict(control="local", retina=rk)
            g = float(ds["gap_closed_heldout_location"].sel(sel))
            if np.isfinite(g):
                lo, hi = (
                    float(ds[f"gap_closed_heldout_location_ci_{e}"].sel(sel))
                    for e in ("low", "high")
                )
                lines.append(
                    f"    gap to the cnn closed at the held-out location (vs local): "
                    f"{g:+.2f} [{lo:+.2f}, {hi:+.2f}]"
                )
        if "heldout_above_chance" in ds:
            m = float(ds["heldout_above_chance"].sel(retina=rk))
            lo = float(ds["heldout_above_chance_ci_low"].sel(retina=rk))
            hi = float(ds["heldout_above_chance_ci_high"].sel(retina=rk))
            word = "above chance" if lo > 0 else ("below chance" if hi < 0 else "not above chance")
            chance = float(ds.attrs.get("chance_accuracy", 0.1))
            lines.append(
                f"    held-out location accuracy {chance + m:.3f} [{chance + lo:.3f}, "
                f"{chance + hi:.3f}]: {word} ({chance:g})"
            )
    return lines


# ------------------------------------------------------------------------------------ summary


def _fmt(mean: float, lo: float, hi: float) -> str:
    if not np.isfinite(mean):
        return "n/a"
    if not np.isfinite(lo):
        return f"{mean:.3f}"
    return f"{mean:.3f} [{lo:.2f},{hi:.2f}]"


def _table(ds: xr.Dataset, var: str, rows: list[tuple[str, dict]], models: list[str]) -> list[str]:
    width = max(20, max(len(m) for m in models) + 2)
    left = max(len(label) for label, _ in rows) + 2
    lines = [f"{'':<{left}}" + "".join(f"{m:>{width}}" for m in models)]
    for label, sel in rows:
        cells = [
            _fmt(
                float(ds[f"{var}_mean"].sel(model=m, **sel)),
                float(ds[f"{var}_ci_low"].sel(model=m, **sel)),
                float(ds[f"{var}_ci_high"].sel(model=m, **sel)),
            )
            for m in models
        ]
        lines.append(f"{label:<{left}}" + "".join(f"{c:>{width}}" for c in cells))
    return lines


def summary(ds: xr.Dataset) -> str:
    """The accuracy table with intervals, convergence, the gap closed, the location split and
    the wave; a ``--quick`` run says it is a smoke test."""
    models = [str(m) for m in ds["model"].values]
    n_seeds = ds.sizes["seed"]
    lines = [*verdict_lines(ds), ""]
    lines.append(
        f"Test accuracy, mean [{ds.attrs.get('ci_method', '95% CI')}] over {n_seeds} seed(s); "
        "chance 0.10"
    )
    rows = [
        (f"{rk} n={int(n)}", dict(retina=rk, n_train=n))
        for rk in ds["retina"].values
        for n in ds["n_train"].values
    ]
    lines += _table(ds, "accuracy", rows, models)
    lines += _convergence_lines(ds, models)
    lines += _gap_lines(ds)
    if "accuracy_heldout_location" in ds:
        lines += _location_lines(ds, models)
    lines += _parameter_lines(ds, models)
    return "\n".join(lines)


def _convergence_lines(ds: xr.Dataset, models: list[str]) -> list[str]:
    """The summary's convergence paragraph: the largest loss-change ratio per model."""
    lines = []
    tol = float(ds.attrs.get("convergence_tolerance", 0.05))
    ratio = ds["convergence_ratio"].max(dim=("retina", "n_train", "seed"))
    steps = ", ".join(
        f"n={int(n)}: {int(s)}"
        for n, s in zip(ds["n_train"].values, ds["training_steps"].values, strict=True)
    )
    lines.append("")
    lines.append(
        f"Convergence ({steps} steps): largest |loss change over the last 20% of steps| / its "
        f"whole decrease, per model (converged if < {tol:g})"
    )
    lines.append(
        "  "
        + ", ".join(
            f"{m} {float(ratio.sel(model=m)):.3f}"
            + ("" if float(ratio.sel(model=m)) < tol else " NOT CONVERGED")
            for m in models
        )
    )
    return lines


def _gap_lines(ds: xr.Dataset) -> list[str]:
    """The summary's gap-closed paragraph, per control and retina."""
    lines = []
    lines.append("")
    lines.append(
        "Gap closed = (codistill - control) / (cnn - control), seed means [95% paired bootstrap CI]"
    )
    for control in ds["control"].values:
        for rk in ds["retina"].values:
            cells = []
            for n in ds["n_train"].values:
                sel = dict(control=control, retina=rk, n_train=n)
                v = float(ds["gap_closed"].sel(sel))
                if np.isfinite(v):
                    lo = float(ds["gap_closed_ci_low"].sel(sel))
                    hi = float(ds["gap_closed_ci_high"].sel(sel))
                    cells.append(f"n={int(n)}: {v:+.2f} [{lo:+.2f},{hi:+.2f}]")
                else:
                    why = str(ds["gap_closed_reason"].sel(sel).item())
                    short = "cnn - control not significant" if "not significant" in why else why
                    cells.append(f"n={int(n)}: n/a ({short})")
            lines.append(f"  vs {control:<12} {rk:<9} " + "; ".join(cells))
    return lines


def _location_lines(ds: xr.Dataset, models: list[str]) -> list[str]:
    """The summary's location-restricted split: tables, generalisation radius and the wave."""
    lines = []
    lines.append("")
    lines.append(f"Location-restricted split ({ds.attrs.get('heldout_regions', '')})")
    rows = [(f"{rk} held out", dict(retina=rk)) for rk in ds["retina"].values]
    lines += _table(ds, "accuracy_heldout_location", rows, models)
    rows = [(f"{rk} train region", dict(retina=rk)) for rk in ds["retina"].values]
    lines += _table(ds, "accuracy_train_region", rows, models)[1:]
    lines.append("")
    last = int(ds["checkpoint"].values[-1])
    if "generalisation_radius_px" in ds:  # absent from files written before it existed
        radius = ds["generalisation_radius_px"]
        lines.append(
            "Generalisation radius (px beyond the trained offsets "
            f"{ds.attrs.get('train_offsets_px', '?')}, "
            "where accuracy falls half-way to chance): "
            + "; ".join(
                f"{rk} "
                + ", ".join(f"{m} {float(radius.sel(model=m, retina=rk)):.1f}" for m in models)
                for rk in ds["retina"].values
            )
        )
    lines.append(f"Wave: accuracy by digit offset (px) after {last} steps, seed means")
    offs = [int(o) for o in ds["offset_px"].values]
    left = max(len(str(r)) + len(m) for r in ds["retina"].values for m in models) + 3
    lines.append(f"{'':<{left}}" + "".join(f"{o:>7}" for o in offs))
    wave = ds["accuracy_by_offset"].sel(checkpoint=last).mean("seed")
    for rk in ds["retina"].values:
        for m in models:
            vals = wave.sel(model=m, retina=rk).values
            lines.append(f"{rk + ' ' + m:<{left}}" + "".join(f"{v:>7.2f}" for v in vals))
    return lines


def _parameter_lines(ds: xr.Dataset, models: list[str]) -> list[str]:
    """The summary's parameter counts, total stored and per column, per retina."""
    lines = []
    lines.append("")
    lines.append("Parameters: total stored (per column/place)")
    for rk in ds["retina"].values:
        parts = []
        for m in models:
            total = ds["n_parameters"].sel(model=m, retina=rk).values
            per = ds["n_parameters_per_column"].sel(model=m, retina=rk).values
            parts.append(f"{m} {int(total)} ({per:.0f})" if np.isfinite(total) else f"{m} n/a")
        lines.append(f"{rk!s:<9}" + ", ".join(parts))
    return lines
