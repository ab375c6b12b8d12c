"""The ``neurosim`` command: run an experiment, show a results file, run a sweep.

::

    neurosim run [EXPERIMENT] [--config FILE.toml] [--out DIR] [--force] [--quick]
                 [--device cpu|cuda|cuda:N] [--seed N] [--quiet] [--no-figures]
    neurosim show FILE.nc
    neurosim sweep SWEEP.toml [--workers N | --scheduler ADDRESS] [--out DIR] [--dry-run] [--quiet]
    neurosim --version

The command lives in ``analyses`` (not ``neurosim``) because it dispatches to the experiments,
which sit above the simulator in the data flow; ``neurosim`` itself never imports ``analyses``.
Only the argument parser is imported up front: ``--help`` and ``--version`` load neither torch
nor numpy.

``neurosim run`` checks everything before any work or file: the whole configuration (defaults
or ``--quick`` size, then the TOML file's overrides, then ``--seed``, then the experiment's own
``check``), the device, and the output directory. Bad input is one line on stderr naming the
argument and what is allowed, with exit status 2, and nothing is written. The output directory
is either new (the default ``results/<experiment>-<timestamp>`` is created exclusively, with a
suffix ``-2``, ``-3`` ... when two runs start in the same second), empty, or one holding a run of
the same experiment with the same config (it is resumed); anything else is refused unless
``--force``. The run then writes ``DIR/config.toml``, keeps every finished sub-run in
``DIR/subruns/`` (experiments that accept a ``store``), writes the results NetCDF atomically
with provenance attributes, draws the figures and prints the summary table. Progress goes to
stderr: a bar on a terminal, a timestamped line per finished sub-run in a log.

Ctrl-C (SIGINT) and ``kill`` (SIGTERM) stop the run cleanly, leaving no temporary file: exit
status 130 or 143 and "interrupted; N of M sub-runs kept"; the same command with the same
``--out`` resumes with what is missing and gives the result of an uninterrupted run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import importlib.util
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from analyses.experiments import DEFAULT_EXPERIMENT, EXPERIMENTS
from analyses.sweep.cli import add_sweep_parser, run_sweep_command

__all__ = [
    "main",
    "build_parser",
    "load_config",
    "run_experiment",
    "RunOutput",
    "new_run_dir",
    "check_out_dir",
]

#: exit status of bad input (as argparse uses)
BAD_INPUT = 2
FIGURE_SUFFIXES = (".png", ".pdf")


class UsageError(ValueError):
    """Bad input found before any work: one line for stderr, exit status 2."""


def version() -> str:
    """The version of the ``neurosim`` package on the path, read without importing it."""
    spec = importlib.util.find_spec("neurosim")
    if spec is not None and spec.origin:
        found = re.search(r'^__version__ = "([^"]+)"', Path(spec.origin).read_text(), re.M)
        if found:
            return found.group(1)
    return importlib.metadata.version("neurosim")


def build_parser() -> argparse.ArgumentParser:
    """The ``neurosim`` parser; each subcommand's parser is ``args.parser`` after parsing."""
    parser = argparse.ArgumentParser(
        prog="neurosim",
        description="Co-distilling cortical columns under a foveated retina.",
    )
    parser.add_argument("--version", action="version", version=f"neurosim {version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="run an experiment and write results, config and figures",
        description="Run an experiment; write DIR/results.nc, DIR/config.toml and the figures, "
        "and print the summary. Re-run the same command with the same --out to resume an "
        "interrupted run.",
    )
    run.add_argument(
        "experiment",
        nargs="?",
        default=DEFAULT_EXPERIMENT,
        help=f"one of {', '.join(EXPERIMENTS)} (default: {DEFAULT_EXPERIMENT}), or an "
        "importable 'package.module[:object]' following the experiment protocol",
    )
    run.add_argument(
        "--config",
        type=Path,
        help="TOML file overriding any config field, or the name of a config shipped in "
        "analyses/configs (e.g. decisive)",
    )
    run.add_argument(
        "--out",
        type=Path,
        help="output directory: new, empty, or holding this run to resume "
        "(default: a new results/<experiment>-<timestamp>)",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty --out that holds another run (its sub-runs are discarded)",
    )
    run.add_argument("--quick", action="store_true", help="a smoke test at test-suite size")
    run.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    run.add_argument("--seed", type=int, help="override the config's seed")
    run.add_argument("--quiet", action="store_true", help="no progress on stderr")
    run.add_argument("--no-figures", action="store_true", help="skip drawing figures")
    run.set_defaults(parser=run)

    show = sub.add_parser("show", help="print a summary of any results file")
    show.add_argument("file", type=Path, help="a NetCDF results file (e.g. DIR/results.nc)")
    show.set_defaults(parser=show)

    sweep = add_sweep_parser(sub)
    sweep.set_defaults(parser=sweep)
    return parser


