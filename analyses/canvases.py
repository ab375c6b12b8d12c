"""Digits on a canvas: placement regions, canvases, location-restricted splits, fixed offsets.

Each digit is scaled up (order-1 spline, ``scipy.ndimage.zoom``) to ``digit_px`` x ``digit_px``
and pasted at a random position of a larger canvas, drawn from a seeded generator inside a
placement :class:`Region`. Each digit keeps its own pixel mask (its scaled ink above
``ink_threshold``); with two digits per canvas the digits' boxes never overlap.
Location-restricted splits put training digits in one region (e.g. the left part of the canvas)
and test digits in another, with a configurable overlap; :func:`offset_canvases` puts test digits
at fixed horizontal offsets (the distance a model's knowledge must travel).

Coordinates: arrays are indexed ``[row, col]``; row 0 is the top of the image. Positions are
``(row, col)`` in pixels in array-index coordinates (pixel ``[r, c]`` has its centre at
``(r, c)``), so a digit pasted with top-left pixel ``(r0, c0)`` has its centre at
``(r0 + (digit_px - 1) / 2, c0 + (digit_px - 1) / 2)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from neurosim.config import check_int


def _as_float(name: str, value: object, lo: float, hi: float, *, open_: bool = False) -> float:
    """``value`` as a float in [lo, hi] (or (lo, hi) when ``open_``); ``ValueError`` naming it."""
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be a number; got {value!r}")
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number; got {value!r}") from None
    ok = (lo < out < hi) if open_ else (lo <= out <= hi)
    if not ok or math.isnan(out):
        rng = f"({lo:g}, {hi:g})" if open_ else f"[{lo:g}, {hi:g}]"
        raise ValueError(f"{name} must be in {rng}; got {value!r}")
    return out


__all__ = [
    "Region",
    "REGION_NAMES",
    "location_regions",
    "CanvasDataset",
    "CanvasSplit",
    "make_canvas_dataset",
    "canvas_split",
    "offset_canvases",
]


# --------------------------------------------------------------------------------------------
# placement regions


class Region(NamedTuple):
    """A placement region as fractions of the canvas: digits lie wholly inside it.

    ``x0 <= x1`` are fractions of the canvas width (0 = left edge), ``y0 <= y1`` fractions of
    its height (0 = top edge). In pixels the region is columns ``[round(x0 W), round(x1 W))``
    and rows ``[round(y0 H), round(y1 H))``.
    """

    x0: float = 0.0
    x1: float = 1.0
    y0: float = 0.0
    y1: float = 1.0

    @classmethod
    def named(cls, name: str, overlap: float = 0.0) -> Region:
        """A named region; ``overlap`` is the fraction of the canvas two opposite regions share.

        ``"left"`` = x in [0, (1 + overlap) / 2], ``"right"`` = x in [(1 - overlap) / 2, 1],
        ``"top"`` / ``"bottom"`` the same along y, ``"full"`` the whole canvas. So ``left`` and
        ``right`` share a strip of ``overlap`` x canvas width: 0 = disjoint halves (touching at
        the middle), 1 = both the whole canvas.
        """
        if name not in REGION_NAMES:
            raise ValueError(f"region must be one of {list(REGION_NAMES)}; got {name!r}")
        o = _as_float("overlap", overlap, 0.0, 1.0)
        lo, hi = (1.0 - o) / 2.0, (1.0 + o) / 2.0
        return {
            "full": cls(),
            "left": cls(0.0, hi, 0.0, 1.0),
            "right": cls(lo, 1.0, 0.0, 1.0),
            "top": cls(0.0, 1.0, 0.0, hi),
            "bottom": cls(0.0, 1.0, lo, 1.0),
        }[name]

    def validated(self) -> Region:
        """This region with its fractions checked (each in [0, 1], x0 < x1, y0 < y1)."""
        vals = [_as_float(f"region.{k}", getattr(self, k), 0.0, 1.0) for k in self._fields]
        if not (vals[0] < vals[1] and vals[2] < vals[3]):
            raise ValueError(f"region must have x0 < x1 and y0 < y1; got {self}")
        return Region(*vals)

    def pixels(self, height: int, width: int) -> tuple[int, int, int, int]:
        """``(row_lo, row_hi, col_lo, col_hi)``: the half-open pixel box of the region."""

        def rnd(v: float) -> int:
            return int(np.floor(v + 0.5 + 1e-9))

        return (
            rnd(self.y0 * height),
            rnd(self.y1 * height),
            rnd(self.x0 * width),
            rnd(self.x1 * width),
        )


REGION_NAMES: tuple[str, ...] = ("full", "left", "right", "top", "bottom")


def location_regions(
    train_region: str = "left", test_region: str = "right", overlap: float = 0.0
) -> tuple[Region, Region]:
    """The (train, test) regions of a location-restricted split (see :meth:`Region.named`)."""
    for name, value in (("train_region", train_region), ("test_region", test_region)):
        if value not in REGION_NAMES:
            raise ValueError(f"{name} must be one of {list(REGION_NAMES)}; got {value!r}")
    return Region.named(train_region, overlap), Region.named(test_region, overlap)


# --------------------------------------------------------------------------------------------
# canvases


@dataclasses.dataclass(frozen=True, eq=False)
class CanvasDataset:
    """Digits pasted on a canvas.

    Attributes:
        images: ``[N, H, W]`` float32 in [0, 1]; zero background, each pixel the max of the digits.
        labels: ``[N]`` int64 (one digit per canvas) or ``[N, n_digits]`` (two digits).
        masks: ``[N, n_digits, H, W]`` bool; digit k's own scaled ink above the threshold.
            With two digits the masks of one canvas are disjoint.
        centres_px: ``[N, n_digits, 2]`` float64 ``(row, col)`` centre of each digit's box.
        top_left_px: ``[N, n_digits, 2]`` int64 ``(row, col)`` of each digit's top-left pixel.
        source_index: ``[N, n_digits]`` int64 index of each digit in the source array.
        digit_px: side of the scaled digit in pixels.
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    centres_px: np.ndarray
    top_left_px: np.ndarray
    source_index: np.ndarray
    digit_px: int

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_digits(self) -> int:
        return int(self.masks.shape[1])

    @property
    def canvas_shape(self) -> tuple[int, int]:
        """``(H, W)`` in pixels."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    def subset(self, index: np.ndarray | Sequence[int] | slice) -> CanvasDataset:
        """The canvases at ``index`` (any numpy index along the first axis)."""
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        index = np.asarray(index)
        return dataclasses.replace(
            self,
            images=self.images[index],
            labels=self.labels[index],
            masks=self.masks[index],
            centres_px=self.centres_px[index],
            top_left_px=self.top_left_px[index],
            source_index=self.source_index[index],
        )


class CanvasSplit(NamedTuple):
    """Training and test canvases."""

    train: CanvasDataset
    test: CanvasDataset


def _canvas_hw(canvas_px: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(canvas_px, Sequence) and not isinstance(canvas_px, str):
        if len(canvas_px) != 2:
            raise ValueError(f"canvas_px must be an int or (height, width); got {canvas_px!r}")
        return check_int("canvas_px", canvas_px[0], 1), check_int("canvas_px", canvas_px[1], 1)
    side = check_int("canvas_px", canvas_px, 1)
    return side, side


def _scale_digits(x: np.ndarray, digit_px: int) -> np.ndarray:
    """``[n, h, w]`` -> ``[n, digit_px, digit_px]`` float32 in [0, 1] by order-1 zoom."""
    n, h, w = x.shape
    if (h, w) == (digit_px, digit_px):
        return x.astype(np.float32, copy=True)
    from scipy.ndimage import zoom

    out = zoom(x.astype(np.float32), (1.0, digit_px / h, digit_px / w), order=1, grid_mode=False)
    if out.shape[1:] != (digit_px, digit_px):  # zoom rounds the output size; pin it exactly
        out = out[:, :digit_px, :digit_px]
        out = np.pad(out, ((0, 0), (0, digit_px - out.shape[1]), (0, digit_px - out.shape[2])))
    return out.clip(0.0, 1.0).astype(np.float32)


def _place_two(rng: np.random.Generator, n: int, rows: int, cols: int, digit_px: int) -> np.ndarray:
    """Top-left offsets ``[n, 2, 2]`` (row, col) of two non-overlapping digit boxes.

    ``rows``/``cols`` count the allowed top-left offsets along each axis. The first digit is
    uniform over them; the second is uniform over the offsets whose box does not overlap the
    first (``|dr| >= digit_px`` or ``|dc| >= digit_px``); where none exist the first is redrawn.
    Processed in chunks so that memory stays bounded for large N.
    """
    first = np.zeros((n, 2), np.int64)
    second = np.zeros((n, 2), np.int64)
    grid_r, grid_c = np.divmod(np.arange(rows * cols), cols)
    chunk = max(1, 2_000_000 // (rows * cols))
    pending = np.arange(n)
    for _ in range(1000):
        if pending.size == 0:
            break
        first[pending, 0] = rng.integers(0, rows, pending.size)
        first[pending, 1] = rng.integers(0, cols, pending.size)
        u = rng.random(pending.size)
        still = []
        for start in range(0, pending.size, chunk):
            idx = pending[start : start + chunk]
            ok = (np.abs(grid_r[None, :] - first[idx, :1]) >= digit_px) | (
                np.abs(grid_c[None, :] - first[idx, 1:]) >= digit_px
            )
            count = ok.sum(axis=1)
            has = count > 0
            cum = np.cumsum(ok, axis=1)
            # the k-th allowed offset, k = floor(u * count) (0-based), found as the first cum > k
            k = np.floor(u[start : start + chunk] * count).astype(np.int64)
            pick = np.argmax(cum > k[:, None], axis=1)
            second[idx[has], 0] = grid_r[pick[has]]
            second[idx[has], 1] = grid_c[pick[has]]
            still.append(idx[~has])
        pending = np.concatenate(still)
    if pending.size:  # pragma: no cover - only for regions barely large enough
        raise ValueError("could not place two non-overlapping digits; enlarge canvas or region")
    return np.stack([first, second], axis=1)


def make_canvas_dataset(
    x: np.ndarray,
    y: np.ndarray,
    *,
    canvas_px: int | Sequence[int] = 32,
    digit_px: int = 16,
    n_digits: int = 1,
    region: Region | str | None = None,
    n_images: int | None = None,
    ink_threshold: float = 0.25,
    seed: int = 0,
) -> CanvasDataset:
    """Paste scaled digits at random positions of a blank canvas.

    Each source digit ``[h, w]`` is resized to ``[digit_px, digit_px]`` with an order-1 spline
    (``scipy.ndimage.zoom``) and pasted with its top-left pixel drawn uniformly among the
    positions where the whole digit lies inside ``region`` (and inside the canvas). With
    ``n_digits=2`` the two digit boxes never overlap (see ``_place_two``). Canvas pixels are
    the maximum over the pasted digits (the digits do not overlap, so this is also their sum).

    Which source digits: with ``n_images=None`` canvas ``i``'s first digit is source ``i``
    (every source image once, in order); otherwise ``n_images`` sources are drawn at random
    (without replacement when ``n_images <= len(x)``). A second digit is drawn at random
    among the other source images.

    Args:
        x: ``[n, h, w]`` source images in [0, 1] (e.g. ``DigitsSplit.x_train``).
        y: ``[n]`` integer labels.
        canvas_px: canvas side (int) or ``(height, width)`` in pixels.
        digit_px: side of the scaled digit in pixels, 1 <= digit_px <= min(canvas sides).
        n_digits: 1 or 2 digits per canvas.
        region: where digits may lie: ``None`` / ``"full"`` (whole canvas), a name of
            :data:`REGION_NAMES` (with zero overlap), or a :class:`Region`.
        n_images: number of canvases (default ``len(x)``).
        ink_threshold: a scaled digit's pixel belongs to its mask when its value is above this,
            in [0, 1).
        seed: seed of the positions and of any random choice of source images.

    Returns:
        CanvasDataset (shapes in its docstring).
    """
    x, y, height, width, digit_px, n_digits, ink_threshold = _checked_canvas_args(
        x, y, canvas_px, digit_px, n_digits, ink_threshold
    )
    r_lo, c_lo, rows, cols = _placement_grid(region, height, width, digit_px, n_digits)
    n_src = x.shape[0]
    if n_digits == 2 and n_src < 2:
        raise ValueError("two digits per canvas need at least two source images")
    n = n_src if n_images is None else check_int("n_images", n_images, 1)

    rng = np.random.default_rng(check_int("seed", seed))
    source = _draw_sources(rng, n, n_src, n_digits, sequential=n_images is None)

    offsets = _draw_offsets(rng, n, rows, cols, digit_px, n_digits)
    top_left = offsets + np.array([r_lo, c_lo], np.int64)

    images, masks = _paste_digits(x, source, top_left, (height, width), digit_px, ink_threshold)
    labels = y[source].astype(np.int64)
    return CanvasDataset(
        images=images,
        labels=labels[:, 0] if n_digits == 1 else labels,
        masks=masks,
        centres_px=top_left.astype(np.float64) + (digit_px - 1) / 2.0,
        top_left_px=top_left,
        source_index=source,
        digit_px=digit_px,
    )


def _checked_canvas_args(
    x: np.ndarray,
    y: np.ndarray,
    canvas_px: int | Sequence[int],
    digit_px: int,
    n_digits: int,
    ink_threshold: float,
) -> tuple[np.ndarray, np.ndarray, int, int, int, int, float]:
    """The validated images, labels, canvas size, digit size, digit count and ink threshold."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 3:
        raise ValueError(f"x must be [n, h, w] images; got shape {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must have shape [{x.shape[0]}] to match x; got {y.shape}")
    if x.shape[0] == 0:
        raise ValueError("x must hold at least one image")
    height, width = _canvas_hw(canvas_px)
    digit_px = check_int("digit_px", digit_px, 1, min(height, width))
    n_digits = check_int("n_digits", n_digits, 1, 2)
    ink_threshold = _as_float("ink_threshold", ink_threshold, 0.0, 1.0)
    if ink_threshold >= 1.0:
        raise ValueError(f"ink_threshold must be in [0, 1); got {ink_threshold!r}")
    return x, y, height, width, digit_px, n_digits, ink_threshold


