"""Moving digits: the videos of the transfer experiment's video protocol.

The distillation talk's static image is "a boring video". Real retinas see objects move and the
eyes saccade, so every place of the visual field sees every object, one place after another.
Here a digit drifts across the canvas in small steps (``step_px`` per frame, at most a pixel:
sub-pixel positions are rendered by linear interpolation), or saccades (one jump after a
fixation). Fed frame by frame to :meth:`neurosim.model.Model.settle`, the sheet's persistent
state carries what it made of the digit from where it was to where it is, so a column newly
covered by a known object can learn from what the sheet still holds (the temporal
co-distillation term of :mod:`neurosim.objectives`).

Arrays: ``frames [N, F, H, W]`` in [0, 1], ``top_left_px [N, F, 2]`` (row, col; float for
sub-pixel drift), ``masks [N, F, H, W]`` the digit's ink at each frame.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from analyses.canvases import Region, _as_float, _scale_digits
from neurosim.config import check_choice, check_int

__all__ = ["VideoDataset", "moving_digits", "column_object_weights", "VIDEO_MODES"]

#: how a digit moves
VIDEO_MODES = ("drift", "saccade")


@dataclasses.dataclass(frozen=True, eq=False)
class VideoDataset:
    """Digits moving on a canvas.

    Attributes:
        frames: ``[N, F, H, W]`` float32 in [0, 1].
        labels: ``[N]`` int64 (never read by an unlabelled protocol).
        top_left_px: ``[N, F, 2]`` float64 ``(row, col)`` of the digit's top-left corner.
        masks: ``[N, F, H, W]`` bool, the digit's ink (above ``ink_threshold``) at each frame.
        digit_px: side of the digit.
    """

    frames: np.ndarray
    labels: np.ndarray
    top_left_px: np.ndarray
    masks: np.ndarray
    digit_px: int

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[1])


def _paste(patch: np.ndarray, row: float, col: float, side: int) -> np.ndarray:
    """``patch [d, d]`` on a blank ``[side, side]`` canvas with its top-left at ``(row, col)``
    (float: bilinear interpolation between the four integer placements)."""
    d = patch.shape[0]
    r0, c0 = int(np.floor(row)), int(np.floor(col))
    fr, fc = row - r0, col - c0
    out = np.zeros((side + 1, side + 1), np.float32)
    for dr, dc, w in (
        (0, 0, (1 - fr) * (1 - fc)),
        (0, 1, (1 - fr) * fc),
        (1, 0, fr * (1 - fc)),
        (1, 1, fr * fc),
    ):
        if w > 0:
            out[r0 + dr : r0 + dr + d, c0 + dc : c0 + dc + d] += w * patch
    return out[:side, :side]


def moving_digits(
    x: np.ndarray,
    y: np.ndarray,
    *,
    canvas_px: int,
    digit_px: int,
    n_frames: int,
    step_px: float = 1.0,
    mode: str = "drift",
    start_region: Region | None = None,
    saccade_px: Sequence[float] = (2.0, 4.0, 6.0, 8.0),
    n_videos: int | None = None,
    ink_threshold: float = 0.25,
    seed: int = 0,
) -> VideoDataset:
    """Videos of digits that drift rightwards (or saccade) across a square canvas.

    ``"drift"``: the digit starts at a random position of ``start_region`` and moves
    ``step_px`` to the right per frame (``(n_frames - 1) * step_px`` in all; the start is drawn
    so that the whole path stays on the canvas). ``"saccade"``: it rests at its start for the
    first half of the frames and then sits ``s`` px further right for the rest, ``s`` drawn from
    ``saccade_px`` among the jumps that keep it on the canvas.

    Args:
        x, y: source digits ``[n, h, w]`` in [0, 1] and labels ``[n]``.
        canvas_px, digit_px: sides of the canvas and of the scaled digit.
        n_frames: frames per video (>= 2).
        step_px: drift per frame, in (0, 1] px.
        mode: one of :data:`VIDEO_MODES`.
        start_region: where the start may lie (default the whole canvas).
        saccade_px: the possible jumps of a saccade (px, > 0).
        n_videos: videos (default one per source digit; else drawn at random).
        ink_threshold: a pixel belongs to the mask above this.
        seed: seed of the starts, jumps and source choice.

    Returns:
        :class:`VideoDataset`.
    """
    side = check_int("canvas_px", canvas_px, 1, 512)
    d = check_int("digit_px", digit_px, 1, side)
    f = check_int("n_frames", n_frames, 2, 1000)
    check_choice("mode", mode, VIDEO_MODES)
    step = _as_float("step_px", step_px, 0.0, 1.0)
    if step <= 0:
        raise ValueError(f"step_px must be in (0, 1]; got {step_px!r}")
    x, y = np.asarray(x), np.asarray(y)
    n = x.shape[0] if n_videos is None else check_int("n_videos", n_videos, 1, 10**6)
    rng = np.random.default_rng(check_int("seed", seed, 0))
    src = (
        np.arange(n) if n_videos is None else rng.choice(x.shape[0], size=n, replace=n > x.shape[0])
    )
    bounds = _start_bounds(start_region, side, d, f, step, mode, saccade_px)
    pos = _positions(rng, n, f, side, d, step, mode, bounds)
    frames, masks = _render_frames(_scale_digits(x[src], d), pos, side, ink_threshold)
    return VideoDataset(frames.clip(0, 1), y[src].astype(np.int64), pos, masks, d)


def _start_bounds(
    start_region: Region | None,
    side: int,
    d: int,
    f: int,
    step: float,
    mode: str,
    saccade_px: Sequence[float],
) -> tuple[int, int, int, float, np.ndarray]:
    """The start's row range, column range ``(r_lo, r_hi, c_lo, c_max)`` and the jumps."""
    region = (start_region or Region()).validated()
    r_lo, r_hi, c_lo, c_hi = region.pixels(side, side)
    jumps = np.asarray(saccade_px, dtype=float)
    if mode == "saccade" and (jumps.size == 0 or bool((jumps <= 0).any())):
        raise ValueError(f"saccade_px must list jumps > 0 px; got {list(saccade_px)}")
    # room for the whole drift, or for the smallest jump
    travel = (f - 1) * step if mode == "drift" else float(jumps.min())
    c_max = min(c_hi - d, side - d - travel)
    if r_hi - d < r_lo or c_max < c_lo:
        raise ValueError(
            f"no start in the region {tuple(region)} keeps a {d}-px digit on the {side}-px "
            f"canvas for {f} frames of {step:g} px"
        )
    return r_lo, r_hi, c_lo, c_max, jumps


