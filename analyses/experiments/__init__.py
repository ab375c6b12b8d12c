"""Named experiments: each returns an ``xarray.Dataset`` from a frozen config.

Every experiment lives in its own module of this package and defines the same protocol, so
scripts, notebooks, the ``neurosim`` command and sweeps all run the same code:

``Config``
    a frozen :class:`neurosim.config.Config` dataclass with a ``seed: int`` field whose
    defaults are the full run, plus a classmethod ``quick()`` returning the test-suite size.
``run(config, *, device="cpu", quiet=False) -> xarray.Dataset``
    the experiment itself (data variables carry ``units`` and ``long_name``).
``figures(ds, out_dir) -> list[pathlib.Path]``
    writes the experiment's figures (PNG and PDF) and returns their paths.
``summary(ds) -> str``
    the table printed at the end of a run.
``RESULT_FILE``
    the NetCDF file name written under the output directory.

Modules are imported only when an experiment is used (nothing heavy happens on import).
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXPERIMENTS", "DEFAULT_EXPERIMENT", "get_experiment"]

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
