"""The flagship: do co-distilled unshared columns get a CNN's benefit, under either retina?

The distillation talk (00:29-00:34): columns that share no weights could still share knowledge
by co-distillation, and unlike weight sharing this also works for a non-uniform (foveated)
retina. This experiment tests it. Every model kind of :mod:`analyses.baselines` (default
``cnn``, ``shared-columns``, ``lc-backprop``, ``local``, ``codistill``) is trained on digits
pasted at random positions of a canvas (:func:`analyses.canvases.canvas_split`, sklearn digits,
offline), seen through a ``uniform`` and a ``foveated`` retina with the same number of cells,
for several training-set sizes and seeds, and scored on fixed test canvases. Each comparison
has a control that differs from it by one thing: ``codistill`` vs ``local`` (the co-distillation
terms), ``local`` vs ``lc-backprop`` (locality), ``lc-backprop`` vs ``shared-columns`` (weight
sharing), with the ``cnn`` as the anchor.

Location-restricted split: the same models are trained on canvases whose digits lie in one
region (``heldout_train_region``) and tested on digits in another (``heldout_test_region``;
``heldout_overlap`` = fraction of the canvas side both share), on new digits in the training
region, and on digits at fixed horizontal offsets (``wave_offsets_px``) at several points of
training (``wave_checkpoints``): the wave analysis of how far knowledge travels from the
trained region. A weight-shared network generalises across positions by construction; unshared
columns outside the training region have never seen a digit, so any accuracy there has to come
from knowledge transferred between columns.

Training: all models of one kind and retina (seeds x training sets) are one batched computation
(:mod:`neurosim.replicas`), and these units run in ``workers`` processes at once
(:mod:`analyses.runner`). Convergence is checked, not assumed: ``final_loss_change`` is the
change of each model's training loss over its last 20 % of steps.

Results (``results.nc``): see :func:`analyses.experiments.transfer_results.results_dataset`.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import xarray as xr

from analyses.baselines import DEFAULT_KINDS, MODEL_KINDS, RETINA_KINDS, BaselineConfig
from neurosim.config import Config as _ConfigBase
from neurosim.config import check_choice, check_int, check_range, check_seed

__all__ = ["Config", "run", "figures", "summary", "RESULT_FILE", "gap_closed"]

RESULT_FILE = "results.nc"

_REGIONS = ("full", "left", "right", "top", "bottom")
#: relative training cost of one model-step of each kind (for scheduling the units)
_COST = {
    "cnn": 1.0,
    "shared-columns": 2.5,
    "lc-backprop": 2.7,
    "local": 2.2,
    "codistill": 3.0,
    "lc-backprop+codistill": 3.4,
}


def _flagship_baseline() -> BaselineConfig:
    """The flagship's budget: at most 2000 Adam steps of 32 images, i.e. with ``max_epochs = 50``
    fifty passes over every training set (1966 steps on all 1258 canvases). Every model kind's
    loss is flat over its last 20 % there; at 720 steps shared-columns and codistill were still
    falling and codistill's deficit against ``local`` looked 2-5x larger
    (docs/measurements/transfer/README.md, section 1)."""
    return BaselineConfig(steps=2000, batch_size=32, lr=1e-2)


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
            ``analyses.canvases.REGION_NAMES``).
        heldout_overlap: fraction of the canvas side the two regions share, in [0, 1).
        heldout_n_train: training canvases of the location-restricted split (0: all).
        wave_offsets_px: horizontal offsets (left edge of the digit, px) of the wave test sets
            of the location-restricted split, each in ``[0, canvas_px - digit_px]``.
        wave_n_test: test canvases per offset (0: one per test digit).
        wave_checkpoints: fractions of training, in (0, 1), after which the location-restricted
            models are also scored (the wave over training); the end is always scored.
        video: the video protocol: the location-restricted models also see unlabelled videos of
            digits that start in the training region and move right (:mod:`analyses.video`),
            ``baseline.unlabelled_batch_size`` per step; the kinds whose objective learns from
            videos use them (``codistill`` with its co-distillation and temporal terms), the
            others train as without (``local`` is then the same learner without the videos).
        video_mode: ``"drift"`` (``video_step_px`` per frame) or ``"saccade"`` (one jump of
            ``video_saccade_px``).
        video_frames: frames per video (>= 2), each held ``objective.steps_per_frame`` steps.
        video_step_px: drift per frame, in (0, 1] px.
        video_saccade_px: the possible jumps of a saccade (px).
        video_start_region: where the videos start (a region name; ``heldout_overlap`` applies).
        n_videos: unlabelled videos (0: one per training digit).
        max_epochs: a training set of ``n`` canvases trains for at most this many passes
            (``min(baseline.steps, ceil(max_epochs * n / batch_size))`` steps; 0: always
            ``baseline.steps``): small sets converge long before the full budget.
        convergence_tolerance: a model counts as converged when its training loss changed over
            its last 20 % of steps by less than this fraction of its whole decrease.
        workers: processes training at once (0: one per CPU core, at most one per unit).
        num_threads: torch CPU threads per process (0: leave torch's setting).
        baseline: the models' architecture, objective and training budget
            (:class:`analyses.baselines.BaselineConfig`, the ``[baseline]`` TOML table).
    """

    seed: int = 0
    n_seeds: int = 3
    models: tuple[str, ...] = DEFAULT_KINDS
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
    wave_offsets_px: tuple[int, ...] = (0, 3, 6, 9, 12)
    wave_n_test: int = 270
    wave_checkpoints: tuple[float, ...] = (0.5,)
    video: bool = False
    video_mode: str = "drift"
    video_frames: int = 8
    video_step_px: float = 1.0
    video_saccade_px: tuple[float, ...] = (2.0, 4.0, 6.0, 8.0)
    video_start_region: str = "left"
    n_videos: int = 0
    max_epochs: int = 50
    convergence_tolerance: float = 0.05
    workers: int = 0
    num_threads: int = 1
    baseline: BaselineConfig = dataclasses.field(default_factory=_flagship_baseline)

    def __post_init__(self) -> None:
        check_seed("seed", self.seed)
        check_seed("split_seed", self.split_seed)
        check_int("n_seeds", self.n_seeds, 1, 1000)
        _check_labels("models", self.models, MODEL_KINDS)
        _check_labels("retinas", self.retinas, RETINA_KINDS)
        if not self.n_train:
            raise ValueError("n_train must list at least one size (0 = all)")
        for i, n in enumerate(self.n_train):
            check_int(f"n_train[{i}]", n, 0, 100_000)
        if len(set(self.n_train)) != len(self.n_train):
            raise ValueError(f"n_train must not repeat a size; got {list(self.n_train)}")
        check_int("n_test", self.n_test, 0, 100_000)
        check_int("wave_n_test", self.wave_n_test, 0, 100_000)
        check_int("heldout_n_train", self.heldout_n_train, 0, 100_000)
        check_int("canvas_px", self.canvas_px, 1, 512)
        check_int("digit_px", self.digit_px, 1, self.canvas_px)
        # at least the cells one column reads, at most an ON and an OFF cell per pixel
        check_int("n_cells", self.n_cells, self.baseline.model.k_cells, 2 * self.canvas_px**2)
        check_range("pixels_per_deg", self.pixels_per_deg, 0.0, 1e3, lo_inclusive=False)
        check_range(
            "test_fraction", self.test_fraction, 0.0, 1.0, lo_inclusive=False, hi_inclusive=False
        )
        check_choice("heldout_train_region", self.heldout_train_region, _REGIONS)
        check_choice("heldout_test_region", self.heldout_test_region, _REGIONS)
        check_range("heldout_overlap", self.heldout_overlap, 0.0, 1.0, hi_inclusive=False)
        check_choice("video_mode", self.video_mode, ("drift", "saccade"))
        check_int("video_frames", self.video_frames, 2, 100)
        check_range("video_step_px", self.video_step_px, 0.0, 1.0, lo_inclusive=False)
        for i, j in enumerate(self.video_saccade_px):
            check_range(f"video_saccade_px[{i}]", j, 0.0, self.canvas_px, lo_inclusive=False)
        check_choice("video_start_region", self.video_start_region, _REGIONS)
        check_int("n_videos", self.n_videos, 0, 100_000)
        if self.video and not self.heldout:
            raise ValueError("video = true needs heldout = true (videos train the location split)")
        if not self.video and self.baseline.unlabelled_batch_size:
            raise ValueError(
                "baseline.unlabelled_batch_size must be 0 without video = true (the transfer "
                "experiment's only unlabelled data are its videos)"
            )
        if self.video and self.baseline.unlabelled_batch_size < 1:
            raise ValueError(
                "video = true needs baseline.unlabelled_batch_size >= 1 (videos per step)"
            )
        check_range(
            "convergence_tolerance", self.convergence_tolerance, 0.0, 10.0, lo_inclusive=False
        )
        check_int("max_epochs", self.max_epochs, 0, 100_000)
        check_int("workers", self.workers, 0, 256)
        check_int("num_threads", self.num_threads, 0, 256)
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
        for i, o in enumerate(self.wave_offsets_px):
            check_int(f"wave_offsets_px[{i}]", o, 0, self.canvas_px - self.digit_px)
        for i, f in enumerate(self.wave_checkpoints):
            check_range(
                f"wave_checkpoints[{i}]", f, 0.0, 1.0, lo_inclusive=False, hi_inclusive=False
            )

    @classmethod
    def quick(cls) -> Config:
        """The test-suite size — a smoke test of the whole pipeline, not a result: every model,
        both retinas, two sizes, two seeds, a few steps (seconds)."""
        return cls(
            n_seeds=2,
            models=MODEL_KINDS,
            n_train=(24, 48),
            n_test=48,
            canvas_px=16,
            digit_px=8,
            n_cells=128,
            heldout_n_train=48,
            wave_offsets_px=(0, 4, 8),
            wave_n_test=24,
            wave_checkpoints=(0.5,),
            workers=1,
            baseline=BaselineConfig.quick(steps=4, batch_size=16),
        )

    @property
    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.n_seeds)]


