"""Speed and memory of one settling step (forward + backward) of the column sheet.

For each number of columns: the unshared model (per-column weights, batched matmul), the same
model with ``shared=True`` (one weight set, the CNN case) and, at the smallest size, a reference
that loops over per-column ``nn.Linear`` modules (same lateral attention and dynamics; only the
column networks are looped). Timings of one size are interleaved (unshared, shared, loop,
unshared, ...) and the median is reported, so the ratios compare like with like on a busy machine.

The whole step also holds parts that every variant shares (lateral attention, consensus, Euler
update, stacking the levels): ``rest`` = unshared step - unshared nets. Even with free column
networks the loop could be at most ``loop step / rest`` times slower (``loop_ratio_bound``), so the
whole-step ``loop/unsh`` is bounded by that shared part; ``nets`` rows compare the networks alone.

Peak memory: each configuration runs once more in a fresh subprocess. On CPU the number is the
growth of the peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) during the
step, over the RSS after building the model and inputs and after a warm-up step at batch 1 (so
the one-time loading of library code and lazy initialisation is not counted); on CUDA it is
``torch.cuda.max_memory_allocated`` during the step minus the allocation before it.

Usage::

    python benchmarks/bench_columns.py [--sizes 256 1024 4096] [--batch 32] [--reps 5]
                                       [--device cpu|cuda] [--threads 1] [--no-memory] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neurosim.attention import lateral_attention  # noqa: E402
from neurosim.dynamics import consensus, drift, euler  # noqa: E402
from neurosim.model import Model, ModelConfig  # noqa: E402

N_LEVELS = 4
DIM = 64
HIDDEN = (64,)
K_CELLS = 16


def build(n_columns: int, shared: bool, device: str) -> Model:
    rng = np.random.default_rng(0)
    side = np.sqrt(n_columns)
    cells = rng.uniform(-side, side, size=(4 * n_columns, 2))
    columns = rng.uniform(-side, side, size=(n_columns, 2))
    config = ModelConfig(
        n_columns=n_columns,
        n_levels=N_LEVELS,
        dim=DIM,
        hidden=HIDDEN,
        k_cells=K_CELLS,
        shared=shared,
    )
    return Model(config, cells, column_positions_deg=columns, device=device)


class LoopReference(nn.Module):
    """The same step, but every column's networks are separate ``nn.Sequential`` modules."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = model
        c = model.n_columns

        def mlp(d_in: int) -> nn.Sequential:
            layers: list[nn.Module] = []
            for h in HIDDEN:
                layers += [nn.Linear(d_in, h), nn.GELU()]
                d_in = h
            layers.append(nn.Linear(d_in, DIM))
            return nn.Sequential(*layers)

        p = model.config.position_dim
        self.encoder = nn.ModuleList(mlp(K_CELLS) for _ in range(c))
        self.bottom_up = nn.ModuleList(
            nn.ModuleList(mlp(DIM) for _ in range(c)) for _ in range(N_LEVELS - 1)
        )
        self.top_down = nn.ModuleList(
            nn.ModuleList(mlp(DIM + p) for _ in range(c)) for _ in range(N_LEVELS - 1)
        )

    @staticmethod
    def _loop(nets: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([net(x[:, c]) for c, net in enumerate(nets)], dim=1)

    def step(self, state: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        m = self.model
        b = state.shape[0]
        bu = [self._loop(self.encoder, m.column_inputs(responses))]
        bu += [self._loop(nets, state[:, :, lv]) for lv, nets in enumerate(self.bottom_up)]
        pos = m.position_features.expand(b, -1, -1)
        td = [
            self._loop(nets, torch.cat([state[:, :, lv + 1], pos], dim=-1))
            for lv, nets in enumerate(self.top_down)
        ]
        td.append(torch.zeros_like(bu[0]))
        lat = [
            lateral_attention(state[:, :, lv], nb.index, 1.0, mask=nb.mask)
            for lv, nb in enumerate(m.neighbours)
        ]
        terms = {
            "bottom_up": torch.stack(bu, 2),
            "top_down": torch.stack(td, 2),
            "lateral": torch.stack(lat, 2),
            "previous": state,
        }
        cons = consensus(terms, m.term_weights)
        dyn = m.config.dynamics
        return euler(state, drift(state, cons, dyn.tau_ms), dyn.dt_ms)


def _nets_unshared(model: Model, state: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
    """Only the column networks of one step (encoder, bottom-up, top-down), summed."""
    out = model.encoder(model.column_inputs(responses)).square().mean()
    for lv, net in enumerate(model.bottom_up):
        out = out + net(state[:, :, lv]).square().mean()
    for lv, net in enumerate(model.top_down):
        out = out + net(state[:, :, lv + 1], model.position_features).square().mean()
    return out


def _nets_loop(ref: LoopReference, state: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
    m = ref.model
    out = ref._loop(ref.encoder, m.column_inputs(responses)).square().mean()
    for lv, nets in enumerate(ref.bottom_up):
        out = out + ref._loop(nets, state[:, :, lv]).square().mean()
    pos = m.position_features.expand(state.shape[0], -1, -1)
    for lv, nets in enumerate(ref.top_down):
        x = torch.cat([state[:, :, lv + 1], pos], dim=-1)
        out = out + ref._loop(nets, x).square().mean()
    return out


def make_step(kind: str, n_columns: int, batch: int, device: str, part: str = "step"):
    """Return a closure running one forward+backward of ``kind`` (unshared | shared | loop).

    ``part="step"``: a whole settling step (nets + lateral attention + consensus + Euler);
    ``part="nets"``: only the column networks of that step.
    """
    model = build(n_columns, shared=(kind == "shared"), device=device)
    gen = torch.Generator().manual_seed(1)
    state = torch.randn(batch, n_columns, N_LEVELS, DIM, generator=gen).to(device)
    state.requires_grad_(True)
    responses = torch.randn(batch, model.n_cells, generator=gen).to(device)
    if kind == "loop":
        ref = LoopReference(model).to(device)
        params = list(ref.parameters())

        def run() -> None:
            if part == "nets":
                _nets_loop(ref, state, responses).backward()
            else:
                ref.step(state, responses).square().mean().backward()
    else:
        params = list(model.parameters())

        def run() -> None:
            if part == "nets":
                _nets_unshared(model, state, responses).backward()
            else:
                model.step(state, responses, 0)[0].square().mean().backward()

    def step() -> None:
        for p in params:
            p.grad = None
        state.grad = None
        run()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return step


def time_interleaved(steps: dict, reps: int) -> dict[str, float]:
    for step in steps.values():
        step()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(reps):
        for kind, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[kind].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def measure_memory_here(kind: str, n_columns: int, batch: int, device: str) -> float:
    make_step(kind, n_columns, 1, device)()  # warm-up: pages in the code paths, lazy init
    step = make_step(kind, n_columns, batch, device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    before = _rss_mb()
    step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB -> MB on Linux
    return max(peak - before, 0.0)


def measure_memory(kind: str, n_columns: int, batch: int, device: str) -> float | None:
    cmd = [
        sys.executable,
        __file__,
        "--_memory",
        kind,
        str(n_columns),
        "--batch",
        str(batch),
        "--device",
        device,
        "--threads",
        str(torch.get_num_threads()),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return None
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--loop-max-columns", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: the machine is shared; same for every model)",
    )
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--_memory", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args._memory:
        kind, n = args._memory
        print(measure_memory_here(kind, int(n), args.batch, args.device))
        return 0
    rows = []
    header = (
        f"{'columns':>8} {'part':>5} {'unshared ms':>12} {'shared ms':>10} {'loop ms':>9} "
        f"{'unsh/shared':>11} {'loop/unsh':>10} {'mem unsh MB':>12} {'mem shared MB':>14}"
    )
    print(
        f"one settling step fwd+bwd, batch {args.batch}, {N_LEVELS} levels, dim {DIM}, "
        f"hidden {HIDDEN}, device {args.device}, torch threads {torch.get_num_threads()}; "
        "part 'step' = the whole step, 'nets' = only the column networks"
    )
    print(header)

    def f(v: float | None, scale: float = 1.0, fmt: str = ".1f") -> str:
        return "-" if v is None else format(v * scale, fmt)

    for n in args.sizes:
        kinds = ["unshared", "shared"] + (["loop"] if n <= args.loop_max_columns else [])
        t = {}
        for part in ("step", "nets"):
            steps = {k: make_step(k, n, args.batch, args.device, part) for k in kinds}
            t[part] = time_interleaved(steps, args.reps)
            del steps
        mem = {}
        if not args.no_memory:
            for k in ("unshared", "shared"):
                mem[k] = measure_memory(k, n, args.batch, args.device)
        row = {
            "n_columns": n,
            "batch": args.batch,
            "n_levels": N_LEVELS,
            "dim": DIM,
            "device": args.device,
            "threads": torch.get_num_threads(),
            "unshared_s": t["step"]["unshared"],
            "shared_s": t["step"]["shared"],
            "loop_s": t["step"].get("loop"),
            "ratio_vs_shared": t["step"]["unshared"] / t["step"]["shared"],
            "ratio_vs_loop": (
                t["step"]["loop"] / t["step"]["unshared"] if "loop" in t["step"] else None
            ),
            "nets_unshared_s": t["nets"]["unshared"],
            "nets_shared_s": t["nets"]["shared"],
            "nets_loop_s": t["nets"].get("loop"),
            "nets_ratio_vs_shared": t["nets"]["unshared"] / t["nets"]["shared"],
            "nets_ratio_vs_loop": (
                t["nets"]["loop"] / t["nets"]["unshared"] if "loop" in t["nets"] else None
            ),
            "rest_unshared_s": t["step"]["unshared"] - t["nets"]["unshared"],
            "loop_ratio_bound": (
                t["step"]["loop"] / (t["step"]["unshared"] - t["nets"]["unshared"])
                if "loop" in t["step"] and t["step"]["unshared"] > t["nets"]["unshared"]
                else None
            ),
            "peak_mem_unshared_mb": mem.get("unshared"),
            "peak_mem_shared_mb": mem.get("shared"),
            "memory_method": (
                "cuda.max_memory_allocated"
                if args.device.startswith("cuda")
                else "ru_maxrss growth in a fresh subprocess"
            ),
        }
        rows.append(row)
        for part, prefix in (("step", ""), ("nets", "nets_")):
            memu = row["peak_mem_unshared_mb"] if part == "step" else None
            mems = row["peak_mem_shared_mb"] if part == "step" else None
            print(
                f"{n:>8} {part:>5} {f(row[prefix + 'unshared_s'], 1e3):>12} "
                f"{f(row[prefix + 'shared_s'], 1e3):>10} {f(row[prefix + 'loop_s'], 1e3):>9} "
                f"{f(row[prefix + 'ratio_vs_shared'], 1, '.2f'):>11} "
                f"{f(row[prefix + 'ratio_vs_loop'], 1, '.1f'):>10} {f(memu, 1, '.0f'):>12} "
                f"{f(mems, 1, '.0f'):>14}",
                flush=True,
            )
        if row["loop_ratio_bound"] is not None:
            print(
                f"{'':>8} rest (attention, consensus, Euler; shared by all variants) "
                f"{row['rest_unshared_s'] * 1e3:.1f} ms: whole-step loop/unsh <= "
                f"{row['loop_ratio_bound']:.1f} even with free column networks",
                flush=True,
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(rows, indent=2))
        tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
