"""The architecture of the column sheet as a validated config (:class:`ModelConfig`).

Kept apart from :class:`neurosim.model.Model`, which builds and runs the sheet it describes;
``neurosim.model`` re-exports it, so ``from neurosim.model import ModelConfig`` keeps working.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from neurosim.columns import ACTIVATIONS
from neurosim.config import (
    Config,
    check_choice,
    check_int,
    check_per_level,
    check_range,
    check_seed,
)
from neurosim.dynamics import DynamicsConfig
from neurosim.neighbours import widened_k

__all__ = ["ModelConfig", "MAX_COLUMNS", "MAX_WIDTH"]

#: largest sheet a config accepts (the attention graph of a batch indexes B * C * k entries)
MAX_COLUMNS = 65_536
#: largest embedding, hidden or input width of a column net
MAX_WIDTH = 4096


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig(Config):
    """Architecture of the column sheet.

    Attributes:
        n_columns: number of columns (>= 2); must equal the number of column positions.
        n_levels: levels per column (>= 1).
        dim: embedding size of the levels: one integer (>= 1) for every level, or one per level
            (a list of ``n_levels`` integers >= 1, e.g. ``[16, 32, 64, 64]``). The state is one
            tensor ``[batch, n_columns, n_levels, max(dim)]``; level ``l`` uses its first
            ``dim[l]`` entries and the rest are held at exactly zero (see :attr:`level_dims`).
        hidden: hidden layer sizes of every column MLP (each >= 1; may be empty).
        activation: hidden nonlinearity: gelu | relu | tanh | silu.
        k_cells: retina cells read by each column (its k nearest cells; <= n_cells).
        neighbour_k: lateral neighbours per column at level 0, in [1, n_columns - 1].
        neighbour_growth: widening factor of the neighbourhood per level (>= 1); level l has
            ``min(round(neighbour_k * growth**l), n_columns - 1)`` neighbours.
        neighbour_radius_deg: > 0 switches to radius neighbourhoods (radius at level 0, widened
            by neighbour_growth); 0 = k nearest.
        long_range_k: sparse random long-range neighbours per column at high levels (>= 0).
        long_range_from_level: first level with long-range neighbours.
        shared: one set of weights for all columns (weight-sharing baseline only).
        position_encoding: input of the top-down neural field: ``"xy"`` = (x, y) scaled to
            [-1, 1]; ``"fourier"`` = that plus sin/cos(2^i pi x), i < n_frequencies.
        n_frequencies: number of Fourier octaves (>= 1) for ``"fourier"``.
        column_lattice: where columns sit: ``"auto"`` follows the retina (foveated retina ->
            foveated_lattice, else uniform_lattice), or force ``"uniform"`` / ``"foveated"``.
        init: initial state: ``"bottom_up"`` (one bottom-up pass) or ``"zeros"``.
        normalize: ``"layer"`` normalises the output of every column net (encoder, bottom-up,
            top-down) to zero mean and unit RMS over the level's units (layer norm without a
            learned scale; GLOM's normalised embeddings), ``"none"`` leaves them raw. With
            ``"layer"`` every consensus term is a unit-RMS vector or a convex combination of
            states, and each step a convex combination of state and consensus, so the state's
            RMS per column and level can never exceed 1 (for dt <= tau; see ``Model.settle``).
            ``"input"`` instead divides the input of every bottom-up and top-down net (a level's
            embedding) by its RMS (length normalisation, as Forward-Forward needs, so a net
            cannot read the goodness of the level below off its length; the talk, 00:09:23);
            the outputs stay raw.
        seed: seed of the weight initialisation and of the long-range neighbours.
        lattice_seed: seed of the foveated column lattice (``column_lattice`` ``"foveated"`` or
            ``"auto"`` on a foveated retina; >= 0). Separate from ``seed`` so that changing the
            initialisation does not move the columns: the lattice belongs to the sheet's
            geometry, not to its weights.
        dynamics: :class:`~neurosim.dynamics.DynamicsConfig`.
    """

    n_columns: int = 256
    n_levels: int = 4
    dim: int | tuple[int, ...] = 32
    hidden: tuple[int, ...] = (64,)
    activation: Literal["gelu", "relu", "tanh", "silu"] = "gelu"
    k_cells: int = 16
    neighbour_k: int = 8
    neighbour_growth: float = 1.5
    neighbour_radius_deg: float = 0.0
    long_range_k: int = 0
    long_range_from_level: int = 2
    shared: bool = False
    position_encoding: Literal["xy", "fourier"] = "fourier"
    n_frequencies: int = 3
    column_lattice: Literal["auto", "uniform", "foveated"] = "auto"
    init: Literal["bottom_up", "zeros"] = "bottom_up"
    normalize: Literal["none", "layer", "input"] = "none"
    seed: int = 0
    lattice_seed: int = 0
    dynamics: DynamicsConfig = dataclasses.field(default_factory=DynamicsConfig)

    def __post_init__(self) -> None:
        check_int("n_columns", self.n_columns, 2, MAX_COLUMNS)
        check_int("n_levels", self.n_levels, 1, 64)
        for lv, d in enumerate(check_per_level("dim", self.dim, self.n_levels)):
            check_int(f"dim[{lv}]" if isinstance(self.dim, tuple) else "dim", d, 1, MAX_WIDTH)
        for i, h in enumerate(self.hidden):
            check_int(f"hidden[{i}]", h, 1, MAX_WIDTH)
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        check_int("k_cells", self.k_cells, 1, MAX_WIDTH)
        check_int("neighbour_k", self.neighbour_k, 1, self.n_columns - 1)
        check_range("neighbour_growth", self.neighbour_growth, 1, 1e6)
        check_range("neighbour_radius_deg", self.neighbour_radius_deg, 0, 1e6)
        k_top = widened_k(self.neighbour_k, self.neighbour_growth, self.n_levels, self.n_columns)
        check_int("long_range_k", self.long_range_k, 0, self.n_columns - 1 - k_top[-1])
        check_int("long_range_from_level", self.long_range_from_level, 0)
        check_choice("position_encoding", self.position_encoding, ("xy", "fourier"))
        check_int("n_frequencies", self.n_frequencies, 1, 16)
        check_choice("column_lattice", self.column_lattice, ("auto", "uniform", "foveated"))
        check_choice("init", self.init, ("bottom_up", "zeros"))
        check_choice("normalize", self.normalize, ("none", "layer", "input"))
        check_seed("seed", self.seed)
        check_seed("lattice_seed", self.lattice_seed)
        if not isinstance(self.dynamics, DynamicsConfig):
            raise ValueError(f"dynamics must be a DynamicsConfig; got {self.dynamics!r}")
        d = self.dynamics
        if self.n_levels > 1 and d.w_bottom_up + d.w_lateral + d.w_previous <= 0:
            raise ValueError(
                "dynamics.w_bottom_up + w_lateral + w_previous must be > 0: the top level has "
                "no top-down term"
            )

    @property
    def level_dims(self) -> tuple[int, ...]:
        """Embedding size of every level, ``[n_levels]`` (``dim`` repeated when it is one int)."""
        return check_per_level("dim", self.dim, self.n_levels)

    @property
    def state_dim(self) -> int:
        """Width ``D`` of the state tensor ``[B, C, L, D]``: the largest level size."""
        return max(self.level_dims)

    @property
    def position_dim(self) -> int:
        """Size of the position encoding fed to the top-down nets."""
        return 2 if self.position_encoding == "xy" else 2 + 4 * self.n_frequencies
