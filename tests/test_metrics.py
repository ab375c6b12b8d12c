"""Tests of analyses.metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from analyses.metrics import (
    accuracy,
    batched_kmeans,
    confidence_interval,
    embedding_variance,
    functional_similarity,
    islands_ari,
    mask_labels_at,
    mean_pairwise_cosine,
    weight_similarity,
    within_between_cosine,
)

# ------------------------------------------------------------------ accuracy


def test_accuracy_from_logits_and_predictions():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    labels = np.array([0, 1, 1, 2])
    assert accuracy(logits, labels) == 0.5
    assert accuracy(np.array([0, 1, 2, 0]), labels) == 0.5
    assert accuracy(torch.tensor(logits, requires_grad=True), torch.tensor(labels)) == 0.5
    assert accuracy(labels, labels) == 1.0


def test_accuracy_bad_shapes():
    with pytest.raises(ValueError, match="logits_or_pred"):
        accuracy(np.zeros((3, 2)), np.zeros(4, int))
    with pytest.raises(ValueError, match="labels must hold integers"):
        accuracy(np.zeros(3), np.array([0.5, 1, 2]))
    with pytest.raises(ValueError, match="empty"):
        accuracy(np.zeros((0, 3)), np.zeros(0, int))


# ------------------------------------------------------------------ confidence intervals


def test_confidence_interval_hand_computed():
    # values 1, 2, 3: mean 2, s = 1, t_{0.975, 2} = 4.302653, half = 4.302653 / sqrt(3)
    ci = confidence_interval(np.array([1.0, 2.0, 3.0]))
    assert ci.mean == 2.0 and ci.n == 3
    assert ci.half_width == pytest.approx(4.302652729 / np.sqrt(3), rel=1e-8)
    assert ci.low == pytest.approx(2.0 - ci.half_width) and ci.high == pytest.approx(
        2 + ci.half_width
    )


def test_confidence_interval_shrinks_with_n():
    rng = np.random.default_rng(0)
    widths = [confidence_interval(rng.normal(size=n)).half_width for n in (3, 10, 100, 1000)]
    assert all(a > b for a, b in zip(widths, widths[1:], strict=False))
    # and with the level
    x = rng.normal(size=10)
    assert (
        confidence_interval(x, level=0.99).half_width > confidence_interval(x, level=0.9).half_width
    )


def test_confidence_interval_n1_and_nan():
    ci = confidence_interval(np.array([0.7]))
    assert ci.mean == 0.7 and ci.n == 1 and np.isnan(ci.half_width)
    arr = np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, np.nan], [5.0, np.nan, np.nan]])
    ci = confidence_interval(arr, axis=1)
    np.testing.assert_array_equal(ci.n, [2, 0, 1])
    assert ci.mean[0] == 2.0 and np.isnan(ci.mean[1]) and ci.mean[2] == 5.0
    assert np.isfinite(ci.half_width[0]) and np.isnan(ci.half_width[1:]).all()


def test_confidence_interval_axis_and_xarray():
    values = np.arange(24.0).reshape(2, 3, 4)
    ci = confidence_interval(values, axis=1)
    assert ci.mean.shape == (2, 4)
    np.testing.assert_allclose(ci.mean, values.mean(axis=1))
    da = xr.DataArray(
        values,
        dims=("model", "seed", "n_train"),
        coords={"model": ["a", "b"], "seed": [0, 1, 2], "n_train": [1, 2, 3, 4]},
    )
    cix = confidence_interval(da, "seed")
    assert cix.mean.dims == ("model", "n_train") and list(cix.mean.model.values) == ["a", "b"]
    np.testing.assert_allclose(cix.half_width.values, ci.half_width)
    with pytest.raises(ValueError, match="axis"):
        confidence_interval(da, "time")
    with pytest.raises(ValueError, match="axis"):
        confidence_interval(values, "seed")
    with pytest.raises(ValueError, match="axis"):
        confidence_interval(values, axis=3)
    with pytest.raises(ValueError, match="level"):
        confidence_interval(values, level=1.0)


# ------------------------------------------------------------------ islands


def _two_object_scene(seed=0, noise=0.05):
    """An 8x8 canvas, digit 0 on the left block, digit 1 on the right, one column per pixel."""
    masks = np.zeros((2, 8, 8), bool)
    masks[0, 2:6, 0:3] = True
    masks[1, 2:6, 5:8] = True
    rows, cols = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    column_px = np.stack([rows.ravel(), cols.ravel()], axis=1).astype(float)
    truth = mask_labels_at(masks, column_px)
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 16)) * 3
    emb = centres[truth] + noise * rng.normal(size=(64, 16))
    return emb, column_px, masks, truth


def test_mask_labels_at():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, 0, 0] = True
    masks[1, 3, 3] = True
    pos = np.array([[0.0, 0.0], [0.4, 0.3], [2.6, 3.2], [1.0, 1.0], [-5.0, 0.0], [3.0, 9.0]])
    np.testing.assert_array_equal(mask_labels_at(masks, pos), [1, 1, 2, 0, 0, 0])
    batched = mask_labels_at(np.stack([masks, masks[::-1]]), pos)
    np.testing.assert_array_equal(batched, [[1, 1, 2, 0, 0, 0], [2, 2, 1, 0, 0, 0]])


def test_islands_ari_perfect_and_random():
    emb, pos, masks, truth = _two_object_scene()
    assert islands_ari(emb, pos, masks, seed=0) == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    rand = [islands_ari(rng.normal(size=emb.shape), pos, masks, seed=s) for s in range(5)]
    assert abs(np.mean(rand)) < 0.1
    # a collapsed state (all columns identical) is not an island structure
    assert islands_ari(np.ones_like(emb), pos, masks) == pytest.approx(0.0)
    # digits only
    assert islands_ari(emb, pos, masks, include_background=False) == pytest.approx(1.0)


def test_islands_ari_batched_matches_single():
    e0, pos, masks, _ = _two_object_scene(seed=0)
    e1 = np.random.default_rng(3).normal(size=e0.shape)
    out = islands_ari(torch.tensor(np.stack([e0, e1])), pos, np.stack([masks, masks]), seed=0)
    assert out.shape == (2,)
    assert out[0] == pytest.approx(1.0)
    assert out[1] == pytest.approx(islands_ari(e1, pos, masks, seed=0))
    with pytest.raises(ValueError, match="masks"):
        islands_ari(np.stack([e0, e1]), pos, masks)
    with pytest.raises(ValueError, match="columns"):
        islands_ari(e0[:10], pos, masks)
    with pytest.raises(ValueError, match="n_clusters"):
        islands_ari(e0, pos, masks, n_clusters=0)


def test_within_between_cosine():
    emb = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 1.0]])
    labels = np.array([1, 1, 2, 2, 0])
    within, between = within_between_cosine(emb, labels)
    # within pairs: (0,1) cos 1, (2,3) cos 1 -> 1 ; background alone has no partner
    assert within == pytest.approx(1.0)
    # between ordered pairs (16 in all): 8 x cos 0 (digit 1 vs digit 2), 8 x 1/sqrt2 (with bg),
    # and background has no same-label partner -> mean = 8 / sqrt(2) / 16
    assert between == pytest.approx((8 / np.sqrt(2)) / 16)
    w2, b2 = within_between_cosine(emb, labels, ignore_label=0)
    assert w2 == pytest.approx(1.0) and b2 == pytest.approx(0.0)
    wb, bb = within_between_cosine(np.stack([emb, emb]), np.stack([labels, labels]))
    np.testing.assert_allclose(wb, [within, within])
    w3, b3 = within_between_cosine(emb[:2], np.array([0, 1]))
    assert np.isnan(w3) and b3 == pytest.approx(1.0)
    with pytest.raises(ValueError, match="must match"):
        within_between_cosine(emb, labels[:3])


# ------------------------------------------------------------------ similarity


def _brute_mean_cosine(v):
    c = v.shape[0]
    vals = []
    for i in range(c):
        for j in range(i + 1, c):
            vals.append(v[i] @ v[j] / np.linalg.norm(v[i]) / np.linalg.norm(v[j]))
    return np.mean(vals)


def test_mean_pairwise_cosine_matches_brute_force():
    v = np.random.default_rng(0).normal(size=(7, 5))
    assert mean_pairwise_cosine(v) == pytest.approx(_brute_mean_cosine(v))
    vc = v - v.mean(axis=1, keepdims=True)
    assert mean_pairwise_cosine(v, centre=True) == pytest.approx(_brute_mean_cosine(vc))
    mat = mean_pairwise_cosine(v, pairwise=True)
    assert mat.shape == (7, 7)
    np.testing.assert_allclose(np.diag(mat), 1.0)
    assert mat[np.triu_indices(7, 1)].mean() == pytest.approx(_brute_mean_cosine(v))
    batched = mean_pairwise_cosine(np.stack([v, 2 * v]))
    np.testing.assert_allclose(batched, [_brute_mean_cosine(v)] * 2)
    with pytest.raises(ValueError, match="C >= 2"):
        mean_pairwise_cosine(v[:1])


def test_functional_similarity():
    rng = np.random.default_rng(0)
    one = rng.normal(size=(20, 6))
    identical = np.broadcast_to(one, (9, 20, 6))
    assert functional_similarity(identical) == pytest.approx(1.0)
    assert functional_similarity(identical, measure="correlation") == pytest.approx(1.0)
    # a scaled copy is the same function up to gain: still 1; a negated copy is -1
    assert functional_similarity(np.stack([one, 3 * one])) == pytest.approx(1.0)
    assert functional_similarity(np.stack([one, -one])) == pytest.approx(-1.0)
    independent = rng.normal(size=(50, 20, 6))
    assert abs(functional_similarity(independent)) < 0.05
    hand = _brute_mean_cosine(independent[:5].reshape(5, -1))
    assert functional_similarity(torch.tensor(independent[:5])) == pytest.approx(hand)
    with pytest.raises(ValueError, match="measure"):
        functional_similarity(independent, measure="l2")
    with pytest.raises(ValueError, match="outputs"):
        functional_similarity(independent[0, 0])


def test_weight_similarity():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3))
    tied = np.broadcast_to(w, (16, 4, 3))
    assert weight_similarity(tied) == pytest.approx(1.0)
    assert weight_similarity(torch.tensor(np.ascontiguousarray(tied))) == pytest.approx(1.0)
    assert abs(weight_similarity(rng.normal(size=(64, 8, 8)))) < 0.05
    two = np.stack([w, np.zeros_like(w) + np.array([1.0, 0, 0])])
    assert weight_similarity(two) == pytest.approx(_brute_mean_cosine(two.reshape(2, -1)))
    with pytest.raises(ValueError, match="weight"):
        weight_similarity(np.zeros(3))


# ------------------------------------------------------------------ collapse


def test_embedding_variance():
    e = np.zeros((4, 3, 2, 5))
    assert embedding_variance(e) == 0.0
    e[:, :, 1, :] = np.array([0.0, 1.0, 2.0, 3.0])[:, None, None]  # var over batch = 1.25
    assert embedding_variance(e) == pytest.approx(1.25 / 2)
    np.testing.assert_allclose(embedding_variance(e, keep_axis=2), [0.0, 1.25])
    np.testing.assert_allclose(embedding_variance(e, keep_axis=-2), [0.0, 1.25])
    # normalised: a scale change is not collapse, a common direction is
    scaled = np.random.default_rng(0).normal(size=(8, 4))
    assert embedding_variance(scaled * 1e-3, normalize=True) == pytest.approx(
        embedding_variance(scaled, normalize=True)
    )
    with pytest.raises(ValueError, match="B >= 2"):
        embedding_variance(e[:1])
    with pytest.raises(ValueError, match="keep_axis"):
        embedding_variance(e, keep_axis=0)
    with pytest.raises(ValueError, match="keep_axis"):
        embedding_variance(e, keep_axis=7)


def test_batched_kmeans_recovers_blobs_and_respects_valid():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, size=(5, 60))
    centres = rng.normal(size=(5, 3, 4)) * 10
    x = centres[np.arange(5)[:, None], truth] + 0.1 * rng.normal(size=(5, 60, 4))
    pred = batched_kmeans(x, 3, seed=1)
    for i in range(5):  # same partition up to label names: a bijection between labels
        pairs = set(zip(truth[i], pred[i], strict=True))
        assert len(pairs) == len({t for t, _ in pairs}) == len({p for _, p in pairs})
    # an image's result does not depend on the rest of the batch
    np.testing.assert_array_equal(batched_kmeans(x[2:3], 3, seed=1)[0], pred[2])
    valid = np.ones((5, 60), bool)
    valid[:, :10] = False
    masked = batched_kmeans(x, 3, valid=valid, seed=1)
    assert np.all(masked[:, :10] == -1) and np.all(masked[:, 10:] >= 0)
    with pytest.raises(ValueError, match="valid"):
        batched_kmeans(x, 3, valid=valid[:, :5])
    with pytest.raises(ValueError, match="n_init"):
        batched_kmeans(x, 3, n_init=0)
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, "):
        batched_kmeans(x, 3, seed=-1)
    with pytest.raises(ValueError, match="n_clusters must be an integer >= 1"):
        batched_kmeans(x, 0)


def test_batched_kmeans_is_sklearns_kmeans_per_image():
    from sklearn.cluster import KMeans

    x = np.random.default_rng(4).normal(size=(3, 20, 5))
    pred = batched_kmeans(x, 4, n_init=2, seed=7)
    for i in range(3):
        ref = KMeans(4, n_init=2, random_state=7).fit(x[i]).labels_
        np.testing.assert_array_equal(pred[i], ref)


def test_batched_kmeans_few_points_and_collapse():
    x = np.zeros((2, 5, 3))
    x[0, :, 0] = [0.0, 0.0, 10.0, 10.0, 20.0]
    valid = np.array([[True, False, True, False, False], [False] * 5])
    # two valid points and k = 3: as many clusters as points; no valid point: all -1
    out = batched_kmeans(x, 3, valid=valid)
    assert out[0, 0] != out[0, 2] and np.all(out[0, [1, 3, 4]] == -1)
    assert np.all(out[1] == -1)
    # identical points (a collapsed state): one cluster, and no warning (warnings are errors)
    np.testing.assert_array_equal(batched_kmeans(np.ones((1, 6, 2)), 3), np.zeros((1, 6)))


def test_mean_ci_text():
    import xarray as xr

    from analyses.metrics import mean_ci_text

    two = xr.DataArray([0.1, 0.3], dims=("seed",))
    assert mean_ci_text(two) == "+0.200±1.271"  # t_{0.975, 1} = 12.706, s / sqrt(2) = 0.1
    assert mean_ci_text(xr.DataArray([0.5, np.nan], dims=("seed",))) == "+0.500"
    assert mean_ci_text(xr.DataArray([np.nan], dims=("seed",))) == "nan"
