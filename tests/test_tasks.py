"""Tests of analyses.tasks: splits, IDX loading, MNIST, canvases and location-restricted splits."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from analyses.tasks import (
    MNIST_FILES,
    CanvasDataset,
    DigitsSplit,
    Region,
    canvas_split,
    digits_split,
    load_idx,
    load_split,
    location_regions,
    make_canvas_dataset,
    mnist_split,
    stratified_split_indices,
    stratified_subset,
)


@pytest.fixture(scope="module")
def split() -> DigitsSplit:
    return digits_split(seed=0)


# ------------------------------------------------------------------ digits split


def test_digits_split_shapes_and_ranges(split):
    assert split.x_train.shape[1:] == (8, 8) and split.x_test.shape[1:] == (8, 8)
    assert split.x_train.dtype == np.float32 and split.y_train.dtype == np.int64
    assert split.x_train.shape[0] + split.x_test.shape[0] == 1797
    assert split.x_test.shape[0] == pytest.approx(0.3 * 1797, abs=10)
    for x in (split.x_train, split.x_test):
        assert x.min() >= 0.0 and x.max() <= 1.0 and x.max() == 1.0
    # stratified: every class in both parts, in about the same proportion
    for c in range(10):
        frac = (split.y_test == c).sum() / ((split.y_test == c).sum() + (split.y_train == c).sum())
        assert abs(frac - 0.3) < 0.02


def test_digits_split_deterministic_and_seed_dependent(split):
    again = digits_split(seed=0)
    for a, b in zip(split, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = digits_split(seed=1)
    assert not np.array_equal(split.y_train, other.y_train)


def test_digits_split_is_a_partition(split):
    tr, te = stratified_split_indices(np.arange(1797) % 10, 0.3, 0)
    assert np.intersect1d(tr, te).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, te])), np.arange(1797))
    # the returned images are the dataset itself, once each (as a multiset of (image, label))
    from sklearn.datasets import load_digits

    d = load_digits()
    full = sorted(zip(map(bytes, (d.images / 16.0).astype(np.float32)), d.target, strict=True))
    parts = sorted(
        zip(
            map(bytes, np.concatenate([split.x_train, split.x_test])),
            np.concatenate([split.y_train, split.y_test]),
            strict=True,
        )
    )
    assert full == parts


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5, "a", float("nan"), True])
def test_digits_split_bad_fraction(bad):
    with pytest.raises(ValueError, match="test_fraction"):
        digits_split(test_fraction=bad)


def test_stratified_subset_balanced_and_nested(split):
    y = split.y_train
    small = stratified_subset(y, 20, seed=3)
    big = stratified_subset(y, 100, seed=3)
    np.testing.assert_array_equal(big[:20], small)
    assert np.bincount(y[big], minlength=10).tolist() == [10] * 10
    assert np.unique(big).size == 100
    np.testing.assert_array_equal(stratified_subset(y, 100, seed=3), big)
    with pytest.raises(ValueError, match="n must be"):
        stratified_subset(y, 0)
    with pytest.raises(ValueError, match="n must be"):
        stratified_subset(y, y.size + 1)


# ------------------------------------------------------------------ IDX / MNIST


def _idx_bytes(arr: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize(
    "dtype,code",
    [
        (np.uint8, 0x08),
        (np.int8, 0x09),
        (np.int16, 0x0B),
        (np.int32, 0x0C),
        (np.float32, 0x0D),
        (np.float64, 0x0E),
    ],
)
@pytest.mark.parametrize("compress", [False, True])
def test_load_idx_round_trip(tmp_path, dtype, code, compress):
    arr = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    if dtype == np.uint8:
        arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = _idx_bytes(arr, code)
    path = tmp_path / "a.idx"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    out = load_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize(
    "raw,match",
    [
        (b"\x00\x00", "too short"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "type code"),
        (b"\x00\x00\x08\x00", "dimensions"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x02", "truncated IDX header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02", "does not match"),  # truncated data
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "does not match"),  # trailing bytes
        (b"\x1f\x8b\x08\x00garbage", "gzip"),
    ],
)
def test_load_idx_bad_files(tmp_path, raw, match):
    path = tmp_path / "bad.idx"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=match):
        load_idx(path)


def _write_mnist(directory: Path, n_train=12, n_test=7, side=28, compress=True, seed=0):
    rng = np.random.default_rng(seed)
    data = {
        "x_train": rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for part, name in MNIST_FILES.items():
        raw = _idx_bytes(data[part], 0x08)
        if compress:
            (directory / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (directory / name).write_bytes(raw)
    return data


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_split_from_idx(tmp_path, compress):
    data = _write_mnist(tmp_path, compress=compress)
    s = mnist_split(tmp_path)
    assert isinstance(s, DigitsSplit)
    assert s.x_train.shape == (12, 28, 28) and s.x_train.dtype == np.float32
    np.testing.assert_allclose(s.x_train, data["x_train"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(s.y_test, data["y_test"].astype(np.int64))
    assert s.y_train.dtype == np.int64
    # the single entry point
    s2 = load_split(tmp_path)
    np.testing.assert_array_equal(s2.x_test, s.x_test)


def test_mnist_split_bad_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        mnist_split(tmp_path / "absent")
    data = _write_mnist(tmp_path, compress=False)
    (tmp_path / MNIST_FILES["y_test"]).unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels"):
        mnist_split(tmp_path)
    # label count mismatch
    (tmp_path / MNIST_FILES["y_test"]).write_bytes(_idx_bytes(data["y_test"][:3], 0x08))
    with pytest.raises(ValueError, match="7 images but 3 labels"):
        mnist_split(tmp_path)
    # wrong rank for images
    (tmp_path / MNIST_FILES["y_test"]).write_bytes(_idx_bytes(data["y_test"], 0x08))
    (tmp_path / MNIST_FILES["x_test"]).write_bytes(_idx_bytes(data["y_test"], 0x08))
    with pytest.raises(ValueError, match="3 dimension"):
        mnist_split(tmp_path)


def test_load_split_bad_source():
    with pytest.raises(ValueError, match="source"):
        load_split(3)


def test_mnist_through_canvas(tmp_path):
    _write_mnist(tmp_path, compress=True)
    cs = canvas_split(load_split(tmp_path), canvas_px=64, digit_px=28, n_digits=2, seed=1)
    assert cs.train.images.shape == (12, 64, 64) and cs.train.labels.shape == (12, 2)
    assert cs.test.masks.shape == (7, 2, 64, 64)


# ------------------------------------------------------------------ canvases


def _patch(ds: CanvasDataset, i: int, k: int) -> tuple[slice, slice]:
    r, c = ds.top_left_px[i, k]
    return slice(r, r + ds.digit_px), slice(c, c + ds.digit_px)


def test_canvas_single_digit(split):
    ds = make_canvas_dataset(split.x_train, split.y_train, canvas_px=32, digit_px=16, seed=2)
    n = split.x_train.shape[0]
    assert ds.images.shape == (n, 32, 32) and ds.images.dtype == np.float32
    assert ds.labels.shape == (n,) and ds.labels.dtype == np.int64
    assert ds.masks.shape == (n, 1, 32, 32) and ds.masks.dtype == bool
    np.testing.assert_array_equal(ds.labels, split.y_train)  # source i on canvas i
    np.testing.assert_array_equal(ds.source_index[:, 0], np.arange(n))
    assert ds.top_left_px.min() >= 0 and ds.top_left_px.max() <= 32 - 16
    np.testing.assert_allclose(ds.centres_px, ds.top_left_px + 7.5)
    assert ds.images.min() >= 0 and ds.images.max() <= 1
    # positions vary (random) and the ink lies in the box, nothing outside it
    assert np.unique(ds.top_left_px[:, 0, 1]).size > 10
    for i in range(0, n, 97):
        rs, cs = _patch(ds, i, 0)
        outside = ds.images[i].copy()
        outside[rs, cs] = 0
        assert outside.max() == 0
        # masks match the ink: thresholded scaled digit
        np.testing.assert_array_equal(ds.masks[i, 0], ds.images[i] > 0.25)
        assert ds.masks[i, 0].any()


def test_canvas_scaled_digit_is_the_source(split):
    from scipy.ndimage import zoom

    ds = make_canvas_dataset(split.x_test[:5], split.y_test[:5], canvas_px=40, digit_px=24, seed=0)
    for i in range(5):
        rs, cs = _patch(ds, i, 0)
        ref = zoom(split.x_test[i], 3.0, order=1).clip(0, 1)
        np.testing.assert_allclose(ds.images[i][rs, cs], ref, atol=1e-6)


def test_canvas_deterministic_for_seed(split):
    kw = dict(canvas_px=(32, 48), digit_px=16, n_digits=2, seed=5)
    a = make_canvas_dataset(split.x_test, split.y_test, **kw)
    b = make_canvas_dataset(split.x_test, split.y_test, **kw)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.top_left_px, b.top_left_px)
    c = make_canvas_dataset(split.x_test, split.y_test, **{**kw, "seed": 6})
    assert not np.array_equal(a.top_left_px, c.top_left_px)


@pytest.mark.parametrize("canvas_px", [32, (32, 48), (40, 40)])
def test_two_digits_never_overlap(split, canvas_px):
    ds = make_canvas_dataset(
        split.x_test, split.y_test, canvas_px=canvas_px, digit_px=16, n_digits=2, seed=1
    )
    n = split.x_test.shape[0]
    assert ds.labels.shape == (n, 2) and ds.masks.shape[:2] == (n, 2)
    d = np.abs(ds.top_left_px[:, 0] - ds.top_left_px[:, 1])
    assert np.all((d[:, 0] >= 16) | (d[:, 1] >= 16))  # boxes disjoint
    assert not np.any(ds.masks[:, 0] & ds.masks[:, 1])
    assert np.all(ds.source_index[:, 0] != ds.source_index[:, 1])
    np.testing.assert_array_equal(ds.labels, split.y_test[ds.source_index])
    h, w = ds.canvas_shape
    assert ds.top_left_px[..., 0].max() <= h - 16 and ds.top_left_px[..., 1].max() <= w - 16
    # each mask is the digit's own ink: it equals the image's ink inside that digit's box
    for i in range(0, n, 53):
        for k in range(2):
            rs, cs = _patch(ds, i, k)
            box = np.zeros(ds.canvas_shape, bool)
            box[rs, cs] = True
            np.testing.assert_array_equal(ds.masks[i, k], box & (ds.images[i] > 0.25))
        assert ds.masks[i].sum() == (ds.images[i] > 0.25).sum()


def test_canvas_n_images_and_subset(split):
    ds = make_canvas_dataset(split.x_test, split.y_test, n_images=2000, seed=0)
    assert len(ds) == 2000  # more than the sources: drawn with replacement
    sub = ds.subset(slice(0, 10))
    assert len(sub) == 10 and sub.n_digits == 1
    np.testing.assert_array_equal(sub.images, ds.images[:10])
    np.testing.assert_array_equal(sub.labels, ds.labels[:10])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(digit_px=40), "digit_px"),
        (dict(digit_px=0), "digit_px"),
        (dict(n_digits=3), "n_digits"),
        (dict(canvas_px=(32,)), "canvas_px"),
        (dict(canvas_px=0), "canvas_px"),
        (dict(n_digits=2, canvas_px=31), "two non-overlapping"),
        (dict(region="middle"), "region"),
        (dict(region=Region(0.6, 0.4)), "x0 < x1"),
        (dict(region=Region(0.0, 1.2)), "region.x1"),
        (dict(region=Region(0.0, 0.3)), "too small"),
        (dict(ink_threshold=1.0), "ink_threshold"),
        (dict(n_images=0), "n_images"),
        (dict(seed=1.5), "seed"),
    ],
)
def test_canvas_bad_values(split, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_canvas_dataset(split.x_test[:10], split.y_test[:10], **kwargs)


def test_canvas_bad_arrays(split):
    with pytest.raises(ValueError, match="x must be"):
        make_canvas_dataset(split.x_test[0], split.y_test[:1])
    with pytest.raises(ValueError, match="y must have shape"):
        make_canvas_dataset(split.x_test[:3], split.y_test[:2])


# ------------------------------------------------------------------ location-restricted splits


def test_location_regions():
    tr, te = location_regions("left", "right", 0.0)
    assert tr == Region(0.0, 0.5, 0.0, 1.0) and te == Region(0.5, 1.0, 0.0, 1.0)
    tr, te = location_regions("left", "right", 0.5)
    assert tr.x1 - te.x0 == pytest.approx(0.5)
    tr, te = location_regions("top", "bottom", 1.0)
    assert tr == te == Region()
    with pytest.raises(ValueError, match="train_region"):
        location_regions("centre", "right")
    with pytest.raises(ValueError, match="test_region"):
        location_regions("left", "up")
    for bad in (-0.1, 1.1, "x", float("nan")):
        with pytest.raises(ValueError, match="overlap"):
            location_regions("left", "right", bad)


@pytest.mark.parametrize("overlap", [0.0, 0.25, 1.0])
def test_location_restricted_split_respects_regions(split, overlap):
    w = 64
    cs = canvas_split(
        split,
        canvas_px=(32, w),
        digit_px=16,
        train_region="left",
        test_region="right",
        overlap=overlap,
        seed=0,
    )
    left_hi = round((1 + overlap) / 2 * w)
    right_lo = round((1 - overlap) / 2 * w)
    cols_tr = np.flatnonzero(cs.train.masks.any(axis=(0, 1, 2)))
    cols_te = np.flatnonzero(cs.test.masks.any(axis=(0, 1, 2)))
    assert cols_tr.max() < left_hi and cs.train.top_left_px[..., 1].max() + 16 <= left_hi
    assert cols_te.min() >= right_lo and cs.test.top_left_px[..., 1].min() >= right_lo
    if overlap == 0.0:  # disjoint: no pixel is inked in both training and test canvases
        assert cols_tr.max() < cols_te.min()
    # positions fill the allowed range (not stuck in a corner)
    assert cs.train.top_left_px[..., 1].min() == 0
    assert cs.test.top_left_px[..., 1].max() == w - 16
    # deterministic
    again = canvas_split(
        split,
        canvas_px=(32, w),
        digit_px=16,
        train_region="left",
        test_region="right",
        overlap=overlap,
        seed=0,
    )
    np.testing.assert_array_equal(again.test.images, cs.test.images)


def test_location_restricted_two_digits_vertical(split):
    cs = canvas_split(
        split,
        canvas_px=(64, 32),
        digit_px=16,
        n_digits=2,
        train_region="top",
        test_region="bottom",
        overlap=0.0,
        seed=3,
        n_train=200,
        n_test=100,
    )
    assert len(cs.train) == 200 and len(cs.test) == 100
    assert cs.train.top_left_px[..., 0].max() + 16 <= 32
    assert cs.test.top_left_px[..., 0].min() >= 32
    assert not np.any(cs.train.masks[:, 0] & cs.train.masks[:, 1])


def test_canvas_split_bad_values(split):
    with pytest.raises(ValueError, match="overlap"):
        canvas_split(split, train_region="left", test_region="right", overlap=2.0)
    with pytest.raises(ValueError, match="train_region"):
        canvas_split(split, train_region="north")
    with pytest.raises(ValueError, match="too small"):
        canvas_split(split, canvas_px=20, digit_px=16, train_region="left")
    with pytest.raises(ValueError, match="split"):
        canvas_split((split.x_train, split.y_train))
