"""Atomic file writing: an interrupted run never leaves a half-written file behind.

Write to a temporary file in the destination's directory, then ``os.replace`` it onto the
destination (atomic on POSIX within one filesystem). The temporary file is removed on every
exit path Python sees: success (it *becomes* the file), an exception, ``KeyboardInterrupt``, and
any signal turned into an exception (the ``neurosim`` command turns SIGTERM into one). Only a
process killed outright (SIGKILL, power loss) can leave one behind;
:func:`remove_stale_temporaries` clears those when the directory is used again.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text", "remove_stale_temporaries", "is_temporary"]

#: ``tempfile.mkstemp`` names: ``.<stem>.<8 random characters>.tmp<suffix>``
_TEMPORARY = re.compile(r"^\..*\.[a-z0-9_]{8}\.tmp(\.[^./]*)?$")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    On an exception (``KeyboardInterrupt`` included) the temporary file is removed and ``path``
    is left untouched. The temporary name keeps the destination's suffix so writers that infer
    the format from the extension (matplotlib, NetCDF engines, ``numpy.savez``) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = None
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
        )
        tmp_path = Path(tmp)
        os.close(fd)
        yield tmp_path
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def is_temporary(path: str | Path) -> bool:
    """Whether ``path``'s name is that of an :func:`atomic_path` temporary file."""
    return bool(_TEMPORARY.match(Path(path).name))


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Remove the :func:`atomic_path` temporaries left in ``directory`` by a killed process.

    Call it only while no other process writes into ``directory``. Returns the removed paths.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for entry in directory.iterdir():
        if entry.is_file() and is_temporary(entry):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
