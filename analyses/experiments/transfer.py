"""The flagship: do co-distilled unshared columns get a CNN's benefit, under either retina?

Seed 001 (00:29-00:34): columns that share no weights could still share knowledge by
co-distillation, and unlike weight sharing this also works for a non-uniform (foveated) retina.
This experiment tests it. Every model of :mod:`analyses.baselines` (``cnn``, ``shared-columns``,
``lc-backprop``, ``codistill``, optionally ``lc-backprop+codistill``) is trained on digits pasted
at random positions of a canvas (:func:`analyses.tasks.canvas_split`, sklearn digits, offline),
seen through a ``uniform`` and a ``foveated`` retina with the same number of cells, for several
training-set sizes and seeds, and scored on the fixed test canvases.

Location-restricted split: the same models are trained on canvases whose digits lie in one
region (``heldout_train_region``) and tested on digits in another (``heldout_test_region``;
``heldout_overlap`` = fraction of the canvas side both share), and, as a control, on new digits in
the training region. A weight-shared network generalises across positions by construction;
unshared columns outside the training region have never seen a digit, so any accuracy there
has to come from knowledge transferred between columns.

Gap closed
----------
``gap_closed = (acc[codistill] - acc[lc-backprop]) / (acc[cnn] - acc[lc-backprop])`` from the
seed-mean accuracies, per retina and training-set size: 0 = no better than unshared columns
trained by backprop, 1 = as good as the CNN, < 0 = worse than ``lc-backprop``, > 1 = better than
the CNN. Where ``|acc[cnn] - acc[lc-backprop]| < gap_min_denominator`` there is no gap to close
and the ratio would be noise divided by noise: the value is NaN (as it is when one of the three
models was not run).

Results (``results.nc``)
------------------------
``accuracy(model, retina, n_train, seed)``; its seed mean and Student-t 95 % interval
``accuracy_mean``, ``accuracy_ci_low``, ``accuracy_ci_high`` ``(model, retina, n_train)``;
``gap_closed(retina, n_train)``; ``accuracy_heldout_location(model, retina, seed)`` and
``accuracy_train_region(model, retina, seed)`` with their means and intervals;
``gap_closed_heldout_location(retina)``; ``n_parameters`` and ``n_parameters_per_column``
``(model, retina)``; ``train_seconds`` and ``final_train_loss`` ``(model, retina, n_train, seed)``.
Coordinate ``n_train`` holds the actual number of training canvases (``0`` in the config means
all of them).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import xarray as xr

from analyses.baselines import MODEL_KINDS, RETINA_KINDS, BaselineConfig
from neurosim.config import Config as _ConfigBase
from neurosim.config import check_choice, check_positive_int, check_range, check_seed

__all__ = ["Config", "run", "figures", "summary", "RESULT_FILE", "gap_closed"]

RESULT_FILE = "results.nc"

_REGIONS = ("full", "left", "right", "top", "bottom")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_ConfigBase):
    """Settings of the transfer experiment (defaults: the full run, ~5 min on 2 CPU cores).

    Attributes:
        seed: first seed; seeds ``seed .. seed + n_seeds - 1`` set each model's initialisation,
            its data order and which training canvases a size-``n`` subset holds (class-balanced
            and nested across sizes, :func:`analyses.tasks.stratified_subset`). All models of
            one seed see the same subset.
        n_seeds: repetitions (>= 1; >= 2 for confidence intervals).
        models: model labels to run (a subset of ``analyses.baselines.MODEL_KINDS``).
        retinas: retina labels to run (``uniform``, ``foveated``).
        n_train: training-set sizes; 0 means all training canvases.
        n_test: test canvases (0: one per test digit, 539 with the default split).
        canvas_px: side of the square canvas in pixels.
        digit_px: side of a pasted digit in pixels.
        n_cells: retina cells (ON + OFF, even), the same for both retinas.
        pixels_per_deg: image scale; the retina covers the canvas, ``canvas_px / pixels_per_deg``
            degrees.
        test_fraction: fraction of each digit class held out as test digits.
        split_seed: seed of the train/test split of the digits and of the canvas positions.
        heldout: run the location-restricted split.
        heldout_train_region, heldout_test_region: where training and test digits lie (names of
            ``analyses.tasks.REGION_NAMES``).
        heldout_overlap: fraction of the canvas side the two regions share, in [0, 1).
        heldout_n_train: training canvases of the location-restricted split (0: all).
        gap_min_denominator: smallest ``|acc[cnn] - acc[lc-backprop]|`` for which the gap closed
            is reported (else NaN), in [0, 1].
        num_threads: torch CPU threads during the run (0: leave torch's setting). 1 is fastest
            for these small models on a busy machine; the previous setting is restored.
        baseline: the models' architecture and training budget
            (:class:`analyses.baselines.BaselineConfig`, the ``[baseline]`` TOML table).
    """

    seed: int = 0
    n_seeds: int = 3
    models: tuple[str, ...] = ("cnn", "shared-columns", "lc-backprop", "codistill")
    retinas: tuple[str, ...] = RETINA_KINDS
    n_train: tuple[int, ...] = (100, 300, 0)
    n_test: int = 0
    canvas_px: int = 24
    digit_px: int = 12
    n_cells: int = 288
    pixels_per_deg: float = 2.0
    test_fraction: float = 0.3
    split_seed: int = 0
    heldout: bool = True
    heldout_train_region: str = "left"
    heldout_test_region: str = "right"
    heldout_overlap: float = 0.25
    heldout_n_train: int = 0
    gap_min_denominator: float = 0.02
    num_threads: int = 1
    baseline: BaselineConfig = dataclasses.field(default_factory=BaselineConfig)

    def __post_init__(self) -> None:
        check_seed("seed", self.seed)
        check_seed("split_seed", self.split_seed)
        check_positive_int("n_seeds", self.n_seeds, 1000)
        if not self.models:
            raise ValueError(f"models must list at least one of {list(MODEL_KINDS)}")
        for i, m in enumerate(self.models):
            check_choice(f"models[{i}]", m, MODEL_KINDS)
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"models must not repeat a label; got {list(self.models)}")
        if not self.retinas:
            raise ValueError(f"retinas must list at least one of {list(RETINA_KINDS)}")
        for i, r in enumerate(self.retinas):
            check_choice(f"retinas[{i}]", r, RETINA_KINDS)
        if len(set(self.retinas)) != len(self.retinas):
            raise ValueError(f"retinas must not repeat a label; got {list(self.retinas)}")
        if not self.n_train:
            raise ValueError("n_train must list at least one size (0 = all)")
        for i, n in enumerate(self.n_train):
            if isinstance(n, bool) or not isinstance(n, int):
                raise ValueError(f"n_train[{i}] must be an integer >= 0 (0 = all); got {n!r}")
            check_range(f"n_train[{i}]", n, 0, None)
        if len(set(self.n_train)) != len(self.n_train):
            raise ValueError(f"n_train must not repeat a size; got {list(self.n_train)}")
        for name in ("n_test", "heldout_n_train"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer >= 0 (0 = all); got {value!r}")
            check_range(name, value, 0, None)
        check_positive_int("canvas_px", self.canvas_px, 512)
        check_positive_int("digit_px", self.digit_px, self.canvas_px)
        check_positive_int("n_cells", self.n_cells)
        check_range("pixels_per_deg", self.pixels_per_deg, 0.0, 1e3, lo_inclusive=False)
        check_range(
            "test_fraction", self.test_fraction, 0.0, 1.0, lo_inclusive=False, hi_inclusive=False
        )
        check_choice("heldout_train_region", self.heldout_train_region, _REGIONS)
        check_choice("heldout_test_region", self.heldout_test_region, _REGIONS)
        check_range("heldout_overlap", self.heldout_overlap, 0.0, 1.0, hi_inclusive=False)
        check_range("gap_min_denominator", self.gap_min_denominator, 0.0, 1.0)
        if isinstance(self.num_threads, bool) or not isinstance(self.num_threads, int):
            raise ValueError(
                f"num_threads must be an integer in [0, 256]; got {self.num_threads!r}"
            )
        check_range("num_threads", self.num_threads, 0, 256)
        if not isinstance(self.baseline, BaselineConfig):
            raise ValueError(f"baseline must be a BaselineConfig; got {self.baseline!r}")
        if self.heldout:
            side = (1.0 + self.heldout_overlap) / 2.0 * self.canvas_px
            for name in ("heldout_train_region", "heldout_test_region"):
                if getattr(self, name) != "full" and int(np.floor(side + 0.5)) < self.digit_px:
                    raise ValueError(
                        f"heldout_overlap must leave room for a digit in {name}: a half-region "
                        f"of {side:.1f} px < digit_px={self.digit_px}; raise heldout_overlap or "
                        "canvas_px"
                    )

    @classmethod
    def quick(cls) -> Config:
        """The test-suite size: every model, both retinas, two sizes, two seeds (seconds)."""
        return cls(
            n_seeds=2,
            models=MODEL_KINDS,
            n_train=(24, 48),
            n_test=48,
            canvas_px=16,
            digit_px=8,
            n_cells=128,
            heldout_n_train=48,
            baseline=BaselineConfig.quick(steps=4, batch_size=16),
        )


# ------------------------------------------------------------------------------------ running


def gap_closed(
    codistill: np.ndarray, lc_backprop: np.ndarray, cnn: np.ndarray, min_denominator: float
) -> np.ndarray:
    """``(codistill - lc_backprop) / (cnn - lc_backprop)``, NaN where the gap is too small.

    Element-wise on arrays of accuracies; NaN where ``|cnn - lc_backprop| < min_denominator`` or
    any input is NaN (see the module docstring).
    """
    c, lc, a = (np.asarray(v, dtype=float) for v in (codistill, lc_backprop, cnn))
    den = a - lc
    ok = np.isfinite(den) & (np.abs(den) >= max(float(min_denominator), 1e-12))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, (c - lc) / np.where(ok, den, 1.0), np.nan)


def _canvases(config: Config):
    """Full-canvas (train, test) and, if ``heldout``, (train in region, test in the other
    region, test in the training region)."""
    from analyses.tasks import Region, canvas_split, digits_split, make_canvas_dataset

    split = digits_split(test_fraction=config.test_fraction, seed=config.split_seed)
    sizes = [n for n in config.n_train if n > 0]
    pool = None if 0 in config.n_train else max(sizes)
    if pool is not None and pool > len(split.y_train):
        raise ValueError(
            f"n_train must be at most the {len(split.y_train)} training digits; got {pool}"
        )
    n_test = config.n_test or None
    common = dict(canvas_px=config.canvas_px, digit_px=config.digit_px)
    full = canvas_split(split, n_train=pool, n_test=n_test, seed=config.split_seed, **common)
    if not config.heldout:
        return full, None
    held = canvas_split(
        split,
        train_region=config.heldout_train_region,
        test_region=config.heldout_test_region,
        overlap=config.heldout_overlap,
        n_train=config.heldout_n_train or None,
        n_test=n_test,
        seed=config.split_seed + 1,
        **common,
    )
    in_region = make_canvas_dataset(
        split.x_test,
        split.y_test,
        region=Region.named(config.heldout_train_region, config.heldout_overlap),
        n_images=n_test,
        seed=config.split_seed + 2,
        **common,
    )
    return full, (held.train, held.test, in_region)


def _dataset(config: Config, n_sizes, records, held_records, params) -> xr.Dataset:
    from analyses.metrics import confidence_interval

    models = list(config.models)
    retinas = list(config.retinas)
    seeds = [config.seed + i for i in range(config.n_seeds)]
    shape = (len(models), len(retinas), len(n_sizes), len(seeds))
    acc = np.full(shape, np.nan)
    secs = np.full(shape, np.nan)
    loss = np.full(shape, np.nan)
    for (m, r, n, s), (a, t, lo) in records.items():
        acc[m, r, n, s], secs[m, r, n, s], loss[m, r, n, s] = a, t, lo
    coords = {
        "model": ("model", np.array(models, dtype=object)),
        "retina": ("retina", np.array(retinas, dtype=object)),
        "n_train": ("n_train", np.array(n_sizes, dtype=np.int64), {"units": "images"}),
        "seed": ("seed", np.array(seeds, dtype=np.int64)),
    }
    dims4 = ("model", "retina", "n_train", "seed")
    ds = xr.Dataset(coords=coords)
    ds["accuracy"] = (dims4, acc, {"units": "1", "long_name": "test accuracy"})
    ci = confidence_interval(ds["accuracy"], axis="seed")
    for name, field, text in (
        ("accuracy_mean", ci.mean, "test accuracy, mean over seeds"),
        ("accuracy_ci_low", ci.low, "test accuracy, 95% t-interval low over seeds"),
        ("accuracy_ci_high", ci.high, "test accuracy, 95% t-interval high over seeds"),
    ):
        ds[name] = field.transpose("model", "retina", "n_train")
        ds[name].attrs = {"units": "1", "long_name": text}
    ds["gap_closed"] = (("retina", "n_train"), _gap(ds["accuracy_mean"], config))
    ds["gap_closed"].attrs = {
        "units": "1",
        "long_name": "gap closed (codistill - lc-backprop) / (cnn - lc-backprop) of seed means",
    }
    ds["train_seconds"] = (dims4, secs, {"units": "s", "long_name": "training wall time"})
    ds["final_train_loss"] = (
        dims4,
        loss,
        {"units": "1", "long_name": "training loss, mean of the last 10% of steps"},
    )
    n_par = np.full((len(models), len(retinas)), np.nan)
    n_col = np.full_like(n_par, np.nan)
    for (m, r), (total, per) in params.items():
        n_par[m, r], n_col[m, r] = total, per
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
    if config.heldout:
        dims3 = ("model", "retina", "seed")
        for var, key, text in (
            ("accuracy_heldout_location", 0, "accuracy on digits in the held-out region"),
            ("accuracy_train_region", 1, "accuracy on new digits in the training region"),
        ):
            arr = np.full((len(models), len(retinas), len(seeds)), np.nan)
            for (m, r, s), vals in held_records.items():
                arr[m, r, s] = vals[key]
            ds[var] = (dims3, arr, {"units": "1", "long_name": text})
            ci = confidence_interval(ds[var], axis="seed")
            for suffix, field in (("mean", ci.mean), ("ci_low", ci.low), ("ci_high", ci.high)):
                ds[f"{var}_{suffix}"] = field.transpose("model", "retina")
                ds[f"{var}_{suffix}"].attrs = {"units": "1", "long_name": f"{text}, {suffix}"}
        ds["gap_closed_heldout_location"] = (
            ("retina",),
            _gap(ds["accuracy_heldout_location_mean"], config),
            {"units": "1", "long_name": "gap closed on the held-out location"},
        )
    ds.attrs.update(
        {
            "title": "co-distilled unshared columns vs weight sharing, uniform vs foveated retina",
            "chance_accuracy": 0.1,
            "gap_closed_formula": "(codistill - lc-backprop) / (cnn - lc-backprop), seed means; "
            f"NaN where |cnn - lc-backprop| < {config.gap_min_denominator}",
            "confidence_level": 0.95,
            "cnn_input": "retina.render(responses): the responses resampled onto the pixel grid",
            "heldout_regions": f"train {config.heldout_train_region}, test "
            f"{config.heldout_test_region}, overlap {config.heldout_overlap}",
            "n_cells": config.n_cells,
            "n_columns": config.baseline.n_columns,
            "canvas_px": config.canvas_px,
            "digit_px": config.digit_px,
            "training_steps": config.baseline.steps,
        }
    )
    return ds


def _gap(mean: xr.DataArray, config: Config) -> np.ndarray:
    models = list(mean["model"].values)
    rest = mean.isel(model=0).shape
    if not all(m in models for m in ("cnn", "lc-backprop", "codistill")):
        return np.full(rest, np.nan)

    def pick(m):
        return mean.sel(model=m).values

    return gap_closed(
        pick("codistill"), pick("lc-backprop"), pick("cnn"), config.gap_min_denominator
    )


def run(config: Config, *, device: str = "cpu", quiet: bool = False) -> xr.Dataset:
    """Train and score every model x retina x training-set size x seed; see the module doc."""
    import torch
    from tqdm.auto import tqdm

    from analyses.baselines import build_retina, retina_inputs, train_and_evaluate
    from analyses.tasks import stratified_subset

    if not isinstance(config, Config):
        raise ValueError(f"config must be a transfer Config; got {type(config).__name__}")
    full, held = _canvases(config)
    n_pool = len(full.train)
    n_sizes = sorted({n_pool if n == 0 else n for n in config.n_train})
    if max(n_sizes) > n_pool:
        raise ValueError(f"n_train must be at most {n_pool} (the training canvases)")
    seeds = [config.seed + i for i in range(config.n_seeds)]
    n_runs = (
        len(config.retinas) * len(seeds) * len(config.models) * (len(n_sizes) + int(config.heldout))
    )
    records: dict = {}
    held_records: dict = {}
    params: dict = {}
    previous_threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    bar = tqdm(total=n_runs, desc="transfer", unit="run", disable=quiet or None)
    try:
        for r, rk in enumerate(config.retinas):
            retina = build_retina(
                rk,
                n_cells=config.n_cells,
                canvas_px=config.canvas_px,
                pixels_per_deg=config.pixels_per_deg,
                seed=config.split_seed,
            )
            train = retina_inputs(retina, full.train.images, full.train.labels)
            scale = (train.scale, train.image_scale)
            test = retina_inputs(retina, full.test.images, full.test.labels, scale=scale)
            for si, seed in enumerate(seeds):
                order = stratified_subset(full.train.labels, max(n_sizes), seed=seed)
                for ni, n in enumerate(n_sizes):
                    subset = train.subset(order[:n])
                    for m, kind in enumerate(config.models):
                        bar.set_postfix_str(f"{rk} n={n} seed={seed} {kind}", refresh=False)
                        res = train_and_evaluate(
                            kind, retina, subset, test, config.baseline, seed=seed, device=device
                        )
                        records[m, r, ni, si] = (res.accuracy, res.train_seconds, res.final_loss)
                        params[m, r] = (res.n_parameters, res.n_parameters_per_column)
                        bar.update(1)
            if config.heldout:
                h_train, h_test, h_in = held
                ht = retina_inputs(retina, h_train.images, h_train.labels, scale=scale)
                tests = {
                    "heldout": retina_inputs(retina, h_test.images, h_test.labels, scale=scale),
                    "in_region": retina_inputs(retina, h_in.images, h_in.labels, scale=scale),
                }
                for si, seed in enumerate(seeds):
                    for m, kind in enumerate(config.models):
                        bar.set_postfix_str(f"{rk} location seed={seed} {kind}", refresh=False)
                        res = train_and_evaluate(
                            kind, retina, ht, tests, config.baseline, seed=seed, device=device
                        )
                        held_records[m, r, si] = (
                            res.accuracies["heldout"],
                            res.accuracies["in_region"],
                        )
                        params[m, r] = (res.n_parameters, res.n_parameters_per_column)
                        bar.update(1)
    finally:
        bar.close()
        torch.set_num_threads(previous_threads)
    return _dataset(config, n_sizes, records, held_records, params)


# ------------------------------------------------------------------------------------ output


def figures(ds: xr.Dataset, out_dir) -> list[Path]:
    """``transfer_accuracy``: accuracy vs training-set size, one panel per retina (error bars:
    95 % t-interval over seeds), and the gap closed; ``transfer_location``: accuracy on the
    held-out location and in the training region. PNG and PDF."""
    from analyses.figures import cycle_styles, new_figure, save_figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    retinas = [str(r) for r in ds["retina"].values]
    models = [str(m) for m in ds["model"].values]
    n = ds["n_train"].values
    fig, axes = new_figure(1, len(retinas) + 1, width_in=3.0 * (len(retinas) + 1), height_in=2.8)
    styles = list(cycle_styles(len(models)))
    for ax, rk in zip(axes[0], retinas, strict=False):
        for m, style in zip(models, styles, strict=True):
            mean = ds["accuracy_mean"].sel(model=m, retina=rk).values
            lo = ds["accuracy_ci_low"].sel(model=m, retina=rk).values
            hi = ds["accuracy_ci_high"].sel(model=m, retina=rk).values
            err = np.where(np.isfinite(lo), np.vstack([mean - lo, hi - mean]), 0.0)
            ax.errorbar(n, mean, yerr=err, label=m, capsize=2, markersize=4, **style)
        ax.axhline(0.1, color="0.6", linewidth=0.6, linestyle=":")
        ax.set_xscale("log")
        ax.set_xlabel("training images")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0.0, 1.0)
        ax.set_title(f"{rk} retina")
    axes[0][0].legend(frameon=False, loc="upper left")
    ax = axes[0][-1]
    gap = ds["gap_closed"]
    for rk, style in zip(retinas, cycle_styles(len(retinas)), strict=True):
        if np.any(np.isfinite(gap.sel(retina=rk).values)):
            ax.plot(n, gap.sel(retina=rk).values, label=rk, markersize=4, **style)
    if not np.any(np.isfinite(gap.values)):
        # cnn, lc-backprop or codistill not run (or no gap): an empty panel, said so
        ax.text(0.5, 0.5, "not available", ha="center", va="center", transform=ax.transAxes)
    ax.axhline(0.0, color="0.6", linewidth=0.6)
    ax.axhline(1.0, color="0.6", linewidth=0.6, linestyle="--")
    ax.set_xscale("log")
    # explicit limits: a log axis cannot autoscale on all-NaN data (a subset of models)
    ax.set_xlim(float(n.min()) / 1.5, float(n.max()) * 1.5)
    ax.set_xlabel("training images")
    ax.set_ylabel("gap closed")
    ax.set_title("(codistill - lc) / (cnn - lc)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False)
    paths = save_figure(fig, out_dir, "transfer_accuracy")
    if "accuracy_heldout_location_mean" in ds:
        fig, axes = new_figure(1, len(retinas), width_in=3.2 * len(retinas), height_in=2.6)
        x = np.arange(len(models))
        for ax, rk in zip(axes[0], retinas, strict=True):
            for j, (var, hatch, label) in enumerate(
                (
                    ("accuracy_train_region", "", "training region"),
                    ("accuracy_heldout_location", "///", "held-out region"),
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
                    color=["0.8", "0.4"][j],
                    edgecolor="0.0",
                    hatch=hatch,
                    label=label,
                    capsize=2,
                )
            ax.axhline(0.1, color="0.6", linewidth=0.6, linestyle=":")
            ax.set_xticks(x, models, rotation=30, ha="right")
            ax.set_ylim(0.0, 1.0)
            ax.set_ylabel("test accuracy")
            ax.set_title(f"{rk} retina: location-restricted")
        axes[0][0].legend(frameon=False)
        paths += save_figure(fig, out_dir, "transfer_location")
    return paths


def _fmt(mean: float, lo: float, hi: float) -> str:
    if not np.isfinite(mean):
        return "n/a"
    if not np.isfinite(lo):
        return f"{mean:.3f}"
    return f"{mean:.3f} [{lo:.2f},{hi:.2f}]"


def summary(ds: xr.Dataset) -> str:
    """The accuracy table with 95 % intervals, the gap closed per size and retina, the
    location-restricted split and the parameter counts."""
    models = [str(m) for m in ds["model"].values]
    n_seeds = ds.sizes["seed"]
    width = max(20, max(len(m) for m in models) + 2)
    lines = [
        f"Test accuracy, mean [95% t-interval] over {n_seeds} seed(s); chance 0.10",
        f"{'retina':<9}{'n_train':>8}  " + "".join(f"{m:>{width}}" for m in models),
    ]
    for rk in ds["retina"].values:
        for n in ds["n_train"].values:
            cells = []
            for m in models:
                sel = dict(model=m, retina=rk, n_train=n)
                cells.append(
                    _fmt(
                        float(ds["accuracy_mean"].sel(sel)),
                        float(ds["accuracy_ci_low"].sel(sel)),
                        float(ds["accuracy_ci_high"].sel(sel)),
                    )
                )
            lines.append(f"{rk!s:<9}{int(n):>8}  " + "".join(f"{c:>{width}}" for c in cells))
    lines.append("")
    lines.append("Gap closed = (codistill - lc-backprop) / (cnn - lc-backprop), seed means")
    lines.append(f"{'retina':<9}" + "".join(f"{int(n):>10}" for n in ds["n_train"].values))
    for rk in ds["retina"].values:
        vals = ds["gap_closed"].sel(retina=rk).values
        lines.append(
            f"{rk!s:<9}"
            + "".join(f"{v:>10.3f}" if np.isfinite(v) else f"{'n/a':>10}" for v in vals)
        )
    if "accuracy_heldout_location_mean" in ds:
        lines.append("")
        lines.append(f"Location-restricted split ({ds.attrs.get('heldout_regions', '')})")
        lines.append(f"{'retina':<9}{'model':<24}{'held-out region':>22}{'training region':>22}")
        for rk in ds["retina"].values:
            for m in models:
                cells = []
                for var in ("accuracy_heldout_location", "accuracy_train_region"):
                    sel = dict(model=m, retina=rk)
                    cells.append(
                        _fmt(
                            float(ds[f"{var}_mean"].sel(sel)),
                            float(ds[f"{var}_ci_low"].sel(sel)),
                            float(ds[f"{var}_ci_high"].sel(sel)),
                        )
                    )
                lines.append(f"{rk!s:<9}{m:<24}{cells[0]:>22}{cells[1]:>22}")
            g = float(ds["gap_closed_heldout_location"].sel(retina=rk))
            g_text = f"{g:.3f}" if np.isfinite(g) else "n/a"
            lines.append(f"{'':<9}{'gap closed (held out)':<24}{g_text:>22}")
    lines.append("")
    lines.append("Parameters: total stored (per column/place)")
    for rk in ds["retina"].values:
        parts = []
        for m in models:
            total = ds["n_parameters"].sel(model=m, retina=rk).values
            per = ds["n_parameters_per_column"].sel(model=m, retina=rk).values
            parts.append(f"{m} {int(total)} ({per:.0f})" if np.isfinite(total) else f"{m} n/a")
        lines.append(f"{rk!s:<9}" + ", ".join(parts))
    return "\n".join(lines)
