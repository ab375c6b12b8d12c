"""Training throughput of the model kinds, old code against new, and the default run's wall time.

Three measurements, each printed as a table (``--json FILE`` writes them all):

1. **old vs new on the flagship grid at equal steps.** The commit before the batched training
   (``--old-commit``, checked out into a git worktree) trains every model of the grid one after
   the other, as it did; this tree trains the same grid with every kind x retina as one unit of
   stacked replicas, first in one process (``new 1 proc``), then in ``--workers`` processes;
   and, unless ``--no-denormal-row``, in one process computing with denormal floats as the old
   code did (``denormals kept``: what :mod:`neurosim.denormals` saves).
   Both in this one run, one after the other, so the ratio compares like with like. The grid
   is chosen so that both draw the same batches (training-set sizes that are multiples of the
   batch size, ``steps`` a multiple of every epoch's length) and run the old rule (no layer
   norm; the end-to-end kinds on the image label; ``codistill`` with the per-column label, MSE
   consensus, contrastive 0.02), so the per-step training losses can be compared: the table
   gives the largest difference per kind.
2. **throughput per kind** at the flagship size (36 columns) and at 4x the columns (144):
   steps/s and column-images/s of one unit of ``--replicas`` stacked models, and the achieved
   GFLOP/s against the FLOPs that ``torch.utils.flop_counter`` counts in one training step.
3. ``--full-run``: the wall time and accuracies of the default ``neurosim run``.

Usage::

    python benchmarks/bench_train.py [--old-commit 0f34337] [--steps 144] [--workers 2]
                                     [--replicas 24] [--full-run] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: the old default kinds (the new ones add "local")
OLD_KINDS = ("cnn", "shared-columns", "lc-backprop", "codistill")
RETINAS = ("uniform", "foveated")
SIZES = (96, 288)  # multiples of the batch size: both codes draw the same batches
SEEDS = (0, 1)

_OLD_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import torch
    torch.set_num_threads(1)
    from analyses.baselines import BaselineConfig, build_retina, retina_inputs, train_and_evaluate
    from analyses.tasks import canvas_split, digits_split, stratified_subset
    spec = json.loads(sys.argv[1])
    split = digits_split(seed=0)
    cv = canvas_split(split, canvas_px=24, digit_px=12, n_train=max(spec["sizes"]),
                      n_test=128, seed=0)
    out = {"losses": {}, "seconds": 0.0}
    start = time.perf_counter()
    for rk in spec["retinas"]:
        retina = build_retina(rk, n_cells=288, canvas_px=24, pixels_per_deg=2.0, seed=0)
        train = retina_inputs(retina, cv.train.images, cv.train.labels)
        test = retina_inputs(retina, cv.test.images, cv.test.labels,
                             scale=(train.scale, train.image_scale))
        for seed in spec["seeds"]:
            order = stratified_subset(cv.train.labels, max(spec["sizes"]), seed=seed)
            for n in spec["sizes"]:
                for kind in spec["kinds"]:
                    cfg = BaselineConfig(steps=spec["steps"], batch_size=16)
                    res = train_and_evaluate(kind, retina, train.subset(order[:n]), test, cfg,
                                             seed=seed)
                    key = f"{kind}|{rk}|{n}|{seed}"
                    out["losses"][key] = [float(v) for v in res.history["loss"].values]
    out["seconds"] = time.perf_counter() - start
    print("JSON" + json.dumps(out))
    """
)


def _old_worktree(commit: str) -> Path:
    path = Path(tempfile.gettempdir()) / f"neurosim-old-{commit}"
    if not (path / "analyses").is_dir():
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), commit],
            check=True,
            capture_output=True,
        )
    return path


def run_old(commit: str, steps: int) -> dict:
    """The old code's grid, in a subprocess importing the old worktree."""
    path = _old_worktree(commit)
    spec = dict(kinds=OLD_KINDS, retinas=RETINAS, sizes=SIZES, seeds=SEEDS, steps=steps)
    env = {**os.environ, "PYTHONPATH": str(path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _OLD_SCRIPT, json.dumps(spec)],
        cwd=path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("JSON"))
    return json.loads(line[4:])


def _old_rule(kind: str, steps: int, flush_denormals: bool = True):
    """This tree's BaselineConfig running the old rule for ``kind``."""
    from analyses.baselines import BaselineConfig, flagship_model
    from neurosim.objectives import ObjectiveConfig

    model = flagship_model(normalize="none")
    if kind == "codistill":
        objective = ObjectiveConfig.local_codistillation(
            label="column", consensus_loss="mse", w_consensus=0.1, w_contrastive=0.02
        )
    else:
        objective = ObjectiveConfig.local_codistillation()
    return BaselineConfig(
        model=model,
        objective=objective,
        steps=steps,
        batch_size=16,
        flush_denormals=flush_denormals,
    )