# ------------------------------------------------------------------------ checks (no files)


#: the named configs shipped with the package (``--config decisive``)
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"


def named_config(value: str | Path) -> Path:
    """``--config``'s file: ``value`` itself, or ``analyses/configs/<value>.toml`` when
    ``value`` is a bare name (no directory, no suffix) that is not a file here."""
    path = Path(value)
    if path.exists() or path.suffix or len(path.parts) > 1:
        return path
    named = CONFIGS_DIR / f"{path.name}.toml"
    return named if named.is_file() else path


def load_config(experiment: str, *, quick: bool, config_file: Path | None, seed: int | None):
    """The validated config of ``experiment``; raises ``ValueError`` naming a bad field."""
    from analyses.experiments import check_config, resolve_experiment

    module = resolve_experiment(experiment)
    cfg = module.Config.quick() if quick else module.Config()
    if config_file is not None:
        path = named_config(config_file)
        if not path.is_file():
            what = (
                "is a directory"
                if path.is_dir()
                else "is not a regular file"
                if path.exists()
                else "does not exist"
            )
            raise ValueError(f"--config {str(path)!r} {what}; give a TOML file")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"--config {str(path)!r} cannot be read ({err})") from None
        try:
            cfg = cfg.updated_from_toml(text)
        except ValueError as err:
            raise ValueError(f"--config {str(path)!r}: {err}") from None
    if seed is not None:
        cfg = cfg.updated({"seed": seed})
    check_config(module, cfg)
    return cfg


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


def check_out_dir(out: Path, experiment: str, cfg: Any, device: str, *, force: bool):
    """Check ``--out`` before anything is written; return its (not yet begun) sub-run store.

    ``out`` must be new, empty, or hold a run of ``experiment`` with ``cfg`` on ``device``
    (which is resumed); with ``force`` any directory is written into (sub-runs of another run
    are discarded). Raises :class:`UsageError` naming ``--out``.
    """
    from analyses.subruns import SUBRUNS_DIR, SubrunMismatch, SubrunStore

    name = f"--out {str(out)!r}"
    if out.exists() and not out.is_dir():
        raise UsageError(f"{name} is a file; give a directory (new, empty or holding this run)")
    if not out.exists():
        base = _nearest_existing(out)
        if not base.is_dir():
            raise UsageError(f"{name} cannot be created: {str(base)!r} is a file")
        if not _writable(base):
            raise UsageError(f"{name} cannot be created: {str(base)!r} is not writable")
    elif not _writable(out):
        raise UsageError(f"{name} is not writable; choose a directory you can write to")
    try:
        store = SubrunStore(out / SUBRUNS_DIR, experiment=experiment, config=cfg, device=device)
    except SubrunMismatch as err:
        if not force:
            raise UsageError(
                f"{name}: {err}; use another --out, or --force to discard those sub-runs"
            ) from None
        return SubrunStore(
            out / SUBRUNS_DIR, experiment=experiment, config=cfg, device=device, reset=True
        )
    fingerprint = out / SUBRUNS_DIR / "fingerprint.json"
    if out.is_dir() and not fingerprint.is_file() and not force:
        entries = sorted(p.name for p in out.iterdir())
        if entries:
            raise UsageError(
                f"{name} is not empty ({len(entries)} entries, e.g. {entries[0]!r}) and holds "
                f"no run of {experiment} to resume; choose a new or empty directory, or "
                "--force to write into it"
            )
    return store


