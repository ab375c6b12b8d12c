"""Tasks: handwritten digits on a canvas, with fixed seeded splits.

Sources (both give the same :class:`DigitsSplit`, so everything downstream is shared):

- ``digits_split``: the 8x8 ``sklearn.datasets.load_digits`` images (offline, bundled with
  scikit-learn) as a fixed stratified train/test split.
- ``mnist_split``: MNIST from the four standard IDX files in a directory (gzip or plain),
  read by ``load_idx``; the official 60k/10k split.
- ``load_split(source)``: either of the two from one argument (``"digits"`` or a directory).

Digits on a canvas (regions, canvases, location-restricted splits, fixed offsets) live in
:mod:`analyses.canvases` and moving digits (videos) in :mod:`analyses.video`; their names are
importable from here too.
"""

from __future__ import annotations

import functools
import gzip
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

from analyses.canvases import (
    REGION_NAMES,
    CanvasDataset,
    CanvasSplit,
    Region,
    _as_float,
    canvas_split,
    location_regions,
    make_canvas_dataset,
    offset_canvases,
)
from neurosim.config import check_int

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
    "offset_canvases",
]


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
    rng = np.random.default_rng(check_int("seed", seed))
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
    n = check_int("n", n, 1, labels.size)
    rng = np.random.default_rng(check_int("seed", seed))
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
