"""The retina front end of the column sheet: where columns sit, which cells each reads, where
each column is (the position code of its top-down neural field).

Everything here is geometry, computed once on the CPU with numpy when a
:class:`~neurosim.model.Model` is built: the column lattice (from the ``retina`` package's
lattices, following the retina's kind), each column's ``k_cells`` nearest retina cells in a
canonical slot order, and the position features the top-down nets read.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = [
    "as_positions",
    "polarity_codes",
    "canonical_cell_order",
    "column_lattice",
    "position_features",
]


def as_positions(name: str, pos: np.ndarray | torch.Tensor) -> np.ndarray:
    """``pos`` as a finite float64 array ``[n, 2]`` (x_deg, y_deg); ``ValueError`` naming it."""
    arr = np.asarray(pos.detach().cpu() if torch.is_tensor(pos) else pos, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 1:
        raise ValueError(f"{name} must have shape [n, 2] (x_deg, y_deg); got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def polarity_codes(polarity: np.ndarray | torch.Tensor | None, n_cells: int) -> np.ndarray:
    """``[n_cells]`` int codes of the polarity labels, ranked by first appearance (0 if None)."""
    if polarity is None:
        return np.zeros(n_cells, dtype=np.int64)
    arr = np.asarray(polarity.detach().cpu() if torch.is_tensor(polarity) else polarity)
    if arr.shape != (n_cells,):
        raise ValueError(f"cell_polarity must have shape [n_cells] = ({n_cells},); got {arr.shape}")
    _, first, inverse = np.unique(arr, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)]


def canonical_cell_order(
    cell_index: np.ndarray,
    cell_positions_deg: np.ndarray,
    column_positions_deg: np.ndarray,
    polarity_codes: np.ndarray,
) -> np.ndarray:
    """Sort each column's cells into a canonical slot order.

    A k-d tree lists a column's cells by distance, and with ties (a regular lattice) or ON and
    OFF cells at the same place the order among equals is arbitrary, so slot ``j`` would mean a
    different relative cell in different columns. Unshared columns do not care (their own
    weights absorb any fixed permutation of their inputs), but a shared filter would be
    scrambled even on a uniform retina. Sorting by (polarity code, row offset top to bottom,
    column offset left to right, cell index), offsets rounded to 1e-6 deg, gives every column
    with the same local layout the same slot order.

    Args:
        cell_index: ``[C, k]`` cells read by each column (any order).
        cell_positions_deg: ``[n_cells, 2]`` (x_deg, y_deg).
        column_positions_deg: ``[C, 2]``.
        polarity_codes: ``[n_cells]`` integer polarity of every cell (the most significant key).

    Returns:
        ``[C, k]`` int64, each row a permutation of the same row of ``cell_index``.
    """
    idx = np.asarray(cell_index, dtype=np.int64)
    rel = cell_positions_deg[idx] - column_positions_deg[:, None, :]  # [C, k, 2]
    # np.lexsort: the last key is the primary one
    keys = (idx, np.round(rel[..., 0], 6), -np.round(rel[..., 1], 6), polarity_codes[idx])
    order = np.lexsort(keys, axis=-1)
    return np.take_along_axis(idx, order, axis=-1)


def column_lattice(
    n_columns: int, fov_deg: float, kind: str, *, retina_kind: str = "uniform", seed: int = 0
) -> np.ndarray:
    """Column positions ``[n_columns, 2]`` deg from the retina package's lattices.

    Args:
        n_columns: number of columns.
        fov_deg: side of the square field covered, in degrees.
        kind: ``"auto"`` (follow ``retina_kind``: foveated retina -> foveated lattice, else
            uniform), ``"uniform"`` or ``"foveated"``.
        retina_kind: the retina's kind, for ``"auto"``.
        seed: seed of the foveated lattice.
    """
    if kind == "auto":
        kind = "foveated" if "fove" in retina_kind.lower() else "uniform"
    try:
        from retina import foveated_lattice, uniform_lattice
    except ImportError as err:
        raise ValueError(
            "column positions need retina.uniform_lattice/foveated_lattice, which could not be "
            f"imported ({err}); pass column_positions_deg explicitly"
        ) from None
    if kind == "foveated":
        pos = foveated_lattice(n_columns, fov_deg, seed=seed)
    else:
        pos = uniform_lattice(n_columns, fov_deg)
    return as_positions("column lattice", pos)


def position_features(pos: np.ndarray, config: Any) -> np.ndarray:
    """``[C, P]`` position code of the top-down neural field: xy scaled to [-1, 1] by the
    largest coordinate, plus ``sin/cos(2^i pi u)`` for ``i < n_frequencies`` when
    ``config.position_encoding == "fourier"`` (``P = config.position_dim``)."""
    scale = float(np.abs(pos).max()) or 1.0
    u = pos / scale
    feats = [u]
    if config.position_encoding == "fourier":
        for i in range(config.n_frequencies):
            feats += [np.sin(2.0**i * math.pi * u), np.cos(2.0**i * math.pi * u)]
    return np.concatenate(feats, axis=1)