def _placement_grid(
    region: Region | str | None, height: int, width: int, digit_px: int, n_digits: int
) -> tuple[int, int, int, int]:
    """The region's first row and column and its counts of allowed top-left rows and columns."""
    if region is None:
        region = Region()
    elif isinstance(region, str):
        region = Region.named(region)
    elif not isinstance(region, Region):
        raise ValueError(f"region must be None, one of {list(REGION_NAMES)} or a Region")
    region = region.validated()
    r_lo, r_hi, c_lo, c_hi = region.pixels(height, width)
    rows, cols = r_hi - r_lo - digit_px + 1, c_hi - c_lo - digit_px + 1
    if rows < 1 or cols < 1:
        raise ValueError(
            f"region {tuple(region)} is {r_hi - r_lo}x{c_hi - c_lo} px on a "
            f"{height}x{width} canvas, "
            f"too small for a digit of digit_px={digit_px}"
        )
    if n_digits == 2 and rows <= digit_px and cols <= digit_px:
        raise ValueError(
            f"region of {r_hi - r_lo}x{c_hi - c_lo} px cannot hold two non-overlapping digits of "
            f"digit_px={digit_px}: one side must be at least {2 * digit_px} px"
        )
    return r_lo, c_lo, rows, cols


def _draw_sources(
    rng: np.random.Generator, n: int, n_src: int, n_digits: int, *, sequential: bool
) -> np.ndarray:
    """``[n, n_digits]`` source-image indices: in order or drawn, the second among the others."""
    source = np.zeros((n, n_digits), np.int64)
    if sequential:
        source[:, 0] = np.arange(n)
    else:
        source[:, 0] = rng.choice(n_src, size=n, replace=n > n_src)
    if n_digits == 2:
        # uniform over the other images: draw from n_src - 1 and skip the first digit's index
        other = rng.integers(0, n_src - 1, n)
        source[:, 1] = other + (other >= source[:, 0])
    return source


