"""Distillation into a small net, and the mythical 3 (the distillation talk, 00:19-00:27).

On the sklearn digits (8x8, offline), per seed:

``small-hard``
    a small MLP (ReLU) trained on the hard labels, no regularisation;
``big-regularised``
    a bigger MLP with input and hidden dropout, input jitter (random sub-pixel shifts by up to
    half a pixel, plus Gaussian pixel noise), L2 weight decay and a max-norm constraint on every
    unit's incoming weights (Srivastava et al. 2014) — "all sorts of regularisers";
``small-soft``
    the small net, trained exactly like ``small-hard`` (no regularisers) but on the big net's
    soft targets at temperature ``T``: ``T**2 * KL(softmax(z_big/T) || softmax(z_small/T))``
    on the clean training set (the transfer set) (Hinton, Vinyals & Dean 2015, section 3);
    ``hard_label_weight`` adds the label cross-entropy (0 by default, as in the talk);
``small-soft-no3``
    the same, but every training image of a 3 is removed from the transfer set: the net has an
    output for 3 and only learns about it from the small probabilities the big net gives class
    3 on other digits;
``small-soft-no3-bias``
    that net with the bias of its class-3 logit raised by ``delta``.

Rule for the bias raise (documented, uses no test data and no image of a 3): the net has
learned a prior for each class, estimated as its mean predicted probability ``pbar_k`` over the
transfer set. A change of class priors multiplies the posteriors by the ratio of new to old
priors (Saerens, Latinne & Decaestecker 2002), i.e. adds ``log(pi_new / pi_old)`` to the
logits. Wanting 3s to be "about as common as other things" (the distillation talk, 00:26), the new
prior of 3 is the mean learned prior of the other classes, so ``delta = log(mean_{k != 3} pbar_k /
pbar_3)``.
The dataset also holds a sweep of ``delta`` (test errors and class-3 accuracy for every shift),
drawn in the figure, to show where the rule lands.

All seeds train at once: every layer is a :class:`neurosim.columns.ColumnLinear` with one column
per seed (each its own initialisation and data order), as the cortical columns are.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import xarray as xr

from analyses.experiments.codistill_nets import (
    DIGITS_PER_CLASS,
    MAX_EPOCHS,
    MAX_LAYERS,
    MAX_WIDTH,
    digits_train_size,
)
from neurosim.config import Config, check_int, check_range, check_seed

__all__ = ["Config", "run", "figures", "summary", "RESULT_FILE", "MODELS", "bias_raise"]

RESULT_FILE = "results.nc"

#: labels of the ``model`` dimension
MODELS = ("small-hard", "big-regularised", "small-soft", "small-soft-no3", "small-soft-no3-bias")

#: the distillation talk's MNIST test errors (10,000 test images)
SEED_MNIST_ERRORS = {"small-hard": 146, "big-regularised": 67, "small-soft": 74}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(Config):
    """Settings of the distillation experiment (defaults: the full run, minutes on 2 CPUs).

    Attributes:
        seed: first seed; seeds ``seed .. seed + n_seeds - 1`` are trained side by side.
        n_seeds: repetitions, in [1, 100].
        small_hidden: hidden layer sizes of the small net (at most 8, each in [1, 4096]).
        big_hidden: hidden layer sizes of the big net (at most 8, each in [1, 4096]).
        epochs_small: epochs of every small-net training, in [1, 10000].
        epochs_big: epochs of the big net (regularised nets need longer), in [1, 10000].
        batch_size: examples per step, in [1, training images] (1258 at the default
            ``test_fraction``).
        lr: Adam learning rate (cosine schedule to zero).
        temperature: ``T`` of the soft targets.
        hard_label_weight: weight of the label cross-entropy added to the soft-target loss.
        omitted_class: the class never shown in the transfer set (3 in the seed), in [0, 9].
        dropout_input: dropout probability on the big net's input.
        dropout_hidden: dropout probability on the big net's hidden units.
        jitter_px: maximal random shift of the big net's input images (pixels, sub-pixel).
        noise_std: standard deviation of Gaussian pixel noise added to the big net's inputs.
        weight_decay_big: L2 penalty of the big net.
        max_norm: max-norm of every big-net unit's incoming weight vector.
        test_fraction: fraction of each class held out for testing.
        split_seed: seed of the train/test split.
        bias_sweep_max: the sweep of the class-3 bias shift covers ``[0, bias_sweep_max]``.
    """

    seed: int = 0
    n_seeds: int = 3
    small_hidden: tuple[int, ...] = (64, 64)
    big_hidden: tuple[int, ...] = (256, 256)
    epochs_small: int = 60
    epochs_big: int = 60
    batch_size: int = 32
    lr: float = 3e-3
    temperature: float = 2.0
    hard_label_weight: float = 0.0
    omitted_class: int = 3
    dropout_input: float = 0.1
    dropout_hidden: float = 0.3
    jitter_px: float = 0.5
    noise_std: float = 0.05
    weight_decay_big: float = 1e-5
    max_norm: float = 3.0
    test_fraction: float = 0.3
    split_seed: int = 0
    bias_sweep_max: float = 10.0

    def __post_init__(self) -> None:
        check_seed("seed", self.seed)
        check_seed("split_seed", self.split_seed)
        check_int("n_seeds", self.n_seeds, 1, 100)
        for name in ("small_hidden", "big_hidden"):
            layers = getattr(self, name)
            if len(layers) > MAX_LAYERS:
                raise ValueError(f"{name} must list at most {MAX_LAYERS} layers; got {len(layers)}")
            for i, h in enumerate(layers):
                check_int(f"{name}[{i}]", h, 1, MAX_WIDTH)
        check_int("epochs_small", self.epochs_small, 1, MAX_EPOCHS)
        check_int("epochs_big", self.epochs_big, 1, MAX_EPOCHS)
        check_range("lr", self.lr, 0.0, 1.0, lo_inclusive=False)
        check_range("temperature", self.temperature, 0.0, None, lo_inclusive=False)
        check_range("hard_label_weight", self.hard_label_weight, 0.0)
        check_int("omitted_class", self.omitted_class, 0, len(DIGITS_PER_CLASS) - 1)
        check_range("dropout_input", self.dropout_input, 0.0, 1.0, hi_inclusive=False)
        check_range("dropout_hidden", self.dropout_hidden, 0.0, 1.0, hi_inclusive=False)
        check_range("jitter_px", self.jitter_px, 0.0, 2.0)
        check_range("noise_std", self.noise_std, 0.0)
        check_range("weight_decay_big", self.weight_decay_big, 0.0)
        check_range("max_norm", self.max_norm, 0.0, None, lo_inclusive=False)
        check_range(
            "test_fraction", self.test_fraction, 0.0, 1.0, lo_inclusive=False, hi_inclusive=False
        )
        check_range("bias_sweep_max", self.bias_sweep_max, 0.0, 50.0, lo_inclusive=False)
        # the batch is drawn from the training set, whose size the test fraction sets
        check_int("batch_size", self.batch_size, 1, digits_train_size(self.test_fraction))

    @classmethod
    def quick(cls) -> Config:
        """The test-suite size: one seed, tiny nets, two epochs each (seconds)."""
        return cls(
            n_seeds=1,
            small_hidden=(16,),
            big_hidden=(32,),
            epochs_small=2,
            epochs_big=2,
            batch_size=64,
        )


def bias_raise(mean_probs, omitted_class: int) -> float:
    """The class-``omitted_class`` bias shift: ``log(mean_{k != c} pbar_k / pbar_c)``.

    Args:
        mean_probs: ``[K]`` the net's mean predicted probability of each class over the
            transfer set (its learned class prior).
        omitted_class: ``c``.

    Returns:
        The logit shift that makes the learned prior of class ``c`` equal to the mean learned
        prior of the other classes (prior-shift correction, Saerens et al. 2002).
    """
    p = np.asarray(mean_probs, dtype=float)
    if p.ndim != 1 or not 0 <= omitted_class < p.size:
        raise ValueError(
            f"mean_probs must be [K] with omitted_class in [0, K-1]; got {p.shape}, {omitted_class}"
        )
    if np.any(p < 0) or not np.all(np.isfinite(p)):
        raise ValueError("mean_probs must be finite and non-negative")
    others = np.delete(p, omitted_class).mean()
    tiny = np.finfo(float).tiny
    return float(np.log(max(others, tiny) / max(p[omitted_class], tiny)))


def _nets(n_seeds: int, d_in: int, hidden, n_classes: int, *, p_in: float, p_hid: float, seed):
    """A stack of ``n_seeds`` independent MLPs (one column each) with optional dropout."""
    import torch

    from neurosim.columns import ColumnLinear

    gen = torch.Generator().manual_seed(seed)
    sizes = [d_in, *hidden, n_classes]

    class Net(torch.nn.Module):
        """``x [B, n_seeds, d_in] -> logits [B, n_seeds, K]``."""

        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList(
                ColumnLinear(n_seeds, a, b, generator=gen)
                for a, b in zip(sizes[:-1], sizes[1:], strict=True)
            )
            self.drop_in = torch.nn.Dropout(p_in)
            self.drop_hid = torch.nn.Dropout(p_hid)

        def forward(self, x):
            x = self.drop_in(x)
            for i, layer in enumerate(self.layers):
                x = layer(x)
                if i < len(self.layers) - 1:
                    x = self.drop_hid(torch.relu(x))
            return x

    return Net()


def _jitter(x, jitter_px: float, noise_std: float):
    """Random sub-pixel shifts (bilinear, zero fill) and Gaussian noise; ``x [B, S, 64]`` 8x8.

    Every image is translated by ``(dx, dy)`` drawn uniformly from ``[-jitter_px, jitter_px]``
    (an 8x8 digit is about 3.5 times coarser than a 28x28 MNIST digit, so half a pixel here is
    about the two-pixel jitter used on MNIST). Uses the default generator, which
    :class:`neurosim.train.Trainer` seeds at every step.
    """
    import torch
    import torch.nn.functional as F

    if jitter_px == 0 and noise_std == 0:
        return x
    b, s, d = x.shape
    side = int(round(math.sqrt(d)))
    out = x
    if jitter_px:
        img = x.reshape(b * s, 1, side, side)
        shift = (torch.rand(b * s, 2) * 2.0 - 1.0) * jitter_px * (2.0 / side)
        theta = torch.zeros(b * s, 2, 3)
        theta[:, 0, 0] = 1.0
        theta[:, 1, 1] = 1.0
        theta[:, :, 2] = shift
        grid = F.affine_grid(theta.to(x.device), list(img.shape), align_corners=False)
        img = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out = img.reshape(b, s, d)
    if noise_std:
        out = out + noise_std * torch.randn_like(out)
    return out


def _fit(
    net,
    *,
    x,
    y,
    tables,
    epochs: int,
    config: Config,
    seed: int,
    device: str,
    soft=None,
    regularise: bool = False,
):
    """Train ``net`` (all seeds at once); seed column ``s`` walks through ``tables[s]``.

    Args:
        x: ``[N, 64]``; y: ``[N]``; tables: ``[S, m]`` example indices per seed column.
        soft: ``[N, S, K]`` teacher logits, or None for hard labels.
    """
    import torch
    import torch.nn.functional as F

    from neurosim.learning import distillation_kl
    from neurosim.train import TrainConfig, Trainer

    tab = torch.as_tensor(tables, dtype=torch.int64, device=device)
    n_classes = int(y.max()) + 1
    t = config.temperature

    def loss_fn(model, batch, step):
        (j,) = batch
        rows = tab[:, j].T  # [b, S]
        xb = x[rows]  # [b, S, 64]
        if regularise:
            xb = _jitter(xb, config.jitter_px, config.noise_std)
        logits = model(xb)
        if soft is None:
            ce = F.cross_entropy(logits.reshape(-1, n_classes), y[rows].reshape(-1))
            return {"loss": ce}
        seeds = torch.arange(rows.shape[1], device=rows.device)
        teacher = torch.softmax(soft[rows, seeds[None, :]] / t, dim=-1)  # [b, S, K]
        kl = distillation_kl(logits, teacher, t)
        out = {"loss": kl, "soft_kl": kl.detach()}
        if config.hard_label_weight:
            ce = F.cross_entropy(logits.reshape(-1, n_classes), y[rows].reshape(-1))
            out["loss"] = kl + config.hard_label_weight * ce
            out["ce"] = ce.detach()
        return out

    def max_norm(model):
        for layer in model.layers[:-1]:
            norms = layer.weight.norm(dim=1, keepdim=True)  # [S, 1, d_out]: incoming weights
            layer.weight.mul_(torch.clamp(config.max_norm / norms.clamp_min(1e-12), max=1.0))

    cfg = TrainConfig(
        epochs=epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        weight_decay=config.weight_decay_big if regularise else 0.0,
        schedule="cosine",
        seed=seed,
    )
    Trainer(
        net,
        loss_fn,
        torch.arange(tables.shape[1]),
        cfg,
        device=device,
        quiet=True,
        after_step=max_norm if regularise else None,
    ).fit()
    net.eval()
    return net


def _logits(net, x, n_seeds: int):
    import torch

    with torch.no_grad():
        return net(x[:, None, :].expand(-1, n_seeds, -1))


#: the trainings of a run, in order, each one sub-run covering all seeds (trained side by side);
#: the students on soft targets use the big net's outputs on the transfer set
STAGES = ("small-hard", "big-regularised", "small-soft", "small-soft-no3")


def run(config: Config, *, device: str = "cpu", quiet: bool = False, store=None) -> xr.Dataset:
    """Train the five models for every seed and return errors, class-3 accuracy and the sweep.

    Each of :data:`STAGES` is one sub-run; with a ``store`` (:class:`analyses.subruns.
    SubrunStore`) finished stages are kept and skipped when the run is resumed.
    """
    import torch

    from analyses.subruns import run_units
    from analyses.tasks import digits_split
    from neurosim.config import check_device

    if not isinstance(config, Config):
        raise ValueError(f"config must be a distill Config; got {type(config).__name__}")
    device = check_device(device)
    split = digits_split(test_fraction=config.test_fraction, seed=config.split_seed)
    x_tr = torch.as_tensor(split.x_train.reshape(len(split.x_train), -1), device=device)
    y_tr = torch.as_tensor(split.y_train, device=device)
    x_te = torch.as_tensor(split.x_test.reshape(len(split.x_test), -1), device=device)
    y_te = split.y_test
    n_classes = int(split.y_train.max()) + 1
    c3 = config.omitted_class
    seeds = [config.seed + i for i in range(config.n_seeds)]
    s_n = len(seeds)
    rng = np.random.default_rng([config.seed, 11])
    n_train = len(split.y_train)
    keep = np.flatnonzero(split.y_train != c3)
    full_tables = np.stack([rng.permutation(n_train) for _ in seeds])
    no3_tables = np.stack([keep[rng.permutation(keep.size)] for _ in seeds])
    d_in = x_tr.shape[1]
    base = 1000 * config.seed
    common = {"x": x_tr, "y": y_tr, "config": config, "device": device}

    def fit_small(tables, epochs: int, seed: int, soft=None):
        # every small net starts from the same initial weights (base + 1): only the targets
        # (hard labels, soft targets, soft targets without 3s) differ
        net = _nets(s_n, d_in, config.small_hidden, n_classes, p_in=0.0, p_hid=0.0, seed=base + 1)
        return _fit(net, tables=tables, epochs=epochs, seed=seed, soft=soft, **common)

    def test_logits(net) -> np.ndarray:
        return _logits(net, x_te, s_n).cpu().numpy()

    def compute(unit, done):
        (stage,) = unit
        if stage == "small-hard":
            net = fit_small(full_tables, config.epochs_small, base + 1)
            return {stage: {"test_logits": test_logits(net)}}
        if stage == "big-regularised":
            big = _nets(
                s_n,
                d_in,
                config.big_hidden,
                n_classes,
                p_in=config.dropout_input,
                p_hid=config.dropout_hidden,
                seed=base + 2,
            )
            epochs = config.epochs_big
            big = _fit(
                big, tables=full_tables, epochs=epochs, seed=base + 2, regularise=True, **common
            )
            transfer = _logits(big, x_tr, s_n).cpu().numpy()  # [N, S, K]: the soft targets
            return {stage: {"test_logits": test_logits(big), "transfer_logits": transfer}}
        soft = torch.as_tensor(done["big-regularised"]["transfer_logits"], device=device)
        if stage == "small-soft":
            net = fit_small(full_tables, config.epochs_small, base + 3, soft)
            return {stage: {"test_logits": test_logits(net)}}
        # same number of steps as with all classes: epochs scaled by the smaller transfer set
        epochs_no3 = max(1, round(config.epochs_small * n_train / keep.size))
        net = fit_small(no3_tables, epochs_no3, base + 4, soft)
        transfer_probs = torch.softmax(_logits(net, x_tr[torch.as_tensor(keep)], s_n), -1)
        prior = transfer_probs.mean(0).cpu().numpy()  # [S, K]: the learned class priors
        return {stage: {"test_logits": test_logits(net), "learned_prior": prior}}

    def score(stage, result):
        errors = (result["test_logits"].argmax(-1) != y_te[:, None]).sum(0)
        return f"test errors {errors.mean():.1f}"

    done = run_units(STAGES, compute, store=store, desc="distill", quiet=quiet, score=score)
    return _dataset(config, seeds, done, y_te, n_train=n_train, n_transfer_no3=int(keep.size))


def _dataset(config: Config, seeds, done, y_te, *, n_train: int, n_transfer_no3: int):
    """The results Dataset from the stages' test logits ``[n_test, S, K]``."""
    c3 = config.omitted_class
    s_n = len(seeds)
    n_classes = done["small-hard"]["test_logits"].shape[-1]
    test_logits, deltas = _with_bias_model(done, c3, s_n)
    no3 = test_logits["small-soft-no3"]
    mean_probs = done["small-soft-no3"]["learned_prior"]

    is3 = y_te == c3
    pred = {m: test_logits[m].argmax(-1) for m in MODELS}  # [n_test, S]
    errors = np.stack([(pred[m] != y_te[:, None]).sum(0) for m in MODELS]).astype(float)
    acc3 = np.stack([(pred[m][is3] == c3).mean(0) for m in MODELS])
    err_not3 = np.stack([(pred[m][~is3] != y_te[~is3, None]).sum(0) for m in MODELS])
    sweep = np.linspace(0.0, config.bias_sweep_max, 41)
    sweep_err, sweep_acc3 = _bias_sweep(no3, y_te, is3, c3, sweep, s_n)

    n_test = len(y_te)
    ds = xr.Dataset(
        _data_vars(c3, n_test, errors, acc3, err_not3, deltas, mean_probs, sweep_err, sweep_acc3),
        coords={
            "model": list(MODELS),
            "seed": seeds,
            "class": np.arange(n_classes),
            "shift": sweep,
        },
    )
    ds["shift"].attrs = {"units": "1", "long_name": f"logit added to the class-{c3} bias"}
    ds.attrs.update(
        {
            "title": "distillation on sklearn digits",
            "n_train": n_train,
            "n_test": n_test,
            "n_test_omitted_class": int(is3.sum()),
            "n_transfer_without_omitted": n_transfer_no3,
            "omitted_class": c3,
            "temperature": config.temperature,
            "seed_mnist_errors_small_big_soft": np.array([146, 67, 74]),
        }
    )
    return ds