def _check_labels(name: str, values, allowed) -> None:
    if not values:
        raise ValueError(f"{name} must list at least one of {list(allowed)}")
    for i, v in enumerate(values):
        check_choice(f"{name}[{i}]", v, allowed)
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat a label; got {list(values)}")


def gap_closed(
    codistill: np.ndarray, lc_backprop: np.ndarray, cnn: np.ndarray, min_denominator: float
) -> np.ndarray:
    """``(codistill - lc_backprop) / (cnn - lc_backprop)``, NaN where the gap is too small.

    Element-wise on arrays of accuracies; NaN where ``|cnn - lc_backprop| < min_denominator`` or
    any input is NaN. (The results use :func:`analyses.intervals.gap_closed_interval`, which
    also gives an interval and tests the denominator's significance.)
    """
    c, lc, a = (np.asarray(v, dtype=float) for v in (codistill, lc_backprop, cnn))
    den = a - lc
    ok = np.isfinite(den) & (np.abs(den) >= max(float(min_denominator), 1e-12))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, (c - lc) / np.where(ok, den, 1.0), np.nan)


# ------------------------------------------------------------------------------------ running


@dataclasses.dataclass(frozen=True)
class _Canvases:
    """The canvases of a run: the full-canvas split, and the location-restricted one."""

    train: object
    test: object
    held_train: object | None = None
    held_test: object | None = None
    in_region: object | None = None
    offsets: dict | None = None
    videos: object | None = None


