"""What is read off a trained torch model: its weights, geometry and dynamics as float64 arrays."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

__all__ = ["ColumnNetSpec", "ModelSpec", "model_spec"]


@dataclasses.dataclass(frozen=True)
class ColumnNetSpec:
    """One per-column MLP as float64 arrays.

    Attributes:
        name: ``"encoder"``, ``"bottom_up{l}"`` (into level l) or ``"top_down{l}"`` (into level l).
        weights: per layer ``[n_columns, d_in, d_out]``.
        biases: per layer ``[n_columns, d_out]`` (zeros where the layer has no bias).
        activation: hidden nonlinearity (after every layer but the last).
        n_position: trailing inputs of the first layer that are the position encoding (top-down).
    """

    name: str
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    activation: str
    n_position: int = 0


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    n_columns: int
    n_levels: int
    dim: int  # width of the state arrays: max(level_dims)
    level_dims: tuple[int, ...]  # neurons per column in each level
    n_cells: int
    positions_deg: np.ndarray  # [C, 2]
    cell_index: np.ndarray  # [C, k]
    position_encoding: str
    n_frequencies: int
    position_scale_deg: float
    encoder: ColumnNetSpec
    bottom_up: tuple[ColumnNetSpec, ...]  # into levels 1..L-1
    top_down: tuple[ColumnNetSpec, ...]  # into levels 0..L-2
    neighbours: tuple[tuple[np.ndarray, np.ndarray | None], ...]
    term_weights: np.ndarray  # [4, L] normalised
    tau_ms: float
    dt_ms: float
    init: str
    dynamics: Any


def _net_spec(name: str, mlp: Any, n_position: int = 0) -> ColumnNetSpec:
    """A :class:`~neurosim.columns.ColumnMLP` as float64 arrays (weights copied off the model)."""
    weights, biases = [], []
    for layer in mlp.layers:
        w = layer.weight.detach().cpu().to(dtype=torch.float64).numpy()
        weights.append(np.ascontiguousarray(w))
        if layer.bias is None:
            biases.append(np.zeros((w.shape[0], w.shape[2])))
        else:
            biases.append(layer.bias.detach().cpu().to(dtype=torch.float64).numpy().copy())
    return ColumnNetSpec(name, tuple(weights), tuple(biases), mlp.activation, n_position)


def _position_features_np(pos: np.ndarray, scale: float, encoding: str, n_freq: int) -> np.ndarray:
    """``[C, P]``, the features the position equations compute (see ``position_expr``)."""
    u = pos / scale
    feats = [u]
    if encoding == "fourier":
        for i in range(n_freq):
            feats += [np.sin(2.0**i * math.pi * u), np.cos(2.0**i * math.pi * u)]
    return np.concatenate(feats, axis=1)


def model_spec(model: Any) -> ModelSpec:
    """Export a :class:`neurosim.model.Model` to float64 numpy arrays (checks it is unshared).

    Raises:
        ValueError: ``model`` is not a Model, or is weight-shared (``shared=True`` or any
            violation found by :func:`neurosim.columns.assert_unshared`), or its position
            features do not follow its declared encoding.
    """
    from neurosim.columns import WeightSharingError, assert_unshared
    from neurosim.model import Model

    if not isinstance(model, Model):
        raise ValueError(f"model must be a neurosim.model.Model; got {type(model).__name__}")
    try:
        assert_unshared(model)
    except WeightSharingError as err:
        raise ValueError(
            f"model must have unshared per-column weights to be exported to Brian2: {err}"
        ) from None
    cfg = model.config
    pos = model.positions_deg.detach().cpu().double().numpy()
    scale = float(np.abs(pos).max()) or 1.0
    feats = _position_features_np(pos, scale, cfg.position_encoding, cfg.n_frequencies)
    buf = model.position_features.detach().cpu().double().numpy()
    if buf.shape != feats.shape or not np.allclose(buf, feats, rtol=0, atol=1e-5):
        raise ValueError(
            "model.position_features does not match the position_encoding "
            f"{cfg.position_encoding!r} that the Brian2 equations implement"
        )
    n_pos = buf.shape[1]
    tw = model.term_weights.detach().cpu().double().numpy()
    nbs = tuple(
        (
            nb.index.detach().cpu().numpy().astype(np.int64),
            None if nb.mask is None else nb.mask.detach().cpu().numpy().astype(bool),
        )
        for nb in model.neighbours
    )
    return ModelSpec(
        n_columns=model.n_columns,
        n_levels=model.n_levels,
        dim=model.dim,
        level_dims=tuple(model.level_dims),
        n_cells=model.n_cells,
        positions_deg=pos,
        cell_index=model.cell_index.detach().cpu().numpy().astype(np.int64),
        position_encoding=cfg.position_encoding,
        n_frequencies=cfg.n_frequencies,
        position_scale_deg=scale,
        encoder=_net_spec("encoder", model.encoder),
        bottom_up=tuple(
            _net_spec(f"bottom_up{lv + 1}", net) for lv, net in enumerate(model.bottom_up)
        ),
        top_down=tuple(
            _net_spec(f"top_down{lv}", net, n_pos) for lv, net in enumerate(model.top_down)
        ),
        neighbours=nbs,
        term_weights=tw / tw.sum(axis=0, keepdims=True),
        tau_ms=float(cfg.dynamics.tau_ms),
        dt_ms=float(cfg.dynamics.dt_ms),
        init=cfg.init,
        dynamics=cfg.dynamics,
    )