def _with_bias_model(done, c3: int, s_n: int) -> tuple[dict, np.ndarray]:
    """The stages' test logits plus the no-3 net with its class-3 bias raised, and the raises."""
    test_logits = {stage: done[stage]["test_logits"] for stage in STAGES}
    no3 = test_logits["small-soft-no3"]
    mean_probs = done["small-soft-no3"]["learned_prior"]
    deltas = np.array([bias_raise(mean_probs[s], c3) for s in range(s_n)])
    shifted = no3.copy()
    shifted[..., c3] += deltas[None, :]
    test_logits["small-soft-no3-bias"] = shifted
    return test_logits, deltas


def _bias_sweep(
    no3: np.ndarray, y_te: np.ndarray, is3: np.ndarray, c3: int, sweep: np.ndarray, s_n: int
) -> tuple[np.ndarray, np.ndarray]:
    """``[S, shift]`` test errors and class-3 accuracy of the no-3 net per class-3 bias shift."""
    sweep_err = np.empty((s_n, sweep.size))
    sweep_acc3 = np.empty((s_n, sweep.size))
    for k, d in enumerate(sweep):
        logit = no3.copy()
        logit[..., c3] += d
        p = logit.argmax(-1)
        sweep_err[:, k] = (p != y_te[:, None]).sum(0)
        sweep_acc3[:, k] = (p[is3] == c3).mean(0)
    return sweep_err, sweep_acc3


