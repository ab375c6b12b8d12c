"""The GLOM-like model: retina front end + unshared columns + lateral attention + rate dynamics.

A sheet of ``n_columns`` columns sits above the visual field. Each column

- reads the responses of its ``k_cells`` nearest retina cells (a fixed index; on a foveated retina
  peripheral columns therefore cover more degrees: different columns preprocess the image
  differently, the case weight sharing cannot handle — the distillation talk, 00:31:30-00:33:30),
  listed in a canonical order (:func:`neurosim.frontend.canonical_cell_order`), so that input
  slot ``j`` means the same relative cell in every column with the same local layout (what makes
  ``shared=True`` a true shared filter on a uniform retina),
- holds ``n_levels`` embeddings, of one size ``dim`` or one size per level (state
  ``[batch, column, level, max(dim)]``, smaller levels zero-padded),
- owns its networks (:class:`~neurosim.columns.ColumnMLP`, never shared unless ``shared=True``):
  a level-0 encoder (cells -> level 0), bottom-up nets (level l-1 -> l) and top-down nets
  (level l+1 -> l) that also receive the column's position, a neural field (the GLOM talk; GLOM,
  Hinton 2021, arXiv:2102.12627, sec. 2),
- and relaxes by ``tau dx/dt = drift(x) = -x + consensus(x)``: one step of the sheet is the
  drift's consensus (:func:`neurosim.dynamics.weighted_consensus`, mixing bottom-up, top-down,
  lateral attention over neighbours (:mod:`neurosim.attention`) and the previous state) and a
  named integrator (:func:`neurosim.dynamics.integrate`, Euler or exponential Euler).

A static image is a boring video: ``settle(responses [B, n_cells])`` holds it for ``n_steps``;
``settle(frames [T_in, B, n_cells])`` feeds frame t at step t (the last frame is held). What a
settling keeps is a record spec: ``settle(..., record=("state", "consensus"), every=k)``.

The architecture is a :class:`~neurosim.model_config.ModelConfig` (its own module, re-exported
here).

Replicas: :meth:`Model.stack` puts several models of one shape (other seeds, other retinas) side
by side as one sheet of ``R * C`` columns whose neighbourhoods never cross replicas, so that they
are trained as one batched computation (:mod:`neurosim.replicas`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree
from torch import nn

from neurosim.attention import lateral_attention
from neurosim.columns import ColumnMLP
from neurosim.config import check_choice, check_int
from neurosim.dynamics import consensus_weights, integrate, weighted_consensus
from neurosim.frontend import (
    as_positions,
    canonical_cell_order,
    column_lattice,
    polarity_codes,
    position_features,
)
from neurosim.model_config import ModelConfig
from neurosim.neighbours import Neighbours, level_neighbours
from neurosim.settled import Settled, StepTerms

__all__ = [
    "ModelConfig",
    "Model",
    "Settled",
    "StepTerms",
    "RECORDABLE",
    "canonical_cell_order",
    "position_features",
]

#: what :meth:`Model.settle` can record at every ``every``-th step
RECORDABLE = ("state", "bottom_up", "top_down", "lateral", "consensus")
#: the record spec of ``return_trajectory=True``: every state and every step's terms
_FULL_RECORD = RECORDABLE

# kept for callers of the old private name
_position_features = position_features


class Model(nn.Module):
    """Column sheet with unshared per-column networks and GLOM-style settling.

    Args:
        config: :class:`ModelConfig`.
        cell_positions_deg: ``[n_cells, 2]`` positions of the retina cells whose responses the
            model reads (ON and OFF cells may share positions).
        column_positions_deg: ``[n_columns, 2]``; default: a lattice from the ``retina``
            package (``uniform_lattice`` or ``foveated_lattice``, see ``config.column_lattice``)
            over ``fov_deg``.
        fov_deg: side of the square field the column lattice covers, in degrees; default
            ``2 * max |cell coordinate|``.
        retina_kind: ``"uniform"`` or ``"foveated"``, used when ``column_lattice="auto"``.
        cell_polarity: ``[n_cells]`` polarity label of every cell (e.g. ``"on"``/``"off"``, any
            hashable values), used to order each column's cells (see ``cell_index`` below);
            polarities rank in order of first appearance in the cell list. ``None`` (plain
            position arrays): all cells count as one polarity, and cells at the same offset
            from the column keep the order of their index in ``cell_positions_deg``.
            :meth:`from_retina` passes ``retina.cells["polarity"]``.
        device: where to put parameters and buffers.

    Modules: ``encoder`` (cells -> level 0), ``bottom_up[l - 1]`` (level l-1 -> l, l >= 1),
    ``top_down[l]`` (level l+1 + position -> l, l < L-1), each a
    :class:`~neurosim.columns.ColumnMLP`.

    Buffers: ``positions_deg [C, 2]``, ``cell_index [C, k_cells]`` (the column's ``k_cells``
    nearest cells in canonical order), ``position_features [C, P]``, ``nb_index_{l} [C, k_l]``
    (+ ``nb_mask_{l}`` for radius neighbourhoods), ``has_top_down [L]`` (bool),
    ``term_weights [4, L]`` (raw consensus weights, read once per settling), ``level_mask [L, D]``
    (1 on the entries a level uses, 0 on its padding; not saved in the state dict).

    Attributes: ``level_dims`` (size of each level), ``dim`` (``D = max(level_dims)``, the
    state's last axis), ``ragged`` (True when the level sizes differ), ``n_replicas`` (1, or the
    number of models stacked by :meth:`stack`), ``columns_per_replica``, ``cells_per_replica``.
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
        cells = as_positions("cell_positions_deg", cell_positions_deg)
        n_cells = cells.shape[0]
        if config.k_cells > n_cells:
            raise ValueError(
                f"k_cells must be in [1, {n_cells}] (the number of retina cells); "
                f"got {config.k_cells}"
            )
        if fov_deg is None:
            fov_deg = 2.0 * float(np.abs(cells).max()) or 1.0
        if column_positions_deg is None:
            columns = column_lattice(
                config.n_columns,
                fov_deg,
                config.column_lattice,
                retina_kind=retina_kind,
                seed=config.lattice_seed,
            )
        else:
            columns = as_positions("column_positions_deg", column_positions_deg)
        if columns.shape[0] != config.n_columns:
            raise ValueError(
                f"n_columns={config.n_columns} does not match the {columns.shape[0]} column "
                "positions"
            )
        self._set_shape(config, n_cells, n_replicas=1)
        _, cell_index = cKDTree(cells).query(columns, k=config.k_cells)
        cell_index = np.asarray(cell_index, dtype=np.int64).reshape(columns.shape[0], -1)
        cell_index = canonical_cell_order(
            cell_index, cells, columns, polarity_codes(cell_polarity, n_cells)
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
        self._register_level_buffers(config)

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

    def _set_shape(self, config: ModelConfig, n_cells: int, *, n_replicas: int) -> None:
        """Plain attributes of a sheet of ``n_replicas`` models of ``config``'s shape reading
        ``n_cells`` cells each."""
        self.config = config
        self.replica_configs = (config,) * n_replicas
        self.n_replicas = n_replicas
        self.columns_per_replica = config.n_columns
        self.cells_per_replica = n_cells
        self.n_cells = n_cells * n_replicas
        self.n_columns = config.n_columns * n_replicas
        self.n_levels = config.n_levels
        self.level_dims = config.level_dims
        self.dim = config.state_dim
        self.ragged = len(set(self.level_dims)) > 1
        self.normalize = config.normalize == "layer"
        self.normalize_inputs = config.normalize == "input"

    def _register_level_buffers(self, config: ModelConfig) -> None:
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

    @classmethod
    def stack(cls, models: Sequence[Model]) -> Model:
        """Several models of one shape as one sheet of ``R * C`` columns (replicas).

        See :func:`neurosim.replicas.stack_models`: replica ``r`` owns columns
        ``r*C .. (r+1)*C - 1`` and reads cells ``r*n .. (r+1)*n - 1`` of the input
        ``[B, R * n_cells]``; no neighbourhood crosses replicas, so each replica settles exactly
        as the model alone would.
        """
        from neurosim.replicas import stack_models

        return stack_models(models)

    def replica(self, r: int) -> Model:
        """Replica ``r`` of a stacked model as a model of its own (copies of its weights)."""
        from neurosim.replicas import replica_model

        return replica_model(self, r)

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
        # index_select on a flat index, not responses[:, cell_index]: the same gather, but
        # torch's advanced indexing is ~8x slower on CPU at the flagship's stacked size.
        index = self.cell_index
        return responses.index_select(1, index.reshape(-1)).view(responses.shape[0], *index.shape)

    def level(self, state: torch.Tensor, lv: int) -> torch.Tensor:
        """Level ``lv`` of a state ``[..., L, D]`` without its zero padding: ``[..., dim[lv]]``
        (a view)."""
        return state[..., lv, : self.level_dims[lv]]

    def stack_levels(self, levels: list[torch.Tensor]) -> torch.Tensor:
        """Per-level tensors ``[..., dim[l]]`` -> one ``[..., L, D]``, zero-padded to ``D``."""
        if self.ragged:
            levels = [
                F.pad(x, (0, self.dim - x.shape[-1])) if x.shape[-1] < self.dim else x
                for x in levels
            ]
        return torch.stack(levels, dim=-2)

    def _out(self, y: torch.Tensor) -> torch.Tensor:
        """A column net's output as the embedding it proposes (layer-normalised if asked)."""
        return F.layer_norm(y, y.shape[-1:]) if self.normalize else y

    def _in(self, x: torch.Tensor) -> torch.Tensor:
        """A level's embedding as the input of a net (divided by its RMS if asked)."""
        if not self.normalize_inputs:
            return x
        return x * torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + 1e-8)

    def encode(
        self, responses: torch.Tensor, input_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The level-0 encoder's reading of the retina, ``[B, C, dim[0]]`` (layer-normalised
        when ``config.normalize == "layer"``; hidden columns read zeros)."""
        x = self.column_inputs(responses)
        if input_mask is not None:
            x = x * input_mask[..., None].to(x.dtype)
        return self._out(self.encoder(x))

    def initial_state(
        self,
        responses: torch.Tensor,
        input_mask: torch.Tensor | None = None,
        *,
        encoded: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Initial state ``[B, C, L, D]``: zeros or one bottom-up pass (``config.init``).

        ``encoded``: the encoder's reading of ``responses`` if already computed
        (:meth:`encode`), so that it is not computed twice.
        """
        b = responses.shape[0]
        if self.config.init == "zeros":
            return responses.new_zeros(b, self.n_columns, self.n_levels, self.dim)
        levels = [self.encode(responses, input_mask) if encoded is None else encoded]
        for net in self.bottom_up:
            levels.append(self._out(net(self._in(levels[-1]))))
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
        weights: list[list[float | torch.Tensor]] | None = None,
        encoded: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, StepTerms]:
        """One step of every level of every column: the drift's consensus and the integrator.

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
            weights: the normalised consensus weights
                (:func:`neurosim.dynamics.consensus_weights` of ``term_weights`` and
                ``input_mask``); computed here when None (:meth:`settle` computes them once).
            encoded: the encoder's reading of ``responses`` (:meth:`encode`) when already
                computed: a static image is read once per settling, not at every step (the
                same tensor, so its gradient sums over the steps exactly as before).

        Returns:
            ``(new_state [B, C, L, D], StepTerms)``.
        """
        if state.dim() != 4 or tuple(state.shape[1:]) != (self.n_columns, self.n_levels, self.dim):
            raise ValueError(
                f"state must have shape [batch, {self.n_columns}, {self.n_levels}, {self.dim}]; "
                f"got {tuple(state.shape)}"
            )
        if weights is None:
            weights = consensus_weights(self.term_weights, input_mask)
        new, terms = self._step_levels(
            self._levels(state), responses, t, n_steps, detach_inputs, input_mask, weights, encoded
        )
        return self.stack_levels(new), terms

    def _levels(self, state: torch.Tensor) -> list[torch.Tensor]:
        """A state ``[B, C, L, D]`` as one view ``[B, C, dim[l]]`` per level (no copies; unbind's
        backward stacks the levels' gradients once, where indexing ``state[:, :, l]`` would build
        a zero-filled gradient of the whole state for every use)."""
        return [
            x[..., :d] if d < self.dim else x
            for x, d in zip(state.unbind(2), self.level_dims, strict=True)
        ]

    def _step_levels(
        self,
        levels: list[torch.Tensor],
        responses: torch.Tensor,
        t: int,
        n_steps: int | None,
        detach_inputs: bool,
        input_mask: torch.Tensor | None,
        weights: list[list[float | torch.Tensor]],
        encoded: torch.Tensor | None,
        bottom_up: list[torch.Tensor] | None = None,
    ) -> tuple[list[torch.Tensor], StepTerms]:
        """:meth:`step` on the state as a list of levels ``[B, C, dim[l]]`` (what :meth:`settle`
        carries from step to step, so that the state is stacked into one tensor only when it is
        recorded). ``bottom_up``: this step's bottom-up terms when already computed (the first
        step from a bottom-up initial state: they are that state's levels)."""
        dyn = self.config.dynamics
        xs = [x.detach() for x in levels] if detach_inputs else levels
        beta = dyn.beta_at(t, n_steps)
        if bottom_up is not None:
            bu = list(bottom_up)
        else:
            bu = [self.encode(responses, input_mask) if encoded is None else encoded]
            bu += [self._out(net(self._in(xs[lv]))) for lv, net in enumerate(self.bottom_up)]
        # The position enters the top-down nets as if concatenated to their input (neural field).
        td: list[torch.Tensor | None] = [
            self._out(net(self._in(xs[lv + 1]), self.position_features))
            for lv, net in enumerate(self.top_down)
        ]
        td.append(None)  # nothing above the top level
        lat, att = [], []
        for lv, nb in enumerate(self.neighbours):
            lateral, w = lateral_attention(
                xs[lv], nb.index, beta, mask=nb.mask, return_weights=True, check_index=False
            )
            lat.append(lateral)
            att.append(w)
        cons, new = [], []
        for lv in range(self.n_levels):
            c = weighted_consensus((bu[lv], td[lv], lat[lv], xs[lv]), weights[lv])
            cons.append(c)
            new.append(integrate(xs[lv], c, dyn.tau_ms, dyn.dt_ms, dyn.integrator, weights[lv][3]))
        terms = {"bottom_up": bu, "top_down": td, "lateral": lat, "consensus": cons}
        return new, StepTerms(self, terms, att, beta)

    # ------------------------------------------------------------------ the forward API
    def settle(
        self,
        inputs: torch.Tensor,
        *,
        n_steps: int | None = None,
        record: Sequence[str] = (),
        every: int = 1,
        return_trajectory: bool = False,
        detach_inputs: bool = False,
        input_mask: torch.Tensor | None = None,
        initial_state: torch.Tensor | None = None,
        clamp: Mapping[int, torch.Tensor] | None = None,
    ) -> Settled:
        """Run the rate dynamics on a static input or a sequence of frames.

        Args:
            inputs: retina responses ``[B, n_cells]`` (held for every step: a boring video) or
                frames ``[T_in, B, n_cells]`` (frame t drives step t; the last one is held;
                ``T_in <= n_steps``). A stacked model reads ``[B, R * cells_per_replica]``.
            n_steps: integration steps (default ``config.dynamics.n_steps``).
            record: what to keep at every ``every``-th step, any of :data:`RECORDABLE`
                (``"state"`` keeps the initial state too); the final state, the last step's
                terms and its attention weights are always kept (see :class:`Settled`).
            every: record steps ``every, 2 * every, ...`` (1-based; >= 1).
            return_trajectory: shorthand for ``record=RECORDABLE, every=1`` (every state and
                every step's terms).
            detach_inputs: local mode of the learning rules (see :meth:`step`).
            input_mask: ``BoolTensor [B, C]``, False hides the column's input (fill-in).
            initial_state: ``[B, C, L, D]``; default :meth:`initial_state` of the first frame
                (computed without gradient in local mode).
            clamp: ``{level: [B, C, dim[level]]}``: levels held at these values throughout (in
                the initial state and after every step), e.g. Forward-Forward's top level
                clamped to a label code; the nets still read them as their input.

        Returns:
            :class:`Settled`. With ``config.normalize == "layer"`` and ``dt_ms <= tau_ms`` every
            state's RMS per (image, column, level) is at most 1: each term is a unit-RMS net
            output or a convex combination of states, and a step is a convex combination of
            the state and the consensus.
        """
        n, names, frames = self._settle_args(
            inputs, n_steps, record, every, return_trajectory, input_mask
        )
        # a static image is read once: every step's bottom-up term at level 0 is this tensor
        encoded = self.encode(frames[0], input_mask) if frames.shape[0] == 1 else None
        clamp = self._clamps(clamp, frames.shape[1])
        state, first_bu = self._settle_start(
            frames, input_mask, encoded, initial_state, detach_inputs, clamp
        )
        levels, terms, states, kept, recorded, betas = self._settle_steps(
            state,
            frames,
            n,
            names,
            every,
            detach_inputs,
            input_mask,
            encoded,
            first_bu,
            clamp,
        )
        state = states[-1] if states is not None and recorded and recorded[-1] == n else None
        if state is None:
            state = self.stack_levels(levels)
        return Settled(state, states, kept, terms, tuple(recorded), tuple(betas), input_mask)

    def _settle_args(
        self,
        inputs: torch.Tensor,
        n_steps: int | None,
        record: Sequence[str],
        every: int,
        return_trajectory: bool,
        input_mask: torch.Tensor | None,
    ) -> tuple[int, tuple[str, ...], torch.Tensor]:
        """:meth:`settle`'s step count, record names and frames ``[T_in, B, n_cells]`` (checked)."""
        n = self.config.dynamics.n_steps if n_steps is None else n_steps
        check_int("n_steps", n, 1, 100_000)
        check_int("every", every, 1)
        names = tuple(_FULL_RECORD if return_trajectory else record)
        for name in names:
            check_choice("record", name, RECORDABLE)
        frames = self._frames(inputs, n)
        if input_mask is not None and tuple(input_mask.shape) != (frames.shape[1], self.n_columns):
            raise ValueError(
                f"input_mask must have shape [batch, {self.n_columns}]; "
                f"got {tuple(input_mask.shape)}"
            )
        return n, names, frames

    def _settle_start(
        self,
        frames: torch.Tensor,
        input_mask: torch.Tensor | None,
        encoded: torch.Tensor | None,
        initial_state: torch.Tensor | None,
        detach_inputs: bool,
        clamp: dict[int, torch.Tensor],
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """:meth:`settle`'s initial state, and the first step's bottom-up terms if it holds them."""
        if initial_state is not None:
            return initial_state, None
        if encoded is not None and self.config.init == "bottom_up" and not clamp:
            # the bottom-up start is the first step's bottom-up terms: computed once, with the
            # gradient the step needs (in local mode each level from the detached one below)
            first_bu = [encoded]
            for net in self.bottom_up:
                below = first_bu[-1].detach() if detach_inputs else first_bu[-1]
                first_bu.append(self._out(net(self._in(below))))
            start = [x.detach() for x in first_bu] if detach_inputs else first_bu
            return self.stack_levels(start), first_bu
        if detach_inputs:
            with torch.no_grad():
                start = None if encoded is None else encoded.detach()
                return self.initial_state(frames[0], input_mask, encoded=start), None
        return self.initial_state(frames[0], input_mask, encoded=encoded), None

    def _settle_steps(
        self,
        state: torch.Tensor,
        frames: torch.Tensor,
        n: int,
        names: tuple[str, ...],
        every: int,
        detach_inputs: bool,
        input_mask: torch.Tensor | None,
        encoded: torch.Tensor | None,
        first_bu: list[torch.Tensor] | None,
        clamp: dict[int, torch.Tensor],
    ) -> tuple[
        list[torch.Tensor],
        StepTerms,
        list[torch.Tensor] | None,
        dict[str, list[StepTerms]],
        list[int],
        list[float],
    ]:
        """:meth:`settle`'s ``n`` steps from ``state``, recording ``names`` every ``every``-th."""
        weights = consensus_weights(self.term_weights, input_mask)
        if self.ragged:  # padding is zero by construction; a caller's state may not be
            state = state * self.level_mask
        levels = self._clamped(self._levels(state), clamp)
        states = [self.stack_levels(levels)] if "state" in names else None
        kept: dict[str, list[StepTerms]] = {name: [] for name in names if name != "state"}
        recorded, betas = [], []
        for t in range(n):
            frame = frames[min(t, frames.shape[0] - 1)]
            levels, terms = self._step_levels(
                levels,
                frame,
                t,
                n,
                detach_inputs,
                input_mask,
                weights,
                encoded,
                bottom_up=first_bu if t == 0 else None,
            )
            levels = self._clamped(levels, clamp)
            betas.append(terms.beta)
            if (t + 1) % every == 0:
                recorded.append(t + 1)
                if states is not None:
                    states.append(self.stack_levels(levels))
                for k in kept.values():
                    k.append(terms)
        return levels, terms, states, kept, recorded, betas

    def _clamps(self, clamp, batch: int) -> dict[int, torch.Tensor]:
        """``clamp`` checked: level -> ``[B, C, dim[level]]``."""
        out = {}
        for lv, value in (clamp or {}).items():
            check_int("clamp level", lv, 0, self.n_levels - 1)
            want = (batch, self.n_columns, self.level_dims[lv])
            if tuple(value.shape) != want:
                raise ValueError(
                    f"clamp[{lv}] must have shape {list(want)}; got {tuple(value.shape)}"
                )
            out[lv] = value
        return out

    def _clamped(
        self, levels: list[torch.Tensor], clamp: dict[int, torch.Tensor]
    ) -> list[torch.Tensor]:
        if not clamp:
            return levels
        out = list(levels)
        for lv, value in clamp.items():
            out[lv] = value.to(levels[lv].dtype)
        return out

    def _frames(self, inputs: torch.Tensor, n_steps: int) -> torch.Tensor:
        """``inputs`` as frames ``[T_in, B, n_cells]`` (checked)."""
        if inputs.dim() == 2:
            return inputs.unsqueeze(0)
        if inputs.dim() == 3:
            if inputs.shape[0] > n_steps:
                raise ValueError(
                    f"the number of frames must be in [1, n_steps={n_steps}]; got {inputs.shape[0]}"
                )
            return inputs
        raise ValueError(
            "inputs must be responses [batch, n_cells] or frames [time, batch, n_cells]; "
            f"got shape {tuple(inputs.shape)}"
        )

    def forward(self, inputs: torch.Tensor, **kwargs: Any) -> Settled:
        """Same as :meth:`settle`."""
        return self.settle(inputs, **kwargs)
