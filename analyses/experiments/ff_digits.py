"""Forward-Forward on flat digits: the sanity check of the rule before it runs on the columns.

The Forward-Forward talk (00:07-00:29). The sklearn digits (8x8, offline; the talk's MNIST is
28x28) with no retina and one "column": three nets of two hidden ReLU layers of ``hidden``
units, every layer's input length-normalised (:func:`neurosim.forward_forward.length_normalise`,
00:09:23):

``ff``
    feed-forward Forward-Forward (00:07-00:16): the label enters the input as a one-of-N code
    (``label_value`` at the label; the talk puts it in the first 10 pixels, here it is appended to
    the 64 pixels), each layer is trained by itself (its input detached) to give positive data
    (the true label) a goodness ``sum(h**2)`` above ``threshold * hidden`` and negative data (a
    wrong label) one below.
``ff-recurrent``
    the recurrent version (00:19-00:26): image at the bottom, label clamped at the top, every
    hidden layer at step ``t`` computed from the length-normalised layers below and above at
    step ``t - 1`` (a damped synchronous update: ``damping`` of the old state is kept), ``n_steps``
    steps from one bottom-up pass, the FF loss of every layer collected from the first step,
    local in time (every input detached).
``backprop``
    the same feed-forward architecture (the same normalised layers; a softmax output in place of
    the label input) trained end to end by backpropagation of the cross-entropy.

Negatives are hard (00:14:05): a linear softmax classifier of the normalised hidden activities
under the neutral label (every class ``label_value / 10``), trained alongside on detached
features, proposes them (:func:`neurosim.forward_forward.negative_labels`). The learning rate
decays to zero (cosine, 00:26:06). The FF nets are scored three ways: ``goodness`` (run every
label, pick the highest total goodness over the layers (and steps): the talk's way, 00:13:02),
``shortlist`` (the softmax proposes its top ``shortlist`` labels, goodness decides, 00:13:26) and
``softmax`` (the readout alone, 00:12:23); the backprop net by its softmax output.

The seeds of one net are trained together as the columns of one
:class:`neurosim.columns.ColumnLinear` stack (one column per seed, each built from its own
seed, reading its own mini-batches in its own order, its own negatives): replicas, exactly as if
trained one by one.

Results (``results.nc``)
------------------------
``test_error(net, scoring, seed)`` (NaN where a net is not scored that way); its seed mean and 95 %
Student-t interval over seeds, clipped to [0, 1], ``test_error_mean``, ``test_error_ci_low``,
``test_error_ci_high`` ``(net, scoring)``; ``train_loss(net, seed, epoch)``; ``train_seconds(net)``;
``receptive_field(net, seed, unit, row, col)`` (the first layer's weights from the 64 pixels,
``ff-recurrent``: its bottom-up weights), ``label_weights(seed, unit, label)`` (``ff``'s first
layer's weights from the label code).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from torch import nn

from neurosim.columns import ColumnLinear
from neurosim.config import Config as _ConfigBase
from neurosim.config import check_choice, check_int, check_range, check_seed
from neurosim.forward_forward import (
    ff_loss,
    goodness,
    label_code,
    length_normalise,
    negative_labels,
    neutral_code,
)

__all__ = ["Config", "run", "figures", "summary", "RESULT_FILE", "NETS", "SCORINGS"]

RESULT_FILE = "results.nc"

#: the nets, in the order of the ``net`` dimension
NETS = ("ff", "ff-recurrent", "backprop")
#: how a net is scored, in the order of the ``scoring`` dimension
SCORINGS = ("goodness", "shortlist", "softmax")
#: digit classes
N_CLASSES = 10
#: pixels of a sklearn digit
N_PIXELS = 64
#: the talk's numbers (percent test error), for the summary
TALK_ERRORS = {
    "MNIST, recurrent FF (2 hidden layers, 8 steps)": 1.31,
    "MNIST, backprop (fully connected)": "1.3-1.4",
    "CIFAR-10, backprop, local fields, 2 / 3 hidden layers": "37 / 39",
    "CIFAR-10, FF, same nets": "slightly worse",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_ConfigBase):
    """Settings of the flat-digits Forward-Forward check (defaults: the full run, ~2 min on one
    CPU core).

    Attributes:
        seed: first seed; seeds ``seed .. seed + n_seeds - 1`` set each net's initialisation, its
            data order and its negatives.
        n_seeds: repetitions (>= 1; >= 2 for intervals), in [1, 100].
        nets: which of :data:`NETS` to run.
        hidden: units of each hidden layer, in [1, 4096].
        n_layers: hidden layers, in [1, 8].
        n_steps: settling steps of ``ff-recurrent`` (the talk: 8), in [1, 100].
        damping: fraction of its previous state a recurrent layer keeps at each step, in [0, 1).
        epochs: passes over the training set, in [1, 10000].
        batch_size: images per step, in [2, 4096].
        lr: Adam learning rate, decayed to zero (cosine), in (0, 1].
        threshold: FF threshold per unit (a layer is positive when ``sum(h**2) > threshold *
            hidden``), in [0, 1e3].
        positive_goodness: ``"high"`` (00:08:11) or ``"low"`` (00:25:09) goodness for positive
            data, for both FF nets.
        negatives: ``"hard"`` (from the softmax readout) or ``"uniform"`` wrong labels.
        label_value: the active entry of the label code (the talk: 5), in (0, 100].
        w_readout: weight of the softmax readout's cross-entropy (it trains the readout only).
        shortlist: labels the softmax proposes for the ``shortlist`` method, in [1, 9].
        test_fraction: fraction of each digit class held out as the test set, in (0, 1).
        split_seed: seed of the train/test split.
    """

    seed: int = 0
    n_seeds: int = 3
    nets: tuple[str, ...] = NETS
    hidden: int = 256
    n_layers: int = 2
    n_steps: int = 8
    damping: float = 0.3
    epochs: int = 60
    batch_size: int = 64
    lr: float = 3e-3
    threshold: float = 0.5
    positive_goodness: Literal["high", "low"] = "high"
    negatives: Literal["hard", "uniform"] = "hard"
    label_value: float = 5.0
    w_readout: float = 1.0
    shortlist: int = 2
    test_fraction: float = 0.3
    split_seed: int = 0

    def __post_init__(self) -> None:
        check_seed("seed", self.seed)
        check_int("n_seeds", self.n_seeds, 1, 100)
        if not self.nets:
            raise ValueError(f"nets must list at least one of {list(NETS)}")
        for i, net in enumerate(self.nets):
            check_choice(f"nets[{i}]", net, NETS)
        if len(set(self.nets)) != len(self.nets):
            raise ValueError(f"nets must not repeat a name; got {list(self.nets)}")
        check_int("hidden", self.hidden, 1, 4096)
        check_int("n_layers", self.n_layers, 1, 8)
        check_int("n_steps", self.n_steps, 1, 100)
        check_range("damping", self.damping, 0.0, 1.0, hi_inclusive=False)
        check_int("epochs", self.epochs, 1, 10_000)
        check_int("batch_size", self.batch_size, 2, 4096)
        check_range("lr", self.lr, 0.0, 1.0, lo_inclusive=False)
        check_range("threshold", self.threshold, 0.0, 1e3)
        check_choice("positive_goodness", self.positive_goodness, ("high", "low"))
        check_choice("negatives", self.negatives, ("hard", "uniform"))
        check_range("label_value", self.label_value, 0.0, 100.0, lo_inclusive=False)
        check_range("w_readout", self.w_readout, 0.0, 1e3)
        check_int("shortlist", self.shortlist, 1, N_CLASSES - 1)
        check_range(
            "test_fraction", self.test_fraction, 0.0, 1.0, lo_inclusive=False, hi_inclusive=False
        )
        check_seed("split_seed", self.split_seed)

    @classmethod
    def quick(cls) -> Config:
        """The test-suite size: two seeds, small layers, a few epochs at a higher learning rate,
        4 recurrent steps (seconds)."""
        return cls(n_seeds=2, hidden=64, epochs=10, lr=5e-3, n_steps=4)

    @property
    def sign(self) -> float:
        return 1.0 if self.positive_goodness == "high" else -1.0


# ------------------------------------------------------------------------------------ the nets


def _layer(seeds, d_in: int, d_out: int) -> ColumnLinear:
    """One :class:`ColumnLinear` ``[S, d_in, d_out]`` with a column per seed, column ``i``
    initialised from ``seeds[i]`` alone (so a seed's net does not depend on which other seeds
    run)."""
    return ColumnLinear.stack(
        [
            ColumnLinear(1, d_in, d_out, generator=torch.Generator().manual_seed(int(s)))
            for s in seeds
        ]
    )


def _build(kind: str, config: Config, seeds: list[int]):
    """The net ``kind`` for ``S = len(seeds)`` seeds: a module whose every layer is a
    ``ColumnLinear`` ``[S, d_in, d_out]`` (layer ``i`` of seed ``s`` initialised from seed
    ``s + 7919 * i``); see :class:`_FlatFF`, :class:`_RecurrentFF`, :class:`_Backprop`."""
    if kind == "ff":
        return _FlatFF(config, seeds)
    if kind == "ff-recurrent":
        return _RecurrentFF(config, seeds)
    return _Backprop(config, seeds)


class _FlatFF(nn.Module):
    """Feed-forward FF net. ``hidden_states(x [B, S, 64], code [B, S, K])`` -> one ``[B, S, H]``
    per layer, each layer reading its detached, length-normalised input; ``readout`` reads
    the normalised layers (``[B, S, n_layers * H] -> [B, S, K]``)."""

    def __init__(self, config: Config, seeds: list[int]) -> None:
        super().__init__()
        h, n = config.hidden, config.n_layers
        sizes = [N_PIXELS + N_CLASSES] + [h] * n
        self.layers = nn.ModuleList(
            _layer([s + 7919 * i for s in seeds], a, b)
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))
        )
        self.readout = _layer([s + 7919 * n for s in seeds], n * h, N_CLASSES)

    def hidden_states(self, x, code) -> list:
        out, inp = [], torch.cat([x, code], dim=-1)
        for layer in self.layers:
            inp = torch.relu(layer(length_normalise(inp.detach())))
            out.append(inp)
        return out

    def trajectory(self, x, code) -> list[list]:
        """The states as one "step" (``[[h_1, ..., h_n]]``), the recurrent net's interface."""
        return [self.hidden_states(x, code)]