def _canvases(config: Config) -> _Canvases:
    from analyses.canvases import Region, canvas_split, make_canvas_dataset, offset_canvases
    from analyses.tasks import digits_split

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
        return _Canvases(full.train, full.test)
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
    offsets = offset_canvases(
        split.x_test,
        split.y_test,
        col_offsets_px=config.wave_offsets_px,
        n_images=config.wave_n_test or None,
        seed=config.split_seed + 3,
        **common,
    )
    videos = None
    if config.video:
        from analyses.video import moving_digits

        videos = moving_digits(
            split.x_train,
            split.y_train,
            n_frames=config.video_frames,
            step_px=config.video_step_px,
            mode=config.video_mode,
            start_region=Region.named(config.video_start_region, config.heldout_overlap),
            saccade_px=config.video_saccade_px,
            n_videos=config.n_videos or None,
            seed=config.split_seed + 4,
            **common,
        )
    return _Canvases(full.train, full.test, held.train, held.test, in_region, offsets, videos)


def _retina_jobs(config: Config, rk: str, cv: _Canvases, n_sizes: list[int]):
    """The retina of ``rk`` and the jobs it trains: ``[(key, Job)]`` with keys
    ``("full", retina, n, seed)`` and ``("held", retina, seed)``."""
    from analyses.baselines import Job, build_retina, retina_inputs
    from analyses.tasks import stratified_subset

    retina = build_retina(
        rk,
        n_cells=config.n_cells,
        canvas_px=config.canvas_px,
        pixels_per_deg=config.pixels_per_deg,
        seed=config.split_seed,
    )
    render = "lazy" if "cnn" in config.models else False  # rendered by the cnn's worker
    train = retina_inputs(retina, cv.train.images, cv.train.labels, render=render)
    scale = (train.scale, train.image_scale)

    def inputs(c):
        return retina_inputs(retina, c.images, c.labels, scale=scale, render=render)

    test = {"test": inputs(cv.test)}
    jobs = []
    for seed in config.seeds:
        order = stratified_subset(cv.train.labels, max(n_sizes), seed=seed)
        for n in n_sizes:
            jobs.append((("full", rk, n, seed), Job(retina, train.subset(order[:n]), test, seed)))
    if config.heldout:
        held_train = inputs(cv.held_train)
        tests = {"heldout": inputs(cv.held_test), "in_region": inputs(cv.in_region)}
        tests.update({f"offset_{o}": inputs(c) for o, c in cv.offsets.items()})
        video, video_weights = _video_inputs(config, retina, cv.videos, train.scale)
        for seed in config.seeds:
            job = Job(retina, held_train, tests, seed, video=video, video_weights=video_weights)
            jobs.append((("held", rk, seed), job))
    return jobs


