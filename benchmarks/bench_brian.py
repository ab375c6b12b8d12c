"""Wall time of the same settling in torch and in Brian2, and Brian2's compile time.

For each model size, the same simulation (one stimulus, ``n_steps`` Euler steps of the same
``dt_ms``, float64) runs in

* torch: ``Model.settle(..., record=("state",))``, the trajectory of the states as Brian2's
  monitors record it (best of ``--repeats``);
* Brian2 with Cython code generation, in a fresh Python process with an *empty* cache directory
  (cold: every code object is generated and compiled), then a second network in the same process
  (compiled modules reused from memory: the steady-state run time), then a second fresh process
  on the *same* cache directory (warm: modules loaded from disk);
* Brian2 with numpy code generation (no compiler), for reference.

Compile time = first run in a process - steady-state run (cold and warm). Brian2's import time
is excluded everywhere (measured apart). The trajectories of every Brian2 run are checked
against torch (max relative error reported).

Usage::

    python benchmarks/bench_brian.py [--sizes 16x3x8,64x3x16] [--n-steps 100] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _grid(n: int) -> np.ndarray:
    side = int(np.ceil(np.sqrt(n)))
    lin = np.linspace(-2.0, 2.0, side)
    return np.stack(np.meshgrid(lin, lin), axis=-1).reshape(-1, 2)[:n]


def _model(n_columns: int, n_levels: int, dim: int, n_steps: int):
    from neurosim.dynamics import DynamicsConfig
    from neurosim.model import Model, ModelConfig

    cfg = ModelConfig(
        n_columns=n_columns,
        n_levels=n_levels,
        dim=dim,
        hidden=(2 * dim,),
        k_cells=8,
        neighbour_k=4,
        seed=0,
        dynamics=DynamicsConfig(
            tau_ms=20.0, dt_ms=1.0, n_steps=n_steps, beta=1.0, beta_schedule="linear", beta_end=4.0
        ),
    )
    cells = np.random.default_rng(0).uniform(-2.5, 2.5, size=(128, 2))
    return Model(cfg, cells, column_positions_deg=_grid(n_columns)).double()


def _responses():
    import torch

    return torch.tensor(np.random.default_rng(1).normal(size=(128,)), dtype=torch.float64)


def worker(args: dict) -> dict:
    """Inside a fresh process: Brian2 build + run twice, timings and errors."""
    t0 = time.perf_counter()
    import brian2  # noqa: F401
    import torch

    from neurosim import brian

    import_s = time.perf_counter() - t0
    torch.set_num_threads(1)
    model = _model(args["n_columns"], args["n_levels"], args["dim"], args["n_steps"])
    resp = _responses()
    with torch.no_grad():
        ref = model.settle(resp[None], record=("state",)).trajectory.numpy()
    out = {"import_s": import_s, "runs": []}
    for _ in range(2 if args["second"] else 1):
        t1 = time.perf_counter()
        net = brian.build_network(model, resp, codegen=args["codegen"], cache_dir=args["cache_dir"])
        build_s = time.perf_counter() - t1
        out["n_synapses"] = sum(len(s) for syns in net.synapses.values() for s in syns)
        ds = net.run()
        out["runs"].append(
            {
                "build_s": build_s,
                "run_s": net.run_s,
                "codegen": net.codegen,
                "max_rel_error": float(brian.relative_error(ds.rate.values, ref).max()),
            }
        )
        del net, ds
    return out


def _spawn(args: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(args)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_size(n_columns: int, n_levels: int, dim: int, n_steps: int, repeats: int) -> dict:
    import torch

    model = _model(n_columns, n_levels, dim, n_steps)
    resp = _responses()[None]
    times = []
    with torch.no_grad():
        model.settle(resp, record=("state",))
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.settle(resp, record=("state",))
            times.append(time.perf_counter() - t0)
    torch_s = min(times)
    base = dict(n_columns=n_columns, n_levels=n_levels, dim=dim, n_steps=n_steps)
    with tempfile.TemporaryDirectory(prefix="bench-brian-") as cache:
        cold = _spawn({**base, "codegen": "cython", "cache_dir": cache, "second": True})
        warm = _spawn({**base, "codegen": "cython", "cache_dir": cache, "second": False})
        n_files = len(list(Path(cache).glob("*.so")))
    with tempfile.TemporaryDirectory(prefix="bench-brian-np-") as cache:
        numpy_run = _spawn({**base, "codegen": "numpy", "cache_dir": cache, "second": True})
    steady = cold["runs"][1]
    row = {
        **base,
        "n_synapses": cold["n_synapses"],
        "torch_s": torch_s,
        "brian_cython_run_s": steady["run_s"],
        "brian_numpy_run_s": numpy_run["runs"][1]["run_s"],
        "ratio_brian_cython_vs_torch": steady["run_s"] / torch_s,
        "ratio_brian_numpy_vs_torch": numpy_run["runs"][1]["run_s"] / torch_s,
        "compile_cold_s": cold["runs"][0]["run_s"] - steady["run_s"],
        "compile_warm_s": warm["runs"][0]["run_s"] - steady["run_s"],
        "first_run_cold_s": cold["runs"][0]["run_s"],
        "first_run_warm_s": warm["runs"][0]["run_s"],
        "build_s": steady["build_s"],
        "brian2_import_s": cold["import_s"],
        "compiled_modules": n_files,
        "max_rel_error": max(
            r["max_rel_error"] for r in cold["runs"] + warm["runs"] + numpy_run["runs"]
        ),
        "codegen": steady["codegen"],
    }
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="16x3x8,64x3x16", help="CxLxD,... (columns x levels x dim)"
    )
    parser.add_argument("--n-steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: Brian2's runtime is single-threaded too)",
    )
    parser.add_argument("--json", type=Path, help="write the rows as JSON to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    import torch

    torch.set_num_threads(args.torch_threads)
    rows = []
    for size in args.sizes.split(","):
        c, lv, d = (int(v) for v in size.lower().split("x"))
        rows.append(bench_size(c, lv, d, args.n_steps, args.repeats))
    head = (
        f"{'C x L x D':>10} {'steps':>5} {'torch s':>8} {'brian cy s':>10} {'ratio':>7} "
        f"{'brian np s':>10} {'ratio':>7} {'compile cold s':>14} {'compile warm s':>14} "
        f"{'modules':>7} {'max rel err':>11}"
    )
    print(
        f"cpu count {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}; "
        f"torch threads {torch.get_num_threads()}; times in s for the whole run"
    )
    print(head)
    for r in rows:
        print(
            f"{r['n_columns']:>4}x{r['n_levels']}x{r['dim']:<3} {r['n_steps']:>5} "
            f"{r['torch_s']:>8.4f} {r['brian_cython_run_s']:>10.4f} "
            f"{r['ratio_brian_cython_vs_torch']:>7.1f} {r['brian_numpy_run_s']:>10.4f} "
            f"{r['ratio_brian_numpy_vs_torch']:>7.1f} {r['compile_cold_s']:>14.1f} "
            f"{r['compile_warm_s']:>14.2f} {r['compiled_modules']:>7} {r['max_rel_error']:>11.2e}"
        )
    if args.json:
        payload = {
            "rows": rows,
            "load_average_1min": os.getloadavg()[0],
            "cpu_count": os.cpu_count(),
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
