"""Build and run the Brian2 network of a model: :func:`build_network`, :class:`BrianNetwork`."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import xarray as xr

from neurosim.brian.assemble import TERMS, assemble
from neurosim.brian.preferences import (
    brian_prefs,
    default_cache_dir,
    import_brian2,
    resolve_codegen,
)
from neurosim.brian.spec import ModelSpec, model_spec
from neurosim.config import check_seed
from neurosim.export import trajectory_dataset

__all__ = ["BrianNetwork", "build_network", "run", "relative_error"]


def _time_ms(name: str, value: Any) -> float:
    """A duration as float ms: a number (ms, as the name says) or a brian2 time Quantity."""
    b2 = import_brian2()
    if isinstance(value, b2.Quantity):
        if value.dim != b2.second.dim and not value.is_dimensionless:
            raise ValueError(
                f"{name} must be a time: a number in ms or a brian2 Quantity in time units "
                f"(e.g. 0.5*ms); got {value!r} (wrong units)"
            )
        value = float(value / b2.ms) if value.dim == b2.second.dim else float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number in ms or a brian2 time Quantity; got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be in (0, inf) ms; got {value!r}")
    return value


def _rate_hz(name: str, value: Any) -> float:
    """A rate as float Hz: a number (Hz) or a brian2 Quantity in Hz."""
    b2 = import_brian2()
    if isinstance(value, b2.Quantity) and value.dim != b2.Hz.dim:
        raise ValueError(
            f"{name} must be a rate: a number in Hz or a brian2 Quantity in Hz; got {value!r}"
        )
    if isinstance(value, b2.Quantity):
        value = float(value / b2.Hz)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number in Hz; got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be in [0, inf) Hz; got {value!r}")
    return value


@dataclasses.dataclass
class BrianNetwork:
    """A built Brian2 network of a neurosim model, ready to :meth:`run`.

    Attributes:
        network: the ``brian2.Network``.
        levels: one ``NeuronGroup`` per level (``C * dim[l]`` neurons, ``column * dim[l] + unit``).
        cells: the retina ``NeuronGroup`` (``rate``: cell response).
        hidden: ``{net name: [NeuronGroup per hidden layer]}``.
        synapses: ``{net name: [Synapses per layer]}`` (plus ``"retina"`` with an image input).
        monitors: one ``StateMonitor`` of ``r`` per level.
        term_monitors: one ``StateMonitor`` of the four terms per level (empty unless
            ``record_terms``).
        spikes: ``SpikeMonitor`` of the Poisson cells, or None.
        namespace: the equations' external names (GELU, ``TimedArray`` inputs), passed to
            ``Network.run``.
        spec: the :class:`~neurosim.brian.spec.ModelSpec` the network was built from.
        initial_state: ``[C, L, D]``, the state at time 0.
        betas: ``[n_steps]``, the attention inverse temperature of each step.
        n_steps, dt_ms, duration_ms: the run (ms).
        codegen: the code generation target used (``"cython"`` or ``"numpy"``).
        cache_dir: the Cython cache directory.
        seed: Brian2's seed for the Poisson cells.
        build_s: wall time of the build (includes code generation for ``connect``), s.
        run_s: wall time of the run (s; NaN before it).
    """

    network: Any
    levels: list[Any]
    cells: Any
    hidden: dict[str, list[Any]]
    synapses: dict[str, list[Any]]
    monitors: list[Any]
    term_monitors: list[Any]
    spikes: Any
    namespace: dict[str, Any]
    spec: Any
    initial_state: np.ndarray
    betas: np.ndarray
    n_steps: int
    dt_ms: float
    duration_ms: float
    codegen: str
    cache_dir: Path
    seed: int
    build_s: float = 0.0
    run_s: float = float("nan")
    _has_run: bool = False

    def run(self, *, quiet: bool = True) -> xr.Dataset:
        """Simulate ``duration_ms`` and return the trajectory.

        A network runs once; build a new one for another run. Returns the layout of the torch
        engine's :func:`neurosim.export.settled_dataset`: ``rate [time (n_steps + 1),
        stimulus (1), column, level, unit]`` with coords ``time_ms``, ``x_deg``, ``y_deg``,
        ``level_mask`` (see :func:`neurosim.export.trajectory_dataset`); the terms
        ``bottom_up``, ``top_down``, ``lateral``, ``consensus`` ``[step (n_steps), stimulus,
        column, level, unit]`` if recorded; ``spike_count [cell]`` and ``spike_rate_hz
        [cell]`` (Hz) with Poisson cells. Attributes: ``engine``, ``codegen`` (the target
        used), ``dt_ms``, ``duration_ms``, ``n_steps``, ``build_s``, ``run_s``.
        """
        if self._has_run:
            raise RuntimeError("this BrianNetwork has already run; build a new one")
        b2 = import_brian2()
        report = None
        bar = None
        if not quiet:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.n_steps, desc="brian2", unit="step", disable=None)

            def report(elapsed, completed, start, duration):  # noqa: ARG001
                bar.n = int(round(float(completed) * self.n_steps))
                bar.refresh()

        with brian_prefs(self.codegen, self.cache_dir):
            if self.spikes is not None:
                # Brian2 has one global generator (numpy's and the generated code's)
                b2.seed(self.seed)
            t0 = time.perf_counter()
            self.network.run(
                self.duration_ms * b2.ms,
                namespace=dict(self.namespace),
                report=report,
                report_period=1 * b2.second,
            )
            self.run_s = time.perf_counter() - t0
        if bar is not None:
            bar.n = self.n_steps
            bar.close()
        self._has_run = True
        return self._dataset()

    # .................................................................................
    def _levels_array(self, values: list[np.ndarray]) -> np.ndarray:
        """Per-level recordings ``[T, C * dim[l]]`` -> ``[T, 1, C, L, D]`` (one stimulus),
        smaller levels zero-padded as the torch state."""
        spec = self.spec
        n_t = values[0].shape[0]
        out = np.zeros((n_t, 1, spec.n_columns, spec.n_levels, spec.dim))
        for lv, (rec, d_lv) in enumerate(zip(values, spec.level_dims, strict=True)):
            out[:, 0, :, lv, :d_lv] = np.asarray(rec).reshape(n_t, spec.n_columns, d_lv)
        return out

    def _dataset(self) -> xr.Dataset:
        """The run as :func:`neurosim.export.trajectory_dataset` (the torch layout), plus the
        recorded terms, the Poisson spike counts and the run's attributes."""
        n = self.n_steps
        recorded = []
        for lv, (grp, mon) in enumerate(zip(self.levels, self.monitors, strict=True)):
            rec = np.asarray(mon.variables["r"].get_value())  # [n, C * dim[l]], times 0..n-1
            if rec.shape[0] != n:
                raise RuntimeError(f"level {lv} recorded {rec.shape[0]} steps, expected {n}")
            final = np.asarray(grp.variables["r"].get_value())[None]  # the state at time n
            recorded.append(np.concatenate([rec, final]))
        terms = {
            term: self._levels_array(
                [mon.variables[term].get_value() for mon in self.term_monitors]
            )
            for term in (TERMS if self.term_monitors else ())
        }
        ds = trajectory_dataset(
            self._levels_array(recorded),
            self.dt_ms,
            self.spec.positions_deg,
            level_dims=self.spec.level_dims,
            name="rate",
            long_name="level embedding rate r (Brian2)",
            terms=terms,
        )
        if self.spikes is not None:
            counts = np.asarray(self.spikes.count[:], dtype=np.int64)
            ds["spike_count"] = xr.DataArray(
                counts,
                dims=("cell",),
                attrs={"units": "1", "long_name": "Poisson spikes per retina cell"},
            )
            ds["spike_rate_hz"] = xr.DataArray(
                counts / (self.duration_ms * 1e-3),
                dims=("cell",),
                attrs={"units": "Hz", "long_name": "Poisson firing rate per retina cell"},
            )
        ds.attrs.update(
            engine="brian2",
            codegen=self.codegen,
            dt_ms=self.dt_ms,
            duration_ms=self.duration_ms,
            n_steps=self.n_steps,
            build_s=self.build_s,
            run_s=self.run_s,
        )
        return ds