def _data_vars(
    c3: int,
    n_test: int,
    errors: np.ndarray,
    acc3: np.ndarray,
    err_not3: np.ndarray,
    deltas: np.ndarray,
    mean_probs: np.ndarray,
    sweep_err: np.ndarray,
    sweep_acc3: np.ndarray,
) -> dict:
    """The data variables of the results Dataset, with their attributes."""
    return {
        "test_errors": (
            ("model", "seed"),
            errors,
            {"units": "count", "long_name": "test-set errors"},
        ),
        "test_error_rate": (
            ("model", "seed"),
            errors / n_test,
            {"units": "1", "long_name": "fraction of the test set wrong"},
        ),
        "class3_accuracy": (
            ("model", "seed"),
            acc3,
            {"units": "1", "long_name": f"fraction of test images of class {c3} recognised"},
        ),
        "errors_on_other_classes": (
            ("model", "seed"),
            err_not3.astype(float),
            {"units": "count", "long_name": f"test errors on images not of class {c3}"},
        ),
        "bias_shift": (
            ("seed",),
            deltas,
            {"units": "1", "long_name": f"logit added to class {c3} by the prior rule"},
        ),
        "learned_prior": (
            ("seed", "class"),
            mean_probs,
            {
                "units": "1",
                "long_name": "no-3 net: mean predicted probability per class, transfer set",
            },
        ),
        "sweep_test_errors": (
            ("seed", "shift"),
            sweep_err,
            {"units": "count", "long_name": f"test errors of the no-{c3} net vs bias shift"},
        ),
        "sweep_class3_accuracy": (
            ("seed", "shift"),
            sweep_acc3,
            {"units": "1", "long_name": f"class-{c3} accuracy of the no-{c3} net vs shift"},
        ),
    }


