"""Running a sweep's runs on Dask: worker set-up, one task per run, the progress of the sweep."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import re
import signal
import sys
import time
import tomllib
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xarray as xr

from analyses.sweep.combine import combine_runs
from analyses.sweep.files import _local_io, run_status
from analyses.sweep.spec import COMBINED_FILE, RUNS_DIR, SWEEP_FILE, Sweep, resolve_experiment
from neurosim.atomic import atomic_write_text, remove_stale_temporaries
from neurosim.config import check_device, check_int
from neurosim.export import to_netcdf


@dataclasses.dataclass
class SweepReport:
    """What :func:`run_sweep` did. ``failed`` maps run ids to their error line."""

    n_runs: int
    n_skipped: int
    n_ran: int = 0
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    interrupted: bool = False
    exit_code: int = 0  # of an interrupted sweep: 130 (SIGINT) or 143 (SIGTERM)
    combined: Path | None = None
    dashboard: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted


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

    ``n_workers`` is at most the CPUs of this machine. The worker processes start with
    ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` set to ``torch_threads``. Close it (it is a context
    manager) when done; :func:`close_workers` first lets the workers exit in their own time.
    """
    from distributed import LocalCluster

    check_int("n_workers", n_workers, 1, os.cpu_count() or 1)
    env = {var: str(torch_threads) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=dashboard_address,
        env=env,
    )


def close_workers(cluster, timeout_s: float = 60.0) -> None:
    """Close a LocalCluster's worker processes, giving each ``timeout_s`` to exit.

    A worker process that has imported torch and Brian2 can take several seconds to exit on a
    busy machine; the cluster's own close gives it 4 s and then kills it, logging "Worker
    process still alive after 4.0 seconds, killing" for a sweep that went well.
    """
    import asyncio

    async def close_all() -> None:
        nannies = list(cluster.workers.values())
        await asyncio.gather(*(n.close(timeout=timeout_s) for n in nannies))

    with contextlib.suppress(Exception):  # the cluster's own close still follows
        cluster.sync(close_all)