def run_new(steps: int, workers: int, flush_denormals: bool = True) -> dict:
    """This tree's grid: every kind x retina one unit of stacked replicas, all units in one
    :func:`analyses.runner.run_units` call (as ``neurosim run`` trains them), each unit with
    its kind's old rule (``flush_denormals=False``: computing with denormals, as the old code
    did)."""
    import torch

    from analyses.baselines import Job, build_retina, retina_inputs
    from analyses.runner import Unit, run_units
    from analyses.tasks import canvas_split, digits_split, stratified_subset

    torch.set_num_threads(1)
    split = digits_split(seed=0)
    cv = canvas_split(split, canvas_px=24, digit_px=12, n_train=max(SIZES), n_test=128, seed=0)
    start = time.perf_counter()
    units = []
    for kind in OLD_KINDS:
        for rk in RETINAS:
            retina = build_retina(rk, n_cells=288, canvas_px=24, pixels_per_deg=2.0, seed=0)
            render = kind == "cnn"
            train = retina_inputs(retina, cv.train.images, cv.train.labels, render=render)
            test = retina_inputs(
                retina,
                cv.test.images,
                cv.test.labels,
                scale=(train.scale, train.image_scale),
                render=render,
            )
            jobs = []
            for seed in SEEDS:
                order = stratified_subset(cv.train.labels, max(SIZES), seed=seed)
                for n in SIZES:
                    job = Job(retina, train.subset(order[:n]), {"test": test}, seed)
                    jobs.append((f"{kind}|{rk}|{n}|{seed}", job))
            rule = _old_rule(kind, steps, flush_denormals)
            units.append(Unit(f"{kind}/{rk}", kind, jobs, config=rule))
    res = run_units(units, _old_rule("cnn", steps, flush_denormals), workers=workers)
    losses = {key: r.loss_curve for key, r in res.items()}
    return {"seconds": time.perf_counter() - start, "losses": losses}


def loss_differences(old: dict, new: dict, steps: int) -> dict[str, dict[str, float]]:
    """Per kind, the largest |old - new| training loss at the first step and over the steps
    both kept: equal first losses with a difference that grows over training is float
    rounding (the batched kernels sum in another order) amplified by training, not another
    model."""
    import numpy as np

    from analyses.runner import _thin

    out: dict[str, dict[str, float]] = {}
    for key, curve in new["losses"].items():
        kind = key.split("|")[0]
        thinned, _ = _thin(old["losses"][key])
        diff = np.abs(np.asarray(thinned) - np.asarray(curve))
        row = out.setdefault(kind, {"first_step": 0.0, "whole_run": 0.0})
        row["first_step"] = max(row["first_step"], float(diff[0]))
        row["whole_run"] = max(row["whole_run"], float(diff.max()))
    return out


