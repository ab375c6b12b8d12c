"""Tasks: handwritten digits on a canvas, with fixed seeded splits.

Sources (both give the same :class:`DigitsSplit`, so everything downstream is shared):

- ``digits_split``: the 8x8 ``sklearn.datasets.load_digits`` images (offline, bundled with
  scikit-learn) as a fixed stratified train/test split.
- ``mnist_split``: MNIST from the four standard IDX files in a directory (gzip or plain),
  read by ``load_idx``; the official 60k/10k split.
- ``load_split(source)``: either of the two from one argument (``"digits"`` or a directory).

Canvases (``make_canvas_dataset``, ``canvas_split``): each digit is scaled up (order-1 spline,
``scipy.ndimage.zoom``) to ``digit_px`` x ``digit_px`` and pasted at a random position of a
larger canvas, drawn from a seeded generator inside a placement :class:`Region`. Each digit
keeps its own pixel mask (its scaled ink above ``ink_threshold``); with two digits per canvas
the digits' boxes never overlap. Location-restricted splits put training digits in one region
(e.g. the left part of the canvas) and test digits in another, with a configurable overlap.

Coordinates: arrays are indexed ``[row, col]``; row 0 is the top of the image. Positions are
``(row, col)`` in pixels in array-index coordinates (pixel ``[r, c]`` has its centre at
``(r, c)``), so a digit pasted with top-left pixel ``(r0, c0)`` has its centre at
``(r0 + (digit_px - 1) / 2, c0 + (digit_px - 1) / 2)``.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import math
import operator
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = [
    "DigitsSplit",
    "digits_split",
    "stratified_split_indices",
    "stratified_subset",
    "load_idx",
    "mnist_split",
    "MNIST_FILES",
    "load_split",
    "Region",
    "REGION_NAMES",
    "location_regions",
    "CanvasDataset",
    "CanvasSplit",
    "make_canvas_dataset",
    "canvas_split",
]


# --------------------------------------------------------------------------------------------
# validation helpers


def _as_int(name: str, value: object, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as a Python int (numpy ints accepted) in [lo, hi]; ``ValueError`` naming it."""
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    try:
        out = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer; got {value!r}") from None
    if (lo is not None and out < lo) or (hi is not None and out > hi):
        rng = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        raise ValueError(f"{name} must be an integer in {rng}; got {out}")
    return out


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


# --------------------------------------------------------------------------------------------
# splits


