"""RGB to gray, the retina's first step for colour images (``Retina(..., color=True)``)."""

from __future__ import annotations

__all__ = ["to_gray", "LUMA_WEIGHTS"]

#: ITU-R BT.601 luma weights used to turn RGB into gray, explicitly (``color=True``)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def to_gray(images):
    """RGB -> gray with the BT.601 luma weights :data:`LUMA_WEIGHTS`.

    Args:
        images: ``[..., 3]`` RGB, numpy or torch.

    Returns:
        ``[...]`` gray, of the input's kind.
    """
    if images.shape[-1] != 3:
        raise ValueError(
            f"images must have a last (colour) dimension of size 3 to convert to gray; "
            f"got shape {tuple(images.shape)}"
        )
    r, g, b = LUMA_WEIGHTS
    return r * images[..., 0] + g * images[..., 1] + b * images[..., 2]
