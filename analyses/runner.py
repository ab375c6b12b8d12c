"""Training units: many models of one kind trained as one batched computation, in parallel.

An experiment that trains a grid of models (kinds x retinas x training sets x seeds) groups the
models of one kind into :class:`Unit` s. Each unit is trained by
:func:`analyses.baselines.train_jobs` as stacked replicas (one batched computation; replica
``r`` ends as the model would alone), and the units run in ``workers`` processes at once (one
per core: the small kernels of these models do not scale across threads, processes do). A
unit's results are plain :class:`JobResult` s (no models), so they cross process boundaries and
can be saved and reloaded as they finish (``on_done``).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections.abc import Callable, Sequence
from typing import Any

from neurosim.config import check_int

__all__ = ["Unit", "JobResult", "run_units", "default_workers", "train_unit", "keep_freed_memory"]


@dataclasses.dataclass(eq=False)
class Unit:
    """Models of one kind trained together.

    Attributes:
        key: a name for the unit (progress lines, saved files), e.g. ``"codistill/uniform"``.
        kind: the model kind (:data:`analyses.baselines.MODEL_KINDS`).
        jobs: ``[(job key, analyses.baselines.Job)]``: one model per job.
        cost: a relative cost estimate, for scheduling (largest first).
        config: this unit's :class:`analyses.baselines.BaselineConfig` when it differs from the
            run's (e.g. fewer steps for a small training set); None = the run's.
    """

    key: str
    kind: str
    jobs: list[tuple[Any, Any]]
    cost: float = 1.0
    config: Any = None


@dataclasses.dataclass
class JobResult:
    """What a trained model left: its scores and training diagnostics (no weights).

    Attributes:
        accuracies: ``{test name: accuracy}`` at the end of training.
        checkpoint_accuracies: ``{step: {test name: accuracy}}``.
        final_loss: mean training loss over the last 10 % of the steps.
        final_loss_change: least-squares change of the loss over the last 20 % of the steps.
        loss_curve: the training loss at ``curve_steps`` (a thinned copy of the history).
        curve_steps: 1-based steps of ``loss_curve``.
        train_seconds: wall time of the unit's training (shared by its jobs).
        n_parameters, n_parameters_per_column: the model's parameter counts.
    """

    accuracies: dict[str, float]
    checkpoint_accuracies: dict[int, dict[str, float]]
    final_loss: float
    final_loss_change: float
    loss_curve: list[float]
    curve_steps: list[int]
    train_seconds: float
    n_parameters: int
    n_parameters_per_column: float


def _within(checkpoints: Sequence[int], config: Any) -> tuple[int, ...]:
    """The checkpoints a unit of ``config.steps`` steps reaches."""
    return tuple(c for c in checkpoints if c < config.steps)


def default_workers(n_units: int) -> int:
    """One worker process per CPU core available to this process, at most one per unit."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, n_units))


#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MALLOC_TUNED = False


