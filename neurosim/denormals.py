"""Flush denormal floats to zero while training on a CPU.

A float32 below ``torch.finfo(torch.float32).tiny`` (1.18e-38) in magnitude is *denormal*
(subnormal). x86 CPUs compute with such values in microcode, tens of times slower than with
normal ones, and training these models makes many of them: the lateral attention's softmax
over neighbours (``exp`` of large negative scores), GELU's backward far in its negative tail,
and Adam's second moments of tiny gradients (a gradient of 1e-20, squared). Once made, a
denormal slows every later kernel that reads it. With flush-to-zero (FTZ: denormal results
are written as 0) and denormals-are-zero (DAZ: denormal inputs are read as 0) an
lc-backprop step of 4 stacked flagship models went from 12.7 to 9.5 ms here (one thread);
``benchmarks/bench_train.py`` measures the whole grid.

Values below 1.2e-38 become exact zeros; nothing else changes. TensorFlow and oneDNN enable
the same mode on CPUs by default. The mode is a property of a CPU *thread* (its MXCSR
register): :func:`flushing_denormals` sets it on the calling thread, which does all the work
when torch runs one intra-op thread (``torch.set_num_threads(1)``, as the flagship's worker
processes do). torch's pool threads, used with more intra-op threads, keep their own setting:
then only the calling thread's share of each kernel is flushed (still deterministic for a
given thread count, as torch splits kernels statically).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["flushing_denormals", "denormals_flushed"]

#: a float32 denormal (the smallest normal float32 is 1.18e-38)
_DENORMAL = 1e-39


def denormals_flushed() -> bool:
    """Whether this thread flushes denormals now: a denormal times one reads as zero."""
    x = torch.tensor([_DENORMAL], dtype=torch.float64).to(torch.float32)
    return float(x.mul_(1.0)[0]) == 0.0


@contextlib.contextmanager
def flushing_denormals(enabled: bool = True) -> Iterator[bool]:
    """Flush denormals to zero on this thread inside the block (``enabled``; False leaves the
    setting as it is), and restore the previous setting after it.

    Yields:
        whether denormals are flushed inside the block (False where the CPU cannot: torch's
        :func:`torch.set_flush_denormal` supports x86 with SSE3 and ARM).
    """
    if not enabled:
        yield denormals_flushed()
        return
    before = denormals_flushed()
    on = before or torch.set_flush_denormal(True)
    try:
        yield on
    finally:
        if not before:
            torch.set_flush_denormal(False)
