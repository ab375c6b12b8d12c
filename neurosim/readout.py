"""Readouts: what each column says about the class of the image, and the image's answer.

Every column has its own linear readout of class logits from its settled levels
(:class:`ColumnClassifier`: a :class:`~neurosim.columns.ColumnLinear` ``[C, R, K]``, unshared);
the image's logits are a weighted average of its columns' logits (:func:`image_logits`: uniform
by default). The classifier may also own a per-column fill-in decoder that predicts a column's
retina input from its settled level-0 embedding (GLOM sec. 3.3), used by the fill-in term of
:mod:`neurosim.objectives`.

Stacked replicas (:mod:`neurosim.replicas`) have one readout per replica's column, and
:func:`image_logits` averages each replica's own columns: ``[B, R, K]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from neurosim.columns import ColumnLinear
from neurosim.config import check_choice, check_int
from neurosim.softmax import softmax

__all__ = [
    "ColumnClassifier",
    "image_logits",
    "confidence_weights",
    "READOUT_LEVELS",
    "SHEET_READOUT_LEVELS",
    "IMAGE_READOUTS",
]

#: what the per-column readout reads (any model: the column sheet and the CNN)
READOUT_LEVELS = ("all_levels", "top_level")
#: how the image's logits weigh the columns' (see :meth:`ColumnClassifier.image_logits`)
IMAGE_READOUTS = ("mean", "confidence")
#: what a column sheet's readout may also read: every level but the top (a clamped label level)
SHEET_READOUT_LEVELS = (*READOUT_LEVELS, "below_top")


class ColumnClassifier(nn.Module):
    """A column sheet (:class:`neurosim.model.Model`) with a per-column readout of class logits.

    Args:
        sheet: the column model (stacked or not).
        readout_levels: ``"all_levels"`` (the levels concatenated, ``R = sum(dim)``),
            ``"top_level"`` (``R = dim[-1]``) or ``"below_top"`` (every level but the top,
            ``R = sum(dim[:-1])``: the hidden levels under a clamped label level, Forward-Forward's
            softmax readout of "all the hidden activities", :mod:`neurosim.forward_forward`;
            needs ``n_levels >= 2``).
        n_classes: number of classes ``K`` (>= 2).
        fill_in: also build a per-column fill-in decoder ``decoder`` (level 0 -> the column's
            ``k_cells`` inputs).
        image_readout: how the image's logits weigh its columns: ``"mean"`` (all alike) or
            ``"confidence"`` (each column by its own confidence, ``1 - H / log K`` of its soft
            prediction: the columns whose input holds the object say more than those that see
            nothing; no mask needed).
        generator: initialisation of the readout (and decoder).

    Modules: ``sheet``, ``readout`` (``ColumnLinear`` ``[C, R, K]``; one per replica when the
    sheet is shared), ``decoder`` (``ColumnLinear`` ``[C, dim[0], k_cells]`` or None).
    """

    def __init__(
        self,
        sheet: nn.Module,
        *,
        readout_levels: str = "all_levels",
        n_classes: int = 10,
        fill_in: bool = False,
        image_readout: str = "mean",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_choice("readout_levels", readout_levels, SHEET_READOUT_LEVELS)
        check_choice("image_readout", image_readout, IMAGE_READOUTS)
        self.image_readout = image_readout
        check_int("n_classes", n_classes, 2)
        self.sheet = sheet
        self.readout_levels = readout_levels
        self.n_classes = n_classes
        cfg = sheet.config
        dims = cfg.level_dims
        if readout_levels == "below_top" and len(dims) < 2:
            raise ValueError(
                f'readout_levels="below_top" needs a sheet of n_levels >= 2; got {len(dims)}'
            )
        r = {"all_levels": sum(dims), "top_level": dims[-1], "below_top": sum(dims[:-1])}[
            readout_levels
        ]
        groups = dict(shared=cfg.shared, n_groups=sheet.n_replicas if cfg.shared else 1)
        self.readout = ColumnLinear(sheet.n_columns, r, n_classes, generator=generator, **groups)
        self.decoder = (
            ColumnLinear(sheet.n_columns, dims[0], cfg.k_cells, generator=generator, **groups)
            if fill_in
            else None
        )
        self.to(sheet.device)

    @property
    def shared(self) -> bool:
        return bool(self.sheet.config.shared)

    @property
    def n_replicas(self) -> int:
        return int(self.sheet.n_replicas)

    def features(self, state: torch.Tensor) -> torch.Tensor:
        """Readout input ``[B, C, R]`` from a state ``[B, C, L, D]`` (padding of smaller levels
        dropped: ``R = sum(dim)``, ``dim[-1]`` or ``sum(dim[:-1])``)."""
        sheet = self.sheet
        if self.readout_levels == "top_level":
            return sheet.level(state, sheet.n_levels - 1)
        if self.readout_levels == "below_top":
            return torch.cat([sheet.level(state, lv) for lv in range(sheet.n_levels - 1)], dim=-1)
        if sheet.ragged:
            return torch.cat([sheet.level(state, lv) for lv in range(sheet.n_levels)], dim=-1)
        return state.flatten(2)

    def logits(self, state: torch.Tensor) -> torch.Tensor:
        """Per-column logits ``[B, C, K]`` of a state ``[B, C, L, D]``."""
        return self.readout(self.features(state))

    def image_logits(self, column_logits: torch.Tensor) -> torch.Tensor:
        """The image's logits ``[B, R, K]`` from the columns' ``[B, R*C, K]``, weighted as
        ``image_readout`` says (confidence weights are detached: they select, not train)."""
        weights = None
        if self.image_readout == "confidence":
            weights = confidence_weights(column_logits.detach())
        return image_logits(column_logits, self.n_replicas, weights)

    def column_logits(self, responses: torch.Tensor, **settle: Any):
        """Settle on ``responses`` (any input of ``Model.settle``; ``settle`` holds its keyword
        arguments); returns ``(logits [B, C, K], Settled)``."""
        settled = self.sheet.settle(responses, **settle)
        return self.logits(settled.state), settled

    def forward(self, responses: torch.Tensor) -> torch.Tensor:
        """Per-column logits ``[B, C, K]`` (settled end to end)."""
        return self.column_logits(responses)[0]

    @classmethod
    def stack(cls, classifiers: Sequence[ColumnClassifier]) -> ColumnClassifier:
        """Classifiers of one shape side by side (replicas): their sheets stacked by
        :meth:`neurosim.model.Model.stack`, their readouts by :meth:`ColumnLinear.stack`."""
        first = classifiers[0]
        for i, c in enumerate(classifiers):
            same = (c.readout_levels, c.n_classes, c.decoder is None, c.image_readout)
            want = (first.readout_levels, first.n_classes, first.decoder is None)
            if same != (*want, first.image_readout):
                raise ValueError(f"classifiers[{i}] must have the readout of classifiers[0]")
        out = cls.__new__(cls)
        nn.Module.__init__(out)
        out.sheet = type(first.sheet).stack([c.sheet for c in classifiers])
        out.readout_levels, out.n_classes = first.readout_levels, first.n_classes
        out.image_readout = first.image_readout
        out.readout = ColumnLinear.stack([c.readout for c in classifiers])
        out.decoder = (
            None if first.decoder is None else ColumnLinear.stack([c.decoder for c in classifiers])
        )
        return out.to(first.sheet.device)

    def replica(self, r: int) -> ColumnClassifier:
        """Replica ``r`` of a stacked classifier as a classifier of its own (copies)."""
        n = self.n_replicas
        out = ColumnClassifier.__new__(ColumnClassifier)
        nn.Module.__init__(out)
        out.sheet = self.sheet.replica(r)
        out.readout_levels, out.n_classes = self.readout_levels, self.n_classes
        out.image_readout = self.image_readout
        out.readout = self.readout.replica(r, n)
        out.decoder = None if self.decoder is None else self.decoder.replica(r, n)
        return out.to(self.sheet.device)


def image_logits(
    column_logits: torch.Tensor, n_replicas: int = 1, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """The image's logits of every replica: a weighted mean of its columns' logits.

    Args:
        column_logits: ``[B, R * C, K]``.
        n_replicas: ``R``.
        weights: optional ``[B, R * C]`` non-negative weights of the columns (normalised here
            over each replica's columns; a replica whose weights are all zero falls back to the
            plain mean); default: every column alike.

    Returns:
        ``[B, R, K]``.
    """
    b, c_total, k = column_logits.shape
    check_int("n_replicas", n_replicas, 1, c_total)
    if c_total % n_replicas:
        raise ValueError(f"n_replicas={n_replicas} must divide the {c_total} columns")
    z = column_logits.view(b, n_replicas, -1, k)
    if weights is None:
        return z.mean(dim=2)
    if tuple(weights.shape) != (b, c_total):
        raise ValueError(f"weights must have shape [{b}, {c_total}]; got {tuple(weights.shape)}")
    w = weights.to(z.dtype).view(b, n_replicas, -1)
    total = w.sum(dim=2, keepdim=True)
    w = torch.where(total > 0, w / total.clamp_min(torch.finfo(z.dtype).tiny), 1.0 / w.shape[2])
    return torch.einsum("brc,brck->brk", w, z)


def confidence_weights(column_logits: torch.Tensor) -> torch.Tensor:
    """``[B, C]`` confidence of every column's soft prediction: ``1 - H(softmax(z)) / log K``
    (1 for a one-hot prediction, 0 for a uniform one) of ``column_logits [B, C, K]``."""
    k = column_logits.shape[-1]
    p = softmax(column_logits)
    entropy = -torch.xlogy(p, p).sum(dim=-1)
    return (1.0 - entropy / math.log(k)).clamp(0.0, 1.0)