def _video_inputs(config: Config, retina, videos, scale: float):
    """The videos' responses ``[V, F, n_cells]`` (scaled like the training inputs) and how much
    of the digit each column's input holds at each frame ``[V, F, C]``; Nones without videos."""
    if videos is None:
        return None, None
    import torch

    from analyses.video import column_object_weights
    from neurosim.model import Model

    n, f = videos.frames.shape[:2]
    flat = videos.frames.reshape(n * f, *videos.frames.shape[2:])
    resp = np.asarray(retina(flat), dtype=np.float64) / scale
    sheet = Model.from_retina(retina, config.baseline.model_config(shared=False, seed=0))
    cell_px = np.asarray(retina.deg_to_px(retina.positions_deg))
    weights = column_object_weights(sheet.cell_index.numpy(), cell_px, videos.masks)
    return (
        torch.as_tensor(resp.reshape(n, f, -1), dtype=torch.float32),
        torch.as_tensor(weights, dtype=torch.float32),
    )


def check(config: Config) -> None:
    """The checks that need the data (before any work): every training-set size fits the
    training canvases of the split."""
    from analyses.tasks import digits_split

    n_pool = len(digits_split(test_fraction=config.test_fraction, seed=config.split_seed).y_train)
    for i, n in enumerate(config.n_train):
        check_int(f"n_train[{i}]", n, 0, n_pool)
    check_int("heldout_n_train", config.heldout_n_train, 0, n_pool)


def _subrun_key(key) -> str:
    """A job key ``(kind, ("full", retina, n, seed) | ("held", retina, seed))`` as text."""
    kind, (group, rk, *rest) = key
    if group == "full":
        return f"{kind}/{rk}/n={rest[0]}/seed={rest[1]}"
    return f"{kind}/{rk}/location/seed={rest[0]}"


def job_steps(config: Config, n: int) -> int:
    """Training steps of a model trained on ``n`` canvases: ``baseline.steps``, capped at
    ``max_epochs`` passes over the data (0: no cap)."""
    b = config.baseline
    if not config.max_epochs:
        return b.steps
    return max(1, min(b.steps, math.ceil(config.max_epochs * n / b.batch_size)))


def _units(config: Config, cv: _Canvases, n_sizes: list[int]) -> list:
    """The units: per kind, the models of both retinas with the same number of steps (and, with
    videos, the location-restricted ones apart) trained together."""
    from analyses.runner import Unit

    groups: dict[tuple, list] = {}
    for rk in config.retinas:
        for key, job in _retina_jobs(config, rk, cv, n_sizes):
            n = key[2] if key[0] == "full" else len(job.train)
            video = config.video and key[0] == "held"
            groups.setdefault((job_steps(config, n), video), []).append((key, job))
    units = []
    for kind in config.models:
        for (steps, video), members in sorted(groups.items(), key=lambda g: -g[0][0]):
            keyed = [((kind, key), job) for key, job in members]
            cost = _COST.get(kind, 3.0) * len(members) * steps * (4.0 if video else 1.0)
            unit_config = dataclasses.replace(config.baseline, steps=steps)
            name = f"{kind}/{steps} steps" + ("/videos" if video else "")
            units.append(Unit(name, kind, keyed, cost=cost, config=unit_config))
    return units


