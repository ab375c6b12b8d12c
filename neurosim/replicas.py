"""Replicas: many independent models of one shape trained as one batched computation.

A paper's grid trains the same architecture many times — seeds, training-set sizes, retinas.
Each of those models is small, so a training step is dominated by the fixed cost of launching
a few hundred small operations, not by arithmetic. Stacking ``R`` models side by side pays that
cost once for all of them:

* :func:`stack_models` concatenates ``R`` :class:`~neurosim.model.Model` s of one shape along the
  column axis: replica ``r`` owns columns ``r*C .. (r+1)*C - 1``, reads cells
  ``r*n .. (r+1)*n - 1`` of the input ``[B, R * n]`` (each replica its own retina responses, so
  its own images), and its neighbourhoods never leave its own columns. Every parameter keeps
  its replica blocks along dim 0 (``[R*C, d_in, d_out]``; a shared layer ``[R, d_in, d_out]``).
  Nothing couples replicas in the forward pass, so replica ``r`` settles exactly as the model
  alone (up to float rounding of the batched kernels).
* :func:`replica_model` gives replica ``r`` back as a model of its own.
* :func:`clip_grad_norm_per_replica_` clips each replica's gradient by its own norm (a global
  clip would couple the replicas); Adam is elementwise, so with per-replica losses summed the
  optimiser step of each replica is the one it would take alone.

The stacked sheet is still unshared: :func:`neurosim.columns.assert_unshared` passes on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from neurosim.columns import ColumnMLP
from neurosim.config import check_int

__all__ = [
    "stack_models",
    "replica_model",
    "replica_grad_norms",
    "clip_grad_norm_per_replica_",
]


def _architecture(config):
    """The config with what may differ between replicas (seeds) set to a common value."""
    return dataclasses.replace(config, seed=0, lattice_seed=0)


def _padded_neighbours(models, lv: int, n_columns: int):
    """Level ``lv``'s neighbour index and mask of every model, offset to its replica's columns
    and padded to one ``k`` (padding masked out)."""
    idx = [getattr(m, f"nb_index_{lv}") for m in models]
    masks = [getattr(m, f"nb_mask_{lv}") for m in models]
    k = max(i.shape[1] for i in idx)
    ragged = any(m is not None for m in masks) or any(i.shape[1] != k for i in idx)
    out_idx, out_mask = [], []
    for r, (i, m) in enumerate(zip(idx, masks, strict=True)):
        mask = torch.ones_like(i, dtype=torch.bool) if m is None else m
        pad = k - i.shape[1]
        if pad:
            i = torch.cat([i, i[:, :1].expand(-1, pad)], dim=1)
            mask = torch.cat([mask, mask.new_zeros(mask.shape[0], pad)], dim=1)
        out_idx.append(i + r * n_columns)
        out_mask.append(mask)
    return torch.cat(out_idx), (torch.cat(out_mask) if ragged else None)


def stack_models(models: Sequence[nn.Module]):
    """One :class:`~neurosim.model.Model` holding ``models`` side by side (see the module doc).

    Args:
        models: ``R >= 1`` unstacked models with the same architecture (their configs may
            differ only in ``seed`` and ``lattice_seed``) and the same number of cells; their
            geometry (retina, column positions) may differ.

    Returns:
        A model with ``n_replicas = R``, ``n_columns = R * C``, ``n_cells = R * n``,
        ``replica_configs`` the models' configs; its weights are copies.
    """
    from neurosim.model import Model

    models = list(models)
    if not models:
        raise ValueError("models must hold at least one Model")
    first = models[0]
    for i, m in enumerate(models):
        if not isinstance(m, Model) or m.n_replicas != 1:
            raise ValueError(f"models[{i}] must be an unstacked Model; got {type(m).__name__}")
        if _architecture(m.config) != _architecture(first.config):
            raise ValueError(
                f"models[{i}] must have the architecture of models[0] (configs may differ only "
                "in seed and lattice_seed)"
            )
        if m.n_cells != first.n_cells:
            raise ValueError(
                f"models[{i}] reads {m.n_cells} cells; models[0] reads {first.n_cells}"
            )
        if not torch.equal(m.term_weights.cpu(), first.term_weights.cpu()):
            raise ValueError(f"models[{i}] has other consensus term_weights than models[0]")
    out = Model.__new__(Model)
    nn.Module.__init__(out)
    out._set_shape(first.config, first.n_cells, n_replicas=len(models))
    out.replica_configs = tuple(m.config for m in models)
    c, n = first.n_columns, first.n_cells
    # the order of Model.__init__, so state dicts of stacked and plain models list alike
    out.register_buffer("positions_deg", torch.cat([m.positions_deg for m in models]))
    out.register_buffer(
        "cell_index", torch.cat([m.cell_index + r * n for r, m in enumerate(models)])
    )
    out.register_buffer("position_features", torch.cat([m.position_features for m in models]))
    for lv in range(first.n_levels):
        index, mask = _padded_neighbours(models, lv, c)
        out.register_buffer(f"nb_index_{lv}", index)
        out.register_buffer(f"nb_mask_{lv}", mask)
    out._register_level_buffers(first.config)
    out.term_weights.copy_(first.term_weights.cpu())
    out.encoder = ColumnMLP.stack([m.encoder for m in models])
    out.bottom_up = nn.ModuleList(
        ColumnMLP.stack([m.bottom_up[i] for m in models]) for i in range(len(first.bottom_up))
    )
    out.top_down = nn.ModuleList(
        ColumnMLP.stack([m.top_down[i] for m in models]) for i in range(len(first.top_down))
    )
    return out.to(first.device)


def replica_model(model: nn.Module, r: int):
    """Replica ``r`` of a stacked model as a :class:`~neurosim.model.Model` of its own (its
    config is ``model.replica_configs[r]``; weights and buffers are copies)."""
    from neurosim.model import Model

    n_rep = model.n_replicas
    check_int("r", r, 0, n_rep - 1)
    c, n = model.columns_per_replica, model.cells_per_replica
    rows = slice(r * c, (r + 1) * c)
    out = Model.__new__(Model)
    nn.Module.__init__(out)
    out._set_shape(model.replica_configs[r], n, n_replicas=1)
    out.register_buffer("positions_deg", model.positions_deg[rows].clone())
    out.register_buffer("cell_index", model.cell_index[rows] - r * n)
    out.register_buffer("position_features", model.position_features[rows].clone())
    for lv in range(model.n_levels):
        index = getattr(model, f"nb_index_{lv}")[rows] - r * c
        mask = getattr(model, f"nb_mask_{lv}")
        if mask is not None:
            mask = mask[rows].clone()
            keep = int(mask.sum(dim=1).max())
            if bool(mask[:, keep:].any()):  # pragma: no cover - padding is always last
                keep = mask.shape[1]
            index, mask = index[:, :keep].clone(), mask[:, :keep]
            if bool(mask.all()):
                mask = None
        out.register_buffer(f"nb_index_{lv}", index)
        out.register_buffer(f"nb_mask_{lv}", mask)
    out._register_level_buffers(out.config)
    out.term_weights.copy_(model.term_weights.cpu())
    out.encoder = model.encoder.replica(r, n_rep)
    out.bottom_up = nn.ModuleList(net.replica(r, n_rep) for net in model.bottom_up)
    out.top_down = nn.ModuleList(net.replica(r, n_rep) for net in model.top_down)
    return out.to(model.device)


def _blocks(p: torch.Tensor, n_replicas: int) -> torch.Tensor:
    if p.shape[0] % n_replicas:
        raise ValueError(
            f"a parameter of shape {tuple(p.shape)} has no {n_replicas} replica blocks along dim 0"
        )
    return p.view(n_replicas, -1)


def replica_grad_norms(parameters: Iterable[torch.Tensor], n_replicas: int) -> torch.Tensor:
    """``[R]`` L2 norm of each replica's gradient over ``parameters`` (replica blocks along
    dim 0; parameters without a gradient are skipped)."""
    check_int("n_replicas", n_replicas, 1)
    norms = [
        torch.linalg.vector_norm(_blocks(p.grad, n_replicas), dim=1, dtype=torch.float32)
        for p in parameters
        if p.grad is not None
    ]
    if not norms:
        return torch.zeros(n_replicas)
    return torch.linalg.vector_norm(torch.stack(norms), dim=0)


def clip_grad_norm_per_replica_(
    parameters: Iterable[torch.Tensor], n_replicas: int, max_norm: float
) -> torch.Tensor:
    """Scale each replica's gradient so that its own norm is at most ``max_norm`` (in place).

    For ``n_replicas == 1`` this is ``torch.nn.utils.clip_grad_norm_`` (same factor
    ``max_norm / (norm + 1e-6)``, applied only where it is below 1). Returns the ``[R]`` norms
    before clipping.
    """
    params = [p for p in parameters if p.grad is not None]
    norms = replica_grad_norms(params, n_replicas)
    factor = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    if bool((factor < 1.0).any()):
        for p in params:
            g = _blocks(p.grad, n_replicas)
            g.mul_(factor.to(g.device, g.dtype)[:, None])
    return norms