class _RecurrentFF(nn.Module):
    """Recurrent FF net: ``up[l]`` from the layer below (the pixels for ``l = 0``), ``down[l]``
    from the layer above (the clamped label code for the top layer).
    ``trajectory(x, code)`` -> per step ``1 .. n_steps`` one ``[B, S, H]`` per layer."""

    def __init__(self, config: Config, seeds: list[int]) -> None:
        super().__init__()
        h, n = config.hidden, config.n_layers
        below = [N_PIXELS] + [h] * (n - 1)
        above = [h] * (n - 1) + [N_CLASSES]
        self.up = nn.ModuleList(
            _layer([s + 7919 * i for s in seeds], below[i], h) for i in range(n)
        )
        self.down = nn.ModuleList(
            _layer([s + 7919 * (n + i) for s in seeds], above[i], h) for i in range(n)
        )
        self.readout = _layer([s + 7919 * 2 * n for s in seeds], n * h, N_CLASSES)
        self.n_steps, self.damping = config.n_steps, config.damping

    def trajectory(self, x, code) -> list[list]:
        n = len(self.up)
        with torch.no_grad():  # the initial state: one bottom-up pass
            hs, inp = [], x
            for up in self.up:
                inp = torch.relu(up(length_normalise(inp)))
                hs.append(inp)
        steps = []
        for _ in range(self.n_steps):
            below = [x] + hs[:-1]
            above = hs[1:] + [code]
            new = []
            for i in range(n):
                up = self.up[i](length_normalise(below[i].detach()))
                down = self.down[i](length_normalise(above[i].detach()))
                h = torch.relu(up + down)
                new.append(self.damping * hs[i].detach() + (1.0 - self.damping) * h)
            hs = new
            steps.append(hs)
        return steps


