"""The ``neurosim`` command: run an experiment, show a results file.

::

    neurosim run [EXPERIMENT] [--config FILE.toml] [--out DIR] [--quick] [--device cpu|cuda]
                 [--seed N] [--quiet]
    neurosim show FILE.nc
    neurosim sweep SWEEP.toml [--workers N | --scheduler ADDRESS] [--out DIR] [--dry-run]

The command lives in ``analyses`` (not ``neurosim``) because it dispatches to the experiments,
which sit above the simulator in the data flow; ``neurosim`` itself never imports ``analyses``.

A run validates its whole configuration (defaults or ``--quick`` size, then the TOML file's
overrides, then ``--seed``) before it creates anything, so a bad field fails at once naming the
field. It then writes ``DIR/config.toml``, runs, writes the results NetCDF atomically with
provenance attributes, draws the figures and prints the summary table.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from pathlib import Path

from analyses.experiments import DEFAULT_EXPERIMENT, EXPERIMENTS, get_experiment
from analyses.sweep import add_sweep_parser, run_sweep_command
from neurosim.atomic import atomic_write_text
from neurosim.export import open_results, summarize, to_netcdf

__all__ = ["main", "build_parser", "load_config", "run_experiment"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neurosim",
        description="Co-distilling cortical columns under a foveated retina.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an experiment and write results, config and figures")
    run.add_argument(
        "experiment",
        nargs="?",
        default=DEFAULT_EXPERIMENT,
        help=f"one of {', '.join(EXPERIMENTS)} (default: {DEFAULT_EXPERIMENT})",
    )
    run.add_argument("--config", type=Path, help="TOML file overriding any config field")
    run.add_argument(
        "--out", type=Path, help="output directory (default: results/<experiment>-<timestamp>)"
    )
    run.add_argument("--quick", action="store_true", help="the small test-suite-sized run")
    run.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda")
    run.add_argument("--seed", type=int, help="override the config's seed")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--no-figures", action="store_true", help="skip drawing figures")

    show = sub.add_parser("show", help="print a summary of any results file")
    show.add_argument("file", type=Path)

    add_sweep_parser(sub)
    return parser


def load_config(experiment: str, *, quick: bool, config_file: Path | None, seed: int | None):
    """The validated config of ``experiment``; raises ``ValueError`` naming a bad field."""
    module = get_experiment(experiment)
    cfg = module.Config.quick() if quick else module.Config()
    if config_file is not None:
        if not Path(config_file).is_file():
            raise ValueError(f"--config file {str(config_file)!r} does not exist")
        cfg = cfg.updated_from_toml(Path(config_file).read_text())
    if seed is not None:
        cfg = cfg.updated({"seed": seed})
    return cfg


def _check_device(device: str) -> str:
    import torch

    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but torch sees no CUDA GPU here")
        return device
    raise ValueError(f"--device must be 'cpu' or 'cuda' (optionally 'cuda:N'); got {device!r}")


def run_experiment(
    experiment: str,
    cfg,
    out_dir: Path,
    *,
    device: str = "cpu",
    quiet: bool = False,
    figures: bool = True,
) -> tuple[Path, str]:
    """Run ``experiment`` with ``cfg`` and write everything to ``out_dir``.

    Returns the results path and the summary text.
    """
    module = get_experiment(experiment)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "config.toml", cfg.to_toml())
    start = time.perf_counter()
    ds = module.run(cfg, device=device, quiet=quiet)
    ds.attrs["wall_time_s"] = round(time.perf_counter() - start, 3)
    ds.attrs["device"] = device
    path = to_netcdf(
        ds, out_dir / module.RESULT_FILE, config=cfg, seed=cfg.seed, experiment=experiment
    )
    if figures:
        module.figures(ds, out_dir)
    return path, module.summary(ds)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "sweep":
        return run_sweep_command(args)
    try:
        if args.command == "show":
            print(summarize(open_results(args.file)))
            return 0
        if args.command == "run":
            cfg = load_config(
                args.experiment, quick=args.quick, config_file=args.config, seed=args.seed
            )
            device = _check_device(args.device)
            out = args.out
            if out is None:
                stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
                out = Path("results") / f"{args.experiment}-{stamp}"
            path, text = run_experiment(
                args.experiment,
                cfg,
                out,
                device=device,
                quiet=args.quiet,
                figures=not args.no_figures,
            )
            print(text)
            print(f"\nwrote {path} (and config.toml, figures) in {path.parent}")
            return 0
    except ValueError as err:
        print(f"neurosim: error: {err}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