def _check_out_dir(sweep: Sweep, out_dir: Path) -> None:
    """``out_dir`` is new, empty or this experiment's sweep directory; else ``ValueError``."""
    name = f"--out {str(out_dir)!r}"
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{name} is a file; give a directory for the sweep")
    probe = out_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{name}: {str(probe)!r} is not a writable directory")
    stored = out_dir / SWEEP_FILE
    if stored.is_file():
        try:
            experiment = tomllib.loads(stored.read_text()).get("experiment")
        except (OSError, ValueError):
            experiment = None
        if experiment != sweep.experiment:
            raise ValueError(
                f"{name} holds a sweep of {experiment!r}, not {sweep.experiment!r}; use "
                "another --out"
            )
    elif out_dir.is_dir() and any(out_dir.iterdir()):
        raise ValueError(f"{name} is not empty and holds no sweep; use a new or empty directory")


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
    to a running scheduler, or a LocalCluster of ``workers`` processes (one thread each, at most
    the CPUs here) is started for the duration of the call. Everything is checked before a file
    is written: ``out_dir`` (new, empty or this sweep's), the finished runs' configs, the
    connection to the scheduler and the device (here for a LocalCluster, on a worker
    otherwise). Finished runs are skipped; failures are recorded in ``runs/<run_id>.error.txt``
    and reported. Ctrl-C or SIGTERM (see :func:`analyses.subruns.signals_as_interrupts`) stops
    the sweep cleanly (finished files stay; re-running resumes). Returns a :class:`SweepReport`.
    """
    if workers is not None:
        check_int("workers", workers, 1, os.cpu_count() or 1)
    if workers is not None and scheduler is not None:
        raise ValueError("give either workers or scheduler, not both")
    out_dir = Path(out_dir)
    _check_out_dir(sweep, out_dir)
    statuses = {run.run_id: run_status(run, out_dir) for run in sweep.runs}  # may raise
    todo = [run for run in sweep.runs if statuses[run.run_id] != "done"]
    report = SweepReport(n_runs=len(sweep.runs), n_skipped=len(sweep.runs) - len(todo))
    with contextlib.ExitStack() as stack:
        if todo:
            where = {"workers": workers, "scheduler": scheduler, "dashboard": dashboard_address}
            client = _connect(stack, sweep, len(todo), client, **where)
        runs_dir = out_dir / RUNS_DIR
        runs_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / SWEEP_FILE, sweep.text)
        remove_stale_temporaries(runs_dir)
        if report.n_skipped:
            echo(f"{report.n_skipped} of {report.n_runs} runs already finished in {runs_dir}")
        if todo:
            _run_on_dask(sweep, todo, out_dir, report, client, quiet, echo)
    if combine and not report.interrupted:
        if any(run_status(run, out_dir, check_config=False) == "done" for run in sweep.runs):
            combine_runs(sweep, out_dir)
            report.combined = out_dir / COMBINED_FILE
    return report


def _connect(stack, sweep: Sweep, n_todo: int, client, *, workers, scheduler, dashboard):
    """A client to run on, its device checked; closed with ``stack``. Writes no file."""
    from distributed import Client

    if client is None and scheduler is None:
        n = sweep.torch_threads
        if n > (os.cpu_count() or 1):
            raise ValueError(
                f"{sweep.source}: torch_threads = {n} is more than the {os.cpu_count()} CPUs "
                "here, where the LocalCluster runs"
            )
        check_device(sweep.device, f"{sweep.source}: device")  # the workers run here
        cluster = stack.enter_context(
            start_local_cluster(
                workers or default_workers(n_todo, n),
                torch_threads=n,
                dashboard_address=dashboard,
            )
        )
        stack.callback(close_workers, cluster)
        return stack.enter_context(Client(cluster))
    if client is None:
        try:
            client = stack.enter_context(Client(scheduler))
        except (OSError, TimeoutError) as err:
            raise ValueError(f"--scheduler {scheduler!r}: cannot connect ({err})") from None
    if sweep.device != "cpu":  # ask a worker: the GPUs are where the workers run
        check = client.submit(check_device, sweep.device, f"{sweep.source}: device", pure=False)
        try:
            check.result()
        except ValueError as err:
            raise ValueError(f"{err} (on a worker of {client.scheduler.address})") from None
    return client


def _submit(client, sweep: Sweep, todo, out_dir: Path, cache_root: str) -> dict:
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
            torch_threads=sweep.torch_threads,
            cache_root=cache_root,
            key=f"neurosim-run-{run.run_id}-{uuid.uuid4().hex[:8]}",
            pure=False,
        )
        futures[future] = run
    return futures


def _run_on_dask(sweep, todo, out_dir, report, client, quiet, echo) -> None:
    from distributed import as_completed

    from analyses.progress import Progress

    cache_root = str((out_dir / ".cache" / "brian2").resolve())
    report.dashboard = client.dashboard_link
    hint = "" if importlib.util.find_spec("bokeh") else " (pip install bokeh for its plots)"
    echo(f"dask dashboard: {report.dashboard}{hint}")
    client.register_plugin(_make_worker_plugin(sweep.torch_threads, cache_root))
    futures = _submit(client, sweep, todo, out_dir, cache_root)
    progress = Progress(
        report.n_runs,
        desc=f"sweep {sweep.experiment}",
        unit="runs",
        initial=report.n_skipped,
        quiet=quiet,
        min_interval_s=10.0,
    )
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
            status = f"{result['wall_s']:.1f} s" if result["ok"] else "FAILED"
            failed = f", {len(report.failed)} failed so far" if report.failed else ""
            progress.update(run.run_id, score=status + failed)
    except KeyboardInterrupt as err:
        report.interrupted = True
        report.exit_code = getattr(err, "exit_code", 130)
        client.cancel(list(futures))
    finally:
        progress.close()
