"""Tests of neurosim.train: config validation, schedules, history, checkpoints, exact resume."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from neurosim.train import TrainConfig, Trainer, lr_factor


def _data(n: int = 50):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 5, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return x, y


def _model(seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(16, 2)
    )
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model


def _loss(model, batch, step):
    x, y = batch
    # uses the default generator (dropout, noise) on purpose: the trainer must make it exact
    noisy = x + 0.01 * torch.randn_like(x)
    ce = F.cross_entropy(model(noisy), y)
    return {"loss": ce, "ce": ce.detach(), "step_seen": torch.tensor(float(step))}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("batch_size", -1),
        ("lr", 0.0),
        ("schedule", "linear"),
        ("gamma", 1.5),
        ("min_lr_fraction", 2.0),
        ("checkpoint_every", -1),
        ("grad_clip", 0.0),
        ("warmup_steps", -2),
        ("seed", -1),
    ],
)
def test_bad_config_names_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_config_unknown_key_and_toml_round_trip():
    with pytest.raises(ValueError, match="epoch"):
        TrainConfig.from_dict({"epoch": 3})
    cfg = TrainConfig(epochs=3, schedule="step", grad_clip=1.0)
    assert TrainConfig.from_toml(cfg.to_toml()) == cfg


def test_lr_schedules():
    cos = TrainConfig(epochs=2, schedule="cosine", min_lr_fraction=0.1)
    assert lr_factor(cos, 0, 10) == pytest.approx(1.0)
    assert lr_factor(cos, 10, 10) == pytest.approx(0.55)
    assert lr_factor(cos, 20, 10) == pytest.approx(0.1)
    step = TrainConfig(epochs=6, schedule="step", step_epochs=2, gamma=0.5)
    assert [lr_factor(step, s, 3) for s in (0, 5, 6, 12)] == [1.0, 1.0, 0.5, 0.25]
    warm = TrainConfig(schedule="constant", warmup_steps=4)
    assert lr_factor(warm, 0, 10) == pytest.approx(0.25)
    assert lr_factor(warm, 4, 10) == 1.0


def test_fit_history_dataset_and_learning():
    x, y = _data()
    cfg = TrainConfig(epochs=4, batch_size=16, lr=0.03, schedule="cosine")
    evals = []

    def eval_fn(model):
        acc = (model(x).argmax(-1) == y).float().mean().item()
        evals.append(model.training)
        return {"accuracy": acc}

    trainer = Trainer(_model(), _loss, (x, y), cfg, quiet=True, eval_fn=eval_fn)
    hist = trainer.fit()
    assert trainer.steps_per_epoch == 4 and trainer.step == 16
    assert hist.sizes == {"step": 16, "epoch": 4}
    for name in ("loss", "ce", "lr", "epoch_loss", "eval_accuracy"):
        assert name in hist and "units" in hist[name].attrs and "long_name" in hist[name].attrs
    assert hist["step_seen"].values.tolist() == list(range(16))
    assert hist["lr"].values[0] == pytest.approx(0.03)
    assert hist["lr"].values[-1] < 0.003
    assert evals == [False] * 4  # eval_fn runs in eval mode
    assert hist["eval_accuracy"].values[-1] > 0.8
    assert hist["epoch_loss"].values[-1] < hist["epoch_loss"].values[0]


def test_fit_is_reproducible_and_leaves_global_rng_alone():
    x, y = _data()
    cfg = TrainConfig(epochs=2, batch_size=8, seed=3)
    model = _model()  # (nn.Linear's default init draws from the global generator)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = Trainer(model, _loss, (x, y), cfg, quiet=True)
    a.fit()
    assert torch.equal(torch.get_rng_state(), before)
    b = Trainer(_model(), _loss, (x, y), cfg, quiet=True)
    b.fit()
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
    c = Trainer(_model(), _loss, (x, y), cfg.updated({"seed": 4}), quiet=True)
    c.fit()
    assert not all(
        torch.equal(pa, pc)
        for pa, pc in zip(a.model.parameters(), c.model.parameters(), strict=True)
    )


@pytest.mark.parametrize("schedule", ["cosine", "step"])
def test_resume_equals_uninterrupted_bitwise(tmp_path, schedule):
    x, y = _data(45)  # 45 examples, batch 8: 6 steps per epoch, the last one short
    cfg = TrainConfig(
        epochs=3, batch_size=8, lr=0.02, schedule=schedule, step_epochs=1, checkpoint_every=4
    )
    full = Trainer(_model(), _loss, (x, y), cfg, quiet=True, checkpoint_path=tmp_path / "a.pt")
    full_hist = full.fit()

    ckpt = tmp_path / "b.pt"
    first = Trainer(_model(), _loss, (x, y), cfg, quiet=True, checkpoint_path=ckpt)
    first.fit(max_steps=10)  # "killed" at step 10; the last checkpoint is from step 8
    assert first.step == 10
    # a fresh process: different initial weights, which the checkpoint must overwrite
    second = Trainer(_model(seed=9), _loss, (x, y), cfg, quiet=True, checkpoint_path=ckpt)
    second.load_checkpoint(ckpt)
    assert second.step == 8
    hist = second.resume(ckpt)
    assert second.step == full.step == 18
    for pa, pb in zip(full.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
    for name in full_hist.data_vars:
        assert full_hist[name].values.tolist() == hist[name].values.tolist()
    # optimiser moments identical too
    sa, sb = full.optimizer.state_dict()["state"], second.optimizer.state_dict()["state"]
    for k in sa:
        assert torch.equal(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"])


def test_checkpoint_written_atomically_and_validated(tmp_path):
    x, y = _data()
    cfg = TrainConfig(epochs=1, batch_size=16, checkpoint_every=2)
    trainer = Trainer(_model(), _loss, (x, y), cfg, quiet=True, checkpoint_path=tmp_path / "c.pt")
    trainer.fit()
    assert (tmp_path / "c.pt").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind
    other = Trainer(
        _model(),
        _loss,
        (x, y),
        cfg.updated({"lr": 0.5}),
        quiet=True,
        checkpoint_path=tmp_path / "c.pt",
    )
    with pytest.raises(ValueError, match="different TrainConfig"):
        other.load_checkpoint(tmp_path / "c.pt")
    with pytest.raises(ValueError, match="does not exist"):
        trainer.load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="checkpoint_path"):
        Trainer(_model(), _loss, (x, y), cfg, quiet=True)


def test_bad_data_and_loss():
    x, y = _data()
    cfg = TrainConfig(epochs=1, batch_size=16)
    with pytest.raises(ValueError, match="first dimension"):
        Trainer(_model(), _loss, (x, y[:-1]), cfg)
    with pytest.raises(ValueError, match="'loss'"):
        Trainer(_model(), lambda m, b, s: {"ce": m(b[0]).sum()}, (x, y), cfg, quiet=True).fit()
    with pytest.raises(ValueError, match="batch_size"):
        Trainer(_model(), _loss, (x, y), cfg.updated({"batch_size": 100, "drop_last": True}))


def test_drop_last_and_steps():
    x, y = _data(50)
    cfg = TrainConfig(epochs=2, batch_size=16, drop_last=True, schedule="constant")
    trainer = Trainer(_model(), _loss, (x, y), cfg, quiet=True)
    trainer.fit()
    assert trainer.steps_per_epoch == 3 and trainer.step == 6
    assert math.isfinite(trainer.history_dataset()["loss"].values[-1])


def _recording_loss(seen):
    def loss_fn(model, batch, step):
        seen.append(tuple(t.clone() for t in batch))
        x = batch[0].float()
        out = model(x.reshape(-1, 1)).sum() * 0.0
        return {"loss": out}

    return loss_fn


def test_stream_batches_keep_examples_paired_and_match_epochs():
    """A stream draws exactly batch_size examples per step with each example's tensors
    together, and when N is a multiple of the batch the same batches as epochs."""
    n = 48
    x = torch.arange(n)
    y = torch.arange(n) * 10
    model = torch.nn.Linear(1, 1)
    stream_seen, epoch_seen = [], []
    stream = TrainConfig(steps=9, batch_size=16, seed=5)
    Trainer(model, _recording_loss(stream_seen), (x, y), stream, quiet=True).fit()
    epochs = TrainConfig(epochs=3, batch_size=16, seed=5)
    Trainer(model, _recording_loss(epoch_seen), (x, y), epochs, quiet=True).fit()
    assert len(stream_seen) == len(epoch_seen) == 9
    for (xs, ys), (xe, ye) in zip(stream_seen, epoch_seen, strict=True):
        assert torch.equal(ys, xs * 10)  # inputs and labels drawn together
        assert torch.equal(xs, xe) and torch.equal(ys, ye)
    # a stream straddles passes when N is not a multiple of the batch: every batch full
    seen = []
    Trainer(model, _recording_loss(seen), (x[:40], y[:40]), stream, quiet=True).fit()
    assert all(b[0].shape == (16,) for b in seen)
    first_pass = torch.cat([b[0] for b in seen])[:40]
    assert sorted(first_pass.tolist()) == list(range(40))


def test_unlabelled_stream_and_replicas():
    """Replicas get their own data and seeds; the unlabelled examples follow the labelled ones
    in every batch; the batch has a replica axis."""
    model = torch.nn.Linear(1, 1)
    a = (torch.arange(32), torch.zeros(32, dtype=torch.long))
    b = (torch.arange(100, 124), torch.ones(24, dtype=torch.long))
    ua = (torch.arange(1000, 1010), torch.full((10,), -1))
    ub = (torch.arange(2000, 2010), torch.full((10,), -1))
    cfg = TrainConfig(steps=4, batch_size=8, unlabelled_batch_size=3, seed=0)
    seen = []
    Trainer(
        model, _recording_loss(seen), [a, b], cfg, quiet=True, unlabelled=[ua, ub], seeds=[3, 4]
    ).fit()
    for xs, ys in seen:
        assert xs.shape == (11, 2) and ys.shape == (11, 2)
        assert bool((xs[:8, 0] < 32).all()) and bool((xs[:8, 1] >= 100).all())
        assert bool((xs[8:, 0] >= 1000).all()) and bool((xs[8:, 1] >= 2000).all())
        assert bool((ys[8:] == -1).all()) and bool((ys[:8, 1] == 1).all())
    # replica 1 draws what a trainer of its data alone with its seed draws
    alone = []
    Trainer(model, _recording_loss(alone), [b], cfg, quiet=True, unlabelled=[ub], seeds=[4]).fit()
    for (xs, _), (xa, _) in zip(seen, alone, strict=True):
        assert torch.equal(xs[:, 1], xa[:, 0])
    with pytest.raises(ValueError, match="one dataset per replica"):
        Trainer(model, _recording_loss([]), [a, b], cfg, unlabelled=[ua], seeds=[3, 4])
    with pytest.raises(ValueError, match="steps > 0"):
        Trainer(model, _recording_loss([]), [a, b], TrainConfig(epochs=1, batch_size=8))


def test_mapping_data_and_unlabelled_of_another_shape_beside_it():
    """Mapping data gives dict batches; an unlabelled mapping with keys of its own (a video of
    another shape) comes beside the labelled tensors, from its own stream."""
    model = torch.nn.Linear(1, 1)
    data = {"responses": torch.arange(32)[:, None].float(), "labels": torch.arange(32)}
    video = {"video": torch.arange(1000, 1020)[:, None, None].expand(20, 3, 2).float()}
    cfg = TrainConfig(steps=3, batch_size=8, unlabelled_batch_size=5, seed=0)
    seen = []

    def loss_fn(model, batch, step):
        seen.append(dict(batch))
        return {"loss": model(batch["responses"]).sum() * 0.0}

    Trainer(model, loss_fn, data, cfg, quiet=True, unlabelled=video).fit()
    for b in seen:
        assert set(b) == {"responses", "labels", "video"}
        assert b["responses"].shape == (8, 1) and b["video"].shape == (5, 3, 2)
        assert torch.equal(b["responses"][:, 0].long(), b["labels"])
        assert bool((b["video"] >= 1000).all())
    same = {"responses": torch.zeros(10, 1), "labels": torch.full((10,), -1)}
    seen.clear()
    Trainer(model, loss_fn, data, cfg, quiet=True, unlabelled=same).fit()
    assert all(b["labels"].shape == (13,) and bool((b["labels"][8:] == -1).all()) for b in seen)
    with pytest.raises(ValueError, match="keys of data"):
        Trainer(model, loss_fn, data, cfg, unlabelled={"labels": torch.zeros(4)})


@pytest.mark.parametrize("replicas", [False, True])
def test_stream_batches_keep_each_example_with_its_label(replicas):
    """In a stream (steps > 0) every tensor of a batch is indexed by the same draw: inputs,
    labels (and unlabelled inputs) stay paired, and with N a multiple of the batch size the
    stream draws the epoch way's batches."""
    x = torch.arange(24.0)[:, None]
    y = torch.arange(24)
    seen = []

    def loss_fn(model, batch, step):
        seen.append(tuple(t.clone() for t in batch))
        return {"loss": model.weight.sum() * 0.0}

    data = [(x, y), (x, y)] if replicas else (x, y)
    unl = [(x + 100, y + 100)] * 2 if replicas else (x + 100, y + 100)
    cfg = TrainConfig(steps=6, batch_size=4, unlabelled_batch_size=2, seed=3)
    seeds = [3, 4] if replicas else None
    Trainer(
        torch.nn.Linear(1, 1), loss_fn, data, cfg, quiet=True, unlabelled=unl, seeds=seeds
    ).fit()
    for bx, by in seen:
        assert torch.equal(bx[..., 0].long(), by)
    first = [b[1] for b in seen]
    seen.clear()
    epochs = TrainConfig(epochs=1, batch_size=4, seed=3)
    Trainer(torch.nn.Linear(1, 1), loss_fn, (x, y), epochs, quiet=True).fit()
    if not replicas:  # replica 0 (seed 3) and the plain stream draw the epoch way's batches
        assert all(torch.equal(a[:4], b[1]) for a, b in zip(first, seen, strict=True))