def _draw_offsets(
    rng: np.random.Generator, n: int, rows: int, cols: int, digit_px: int, n_digits: int
) -> np.ndarray:
    """``[n, n_digits, 2]`` top-left offsets (row, col) of the digits within the region."""
    if n_digits == 1:
        return np.stack([rng.integers(0, rows, n), rng.integers(0, cols, n)], axis=1).reshape(
            n, 1, 2
        )
    return _place_two(rng, n, rows, cols, digit_px)


def _paste_digits(
    x: np.ndarray,
    source: np.ndarray,
    top_left: np.ndarray,
    canvas_hw: tuple[int, int],
    digit_px: int,
    ink_threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The canvases ``[n, h, w]`` and per-digit masks ``[n, k, h, w]`` of the pasted digits."""
    n, n_digits = source.shape
    height, width = canvas_hw
    used, inverse = np.unique(source, return_inverse=True)
    patches = _scale_digits(x[used], digit_px)[inverse.reshape(source.shape)]  # [n, k, d, d]

    images = np.zeros((n, height, width), np.float32)
    masks = np.zeros((n, n_digits, height, width), bool)
    span = np.arange(digit_px)
    b = np.arange(n)[:, None, None]
    for k in range(n_digits):  # k <= 2: a loop over digits, not over images or pixels
        rr = top_left[:, k, 0, None, None] + span[None, :, None]
        cc = top_left[:, k, 1, None, None] + span[None, None, :]
        images[b, rr, cc] = np.maximum(images[b, rr, cc], patches[:, k])
        masks[b, k, rr, cc] = patches[:, k] > ink_threshold
    return images, masks


def canvas_split(
    split,
    *,
    canvas_px: int | Sequence[int] = 32,
    digit_px: int = 16,
    n_digits: int = 1,
    train_region: str = "full",
    test_region: str = "full",
    overlap: float = 0.0,
    n_train: int | None = None,
    n_test: int | None = None,
    ink_threshold: float = 0.25,
    seed: int = 0,
) -> CanvasSplit:
    """Training and test canvases from a :class:`DigitsSplit` (sklearn digits or MNIST alike).

    Location-restricted split: training digits lie wholly inside ``train_region`` and test
    digits inside ``test_region`` (names of :data:`REGION_NAMES`; ``overlap`` is the fraction of
    the canvas side that opposite regions share, see :meth:`Region.named`). The default
    ``"full"``/``"full"`` is the unrestricted task. Train and test positions come from
    independent generators spawned from ``seed`` (``numpy.random.SeedSequence(seed).spawn(2)``).

    Args:
        split: the source images.
        n_train, n_test: number of canvases (default: one per source image, in order).
        other arguments: as in :func:`make_canvas_dataset`.

    Returns:
        CanvasSplit(train, test).
    """
    from analyses.tasks import DigitsSplit

    if not isinstance(split, DigitsSplit):
        raise ValueError(f"split must be a DigitsSplit; got {type(split).__name__}")
    tr_region, te_region = location_regions(train_region, test_region, overlap)
    seed_train, seed_test = (
        int(s.generate_state(1)[0])
        for s in np.random.SeedSequence(check_int("seed", seed, 0)).spawn(2)
    )
    common = dict(
        canvas_px=canvas_px, digit_px=digit_px, n_digits=n_digits, ink_threshold=ink_threshold
    )
    train = make_canvas_dataset(
        split.x_train, split.y_train, region=tr_region, n_images=n_train, seed=seed_train, **common
    )
    test = make_canvas_dataset(
        split.x_test, split.y_test, region=te_region, n_images=n_test, seed=seed_test, **common
    )
    return CanvasSplit(train, test)


def offset_canvases(
    x: np.ndarray,
    y: np.ndarray,
    *,
    canvas_px: int,
    digit_px: int,
    col_offsets_px: Sequence[int],
    n_images: int | None = None,
    ink_threshold: float = 0.25,
    seed: int = 0,
) -> dict[int, CanvasDataset]:
    """Test canvases with every digit at a fixed horizontal offset (a random row).

    For each offset ``o`` the digit's left edge is column ``o`` (its box spans columns
    ``o .. o + digit_px - 1``): the accuracy of a model trained in the left region, as a function
    of ``o``, shows how far its knowledge reaches (the wave analysis of the transfer
    experiment).

    Args:
        x, y: source digits and labels (every canvas of one offset uses the same digits).
        canvas_px: side of the square canvas.
        digit_px: side of the scaled digit.
        col_offsets_px: offsets, each in ``[0, canvas_px - digit_px]``.
        n_images: canvases per offset (default one per source digit).
        ink_threshold, seed: as :func:`make_canvas_dataset` (the rows are drawn from ``seed``).

    Returns:
        ``{offset: CanvasDataset}``.
    """
    side = check_int("canvas_px", canvas_px, 1)
    d = check_int("digit_px", digit_px, 1, side)
    out = {}
    for i, off in enumerate(col_offsets_px):
        o = check_int(f"col_offsets_px[{i}]", off, 0, side - d)
        region = Region(o / side, (o + d) / side, 0.0, 1.0)
        out[o] = make_canvas_dataset(
            x,
            y,
            canvas_px=side,
            digit_px=d,
            region=region,
            n_images=n_images,
            ink_threshold=ink_threshold,
            seed=seed,
        )
    return out
