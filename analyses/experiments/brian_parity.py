"""Brian2 parity: the same trained column model in the torch engine and in Brian2.

A small model (default 16 columns, 3 levels, dim 8) reads a uniform retina. It is briefly
trained with the local co-distillation rule of :mod:`neurosim.learning`
(:func:`~neurosim.learning.consensus_codistillation_loss`, each column's bottom-up and top-down
nets regressed on the detached consensus of their level, ``detach_inputs=True``) for
``train_steps`` Adam steps on sklearn digits placed on the canvas (``train_steps = 0`` runs the
untrained model, and the results say so). Then one test digit is shown to both engines:

* torch: ``Model.settle`` in float64 (``n_steps`` Euler steps of ``dt_ms``);
* Brian2: :func:`neurosim.brian.build_network` with the *image* as a ``TimedArray`` of pixels
  driving the retina's cells through ``Synapses`` that hold the retina's operator, the same
  ``dt_ms``, code generation ``codegen`` (default ``auto``: Cython when a C++ compiler works,
  else numpy; ``--quick`` uses numpy, which compiles nothing).

Both trajectories go through :func:`neurosim.export.trajectory_dataset` (the torch one via
:func:`~neurosim.export.settled_dataset`), so they share one layout; the one stimulus is
selected, which leaves dims ``(time, column, level, unit)``.

Results (``results.nc``)
------------------------
``torch_rate``, ``brian_rate`` and ``difference`` (brian - torch), dims ``(time, column, level,
unit)``, coords ``time_ms``, ``x_deg``, ``y_deg`` and ``level_mask``; ``relative_error(time)`` =
max |difference| / max |torch_rate| at each recorded time; ``image(y_px, x_px)``;
``train_loss(train_step)``. Attributes: ``trained`` (0/1), wall times of both engines and
Brian2's build time, the codegen target used.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Literal

import numpy as np
import xarray as xr

from neurosim.config import Config as _BaseConfig
from neurosim.config import check_choice, check_int, check_positive_int, check_range, check_seed

__all__ = ["Config", "run", "figures", "summary", "RESULT_FILE"]

RESULT_FILE = "results.nc"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_BaseConfig):
    """Settings of the parity run (defaults: the full run, about a minute plus compilation).

    Attributes:
        seed: model initialisation, training order and the choice of the test digit.
        n_columns, n_levels, dim, hidden, activation: the model (see ``ModelConfig``).
        n_cells: retina cells (even: ON and OFF per site); k_cells: cells read per column.
        fov_deg: field of view; image_px: side of the square image; digit_px: side of the digit.
        tau_ms, dt_ms, n_steps: the rate dynamics (same Euler step in both engines).
        beta, beta_end: attention inverse temperature, linear schedule from beta to beta_end.
        train_steps: Adam steps of local co-distillation before the comparison (0: untrained).
        train_batch: images per training step; train_settle_steps: Euler steps per training
            settle; lr: Adam learning rate.
        codegen: Brian2 code generation: cython | numpy | auto (cython if a compiler works).
        cache_dir: Brian2/Cython cache directory to reuse compiled code across runs; "" = this
            process's own fresh directory (:func:`neurosim.brian.default_cache_dir`).
    """

    seed: int = 0
    n_columns: int = 16
    n_levels: int = 3
    dim: int = 8
    hidden: tuple[int, ...] = (16,)
    activation: Literal["gelu", "relu", "tanh", "silu"] = "gelu"
    n_cells: int = 128
    k_cells: int = 8
    fov_deg: float = 4.0
    image_px: int = 24
    digit_px: int = 16
    tau_ms: float = 20.0
    dt_ms: float = 1.0
    n_steps: int = 60
    beta: float = 1.0
    beta_end: float = 4.0
    train_steps: int = 40
    train_batch: int = 16
    train_settle_steps: int = 6
    lr: float = 3e-3
    codegen: Literal["cython", "numpy", "auto"] = "auto"
    cache_dir: str = ""

    def __post_init__(self) -> None:
        check_seed("seed", self.seed)
        # Brian2 builds C * dim neurons per level and their synapses one by one: sizes a laptop
        # simulates in minutes
        check_int("n_columns", self.n_columns, 4, 4096)
        check_int("n_levels", self.n_levels, 1, 16)
        check_int("dim", self.dim, 1, 256)
        for i, h in enumerate(self.hidden):
            check_int(f"hidden[{i}]", h, 1, 1024)
        check_choice("activation", self.activation, ("gelu", "relu", "tanh", "silu"))
        check_int("image_px", self.image_px, 1, 1024)
        # at most an ON and an OFF cell per pixel
        check_int("n_cells", self.n_cells, 8, 2 * self.image_px**2)
        if self.n_cells % 2:
            raise ValueError(f"n_cells must be an even integer >= 8; got {self.n_cells}")
        check_positive_int("k_cells", self.k_cells, self.n_cells)
        check_range("fov_deg", self.fov_deg, 0, 180, lo_inclusive=False)
        check_positive_int("digit_px", self.digit_px, self.image_px)
        check_range("tau_ms", self.tau_ms, 0, None, lo_inclusive=False)
        check_range("dt_ms", self.dt_ms, 0, self.tau_ms, lo_inclusive=False, hi_inclusive=False)
        check_int("n_steps", self.n_steps, 1, 10_000)
        check_range("beta", self.beta, 0, 1e6)
        check_range("beta_end", self.beta_end, 0, 1e6)
        check_int("train_steps", self.train_steps, 0, 10**6)
        check_positive_int("train_batch", self.train_batch)
        check_positive_int("train_settle_steps", self.train_settle_steps)
        check_range("lr", self.lr, 0, 1, lo_inclusive=False)
        check_choice("codegen", self.codegen, ("cython", "numpy", "auto"))

    @classmethod
    def quick(cls) -> Config:
        """Test-suite size: a few steps, numpy code generation (no compilation)."""
        return cls(n_steps=10, train_steps=3, train_batch=4, codegen="numpy")


def _images(cfg: Config, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` sklearn digits, scaled to ``digit_px`` and placed at random on the canvas."""
    from analyses.tasks import digits_split

    digits = digits_split(seed=0).x_train
    pick = digits[rng.integers(0, len(digits), size=n)]
    reps = max(1, cfg.digit_px // pick.shape[-1])
    big = np.kron(pick, np.ones((reps, reps), dtype=pick.dtype))[:, : cfg.digit_px, : cfg.digit_px]
    out = np.zeros((n, cfg.image_px, cfg.image_px))
    room = cfg.image_px - big.shape[-1]
    for k in range(n):  # data preparation, not a hot path
        r, c = rng.integers(0, room + 1, size=2)
        out[k, r : r + big.shape[-2], c : c + big.shape[-1]] = big[k]
    return out


def _train(model, retina, cfg: Config, rng: np.random.Generator, quiet: bool) -> np.ndarray:
    """A few Adam steps of local consensus co-distillation; returns the loss per step."""
    import torch

    from analyses.progress import Progress
    from neurosim.learning import consensus_codistillation_loss, detach_inputs_for

    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    losses = []
    progress = Progress(
        cfg.train_steps, desc="brian-parity training", unit="steps", quiet=quiet, min_interval_s=10
    )
    for _ in range(cfg.train_steps):
        imgs = _images(cfg, cfg.train_batch, rng)
        resp = torch.as_tensor(retina(imgs), dtype=torch.float32)
        settled = model.settle(
            resp,
            n_steps=cfg.train_settle_steps,
            record=("bottom_up", "top_down", "consensus"),
            detach_inputs=detach_inputs_for("local"),
        )
        loss = consensus_codistillation_loss(settled.bottom_up, settled.top_down, settled.consensus)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        progress.update(score=f"loss {losses[-1]:.4f}")
    progress.close()
    return np.asarray(losses, dtype=np.float64)


def _retina_and_model(cfg: Config):
    """The uniform retina and the (untrained) column model it feeds, as the config says."""
    from neurosim.columns import assert_unshared
    from neurosim.dynamics import DynamicsConfig
    from neurosim.model import Model, ModelConfig
    from retina import Retina

    retina = Retina.uniform(
        n_cells=cfg.n_cells,
        fov_deg=cfg.fov_deg,
        image_shape=(cfg.image_px, cfg.image_px),
        pixels_per_deg=cfg.image_px / cfg.fov_deg,
        seed=cfg.seed,
    )
    mcfg = ModelConfig(
        n_columns=cfg.n_columns,
        n_levels=cfg.n_levels,
        dim=cfg.dim,
        hidden=cfg.hidden,
        activation=cfg.activation,
        k_cells=cfg.k_cells,
        neighbour_k=min(4, cfg.n_columns - 1),
        neighbour_growth=1.5,
        column_lattice="uniform",
        seed=cfg.seed,
        dynamics=DynamicsConfig(
            tau_ms=cfg.tau_ms,
            dt_ms=cfg.dt_ms,
            n_steps=cfg.n_steps,
            beta=cfg.beta,
            beta_schedule="linear",
            beta_end=cfg.beta_end,
        ),
    )
    model = Model.from_retina(retina, mcfg)
    assert_unshared(model)
    return retina, model


def _comparison(settled, model, brian_ds: xr.Dataset, dt_ms: float) -> xr.Dataset:
    """``torch_rate``, ``brian_rate``, ``difference (time, column, level, unit)`` and
    ``relative_error (time)`` of the one stimulus, both engines in the layout of
    :func:`neurosim.export.trajectory_dataset`."""
    from neurosim.brian import relative_error
    from neurosim.export import settled_dataset

    ds = settled_dataset(settled, model, dt_ms=dt_ms, name="torch_rate")
    ds = ds.isel(stimulus=0, drop=True)
    ds["torch_rate"].attrs["long_name"] = "level embedding rate r, torch engine (float64)"
    ds["brian_rate"] = brian_ds["rate"].isel(stimulus=0, drop=True)
    ds["brian_rate"].attrs["long_name"] = "level embedding rate r, Brian2 engine"
    ds["difference"] = ds["brian_rate"] - ds["torch_rate"]
    ds["difference"].attrs = {"units": "1", "long_name": "brian_rate - torch_rate"}
    ds["relative_error"] = (
        ("time",),
        relative_error(ds["brian_rate"].values, ds["torch_rate"].values),
        {"units": "1", "long_name": "max |difference| / max |torch_rate| per time"},
    )
    return ds


def run(config: Config, *, device: str = "cpu", quiet: bool = False) -> xr.Dataset:
    """Train briefly, settle one image in torch and in Brian2, return both trajectories."""
    import torch

    from neurosim import brian

    if device != "cpu":
        raise ValueError(
            f"device must be 'cpu' for brian-parity (Brian2 runs on CPU); got {device!r}"
        )
    cfg = config
    rng = np.random.default_rng(cfg.seed)
    retina, model = _retina_and_model(cfg)
    losses = _train(model, retina, cfg, rng, quiet) if cfg.train_steps else np.zeros(0)
    model = model.double().eval()
    image = _images(cfg, 1, rng)[0]

    t0 = time.perf_counter()
    with torch.no_grad():
        resp = torch.as_tensor(retina(image), dtype=torch.float64)[None]
        settled = model.settle(resp, n_steps=cfg.n_steps, record=("state",))
    torch_s = time.perf_counter() - t0

    net = brian.build_network(
        model,
        image=image,
        retina=retina,
        duration_ms=cfg.n_steps * cfg.dt_ms,
        dt_ms=cfg.dt_ms,
        codegen=cfg.codegen,
        cache_dir=cfg.cache_dir or None,
    )
    ds = _comparison(settled, model, net.run(quiet=quiet), cfg.dt_ms)
    ds["image"] = (
        ("y_px", "x_px"),
        image,
        {"units": "1", "long_name": "test image (luminance)"},
    )
    ds["train_loss"] = (
        ("train_step",),
        losses,
        {"units": "1", "long_name": "local co-distillation loss per training step"},
    )
    ds.attrs.update(
        trained=int(cfg.train_steps > 0),
        training=(
            f"{cfg.train_steps} Adam steps of local consensus co-distillation"
            if cfg.train_steps
            else "untrained (random initialisation)"
        ),
        codegen=net.codegen,
        torch_s=round(torch_s, 4),
        brian_build_s=round(net.build_s, 4),
        brian_run_s=round(net.run_s, 4),
        dt_ms=cfg.dt_ms,
        n_steps=cfg.n_steps,
    )
    return ds


def figures(ds: xr.Dataset, out_dir: str | Path) -> list[Path]:
    """Image, example unit trajectories in both engines, and the relative error per time."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from analyses.figures import STYLE, cycle_styles, new_figure, save_figure

    fig, axes = new_figure(1, 3, width_in=7.5, height_in=2.6)
    ax = axes[0, 0]
    shown = ax.imshow(ds["image"].values, cmap="gray", vmin=0.0)
    ax.set_title("test image")
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    with plt.rc_context(STYLE):  # the colorbar's axes are made now, in the figures' style
        fig.colorbar(shown, ax=ax, shrink=0.8, label="luminance (dimensionless)")

    ax = axes[0, 1]
    t = ds["time_ms"].values
    levels = ds.sizes["level"]
    every = max(1, len(t) // 12)
    for lv, style in zip(range(levels), cycle_styles(levels), strict=True):
        torch_line = ds["torch_rate"].isel(column=0, level=lv, unit=0).values
        brian_line = ds["brian_rate"].isel(column=0, level=lv, unit=0).values
        ax.plot(
            t, torch_line, color=style["color"], linestyle=style["linestyle"], label=f"level {lv}"
        )
        ax.plot(
            t[::every],
            brian_line[::every],
            color=style["color"],
            linestyle="none",
            marker=style["marker"],
            markersize=3,
        )
    engines = [
        Line2D([], [], color="0.0", linestyle="-", label="torch (lines)"),
        Line2D(
            [],
            [],
            color="0.0",
            linestyle="none",
            marker="o",
            markersize=3,
            label="Brian2 (markers)",
        ),
    ]
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("rate r (dimensionless)")
    ax.set_title("column 0, unit 0")
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + engines, frameon=False, fontsize=6)

    ax = axes[0, 2]
    err = np.maximum(ds["relative_error"].values, 1e-18)
    ax.semilogy(
        t, err, color="0.0", marker="o", markersize=2, label="max |Brian2 - torch| / max |torch|"
    )
    ax.axhline(1e-4, color="0.5", linestyle="--", label="tolerance 1e-4")
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("relative error (dimensionless)")
    ax.set_title(f"Brian2 ({ds.attrs.get('codegen', '?')}) vs torch")
    ax.set_ylim(top=1.0)  # room above the tolerance line for the legend
    ax.legend(frameon=False, fontsize=6, loc="upper right")
    return save_figure(fig, out_dir, "brian_parity")


def summary(ds: xr.Dataset) -> str:
    """Relative error per level and the engines' wall times."""
    lines = [
        f"brian-parity: {ds.attrs.get('training', '?')}; codegen={ds.attrs.get('codegen', '?')}, "
        f"dt = {ds.attrs.get('dt_ms', '?')} ms, {ds.attrs.get('n_steps', '?')} steps",
        f"{'level':>6} {'max rel. error':>15} {'max |diff|':>12} {'max |torch|':>12}",
    ]
    for lv in ds["level"].values:
        diff = np.abs(ds["difference"].sel(level=lv).values)
        ref = np.abs(ds["torch_rate"].sel(level=lv).values)
        lines.append(
            f"{int(lv):>6} {diff.max() / max(ref.max(), 1e-300):>15.3e} "
            f"{diff.max():>12.3e} {ref.max():>12.3e}"
        )
    lines.append(f"all    {float(ds['relative_error'].max()):>15.3e}  (tolerance 1e-4)")
    if ds.sizes.get("train_step", 0):
        loss = ds["train_loss"].values
        lines.append(f"train loss: {loss[0]:.4g} -> {loss[-1]:.4g}")
    codegen = ds.attrs.get("codegen", "?")
    if codegen == "cython":
        compiled = "Cython; includes compilation on a cold cache"
    elif codegen == "numpy":
        compiled = "numpy code generation: nothing compiled"
    else:
        compiled = f"code generation {codegen}"
    lines.append(
        f"wall time: torch {ds.attrs.get('torch_s', float('nan')):.3f} s, Brian2 run "
        f"{ds.attrs.get('brian_run_s', float('nan')):.3f} s ({compiled}; build "
        f"{ds.attrs.get('brian_build_s', float('nan')):.3f} s)"
    )
    return "\n".join(lines)
