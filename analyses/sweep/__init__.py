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

    experiment = "codistill-nets"   # a registered experiment name, or "package.module[:object]"
    quick = true                    # start from Config.quick() instead of Config() (default false)
    seeds = [0, 1, 2]               # one run per seed per grid point (default: the config's seed)
    device = "cpu"                  # handed to run(config, device=...) ("cpu", "cuda", "cuda:N")
    torch_threads = 1               # torch threads per worker process (default 1)
    zip_dim = "zip"                 # name of the dimension of the [zip] group (default "zip")

    [base]                          # overrides applied to every run
    epochs = 4
    hidden = [32]                   # nested config fields take dotted keys: "model.dim" = 16

    [vary]                          # field -> list of values; the runs are the product of all lists
    temperature = [2.0, 4.0]
    codistill_weight = [0.5, 1.0]

    [zip]                           # fields -> equal-length lists, varied together (one dimension)
    lr = [0.01, 0.003]
    batch_size = [32, 128]

Runs = product([vary] lists) x zip entries x seeds (at most 10,000). Each run's config is
``Config.quick()`` (or ``Config()``), updated with ``[base]``, then with the run's values, then with
its seed. The whole file is validated before any work starts (and by ``--dry-run``): unknown
top-level keys, unknown config fields, bad values of any run, the experiment's own ``check`` of
every run's config, and seeds that overlap (below) raise ``ValueError`` naming the file, the
table and the field; then the output directory, the scheduler connection and the device (on
this machine for a LocalCluster, on a worker otherwise) are checked, all before a file is
written. ``seed`` is set through ``seeds``, never through ``[base]``, ``[vary]`` or ``[zip]``.

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
    use ``n_seeds = 1`` in ``[base]`` (or seeds spaced by ``n_seeds``); seeds that would overlap
    are refused when the file is read.

``DIR`` must be new, empty or hold a sweep of the same experiment. A finished run (its file
exists and opens) is never redone: re-running the same command after a crash, Ctrl-C (exit
status 130) or ``kill`` (143) resumes with the missing and failed runs only. If a finished file was
made with a different config (e.g. ``[base]`` was edited), the sweep refuses to start and names
the file and the field. Run one sweep process per ``DIR`` at a time.

Workers
-------
Without ``--scheduler`` a :class:`dask.distributed.LocalCluster` of ``--workers N`` processes with
one thread each is started (N at most the CPUs; default: ``cpu_count // torch_threads``, at most
one per run) and its dashboard address is printed. Progress goes to stderr: a bar on a terminal,
else a timestamped line per finished run (at most one every 10 s) with the ETA.
``--scheduler ADDRESS`` connects to a running scheduler instead (e.g. one started by
dask-jobqueue on SLURM; see the README section "Running a sweep on a cluster"). Each worker
process, through a worker plugin and again at the start of every task, sets
``torch.set_num_threads(torch_threads)`` (plus ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``) and its
own Brian2 code cache: ``CYTHON_CACHE_DIR=DIR/.cache/brian2/worker-<name>`` and Brian2's
``prefs.codegen.runtime.cython.cache_dir`` (its subfolder ``brian_extensions``, Brian2's default
layout). The plugin imports Brian2 in each worker's main thread when the worker starts: Brian2
installs a SIGINT handler on import, which Python allows only in the main thread, and Dask runs
tasks in other threads (an experiment importing Brian2 inside a task would fail otherwise).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Run",
    "Sweep",
    "SweepReport",
    "parse_sweep",
    "load_sweep",
    "make_run_id",
    "resolve_experiment",
    "run_status",
    "run_sweep",
    "combine_runs",
    "start_local_cluster",
    "close_workers",
    "default_workers",
    "add_sweep_parser",
    "run_sweep_command",
    "main",
]

#: public name -> the submodule defining it. Imported on first use, so that ``neurosim --help``
#: (which only needs the argument parser of :mod:`analyses.sweep.cli`) does not load numpy,
#: xarray, torch or Dask.
_WHERE = {
    "Run": "spec",
    "Sweep": "spec",
    "parse_sweep": "spec",
    "load_sweep": "spec",
    "make_run_id": "spec",
    "resolve_experiment": "spec",
    "run_status": "files",
    "SweepReport": "execute",
    "run_sweep": "execute",
    "start_local_cluster": "execute",
    "close_workers": "execute",
    "default_workers": "execute",
    "combine_runs": "combine",
    "add_sweep_parser": "cli",
    "run_sweep_command": "cli",
    "main": "cli",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