def relative_error(a: np.ndarray, b: np.ndarray, *, axis: int = 0) -> np.ndarray:
    """Per-entry-of-``axis`` relative error ``max|a - b| / max|b|`` (b the reference)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape; got {a.shape} and {b.shape}")
    other = tuple(i for i in range(a.ndim) if i != axis % a.ndim)
    num = np.abs(a - b).max(axis=other)
    den = np.abs(b).max(axis=other)
    return num / np.maximum(den, np.finfo(np.float64).tiny)


def _inputs_to_frames(name: str, values: Any, n_per_frame: int, shape_hint: str) -> np.ndarray:
    """``[n]`` or ``[T, n]`` (numpy or torch) -> float64 ``[T, n]``."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != n_per_frame:
        raise ValueError(f"{name} must have shape {shape_hint}; got {tuple(np.shape(values))}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def _steps(spec: ModelSpec, dt_ms: Any, duration_ms: Any) -> tuple[float, int]:
    """The Euler step (ms, the model's) and the number of steps of the run."""
    dt = spec.dt_ms if dt_ms is None else _time_ms("dt_ms", dt_ms)
    if not math.isclose(dt, spec.dt_ms, rel_tol=1e-12, abs_tol=0.0):
        raise ValueError(
            f"dt_ms must equal the model's dynamics.dt_ms = {spec.dt_ms:g} ms (the same Euler "
            f"step as the torch engine); got {dt:g} ms"
        )
    default_duration = spec.dynamics.n_steps * dt
    duration = default_duration if duration_ms is None else _time_ms("duration_ms", duration_ms)
    n_steps = int(round(duration / dt))
    if n_steps < 1 or not math.isclose(n_steps * dt, duration, rel_tol=1e-9):
        raise ValueError(
            f"duration_ms must be a positive multiple of dt_ms = {dt:g} ms; got {duration:g} ms"
        )
    return dt, n_steps


def _stimulus_frames(
    spec: ModelSpec, responses: Any, image: Any, retina: Any, n_steps: int
) -> np.ndarray:
    """The stimulus as float64 frames: ``[n_frames, n_cells]`` responses, or ``[n_frames,
    H*W]`` luminances of ``image`` (checked against ``retina``), ``1 <= n_frames <= n_steps``."""
    if (responses is None) == (image is None):
        raise ValueError("give exactly one of responses or image")
    if image is None:
        frames = _inputs_to_frames(
            "responses", responses, spec.n_cells, f"[{spec.n_cells}] or [n_frames, {spec.n_cells}]"
        )
    else:
        if retina is None:
            raise ValueError("image needs retina= (the Retina whose operator maps pixels to cells)")
        h, w = retina.image_shape
        if retina.n_cells != spec.n_cells:
            raise ValueError(
                f"retina must have the model's {spec.n_cells} cells; got {retina.n_cells}"
            )
        img = image.detach().cpu().double().numpy() if hasattr(image, "detach") else image
        img = np.asarray(img, dtype=np.float64)
        if img.ndim not in (2, 3) or img.shape[-2:] != (h, w):
            raise ValueError(
                f"image must have shape [{h}, {w}] or [n_frames, {h}, {w}] (the retina's "
                f"image_shape); got {tuple(img.shape)}"
            )
        frames = _inputs_to_frames(
            "image",
            img.reshape(*img.shape[:-2], h * w),
            h * w,
            f"[{h}, {w}] or [n_frames, {h}, {w}]",
        )
    if frames.shape[0] > n_steps:
        raise ValueError(
            f"the number of frames must be in [1, n_steps={n_steps}]; got {frames.shape[0]}"
        )
    return frames


def _initial_state(
    model: Any,
    spec: ModelSpec,
    initial_state: Any,
    frames: np.ndarray,
    retina: Any,
    is_image: bool,
) -> np.ndarray:
    """The state at time 0, ``[C, L, D]`` float64: ``initial_state`` if given, else the
    model's own :meth:`~neurosim.model.Model.initial_state` of the first frame (zeros, or one
    bottom-up pass, as ``config.init``), computed in float64 on the CPU like the network."""
    c, n_lv, d = spec.n_columns, spec.n_levels, spec.dim
    if initial_state is not None:
        if hasattr(initial_state, "detach"):
            initial_state = initial_state.detach().cpu().double().numpy()
        x0 = np.array(initial_state, dtype=np.float64)
        if x0.shape != (c, n_lv, d):
            raise ValueError(
                f"initial_state must have shape [{c}, {n_lv}, {d}]; got {tuple(x0.shape)}"
            )
        return x0
    first = np.asarray(retina.operator @ frames[0], dtype=np.float64) if is_image else frames[0]
    floats = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    if not all(t.dtype == torch.float64 and t.device.type == "cpu" for t in floats):
        model = copy.deepcopy(model).to(device="cpu", dtype=torch.float64)
    with torch.no_grad():
        return model.initial_state(torch.from_numpy(first)[None])[0].numpy()


def build_network(
    model: Any,
    responses: Any = None,
    *,
    image: Any = None,
    retina: Any = None,
    duration_ms: Any = None,
    dt_ms: Any = None,
    codegen: str = "cython",
    cache_dir: str | Path | None = None,
    initial_state: Any = None,
    record_terms: bool = False,
    poisson_gain_hz: Any = None,
    seed: int = 0,
) -> BrianNetwork:
    """Build the Brian2 network of ``model`` driven by one stimulus.

    Args:
        model: a trained :class:`neurosim.model.Model` with unshared weights.
        responses: retina responses ``[n_cells]`` (a static image: a boring video) or frames
            ``[n_frames, n_cells]`` (frame t drives step t, the last one is held), numpy or
            torch; fed to the cells through a ``TimedArray``. Exclusive with ``image``.
        image: ``[H, W]`` or frames ``[n_frames, H, W]``: pixel luminances from a ``TimedArray``
            drive the cells through ``Synapses`` holding ``retina.operator``.
        retina: the :class:`retina.Retina` whose cells the model reads (needed with ``image``).
        duration_ms: simulated time, a positive multiple of dt (number in ms or brian2 time
            Quantity); default ``n_steps * dt_ms`` of the model's dynamics.
        dt_ms: Euler step; must equal the model's ``dynamics.dt_ms`` (default: that value).
        codegen: ``"cython"`` (default), ``"numpy"`` or ``"auto"`` (see
            :mod:`neurosim.brian.preferences`).
        cache_dir: Cython cache directory (default: this process's own, :func:`default_cache_dir`).
        initial_state: ``[n_columns, n_levels, dim]``; default the model's own
            ``initial_state`` of the first frame (zeros, or one bottom-up pass, as its
            ``config.init``), in float64.
        record_terms: also record ``bottom_up``, ``top_down``, ``lateral``, ``consensus`` of
            every step.
        poisson_gain_hz: add Poisson spiking cells firing at ``gain * max(response, 0)`` Hz
            (None: no spiking cells).
        seed: Brian2's random seed for the Poisson cells (``brian2.seed``, set before the run;
            Brian2 has a single global generator, so this also reseeds numpy's global one).

    Returns:
        :class:`BrianNetwork`.

    Raises:
        ValueError: bad arguments (naming the argument and the allowed range), a weight-shared
            model, a dt different from the model's, a duration that is not a multiple of dt, a
            Quantity without time units.
        RuntimeError: ``codegen="cython"`` without a working compiler.
    """
    b2 = import_brian2()
    spec, drive = _drive(
        model, responses, image, retina, dt_ms, duration_ms, initial_state, poisson_gain_hz, seed
    )
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    target = resolve_codegen(codegen, cache)
    return _assemble_network(b2, spec, drive, record_terms, target, cache, seed)


class _Drive(NamedTuple):
    """What drives a run: time step, steps, Poisson gain, stimulus, initial state, betas."""

    dt: float
    n_steps: int
    gain_hz: float | None
    frames: np.ndarray
    is_image: bool
    retina: Any
    x0: np.ndarray
    betas: np.ndarray


def _drive(
    model: Any,
    responses: Any,
    image: Any,
    retina: Any,
    dt_ms: Any,
    duration_ms: Any,
    initial_state: Any,
    poisson_gain_hz: Any,
    seed: int,
) -> tuple[ModelSpec, _Drive]:
    """:func:`build_network`'s model spec and checked run arguments, in the order it checks them."""
    spec = model_spec(model)
    dt, n_steps = _steps(spec, dt_ms, duration_ms)
    check_seed("seed", seed)
    gain_hz = None if poisson_gain_hz is None else _rate_hz("poisson_gain_hz", poisson_gain_hz)
    frames = _stimulus_frames(spec, responses, image, retina, n_steps)
    is_image = image is not None
    x0 = _initial_state(model, spec, initial_state, frames, retina, is_image)
    betas = np.array([spec.dynamics.beta_at(t, n_steps) for t in range(n_steps)], dtype=np.float64)
    return spec, _Drive(dt, n_steps, gain_hz, frames, is_image, retina, x0, betas)


def _assemble_network(
    b2: Any,
    spec: ModelSpec,
    drive: _Drive,
    record_terms: bool,
    target: str,
    cache: Path,
    seed: int,
) -> BrianNetwork:
    """The Brian2 objects of ``spec`` assembled (and timed) into a :class:`BrianNetwork`."""
    t0 = time.perf_counter()
    # Build with the numpy target: ``Synapses.connect`` runs its generated code once, at build
    # time, so compiling it with Cython would cost one compilation per Synapses for nothing.
    # The code objects of the simulation itself are created at run time, under ``target``.
    with brian_prefs("numpy", cache):
        objects = assemble(
            b2,
            spec,
            dt_ms=drive.dt,
            frames=drive.frames,
            is_image=drive.is_image,
            retina=drive.retina,
            x0=drive.x0,
            betas=drive.betas,
            record_terms=record_terms,
            gain_hz=drive.gain_hz,
        )
    return BrianNetwork(
        **objects,
        n_steps=drive.n_steps,
        dt_ms=drive.dt,
        duration_ms=drive.n_steps * drive.dt,
        codegen=target,
        cache_dir=cache,
        seed=seed,
        build_s=time.perf_counter() - t0,
        spec=spec,
        initial_state=drive.x0,
        betas=drive.betas,
    )


def run(model: Any, responses: Any = None, *, quiet: bool = True, **kwargs: Any) -> xr.Dataset:
    """Build (see :func:`build_network`, same arguments) and run; return the Dataset.

    ``rate [time, stimulus, column, level, unit]`` with ``n_steps + 1`` times from 0 by
    ``dt_ms`` and one stimulus (see :meth:`BrianNetwork.run`).
    """
    net = build_network(model, responses, **kwargs)
    return net.run(quiet=quiet)