def summary(ds: xr.Dataset) -> str:
    """Errors (count and rate) and class-3 accuracy per model, mean [min-max] over seeds."""
    n_test = int(ds.attrs["n_test"])
    c3 = int(ds.attrs["omitted_class"])
    lines = [
        f"distillation on sklearn digits ({int(ds.attrs['n_train'])} train / {n_test} test, "
        f"{int(ds.attrs['n_test_omitted_class'])} test {c3}s), T = {ds.attrs['temperature']:g}, "
        f"{ds.sizes['seed']} seed(s)",
        f"{'model':<22}{'errors':>8}{'[min-max]':>11}{'error %':>9}{f'{c3}s right':>10}"
        f"{'seed MNIST':>12}",
    ]
    for m in ds["model"].values.tolist():
        e = ds["test_errors"].sel(model=m).values
        a = ds["class3_accuracy"].sel(model=m).values
        ref = SEED_MNIST_ERRORS.get(m)
        lines.append(
            f"{m:<22}{e.mean():>8.1f}{f'[{e.min():.0f}-{e.max():.0f}]':>11}"
            f"{100 * e.mean() / n_test:>8.2f}%{100 * a.mean():>9.1f}%"
            f"{'' if ref is None else str(ref):>12}"
        )
    d = ds["bias_shift"].values
    moved = "raised" if d.mean() >= 0 else "lowered"
    lines.append(
        f"class-{c3} bias {moved} by {abs(d.mean()):.2f} by the prior rule (per seed: "
        + ", ".join(f"{v:+.2f}" for v in d)
        + ")"
    )
    best = ds["shift"].values[int(np.argmin(ds["sweep_test_errors"].mean("seed").values))]
    lines.append(f"(best shift on the test set, for reference only: {best:.2f})")
    lines.append("seed (MNIST, 10000 test): 146 small / 67 big / 74 small on soft targets")
    return "\n".join(lines)


