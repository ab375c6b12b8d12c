"""Tests of analyses.metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from analyses.metrics import (
    ACCURACY_BOUNDS,
    ARI_BOUNDS,
    accuracy,
    batched_kmeans,
    confidence_interval,
    embedding_variance,
    functional_similarity,
    gap_closed_interval,
    interval_description,
    islands_ari,
    mask_labels_at,
    mean_ci_text,
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
    assert ci.method == "95 % Student-t CI of the mean" and ci.reason == ""


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
    assert np.isnan(ci.low[1:]).all() and np.isnan(ci.high[1:]).all()
    assert ci.reason[0] == ""
    assert ci.reason[1] == "no finite value over seeds"
    assert ci.reason[2] == "n < 2 finite values over seeds: no spread to estimate"


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


def test_confidence_interval_respects_bounds_by_hand():
    # 0.1, 0.3: mean 0.2, s / sqrt(2) = 0.1, t_{0.975, 1} = 12.7062: [-1.07, 1.47] -> [0, 1]
    ci = confidence_interval(np.array([0.1, 0.3]), bounds=ACCURACY_BOUNDS)
    assert ci.mean == pytest.approx(0.2) and ci.half_width == pytest.approx(1.2706205, rel=1e-6)
    assert (ci.low, ci.high) == (0.0, 1.0)
    assert ci.method == "95 % Student-t CI of the mean, clipped to [0, 1]"
    # 0.6, 0.7, 0.8: half = 4.302653 * 0.1 / sqrt(3) = 0.248414, inside the range: not clipped
    ci = confidence_interval(np.array([0.6, 0.7, 0.8]), bounds=(0, 1))
    assert ci.low == pytest.approx(0.451586, abs=1e-6) and ci.high == pytest.approx(0.948414)
    # 0.9, 0.95, 1.0: half = 0.124207; only the upper end is cut
    ci = confidence_interval(np.array([0.9, 0.95, 1.0]), bounds=(0, 1))
    assert ci.low == pytest.approx(0.825793, abs=1e-6) and ci.high == 1.0
    # per cell, and the ARI's range on the negative side
    # (-0.9, -0.8, -0.7): [-0.8 - 0.248414, -0.8 + 0.248414], the lower end cut at -1
    vals = np.array([[-0.9, -0.8, -0.7], [0.1, 0.2, 0.3]])
    ci = confidence_interval(vals, axis=1, bounds=ARI_BOUNDS)
    np.testing.assert_allclose(ci.low, [-1.0, 0.2 - 0.248414], atol=1e-6)
    np.testing.assert_allclose(ci.high, [-0.8 + 0.248414, 0.2 + 0.248414], atol=1e-6)


def test_confidence_interval_bounds_from_attrs_and_bad_bounds():
    da = xr.DataArray([0.1, 0.3], dims=("seed",), attrs={"valid_min": 0.0, "valid_max": 1.0})
    ci = confidence_interval(da, "seed")
    assert (float(ci.low), float(ci.high)) == (0.0, 1.0)
    assert ci.method.endswith("clipped to [0, 1]") and str(ci.reason.values) == ""
    # an explicit range wins over the attributes
    wide = confidence_interval(da, "seed", bounds=(-5, 5))
    assert float(wide.low) == pytest.approx(0.2 - 1.2706205, rel=1e-6)
    with pytest.raises(ValueError, match=r"values must lie in bounds \[0, 1\]"):
        confidence_interval(np.array([0.5, 1.5]), bounds=(0, 1))
    with pytest.raises(ValueError, match="bounds must be"):
        confidence_interval(np.array([0.5, 0.6]), bounds=(1, 0))
    with pytest.raises(ValueError, match="bounds must be"):
        confidence_interval(np.array([0.5, 0.6]), bounds=0.5)


def test_interval_description():
    assert interval_description(3, bounds=(0, 1)) == "95 % t CI over 3 seeds, clipped to [0, 1]"
    assert interval_description(1) == "95 % t CI over 1 seed"
    assert interval_description(np.array([2, 3]), level=0.9) == "90 % t CI over 2-3 seeds"


def test_mean_ci_text():
    two = xr.DataArray([0.1, 0.3], dims=("seed",))
    # t_{0.975, 1} = 12.706, s / sqrt(2) = 0.1: [0.2 - 1.271, 0.2 + 1.271]
    assert mean_ci_text(two) == "+0.200 [-1.071, +1.471] (95 % t CI over 2 seeds)"
    assert mean_ci_text(two, kind=False) == "+0.200 [-1.071, +1.471]"
    assert (
        mean_ci_text(two, bounds=(0, 1))
        == "+0.200 [+0.000, +1.000] (95 % t CI over 2 seeds, clipped to [0, 1])"
    )
    bounded = two.assign_attrs(valid_min=-1.0, valid_max=1.0)
    assert (
        mean_ci_text(bounded)
        == "+0.200 [-1.000, +1.000] (95 % t CI over 2 seeds, clipped to [-1, 1])"
    )
    assert mean_ci_text(xr.DataArray([0.5, np.nan], dims=("seed",))) == "+0.500 (1 seed: no CI)"
    assert mean_ci_text(xr.DataArray([np.nan], dims=("seed",))) == "nan"


def test_gap_closed_by_hand():
    # reference - control = 0.6 on every seed (significant) and a - control = 0.3: every
    # resample gives 0.3 / 0.6, so value and interval are 0.5
    c = np.array([0.2, 0.3, 0.25])
    g = gap_closed_interval(c + 0.3, c, c + 0.6)
    assert g.value == pytest.approx(0.5) and g.low == pytest.approx(0.5)
    assert g.high == pytest.approx(0.5) and g.n == 3 and g.reason == ""
    assert g.difference_low == pytest.approx(0.6) and g.difference_high == pytest.approx(0.6)
    assert "paired bootstrap" in g.method and "10000 resamples" in g.method


def test_gap_closed_bootstrap_percentiles_by_hand():
    # control 0, reference 1 on every seed: the gap is the mean of a = (0.2, 0.5, 0.8). A
    # resample's mean is 0.2 + 0.1 * S, S = k1 + k2 + k3 with k uniform in {0, 1, 2}, so
    # P(S = 0) = P(S = 6) = 1/27 = 3.7 % > 2.5 %: the percentiles are exactly 0.2 and 0.8
    g = gap_closed_interval(np.array([0.2, 0.5, 0.8]), 0.0, np.ones(3))
    assert g.value == pytest.approx(0.5)
    assert (g.low, g.high) == (pytest.approx(0.2), pytest.approx(0.8))


def test_gap_closed_is_nan_with_a_reason_when_the_denominator_is_noise():
    # reference - control = (1, 2): mean 1.5, s / sqrt(2) = 0.5, t_{0.975, 1} * 0.5 = 6.35
    g = gap_closed_interval(np.array([0.5, 0.5]), np.zeros(2), np.array([1.0, 2.0]))
    assert np.isnan(g.value) and np.isnan(g.low) and np.isnan(g.high)
    assert g.difference_low == pytest.approx(1.5 - 6.3531, abs=1e-3)
    assert g.reason.startswith("reference - control not significant")
    assert "includes 0" in g.reason
    one = gap_closed_interval(np.array([0.5, np.nan]), np.zeros(2), np.ones(2))
    assert np.isnan(one.value) and one.n == 1 and "n = 1 < 2" in one.reason


def test_gap_closed_per_cell_and_xarray():
    rng = np.random.default_rng(0)
    seeds = [0, 1, 2, 3]
    acc = xr.DataArray(
        rng.uniform(0.1, 0.3, size=(3, 2, 4)) + np.array([0.4, 0.0, 0.6])[:, None, None],
        dims=("model", "retina", "seed"),
        coords={"model": ["codistill", "lc", "cnn"], "retina": ["u", "f"], "seed": seeds},
    )
    g = gap_closed_interval(
        acc.sel(model="codistill"), acc.sel(model="lc"), acc.sel(model="cnn"), axis="seed"
    )
    assert g.value.dims == ("retina",) and list(g.value.retina.values) == ["u", "f"]
    for r in ("u", "f"):
        one = gap_closed_interval(
            *(acc.sel(model=m, retina=r).values for m in ("codistill", "lc", "cnn"))
        )
        assert float(g.value.sel(retina=r)) == pytest.approx(one.value)
        assert float(g.low.sel(retina=r)) == pytest.approx(one.low)  # cells do not interact
        means = acc.sel(retina=r).mean("seed")
        hand = float(
            (means.sel(model="codistill") - means.sel(model="lc"))
            / (means.sel(model="cnn") - means.sel(model="lc"))
        )
        assert one.value == pytest.approx(hand)
        assert one.low <= one.value <= one.high
    # a numpy batch along axis 0
    arr = acc.values.transpose(2, 0, 1)  # [seed, model, retina]
    gb = gap_closed_interval(arr[:, 0], arr[:, 1], arr[:, 2], axis=0)
    np.testing.assert_allclose(gb.value, g.value.values)
    with pytest.raises(ValueError, match="axis"):
        gap_closed_interval(
            acc.sel(model="codistill"), acc.sel(model="lc"), acc.sel(model="cnn"), axis=0
        )
    with pytest.raises(ValueError, match="n_resamples"):
        gap_closed_interval(np.ones(3), np.zeros(3), np.ones(3), n_resamples=10)
    with pytest.raises(ValueError, match="level"):
        gap_closed_interval(np.ones(3), np.zeros(3), np.ones(3), level=95)