class _Backprop(nn.Module):
    """The feed-forward architecture trained end to end: ``logits(x [B, S, 64]) -> [B, S, K]``
    (every layer reads its length-normalised input, as the FF nets' do)."""

    def __init__(self, config: Config, seeds: list[int]) -> None:
        super().__init__()
        h, n = config.hidden, config.n_layers
        sizes = [N_PIXELS] + [h] * n
        self.layers = nn.ModuleList(
            _layer([s + 7919 * i for s in seeds], a, b)
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))
        )
        self.out = _layer([s + 7919 * n for s in seeds], h, N_CLASSES)

    def logits(self, x):
        for layer in self.layers:
            x = torch.relu(layer(length_normalise(x)))
        return self.out(length_normalise(x))


# ------------------------------------------------------------------------------------ FF


def _features(states: list):
    """The readout's input: the last step's layers, each normalised, concatenated."""
    return torch.cat([length_normalise(h) for h in states[-1]], dim=-1)


def _codes(labels, config: Config):
    return label_code(labels, N_CLASSES, N_CLASSES, config.label_value)


def _neutral(shape, config: Config, device):
    return neutral_code(shape, N_CLASSES, N_CLASSES, config.label_value, device=device)


def _total_goodness(steps: list[list]):
    """``[B, S]``: goodness summed over the layers, averaged over the steps."""
    return torch.stack([sum(goodness(h) for h in hs) for hs in steps]).mean(dim=0)


