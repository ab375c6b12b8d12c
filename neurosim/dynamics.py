"""The rate equations: consensus, drift and Euler integration.

Every level of every column relaxes towards a consensus (seed 001, 00:29:00-00:34:12; GLOM,
Hinton 2021, arXiv:2102.12627, sec. 2):

    tau dx/dt = -x + consensus(x),
    consensus = (w_bu * bottom_up + w_td * top_down + w_lat * lateral + w_prev * x) / sum(w),

where bottom_up is the column's own prediction from the level below, top_down its own prediction
from the level above (given its position), lateral the attention-weighted average of the same
level in neighbouring columns (:mod:`neurosim.attention`) and x the previous state. The top level
has no top-down term; its weights are renormalised over the remaining terms (as are those of a
column whose input is hidden, without bottom-up at level 0).

The equation (:func:`drift`) is kept apart from the integrator (:func:`euler`) so the same drift
can be written as a Brian2 equation string. With dt = tau the Euler step is exactly GLOM's
discrete update x <- consensus; ``dt_ms < tau_ms`` is required for a smooth relaxation.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch

from neurosim.config import Config, check_choice, check_positive_int, check_range

__all__ = ["DynamicsConfig", "drift", "euler", "relax", "consensus", "TERMS"]

TERMS = ("bottom_up", "top_down", "lateral", "previous")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DynamicsConfig(Config):
    """Rate dynamics of the column states.

    Attributes:
        tau_ms: time constant of the relaxation (> 0).
        dt_ms: Euler step, in (0, tau_ms).
        n_steps: number of Euler steps of one settling (>= 1).
        w_bottom_up, w_top_down, w_lateral, w_previous: weights of the four consensus terms
            (>= 0, not all zero); normalised per level to sum to one.
        beta: inverse temperature of lateral attention at the first step (>= 0).
        beta_schedule: ``"constant"`` (beta throughout), ``"linear"`` or ``"geometric"``
            (from beta at step 0 to beta_end at the last step; geometric needs both > 0).
        beta_end: beta at the last step for the non-constant schedules (>= 0).
    """

    tau_ms: float = 20.0
    dt_ms: float = 5.0
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
        if self.dt_ms >= self.tau_ms:
            raise ValueError(
                f"dt_ms must be in (0, tau_ms={self.tau_ms:g}) (dt_ms < tau_ms); got {self.dt_ms!r}"
            )
        check_positive_int("n_steps", self.n_steps)
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


def relax(
    state: torch.Tensor, consensus: torch.Tensor, tau_ms: float, dt_ms: float
) -> torch.Tensor:
    """One Euler step of ``tau dx/dt = -x + consensus``, fused into a single pass.

    ``euler(state, drift(state, consensus, tau_ms), dt_ms)`` written as
    ``torch.lerp(state, consensus, dt_ms / tau_ms)`` (equal up to float rounding): one read of
    each input and one write, forward and backward, instead of four elementwise passes — the
    state is the largest tensor of a step, so this is what a settling step's cost is made of.
    """
    return torch.lerp(state, consensus, dt_ms / tau_ms)


def consensus(
    terms: dict[str, torch.Tensor],
    weights: torch.Tensor,
) -> torch.Tensor:
    """Weighted average of the consensus terms.

    Args:
        terms: ``{"bottom_up", "top_down", "lateral", "previous"}`` -> ``[B, C, L, D]`` each.
        weights: ``[4, L]`` or ``[B, C, 4, L]`` (broadcastable to ``[B, C, 4, L]``), non-negative,
            in the order of :data:`TERMS`; normalised here to sum to one over the four terms.

    Returns:
        ``[B, C, L, D]``.
    """
    total = weights.sum(dim=-2, keepdim=True)
    if bool((total <= 0).any()):
        raise ValueError("consensus weights must have a positive sum over the terms at each level")
    w = (weights / total).unsqueeze(-1)  # [..., 4, L, 1]
    # one fresh product, then fused multiply-adds into it (its backward needs only the inputs)
    out = terms[TERMS[0]] * w[..., 0, :, :]
    for j, name in enumerate(TERMS[1:], start=1):
        out = out.addcmul_(terms[name], w[..., j, :, :])
    return out
