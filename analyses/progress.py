"""What a long run is doing: a tqdm bar on a terminal, timestamped lines in a batch log.

One reporter for every experiment and for sweeps, so that ``neurosim run > log 2>&1`` (a batch
queue, ``nohup``, CI) shows what finished and how long is left, instead of nothing for minutes::

    from analyses.progress import Progress

    with Progress(len(keys), desc="transfer", quiet=quiet, initial=n_kept) as progress:
        for key in keys:
            accuracy = ...                                     # one sub-run
            progress.update(key, score=f"accuracy {accuracy:.3f}")

Where the report goes (``stream``, default ``sys.stderr``, so stdout keeps only the results):

* a terminal: a tqdm bar, with the last finished sub-run and its score as its postfix;
* anything else (a file, a pipe): one line per finished sub-run, at most one per
  ``min_interval_s`` (the first and the last are always written), e.g. ::

      2025-05-01 12:00:03 transfer: 3/48 sub-runs done, last uniform n=100 seed=0 cnn
      (accuracy 0.812); elapsed 0:00:42, ETA 0:10:30

  (one line in the log). The ETA extrapolates the sub-runs finished by this process (those
  counted in ``initial``, e.g. kept from an interrupted run, do not speed it up);
* while a long unit runs, :meth:`heartbeat` repeats the line with ``still working (...)``
  every ``every_s`` (30 s) in a log, so a batch log is never silent for minutes;
* ``quiet=True``: nothing at all.
"""

from __future__ import annotations

import datetime as _dt
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from neurosim.config import check_int

__all__ = ["Progress", "is_terminal"]


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an interactive terminal (False for files, pipes and closed streams)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _duration(seconds: float) -> str:
    return str(_dt.timedelta(seconds=max(0, round(seconds))))


class Progress:
    """Progress of ``total`` units of work (sub-runs, runs), ``initial`` of them already done.

    Args:
        total: units in all (>= 0).
        desc: what is running, e.g. the experiment's name.
        unit: the plural name of a unit in the lines (``"sub-runs"``, ``"runs"``).
        initial: units done before this process started (kept from an interrupted run).
        quiet: report nothing.
        stream: where to report (default ``sys.stderr``).
        min_interval_s: on a non-terminal, at least this long between two lines (the first and
            the last finished unit are always reported).
        clock: seconds, monotonic (for tests).
    """

    def __init__(
        self,
        total: int,
        *,
        desc: str,
        unit: str = "sub-runs",
        initial: int = 0,
        quiet: bool = False,
        stream: IO[str] | None = None,
        min_interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = check_int("total", total, 0)
        self.initial = check_int("initial", initial, 0, self.total)
        self.count = self.initial
        self.desc = desc
        self.unit = unit
        self.quiet = quiet
        self.stream = sys.stderr if stream is None else stream
        self.min_interval_s = float(min_interval_s)
        self._clock = clock
        self._start = clock()
        self._last_line: float | None = None
        self._bar = None
        if not quiet and is_terminal(self.stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=self.total, initial=self.initial, desc=desc, unit=unit, file=self.stream
            )

    @property
    def terminal(self) -> bool:
        """Whether progress is shown as a bar (on a terminal)."""
        return self._bar is not None

    def eta_s(self) -> float | None:
        """Seconds left, from the units finished by this process; ``None`` before the first."""
        done_here = self.count - self.initial
        if done_here <= 0:
            return None
        return (self._clock() - self._start) / done_here * (self.total - self.count)

    def line(self, what: str | None = None, score: str | None = None) -> str:
        """The line reported for the state now (without the timestamp)."""
        text = f"{self.desc}: {self.count}/{self.total} {self.unit} done"
        if what:
            text += f", last {what}"
        if score:
            text += f" ({score})"
        eta = self.eta_s()
        elapsed = _duration(self._clock() - self._start)
        return f"{text}; elapsed {elapsed}, ETA {'?' if eta is None else _duration(eta)}"

    def update(self, what: str | None = None, *, score: str | None = None, n: int = 1) -> None:
        """``n`` more units finished, the last being ``what`` with ``score`` (both optional)."""
        self.count = min(self.total, self.count + check_int("n", n, 0))
        if self.quiet:
            return
        if self._bar is not None:
            if what or score:
                self._bar.set_postfix_str(" ".join(filter(None, [what, score])), refresh=False)
            self._bar.update(n)
            return
        now = self._clock()
        due = self._last_line is None or now - self._last_line >= self.min_interval_s
        if due or self.count == self.total:
            self.write(self.line(what, score))
            self._last_line = now

    def heartbeat(self, detail: str | None = None, *, every_s: float = 30.0) -> None:
        """On a non-terminal, the state line again (``...; still working (<detail>)``) when
        nothing was written for ``every_s`` seconds, so a log shows that a long unit is alive;
        nothing on a terminal (the bar shows the time) or when quiet."""
        if self.quiet or self._bar is not None:
            return
        now = self._clock()
        last = self._start if self._last_line is None else self._last_line
        if now - last >= every_s:
            text = self.line()
            self.write(text + (f"; still working ({detail})" if detail else "; still working"))
            self._last_line = now

    def write(self, text: str) -> None:
        """One timestamped line (above the bar on a terminal); nothing when quiet."""
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
            return
        stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        print(f"{stamp} {text}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