def _ff_loss_fn(config: Config, seeds: list[int]):
    """The Trainer's loss of an FF net: the logistic FF loss of every layer at every step, plus
    the readout's cross-entropy on detached features; summed over seeds (each seed's own)."""
    theta = config.threshold * config.hidden

    def loss_fn(net, batch, step):
        x, y = batch  # [B, S, 64], [B, S]
        b, s = y.shape
        with torch.no_grad():
            neutral = net.trajectory(x, _neutral((b, s), config, x.device))
        logits = net.readout(_features(neutral).detach())  # [B, S, K]
        ce = F.cross_entropy(logits.reshape(-1, N_CLASSES), y.reshape(-1), reduction="none")
        ce = ce.view(b, s).mean(dim=0)  # [S]
        neg = torch.stack(
            [
                negative_labels(
                    logits[:, i],
                    y[:, i],
                    mode=config.negatives,
                    generator=torch.Generator().manual_seed(seed * 1_000_003 + step),
                )
                for i, seed in enumerate(seeds)
            ],
            dim=1,
        )
        steps = net.trajectory(
            torch.cat([x, x]), torch.cat([_codes(y, config), _codes(neg, config)])
        )
        ff = 0.0
        for hs in steps:
            for h in hs:
                g = goodness(h)  # [2B, S]
                ff = ff + ff_loss(g[:b], g[b:], theta, config.sign).mean(dim=0)
        ff = ff / (len(steps) * len(steps[0]))  # [S]
        total = ff + config.w_readout * ce
        return {
            "loss": total.sum(),
            "replica_loss": total.detach(),
            "ff": ff.detach(),
            "readout": ce.detach(),
        }

    return loss_fn


def _bp_loss_fn():
    def loss_fn(net, batch, step):
        x, y = batch
        b, s = y.shape
        ce = F.cross_entropy(
            net.logits(x).reshape(-1, N_CLASSES), y.reshape(-1), reduction="none"
        ).view(b, s)
        per = ce.mean(dim=0)
        return {"loss": per.sum(), "replica_loss": per.detach()}

    return loss_fn