def keep_freed_memory() -> bool:
    """Let this process reuse the memory a training step frees instead of mapping it again.

    Every step of a stacked unit allocates its activations afresh (a few MB each); glibc
    serves blocks above its mmap threshold with new pages from the kernel and hands them back
    when freed, so every step pays the page faults of its whole activation memory again. With
    the threshold at 32 MiB (glibc's maximum) and freed memory kept up to 64 MiB, the heap is
    reused: a codistill step of 12 stacked flagship models took 81 instead of 89-93 ms here
    (one thread). The peak memory is unchanged; it is kept by the process instead of returned.
    Does nothing (False) where the C library has no ``mallopt`` (not glibc).
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, 64 << 20) == 1 and ok
    except (OSError, AttributeError):
        return False
    _MALLOC_TUNED = ok
    return ok


def _thin(values, n: int = 60) -> tuple[list[float], list[int]]:
    import numpy as np

    values = np.asarray(values, dtype=float)
    steps = np.unique(np.linspace(1, len(values), min(n, len(values))).round().astype(int))
    return [float(values[s - 1]) for s in steps], [int(s) for s in steps]


def train_unit(
    kind: str,
    jobs: Sequence[Any],
    config: Any,
    *,
    device: str = "cpu",
    checkpoints: Sequence[int] = (),
    threads: int = 1,
) -> list[JobResult]:
    """Train one unit in this process (:func:`analyses.baselines.train_jobs`) with ``threads``
    torch threads; returns one :class:`JobResult` per job."""
    import torch

    from analyses.baselines import train_jobs

    keep_freed_memory()
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        trained = train_jobs(kind, jobs, config, device=device, checkpoints=checkpoints)
    finally:
        torch.set_num_threads(previous)
    out = []
    for t in trained:
        curve, steps = _thin(t.history["replica_loss"].values)
        out.append(
            JobResult(
                accuracies=dict(t.accuracies),
                checkpoint_accuracies={int(k): dict(v) for k, v in t.checkpoint_accuracies.items()},
                final_loss=t.final_loss,
                final_loss_change=t.final_loss_change,
                loss_curve=curve,
                curve_steps=steps,
                train_seconds=t.train_seconds,
                n_parameters=t.n_parameters,
                n_parameters_per_column=t.n_parameters_per_column,
            )
        )
    return out


def _indexed_worker(args):
    """A worker process's task: ``(index, the unit's JobResults)``."""
    i, kind, jobs, config, device, checkpoints, threads = args
    return i, train_unit(
        kind, jobs, config, device=device, checkpoints=checkpoints, threads=threads
    )


def run_units(
    units: Sequence[Unit],
    config: Any,
    *,
    workers: int = 1,
    device: str = "cpu",
    checkpoints: Sequence[int] = (),
    threads: int = 1,
    on_done: Callable[[Unit, dict[Any, JobResult]], None] | None = None,
    on_wait: Callable[[list[str]], None] | None = None,
    wait_s: float = 5.0,
) -> dict[Any, JobResult]:
    """Train every unit, ``workers`` at a time (1: in this process), largest cost first.

    Args:
        units: the units.
        config: the :class:`analyses.baselines.BaselineConfig` of every model.
        workers: processes training at once (``spawn``-started, ``threads`` torch threads
            each); 1 trains in this process.
        device: torch device.
        checkpoints: steps at which every model is also scored.
        threads: torch threads per worker.
        on_done: called in this process as ``on_done(unit, {job key: JobResult})`` when a unit
            finishes (to save it, report progress).
        on_wait: with worker processes, called as ``on_wait([keys of the unfinished units])``
            every ``wait_s`` seconds in which no unit finished (e.g. a heartbeat in a log).
        wait_s: see ``on_wait``.

    Returns:
        ``{job key: JobResult}`` of every job.
    """
    check_int("workers", workers, 1, 256)
    order = sorted(units, key=lambda u: -u.cost)
    results: dict[Any, JobResult] = {}

    def finish(unit: Unit, res: list[JobResult]) -> None:
        done = {key: r for (key, _job), r in zip(unit.jobs, res, strict=True)}
        results.update(done)
        if on_done is not None:
            on_done(unit, done)

    if workers == 1 or len(order) <= 1:
        _run_here(order, config, device, checkpoints, threads, finish)
        return results
    ctx = multiprocessing.get_context("spawn")
    args = _worker_args(order, config, device, checkpoints, threads)
    _run_pool(ctx, order, args, workers, finish, on_wait, wait_s)
    return results


def _run_here(
    order: list[Unit],
    config: Any,
    device: str,
    checkpoints: Sequence[int],
    threads: int,
    finish: Callable[[Unit, list[JobResult]], None],
) -> None:
    """Train the units one after the other in this process."""
    for unit in order:
        jobs = [job for _key, job in unit.jobs]
        finish(
            unit,
            train_unit(
                unit.kind,
                jobs,
                unit.config or config,
                device=device,
                checkpoints=_within(checkpoints, unit.config or config),
                threads=threads,
            ),
        )


def _worker_args(
    order: list[Unit], config: Any, device: str, checkpoints: Sequence[int], threads: int
) -> list[tuple]:
    """The :func:`_indexed_worker` task of each unit of ``order``."""
    return [
        (
            i,
            unit.kind,
            [job for _key, job in unit.jobs],
            unit.config or config,
            device,
            _within(checkpoints, unit.config or config),
            threads,
        )
        for i, unit in enumerate(order)
    ]


def _run_pool(
    ctx: Any,
    order: list[Unit],
    args: list[tuple],
    workers: int,
    finish: Callable[[Unit, list[JobResult]], None],
    on_wait: Callable[[list[str]], None] | None,
    wait_s: float,
) -> None:
    """Train the units in worker processes of ``ctx``, finishing each as it returns."""
    pool = ctx.Pool(min(workers, len(order)))
    try:
        pending = set(range(len(order)))
        it = pool.imap_unordered(_indexed_worker, args)
        while pending:
            try:
                i, res = it.next(timeout=wait_s)
            except multiprocessing.TimeoutError:
                if on_wait is not None:
                    on_wait([order[j].key for j in sorted(pending)])
                continue
            pending.discard(i)
            finish(order[i], res)
        pool.close()
    except BaseException:
        pool.terminate()  # an interrupt or a failure stops every worker at once
        raise
    finally:
        pool.join()