def run(config: Config, *, device: str = "cpu", quiet: bool = False, store=None) -> xr.Dataset:
    """Train and score every model x retina x training-set size x seed; see the module doc.

    ``store`` (:class:`analyses.subruns.SubrunStore`, given by ``neurosim run``): every unit is
    kept as it finishes, and a unit already kept (an interrupted run) is not trained again; the
    result is the same as an uninterrupted run's.
    """
    import time

    from analyses.experiments.transfer_results import results_dataset
    from analyses.progress import Progress
    from analyses.runner import default_workers, run_units
    from neurosim.config import check_device

    if not isinstance(config, Config):
        raise ValueError(f"config must be a transfer Config; got {type(config).__name__}")
    device = check_device(device)
    check(config)
    cv = _canvases(config)
    n_pool = len(cv.train)
    n_sizes = sorted({n_pool if n == 0 else n for n in config.n_train})
    units = _units(config, cv, n_sizes)
    results, todo = {}, units
    if store is not None:
        store.plan([_subrun_key(key) for unit in units for key, _job in unit.jobs])
        store.begin()
        todo = []
        for unit in units:
            names = [_subrun_key(key) for key, _job in unit.jobs]
            if all(name in store for name in names):
                for (key, _job), name in zip(unit.jobs, names, strict=True):
                    results[key] = _from_arrays(store.get(name))
            else:
                todo.append(unit)
    n_jobs = sum(len(u.jobs) for u in units)
    kept = n_jobs - sum(len(u.jobs) for u in todo)
    workers = config.workers or default_workers(max(1, len(todo)))
    # the wave's checkpoints: fractions of the location-restricted models' training
    held_steps = job_steps(config, len(cv.held_train)) if config.heldout else config.baseline.steps
    checkpoints = sorted({max(1, round(f * held_steps)) for f in config.wave_checkpoints})
    start = time.perf_counter()
    with Progress(n_jobs, desc="transfer", quiet=quiet, initial=kept) as progress:

        def done(unit, res) -> None:
            if store is not None:
                store.put({_subrun_key(k): _to_arrays(r) for k, r in res.items()})
            accs = [r.accuracies.get("test", r.accuracies.get("heldout")) for r in res.values()]
            progress.update(unit.key, score=f"mean accuracy {np.mean(accs):.3f}", n=len(res))

        results.update(
            run_units(
                todo,
                config.baseline,
                workers=workers,
                device=device,
                checkpoints=checkpoints,
                threads=config.num_threads,
                on_done=done,
                on_wait=lambda keys: progress.heartbeat(f"{len(keys)} units left"),
            )
        )
    ds = results_dataset(config, n_sizes, results, checkpoints, held_steps)
    ds.attrs["workers"] = workers
    ds.attrs["train_wall_time_s"] = round(time.perf_counter() - start, 3)
    return ds


def _to_arrays(r) -> dict[str, np.ndarray]:
    """A :class:`analyses.runner.JobResult` as named arrays (for the sub-run store)."""
    out = {f"acc/{k}": np.float64(v) for k, v in r.accuracies.items()}
    for step, scores in r.checkpoint_accuracies.items():
        out.update({f"ckpt/{step}/{k}": np.float64(v) for k, v in scores.items()})
    out.update(
        final_loss=np.float64(r.final_loss),
        final_loss_change=np.float64(r.final_loss_change),
        loss_curve=np.asarray(r.loss_curve, dtype=np.float64),
        curve_steps=np.asarray(r.curve_steps, dtype=np.int64),
        train_seconds=np.float64(r.train_seconds),
        n_parameters=np.int64(r.n_parameters),
        n_parameters_per_column=np.float64(r.n_parameters_per_column),
    )
    return out


def _from_arrays(a) -> object:
    """The inverse of :func:`_to_arrays`."""
    from analyses.runner import JobResult

    ckpt: dict[int, dict[str, float]] = {}
    for name, v in a.items():
        if name.startswith("ckpt/"):
            _, step, test = name.split("/", 2)
            ckpt.setdefault(int(step), {})[test] = float(v)
    return JobResult(
        accuracies={n[4:]: float(v) for n, v in a.items() if n.startswith("acc/")},
        checkpoint_accuracies=ckpt,
        final_loss=float(a["final_loss"]),
        final_loss_change=float(a["final_loss_change"]),
        loss_curve=[float(v) for v in a["loss_curve"]],
        curve_steps=[int(v) for v in a["curve_steps"]],
        train_seconds=float(a["train_seconds"]),
        n_parameters=int(a["n_parameters"]),
        n_parameters_per_column=float(a["n_parameters_per_column"]),
    )


# ------------------------------------------------------------------------------------ output


def figures(ds: xr.Dataset, out_dir) -> list[Path]:
    """The transfer figures (:func:`analyses.experiments.transfer_figures.figures`)."""
    from analyses.experiments.transfer_figures import figures as draw

    return draw(ds, out_dir)


def summary(ds: xr.Dataset) -> str:
    """The accuracy table, convergence, gap closed, location split and wave
    (:func:`analyses.experiments.transfer_results.summary`)."""
    from analyses.experiments.transfer_results import summary as text

    return text(ds)