def figures(ds: xr.Dataset, out_dir: str | Path) -> list[Path]:
    """Left: test errors per model; right: the no-3 net's errors and 3-accuracy vs bias shift."""
    from analyses.figures import (
        errorbar_note,
        figure_style,
        legend_outside,
        new_figure,
        save_figure,
    )

    n_seeds = ds.sizes["seed"]
    with figure_style():
        fig, axes = new_figure(1, 2, width_in=7.0, height_in=3.4)
        handles = _draw_models(axes[0, 0], ds) + _draw_bias_sweep(axes[0, 1], ds)
        n_test = int(ds.attrs["n_test"])
        note = (
            errorbar_note(n_seeds, what=f"95 % t CI clipped to [0, {n_test}] errors")
            if n_seeds > 1
            else "one seed: no error bars"
        )
        legend_outside(axes[0, 1], handles=handles, below=True, note=note)
    return save_figure(fig, out_dir, "distill")


def _draw_models(ax, ds: xr.Dataset) -> list:
    """Bars: mean test errors over seeds (95 % t-interval), dots: the seeds."""
    from analyses.figures import COLORS
    from analyses.metrics import confidence_interval

    n_test = int(ds.attrs["n_test"])
    models = ds["model"].values.tolist()
    errors = ds["test_errors"].transpose("model", "seed").values
    ci = confidence_interval(errors, axis=1, bounds=(0.0, float(n_test)))
    # the interval clipped to [0, n_test] errors: asymmetric where a bound cuts it
    below = np.where(np.isfinite(ci.low), ci.mean - ci.low, 0.0)
    above = np.where(np.isfinite(ci.high), ci.high - ci.mean, 0.0)
    bars = ax.bar(
        range(len(models)),
        ci.mean,
        yerr=np.stack([below, above]) if errors.shape[1] > 1 else None,
        capsize=3,
        color="0.85",
        edgecolor=COLORS[0],
        label="mean over seeds",
    )
    dots = None
    for i, row in enumerate(errors):
        jitter = np.linspace(-0.2, 0.2, row.size) if row.size > 1 else np.zeros(1)
        (dots,) = ax.plot(
            i + jitter,
            row,
            "o",
            color=COLORS[2],
            markersize=3,
            label="one seed",
        )
    ax.set_xticks(range(len(models)))
    ax.set_xticklabels(models, rotation=25, ha="right")
    ax.set_ylabel(f"test errors (of {n_test}; chance {0.9 * n_test:.0f})")
    ax.set_title("test errors per model")
    return [bars, dots]