class DigitsSplit(NamedTuple):
    """A fixed train/test split of digit images.

    Attributes:
        x_train: ``[n_train, H, W]`` float32 in [0, 1] (H = W = 8 for sklearn digits, 28 for MNIST).
        y_train: ``[n_train]`` int64 class labels 0..9.
        x_test: ``[n_test, H, W]`` float32 in [0, 1].
        y_test: ``[n_test]`` int64.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def stratified_split_indices(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of ``range(len(labels))`` into disjoint, sorted (train, test) indices.

    In each class ``c`` (``n_c`` items) a permutation from ``numpy.random.default_rng(seed)``
    is drawn and its first ``round(test_fraction * n_c)`` items go to the test set.

    Args:
        labels: ``[n]`` integer class labels.
        test_fraction: in (0, 1).
        seed: seed of the permutations.

    Returns:
        ``(train_index [n_train], test_index [n_test])`` int64, together a partition of
        ``range(n)``.
    """
    test_fraction = _as_float("test_fraction", test_fraction, 0.0, 1.0, open_=True)
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-d, got shape {labels.shape}")
    rng = np.random.default_rng(_as_int("seed", seed))
    train, test = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(idx.size)]
        n_test = int(np.floor(test_fraction * idx.size + 0.5))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def stratified_subset(labels: np.ndarray, n: int, *, seed: int = 0) -> np.ndarray:
    """Indices of a class-balanced subset of size ``n``; subsets for growing ``n`` are nested.

    Items are ordered by (rank of the item inside its class under a seeded permutation, a
    seeded tie-break between classes) and the first ``n`` are taken: every class gets
    ``n // n_classes`` or one more item (as far as the class has items), and the subset of size
    ``n`` contains the subset of any smaller size for the same seed (a learning curve over
    ``n_train`` grows one training set instead of drawing new ones).

    Args:
        labels: ``[N]`` integer labels.
        n: subset size in [1, N].
        seed: seed of the order.

    Returns:
        ``[n]`` int64 indices into ``labels`` (in the order described, not sorted).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-d, got shape {labels.shape}")
    n = _as_int("n", n, 1, labels.size)
    rng = np.random.default_rng(_as_int("seed", seed))
    rank = np.empty(labels.size, np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rank[idx[rng.permutation(idx.size)]] = np.arange(idx.size)
    classes, inverse = np.unique(labels, return_inverse=True)
    class_order = rng.permutation(classes.size)[inverse]
    order = np.lexsort((class_order, rank))
    return order[:n].astype(np.int64)


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All sklearn digits, ``[1797, 8, 8]`` float32 in [0, 1] and ``[1797]`` int64, read-only.

    Cached: loading (mostly importing scikit-learn) takes seconds; callers index into copies.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (np.asarray(data.images, dtype=np.float32) / np.float32(16.0)).clip(0.0, 1.0)
    y = np.asarray(data.target, dtype=np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def digits_split(*, test_fraction: float = 0.3, seed: int = 0) -> DigitsSplit:
    """The sklearn digits (1797 images, 8x8, 10 classes) as a fixed stratified train/test split.

    Pixel values 0..16 are scaled to [0, 1] (divided by 16). The split is stratified by class
    (:func:`stratified_split_indices`): in each class a fraction ``test_fraction`` (rounded)
    goes to the test set; the same seed gives the same split, and train and test are disjoint.

    Args:
        test_fraction: fraction of each class held out for testing, in (0, 1).
        seed: seed of the split.

    Returns:
        DigitsSplit with x_* ``[n, 8, 8]`` float32 in [0, 1] and y_* ``[n]`` int64
        (1258 train / 539 test for the defaults).
    """
    x, y = _digits_arrays()
    tr, te = stratified_split_indices(y, test_fraction, seed)
    return DigitsSplit(x[tr], y[tr], x[te], y[te])


# --------------------------------------------------------------------------------------------
# MNIST IDX files

#: IDX type code -> big-endian numpy dtype (LeCun et al., "THE MNIST DATABASE", file formats)
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

#: split part -> standard MNIST file name (each may also be found with a ``.gz`` suffix)
MNIST_FILES: dict[str, str] = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def load_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or plain.

    Layout: two zero bytes, a type code byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), a byte with the number of dimensions ``ndim``, ``ndim``
    big-endian uint32 sizes, then the data in C order, big-endian. Compression is detected from
    the content (gzip magic ``1f 8b``), not from the file name.

    Returns:
        the array with the stored shape, in native byte order.

    Raises:
        ValueError: bad magic number, unknown type code, zero dimensions, or a data length
            that does not match the header (truncated file or trailing bytes); the message
            names the file.
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise ValueError(f"{path}: corrupt gzip stream ({err})") from None
    if len(raw) < 4:
        raise ValueError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"{path}: not an IDX file (magic number must start with two zero bytes, "
            f"got {raw[:4].hex()})"
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        allowed = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise ValueError(f"{path}: IDX type code must be one of {allowed}; got 0x{code:02X}")
    if ndim < 1:
        raise ValueError(f"{path}: IDX number of dimensions must be >= 1; got {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header (needs {header} bytes, has {len(raw)})")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX data length {len(raw) - header} bytes does not match the header "
            f"shape {shape} of {dtype.name} ({expected} bytes)"
        )
    data = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _find_idx(directory: Path, name: str) -> Path:
    for candidate in (directory / name, directory / (name + ".gz")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{directory}: neither {name} nor {name}.gz found")


def mnist_split(directory: str | Path) -> DigitsSplit:
    """MNIST from the four standard IDX files in ``directory`` (official train/test split).

    Files (each plain or ``.gz``): ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``. Images must be uint8 ``[n, H, W]``
    and are scaled to [0, 1] (divided by 255); labels uint8 ``[n]`` in 0..9.

    Returns:
        DigitsSplit with x_* ``[n, 28, 28]`` float32 in [0, 1] and y_* ``[n]`` int64.

    Raises:
        FileNotFoundError: ``directory`` or a file is missing.
        ValueError: a file is corrupt, or images/labels have the wrong type, rank or count.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"MNIST directory {directory} does not exist")
    parts = {}
    for part, name in MNIST_FILES.items():
        path = _find_idx(directory, name)
        arr = load_idx(path)
        want_ndim = 3 if part.startswith("x") else 1
        if arr.dtype != np.uint8 or arr.ndim != want_ndim:
            raise ValueError(
                f"{path}: expected uint8 with {want_ndim} dimension(s), "
                f"got {arr.dtype} with shape {arr.shape}"
            )
        parts[part] = arr
    for s in ("train", "test"):
        x, y = parts[f"x_{s}"], parts[f"y_{s}"]
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"MNIST {s}: {x.shape[0]} images but {y.shape[0]} labels")
        if y.size and y.max() > 9:
            raise ValueError(f"MNIST {s}: labels must be in 0..9, got max {int(y.max())}")
    return DigitsSplit(
        *(
            parts[k].astype(np.float32) / np.float32(255.0)
            if k.startswith("x")
            else parts[k].astype(np.int64)
            for k in ("x_train", "y_train", "x_test", "y_test")
        )
    )


