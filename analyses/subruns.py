"""Resumable runs: finished sub-runs kept on disk, and signals that stop a run cleanly.

A *sub-run* is the smallest piece of an experiment worth keeping: one seed of one condition,
one model on one retina and training-set size. A *unit* is what is computed in one go: usually
one sub-run, or several trained together as one batched unit (their results are written in
one file, so a unit is kept whole or not at all). :class:`SubrunStore` keeps each finished unit
in ``OUT/subruns/`` the moment it finishes, written atomically (:mod:`neurosim.atomic`), next
to a fingerprint of the experiment, its config and the device; running the same command again
skips what is kept and gives a result identical to an uninterrupted run, and a directory made
with a different config is refused, naming the first field that differs.

An experiment adopts it in a few lines (``codistill-nets`` and ``distill`` do)::

    from analyses.subruns import run_units

    def run(config, *, device="cpu", quiet=False, store=None):
        units = [(f"seed={s}",) for s in seeds]        # or several keys per batched unit
        def compute(unit, done):                      # -> {key: {name: array}} for the unit
            ...                                       # (done: results of the units before)
        results = run_units(units, compute, store=store, desc="my-experiment", quiet=quiet,
                            score=lambda key, r: f"errors {int(r['errors'])}")
        ...                                           # build the Dataset from results[key]

``run_units`` skips the units already kept, computes the others, keeps each as it finishes and
reports progress (:class:`analyses.progress.Progress`); without a store (the Python API) it
only computes and reports. ``neurosim run`` passes ``store=`` to every experiment whose
``run`` accepts it. Every sub-run must depend only on its key and the config (seed its
generators from the key, never from what ran before), so that a resumed run equals an
uninterrupted one. Results are mappings of names to numeric or text arrays (or scalars).

:func:`signals_as_interrupts` turns SIGINT and SIGTERM into :class:`Interrupted` (a
``KeyboardInterrupt``), so ``finally`` blocks run (no temporary file is left), and the command
exits with ``128 + signal`` (130, 143) saying how many sub-runs were kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neurosim.atomic import atomic_path, atomic_write_text, remove_stale_temporaries

__all__ = [
    "SubrunStore",
    "SubrunMismatch",
    "run_units",
    "first_difference",
    "Interrupted",
    "signals_as_interrupts",
    "SUBRUNS_DIR",
]

#: the store's directory under a run's output directory
SUBRUNS_DIR = "subruns"
FINGERPRINT = "fingerprint.json"
_FORMAT = 1
_KEYS = "__keys__"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=+\-]+")


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def first_difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[str, Any, Any] | None:
    """The first (sorted, dotted) field where nested mappings ``a`` and ``b`` differ.

    Returns ``(field, value in a, value in b)`` (``None`` for a missing field), or ``None``.
    """
    fa, fb = _flatten(a), _flatten(b)
    for key in sorted(set(fa) | set(fb)):
        if fa.get(key) != fb.get(key):
            return key, fa.get(key), fb.get(key)
    return None


class SubrunMismatch(ValueError):
    """A store's directory holds sub-runs of another experiment, config or device.

    ``field`` names the first difference (``"experiment"``, ``"device"`` or a config field).
    """

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def _as_array(where: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "biufcUS":
        raise ValueError(f"{where} must be a numeric or text array; got dtype {array.dtype}")
    return array


class SubrunStore:
    """The finished sub-runs of one run of ``experiment`` with ``config`` on ``device``.

    Creating a store only reads: it checks the fingerprint of ``directory`` (if any) and raises
    :class:`SubrunMismatch` naming the first differing field; with ``reset=True`` it ignores what
    is there and :meth:`begin` discards it. Nothing is written before :meth:`begin` (called by
    the first :meth:`put`).

    Args:
        directory: where the units are kept, normally ``OUT/subruns``.
        experiment: the experiment's name.
        config: its validated config (anything with ``to_dict()``).
        device: the device the sub-runs run on.
        reset: discard sub-runs of another experiment or config instead of refusing.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        experiment: str,
        config: Any,
        device: str = "cpu",
        reset: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.fingerprint = {
            "format": _FORMAT,
            "experiment": experiment,
            "device": device,
            "config": config.to_dict(),
        }
        self.reset = reset
        self._begun = False
        self._index: dict[str, Path] = {}
        self.planned: list[str] | None = None
        stored = self._stored_fingerprint()
        if stored is not None and not reset:
            self._check(stored)
            self._index = self._read_index()

    # ------------------------------------------------------------------ checks and index

    def _stored_fingerprint(self) -> dict[str, Any] | None:
        path = self.directory / FINGERPRINT
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise SubrunMismatch(
                f"{path} is not a sub-run fingerprint ({err})", "fingerprint"
            ) from None

    def _check(self, stored: Mapping[str, Any]) -> None:
        mine = self.fingerprint
        for field in ("format", "experiment", "device"):
            if stored.get(field) != mine[field]:
                raise SubrunMismatch(
                    f"{self.directory} holds sub-runs with {field} {stored.get(field)!r}, "
                    f"not {mine[field]!r}",
                    field,
                )
        diff = first_difference(stored.get("config", {}), mine["config"])
        if diff is not None:
            field, there, now = diff
            raise SubrunMismatch(
                f"{self.directory} holds sub-runs of {mine['experiment']} made with a different "
                f"config ({field}: {there!r} there, {now!r} now)",
                field,
            )

    def _read_index(self) -> dict[str, Path]:
        index: dict[str, Path] = {}
        for path in sorted(self.directory.glob("*.npz"), key=lambda p: p.stat().st_mtime_ns):
            try:
                with np.load(path, allow_pickle=False) as data:
                    keys = json.loads(str(data[_KEYS]))
            except Exception:  # noqa: BLE001 - an unreadable unit is simply not kept
                continue
            index.update({key: path for key in keys})
        return index

    # ------------------------------------------------------------------ the public interface

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def plan(self, keys: Sequence[str]) -> list[str]:
        """Record the sub-run keys of this run (for :attr:`n_planned`); return those not kept."""
        keys = list(keys)
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise ValueError(f"sub-run keys must be unique; {dup!r} is repeated")
        self.planned = keys
        return [key for key in keys if key not in self]

    @property
    def n_planned(self) -> int:
        """Sub-runs of this run (0 until :meth:`plan`)."""
        return 0 if self.planned is None else len(self.planned)

    @property
    def n_kept(self) -> int:
        """Planned sub-runs kept on disk (all kept ones before :meth:`plan`)."""
        if self.planned is None:
            return len(self._index)
        return sum(key in self for key in self.planned)

    def begin(self) -> None:
        """Create the directory and write the fingerprint (discarding old units with ``reset``)."""
        if self._begun:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.directory)
        if self.reset:
            for path in self.directory.glob("*.npz"):
                path.unlink()
            self._index = {}
        atomic_write_text(
            self.directory / FINGERPRINT, json.dumps(self.fingerprint, indent=1, sort_keys=True)
        )
        self._begun = True

    def get(self, key: str) -> dict[str, np.ndarray]:
        """The kept result of sub-run ``key`` (``KeyError`` if it is not kept)."""
        path = self._index[key]
        with np.load(path, allow_pickle=False) as data:
            i = json.loads(str(data[_KEYS])).index(key)
            prefix = f"{i}/"
            return {n[len(prefix) :]: data[n] for n in data.files if n.startswith(prefix)}

    def put(self, results: Mapping[str, Mapping[str, Any]]) -> Path:
        """Keep one unit: ``{key: {name: array}}`` for each of its sub-runs, in one atomic file."""
        if not results:
            raise ValueError("a unit must hold at least one sub-run")
        keys = list(results)
        arrays = {_KEYS: np.asarray(json.dumps(keys))}
        for i, key in enumerate(keys):
            for name, value in results[key].items():
                arrays[f"{i}/{name}"] = _as_array(f"sub-run {key!r}: {name}", value)
        self.begin()
        digest = hashlib.sha1("\n".join(keys).encode()).hexdigest()[:10]
        stem = _UNSAFE.sub("-", keys[0])[:60] + (f"+{len(keys) - 1}" if len(keys) > 1 else "")
        path = self.directory / f"{stem}-{digest}.npz"
        with atomic_path(path) as tmp:
            np.savez(tmp, **arrays)
        self._index.update({key: path for key in keys})
        return path