def _draw_bias_sweep(ax, ds: xr.Dataset) -> list:
    """The no-3 net's test errors (left axis) and 3s recognised (right axis) vs the shift."""
    from analyses.figures import COLORS, LINESTYLES

    shift = ds["shift"].values
    c3 = int(ds.attrs["omitted_class"])
    (errors,) = ax.plot(
        shift,
        ds["sweep_test_errors"].mean("seed"),
        color=COLORS[0],
        linestyle=LINESTYLES[0],
        label="test errors (left axis)",
    )
    ax.set_xlabel(f"logit added to class {c3}")
    ax.set_ylabel("test errors")
    right = ax.twinx()
    right.spines["right"].set_visible(True)
    (recognised,) = right.plot(
        shift,
        100 * ds["sweep_class3_accuracy"].mean("seed"),
        color=COLORS[1],
        linestyle=LINESTYLES[1],
        label=f"{c3}s recognised (right axis)",
    )
    right.set_ylabel(f"{c3}s recognised (%)", color=COLORS[1])
    right.tick_params(axis="y", colors=COLORS[1])
    right.set_ylim(-2, 102)
    rule = ax.axvline(
        float(ds["bias_shift"].mean()),
        color=COLORS[2],
        linestyle=LINESTYLES[2],
        linewidth=1.2,
        label=f"shift by the prior rule ({float(ds['bias_shift'].mean()):+.2f})",
    )
    ax.set_title(f"net never shown a {c3}: its {c3}-logit shifted")
    return [errors, recognised, rule]
