"""Brian2's global preferences, set only while neurosim builds and runs a network.

Code generation: ``codegen="cython"`` (needs Cython and a C++ compiler, clear error otherwise),
``"numpy"`` (no compiler), or ``"auto"`` (Cython if it works, else numpy with a warning).
Brian2's preferences are global; :func:`brian_prefs` sets them only while building and running
and restores them afterwards. Each process compiles into its own cache directory (default
``$TMPDIR/neurosim-brian2-<user>/pid-<pid>``, or the ``cache_dir=`` argument), so parallel
workers never contend for one cache; pass the same ``cache_dir`` to reuse compiled code.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = [
    "CODEGEN_TARGETS",
    "import_brian2",
    "default_cache_dir",
    "brian_prefs",
    "cython_available",
    "resolve_codegen",
]

#: accepted values of ``codegen``
CODEGEN_TARGETS = ("cython", "numpy", "auto")


def import_brian2():
    """Import brian2 lazily. Brian2 installs its own ``sys.excepthook`` on import (it writes a
    debug log for *any* uncaught exception and asks for a Brian2 bug report); neurosim keeps
    the hook that was there before, so errors unrelated to Brian2 are reported normally."""
    if "brian2" in sys.modules:
        return sys.modules["brian2"]
    hook = sys.excepthook
    import brian2

    sys.excepthook = hook
    return brian2


def default_cache_dir() -> Path:
    """This process's own Brian2/Cython cache.

    ``$NEUROSIM_BRIAN2_CACHE_DIR`` when set (sweep workers set it to a per-worker folder that is
    reused across runs), else ``$TMPDIR/neurosim-brian2-<user>/pid-<pid>``.
    """
    env = os.environ.get("NEUROSIM_BRIAN2_CACHE_DIR")
    if env:
        return Path(env)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"neurosim-brian2-{user}" / f"pid-{os.getpid()}"


@contextlib.contextmanager
def brian_prefs(target: str, cache_dir: Path) -> Iterator[None]:
    """Set Brian2's (global) codegen target and Cython cache dir, restoring them on exit."""
    prefs = import_brian2().prefs
    keys = ("codegen.target", "codegen.runtime.cython.cache_dir", "core.default_float_dtype")
    old = {k: prefs[k] for k in keys}
    prefs["codegen.target"] = target
    prefs["codegen.runtime.cython.cache_dir"] = str(cache_dir)
    prefs["core.default_float_dtype"] = np.float64
    try:
        yield
    finally:
        for k, v in old.items():
            prefs[k] = v


@functools.lru_cache(maxsize=8)
def _cython_check(cache_dir: str) -> bool:
    """Brian2's test compilation of a Cython module in ``cache_dir`` (once per dir)."""
    from brian2.codegen.runtime.cython_rt import CythonCodeObject

    with brian_prefs("cython", Path(cache_dir)):
        return bool(CythonCodeObject.is_available())


def cython_available(cache_dir: str | Path | None = None) -> bool:
    """Whether Brian2 can compile Cython code here (Cython and a C++ compiler work).

    The test compilation is done once per cache directory and process.
    """
    path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    try:
        import Cython  # noqa: F401
    except ImportError:
        return False
    return _cython_check(str(path))


def resolve_codegen(codegen: str, cache_dir: Path) -> str:
    """The target a run will use, ``"cython"`` or ``"numpy"``, for a requested ``codegen``.

    ``"auto"`` falls back to numpy with a ``RuntimeWarning`` when Cython cannot compile here;
    ``"cython"`` raises ``RuntimeError`` then; anything not in :data:`CODEGEN_TARGETS` raises
    ``ValueError``.
    """
    if codegen not in CODEGEN_TARGETS:
        raise ValueError(f"codegen must be one of {list(CODEGEN_TARGETS)}; got {codegen!r}")
    if codegen == "numpy":
        return "numpy"
    if cython_available(cache_dir):
        return "cython"
    if codegen == "auto":
        warnings.warn(
            "Brian2 cannot compile Cython code here (no working C++ compiler or Cython); "
            "falling back to codegen='numpy'",
            RuntimeWarning,
            stacklevel=3,
        )
        return "numpy"
    raise RuntimeError(
        "codegen='cython' needs Cython and a working C++ compiler, and Brian2's test "
        "compilation failed (see the Brian2 log for the compiler message). Install a compiler "
        "(e.g. `apt install g++`, or set CC/CXX), or pass codegen='numpy' (no compiler needed, "
        "slower) or codegen='auto'."
    )
