"""What a settling run returns: the terms of one step and the result of a whole run.

:meth:`neurosim.model.Model.step` returns a :class:`StepTerms`; :meth:`Model.settle` a
:class:`Settled` holding the final state, what its record spec kept and the last step's terms and
lateral attention weights (which the neighbour co-distillation term reads instead of running the
attention again).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["StepTerms", "Settled"]


class StepTerms:
    """The terms of one step, each ``[B, C, L, D]`` (stacked on first access).

    ``bottom_up[:, :, 0]`` is the level-0 encoder's reading of the retina; ``top_down[:, :, -1]``
    is zero (the top level has no level above: see ``Model.has_top_down``). In local mode
    (``detach_inputs=True``) ``lateral`` carries no gradient and ``bottom_up``/``top_down`` depend
    only on the column's own parameters. Levels smaller than ``D`` are zero-padded.

    The step computes every term level by level; a term is stacked into one tensor only when it
    is read (a settling run that keeps only its state never pays for the copies).

    Attributes: ``bottom_up``, ``top_down``, ``lateral``, ``consensus`` (``[B, C, L, D]``),
    ``attention`` (per level the lateral attention weights ``[B, C, k_l]`` of this step, rows
    summing to one over each column's neighbours ``Model.neighbours[l].index``), ``beta`` (the
    inverse temperature of this step's attention).
    """

    def __init__(
        self,
        stack: Any,
        levels: dict[str, list[torch.Tensor | None]],
        attention: list[torch.Tensor],
        beta: float,
    ) -> None:
        self._stack = stack
        self._levels = levels
        self._stacked: dict[str, torch.Tensor] = {}
        self.attention = attention
        self.beta = beta

    def level(self, name: str, lv: int) -> torch.Tensor | None:
        """Term ``name`` of level ``lv`` without padding, ``[B, C, dim[lv]]`` (None: absent)."""
        return self._levels[name][lv]

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


class Settled:
    """Result of :meth:`Model.settle`: the final state, what the record spec kept, the last step.

    Attributes:
        state: final state ``[B, C, L, D]``.
        trajectory: the recorded states ``[T_rec + 1, B, C, L, D]`` (the initial state first,
            then the state after each recorded step) when ``"state"`` was recorded, else None.
        bottom_up, top_down, lateral, consensus: the terms of the recorded steps, time first,
            ``[T_rec, B, C, L, D]`` for a recorded term, else ``[1, B, C, L, D]`` (the last
            step only). ``top_down[..., -1, :]`` is zero (no level above the top). Stacked on
            first access.
        last: the :class:`StepTerms` of the last step (per-level access without copies).
        attention: the last step's lateral attention weights, one ``[B, C, k_l]`` per level.
        recorded_steps: the 1-based steps whose terms and states were recorded.
        betas: the inverse temperature used at each step.
        input_mask: the ``input_mask`` of the run (``[B, C]``, False = input hidden) or None.
    """

    def __init__(
        self,
        state: torch.Tensor,
        states: list[torch.Tensor] | None,
        steps: dict[str, list[StepTerms]],
        last: StepTerms,
        recorded_steps: tuple[int, ...],
        betas: tuple[float, ...],
        input_mask: torch.Tensor | None = None,
    ) -> None:
        self.state = state
        self.trajectory = None if states is None else torch.stack(states, dim=0)
        self._steps = steps
        self._cache: dict[str, torch.Tensor] = {}
        self.last = last
        self.attention = last.attention
        self.recorded_steps = recorded_steps
        self.betas = betas
        self.input_mask = input_mask

    def _term(self, name: str) -> torch.Tensor:
        if name not in self._cache:
            kept = self._steps.get(name) or [self.last]
            self._cache[name] = torch.stack([getattr(k, name) for k in kept], dim=0)
        return self._cache[name]

    @property
    def bottom_up(self) -> torch.Tensor:
        return self._term("bottom_up")

    @property
    def top_down(self) -> torch.Tensor:
        return self._term("top_down")

    @property
    def lateral(self) -> torch.Tensor:
        return self._term("lateral")

    @property
    def consensus(self) -> torch.Tensor:
        return self._term("consensus")