def _predict_ff(net, x, config: Config) -> dict[str, np.ndarray]:
    """``{method: [N, S] predicted labels}`` of an FF net on ``x [N, S, 64]``."""
    n, s = x.shape[:2]
    with torch.no_grad():
        neutral = net.trajectory(x, _neutral((n, s), config, x.device))
        logits = net.readout(_features(neutral))  # [N, S, K]
        scores = []
        for k in range(N_CLASSES):
            code = _codes(torch.full((n, s), k, dtype=torch.long, device=x.device), config)
            scores.append(config.sign * _total_goodness(net.trajectory(x, code)))
        scores = torch.stack(scores, dim=-1)  # [N, S, K]
        short = logits.topk(config.shortlist, dim=-1).indices  # [N, S, k]
        pick = scores.gather(2, short).argmax(dim=-1, keepdim=True)
        return {
            "goodness": scores.argmax(dim=-1).cpu().numpy(),
            "shortlist": short.gather(2, pick)[..., 0].cpu().numpy(),
            "softmax": logits.argmax(dim=-1).cpu().numpy(),
        }


# ------------------------------------------------------------------------------------ running


def _train(kind: str, config: Config, data, seeds: list[int], device: str, quiet: bool):
    """Train net ``kind`` for every seed at once; returns ``(net, per-epoch loss [S, E], s)``."""
    import time

    from neurosim.train import TrainConfig, Trainer

    x_tr, y_tr = data
    net = _build(kind, config, seeds).to(device)
    steps_per_epoch = math.ceil(len(y_tr) / config.batch_size)
    tcfg = TrainConfig(
        steps=config.epochs * steps_per_epoch,
        batch_size=config.batch_size,
        lr=config.lr,
        schedule="cosine",
        min_lr_fraction=0.0,
        seed=seeds[0],
    )
    loss_fn = _bp_loss_fn() if kind == "backprop" else _ff_loss_fn(config, seeds)
    xt = torch.as_tensor(x_tr, dtype=torch.float32)
    yt = torch.as_tensor(y_tr, dtype=torch.long)
    trainer = Trainer(
        net,
        loss_fn,
        [(xt, yt)] * len(seeds),
        tcfg,
        device=device,
        quiet=quiet,
        seeds=seeds,
    )
    start = time.perf_counter()
    history = trainer.fit()
    seconds = time.perf_counter() - start
    per_step = history["replica_loss"].values  # [steps, S]
    per_epoch = per_step.reshape(config.epochs, steps_per_epoch, -1).mean(axis=1).T
    return net.eval(), per_epoch, seconds


def _first_layer(kind: str, net) -> tuple[np.ndarray, np.ndarray | None]:
    """``(pixel weights [S, H, 8, 8], label weights [S, H, K] or None)``."""
    w = (net.up[0] if kind == "ff-recurrent" else net.layers[0]).weight.detach().cpu().numpy()
    pixels = w[:, :N_PIXELS].transpose(0, 2, 1).reshape(w.shape[0], w.shape[2], 8, 8)
    labels = w[:, N_PIXELS:].transpose(0, 2, 1) if kind == "ff" else None
    return pixels, labels


def _load(config: Config):
    from analyses.tasks import digits_split

    split = digits_split(test_fraction=config.test_fraction, seed=config.split_seed)
    flat = [a.reshape(len(a), -1) for a in (split.x_train, split.x_test)]
    return (flat[0], split.y_train), (flat[1], split.y_test)


