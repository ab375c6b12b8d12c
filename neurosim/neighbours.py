"""Which columns talk to which: per-level neighbour sets from a k-d tree over column positions.

Lateral attention (GLOM, Hinton 2021, arXiv:2102.12627, sec. 2 and 5) lets each column average
the same level of nearby columns. Neighbourhoods widen with level (higher levels represent larger
wholes), and high levels may add a few sparse long-range neighbours (the GLOM talk). Neighbour sets
are built once, on the CPU, with :class:`scipy.spatial.cKDTree`, and returned as fixed index
tensors, so the attention costs O(n_columns * k) and never O(n_columns^2).

A column is never its own neighbour: its own opinion enters the consensus through the
"previous state" term of the dynamics, and including it here would count it twice (and, for large
beta, let a column attend only to itself because <e, e> = |e|^2 often wins).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy.spatial import cKDTree

from neurosim.config import check_int

__all__ = ["Neighbours", "neighbour_index", "level_neighbours", "widened_k"]


@dataclasses.dataclass(frozen=True)
class Neighbours:
    """Neighbour sets of one level.

    Attributes:
        index: ``LongTensor [n_columns, k]``; row c lists the neighbours of column c (never c).
        mask: ``BoolTensor [n_columns, k]`` (True = real neighbour) when the sets are ragged
            (radius queries); None when every row has exactly k neighbours.
    """

    index: torch.Tensor
    mask: torch.Tensor | None = None

    @property
    def k(self) -> int:
        return int(self.index.shape[1])


def _positions(positions_deg: np.ndarray | torch.Tensor) -> np.ndarray:
    pos = np.asarray(
        positions_deg.detach().cpu() if torch.is_tensor(positions_deg) else positions_deg,
        dtype=np.float64,
    )
    if pos.ndim != 2 or pos.shape[1] != 2 or pos.shape[0] < 2:
        raise ValueError(
            f"positions_deg must have shape [n_columns >= 2, 2]; got {tuple(pos.shape)}"
        )
    if not np.all(np.isfinite(pos)):
        raise ValueError("positions_deg must be finite")
    return pos


def _knn(pos: np.ndarray, k: int) -> np.ndarray:
    """k nearest other columns per column, ``[n, k]`` int64, nearest first."""
    n = pos.shape[0]
    _, idx = cKDTree(pos).query(pos, k=k + 1)
    idx = np.asarray(idx, dtype=np.int64).reshape(n, k + 1)
    is_self = idx == np.arange(n)[:, None]
    # Drop self where it appears (duplicate positions may put it later); otherwise the farthest.
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
    keep = np.ones_like(idx, dtype=bool)
    keep[np.arange(n), drop] = False
    return idx[keep].reshape(n, k)


def _long_range(local: np.ndarray, n_extra: int, rng: np.random.Generator) -> np.ndarray:
    """``n_extra`` random distinct columns per row, none of them self or in ``local``."""
    n = local.shape[0]
    out = np.empty((n, n_extra), dtype=np.int64)
    for c in range(n):  # construction time only, not a hot path
        banned = set(local[c][local[c] >= 0].tolist())
        banned.add(c)
        pool = np.setdiff1d(np.arange(n), np.fromiter(banned, dtype=np.int64))
        out[c] = rng.choice(pool, size=n_extra, replace=False)
    return out


def neighbour_index(
    positions_deg: np.ndarray | torch.Tensor,
    *,
    k: int | None = None,
    radius_deg: float | None = None,
    n_long_range: int = 0,
    seed: int = 0,
) -> Neighbours:
    """Neighbour sets of every column, by k nearest or by radius, plus optional long-range links.

    Args:
        positions_deg: ``[n_columns, 2]`` (x_deg, y_deg).
        k: number of nearest other columns, ``1 <= k <= n_columns - 1`` (exclusive with radius).
        radius_deg: all other columns within this distance (ragged: padded and masked).
        n_long_range: extra uniformly random distant neighbours per column (seeded).
        seed: seed of the long-range draw.

    Returns:
        :class:`Neighbours` with ``index [n_columns, k (+ n_long_range)]`` and a mask for radius
        queries. A radius row with no neighbour is all-masked (the attention then returns the
        column's own embedding, a neutral lateral term).
    """
    pos = _positions(positions_deg)
    n = pos.shape[0]
    if (k is None) == (radius_deg is None):
        raise ValueError("give exactly one of k or radius_deg")
    if n_long_range < 0:
        raise ValueError(f"n_long_range must be in [0, n_columns - 1 - k]; got {n_long_range}")
    mask = None
    if k is not None:
        check_int("k", k, 1, n - 1)
        idx = _knn(pos, k)
    else:
        if not radius_deg > 0 or math.isinf(radius_deg):
            raise ValueError(f"radius_deg must be in (0, inf); got {radius_deg!r}")
        lists = cKDTree(pos).query_ball_point(pos, r=radius_deg)
        lists = [sorted(j for j in row if j != c) for c, row in enumerate(lists)]
        width = max(1, max(len(row) for row in lists))
        idx = np.full((n, width), -1, dtype=np.int64)
        for c, row in enumerate(lists):
            idx[c, : len(row)] = row
    if n_long_range:
        local_k = int((idx >= 0).sum(axis=1).max())
        if n_long_range > n - 1 - local_k:
            raise ValueError(
                f"n_long_range must be in [0, {n - 1 - local_k}] (n_columns - 1 - local k); "
                f"got {n_long_range}"
            )
        extra = _long_range(idx, n_long_range, np.random.default_rng(seed))
        idx = np.concatenate([idx, extra], axis=1)
    if (idx < 0).any():
        mask_np = idx >= 0
        idx = np.where(mask_np, idx, np.arange(n)[:, None])
        mask = torch.from_numpy(mask_np)
    return Neighbours(index=torch.from_numpy(np.ascontiguousarray(idx)), mask=mask)


def widened_k(k0: int, growth: float, n_levels: int, n_columns: int) -> tuple[int, ...]:
    """Neighbour counts per level: ``k_l = min(round(k0 * growth**l), n_columns - 1)``."""
    return tuple(min(int(round(k0 * growth**level)), n_columns - 1) for level in range(n_levels))


def level_neighbours(
    positions_deg: np.ndarray | torch.Tensor,
    n_levels: int,
    *,
    k: int | Sequence[int] | None = None,
    growth: float = 1.5,
    radius_deg: float | None = None,
    n_long_range: int = 0,
    long_range_from_level: int = 2,
    seed: int = 0,
) -> list[Neighbours]:
    """Neighbour sets for every level, widening with level.

    Args:
        positions_deg: ``[n_columns, 2]``.
        n_levels: number of levels.
        k: neighbours at level 0 (widened by ``growth`` per level, capped at n_columns - 1), or one
            count per level.
        growth: widening factor per level (>= 1), for k and for radius_deg.
        radius_deg: radius at level 0 instead of k (level l uses ``radius_deg * growth**l``).
        n_long_range: sparse random long-range neighbours added at levels
            ``>= long_range_from_level``.
        seed: seed of the long-range draw (level l uses ``seed + l``).

    Returns:
        One :class:`Neighbours` per level.
    """
    pos = _positions(positions_deg)
    n = pos.shape[0]
    if not growth >= 1 or math.isinf(growth):
        raise ValueError(f"growth must be in [1, inf); got {growth!r}")
    if k is not None and not isinstance(k, (int, np.integer)):
        ks: tuple[int, ...] | None = tuple(k)
        if len(ks) != n_levels:
            raise ValueError(f"k must have n_levels={n_levels} entries; got {len(ks)}")
    elif k is not None:
        ks = widened_k(
            check_int("k (neighbours, at most n_columns - 1)", k, 1, n - 1), growth, n_levels, n
        )
    else:
        ks = None
    out = []
    for level in range(n_levels):
        extra = n_long_range if level >= long_range_from_level else 0
        if ks is not None:
            nb = neighbour_index(pos, k=ks[level], n_long_range=extra, seed=seed + level)
        else:
            nb = neighbour_index(
                pos,
                radius_deg=None if radius_deg is None else radius_deg * growth**level,
                n_long_range=extra,
                seed=seed + level,
            )
        out.append(nb)
    return out
