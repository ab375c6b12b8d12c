"""What is read off a trained torch model: its weights, geometry and dynamics as float64 arrays."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from neurosim.brian.equations import evaluate_position_equations

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
    """A :class:`neurosim.model.Model` as the float64 numpy arrays the Brian2 build reads.

    Geometry: ``positions_deg [C, 2]`` (deg), ``cell_index [C, k_cells]`` (the cells each
    column reads), ``neighbours`` per level ``(index [C, K], mask [C, K] or None)``; the
    position encoding (``position_encoding``, ``n_frequencies``, ``position_scale_deg``: the
    features are functions of ``pos / scale``); the nets as :class:`ColumnNetSpec`; the
    dynamics (``term_weights [4, L]`` normalised per level: bottom-up, top-down, lateral,
    previous; ``tau_ms``, ``dt_ms``; ``init``; the ``DynamicsConfig`` for the beta schedule).
    """

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


def _position_scale_deg(model: Any, pos: np.ndarray) -> float:
    """The scale of the position equations, ``u = pos / scale``, checked against the model.

    The scale is the model's (:func:`neurosim.model.position_features`: ``max |pos|``, 1 when
    all positions are 0); the Brian2 equations' features are compared with that function's
    (float64, to 1e-9) and with the model's float32 buffer (to 1e-5), so a change of the
    model's encoding cannot silently desynchronise the two engines.
    """
    from neurosim.model import position_features

    cfg = model.config
    scale = float(np.abs(pos).max()) or 1.0
    brian = evaluate_position_equations(pos, scale, cfg.position_encoding, cfg.n_frequencies)
    ref = position_features(pos, cfg)
    buf = model.position_features.detach().cpu().double().numpy()
    for what, other, tol in (("position_features(pos, config)", ref, 1e-9), ("buffer", buf, 1e-5)):
        if other.shape != brian.shape or not np.allclose(other, brian, rtol=0, atol=tol):
            raise ValueError(
                f"the model's position features ({what}) do not match the position_encoding "
                f"{cfg.position_encoding!r} that the Brian2 equations implement"
            )
    return scale


def model_spec(model: Any) -> ModelSpec:
    """Export a :class:`neurosim.model.Model` to float64 numpy arrays (checks it is unshared).

    Raises:
        ValueError: ``model`` is not a Model, or is weight-shared (``shared=True`` or any
            violation found by :func:`neurosim.columns.assert_unshared`), or its position
            features do not follow its declared encoding, or it is stacked (replicas: export
            ``model.replica(r)``), or its nets are layer-normalised (``normalize="layer"``, not
            written as Brian2 equations yet).
    """
    from neurosim.columns import WeightSharingError, assert_unshared
    from neurosim.model import Model

    if not isinstance(model, Model):
        raise ValueError(f"model must be a neurosim.model.Model; got {type(model).__name__}")
    if model.n_replicas != 1:
        raise ValueError(
            f"model must be one model, not {model.n_replicas} stacked replicas: export "
            "model.replica(r)"
        )
    if model.config.normalize != "none":
        raise ValueError(
            f"model.config.normalize must be 'none' for the Brian2 backend (got "
            f"{model.config.normalize!r}): layer-normalised nets are not written as Brian2 "
            "equations"
        )
    try:
        assert_unshared(model)
    except WeightSharingError as err:
        raise ValueError(
            f"model must have unshared per-column weights to be exported to Brian2: {err}"
        ) from None
    cfg = model.config
    pos = model.positions_deg.detach().cpu().double().numpy()
    scale = _position_scale_deg(model, pos)
    n_pos = model.position_features.shape[1]
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
