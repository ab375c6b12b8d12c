"""Tests of neurosim.denormals and the Trainer's flush_denormals: denormals read and written as
zero while training (and only then), and the same model learned as with them."""

from __future__ import annotations

import pytest
import torch

from neurosim.denormals import denormals_flushed, flushing_denormals
from neurosim.train import TrainConfig, Trainer

TINY = torch.finfo(torch.float32).tiny

pytestmark = pytest.mark.skipif(
    not torch.set_flush_denormal(False),  # also the default setting, for every test here
    reason="this CPU cannot flush denormals (torch supports x86 with SSE3 and ARM)",
)


def _denormal_times_one() -> float:
    x = torch.tensor([1e-39], dtype=torch.float64).to(torch.float32)
    return float(x.mul_(1.0)[0])


def test_denormals_are_zero_inside_the_block_only_and_the_setting_is_restored():
    assert not denormals_flushed()
    assert 0.0 < _denormal_times_one() < TINY
    with flushing_denormals() as on:
        assert on and denormals_flushed()
        assert _denormal_times_one() == 0.0
        with flushing_denormals(False) as inner:  # False leaves the setting as it is
            assert inner and denormals_flushed()
    assert not denormals_flushed()
    assert 0.0 < _denormal_times_one() < TINY
    with pytest.raises(RuntimeError, match="inside"):  # restored when the block raises too
        with flushing_denormals():
            raise RuntimeError("inside")
    assert not denormals_flushed()


def test_a_setting_that_was_on_before_stays_on_after():
    torch.set_flush_denormal(True)
    try:
        with flushing_denormals():
            assert denormals_flushed()
        assert denormals_flushed()
    finally:
        torch.set_flush_denormal(False)


@pytest.mark.parametrize("flush", [True, False])
def test_the_trainer_flushes_while_it_trains_unless_told_not_to(flush):
    seen = []
    x = torch.randn(20, 3, generator=torch.Generator().manual_seed(0))
    model = torch.nn.Linear(3, 1)

    def loss_fn(model, batch, step):
        seen.append(denormals_flushed())
        return {"loss": model(batch[0]).pow(2).mean()}

    cfg = TrainConfig(steps=3, batch_size=5, flush_denormals=flush)
    Trainer(model, loss_fn, (x,), cfg, quiet=True).fit()
    assert seen == [flush] * 3
    assert not denormals_flushed()  # as it was before fit


def _lc_backprop_trainer(flush: bool):
    """A unit of 2 stacked flagship lc-backprop models on digit canvases, as the flagship
    trains them (lr 1e-2, batches of 32)."""
    from analyses.baselines import (
        BaselineConfig,
        Job,
        _stack,
        _training_streams,
        build_model,
        build_retina,
        make_loss_fn,
        retina_inputs,
    )
    from analyses.tasks import canvas_split, digits_split

    cfg = BaselineConfig(steps=150, batch_size=32, lr=1e-2)
    retina = build_retina("uniform", n_cells=288, canvas_px=24, pixels_per_deg=2.0, seed=0)
    cv = canvas_split(digits_split(seed=0), canvas_px=24, digit_px=12, n_train=96, n_test=8)
    train = retina_inputs(retina, cv.train.images, cv.train.labels, render=False)
    seeds = [0, 1]
    jobs = [Job(retina, train, {"test": train}, s) for s in seeds]
    stacked = _stack([build_model("lc-backprop", retina, cfg, seed=s) for s in seeds])
    data, _ = _training_streams("lc-backprop", jobs, cfg)
    tcfg = TrainConfig(
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        grad_clip=cfg.grad_clip,
        flush_denormals=flush,
    )
    loss_fn = make_loss_fn("lc-backprop", cfg, seeds=seeds)
    return Trainer(stacked, loss_fn, data, tcfg, quiet=True, seeds=seeds)


def _denormals_in_adam_state(trainer) -> int:
    n = 0
    for state in trainer.optimizer.state.values():
        for key in ("exp_avg", "exp_avg_sq"):
            a = state[key].abs()
            n += int(((a > 0) & (a < TINY)).sum())
    return n


@pytest.fixture
def one_thread():
    """One torch thread, as the flagship's workers train: the flag is a property of the thread
    that runs fit, and torch's pool threads (used with more) keep their own."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_flushing_learns_the_same_model_without_the_denormals(one_thread):
    """Trained without flushing, the flagship's lc-backprop leaves denormals in Adam's moments
    (so the comparison is not vacuous); flushed, none, and the per-step losses are the same up
    to float rounding amplified by training."""
    runs = {}
    for flush in (False, True):
        trainer = _lc_backprop_trainer(flush)
        history = trainer.fit()
        runs[flush] = (history["replica_loss"].values, _denormals_in_adam_state(trainer))
    (plain, n_plain), (flushed, n_flushed) = runs[False], runs[True]
    assert n_plain > 0
    assert n_flushed == 0
    assert abs(plain[0] - flushed[0]).max() < 1e-6  # the first step: the same arithmetic
    assert abs(plain[-20:].mean(0) - flushed[-20:].mean(0)).max() < 0.05 * plain[0].mean()
