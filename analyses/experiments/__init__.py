"""Named experiments: each returns an ``xarray.Dataset`` from a frozen config.

Every experiment lives in its own module of this package and defines the same protocol, so
scripts, notebooks, the ``neurosim`` command and sweeps all run the same code:

``Config``
    a frozen :class:`neurosim.config.Config` dataclass with a ``seed: int`` field whose
    defaults are the full run, plus a classmethod ``quick()`` returning the test-suite size.
    Every size has an upper bound tied to what it depends on, so a bad value fails at once.
``run(config, *, device="cpu", quiet=False) -> xarray.Dataset``
    the experiment itself (data variables carry ``units`` and ``long_name``). It checks
    ``device`` with :func:`neurosim.config.check_device` first and reports progress with
    :class:`analyses.progress.Progress` (a bar on a terminal, a line per finished sub-run in a
    batch log, nothing with ``quiet``).
``figures(ds, out_dir) -> list[pathlib.Path]``
    writes the experiment's figures (PNG and PDF) and returns their paths.
``summary(ds) -> str``
    the table printed at the end of a run.
``RESULT_FILE``
    the NetCDF file name written under the output directory.

Two optional parts, used by the command and by sweeps when present:

``run(..., store=None)``
    an experiment whose ``run`` accepts ``store`` keeps its finished sub-runs in it (an
    :class:`analyses.subruns.SubrunStore`, see :func:`analyses.subruns.run_units`), so an
    interrupted ``neurosim run`` resumes where it stopped (:func:`accepts_store`).
``check(config) -> None``
    checks that need more than the config's own fields (the size of a data set, a geometry
    built from several fields), raising ``ValueError`` naming the field and the allowed range;
    the command and sweeps call it for every run before any work or file (:func:`check_config`).

Modules are imported only when an experiment is used (nothing heavy happens on import).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from types import ModuleType
from typing import Any

__all__ = [
    "EXPERIMENTS",
    "DEFAULT_EXPERIMENT",
    "available",
    "get_experiment",
    "resolve_experiment",
    "accepts_store",
    "check_config",
]

#: experiment name (as typed on the command line) -> module in this package
EXPERIMENTS: dict[str, str] = {
    "transfer": "transfer",
    "retina": "retina",
    "codistill-nets": "codistill_nets",
    "distill": "distill",
    "islands": "islands",
    "column-similarity": "column_similarity",
    "brian-parity": "brian_parity",
    "ff-digits": "ff_digits",
}

DEFAULT_EXPERIMENT = "transfer"


def available() -> list[str]:
    """Names of the experiments whose module is present in this installation."""
    names = []
    for name, module in EXPERIMENTS.items():
        if importlib.util.find_spec(f"{__name__}.{module}") is not None:
            names.append(name)
    return names


def get_experiment(name: str) -> ModuleType:
    """The module implementing experiment ``name``; ``ValueError`` names the allowed ones."""
    if name not in EXPERIMENTS or name not in available():
        raise ValueError(f"experiment must be one of {available()}; got {name!r}")
    return importlib.import_module(f"{__name__}.{EXPERIMENTS[name]}")


def resolve_experiment(spec: str) -> Any:
    """The experiment module (or object) named by ``spec``.

    ``spec`` is a registered name (:data:`EXPERIMENTS`) or an importable ``"package.module"`` /
    ``"package.module:object"`` following the experiment protocol (the hook for experiments
    outside the registry, in ``neurosim run`` and in sweeps).
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"experiment must be a non-empty string; got {spec!r}")
    if spec in EXPERIMENTS:
        return get_experiment(spec)
    if "." not in spec and ":" not in spec:
        raise ValueError(
            f"experiment must be one of {available()} or an importable "
            f"'package.module[:object]'; got {spec!r}"
        )
    module_name, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"experiment {spec!r}: cannot import {module_name!r} ({err})") from None
    for part in filter(None, attr.split(".")):
        if not hasattr(obj, part):
            raise ValueError(f"experiment {spec!r}: {module_name!r} has no attribute {part!r}")
        obj = getattr(obj, part)
    missing = [name for name in ("Config", "run") if not hasattr(obj, name)]
    if missing:
        raise ValueError(
            f"experiment {spec!r} lacks {', '.join(missing)} (see the protocol in "
            "analyses.experiments)"
        )
    return obj


def accepts_store(experiment: Any) -> bool:
    """Whether ``experiment.run`` takes ``store=`` (keeps its sub-runs for resuming)."""
    try:
        return "store" in inspect.signature(experiment.run).parameters
    except (TypeError, ValueError):
        return False


def check_config(experiment: Any, config: Any) -> None:
    """Run ``experiment.check(config)`` if the experiment has one (``ValueError`` if bad)."""
    check = getattr(experiment, "check", None)
    if check is not None:
        check(config)