def run(config: Config, *, device: str = "cpu", quiet: bool = False) -> xr.Dataset:
    """Train every net for every seed and score it; see the module doc."""
    from analyses.progress import Progress
    from neurosim.config import check_device

    if not isinstance(config, Config):
        raise ValueError(f"config must be an ff_digits Config; got {type(config).__name__}")
    device = check_device(device)
    train, (x_te, y_te) = _load(config)
    seeds = [config.seed + i for i in range(config.n_seeds)]
    nets = list(config.nets)
    s, h = len(seeds), config.hidden
    error = np.full((len(nets), len(SCORINGS), s), np.nan)
    losses = np.full((len(nets), s, config.epochs), np.nan)
    seconds = np.full(len(nets), np.nan)
    rf = np.full((len(nets), s, h, 8, 8), np.nan)
    label_w = np.full((s, h, N_CLASSES), np.nan)
    xe = torch.as_tensor(x_te, dtype=torch.float32, device=device)[:, None].expand(-1, s, -1)
    progress = Progress(len(nets), desc="ff-digits", unit="nets (all seeds)", quiet=quiet)
    for i, kind in enumerate(nets):
        net, losses[i], seconds[i] = _train(kind, config, train, seeds, device, quiet=True)
        if kind == "backprop":
            with torch.no_grad():
                pred = {"softmax": net.logits(xe).argmax(dim=-1).cpu().numpy()}
        else:
            pred = _predict_ff(net, xe, config)
        for method, p in pred.items():
            error[i, SCORINGS.index(method)] = (p != y_te[:, None]).mean(axis=0)
        rf[i], lw = _first_layer(kind, net)
        if lw is not None:
            label_w[:] = lw
        best = float(np.nanmin(error[i].mean(axis=-1)))
        progress.update(kind, score=f"test error {100 * best:.2f} %")
    progress.close()
    arrays = (error, losses, seconds, rf, label_w)
    return _results(config, nets, seeds, arrays, n_train=len(train[1]), n_test=len(y_te))


def _results(config: Config, nets, seeds, arrays, *, n_train: int, n_test: int) -> xr.Dataset:
    """The results Dataset of :func:`run` from its errors, losses, times and weights."""
    from analyses.metrics import confidence_interval

    error, losses, seconds, rf, label_w = arrays
    h = config.hidden
    ds = xr.Dataset(
        coords={
            "net": ("net", np.array(nets, dtype=object), {"long_name": "net and learning rule"}),
            "scoring": (
                "scoring",
                np.array(SCORINGS, dtype=object),
                {"long_name": "how the net's answer is read"},
            ),
            "seed": ("seed", np.array(seeds), {"units": "1", "long_name": "seed"}),
            "epoch": ("epoch", np.arange(1, config.epochs + 1), {"units": "1"}),
            "unit": ("unit", np.arange(h), {"units": "1", "long_name": "first-layer unit"}),
            "row": ("row", np.arange(8), {"units": "pixel", "long_name": "image row"}),
            "col": ("col", np.arange(8), {"units": "pixel", "long_name": "image column"}),
            "label": ("label", np.arange(N_CLASSES), {"units": "1", "long_name": "digit class"}),
        }
    )
    ds["test_error"] = (("net", "scoring", "seed"), error)
    ds["test_error"].attrs = {"units": "1", "long_name": "fraction of test images misclassified"}
    ci = confidence_interval(ds["test_error"], axis="seed")
    for name, field, text in (
        ("test_error_mean", ci.mean, "test error, mean over seeds"),
        ("test_error_ci_low", ci.low.clip(0.0, 1.0), "test error, 95% t-interval low"),
        ("test_error_ci_high", ci.high.clip(0.0, 1.0), "test error, 95% t-interval high"),
    ):
        ds[name] = field.transpose("net", "scoring")
        ds[name].attrs = {"units": "1", "long_name": f"{text} (over seeds, clipped to [0, 1])"}
    ds["train_loss"] = (("net", "seed", "epoch"), losses)
    ds["train_loss"].attrs = {
        "units": "1",
        "long_name": "training loss per epoch (FF nets: FF + readout cross-entropy; backprop: CE)",
    }
    ds["train_seconds"] = (("net",), seconds)
    ds["train_seconds"].attrs = {"units": "s", "long_name": "training wall time, all seeds"}
    ds["receptive_field"] = (("net", "seed", "unit", "row", "col"), rf)
    ds["receptive_field"].attrs = {
        "units": "1",
        "long_name": "first-layer weight from each pixel (of the length-normalised input)",
    }
    ds["label_weights"] = (("seed", "unit", "label"), label_w)
    ds["label_weights"].attrs = {
        "units": "1",
        "long_name": "ff first-layer weight from each entry of the label code",
    }
    ds.attrs.update(
        {
            "title": "Forward-Forward vs backprop on flat sklearn digits",
            "dataset": "sklearn load_digits 8x8, pixels / 16",
            "n_train": n_train,
            "n_test": n_test,
            "chance_error": 0.9,
            "interval": "95% Student-t over seeds, clipped to [0, 1]",
            "goodness": f"sum of squares, positive data {config.positive_goodness}",
            "threshold_per_unit": config.threshold,
            "negatives": config.negatives,
            "shortlist": config.shortlist,
        }
    )
    return ds


