"""Parameter sweeps on Dask: ``neurosim sweep SWEEP.toml``.

A sweep runs one experiment (see :mod:`analyses.experiments`) over a grid of config values and
seeds. Every run is one Dask task that writes its own NetCDF file atomically; the files are then
combined into one :class:`xarray.Dataset` with one dimension per varied field (and ``seed``).

::

    neurosim sweep SWEEP.toml [--out DIR] [--workers N | --scheduler ADDRESS] [--dry-run] [--quiet]
    neurosim sweep --combine DIR

The sweep file
--------------
::

    experiment = "transfer"         # a registered experiment name, or "package.module[:object]"
    quick = true                    # start from Config.quick() instead of Config() (default false)
    seeds = [0, 1, 2]               # one run per seed per grid point (default: the config's seed)
    device = "cpu"                  # handed to run(config, device=...) ("cpu", "cuda", "cuda:N")
    torch_threads = 1               # torch threads per worker process (default 1)
    zip_dim = "zip"                 # name of the dimension of the [zip] group (default "zip")

    [base]                          # overrides applied to every run
    steps = 200
    model.n_levels = 3              # dotted keys (or TOML sub-tables) reach nested fields

    [vary]                          # field -> list of values; the runs are the product of all lists
    lr = [0.01, 0.001]
    "model.dim" = [16, 32]

    [zip]                           # fields -> equal-length lists, varied together (one dimension)
    n_train = [100, 1000]
    batch_size = [10, 100]

Runs = product([vary] lists) x zip entries x seeds. Each run's config is
``Config.quick()`` (or ``Config()``), updated with ``[base]``, then with the run's values, then with
its seed. The whole file is validated before any work starts: unknown top-level keys, unknown
config fields and bad values of any run raise ``ValueError`` naming the file, the table and the
field. ``seed`` is set through ``seeds``, never through ``[base]``, ``[vary]`` or ``[zip]``.

``experiment`` may name an importable module (``"mylab.my_experiment"``) or an object in one
(``"mylab.experiments:Fancy"``) following the experiment protocol (``Config`` with ``seed`` and
``quick()``, ``run(config, *, device, quiet) -> xarray.Dataset``): this is the hook for
experiments that are not in the registry (the tests use it for a small fake experiment). The
module must be importable on every worker.

Output directory
----------------
``DIR/sweep.toml``
    a copy of the sweep file (``--combine DIR`` reads it).
``DIR/runs/<run_id>.nc``
    one file per finished run, with provenance attributes (its full config as TOML, seed, ...).
    ``run_id`` is deterministic and readable, e.g. ``lr=0.01__model.dim=16__seed=0``; a short
    hash is appended when a value does not print as a safe file name.
``DIR/runs/<run_id>.error.txt``
    the traceback of a failed run (removed when the run later succeeds).
``DIR/sweep.nc``
    the combined Dataset: dims ``(*vary fields, zip_dim, seed, *the runs' own dims)``, with
    ``completed`` (1 where the run finished, else 0 and NaN data) and ``run_id``. An experiment
    whose results already have a ``seed`` dimension (it runs ``seed .. seed + n_seeds - 1``
    itself, as ``codistill-nets`` and ``distill`` do) has its runs joined along that dimension:
    use ``n_seeds = 1`` in ``[base]`` (or seeds spaced by ``n_seeds``), overlapping seeds are
    refused.

A finished run (its file exists and opens) is never redone: re-running the same command after a
crash, Ctrl-C or ``kill`` resumes with the missing and failed runs only. If a finished file was
made with a different config (e.g. ``[base]`` was edited), the sweep refuses to start and names
the file and the field. Run one sweep process per ``DIR`` at a time.

Workers
-------
Without ``--scheduler`` a :class:`dask.distributed.LocalCluster` of ``--workers N`` processes with
one thread each is started (default: ``cpu_count // torch_threads``, at most one per run) and its
dashboard address is printed. ``--scheduler ADDRESS`` connects to a running scheduler instead
(e.g. one started by dask-jobqueue on SLURM; see the README section "Running a sweep on a
cluster"). Each worker process, through a worker plugin and again at the start of every task,
sets ``torch.set_num_threads(torch_threads)`` (plus ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``) and
its own Brian2 code cache: ``CYTHON_CACHE_DIR=DIR/.cache/brian2/worker-<name>`` and Brian2's
``prefs.codegen.runtime.cython.cache_dir`` (its subfolder ``brian_extensions``, Brian2's default
layout). The plugin imports Brian2 in each worker's main thread when the worker starts: Brian2
installs a SIGINT handler on import, which Python allows only in the main thread, and Dask runs
tasks in other threads (an experiment importing Brian2 inside a task would fail otherwise).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import importlib
import importlib.util
import itertools
import json
import os
import re
import signal
import sys
import time
import tomllib
import traceback
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from neurosim.atomic import atomic_write_text
from neurosim.export import open_results, to_netcdf

__all__ = [
    "Run",
    "Sweep",
    "SweepReport",
    "parse_sweep",
    "load_sweep",
    "resolve_experiment",
    "run_status",
    "run_sweep",
    "combine_runs",
    "start_local_cluster",
    "default_workers",
    "add_sweep_parser",
    "run_sweep_command",
    "main",
]

TOP_LEVEL_KEYS = ("experiment", "quick", "seeds", "device", "torch_threads", "zip_dim")
TABLE_KEYS = ("base", "vary", "zip")
SWEEP_FILE = "sweep.toml"
COMBINED_FILE = "sweep.nc"
RUNS_DIR = "runs"
MAX_READABLE_ID = 150
_SAFE_TEXT = re.compile(r"^[A-Za-z0-9_.+\-]+$")
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


# --------------------------------------------------------------------------- the sweep file


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of a sweep: its id, the varied values, its seed and its validated config.

    ``index`` is the run's position in the grid ``(*vary, zip, seed)`` (the zip entry only when
    the sweep has a ``[zip]`` group).
    """

    run_id: str
    values: dict[str, Any]
    seed: int
    index: tuple[int, ...]
    config: Any

    def nc_path(self, out_dir: str | Path) -> Path:
        return Path(out_dir) / RUNS_DIR / f"{self.run_id}.nc"

    def error_path(self, out_dir: str | Path) -> Path:
        return Path(out_dir) / RUNS_DIR / f"{self.run_id}.error.txt"


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A validated sweep file: the experiment, the grid and every run's config."""

    experiment: str
    quick: bool
    seeds: tuple[int, ...]
    device: str
    torch_threads: int
    zip_dim: str
    base: dict[str, Any]
    vary: dict[str, list[Any]]
    zip: dict[str, list[Any]]
    text: str
    source: str
    runs: tuple[Run, ...]

    @property
    def dims(self) -> list[str]:
        """The sweep dimensions, in order: the [vary] fields, the zip dim (if any), ``seed``."""
        return [*self.vary, *([self.zip_dim] if self.zip else []), "seed"]

    @property
    def shape(self) -> tuple[int, ...]:
        zip_len = [len(next(iter(self.zip.values())))] if self.zip else []
        return (*(len(v) for v in self.vary.values()), *zip_len, len(self.seeds))

    def coords(self) -> dict[str, list[Any]]:
        """Coordinate values of each sweep dimension (values as stored in NetCDF)."""
        out = {name: _coord_values(values) for name, values in self.vary.items()}
        if self.zip:
            out[self.zip_dim] = list(range(len(next(iter(self.zip.values())))))
        out["seed"] = list(self.seeds)
        return out


