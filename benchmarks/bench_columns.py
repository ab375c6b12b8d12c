"""Speed and memory of one settling step (forward + backward) of the column sheet.

For each number of columns: the unshared model (per-column weights, batched matmul), the same
model with ``shared=True`` (one weight set, the CNN case) and, at the smallest size, a reference
that loops over per-column ``nn.Linear`` modules (:func:`loop_reference`: the same
``Model.step``, lateral attention and dynamics; only the column networks are looped). Timings
of one size are interleaved (unshared, shared, loop, unshared, ...) and the median is reported,
so the ratios compare like with like on a busy machine.

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
import copy
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

from neurosim.columns import ColumnMLP  # noqa: E402
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


class LoopMLP(nn.Module):
    """One ``nn.Sequential`` (``nn.Linear`` + activation) per column, called in a Python loop,
    with :class:`~neurosim.columns.ColumnMLP`'s signature ``(x [B, C, d_x], extra [C, P])``.

    Written as a careful user would: ``unbind`` over columns (its backward stacks the columns'
    gradients once, where ``x[:, c]`` would build a zero-filled gradient of all of ``x`` per
    column), so the reference is not slowed down by an avoidable quadratic cost.
    """

    def __init__(self, n_columns: int, d_in: int, d_out: int, hidden: list[int]) -> None:
        super().__init__()

        def mlp() -> nn.Sequential:
            layers: list[nn.Module] = []
            d = d_in
            for h in hidden:
                layers += [nn.Linear(d, h), nn.GELU()]
                d = h
            layers.append(nn.Linear(d, d_out))
            return nn.Sequential(*layers)

        self.nets = nn.ModuleList(mlp() for _ in range(n_columns))

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        outs = []
        for c, (xc, net) in enumerate(zip(x.unbind(1), self.nets, strict=True)):
            if extra is not None:
                xc = torch.cat([xc, extra[c].expand(xc.shape[0], -1)], dim=-1)
            outs.append(net(xc))
        return torch.stack(outs, dim=1)

    @classmethod
    @torch.no_grad()
    def from_column_mlp(cls, mlp: ColumnMLP) -> LoopMLP:
        """The same function as an unshared ``mlp``: column ``c``'s layers get its weights."""
        first, last = mlp.layers[0], mlp.layers[-1]
        out = cls(mlp.n_columns, first.d_in, last.d_out, [lay.d_out for lay in mlp.layers[:-1]])
        for c, net in enumerate(out.nets):
            linears = [m for m in net if isinstance(m, nn.Linear)]
            for lin, col in zip(linears, mlp.layers, strict=True):
                lin.weight.copy_(col.weight[c].t())
                lin.bias.copy_(col.bias[c])
        return out.to(first.weight.device)


def loop_reference(model: Model) -> Model:
    """A copy of ``model`` whose column networks are :class:`LoopMLP` loops holding the same
    weights: the same ``Model.step`` (lateral attention, consensus, Euler update) computing the
    same function; only the way the column networks run differs."""
    if model.config.activation != "gelu" or model.config.shared:
        raise ValueError("loop_reference needs an unshared model with gelu activations")
    ref = copy.deepcopy(model)
    ref.encoder = LoopMLP.from_column_mlp(model.encoder)
    ref.bottom_up = nn.ModuleList(LoopMLP.from_column_mlp(net) for net in model.bottom_up)
    ref.top_down = nn.ModuleList(LoopMLP.from_column_mlp(net) for net in model.top_down)
    return ref


def _nets(model: Model, state: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
    """Only the column networks of one step (encoder, bottom-up, top-down), summed."""
    levels = state.unbind(2)
    out = model.encoder(model.column_inputs(responses)).square().mean()
    for lv, net in enumerate(model.bottom_up):
        out = out + net(levels[lv]).square().mean()
    for lv, net in enumerate(model.top_down):
        out = out + net(levels[lv + 1], model.position_features).square().mean()
    return out


def make_step(kind: str, n_columns: int, batch: int, device: str, part: str = "step"):
    """Return a closure running one forward+backward of ``kind`` (unshared | shared | loop).

    ``part="step"``: a whole settling step (nets + lateral attention + consensus + Euler);
    ``part="nets"``: only the column networks of that step.
    """
    model = build(n_columns, shared=(kind == "shared"), device=device)
    if kind == "loop":
        model = loop_reference(model).to(device)
    gen = torch.Generator().manual_seed(1)
    state = torch.randn(batch, n_columns, N_LEVELS, DIM, generator=gen).to(device)
    state.requires_grad_(True)
    responses = torch.randn(batch, model.n_cells, generator=gen).to(device)
    params = list(model.parameters())

    def run() -> None:
        if part == "nets":
            _nets(model, state, responses).backward()
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


def loop_matches(n_columns: int, batch: int, device: str) -> float:
    """Largest absolute difference between one step of the unshared model and of its loop
    reference (same weights): the two compute the same function, so this is float rounding."""
    model = build(n_columns, shared=False, device=device)
    ref = loop_reference(model)
    gen = torch.Generator().manual_seed(2)
    state = torch.randn(batch, n_columns, N_LEVELS, DIM, generator=gen).to(device)
    responses = torch.randn(batch, model.n_cells, generator=gen).to(device)
    with torch.no_grad():
        a = model.step(state, responses)[0]
        b = ref.step(state, responses)[0]
    return float((a - b).abs().max())


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
        loop_diff = loop_matches(n, 4, args.device) if "loop" in kinds else None
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
            "loop_max_abs_diff": loop_diff,
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
        if loop_diff is not None:
            print(
                f"{'':>8} loop reference = same weights, same step: max |difference| "
                f"{loop_diff:.1e}",
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