def run_units(
    units: Sequence[str | Sequence[str]],
    compute: Callable[[tuple[str, ...], Mapping[str, Mapping[str, Any]]], Mapping[str, Any]],
    *,
    store: SubrunStore | None = None,
    desc: str,
    quiet: bool = False,
    score: Callable[[str, Mapping[str, np.ndarray]], str] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Compute every unit not kept in ``store``, keep each as it finishes; return all results.

    Args:
        units: the units in order; a unit is one sub-run key or a sequence of keys computed
            together (one batched training).
        compute: ``compute(unit, done) -> {key: {name: array}}`` with a result for each key of
            the unit; ``done`` holds the results of the units before it (computed or kept), for
            a unit that builds on an earlier one (a student on its teacher's outputs).
        store: where finished units are kept (``None``: nothing is kept).
        desc, quiet: for the progress report (one line per finished unit in a batch log).
        score: ``score(key, result) -> str`` shown with the finished unit (e.g. its accuracy).

    Returns:
        ``{key: {name: numpy array}}`` for every key, the same whether computed now or kept
        from an earlier, interrupted run.
    """
    from analyses.progress import Progress

    units = [(u,) if isinstance(u, str) else tuple(u) for u in units]
    keys = [key for unit in units for key in unit]
    if store is not None:
        store.plan(keys)
        store.begin()
    kept = 0 if store is None else store.n_kept
    out: dict[str, dict[str, np.ndarray]] = {}
    with Progress(len(keys), desc=desc, quiet=quiet, initial=kept) as progress:
        for unit in units:
            if store is not None and all(key in store for key in unit):
                out.update({key: store.get(key) for key in unit})
                continue
            got = compute(unit, out)
            if set(got) != set(unit):
                raise ValueError(f"compute({unit}) returned sub-runs {sorted(got)}, not the unit's")
            results = {
                key: {n: _as_array(f"sub-run {key!r}: {n}", v) for n, v in got[key].items()}
                for key in unit
            }
            if store is not None:
                store.put(results)
            out.update(results)
            what = unit[0] if len(unit) == 1 else f"{unit[0]} (+{len(unit) - 1})"
            text = score(unit[-1], results[unit[-1]]) if score is not None else None
            progress.update(what, score=text, n=len(unit))
    return out


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM received; ``exit_code`` is the shell's ``128 + signal`` (130, 143)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_as_interrupts(
    signums: Sequence[int] = (signal.SIGINT, signal.SIGTERM),
) -> Iterator[None]:
    """Within the block, the given signals raise :class:`Interrupted` in the main thread.

    A signal whose handler is ``SIG_IGN`` (e.g. SIGINT of a job started with ``nohup`` or
    ``&``) stays ignored; outside the main thread nothing is changed. The previous handlers are
    restored on exit.
    """
    previous = {}
    for signum in signums:
        try:
            if signal.getsignal(signum) is signal.SIG_IGN:
                continue
            previous[signum] = signal.signal(signum, _raise_interrupted)
        except ValueError:  # not the main thread
            break
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