@dataclasses.dataclass
class SweepReport:
    """What :func:`run_sweep` did. ``failed`` maps run ids to their error line."""

    n_runs: int
    n_skipped: int
    n_ran: int = 0
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    interrupted: bool = False
    combined: Path | None = None
    dashboard: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted


def resolve_experiment(spec: str) -> Any:
    """The experiment module (or object) named by ``spec``.

    ``spec`` is a registered name (:data:`analyses.experiments.EXPERIMENTS`) or an importable
    ``"package.module"`` / ``"package.module:object"`` following the experiment protocol.
    """
    from analyses.experiments import EXPERIMENTS, available, get_experiment

    if not isinstance(spec, str) or not spec:
        raise ValueError(f"experiment must be a non-empty string; got {spec!r}")
    if spec in EXPERIMENTS:
        return get_experiment(spec)
    if "." not in spec and ":" not in spec:
        raise ValueError(
            f"experiment must be one of {available()} or an importable "
            f"'package.module[:object]'; got {spec!r}"
        )
    module_name, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"experiment {spec!r}: cannot import {module_name!r} ({err})") from None
    for part in filter(None, attr.split(".")):
        if not hasattr(obj, part):
            raise ValueError(f"experiment {spec!r}: {module_name!r} has no attribute {part!r}")
        obj = getattr(obj, part)
    missing = [name for name in ("Config", "run") if not hasattr(obj, name)]
    if missing:
        raise ValueError(
            f"experiment {spec!r} lacks {', '.join(missing)} (see the protocol in "
            "analyses.experiments)"
        )
    return obj


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"dim": 3}}`` -> ``{"model.dim": 3}`` (leaves are non-table values)."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"model.dim": 3}`` -> ``{"model": {"dim": 3}}``; the inverse of :func:`_flatten`."""
    out: dict[str, Any] = {}
    for name, value in flat.items():
        parts = name.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"{'.'.join(parts[: i + 1])} is set both as a value and a table")
            node = child
        if parts[-1] in node and isinstance(node[parts[-1]], dict):
            raise ValueError(f"{name} is set both as a value and a table")
        node[parts[-1]] = value
    return out


