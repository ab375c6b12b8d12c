"""The rate equations: the drift, the consensus it relaxes to, and named integrators.

Every level of every column relaxes towards a consensus (the distillation talk, 00:29:00-00:34:12;
GLOM, Hinton 2021, arXiv:2102.12627, sec. 2):

    tau dx/dt = drift(x) = -x + consensus(x),
    consensus = (w_bu * bottom_up + w_td * top_down + w_lat * lateral + w_prev * x) / sum(w),

where bottom_up is the column's own prediction from the level below, top_down its own prediction
from the level above (given its position), lateral the attention-weighted average of the same
level in neighbouring columns (:mod:`neurosim.attention`) and x the previous state. The top level
has no top-down term; its weights are renormalised over the remaining terms (as are those of a
column whose input is hidden, without bottom-up at level 0): :func:`consensus_weights`.

The equation (:func:`drift`) is kept apart from the integrator (:func:`integrate` with a name
from :data:`INTEGRATORS`), so the same drift can be written as a Brian2 equation string. Within
one step the other terms (bottom-up, top-down, lateral) are held at their values from the start
of the step; the consensus then depends on x only through its previous-state term
``a_prev * x``, so the drift is linear in x, ``(1 - a_prev) (m - x) / tau`` with ``m`` the
weighted mean of the held terms, and both integrators move x towards the consensus by a
fraction ``f`` of the way, ``x + f (consensus - x)``:

* ``"euler"``: ``x + dt * drift(x)``, ``f = dt / tau``. With ``dt = tau`` this is exactly GLOM's
  discrete update ``x <- consensus`` (``DynamicsConfig`` allows ``dt_ms <= tau_ms``).
* ``"exponential"`` (exponential Euler): the exact solution over the step of the linear part
  with the held terms, ``m + (x - m) exp(-(1 - a_prev) dt / tau)``, i.e.
  ``f = (1 - exp(-(1 - a_prev) dt / tau)) / (1 - a_prev)`` (``1 - exp(-dt / tau)`` without a
  previous-state term); it never overshoots ``m``, whatever dt. Brian2's ``exact`` method
  integrates the same equation (:mod:`neurosim.brian`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

import torch

from neurosim.config import Config, check_choice, check_positive_int, check_range

__all__ = [
    "DynamicsConfig",
    "TERMS",
    "INTEGRATORS",
    "drift",
    "euler",
    "step_fraction",
    "integrate",
    "consensus",
    "consensus_weights",
    "weighted_consensus",
]

#: the consensus terms, in the order of every weight array ``[4, ...]``
TERMS = ("bottom_up", "top_down", "lateral", "previous")
#: the named integrators of :func:`integrate`
INTEGRATORS = ("euler", "exponential")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DynamicsConfig(Config):
    """Rate dynamics of the column states.

    Attributes:
        tau_ms: time constant of the relaxation (> 0).
        dt_ms: integration step, in (0, tau_ms]; ``dt_ms = tau_ms`` with ``"euler"`` is GLOM's
            discrete update ``x <- consensus``.
        integrator: ``"euler"`` or ``"exponential"`` (exponential Euler), see the module doc.
        n_steps: number of integration steps of one settling (>= 1).
        w_bottom_up, w_top_down, w_lateral, w_previous: weights of the four consensus terms
            (>= 0, not all zero); normalised per level to sum to one.
        beta: inverse temperature of lateral attention at the first step (>= 0).
        beta_schedule: ``"constant"`` (beta throughout), ``"linear"`` or ``"geometric"``
            (from beta at step 0 to beta_end at the last step; geometric needs both > 0).
        beta_end: beta at the last step for the non-constant schedules (>= 0).
    """

    tau_ms: float = 20.0
    dt_ms: float = 5.0
    integrator: Literal["euler", "exponential"] = "euler"
    n_steps: int = 12
    w_bottom_up: float = 1.0
    w_top_down: float = 1.0
    w_lateral: float = 1.0
    w_previous: float = 1.0
    beta: float = 1.0
    beta_schedule: Literal["constant", "linear", "geometric"] = "constant"
    beta_end: float = 1.0

    def __post_init__(self) -> None:
        check_range("tau_ms", self.tau_ms, 0, None, lo_inclusive=False)
        check_range("dt_ms", self.dt_ms, 0, None, lo_inclusive=False)
        if self.dt_ms > self.tau_ms:
            raise ValueError(
                f"dt_ms must be in (0, tau_ms={self.tau_ms:g}] (dt_ms <= tau_ms); "
                f"got {self.dt_ms!r}"
            )
        check_choice("integrator", self.integrator, INTEGRATORS)
        check_positive_int("n_steps", self.n_steps, 100_000)
        for name in ("w_bottom_up", "w_top_down", "w_lateral", "w_previous"):
            check_range(name, getattr(self, name), 0, None)
            if math.isinf(getattr(self, name)):
                raise ValueError(f"{name} must be in [0, inf); got inf")
        if self.term_weights_sum() <= 0:
            raise ValueError(
                "w_bottom_up, w_top_down, w_lateral, w_previous must not all be 0 (sum > 0)"
            )
        check_range("beta", self.beta, 0, 1e30)
        check_choice("beta_schedule", self.beta_schedule, ("constant", "linear", "geometric"))
        check_range("beta_end", self.beta_end, 0, 1e30)
        if self.beta_schedule == "geometric" and (self.beta <= 0 or self.beta_end <= 0):
            raise ValueError(
                f"beta and beta_end must be in (0, 1e30] for beta_schedule='geometric'; "
                f"got beta={self.beta!r}, beta_end={self.beta_end!r}"
            )

    def term_weights_sum(self) -> float:
        return self.w_bottom_up + self.w_top_down + self.w_lateral + self.w_previous

    def term_weights(self) -> tuple[float, float, float, float]:
        """Raw weights in the order of :data:`TERMS`."""
        return (self.w_bottom_up, self.w_top_down, self.w_lateral, self.w_previous)

    @property
    def fraction_per_step(self) -> float:
        """How far one step moves the state towards the consensus without a previous-state
        term (:func:`step_fraction`)."""
        return step_fraction(self.integrator, self.tau_ms, self.dt_ms)

    def beta_at(self, step: int, n_steps: int | None = None) -> float:
        """Inverse temperature at Euler step ``step`` (0-based) of ``n_steps``."""
        n = self.n_steps if n_steps is None else n_steps
        if self.beta_schedule == "constant" or n <= 1:
            return self.beta
        frac = min(max(step / (n - 1), 0.0), 1.0)
        if self.beta_schedule == "linear":
            return self.beta + frac * (self.beta_end - self.beta)
        return self.beta * (self.beta_end / self.beta) ** frac


def drift(state: torch.Tensor, consensus: torch.Tensor, tau_ms: float) -> torch.Tensor:
    """Right-hand side of ``tau dx/dt = -x + consensus``: ``(consensus - state) / tau_ms``.

    Any shapes that broadcast; units 1/ms.
    """
    return (consensus - state) / tau_ms


def euler(state: torch.Tensor, rate: torch.Tensor, dt_ms: float) -> torch.Tensor:
    """One forward-Euler step: ``state + dt_ms * rate``."""
    return state + dt_ms * rate


def step_fraction(
    integrator: str,
    tau_ms: float,
    dt_ms: float,
    previous_weight: float | torch.Tensor = 0.0,
) -> float | torch.Tensor:
    """How far one step moves the state towards the consensus (see the module doc):
    ``dt / tau`` for ``"euler"``; ``(1 - exp(-(1 - a) dt / tau)) / (1 - a)`` for
    ``"exponential"``, ``a = previous_weight`` the normalised weight of the previous-state term
    (in [0, 1]; a float, or a tensor broadcasting against the state; ``a = 1`` gives the limit
    ``dt / tau``)."""
    check_choice("integrator", integrator, INTEGRATORS)
    if integrator == "euler":
        return dt_ms / tau_ms
    if isinstance(previous_weight, torch.Tensor):
        rate = (1.0 - previous_weight).clamp_min(1e-12)
        return -torch.expm1(-rate * (dt_ms / tau_ms)) / rate
    rate = 1.0 - float(previous_weight)
    if rate <= 1e-12:
        return dt_ms / tau_ms
    return -math.expm1(-rate * dt_ms / tau_ms) / rate


def integrate(
    state: torch.Tensor,
    consensus: torch.Tensor,
    tau_ms: float,
    dt_ms: float,
    integrator: str = "euler",
    previous_weight: float | torch.Tensor = 0.0,
) -> torch.Tensor:
    """One step of ``tau dx/dt = drift(x) = -x + consensus`` with the named integrator.

    ``"euler"`` is ``euler(state, drift(state, consensus, tau_ms), dt_ms)``, ``"exponential"``
    the exact solution over the step of the linear part (the leak and the previous-state term of
    weight ``previous_weight``) with the other terms held; both are written as one fused
    ``torch.lerp(state, consensus, f)`` with ``f = step_fraction(...)`` (equal to the two-pass
    form up to float rounding): one read of each input and one write, forward and backward —
    the state is the largest tensor of a settling step.

    Args:
        state, consensus: tensors of one shape (e.g. ``[B, C, D]`` for one level).
        previous_weight: the consensus weight of ``state`` (normalised), for ``"exponential"``.

    Returns:
        the new state, same shape.
    """
    f = step_fraction(integrator, tau_ms, dt_ms, previous_weight)
    if isinstance(f, torch.Tensor):
        return state + f * (consensus - state)
    return torch.lerp(state, consensus, f)


def consensus_weights(
    term_weights: torch.Tensor, input_mask: torch.Tensor | None = None
) -> list[list[float | torch.Tensor]]:
    """Normalised consensus weights per level, in the order of :data:`TERMS`.

    Args:
        term_weights: ``[4, L]`` raw non-negative weights (``Model.term_weights``; the top
            level's top-down weight is 0). Read to the host once here (call it once per settling,
            not per step: on a GPU every read is a device sync).
        input_mask: optional ``BoolTensor [B, C]``, False = the column's input is hidden: its
            level-0 bottom-up weight is 0 and its other level-0 weights are renormalised.

    Returns:
        ``weights[l]`` = four weights summing to one; floats, except at level 0 under an
        ``input_mask`` where they are ``[B, C, 1]`` tensors.

    Raises:
        ValueError: a level (or, with a mask, a hidden column's level 0) has no positive weight.
    """
    raw = term_weights.detach().cpu().double()
    if raw.ndim != 2 or raw.shape[0] != len(TERMS):
        raise ValueError(f"term_weights must be [4, L]; got {tuple(term_weights.shape)}")
    if bool((raw < 0).any()):
        raise ValueError("consensus weights must be >= 0")
    total = raw.sum(dim=0)
    if bool((total <= 0).any()):
        raise ValueError("consensus weights must have a positive sum over the terms at each level")
    weights: list[list[float | torch.Tensor]] = [list(row) for row in (raw / total).t().tolist()]
    if input_mask is not None:
        w0 = [float(v) for v in raw[:, 0]]
        rest = w0[1] + w0[2] + w0[3]
        if rest <= 0 and not bool(input_mask.all()):
            raise ValueError(
                "consensus weights must have a positive sum over the terms at each level: "
                "with an input_mask, w_top_down + w_lateral + w_previous must be > 0"
            )
        visible = input_mask.to(term_weights.dtype)[..., None]  # [B, C, 1]
        total0 = visible * w0[0] + rest
        weights[0] = [visible * w0[0] / total0] + [w / total0 for w in w0[1:]]
    return weights


def weighted_consensus(
    terms: Sequence[torch.Tensor | None], weights: Sequence[float | torch.Tensor]
) -> torch.Tensor:
    """The consensus of one level: ``sum_j weights[j] * terms[j]`` (weights already normalised).

    The one implementation of the consensus (:func:`consensus` and the model's step use it).

    Args:
        terms: the four terms in the order of :data:`TERMS`, each ``[..., D]`` or None (absent,
            e.g. no top-down at the top level).
        weights: four floats, or tensors broadcasting against the terms.

    Returns:
        ``[..., D]``: one product, then in-place fused multiply-adds into it (their backward
        needs only the inputs); terms that are absent or have a float weight of 0 are skipped.
    """
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


def consensus(
    terms: dict[str, torch.Tensor],
    weights: torch.Tensor,
) -> torch.Tensor:
    """Weighted average of the consensus terms of every level.

    Args:
        terms: ``{"bottom_up", "top_down", "lateral", "previous"}`` -> ``[B, C, L, D]`` each.
        weights: ``[4, L]`` or ``[B, C, 4, L]`` (broadcastable to ``[B, C, 4, L]``), non-negative,
            in the order of :data:`TERMS`; normalised here to sum to one over the four terms.

    Returns:
        ``[B, C, L, D]``, level by level :func:`weighted_consensus`.
    """
    total = weights.sum(dim=-2, keepdim=True)
    if bool((total <= 0).any()):
        raise ValueError("consensus weights must have a positive sum over the terms at each level")
    w = (weights / total).unsqueeze(-1)  # [..., 4, L, 1]
    n_levels = w.shape[-2]
    levels = [
        weighted_consensus(
            [terms[name][..., lv, :] for name in TERMS], [w[..., j, lv, :] for j in range(4)]
        )
        for lv in range(n_levels)
    ]
    return torch.stack(levels, dim=-2)