def _positions(
    rng: np.random.Generator,
    n: int,
    f: int,
    side: int,
    d: int,
    step: float,
    mode: str,
    bounds: tuple[int, int, int, float, np.ndarray],
) -> np.ndarray:
    """``[n, f, 2]`` top-left (row, col) of each video's digit per frame, drawn from ``rng``."""
    r_lo, r_hi, c_lo, c_max, jumps = bounds
    rows = rng.integers(r_lo, r_hi - d + 1, n).astype(float)
    cols = (
        c_lo + rng.random(n) * (c_max - c_lo)
        if mode == "drift"
        else rng.integers(c_lo, int(np.floor(c_max)) + 1, n).astype(float)
    )
    pos = np.zeros((n, f, 2))
    pos[:, :, 0] = rows[:, None]
    if mode == "drift":
        pos[:, :, 1] = cols[:, None] + step * np.arange(f)[None]
    else:
        pos[:, :, 1] = cols[:, None]
        half = f // 2
        for i in range(n):
            pos[i, half:, 1] += rng.choice(jumps[cols[i] + jumps <= side - d])
    return pos


def _render_frames(
    patches: np.ndarray, pos: np.ndarray, side: int, ink_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """The frames ``[n, f, side, side]`` (unclipped) and their ink masks."""
    n, f = pos.shape[:2]
    frames = np.zeros((n, f, side, side), np.float32)
    masks = np.zeros((n, f, side, side), bool)
    for i in range(n):  # videos are built once per run; numpy inside
        for t in range(f):
            img = _paste(patches[i], pos[i, t, 0], pos[i, t, 1], side)
            frames[i, t] = img
            masks[i, t] = img > ink_threshold
    return frames, masks


def column_object_weights(
    cell_index: np.ndarray, cell_px: np.ndarray, masks: np.ndarray
) -> np.ndarray:
    """How much of the object each column's input holds: the fraction of its cells that lie on
    the object's mask.

    Args:
        cell_index: ``[C, k]`` the cells each column reads (``Model.cell_index``).
        cell_px: ``[n_cells, 2]`` (row, col) pixel of every cell's centre.
        masks: ``[..., H, W]`` bool object masks.

    Returns:
        ``[..., C]`` float32 in [0, 1].
    """
    masks = np.asarray(masks, dtype=bool)
    h, w = masks.shape[-2:]
    rc = np.clip(np.rint(np.asarray(cell_px)).astype(np.int64), 0, [h - 1, w - 1])
    on_cell = masks[..., rc[:, 0], rc[:, 1]]  # [..., n_cells]
    return on_cell[..., np.asarray(cell_index)].mean(axis=-1).astype(np.float32)