def _looks_like_literal(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return text.lower() in ("nan", "inf", "-inf", "+inf", "infinity")
    return True


def _render(value: Any) -> tuple[str, bool]:
    """A file-name-safe rendering of ``value`` and whether it is unambiguous."""
    if isinstance(value, bool):
        return ("true" if value else "false"), True
    if isinstance(value, int):
        return str(value), True
    if isinstance(value, float):
        return repr(value), True
    if isinstance(value, str):
        lossless = bool(_SAFE_TEXT.match(value)) and not _looks_like_literal(value)
        return re.sub(r"[^A-Za-z0-9_.+\-]+", "-", value).strip("-") or "empty", lossless
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return re.sub(r"[^A-Za-z0-9_.+\-]+", "-", text).strip("-") or "empty", False


def make_run_id(values: Mapping[str, Any], seed: int) -> str:
    """Deterministic, readable id of a run: ``field=value__...__seed=S``.

    A short hash of the exact values is appended when a value does not render unambiguously as
    a safe file name (strings with odd characters, lists, tables) or the id would be too long.
    """
    parts = []
    lossless = True
    for name, value in values.items():
        text, exact = _render(value)
        lossless &= exact
        parts.append(f"{name}={text}")
    parts.append(f"seed={seed}")
    readable = "__".join(parts)
    if lossless and len(readable) <= MAX_READABLE_ID:
        return readable
    digest = hashlib.sha1(
        json.dumps({"values": values, "seed": seed}, sort_keys=True, default=str).encode()
    ).hexdigest()[:8]
    return f"{readable[:MAX_READABLE_ID]}-{digest}"


def _coord_value(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True)


def _coord_values(values: list[Any]) -> list[Any]:
    out = [_coord_value(v) for v in values]
    kinds = {type(v) for v in out}
    if kinds <= {int, float} and float in kinds:
        return [float(v) for v in out]
    if len(kinds) > 1:
        return [str(v) for v in out]
    return out


def _check_value_list(where: str, name: str, values: Any) -> list[Any]:
    if not isinstance(values, list) or not values:
        raise ValueError(f"{where} {name} must be a non-empty list of values; got {values!r}")
    coords = _coord_values(values)
    if len(set(map(repr, coords))) != len(coords):
        raise ValueError(f"{where} {name} has repeated values: {values!r}")
    return values


def parse_sweep(text: str, *, source: str = "SWEEP.toml") -> Sweep:
    """Parse and validate a sweep file's text; ``ValueError`` names the file, table and field.

    Every run's config is built (and so validated by the experiment's ``Config``) here, before
    any work starts.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{source}: not valid TOML: {err}") from None
    allowed = (*TOP_LEVEL_KEYS, *TABLE_KEYS)
    for key in data:
        if key not in allowed:
            raise ValueError(
                f"{source}: unknown sweep key {key!r}; allowed keys: {', '.join(allowed)}"
            )
    if "experiment" not in data:
        raise ValueError(f'{source}: experiment is required (e.g. experiment = "transfer")')
    try:
        module = resolve_experiment(data["experiment"])
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None
    experiment = data["experiment"]

    quick = data.get("quick", False)
    if not isinstance(quick, bool):
        raise ValueError(f"{source}: quick must be true or false; got {quick!r}")
    device = data.get("device", "cpu")
    if not isinstance(device, str) or not _DEVICE.match(device):
        raise ValueError(f"{source}: device must be 'cpu', 'cuda' or 'cuda:N'; got {device!r}")
    threads = data.get("torch_threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"{source}: torch_threads must be an integer >= 1; got {threads!r}")
    zip_dim = data.get("zip_dim", "zip")
    if not isinstance(zip_dim, str) or not _NAME.match(zip_dim):
        raise ValueError(f"{source}: zip_dim must be a name like 'zip'; got {zip_dim!r}")

    tables = {}
    for key in TABLE_KEYS:
        table = data.get(key, {})
        if not isinstance(table, dict):
            raise ValueError(f"{source}: {key} must be a table ([{key}]); got {table!r}")
        tables[key] = _flatten(table)
    base, vary, zipped = tables["base"], tables["vary"], tables["zip"]
    for key, table in tables.items():
        if "seed" in table:
            raise ValueError(
                f"{source}: [{key}] seed: set seeds with the top-level key seeds = [...]"
            )
    for name in vary:
        _check_value_list(f"{source}: [vary]", name, vary[name])
    for name in zipped:
        _check_value_list(f"{source}: [zip]", name, zipped[name])
    lengths = {name: len(values) for name, values in zipped.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{source}: [zip] lists must have equal lengths; got {lengths}")
    for name in vary:
        if name in zipped:
            raise ValueError(f"{source}: field {name} is in both [vary] and [zip]")
    for name in (*vary, *zipped):
        if name in base:
            raise ValueError(f"{source}: field {name} is in [base] and also varied")
    if zipped and (zip_dim in vary or zip_dim == "seed"):
        raise ValueError(f"{source}: zip_dim {zip_dim!r} clashes with a varied field or seed")

    Config = module.Config
    if "seed" not in Config.field_names():
        raise ValueError(f"{source}: experiment {experiment!r} Config has no seed field")
    if quick and not hasattr(Config, "quick"):
        raise ValueError(f"{source}: quick = true but {experiment!r} Config has no quick()")
    try:
        start = Config.quick() if quick else Config()
    except ValueError as err:
        raise ValueError(f"{source}: default config of {experiment!r} is invalid: {err}") from None
    try:
        cfg_base = start.updated(_nest(base))
    except ValueError as err:
        raise ValueError(f"{source}: [base] {err}") from None
    raw_seeds = data.get("seeds", [cfg_base.seed])
    if (
        not isinstance(raw_seeds, list)
        or not raw_seeds
        or any(isinstance(s, bool) or not isinstance(s, int) for s in raw_seeds)
    ):
        raise ValueError(f"{source}: seeds must be a non-empty list of integers; got {raw_seeds!r}")
    if len(set(raw_seeds)) != len(raw_seeds):
        raise ValueError(f"{source}: seeds has repeated values: {raw_seeds!r}")
    for seed in raw_seeds:
        try:
            cfg_base.updated({"seed": seed})
        except ValueError as err:
            raise ValueError(f"{source}: seeds = {seed!r}: {err}") from None

    vary_axes = [list(enumerate(values)) for values in vary.values()]
    zip_len = len(next(iter(zipped.values()))) if zipped else 0
    zip_axis = [[(i, None) for i in range(zip_len)]] if zipped else []
    runs = []
    for combo in itertools.product(*vary_axes, *zip_axis, list(enumerate(raw_seeds))):
        index = tuple(i for i, _ in combo)
        values = {name: value for name, (_, value) in zip(vary, combo, strict=False)}
        if zipped:
            z = index[len(vary)]
            values.update({name: entries[z] for name, entries in zipped.items()})
        seed = combo[-1][1]
        run_id = make_run_id(values, seed)
        try:
            cfg = cfg_base.updated(_nest(values)).updated({"seed": seed})
        except ValueError as err:
            for name, value in values.items():  # name the one value that is bad on its own
                try:
                    cfg_base.updated(_nest({name: value}))
                except ValueError as alone:
                    table = "vary" if name in vary else "zip"
                    raise ValueError(f"{source}: [{table}] {name} = {value!r}: {alone}") from None
            raise ValueError(f"{source}: run {run_id}: {err}") from None
        runs.append(Run(run_id=run_id, values=values, seed=seed, index=index, config=cfg))
    ids = [run.run_id for run in runs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"{source}: two runs share the id {dup!r}; make the values distinct")
    return Sweep(
        experiment=experiment,
        quick=quick,
        seeds=tuple(raw_seeds),
        device=device,
        torch_threads=threads,
        zip_dim=zip_dim,
        base=base,
        vary=vary,
        zip=zipped,
        text=text,
        source=source,
        runs=tuple(runs),
    )


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file (see the module docstring for its format)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"sweep file {str(path)!r} does not exist")
    return parse_sweep(path.read_text(), source=str(path))


# --------------------------------------------------------------------------- state on disk


def _local_io():
    """Context in which xarray uses process-local file locks, not Dask-distributed ones.

    With a distributed ``Client`` active (in the sweep's process, or inside a worker), xarray
    would take a scheduler-wide ``distributed.Lock`` for every NetCDF read and write, a round
    trip to the scheduler per file; sweep files are each written by one task, so a local lock
    is enough.
    """
    import dask

    return dask.config.set(scheduler="synchronous")


def _first_difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    fa, fb = _flatten(a), _flatten(b)
    for key in sorted(set(fa) | set(fb)):
        if fa.get(key) != fb.get(key):
            return f"{key}: file has {fa.get(key)!r}, the sweep wants {fb.get(key)!r}"
    return None


def run_status(run: Run, out_dir: str | Path, *, check_config: bool = True) -> str:
    """``"done"`` (the run's file exists and opens), ``"failed"`` (an error file) or ``"todo"``.

    With ``check_config``, a finished file made with a different config raises ``ValueError``
    naming the file and the first differing field.
    """
    path = run.nc_path(out_dir)
    if path.is_file():
        try:
            with _local_io(), xr.open_dataset(path, engine="h5netcdf") as ds:
                stored = ds.attrs.get("config_toml")
        except Exception:  # noqa: BLE001 - any unreadable file is simply redone
            stored = None
            opened = False
        else:
            opened = True
        if opened:
            if check_config and isinstance(stored, str):
                diff = _first_difference(tomllib.loads(stored), run.config.to_dict())
                if diff is not None:
                    raise ValueError(
                        f"{path} was made with a different config ({diff}); remove it or "
                        "use another --out"
                    )
            return "done"
    if run.error_path(out_dir).is_file():
        return "failed"
    return "todo"


def _configure_process(torch_threads: int, cache_dir: str | None) -> None:
    """Fix this process's torch threads and Brian2/Cython code cache (idempotent)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(torch_threads)
    import torch

    if torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        os.environ["CYTHON_CACHE_DIR"] = cache_dir
        # the same folder for neurosim.brian.default_cache_dir() to pick up
        os.environ["NEUROSIM_BRIAN2_CACHE_DIR"] = str(Path(cache_dir) / "brian_extensions")
        if "brian2" in sys.modules:
            from brian2 import prefs

            extensions = str(Path(cache_dir) / "brian_extensions")
            if prefs["codegen.runtime.cython.cache_dir"] != extensions:
                prefs["codegen.runtime.cython.cache_dir"] = extensions


def _worker_cache_dir(cache_root: str) -> str | None:
    """``cache_root/worker-<name>`` for the current Dask worker (None outside a worker)."""
    try:
        from distributed import get_worker

        name = str(get_worker().name)
    except (ImportError, ValueError):
        return None
    return str(Path(cache_root) / re.sub(r"[^A-Za-z0-9_.\-]+", "-", f"worker-{name}"))


def _make_worker_plugin(torch_threads: int, cache_root: str):
    """A Dask worker plugin that runs :func:`_configure_process` when each worker starts."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class NeurosimSweepSetup(WorkerPlugin):
        name = "neurosim-sweep-setup"

        def __init__(self, threads: int, root: str):
            self.threads = threads
            self.root = root

        def setup(self, worker) -> None:
            # Brian2 installs a SIGINT handler when imported, which only works in a process's
            # main thread; Dask runs tasks in other threads, so import it here (main thread),
            # then put back the worker's own handler (Brian2's would call SIG_IGN/SIG_DFL as a
            # function and crash the worker on Ctrl-C).
            previous = signal.getsignal(signal.SIGINT)
            with contextlib.suppress(ImportError):
                import brian2  # noqa: F401
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            name = re.sub(r"[^A-Za-z0-9_.\-]+", "-", f"worker-{worker.name}")
            _configure_process(self.threads, str(Path(self.root) / name))

    return NeurosimSweepSetup(torch_threads, cache_root)


def _execute_run(
    experiment: str,
    config: Any,
    *,
    run_id: str,
    device: str,
    nc_path: str,
    error_path: str,
    torch_threads: int,
    cache_root: str,
) -> dict[str, Any]:
    """One sweep task (runs on a worker): run the experiment, write its file or its error."""
    start = time.perf_counter()
    cpu_start = time.process_time()
    try:
        _configure_process(torch_threads, _worker_cache_dir(cache_root))
        module = resolve_experiment(experiment)
        _configure_process(torch_threads, _worker_cache_dir(cache_root))  # Brian2 now loaded?
        with _local_io():
            ds = module.run(config, device=device, quiet=True)
        if not isinstance(ds, xr.Dataset):
            raise TypeError(f"{experiment}.run returned {type(ds).__name__}, not xarray.Dataset")
        ds.attrs["wall_time_s"] = round(time.perf_counter() - start, 3)
        ds.attrs["cpu_time_s"] = round(time.process_time() - cpu_start, 3)  # this worker process
        ds.attrs["device"] = device
        ds.attrs["run_id"] = run_id
        with _local_io():
            to_netcdf(ds, nc_path, config=config, seed=config.seed, experiment=experiment)
    except Exception as err:  # noqa: BLE001 - a failing run is recorded, the sweep goes on
        text = (
            f"run {run_id} of experiment {experiment} failed on pid {os.getpid()} after "
            f"{time.perf_counter() - start:.1f} s\n\nconfig:\n{config.to_toml()}\n"
            f"{traceback.format_exc()}"
        )
        atomic_write_text(error_path, text)
        return {"run_id": run_id, "ok": False, "error": f"{type(err).__name__}: {err}"}
    Path(error_path).unlink(missing_ok=True)
    return {"run_id": run_id, "ok": True, "wall_s": time.perf_counter() - start}


# --------------------------------------------------------------------------- running


def default_workers(n_runs: int, torch_threads: int = 1) -> int:
    """Workers for a LocalCluster: ``cpu_count // torch_threads``, at most one per run."""
    return max(1, min(n_runs, (os.cpu_count() or 1) // torch_threads))


def start_local_cluster(
    n_workers: int, *, torch_threads: int = 1, dashboard_address: str | None = ":8787"
):
    """A :class:`distributed.LocalCluster` for sweeps: ``n_workers`` processes, 1 thread each.

    The worker processes start with ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` set to
    ``torch_threads``. Close it (it is a context manager) when done.
    """
    from distributed import LocalCluster

    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ValueError(f"n_workers must be an integer >= 1; got {n_workers!r}")
    env = {var: str(torch_threads) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=dashboard_address,
        env=env,
    )


def _remove_stale_temporaries(runs_dir: Path) -> None:
    for tmp in runs_dir.glob(".*.tmp*"):
        tmp.unlink(missing_ok=True)


def run_sweep(
    sweep: Sweep,
    out_dir: str | Path,
    *,
    client: Any = None,
    workers: int | None = None,
    scheduler: str | None = None,
    quiet: bool = False,
    combine: bool = True,
    dashboard_address: str | None = ":8787",
    echo: Callable[[str], None] = print,
) -> SweepReport:
    """Run the missing runs of ``sweep`` on Dask, writing under ``out_dir``; then combine.

    ``client`` reuses a connected :class:`distributed.Client`; otherwise ``scheduler`` connects
    to a running scheduler, or a LocalCluster of ``workers`` processes (one thread each) is
    started for the duration of the call. Finished runs are skipped; failures are recorded in
    ``runs/<run_id>.error.txt`` and reported. Ctrl-C stops the sweep cleanly (finished files
    stay; re-running resumes). Returns a :class:`SweepReport`.
    """
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise ValueError(f"workers must be an integer >= 1; got {workers!r}")
    if workers is not None and scheduler is not None:
        raise ValueError("give either workers or scheduler, not both")
    out_dir = Path(out_dir)
    statuses = {run.run_id: run_status(run, out_dir) for run in sweep.runs}  # may raise
    todo = [run for run in sweep.runs if statuses[run.run_id] != "done"]
    runs_dir = out_dir / RUNS_DIR
    runs_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / SWEEP_FILE, sweep.text)
    _remove_stale_temporaries(runs_dir)
    report = SweepReport(n_runs=len(sweep.runs), n_skipped=len(sweep.runs) - len(todo))
    if report.n_skipped:
        echo(f"{report.n_skipped} of {report.n_runs} runs already finished in {runs_dir}")
    if todo:
        _run_on_dask(
            sweep, todo, out_dir, report, client, workers, scheduler, quiet, dashboard_address, echo
        )
    if combine and not report.interrupted:
        if any(run_status(run, out_dir, check_config=False) == "done" for run in sweep.runs):
            combine_runs(sweep, out_dir)
            report.combined = out_dir / COMBINED_FILE
    return report


def _run_on_dask(
    sweep, todo, out_dir, report, client, workers, scheduler, quiet, dashboard_address, echo
) -> None:
    from distributed import Client, as_completed
    from tqdm.auto import tqdm

    cache_root = str((out_dir / ".cache" / "brian2").resolve())
    n = sweep.torch_threads
    with contextlib.ExitStack() as stack:
        if client is None:
            if scheduler is not None:
                try:
                    client = stack.enter_context(Client(scheduler))
                except OSError as err:
                    raise ValueError(f"scheduler {scheduler!r}: cannot connect ({err})") from None
            else:
                cluster = stack.enter_context(
                    start_local_cluster(
                        workers or default_workers(len(todo), n),
                        torch_threads=n,
                        dashboard_address=dashboard_address,
                    )
                )
                client = stack.enter_context(Client(cluster))
        report.dashboard = client.dashboard_link
        hint = "" if importlib.util.find_spec("bokeh") else " (pip install bokeh for its plots)"
        echo(f"dask dashboard: {report.dashboard}{hint}")
        client.register_plugin(_make_worker_plugin(n, cache_root))
        futures = {}
        for run in todo:
            future = client.submit(
                _execute_run,
                sweep.experiment,
                run.config,
                run_id=run.run_id,
                device=sweep.device,
                nc_path=str(run.nc_path(out_dir)),
                error_path=str(run.error_path(out_dir)),
                torch_threads=n,
                cache_root=cache_root,
                key=f"neurosim-run-{run.run_id}-{uuid.uuid4().hex[:8]}",
                pure=False,
            )
            futures[future] = run
        bar = tqdm(
            total=report.n_runs,
            initial=report.n_skipped,
            desc=f"sweep {sweep.experiment}",
            unit="run",
            disable=quiet or None,
        )
        bar.set_postfix(failed=0)
        try:
            for future in as_completed(list(futures)):
                run = futures[future]
                try:
                    result = future.result()
                except Exception as err:  # noqa: BLE001 - e.g. KilledWorker: record, go on
                    message = f"{type(err).__name__}: {err}"
                    atomic_write_text(
                        run.error_path(out_dir),
                        f"run {run.run_id}: the Dask task failed\n{message}\n",
                    )
                    result = {"run_id": run.run_id, "ok": False, "error": message}
                report.n_ran += 1
                if not result["ok"]:
                    report.failed[run.run_id] = result["error"]
                bar.update(1)
                bar.set_postfix(failed=len(report.failed))
        except KeyboardInterrupt:
            report.interrupted = True
            client.cancel(list(futures))
        finally:
            bar.close()


# --------------------------------------------------------------------------- combining


def combine_runs(sweep: Sweep, out_dir: str | Path, *, write: bool = True) -> xr.Dataset:
    """Combine the finished runs of ``sweep`` in ``out_dir`` into one Dataset.

    Dims: ``(*sweep.dims, *the runs' own dims)``; missing or failed runs are NaN, with
    ``completed = 0``. With ``write``, the result is written atomically to ``out_dir/sweep.nc``.
    """
    with _local_io():
        return _combine_runs(sweep, Path(out_dir), write=write)


_CONCAT = dict(
    data_vars="all", coords="different", compat="equals", join="outer",
    combine_attrs="drop_conflicts",
)  # fmt: skip


def _combine_runs(sweep: Sweep, out_dir: Path, *, write: bool) -> xr.Dataset:
    dims = sweep.dims
    coords = sweep.coords()
    done = [run for run in sweep.runs if run_status(run, out_dir) == "done"]
    if not done:
        raise ValueError(f"no finished runs of this sweep in {out_dir / RUNS_DIR}")
    datasets = []
    for run in done:
        ds = open_results(run.nc_path(out_dir))
        for name in dims[:-1]:  # the vary fields and the zip dim
            if name in ds.dims:
                raise ValueError(
                    f"run {run.run_id}: its results already have a dimension {name!r}, which is "
                    "also a sweep dimension"
                )
        ds = ds.drop_vars([n for n in (*dims[:-1], *sweep.zip) if n in ds.variables])
        datasets.append(ds)
    own_seed = ["seed" in ds.dims for ds in datasets]
    if any(own_seed) and not all(own_seed):
        raise ValueError("some runs have a 'seed' dimension of their own and others do not")
    grid = dims[:-1] if all(own_seed) else dims
    # (grid position, dataset) pairs; an experiment that runs seeds seed..seed+n_seeds-1 itself
    # (a 'seed' dim in its results) has its runs of one grid point joined along that dim.
    cells: list[tuple[tuple[int, ...], xr.Dataset]] = []
    if all(own_seed):
        groups: dict[tuple[int, ...], list[xr.Dataset]] = {}
        for run, ds in zip(done, datasets, strict=True):
            groups.setdefault(run.index[:-1], []).append(ds)
        for key, members in groups.items():
            joined = members[0] if len(members) == 1 else xr.concat(members, "seed", **_CONCAT)
            if joined.indexes["seed"].has_duplicates:
                raise ValueError(
                    "the sweep's seeds overlap the seeds the experiment runs itself (seed .. "
                    "seed + n_seeds - 1); space the sweep's seeds by n_seeds or set n_seeds = 1"
                )
            cells.append((key, joined))
    else:
        cells = [(run.index, ds) for run, ds in zip(done, datasets, strict=True)]

    if grid:
        combined = xr.concat([ds for _, ds in cells], dim="_run", **_CONCAT)
        position = {d: [coords[d][key[i]] for key, _ in cells] for i, d in enumerate(grid)}
        combined = combined.assign_coords({d: ("_run", v) for d, v in position.items()})
        if len(grid) == 1:
            combined = combined.swap_dims({"_run": grid[0]})
        else:
            combined = combined.set_index(_run=grid).unstack("_run")
        combined = combined.reindex({d: coords[d] for d in grid})
    else:
        combined = cells[0][1]
    if all(own_seed):
        combined = combined.sortby("seed")
    combined = combined.transpose(*dims, ...)
    for name, values in sweep.zip.items():
        combined = combined.assign_coords({name: (sweep.zip_dim, _coord_values(values))})
    for name in combined.variables:
        combined[name].encoding = {}  # the runs' dtypes/fill values no longer fit (NaN holes)

    # completed / run_id over (*grid, seed); with own seeds, a run covers all of its seeds
    seeds = combined["seed"].values.tolist()
    outer = dims[:-1]
    shape = (*(len(coords[d]) for d in outer), len(seeds))
    completed = np.zeros(shape, dtype=np.int8)
    run_ids = np.full(shape, "", dtype=object)
    covered = {
        run.run_id: ds["seed"].values.tolist() if all(own_seed) else [run.seed]
        for run, ds in zip(done, datasets, strict=True)
    }
    for run in sweep.runs:
        for seed in covered.get(run.run_id, [run.seed]):
            if seed in seeds:
                at = (*run.index[: len(outer)], seeds.index(seed))
                run_ids[at] = run.run_id
                completed[at] = run.run_id in covered
    combined["completed"] = xr.DataArray(
        completed,
        dims=dims,
        attrs={"units": "1", "long_name": "1 where the run finished, 0 where it is missing"},
    )
    combined["run_id"] = xr.DataArray(
        run_ids.astype(str), dims=dims, attrs={"units": "1", "long_name": "run identifier"}
    )
    failed = [run.run_id for run in sweep.runs if run.error_path(out_dir).is_file()]
    combined.attrs.update(
        {
            "sweep_toml": sweep.text,
            "sweep_dims": " ".join(dims),
            "n_runs": len(sweep.runs),
            "n_completed": len(done),
            "failed_runs": " ".join(failed) or "none",
            "device": sweep.device,
            "quick": int(sweep.quick),
        }
    )
    for key in ("seed", "config_toml", "config_class", "run_id", "wall_time_s", "cpu_time_s"):
        combined.attrs.pop(key, None)
    if write:
        to_netcdf(combined, out_dir / COMBINED_FILE, experiment=sweep.experiment)
    return combined


# --------------------------------------------------------------------------- command line


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_file", nargs="?", type=Path, help="the SWEEP.toml file")
    parser.add_argument(
        "--out", type=Path, help="output directory (default: results/<sweep file name>)"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="start a LocalCluster of N worker processes, 1 thread each (default: CPUs)",
    )
    where.add_argument(
        "--scheduler", metavar="ADDRESS", help="use a running Dask scheduler (tcp://host:8786)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list the runs and their output paths"
    )
    parser.add_argument(
        "--combine", type=Path, metavar="DIR", help="only combine DIR/runs into DIR/sweep.nc"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


DESCRIPTION = (
    "Run one experiment over a grid of config values and seeds on Dask; each run writes "
    "DIR/runs/<run_id>.nc, finished runs are never redone (re-run to resume), and the runs are "
    "combined into DIR/sweep.nc."
)


def _epilog() -> str:
    doc = __doc__ or ""
    start = doc.find("The sweep file")
    end = doc.find("Runs = ", start)
    if start < 0 or end < 0:
        return ""
    example = doc[start:end].split("::", 1)[-1].rstrip()
    return "SWEEP.toml:" + example


def add_sweep_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``sweep`` subcommand to ``neurosim``'s subparsers; returns its parser."""
    parser = subparsers.add_parser(
        "sweep",
        help="run an experiment over a grid of configs and seeds on Dask",
        description=DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(parser)
    return parser


def _describe(sweep: Sweep) -> str:
    grid = " x ".join(f"{d}={n}" for d, n in zip(sweep.dims, sweep.shape, strict=True))
    kind = "quick" if sweep.quick else "full"
    return (
        f"sweep of {sweep.experiment} ({kind}, device {sweep.device}): "
        f"{len(sweep.runs)} runs, {grid}"
    )


def _dry_run(sweep: Sweep, out_dir: Path) -> str:
    lines = [_describe(sweep), f"output: {out_dir / COMBINED_FILE}"]
    statuses = [run_status(run, out_dir) for run in sweep.runs]
    width = max(len(run.run_id) for run in sweep.runs)
    lines.append(f"{'status':<7} {'run_id':<{width}}  output")
    for run, status in zip(sweep.runs, statuses, strict=True):
        lines.append(f"{status:<7} {run.run_id:<{width}}  {run.nc_path(out_dir)}")
    todo = sum(s != "done" for s in statuses)
    lines.append(f"{todo} of {len(sweep.runs)} runs to do")
    return "\n".join(lines)


def _sigterm_as_interrupt(signum, frame):  # pragma: no cover - exercised through a subprocess
    raise KeyboardInterrupt


def run_sweep_command(args: argparse.Namespace) -> int:
    """Carry out ``neurosim sweep`` for parsed ``args``; returns the exit status.

    0: all runs finished; 1: some runs failed (the rest are combined); 2: bad input (nothing
    was run); 130: interrupted (re-run the same command to resume).
    """
    try:
        if args.combine is not None:
            if args.sweep_file is not None or args.dry_run:
                raise ValueError("--combine DIR takes no sweep file and no --dry-run")
            out_dir = Path(args.combine)
            sweep = load_sweep(out_dir / SWEEP_FILE)
            ds = combine_runs(sweep, out_dir)
            missing = int(ds["completed"].size - ds["completed"].sum())
            print(
                f"combined {ds.attrs['n_completed']} of {len(sweep.runs)} runs "
                f"({missing} missing) into {out_dir / COMBINED_FILE}"
            )
            print("dims: " + ", ".join(f"{k}={v}" for k, v in ds.sizes.items()))
            return 0
        if args.sweep_file is None:
            raise ValueError("give a sweep file (neurosim sweep SWEEP.toml) or --combine DIR")
        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers must be >= 1; got {args.workers}")
        sweep = load_sweep(args.sweep_file)
        out_dir = args.out if args.out is not None else Path("results") / args.sweep_file.stem
        if args.dry_run:
            print(_dry_run(sweep, out_dir))
            return 0
        print(_describe(sweep))
        previous = None
        if hasattr(signal, "SIGTERM"):
            try:
                previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
            except ValueError:  # not the main thread
                previous = None
        try:
            report = run_sweep(
                sweep,
                out_dir,
                workers=args.workers,
                scheduler=args.scheduler,
                quiet=args.quiet,
            )
        except KeyboardInterrupt:
            report = None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    except ValueError as err:
        print(f"neurosim: error: {err}", file=sys.stderr)
        return 2
    if report is None or report.interrupted:
        done = sum(run_status(r, out_dir, check_config=False) == "done" for r in sweep.runs)
        print(
            f"interrupted: {done} of {len(sweep.runs)} runs finished in {out_dir / RUNS_DIR}; "
            "run the same command again to resume"
        )
        return 130
    ran_ok = report.n_ran - len(report.failed)
    print(
        f"{report.n_runs} runs: {report.n_skipped} already finished, {ran_ok} ran, "
        f"{len(report.failed)} failed"
    )
    for run_id, error in report.failed.items():
        print(f"  failed {run_id}: {error} (see {out_dir / RUNS_DIR / (run_id + '.error.txt')})")
    if report.combined is not None:
        print(f"wrote {report.combined}")
    return 1 if report.failed else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m analyses.sweep ...``: the same as ``neurosim sweep ...``."""
    parser = argparse.ArgumentParser(
        prog="neurosim sweep",
        description=DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(parser)
    return run_sweep_command(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