def load_split(
    source: str | Path = "digits", *, test_fraction: float = 0.3, seed: int = 0
) -> DigitsSplit:
    """One entry point for every digit source.

    Args:
        source: ``"digits"`` for the sklearn digits (:func:`digits_split` with ``test_fraction``
            and ``seed``), or a directory holding the four MNIST IDX files (:func:`mnist_split`;
            MNIST has an official split, so ``test_fraction`` and ``seed`` are not used).

    Returns:
        DigitsSplit.
    """
    if isinstance(source, str) and source == "digits":
        return digits_split(test_fraction=test_fraction, seed=seed)
    if isinstance(source, str | Path):
        return mnist_split(source)
    raise ValueError(f"source must be 'digits' or an MNIST directory path; got {source!r}")


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
        return _as_int("canvas_px", canvas_px[0], 1), _as_int("canvas_px", canvas_px[1], 1)
    side = _as_int("canvas_px", canvas_px, 1)
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
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 3:
        raise ValueError(f"x must be [n, h, w] images; got shape {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must have shape [{x.shape[0]}] to match x; got {y.shape}")
    if x.shape[0] == 0:
        raise ValueError("x must hold at least one image")
    height, width = _canvas_hw(canvas_px)
    digit_px = _as_int("digit_px", digit_px, 1, min(height, width))
    n_digits = _as_int("n_digits", n_digits, 1, 2)
    ink_threshold = _as_float("ink_threshold", ink_threshold, 0.0, 1.0)
    if ink_threshold >= 1.0:
        raise ValueError(f"ink_threshold must be in [0, 1); got {ink_threshold!r}")
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
    n_src = x.shape[0]
    if n_digits == 2 and n_src < 2:
        raise ValueError("two digits per canvas need at least two source images")
    n = n_src if n_images is None else _as_int("n_images", n_images, 1)

    rng = np.random.default_rng(_as_int("seed", seed))
    source = np.zeros((n, n_digits), np.int64)
    if n_images is None:
        source[:, 0] = np.arange(n)
    else:
        source[:, 0] = rng.choice(n_src, size=n, replace=n > n_src)
    if n_digits == 2:
        # uniform over the other images: draw from n_src - 1 and skip the first digit's index
        other = rng.integers(0, n_src - 1, n)
        source[:, 1] = other + (other >= source[:, 0])

    if n_digits == 1:
        offsets = np.stack([rng.integers(0, rows, n), rng.integers(0, cols, n)], axis=1).reshape(
            n, 1, 2
        )
    else:
        offsets = _place_two(rng, n, rows, cols, digit_px)
    top_left = offsets + np.array([r_lo, c_lo], np.int64)

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


def canvas_split(
    split: DigitsSplit,
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
    if not isinstance(split, DigitsSplit):
        raise ValueError(f"split must be a DigitsSplit; got {type(split).__name__}")
    tr_region, te_region = location_regions(train_region, test_region, overlap)
    seed_train, seed_test = (
        int(s.generate_state(1)[0])
        for s in np.random.SeedSequence(_as_int("seed", seed, 0)).spawn(2)
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