# ------------------------------------------------------------------------------------ output


def _pct(ds: xr.Dataset, net: str, method: str) -> str:
    sel = dict(net=net, scoring=method)
    mean = float(ds["test_error_mean"].sel(sel))
    if not np.isfinite(mean):
        return "-"
    lo, hi = float(ds["test_error_ci_low"].sel(sel)), float(ds["test_error_ci_high"].sel(sel))
    if not np.isfinite(lo):
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} [{100 * lo:.2f}, {100 * hi:.2f}]"


def summary(ds: xr.Dataset) -> str:
    """Test error (%) of every net and scoring method with its interval, and the talk's."""
    n_seeds = ds.sizes["seed"]
    lines = [
        f"Forward-Forward on flat sklearn digits ({int(ds.attrs['n_train'])} train / "
        f"{int(ds.attrs['n_test'])} test, chance 90 % error); test error %, mean "
        f"[95% t-interval over {n_seeds} seed(s), clipped to [0, 100] %]",
        f"{'net':<14}" + "".join(f"{m:>24}" for m in ds["scoring"].values),
    ]
    for net in ds["net"].values:
        lines.append(
            f"{net!s:<14}" + "".join(f"{_pct(ds, net, m):>24}" for m in ds["scoring"].values)
        )
    secs = ", ".join(
        f"{net} {float(t):.0f} s"
        for net, t in zip(ds["net"].values, ds["train_seconds"].values, strict=True)
    )
    lines.append(f"training wall time (all seeds together): {secs}")
    lines.append("the talk (percent test error):")
    for what, value in TALK_ERRORS.items():
        lines.append(f"  {what}: {value}")
    return "\n".join(lines)


