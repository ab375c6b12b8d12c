"""The GLOM-like model: retina front end + unshared columns + lateral attention + rate dynamics.

A sheet of ``n_columns`` columns sits above the visual field. Each column

- reads the responses of its ``k_cells`` nearest retina cells (a fixed index; on a foveated retina
  peripheral columns therefore cover more degrees: different columns preprocess the image
  differently, the case weight sharing cannot handle — seed 001, 00:31:30-00:33:30), listed in a
  canonical order (polarity, then row offset top to bottom, then column offset left to right), so
  that input slot ``j`` means the same relative cell in every column with the same local layout
  (what makes ``shared=True`` a true shared filter on a uniform retina),
- holds ``n_levels`` embeddings, of one size ``dim`` or one size per level (state
  ``[batch, column, level, max(dim)]``, smaller levels zero-padded),
- owns its networks (:class:`~neurosim.columns.ColumnMLP`, never shared unless ``shared=True``):
  a level-0 encoder (cells -> level 0), bottom-up nets (level l-1 -> l) and top-down nets
  (level l+1 -> l) that also receive the column's position, a neural field (seed 003; GLOM,
  Hinton 2021, arXiv:2102.12627, sec. 2),
- and relaxes by ``tau dx/dt = -x + consensus`` (:mod:`neurosim.dynamics`), the consensus mixing
  bottom-up, top-down, lateral attention over neighbours (:mod:`neurosim.attention`) and the
  previous state.

A static image is a boring video: ``settle(responses [B, n_cells])`` holds it for ``n_steps``;
``settle(frames [T_in, B, n_cells])`` feeds frame t at step t (the last frame is held).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

from neurosim.attention import lateral_attention
from neurosim.columns import ACTIVATIONS, ColumnMLP
from neurosim.config import (
    Config,
    check_choice,
    check_per_level,
    check_positive_int,
    check_range,
    check_seed,
)
from neurosim.dynamics import DynamicsConfig, relax
from neurosim.neighbours import Neighbours, level_neighbours, widened_k

__all__ = ["ModelConfig", "Model", "Settled", "StepTerms", "canonical_cell_order"]


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
    seed: int = 0
    lattice_seed: int = 0
    dynamics: DynamicsConfig = dataclasses.field(default_factory=DynamicsConfig)

    def __post_init__(self) -> None:
        check_positive_int("n_columns", self.n_columns)
        if self.n_columns < 2:
            raise ValueError(f"n_columns must be an integer >= 2; got {self.n_columns!r}")
        check_positive_int("n_levels", self.n_levels)
        check_per_level("dim", self.dim, self.n_levels)
        for i, h in enumerate(self.hidden):
            check_positive_int(f"hidden[{i}]", h)
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        check_positive_int("k_cells", self.k_cells)
        check_positive_int("neighbour_k", self.neighbour_k, self.n_columns - 1)
        check_range("neighbour_growth", self.neighbour_growth, 1, 1e6)
        check_range("neighbour_radius_deg", self.neighbour_radius_deg, 0, 1e6)
        if isinstance(self.long_range_k, bool) or not isinstance(self.long_range_k, int):
            raise ValueError(f"long_range_k must be an integer >= 0; got {self.long_range_k!r}")
        k_top = widened_k(self.neighbour_k, self.neighbour_growth, self.n_levels, self.n_columns)
        check_range("long_range_k", self.long_range_k, 0, self.n_columns - 1 - k_top[-1])
        if isinstance(self.long_range_from_level, bool) or not isinstance(
            self.long_range_from_level, int
        ):
            raise ValueError(
                f"long_range_from_level must be an integer >= 0; got {self.long_range_from_level!r}"
            )
        check_range("long_range_from_level", self.long_range_from_level, 0, None)
        check_choice("position_encoding", self.position_encoding, ("xy", "fourier"))
        check_positive_int("n_frequencies", self.n_frequencies)
        check_choice("column_lattice", self.column_lattice, ("auto", "uniform", "foveated"))
        check_choice("init", self.init, ("bottom_up", "zeros"))
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


class StepTerms:
    """The terms of one Euler step, each ``[B, C, L, D]`` (stacked on first access).

    ``bottom_up[:, :, 0]`` is the level-0 encoder's reading of the retina; ``top_down[:, :, -1]``
    is zero (the top level has no level above: see ``Model.has_top_down``). In local mode
    (``detach_inputs=True``) ``lateral`` carries no gradient and ``bottom_up``/``top_down`` depend
    only on the column's own parameters. Levels smaller than ``D`` are zero-padded.

    The step computes every term level by level; a term is stacked into one tensor only when it
    is read (a settling run that keeps only its state never pays for the copies).

    Attributes: ``bottom_up``, ``top_down``, ``lateral``, ``consensus`` (``[B, C, L, D]``) and
    ``beta`` (the inverse temperature of this step's lateral attention).
    """

    def __init__(
        self,
        stack: Any,
        levels: dict[str, list[torch.Tensor | None]],
        beta: float,
    ) -> None:
        self._stack = stack
        self._levels = levels
        self._stacked: dict[str, torch.Tensor] = {}
        self.beta = beta

    def _get(self, name: str) -> torch.Tensor:
        if name not in self._stacked:
            parts = self._levels[name]
            ref = next(p for p in parts if p is not None)
            filled = [
                p if p is not None else ref.new_zeros(*ref.shape[:-1], self._stack.dim)
                for p in parts
            ]
            self._stacked[name] = self._stack.stack_levels(filled)
        return self._stacked[name]

    @property
    def bottom_up(self) -> torch.Tensor:
        return self._get("bottom_up")

    @property
    def top_down(self) -> torch.Tensor:
        return self._get("top_down")

    @property
    def lateral(self) -> torch.Tensor:
        return self._get("lateral")

    @property
    def consensus(self) -> torch.Tensor:
        return self._get("consensus")


@dataclasses.dataclass(frozen=True)
class Settled:
    """Result of :meth:`Model.settle`.

    Attributes:
        state: final state ``[B, C, L, D]``.
        trajectory: ``[n_steps + 1, B, C, L, D]`` (initial state first) when
            ``return_trajectory=True``, else None.
        bottom_up, top_down, lateral, consensus: the per-step terms, time first:
            ``[n_steps, B, C, L, D]`` when ``return_trajectory=True``, else ``[1, B, C, L, D]``
            (the last step only). ``top_down[..., -1, :]`` is zero (no level above the top).
        betas: the inverse temperature used at each step.
    """

    state: torch.Tensor
    trajectory: torch.Tensor | None
    bottom_up: torch.Tensor
    top_down: torch.Tensor
    lateral: torch.Tensor
    consensus: torch.Tensor
    betas: tuple[float, ...]


def position_features(pos: np.ndarray, config: ModelConfig) -> np.ndarray:
    """``[C, P]`` position encoding: xy scaled to [-1, 1] (+ Fourier features)."""
    scale = float(np.abs(pos).max()) or 1.0
    u = pos / scale
    feats = [u]
    if config.position_encoding == "fourier":
        for i in range(config.n_frequencies):
            feats += [np.sin(2.0**i * math.pi * u), np.cos(2.0**i * math.pi * u)]
    return np.concatenate(feats, axis=1)


class Model(nn.Module):
    """Column sheet with unshared per-column networks and GLOM-style settling.

    Args:
        config: :class:`ModelConfig`.
        cell_positions_deg: ``[n_cells, 2]`` positions of the retina cells whose responses the
            model reads (ON and OFF cells may share positions).
        column_positions_deg: ``[n_columns, 2]``; default: a lattice from the ``retina``
            package (``uniform_lattice`` or ``foveated_lattice``, see ``config.column_lattice``)
            over ``fov_deg``.
        fov_deg: field of view for the column lattice; default ``2 * max |cell coordinate|``.
        retina_kind: ``"uniform"`` or ``"foveated"``, used when ``column_lattice="auto"``.
        cell_polarity: ``[n_cells]`` polarity label of every cell (e.g. ``"on"``/``"off"``, any
            hashable values), used to order each column's cells (see ``cell_index`` below);
            polarities rank in order of first appearance in the cell list. ``None`` (plain
            position arrays): all cells count as one polarity, and cells at the same offset
            from the column keep the order of their index in ``cell_positions_deg`` — for a list
            of ON cells followed by OFF cells, ON before OFF at each place, so slots are still
            consistent across columns, only interleaved by place instead of grouped by
            polarity. :meth:`from_retina` passes ``retina.cells["polarity"]``.
        device: where to put parameters and buffers.

    Modules: ``encoder`` (cells -> level 0), ``bottom_up[l - 1]`` (level l-1 -> l, l >= 1),
    ``top_down[l]`` (level l+1 + position -> l, l < L-1), each a
    :class:`~neurosim.columns.ColumnMLP`.

    Buffers: ``positions_deg [C, 2]``, ``cell_index [C, k_cells]`` (the column's ``k_cells``
    nearest cells, sorted by (polarity, row offset top to bottom, column offset left to right,
    cell index), offsets rounded to 1e-6 deg: :func:`canonical_cell_order`), ``position_features
    [C, P]``, ``nb_index_{l} [C, k_l]`` (+ ``nb_mask_{l}`` for radius neighbourhoods),
    ``has_top_down [L]`` (bool), ``term_weights [4, L]``, ``level_mask [L, D]`` (1 on the
    entries a level uses, 0 on its padding; not saved in the state dict).

    Attributes: ``level_dims`` (size of each level), ``dim`` (``D = max(level_dims)``, the
    state's last axis), ``ragged`` (True when the level sizes differ).
    """

    def __init__(
        self,
        config: ModelConfig,
        cell_positions_deg: np.ndarray | torch.Tensor,
        *,
        column_positions_deg: np.ndarray | torch.Tensor | None = None,
        fov_deg: float | None = None,
        retina_kind: str = "uniform",
        cell_polarity: np.ndarray | torch.Tensor | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise ValueError(f"config must be a ModelConfig; got {type(config).__name__}")
        self.config = config
        cells = _as_positions("cell_positions_deg", cell_positions_deg)
        n_cells = cells.shape[0]
        if config.k_cells > n_cells:
            raise ValueError(
                f"k_cells must be in [1, {n_cells}] (the number of retina cells); "
                f"got {config.k_cells}"
            )
        if fov_deg is None:
            fov_deg = 2.0 * float(np.abs(cells).max()) or 1.0
        if column_positions_deg is None:
            columns = _column_lattice(config, fov_deg, retina_kind)
        else:
            columns = _as_positions("column_positions_deg", column_positions_deg)
        if columns.shape[0] != config.n_columns:
            raise ValueError(
                f"n_columns={config.n_columns} does not match the {columns.shape[0]} column "
                "positions"
            )
        self.n_cells = n_cells
        self.n_columns = config.n_columns
        self.n_levels = config.n_levels
        self.level_dims = config.level_dims
        self.dim = config.state_dim
        self.ragged = len(set(self.level_dims)) > 1

        _, cell_index = cKDTree(cells).query(columns, k=config.k_cells)
        cell_index = np.asarray(cell_index, dtype=np.int64).reshape(columns.shape[0], -1)
        cell_index = canonical_cell_order(
            cell_index, cells, columns, _polarity_codes(cell_polarity, n_cells)
        )
        self.register_buffer("positions_deg", torch.as_tensor(columns, dtype=torch.float32))
        self.register_buffer("cell_index", torch.from_numpy(cell_index))
        self.register_buffer(
            "position_features",
            torch.as_tensor(position_features(columns, config), dtype=torch.float32),
        )
        nbs = level_neighbours(
            columns,
            config.n_levels,
            k=None if config.neighbour_radius_deg > 0 else config.neighbour_k,
            growth=config.neighbour_growth,
            radius_deg=config.neighbour_radius_deg or None,
            n_long_range=config.long_range_k,
            long_range_from_level=config.long_range_from_level,
            seed=config.seed,
        )
        for level, nb in enumerate(nbs):
            self.register_buffer(f"nb_index_{level}", nb.index)
            self.register_buffer(f"nb_mask_{level}", nb.mask)
        has_td = torch.ones(config.n_levels, dtype=torch.bool)
        has_td[-1] = False
        self.register_buffer("has_top_down", has_td)
        w = torch.tensor(config.dynamics.term_weights(), dtype=torch.float32)
        term_weights = w[:, None].repeat(1, config.n_levels)
        term_weights[1, -1] = 0.0
        self.register_buffer("term_weights", term_weights)

        # [L, D]: 1 where a level has an entry (all ones unless the level sizes differ)
        level_mask = torch.zeros(config.n_levels, self.dim)
        for level, d in enumerate(self.level_dims):
            level_mask[level, :d] = 1.0
        self.register_buffer("level_mask", level_mask, persistent=False)

        gen = torch.Generator().manual_seed(config.seed)
        mlp = dict(activation=config.activation, shared=config.shared, generator=gen)
        c, dims, h = config.n_columns, self.level_dims, config.hidden
        self.encoder = ColumnMLP(c, config.k_cells, h, dims[0], **mlp)
        self.bottom_up = nn.ModuleList(
            ColumnMLP(c, dims[lv - 1], h, dims[lv], **mlp) for lv in range(1, config.n_levels)
        )
        self.top_down = nn.ModuleList(
            ColumnMLP(c, dims[lv + 1] + config.position_dim, h, dims[lv], **mlp)
            for lv in range(config.n_levels - 1)
        )
        if device is not None:
            self.to(device)

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_retina(
        cls,
        retina: Any,
        config: ModelConfig | None = None,
        *,
        column_positions_deg: np.ndarray | torch.Tensor | None = None,
        device: torch.device | str | None = None,
    ) -> Model:
        """Build a model that reads ``retina(images)``: cell positions from
        ``retina.positions_deg``, cell polarities from ``retina.cells["polarity"]`` (when the
        retina has them), column lattice following ``retina.kind``."""
        config = ModelConfig() if config is None else config
        fov = getattr(retina, "fov_deg", None)
        cells = getattr(retina, "cells", None)
        polarity = None
        if cells is not None and "polarity" in getattr(cells, "variables", cells):
            polarity = np.asarray(cells["polarity"])
        return cls(
            config,
            retina.positions_deg,
            column_positions_deg=column_positions_deg,
            fov_deg=None if fov is None else float(np.max(fov)),
            retina_kind=str(getattr(retina, "kind", "uniform")),
            cell_polarity=polarity,
            device=device,
        )

    @property
    def neighbours(self) -> list[Neighbours]:
        """Neighbour sets per level."""
        return [
            Neighbours(getattr(self, f"nb_index_{lv}"), getattr(self, f"nb_mask_{lv}"))
            for lv in range(self.n_levels)
        ]

    @property
    def device(self) -> torch.device:
        return self.positions_deg.device

    # ------------------------------------------------------------------ pieces of a step
    def column_inputs(self, responses: torch.Tensor) -> torch.Tensor:
        """What each column reads: ``responses [B, n_cells] -> [B, C, k_cells]``."""
        if responses.dim() != 2 or responses.shape[1] != self.n_cells:
            raise ValueError(
                f"responses must have shape [batch, {self.n_cells}]; got {tuple(responses.shape)}"
            )
        return responses[:, self.cell_index]

    def level(self, state: torch.Tensor, lv: int) -> torch.Tensor:
        """Level ``lv`` of a state ``[..., L, D]`` without its zero padding: ``[..., dim[lv]]``
        (a view)."""
        return state[..., lv, : self.level_dims[lv]]

    def stack_levels(self, levels: list[torch.Tensor]) -> torch.Tensor:
        """Per-level tensors ``[..., dim[l]]`` -> one ``[..., L, D]``, zero-padded to ``D``."""
        if self.ragged:
            levels = [
                nn.functional.pad(x, (0, self.dim - x.shape[-1])) if x.shape[-1] < self.dim else x
                for x in levels
            ]
        return torch.stack(levels, dim=-2)

    def _encode(self, responses: torch.Tensor, input_mask: torch.Tensor | None) -> torch.Tensor:
        x = self.column_inputs(responses)
        if input_mask is not None:
            x = x * input_mask[..., None].to(x.dtype)
        return self.encoder(x)

    def initial_state(
        self, responses: torch.Tensor, input_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Initial state ``[B, C, L, D]``: zeros or one bottom-up pass (``config.init``)."""
        b = responses.shape[0]
        if self.config.init == "zeros":
            return responses.new_zeros(b, self.n_columns, self.n_levels, self.dim)
        levels = [self._encode(responses, input_mask)]
        for net in self.bottom_up:
            levels.append(net(levels[-1]))
        return self.stack_levels(levels)

    def step(
        self,
        state: torch.Tensor,
        responses: torch.Tensor,
        t: int = 0,
        *,
        n_steps: int | None = None,
        detach_inputs: bool = False,
        input_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, StepTerms]:
        """One Euler step of every level of every column.

        Args:
            state: ``[B, C, L, D]``.
            responses: the drive, retina responses ``[B, n_cells]`` at this step.
            t: step index (selects beta from the schedule).
            n_steps: length of the run, for the beta schedule (default ``dynamics.n_steps``).
            detach_inputs: local mode: the nets read a detached copy of ``state`` and the
                update starts from it, so the new state and the terms depend on parameters only
                through the column's own nets at this step (no gradient crosses columns or time).
            input_mask: optional ``BoolTensor [B, C]``; False hides a column's input (its cells
                read as zero and its level-0 bottom-up term gets weight 0).

        Returns:
            ``(new_state [B, C, L, D], StepTerms)``.
        """
        if state.dim() != 4 or tuple(state.shape[1:]) != (self.n_columns, self.n_levels, self.dim):
            raise ValueError(
                f"state must have shape [batch, {self.n_columns}, {self.n_levels}, {self.dim}]; "
                f"got {tuple(state.shape)}"
            )
        dyn = self.config.dynamics
        src = state.detach() if detach_inputs else state
        if self.ragged:
            # padding entries are zero by construction; this keeps them zero for any input
            src = src * self.level_mask
        beta = dyn.beta_at(t, n_steps)
        # One view per level. unbind's backward stacks the levels' gradients once; indexing
        # src[:, :, l] would build a zero-filled gradient of the whole state for every use.
        xs = [
            x[..., :d] if d < self.dim else x
            for x, d in zip(src.unbind(2), self.level_dims, strict=True)
        ]
        bu = [self._encode(responses, input_mask)]
        bu += [net(xs[lv]) for lv, net in enumerate(self.bottom_up)]
        # The position enters the top-down nets as if concatenated to their input (neural field).
        td: list[torch.Tensor | None] = [
            net(xs[lv + 1], self.position_features) for lv, net in enumerate(self.top_down)
        ]
        td.append(None)  # nothing above the top level
        lat = [
            lateral_attention(xs[lv], nb.index, beta, mask=nb.mask, check_index=False)
            for lv, nb in enumerate(self.neighbours)
        ]
        # consensus and Euler step level by level, with scalar weights: no stacked copies of the
        # terms, and one fused pass (dynamics.relax) for tau dx/dt = -x + consensus
        coeffs = self._coefficients(input_mask)
        cons, new = [], []
        for lv in range(self.n_levels):
            c = _weighted_sum((bu[lv], td[lv], lat[lv], xs[lv]), coeffs[lv])
            cons.append(c)
            new.append(relax(xs[lv], c, dyn.tau_ms, dyn.dt_ms))
        terms = {"bottom_up": bu, "top_down": td, "lateral": lat, "consensus": cons}
        return self.stack_levels(new), StepTerms(self, terms, beta)

    def _coefficients(self, input_mask: torch.Tensor | None) -> list[list[float | torch.Tensor]]:
        """Normalised consensus weights per level, in the order of ``dynamics.TERMS``: floats,
        except at level 0 under an ``input_mask`` (``[B, C, 1]``: a hidden column has no
        bottom-up term there, and its other weights are renormalised)."""
        # read to the host once, not at every step (no GPU sync); the cache holds the buffer
        # itself, so a replaced buffer or an in-place change (a new _version) is picked up
        buf = self.term_weights
        cache = getattr(self, "_coeff_cache", None)
        if cache is None or cache[0] is not buf or cache[1] != buf._version:
            raw = buf.detach().cpu().double()  # [4, L]
            total = raw.sum(dim=0)
            if bool((total <= 0).any()):
                raise ValueError(
                    "consensus weights must have a positive sum over the terms at each level"
                )
            self._coeff_cache = cache = (buf, buf._version, raw, (raw / total).t().tolist())
        raw, cached = cache[2], cache[3]
        coeffs = [list(row) for row in cached]
        if input_mask is not None:
            w0 = [float(v) for v in raw[:, 0]]
            visible = input_mask.to(self.term_weights.dtype)[..., None]  # [B, C, 1]
            rest = w0[1] + w0[2] + w0[3]
            if rest <= 0 and not bool(input_mask.all()):
                raise ValueError(
                    "consensus weights must have a positive sum over the terms at each level: "
                    "with an input_mask, w_top_down + w_lateral + w_previous must be > 0"
                )
            total0 = visible * w0[0] + rest
            coeffs[0] = [visible * w0[0] / total0] + [w / total0 for w in w0[1:]]
        return coeffs

    # ------------------------------------------------------------------ the forward API
    def settle(
        self,
        inputs: torch.Tensor,
        *,
        n_steps: int | None = None,
        return_trajectory: bool = False,
        detach_inputs: bool = False,
        input_mask: torch.Tensor | None = None,
        initial_state: torch.Tensor | None = None,
    ) -> Settled:
        """Run the rate dynamics on a static input or a sequence of frames.

        Args:
            inputs: retina responses ``[B, n_cells]`` (held for every step: a boring video) or
                frames ``[T_in, B, n_cells]`` (frame t drives step t; the last one is held;
                ``T_in <= n_steps``).
            n_steps: Euler steps (default ``config.dynamics.n_steps``).
            return_trajectory: keep every state and every step's terms (see :class:`Settled`).
            detach_inputs: local mode of the learning rules (see :meth:`step`).
            input_mask: ``BoolTensor [B, C]``, False hides the column's input (fill-in).
            initial_state: ``[B, C, L, D]``; default :meth:`initial_state` of the first frame
                (computed without gradient in local mode).

        Returns:
            :class:`Settled`.
        """
        n = self.config.dynamics.n_steps if n_steps is None else n_steps
        check_positive_int("n_steps", n)
        if inputs.dim() == 2:
            frames = inputs.unsqueeze(0)
        elif inputs.dim() == 3:
            frames = inputs
            if frames.shape[0] > n:
                raise ValueError(
                    f"the number of frames must be in [1, n_steps={n}]; got {frames.shape[0]}"
                )
        else:
            raise ValueError(
                "inputs must be responses [batch, n_cells] or frames [time, batch, n_cells]; "
                f"got shape {tuple(inputs.shape)}"
            )
        if input_mask is not None and tuple(input_mask.shape) != (
            frames.shape[1],
            self.n_columns,
        ):
            raise ValueError(
                f"input_mask must have shape [batch, {self.n_columns}]; "
                f"got {tuple(input_mask.shape)}"
            )
        if initial_state is None:
            if detach_inputs:
                with torch.no_grad():
                    state = self.initial_state(frames[0], input_mask)
            else:
                state = self.initial_state(frames[0], input_mask)
        else:
            state = initial_state
        trajectory = [state] if return_trajectory else None
        kept: list[StepTerms] = []
        betas = []
        for t in range(n):
            frame = frames[min(t, frames.shape[0] - 1)]
            state, terms = self.step(
                state,
                frame,
                t,
                n_steps=n,
                detach_inputs=detach_inputs,
                input_mask=input_mask,
            )
            betas.append(terms.beta)
            if return_trajectory:
                trajectory.append(state)
                kept.append(terms)
            else:
                kept = [terms]

        def stack(name: str) -> torch.Tensor:
            return torch.stack([getattr(k, name) for k in kept], dim=0)

        return Settled(
            state=state,
            trajectory=torch.stack(trajectory, dim=0) if return_trajectory else None,
            bottom_up=stack("bottom_up"),
            top_down=stack("top_down"),
            lateral=stack("lateral"),
            consensus=stack("consensus"),
            betas=tuple(betas),
        )

    def forward(self, inputs: torch.Tensor, **kwargs: Any) -> Settled:
        """Same as :meth:`settle`."""
        return self.settle(inputs, **kwargs)


def _weighted_sum(
    terms: tuple[torch.Tensor | None, ...], weights: list[float | torch.Tensor]
) -> torch.Tensor:
    """``sum_j weights[j] * terms[j]`` over the terms present with a nonzero weight; a weight is
    a float or a tensor broadcasting against the terms. One product, then in-place fused
    multiply-adds into it (their backward needs only the inputs)."""
    out = None
    for term, w in zip(terms, weights, strict=True):
        if term is None or (isinstance(w, float) and w == 0.0):
            continue
        if out is None:
            out = term * w
        elif isinstance(w, float):
            out = out.add_(term, alpha=w)
        else:
            out = out.addcmul_(term, w)
    if out is None:
        raise ValueError("consensus weights must have a positive sum over the terms at each level")
    return out


def _as_positions(name: str, pos: np.ndarray | torch.Tensor) -> np.ndarray:
    arr = np.asarray(pos.detach().cpu() if torch.is_tensor(pos) else pos, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 1:
        raise ValueError(f"{name} must have shape [n, 2] (x_deg, y_deg); got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def _polarity_codes(polarity: np.ndarray | torch.Tensor | None, n_cells: int) -> np.ndarray:
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


def _column_lattice(config: ModelConfig, fov_deg: float, retina_kind: str) -> np.ndarray:
    """Column positions from the retina package's lattices (imported lazily)."""
    kind = config.column_lattice
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
        pos = foveated_lattice(config.n_columns, fov_deg, seed=config.lattice_seed)
    else:
        pos = uniform_lattice(config.n_columns, fov_deg)
    return _as_positions("column lattice", pos)
