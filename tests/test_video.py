"""Moving digits: the frames move the digit by the configured step; the temporal term."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analyses.canvases import Region
from analyses.tasks import digits_split
from analyses.video import column_object_weights, moving_digits


@pytest.fixture(scope="module")
def digits():
    s = digits_split(seed=0)
    return s.x_train[:20], s.y_train[:20]


@pytest.mark.parametrize("step", [1.0, 0.5, 0.25])
def test_drift_moves_the_digit_by_the_step_each_frame(digits, step):
    x, y = digits
    v = moving_digits(
        x,
        y,
        canvas_px=24,
        digit_px=12,
        n_frames=5,
        step_px=step,
        start_region=Region.named("left", 0.25),
        seed=3,
    )
    assert v.frames.shape == (20, 5, 24, 24) and v.masks.shape == (20, 5, 24, 24)
    np.testing.assert_allclose(np.diff(v.top_left_px[:, :, 1], axis=1), step)
    np.testing.assert_array_equal(np.diff(v.top_left_px[:, :, 0], axis=1), 0.0)
    # the ink's centre of mass moves by the step too (sub-pixel by interpolation)
    cols = np.arange(24)
    com = (v.frames.sum(axis=2) * cols).sum(-1) / v.frames.sum(axis=(2, 3))
    np.testing.assert_allclose(np.diff(com, axis=1), step, atol=1e-3)
    # the ink is conserved, the path stays on the canvas and starts in the region
    ink = v.frames.sum(axis=(2, 3))
    np.testing.assert_allclose(ink, np.broadcast_to(ink[:, :1], ink.shape), rtol=1e-5)
    assert v.top_left_px[:, -1, 1].max() <= 12 and v.top_left_px[:, 0, 1].max() <= 15 - 12 + 1e-9
    assert np.array_equal(v.labels, y)


def test_saccade_jumps_once_by_an_allowed_amount(digits):
    x, y = digits
    v = moving_digits(
        x, y, canvas_px=24, digit_px=12, n_frames=4, mode="saccade", saccade_px=(2, 4), seed=1
    )
    jumps = v.top_left_px[:, 2, 1] - v.top_left_px[:, 1, 1]
    assert set(np.unique(jumps)) <= {2.0, 4.0}
    assert np.all(v.top_left_px[:, 0] == v.top_left_px[:, 1])
    assert np.all(v.top_left_px[:, 2] == v.top_left_px[:, 3])


def test_bad_video_arguments_name_the_argument(digits):
    x, y = digits
    with pytest.raises(ValueError, match=r"step_px must be in \[0, 1\]"):
        moving_digits(x, y, canvas_px=24, digit_px=12, n_frames=3, step_px=1.5)
    with pytest.raises(ValueError, match="n_frames must be an integer in"):
        moving_digits(x, y, canvas_px=24, digit_px=12, n_frames=1)
    with pytest.raises(ValueError, match="no start in the region"):
        moving_digits(x, y, canvas_px=16, digit_px=12, n_frames=10)


def test_column_object_weights_count_the_cells_on_the_object():
    cell_px = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    index = np.array([[0, 1], [2, 3], [0, 3]])
    masks = np.zeros((1, 2, 2), bool)
    masks[0, 0, :] = True  # the top row
    np.testing.assert_allclose(column_object_weights(index, cell_px, masks), [[1.0, 0.0, 0.5]])


def test_temporal_term_gradients_are_local_and_only_broadcast_reads_the_masks():
    """Both teachers are detached, so column c's term trains only column c; the broadcast
    teacher is not local in what it knows: an image-level average over the columns that
    ground-truth masks say see the object (changing the masks changes it)."""
    from analyses.baselines import BaselineConfig, build_model, build_retina
    from neurosim.objectives import Batch, Objective, ObjectiveConfig

    retina = build_retina("uniform", n_cells=128, canvas_px=16, pixels_per_deg=2.0)
    model = build_model("local", retina, BaselineConfig.quick(), seed=0)
    s = digits_split(seed=0)
    v = moving_digits(s.x_train[:6], s.y_train[:6], canvas_px=16, digit_px=8, n_frames=3, seed=0)
    frames = torch.as_tensor(retina(v.frames.reshape(-1, 16, 16)), dtype=torch.float32)
    video = frames.view(6, 3, -1)
    cell_px = retina.deg_to_px(retina.positions_deg) if hasattr(retina, "deg_to_px") else None
    weights = torch.rand(6, 3, model.sheet.n_columns, generator=torch.Generator().manual_seed(0))
    batch = Batch(frames[:4], torch.full((4,), -1), video=video, video_weights=weights)
    c = 4
    for teacher in ("local", "broadcast"):
        cfg = ObjectiveConfig(label="none", w_temporal=1.0, temporal_teacher=teacher)
        objective = Objective(cfg, total_steps=10)
        settled = objective.settle_video(model, batch)
        assert settled.trajectory.shape[0] == 4  # initial + 3 frames (2 steps each)
        value = objective.video_terms(model, settled, batch)["temporal"]
        assert value.shape == (model.sheet.n_columns,)
        model.zero_grad(set_to_none=True)
        value[c].backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        own = sum(float(g[c].abs().sum()) for g in grads)
        others = sum(float(torch.cat([g[:c], g[c + 1 :]]).abs().sum()) for g in grads)
        assert own > 0 and others == 0.0, teacher
        moved = Batch(batch.responses, batch.labels, video=video, video_weights=weights.flip(-1))
        again = objective.video_terms(model, objective.settle_video(model, moved), moved)
        changed = not torch.allclose(again["temporal"], value.detach())
        assert changed == (teacher == "broadcast"), teacher
    assert cell_px is None or cell_px.shape == (128, 2)
    terms = Objective(
        ObjectiveConfig(label="none", w_temporal=1.0, w_consensus=0.5, warmup_fraction=0.0),
        total_steps=10,
    )(model, batch, 5)
    assert {"temporal", "video_consensus", "loss"} <= set(terms)