def figures(ds: xr.Dataset, out_dir: str | Path) -> list[Path]:
    """``ff_digits_fields``: the first layer's receptive fields (8x8 weight images of the
    ``n_show`` units with the largest weights, first seed; ``ff`` also its weights from the 10
    label entries), one row per net, a colour bar per net; ``ff_digits_errors``: test error of
    every net and method with its interval."""
    import matplotlib.pyplot as plt

    from analyses.figures import STYLE, save_figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nets = [str(n) for n in ds["net"].values]
    n_show = min(8, ds.sizes["unit"])
    seed = ds["seed"].values[0]
    rows = []  # (net, kind of row)
    for net in nets:
        rows.append((net, "pixels"))
        if net == "ff":
            rows.append((net, "labels"))
    heights = [1.0 if kind == "pixels" else 0.22 for _, kind in rows]
    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=(0.95 * n_show + 1.0, sum(heights) * 1.3 + 0.5))
        grid = fig.add_gridspec(
            len(rows),
            n_show + 1,
            height_ratios=heights,
            width_ratios=[1] * n_show + [0.07],
            hspace=0.45,
            wspace=0.12,
        )
        r = 0
        for net in nets:
            w = ds["receptive_field"].sel(net=net, seed=seed).values  # [H, 8, 8]
            lw = ds["label_weights"].sel(seed=seed).values if net == "ff" else None  # [H, K]
            units, vmax = _largest_units(w, lw, n_show)
            style = dict(cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            for j, u in enumerate(units):
                ax = fig.add_subplot(grid[r, j])
                im = ax.imshow(w[u], **style)
                ax.set_title(f"unit {int(u)}", fontsize=6, pad=2)
                ax.set_xticks([])
                ax.set_yticks([])
                if j == 0:
                    ax.set_ylabel(net, fontsize=7)
                if lw is not None:
                    lax = fig.add_subplot(grid[r + 1, j])
                    lax.imshow(lw[u][None, :], aspect="auto", **style)
                    lax.set_xticks(range(N_CLASSES), [str(k) for k in range(N_CLASSES)])
                    lax.tick_params(axis="x", labelsize=4, length=0, pad=1)
                    lax.set_yticks([])
                    if j == 0:
                        lax.set_ylabel("label", fontsize=5, rotation=0, ha="right", va="center")
            n_rows = 1 if lw is None else 2
            bar = fig.colorbar(im, cax=fig.add_subplot(grid[r : r + n_rows, n_show]))
            bar.ax.tick_params(labelsize=5)
            bar.set_label("weight (1)", fontsize=6)
            r += n_rows
        fig.suptitle(
            "first hidden layer: weights from the 8x8 pixels of the 8 largest-norm units "
            f"(seed {int(seed)}); ff: also from the 10 label entries (strip, digit 0-9)",
            fontsize=7,
        )
    paths = save_figure(fig, out_dir, "ff_digits_fields")
    return paths + _errors_figure(ds, out_dir, nets)


def _largest_units(w: np.ndarray, lw: np.ndarray | None, n_show: int) -> tuple[np.ndarray, float]:
    """The ``n_show`` units of largest weight norm (pixels, labels) and their largest |weight|."""
    flat = w.reshape(len(w), -1) if lw is None else np.concatenate([w.reshape(len(w), -1), lw], 1)
    units = np.argsort(-np.sqrt((flat**2).sum(axis=1)))[:n_show]
    return units, float(np.abs(flat[units]).max()) or 1.0


def _errors_figure(ds: xr.Dataset, out_dir: Path, nets: list[str]) -> list[Path]:
    """``ff_digits_errors``: every net's test error per scoring method, with its interval."""
    from analyses.figures import new_figure, save_figure

    methods = [str(m) for m in ds["scoring"].values]
    fig, axes = new_figure(1, 1, width_in=4.5, height_in=2.8)
    ax = axes[0, 0]
    width = 0.8 / len(methods)
    shades = ["0.2", "0.5", "0.8"]
    for j, m in enumerate(methods):
        mean = 100 * ds["test_error_mean"].sel(scoring=m).values
        lo = 100 * ds["test_error_ci_low"].sel(scoring=m).values
        hi = 100 * ds["test_error_ci_high"].sel(scoring=m).values
        err = np.where(np.isfinite(lo), np.vstack([mean - lo, hi - mean]), 0.0)
        x = np.arange(len(nets)) + (j - (len(methods) - 1) / 2) * width
        ok = np.isfinite(mean)
        ax.bar(
            x[ok],
            mean[ok],
            width,
            yerr=err[:, ok],
            color=shades[j % 3],
            edgecolor="0.0",
            capsize=2,
            label=m,
        )
    ax.set_xticks(range(len(nets)), nets)
    ax.set_ylabel("test error (%)")
    ax.set_title(f"flat digits, {ds.sizes['seed']} seed(s); bars: 95 % t-interval")
    ax.legend(frameon=False, title="scored by", fontsize=6, title_fontsize=6)
    return save_figure(fig, out_dir, "ff_digits_errors")
