"""Is the sheet collapsing? Diagnostics of the settled embeddings, per level.

A contrastive term keeps the embeddings of different images apart (:mod:`neurosim.learning`);
these functions measure whether it works: :func:`collapse_report` (variance across images,
optionally relative to the embeddings' size) against :data:`COLLAPSE_THRESHOLD`, and
:func:`level_rms` (the largest embedding size, bounded by 1 under layer norm). All take a state
``[B, C, L, D]`` and return ``[L]``, without gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from neurosim.learning import _level_mask

__all__ = ["COLLAPSE_THRESHOLD", "collapse_report", "level_rms"]


#: ``collapse_report(..., relative=True)`` below this at a level counts as collapse: the
#: embeddings of different images then differ by less than 5 % of their own size
COLLAPSE_THRESHOLD = 0.05


def level_rms(state: torch.Tensor, level_dims: Sequence[int] | None = None) -> torch.Tensor:
    """``[L]`` the largest root-mean-square embedding of each level over images and columns of
    a state ``[B, C, L, D]`` (each level over its own ``level_dims[l]`` entries); no gradient.
    With ``ModelConfig.normalize="layer"`` it is at most 1 by construction."""
    if state.ndim != 4:
        raise ValueError(f"state must be [B, C, L, D]; got {tuple(state.shape)}")
    with torch.no_grad():
        entries = _level_mask(level_dims, state)
        sq = state.square()
        if entries is None:
            ms = sq.mean(dim=-1)
        else:
            ms = (sq * entries).sum(dim=-1) / entries.sum(dim=-1)
        return ms.amax(dim=(0, 1)).sqrt()


def collapse_report(
    state: torch.Tensor, *, relative: bool = False, level_dims: Sequence[int] | None = None
) -> torch.Tensor:
    """Variance of the embeddings across images, per level: collapse shows as ~0.

    Args:
        state: ``[B, C, L, D]``.
        relative: if ``True`` divide each level's variance by its mean squared embedding (so a
            shrinking scale is not mistaken for collapse): 1 means the embeddings of different
            images are as different as the vectors are long, 0 means total collapse.
        level_dims: optional ``[L]`` sizes of the levels (``Model.level_dims``) when they
            differ: each level is averaged over its own ``level_dims[l]`` entries only.

    Returns:
        ``[L]``: for each level, the variance across the batch (unbiased=False) averaged over
        columns and embedding dims; computed without gradient.
    """
    if state.ndim != 4:
        raise ValueError(f"state must be [B, C, L, D]; got {tuple(state.shape)}")
    if state.shape[0] < 2:
        raise ValueError(f"state needs a batch of at least 2 images; got {state.shape[0]}")
    entries = _level_mask(level_dims, state)
    with torch.no_grad():
        per_entry = state.var(dim=0, unbiased=False).mean(dim=0)  # [L, D]
        power = (state**2).mean(dim=(0, 1))  # [L, D]
        if entries is None:
            var, scale = per_entry.mean(dim=-1), power.mean(dim=-1)
        else:
            count = entries.sum(dim=-1)
            var = (per_entry * entries).sum(dim=-1) / count
            scale = (power * entries).sum(dim=-1) / count
        if relative:
            var = var / scale.clamp_min(torch.finfo(state.dtype).tiny)
    return var