def flops_per_step(kind: str, n_columns: int, replicas: int) -> tuple[float, object]:
    """FLOPs of one training step (forward + backward) of a unit, counted by torch, and a
    function that runs one step."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from analyses.baselines import (
        BaselineConfig,
        build_model,
        build_retina,
        flagship_model,
        make_loss_fn,
    )

    cfg = BaselineConfig(model=flagship_model(n_columns=n_columns), steps=100)
    retina = build_retina(
        "uniform",
        n_cells=288 * n_columns // 36,
        canvas_px=24 * int(round((n_columns / 36) ** 0.5)),
        pixels_per_deg=2.0,
        seed=0,
    )
    models = [build_model(kind, retina, cfg, seed=s) for s in range(replicas)]
    stacked = type(models[0]).stack(models)
    objective = make_loss_fn(kind, cfg, seeds=list(range(replicas)))
    g = torch.Generator().manual_seed(0)
    if kind == "cnn":
        x = torch.randn(16, replicas, *retina.image_shape, generator=g)
    else:
        x = torch.randn(16, replicas, retina.n_cells, generator=g)
    y = torch.randint(0, 10, (16, replicas), generator=g)
    opt = torch.optim.Adam(stacked.parameters(), lr=1e-3, fused=True)  # as the Trainer

    def step():
        terms = objective(stacked, (x, y), 50)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()

    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops()), step


def throughput(kinds, replicas: int, reps: int = 10, columns=(36, 144)) -> list[dict]:
    import torch

    torch.set_num_threads(1)
    rows = []
    for n_columns in columns:
        for kind in kinds:
            flops, step = flops_per_step(kind, n_columns, replicas)
            for _ in range(2):
                step()
            start = time.perf_counter()
            for _ in range(reps):
                step()
            dt = (time.perf_counter() - start) / reps
            rows.append(
                dict(
                    kind=kind,
                    columns=n_columns,
                    replicas=replicas,
                    ms_per_step=1e3 * dt,
                    steps_per_s=1.0 / dt,
                    model_steps_per_s=replicas / dt,
                    column_images_per_s=16 * n_columns * replicas / dt,
                    gflop_per_step=flops / 1e9,
                    gflop_per_s=flops / dt / 1e9,
                )
            )
            r = rows[-1]
            print(
                f"{kind:>15} {n_columns:>7} {replicas:>8} {r['ms_per_step']:>9.1f} "
                f"{r['model_steps_per_s']:>9.1f} {r['column_images_per_s']:>12.0f} "
                f"{r['gflop_per_step']:>8.3f} {r['gflop_per_s']:>7.2f}",
                flush=True,
            )
    return rows


def full_run() -> dict:
    out = Path(tempfile.mkdtemp(prefix="neurosim-full-"))
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "analyses.cli", "run", "--out", str(out / "run"), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    print(proc.stdout)
    if proc.returncode:
        print(proc.stderr, file=sys.stderr)
    return {
        "seconds": seconds,
        "returncode": proc.returncode,
        "results": str(out / "run" / "results.nc"),
        "summary": proc.stdout,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-commit", default="0f34337")
    parser.add_argument("--steps", type=int, default=144, help="a multiple of 18")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--replicas", type=int, default=24)
    parser.add_argument("--columns", type=int, nargs="+", default=[36, 144])
    parser.add_argument("--reps", type=int, default=10, help="timed steps per row")
    parser.add_argument("--no-compare", action="store_true")
    parser.add_argument(
        "--no-denormal-row",
        action="store_true",
        help="skip the 1-process run that computes with denormals (neurosim.denormals)",
    )
    parser.add_argument("--full-run", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.steps % 18:
        parser.error("--steps must be a multiple of 18 (both codes then draw the same batches)")
    report: dict = {
        "grid": dict(kinds=OLD_KINDS, retinas=RETINAS, sizes=SIZES, seeds=SEEDS, steps=args.steps)
    }
    if not args.no_compare:
        n_models = len(OLD_KINDS) * len(RETINAS) * len(SIZES) * len(SEEDS)
        old = run_old(args.old_commit, args.steps)
        kept = None if args.no_denormal_row else run_new(args.steps, 1, flush_denormals=False)
        new1 = run_new(args.steps, 1)
        new2 = run_new(args.steps, args.workers)
        diffs = loss_differences(old, new1, args.steps)
        print(f"\nold vs new on the flagship grid: {n_models} models x {args.steps} steps")
        print(f"{'code':>26} {'wall s':>8} {'model-steps/s':>14} {'x old':>7}")
        rows = [("old (one by one)", old)]
        if kept is not None:
            rows.append(("new 1 proc, denormals kept", kept))
        rows += [("new 1 proc", new1), (f"new {args.workers} procs", new2)]
        for name, res in rows:
            rate = n_models * args.steps / res["seconds"]
            print(
                f"{name:>26} {res['seconds']:>8.1f} {rate:>14.1f} "
                f"{old['seconds'] / res['seconds']:>7.2f}"
            )
        print(
            "largest |loss old - new| per kind, first step / whole run: "
            + ", ".join(
                f"{k} {d['first_step']:.1e} / {d['whole_run']:.1e}" for k, d in diffs.items()
            )
        )
        report["compare"] = dict(
            old_seconds=old["seconds"],
            new_1proc_denormals_kept_seconds=None if kept is None else kept["seconds"],
            new_1proc_seconds=new1["seconds"],
            new_workers_seconds=new2["seconds"],
            workers=args.workers,
            speedup_1proc=old["seconds"] / new1["seconds"],
            speedup_workers=old["seconds"] / new2["seconds"],
            max_loss_difference=diffs,
        )
    print(f"\nthroughput per unit of {args.replicas} stacked models (1 thread)")
    print(
        f"{'kind':>15} {'columns':>7} {'replicas':>8} {'ms/step':>9} {'models/s':>9} "
        f"{'col-img/s':>12} {'GFLOP':>8} {'GFLOP/s':>7}"
    )
    report["throughput"] = throughput(
        ("cnn", "shared-columns", "lc-backprop", "local", "codistill"),
        args.replicas,
        args.reps,
        tuple(args.columns),
    )
    if args.full_run:
        report["full_run"] = full_run()
        print(f"full default run: {report['full_run']['seconds']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