def _short_name(experiment: str) -> str:
    """A directory-name-safe short form of an experiment name or ``package.module:object``."""
    tail = re.split(r"[:.]", experiment)[-1] or "experiment"
    return re.sub(r"[^A-Za-z0-9_\-]+", "-", tail)


def new_run_dir(parent: Path, experiment: str, *, now: _dt.datetime | None = None) -> Path:
    """Create and return ``parent/<experiment>-<YYYYmmdd-HHMMSS>``, a directory of its own.

    It is created exclusively: when another run took that name (two runs started in the same
    second), ``-2``, ``-3``, ... is appended.
    """
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    parent.mkdir(parents=True, exist_ok=True)
    stem = f"{_short_name(experiment)}-{stamp}"
    for i in range(1, 10_000):
        path = parent / (stem if i == 1 else f"{stem}-{i}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise UsageError(f"{parent}: 10,000 runs of {experiment} started in the same second")


# ------------------------------------------------------------------------------- running


class RunOutput(NamedTuple):
    """What :func:`run_experiment` wrote."""

    results: Path
    summary: str
    figures: list[Path]


def run_experiment(
    experiment: str,
    cfg,
    out_dir: Path,
    *,
    device: str = "cpu",
    quiet: bool = False,
    figures: bool = True,
    store=None,
    quick: bool = False,
) -> RunOutput:
    """Run ``experiment`` with ``cfg`` and write everything to ``out_dir``.

    ``store`` (an :class:`analyses.subruns.SubrunStore`) is handed to experiments that keep
    sub-runs; ``quick`` is recorded in the results' attributes. Returns what was written.
    """
    from analyses.experiments import accepts_store, check_config, resolve_experiment
    from neurosim.atomic import atomic_write_text, remove_stale_temporaries
    from neurosim.config import check_device
    from neurosim.export import to_netcdf

    module = resolve_experiment(experiment)
    device = check_device(device)
    check_config(module, cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    atomic_write_text(out_dir / "config.toml", cfg.to_toml())
    if store is not None:
        store.begin()
    kwargs = {"store": store} if store is not None and accepts_store(module) else {}
    start = time.perf_counter()
    ds = module.run(cfg, device=device, quiet=quiet, **kwargs)
    ds.attrs["wall_time_s"] = round(time.perf_counter() - start, 3)
    ds.attrs["device"] = device
    ds.attrs["quick"] = int(quick)
    path = to_netcdf(
        ds,
        out_dir / getattr(module, "RESULT_FILE", "results.nc"),
        config=cfg,
        seed=cfg.seed,
        experiment=experiment,
    )
    drawn = list(module.figures(ds, out_dir)) if figures and hasattr(module, "figures") else []
    return RunOutput(path, module.summary(ds) if hasattr(module, "summary") else "", drawn)


class _Plan(NamedTuple):
    cfg: Any
    device: str
    out: Path | None  # None: a new directory of its own under results/
    store: Any  # the checked SubrunStore of an explicit --out (None for a new directory)


def _prepare_run(args: argparse.Namespace) -> _Plan:
    """Every check of ``neurosim run``, in order, before any file is written."""
    from neurosim.config import check_device

    cfg = load_config(args.experiment, quick=args.quick, config_file=args.config, seed=args.seed)
    device = check_device(args.device, "--device")
    if args.out is None:  # only the parent of the new directory needs checking
        base = _nearest_existing(Path("results"))
        if not base.is_dir() or not _writable(base):
            raise UsageError(f"cannot create the default output directory under {str(base)!r}")
        return _Plan(cfg, device, None, None)
    store = check_out_dir(args.out, args.experiment, cfg, device, force=args.force)
    return _Plan(cfg, device, args.out, store)


def _wrote(output: RunOutput, out: Path, figures: bool) -> str:
    files = [output.results.name, "config.toml"]
    if figures:
        files += [p.name for p in output.figures]
    text = f"wrote {', '.join(files)} in {out}"
    return text if figures else text + " (no figures: --no-figures)"


def _interrupted(err: KeyboardInterrupt, store, experiment: str, out: Path) -> int:
    code = getattr(err, "exit_code", 130)
    if store is None or store.n_planned == 0:
        kept = f"no sub-runs kept ({experiment} does not keep sub-runs)"
        hint = ""
    else:
        kept = f"{store.n_kept} of {store.n_planned} sub-runs kept in {out / 'subruns'}"
        hint = f"; run the same command with --out {out} to resume"
    print(f"\nneurosim: interrupted; {kept}{hint}", file=sys.stderr)
    return code


def _remove_written(out: Path, new: bool) -> None:
    """After bad input found by the experiment itself: remove what this command wrote."""
    from analyses.subruns import SUBRUNS_DIR

    if new:
        shutil.rmtree(out, ignore_errors=True)
        return
    (out / "config.toml").unlink(missing_ok=True)
    subruns = out / SUBRUNS_DIR
    if subruns.is_dir() and not any(subruns.glob("*.npz")):
        shutil.rmtree(subruns, ignore_errors=True)


def _run_command(args: argparse.Namespace) -> int:
    from analyses.subruns import SUBRUNS_DIR, SubrunStore, signals_as_interrupts

    plan = _prepare_run(args)
    out, store, new = plan.out, plan.store, plan.out is None or not plan.out.exists()
    try:
        if out is None:
            out = new_run_dir(Path("results"), args.experiment)
            store = SubrunStore(
                out / SUBRUNS_DIR, experiment=args.experiment, config=plan.cfg, device=plan.device
            )
        else:
            out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out {str(out)!r} cannot be created ({err.strerror})") from None
    if len(store):
        print(f"resuming in {out}: {len(store)} sub-runs kept from an earlier run", file=sys.stderr)
    with signals_as_interrupts():
        try:
            output = run_experiment(
                args.experiment,
                plan.cfg,
                out,
                device=plan.device,
                quiet=args.quiet,
                figures=not args.no_figures,
                store=store,
                quick=args.quick,
            )
        except KeyboardInterrupt as err:
            return _interrupted(err, store, args.experiment, out)
        except MemoryError as err:  # a size the config's bounds let through
            print(
                f"neurosim: error: {args.experiment} ran out of memory ({err}); a size in its "
                f"config is too large for this machine; {store.n_kept} sub-runs kept in {out}",
                file=sys.stderr,
            )
            return 1
        except ValueError:
            if store.n_kept == 0:
                _remove_written(out, new)
            raise
    print(output.summary)
    print(f"\n{_wrote(output, out, not args.no_figures)}")
    if args.quick:
        print("--quick: a smoke test at test-suite size; its numbers are not results")
    return 0


def _show_command(path: Path) -> int:
    if path.is_dir():
        files = sorted(p.name for p in path.glob("*.nc"))
        hint = f"e.g. {path / files[0]}" if files else "it holds no .nc file"
        raise UsageError(f"show: {str(path)!r} is a directory; give a results file ({hint})")
    if not path.exists():
        raise UsageError(f"show: {str(path)!r} does not exist; give a results file (.nc)")
    from neurosim.export import open_results, summarize

    try:
        ds = open_results(path)
    except (OSError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UsageError(
            f"show: {str(path)!r} is not a NetCDF results file ({reason[:120]})"
        ) from None
    print(summarize(ds))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "sweep":
        return run_sweep_command(args)
    try:
        if args.command == "show":
            return _show_command(args.file)
        return _run_command(args)
    except ValueError as err:
        print(f"neurosim: error: {err}", file=sys.stderr)
        return BAD_INPUT
    except KeyboardInterrupt:  # before the run started (while loading torch, say)
        print("\nneurosim: interrupted before any work; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
