"""The sweep file: parsing, validation and the runs of the grid (see :mod:`analyses.sweep`)."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from analyses.experiments import resolve_experiment
from neurosim.config import check_device, check_int

TOP_LEVEL_KEYS = ("experiment", "quick", "seeds", "device", "torch_threads", "zip_dim")
TABLE_KEYS = ("base", "vary", "zip")
SWEEP_FILE = "sweep.toml"
COMBINED_FILE = "sweep.nc"
RUNS_DIR = "runs"
MAX_READABLE_ID = 150
#: the most runs a sweep may have (each one writes a file), the most seeds, torch threads per run
MAX_RUNS, MAX_SEEDS, MAX_TORCH_THREADS = 10_000, 1_000, 256
_SAFE_TEXT = re.compile(r"^[A-Za-z0-9_.+\-]+$")
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
    quick, device, threads, zip_dim = _options(data, source)
    base, vary, zipped = _tables(data, source, zip_dim)
    cfg_base = _base_config(module, experiment, quick, base, source)
    seeds = _seeds(data, cfg_base, source)
    n_runs = len(seeds) * _product(len(v) for v in vary.values())
    n_runs *= len(next(iter(zipped.values()))) if zipped else 1
    if n_runs > MAX_RUNS:
        raise ValueError(
            f"{source}: the grid has {n_runs} runs; a sweep may have at most {MAX_RUNS} "
            "(shorten the lists of [vary], [zip] or seeds)"
        )
    runs = _grid_runs(cfg_base, vary, zipped, seeds, source)
    _check_runs(module, cfg_base, runs, vary, source)
    _check_seed_ranges(runs, seeds, source)
    return Sweep(
        experiment=experiment,
        quick=quick,
        seeds=tuple(seeds),
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


def _prefixed(source: str, check, *args, **kwargs):
    """``check(*args, **kwargs)`` with its ``ValueError`` prefixed by the file name."""
    try:
        return check(*args, **kwargs)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None


def _product(sizes) -> int:
    out = 1
    for n in sizes:
        out *= n
    return out


def _options(data: Mapping[str, Any], source: str) -> tuple[bool, str, int, str]:
    """The top-level scalars: ``quick``, ``device``, ``torch_threads``, ``zip_dim``."""
    quick = data.get("quick", False)
    if not isinstance(quick, bool):
        raise ValueError(f"{source}: quick must be true or false; got {quick!r}")
    # the syntax only: whether the GPU exists is checked where the runs run (run_sweep)
    device = _prefixed(source, check_device, data.get("device", "cpu"), available=False)
    threads = data.get("torch_threads", 1)
    threads = _prefixed(source, check_int, "torch_threads", threads, 1, MAX_TORCH_THREADS)
    zip_dim = data.get("zip_dim", "zip")
    if not isinstance(zip_dim, str) or not _NAME.match(zip_dim):
        raise ValueError(f"{source}: zip_dim must be a name like 'zip'; got {zip_dim!r}")
    return quick, device, threads, zip_dim


def _tables(data: Mapping[str, Any], source: str, zip_dim: str):
    """``[base]``, ``[vary]`` and ``[zip]`` as flat ``{dotted.field: value}`` dicts, checked."""
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
    return base, vary, zipped


def _base_config(module: Any, experiment: str, quick: bool, base: dict[str, Any], source: str):
    """The experiment's default (or quick) config updated with ``[base]``."""
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
        return start.updated(_nest(base))
    except ValueError as err:
        raise ValueError(f"{source}: [base] {err}") from None


def _seeds(data: Mapping[str, Any], cfg_base: Any, source: str) -> list[int]:
    raw_seeds = data.get("seeds", [cfg_base.seed])
    if (
        not isinstance(raw_seeds, list)
        or not raw_seeds
        or any(isinstance(s, bool) or not isinstance(s, int) for s in raw_seeds)
    ):
        raise ValueError(f"{source}: seeds must be a non-empty list of integers; got {raw_seeds!r}")
    if len(raw_seeds) > MAX_SEEDS:
        raise ValueError(f"{source}: seeds lists {len(raw_seeds)} seeds; at most {MAX_SEEDS}")
    if len(set(raw_seeds)) != len(raw_seeds):
        raise ValueError(f"{source}: seeds has repeated values: {raw_seeds!r}")
    for seed in raw_seeds:
        try:
            cfg_base.updated({"seed": seed})
        except ValueError as err:
            raise ValueError(f"{source}: seeds = {seed!r}: {err}") from None
    return raw_seeds


def _grid_runs(cfg_base, vary, zipped, seeds, source: str) -> list[Run]:
    """Every run of the grid ``product(vary) x zip x seeds`` with its validated config."""
    vary_axes = [list(enumerate(values)) for values in vary.values()]
    zip_len = len(next(iter(zipped.values()))) if zipped else 0
    zip_axis = [[(i, None) for i in range(zip_len)]] if zipped else []
    runs = []
    for combo in itertools.product(*vary_axes, *zip_axis, list(enumerate(seeds))):
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
    return runs


def _check_runs(module: Any, cfg_base: Any, runs: list[Run], vary, source: str) -> None:
    """The experiment's own ``check(config)`` (if any) for every run, naming the bad value."""
    check = getattr(module, "check", None)
    if check is None:
        return
    for run in runs:
        try:
            check(run.config)
        except ValueError as err:
            for name, value in run.values.items():  # name the one value that is bad on its own
                try:
                    check(cfg_base.updated(_nest({name: value})))
                except ValueError as alone:
                    table = "vary" if name in vary else "zip"
                    raise ValueError(f"{source}: [{table}] {name} = {value!r}: {alone}") from None
            raise ValueError(f"{source}: run {run.run_id}: {err}") from None


def own_seeds(config: Any) -> list[int]:
    """The seeds a run covers: ``seed .. seed + n_seeds - 1`` for a config with ``n_seeds >= 1``.

    An experiment with an integer ``n_seeds`` field runs that many seeds itself (its results
    have a ``seed`` dimension), as ``codistill-nets``, ``distill`` and ``transfer`` do.
    """
    n = getattr(config, "n_seeds", 0)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        return [config.seed]
    return list(range(config.seed, config.seed + n))


def _check_seed_ranges(runs: list[Run], seeds: list[int], source: str) -> None:
    """Runs of one grid point must not cover a seed twice (their results could not be joined)."""
    covered: dict[tuple[int, ...], dict[int, Run]] = {}
    for run in runs:
        mine = covered.setdefault(run.index[:-1], {})
        for seed in own_seeds(run.config):
            other = mine.setdefault(seed, run)
            if other is not run:
                n = run.config.n_seeds
                spaced = [seeds[0] + i * n for i in range(min(len(seeds), 4))]
                raise ValueError(
                    f"{source}: seeds = {seeds}: with n_seeds = {n} each run covers seeds "
                    f"seed .. seed + {n - 1}, so the runs with seed={other.seed} and "
                    f"seed={run.seed} both cover seed {seed}; space the seeds by n_seeds "
                    f"(e.g. seeds = {spaced}) or set n_seeds = 1 in [base]"
                )


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file (see the module docstring for its format)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"sweep file {str(path)!r} does not exist")
    return parse_sweep(path.read_text(), source=str(path))
