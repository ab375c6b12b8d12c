"""Co-distillation of ten small nets on handwritten digits (the distillation talk, 00:27-00:29).

Ten small MLPs are trained on the sklearn digits (8x8, offline) four ways:

``independent``
    each net alone on the labels (cross-entropy), all nets on the whole training set, each with
    its own initialisation and its own order of examples;
``ensemble``
    the average of the predicted probabilities of those ten independent nets;
``codistilled``
    as ``independent`` plus "peer pressure": after a warm-up (the nets "learn a bit separately"
    first), each net is also trained towards the average of the *other* nets' softened
    predictions at temperature ``T`` on its own mini-batch, with the ``T**2``-scaled KL of
    Hinton, Vinyals & Dean (2015) (:func:`neurosim.learning.distillation_kl`), the other nets
    detached;
``codistilled-subsets``
    as ``codistilled`` but net ``i`` only ever receives the examples of its own subset of the
    training set (disjoint when ``subset_fraction * n_nets <= 1``): its labels *and* its inputs.
    Knowledge of the other subsets can reach it only through the peers' soft predictions on its
    own examples. The same number of optimisation steps as the other conditions.

The ten nets are one module: a :class:`neurosim.columns.ColumnMLP` with one "column" per net, so
every layer is a ``[n_nets, d_in, d_out]`` tensor applied with a batched matmul, exactly as the
cortical columns are (no Python loop over nets). The peers' predictions on net ``i``'s batch are
one more batched forward pass with every net reading every other net's batch.

Results (``results.nc``)
------------------------
``test_errors(condition, seed, net)``: test-set errors (count) of each net. The ensemble is one
classifier per seed: its errors are stored at ``net = 0`` and the other nets hold NaN, so that
NaN-skipping reductions over ``net`` (xarray's default) give the ensemble's value as its mean, min
and max. ``test_error_rate`` is the same divided by the test-set size. ``ensemble_errors
(condition, seed)`` is the error count of the probability-averaged ensemble of each condition's
nets; ``subset_alone_errors(seed, net)`` is the baseline for ``codistilled-subsets``: the same
nets on the same subsets without peers.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import xarray as xr

from neurosim.config import Config, check_int, check_range, check_seed

__all__ = ["Config", "run", "figures", "summary", "RESULT_FILE", "CONDITIONS", "digits_train_size"]

RESULT_FILE = "results.nc"

#: the labels of the ``condition`` dimension, in this order
CONDITIONS = ("independent", "ensemble", "codistilled", "codistilled-subsets")

#: the distillation talk's MNIST numbers (10,000 test images), for the summary
SEED_MNIST_ERRORS = {"independent": 158, "ensemble": 143}

#: images per class of the sklearn digits (1797 in all), which these experiments train on
DIGITS_PER_CLASS = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)

#: upper bounds of the sizes: nets in the group (the peers' pass costs n_nets**2 per batch),
#: hidden layers and their width, epochs
MAX_NETS, MAX_LAYERS, MAX_WIDTH, MAX_EPOCHS = 100, 8, 4096, 10_000


def digits_train_size(test_fraction: float) -> int:
    """Training images of :func:`analyses.tasks.digits_split` at ``test_fraction``.

    The split holds out ``floor(test_fraction * n_c + 0.5)`` images of each class ``c``.
    """
    return sum(n - int(np.floor(test_fraction * n + 0.5)) for n in DIGITS_PER_CLASS)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(Config):
    """Settings of the co-distillation experiment (defaults: the full run, minutes on 2 CPUs).

    Attributes:
        seed: first seed; seeds ``seed .. seed + n_seeds - 1`` are run (initialisation and data
            order; the train/test split is fixed by ``split_seed``).
        n_seeds: repetitions, in [1, 100].
        n_nets: nets in the peer group, in [2, 100].
        hidden: hidden layer sizes of every net (at most 8 layers, each in [1, 4096]).
        epochs: passes over the full training set (the subset condition takes as many steps),
            in [1, 10000].
        batch_size: examples per net per step, in [1, training images] (1258 at the default
            ``test_fraction``).
        lr: Adam learning rate (cosine schedule to zero).
        weight_decay: L2 penalty (Adam).
        temperature: softmax temperature ``T`` of the peers' soft targets.
        codistill_weight: weight of the ``T**2``-scaled KL term once fully on.
        warmup_epochs: epochs (of the full set) before peer pressure starts, in [0, epochs].
        ramp_epochs: epochs over which its weight rises linearly from 0 to ``codistill_weight``,
            in [0, epochs].
        subset_fraction: fraction of the training set each net sees in ``codistilled-subsets``.
        test_fraction: fraction of each digit class held out as the test set.
        split_seed: seed of the train/test split.
    """

    seed: int = 0
    n_seeds: int = 3
    n_nets: int = 10
    hidden: tuple[int, ...] = (16,)
    epochs: int = 20
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.0
    temperature: float = 3.0
    codistill_weight: float = 1.0
    warmup_epochs: int = 5
    ramp_epochs: int = 5
    subset_fraction: float = 0.1
    test_fraction: float = 0.3
    split_seed: int = 0

    def __post_init__(self) -> None:
        check_seed("seed", self.seed)
        check_seed("split_seed", self.split_seed)
        check_int("n_seeds", self.n_seeds, 1, 100)
        check_int("n_nets", self.n_nets, 2, MAX_NETS)
        if len(self.hidden) > MAX_LAYERS:
            raise ValueError(
                f"hidden must list at most {MAX_LAYERS} layers; got {len(self.hidden)}"
            )
        for i, h in enumerate(self.hidden):
            check_int(f"hidden[{i}]", h, 1, MAX_WIDTH)
        check_int("epochs", self.epochs, 1, MAX_EPOCHS)
        check_int("warmup_epochs", self.warmup_epochs, 0, self.epochs)
        check_int("ramp_epochs", self.ramp_epochs, 0, self.epochs)
        check_range("lr", self.lr, 0.0, 1.0, lo_inclusive=False)
        check_range("weight_decay", self.weight_decay, 0.0)
        check_range("temperature", self.temperature, 0.0, None, lo_inclusive=False)
        check_range("codistill_weight", self.codistill_weight, 0.0)
        check_range("subset_fraction", self.subset_fraction, 0.0, 1.0, lo_inclusive=False)
        check_range(
            "test_fraction", self.test_fraction, 0.0, 1.0, lo_inclusive=False, hi_inclusive=False
        )
        # the batch is drawn from the training set, whose size the test fraction sets
        check_int("batch_size", self.batch_size, 1, digits_train_size(self.test_fraction))

    @classmethod
    def quick(cls) -> Config:
        """The test-suite size: one seed, four nets, a few epochs (seconds)."""
        return cls(
            n_seeds=1,
            n_nets=4,
            hidden=(16,),
            epochs=2,
            batch_size=64,
            warmup_epochs=1,
            ramp_epochs=0,
            subset_fraction=0.25,
        )


def _load_digits(config: Config):
    from analyses.tasks import digits_split

    split = digits_split(test_fraction=config.test_fraction, seed=config.split_seed)
    x_tr = split.x_train.reshape(len(split.x_train), -1)
    x_te = split.x_test.reshape(len(split.x_test), -1)
    return x_tr, split.y_train, x_te, split.y_test


def _subset_table(n_train: int, n_nets: int, fraction: float, rng: np.random.Generator):
    """``[n_nets, m]`` example indices: consecutive windows of one seeded permutation.

    ``m = max(1, round(fraction * n_train))``; the windows do not overlap while
    ``m * n_nets <= n_train`` and wrap around the permutation otherwise.
    """
    m = max(1, int(round(fraction * n_train)))
    perm = rng.permutation(n_train)
    starts = (np.arange(n_nets) * m) % n_train
    table = (starts[:, None] + np.arange(m)[None, :]) % n_train
    idx = perm[table]
    # each net's own order of its examples
    return np.stack([row[rng.permutation(m)] for row in idx])


def _train_group(
    config: Config,
    *,
    x_train,
    y_train,
    x_test,
    table: np.ndarray,
    peer_weight: float,
    init_seed: int,
    order_seed: int,
    total_steps: int,
    device: str,
    quiet: bool,
):
    """Train ``n_nets`` nets, net ``i`` on examples ``table[i]``; return test probabilities.

    Returns:
        ``[n_test, n_nets, K]`` softmax probabilities of every net on the test set.
    """
    import math

    import torch

    from neurosim.columns import ColumnMLP
    from neurosim.train import TrainConfig, Trainer

    n_nets, m = table.shape
    n_classes = int(y_train.max()) + 1
    xt = torch.as_tensor(x_train, dtype=torch.float32, device=device)
    yt = torch.as_tensor(y_train, dtype=torch.int64, device=device)
    tab = torch.as_tensor(table, dtype=torch.int64, device=device)
    gen = torch.Generator().manual_seed(init_seed)
    model = ColumnMLP(
        n_nets, xt.shape[1], config.hidden, n_classes, activation="relu", generator=gen
    )
    steps_per_epoch = math.ceil(m / config.batch_size)
    epochs = max(1, round(total_steps / steps_per_epoch))
    full_steps_per_epoch = math.ceil(len(x_train) / config.batch_size)
    warmup = config.warmup_epochs * full_steps_per_epoch
    ramp = config.ramp_epochs * full_steps_per_epoch
    loss_fn = _group_loss(
        xt, yt, tab, n_classes, peer_weight, warmup, ramp, config.temperature, device
    )
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        weight_decay=config.weight_decay,
        schedule="cosine",
        seed=order_seed,
    )
    trainer = Trainer(model, loss_fn, torch.arange(m), cfg, device=device, quiet=quiet)
    trainer.fit()
    model.eval()
    with torch.no_grad():
        xe = torch.as_tensor(x_test, dtype=torch.float32, device=device)
        probs = torch.softmax(model(xe[:, None, :].expand(-1, n_nets, -1)), dim=-1)
    return probs.cpu().numpy()


def _group_loss(xt, yt, tab, n_classes: int, peer_weight: float, warmup, ramp, t, device: str):
    """The group's loss: cross-entropy plus the ramped KL to the mean of the other nets."""
    import torch

    from neurosim.learning import codistillation_weight, distillation_kl

    n_nets = tab.shape[0]
    diag = torch.eye(n_nets, dtype=torch.bool, device=device)

    def loss_fn(net, batch, step):
        (j,) = batch
        rows = tab[:, j].T  # [b, n_nets]: net i's examples in column i
        x = xt[rows]  # [b, n_nets, d]
        logits = net(x)  # [b, n_nets, K]
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, n_classes), yt[rows].reshape(-1))
        w = peer_weight * codistillation_weight(step, warmup, ramp)
        out = {"ce": ce.detach()}
        if w > 0:
            with torch.no_grad():
                b = x.shape[0]
                # every net (evaluator e) on every net's batch (owner o): [o*b, e, d]
                cross = x.transpose(0, 1).reshape(n_nets * b, 1, -1).expand(-1, n_nets, -1)
                p = torch.softmax(net(cross).view(n_nets, b, n_nets, n_classes) / t, dim=-1)
                p = p.masked_fill(diag.view(n_nets, 1, n_nets, 1), 0.0)
                peers = p.sum(dim=2) / (n_nets - 1)  # [o, b, K]: mean of the other nets
            kl = distillation_kl(logits, peers.transpose(0, 1), t)
            out["peer_kl"] = kl.detach()
            out["loss"] = ce + w * kl
        else:
            out["loss"] = ce
        return out

    return loss_fn


#: the trainings of one seed, each one sub-run; "subsets-alone" is the no-peers baseline
KINDS = ("independent", "codistilled", "subsets-alone", "codistilled-subsets")


def _errors(probs: np.ndarray, y_test: np.ndarray) -> np.ndarray:
    """Test errors of each net: ``probs [n_test, n_nets, K] -> [n_nets]``."""
    return (probs.argmax(-1) != y_test[:, None]).sum(0).astype(float)


def _ensemble_errors(probs: np.ndarray, y_test: np.ndarray) -> float:
    """Test errors of the probability-averaged ensemble of the nets."""
    return float((probs.mean(1).argmax(-1) != y_test).sum())


def run(config: Config, *, device: str = "cpu", quiet: bool = False, store=None) -> xr.Dataset:
    """Train all conditions for every seed; return the error table as a Dataset.

    Each (seed, training) is one sub-run (:data:`KINDS`), seeded by the seed alone; with a
    ``store`` (:class:`analyses.subruns.SubrunStore`) finished sub-runs are kept and skipped
    when the run is resumed.
    """
    import math

    from analyses.subruns import run_units
    from neurosim.config import check_device

    if not isinstance(config, Config):
        raise ValueError(f"config must be a codistill-nets Config; got {type(config).__name__}")
    device = check_device(device)
    x_tr, y_tr, x_te, y_te = _load_digits(config)
    n_train = len(x_tr)
    seeds = [config.seed + i for i in range(config.n_seeds)]
    total_steps = config.epochs * math.ceil(n_train / config.batch_size)
    jobs = {f"seed={s}/{kind}": (s, kind) for s in seeds for kind in KINDS}

    def compute(unit, done):
        (key,) = unit
        s, kind = jobs[key]
        rng = np.random.default_rng([s, 7])
        if kind in ("independent", "codistilled"):
            table = np.stack([rng.permutation(n_train) for _ in range(config.n_nets)])
        else:
            table = _subset_table(n_train, config.n_nets, config.subset_fraction, rng)
        probs = _train_group(
            config,
            x_train=x_tr,
            y_train=y_tr,
            x_test=x_te,
            table=table,
            peer_weight=config.codistill_weight if kind.startswith("codistilled") else 0.0,
            init_seed=s,  # same initial nets in every condition of a seed
            order_seed=s,
            total_steps=total_steps,
            device=device,
            quiet=True,
        )
        return {key: {"probs": probs.astype(np.float32)}}

    def score(key, result):
        return f"mean test errors {_errors(result['probs'], y_te).mean():.1f}"

    results = run_units(
        list(jobs), compute, store=store, desc="codistill-nets", quiet=quiet, score=score
    )
    probs = {jobs[key]: result["probs"] for key, result in results.items()}
    return _dataset(config, seeds, probs, y_te, n_train)


def _dataset(config: Config, seeds, probs: dict, y_te: np.ndarray, n_train: int) -> xr.Dataset:
    """The results Dataset from each ``(seed, kind)``'s test probabilities."""
    n_test = len(y_te)
    shape = (len(CONDITIONS), len(seeds), config.n_nets)
    errors = np.full(shape, np.nan)
    ens = np.full(shape[:2], np.nan)
    alone = np.full((len(seeds), config.n_nets), np.nan)
    ci = {c: i for i, c in enumerate(CONDITIONS)}
    for (s, kind), p in probs.items():
        si = seeds.index(s)
        if kind == "independent":
            errors[ci["independent"], si] = _errors(p, y_te)
            errors[ci["ensemble"], si, 0] = _ensemble_errors(p, y_te)
            ens[ci["independent"], si] = ens[ci["ensemble"], si] = _ensemble_errors(p, y_te)
        elif kind == "subsets-alone":
            alone[si] = _errors(p, y_te)
        else:
            errors[ci[kind], si] = _errors(p, y_te)
            ens[ci[kind], si] = _ensemble_errors(p, y_te)

    coords = {"condition": list(CONDITIONS), "seed": seeds, "net": np.arange(config.n_nets)}
    ds = xr.Dataset(
        {
            "test_errors": (
                ("condition", "seed", "net"),
                errors,
                {
                    "units": "count",
                    "long_name": "test-set errors of each net (ensemble: at net 0, NaN elsewhere)",
                },
            ),
            "test_error_rate": (
                ("condition", "seed", "net"),
                errors / n_test,
                {"units": "1", "long_name": "fraction of the test set misclassified"},
            ),
            "ensemble_errors": (
                ("condition", "seed"),
                ens,
                {
                    "units": "count",
                    "long_name": "test-set errors of the probability-averaged ensemble of the nets",
                },
            ),
            "subset_alone_errors": (
                ("seed", "net"),
                alone,
                {
                    "units": "count",
                    "long_name": "test-set errors of each net trained on its subset alone",
                },
            ),
        },
        coords=coords,
    )
    ds["net"].attrs = {"units": "1", "long_name": "net index in the peer group"}
    ds["seed"].attrs = {"units": "1", "long_name": "seed of initialisation and data order"}
    ds.attrs.update(
        {
            "title": "co-distillation of small nets on sklearn digits",
            "dataset": "sklearn load_digits 8x8",
            "n_train": n_train,
            "n_test": n_test,
            "subset_size": max(1, int(round(config.subset_fraction * n_train))),
            "seed_mnist_independent_errors": SEED_MNIST_ERRORS["independent"],
            "seed_mnist_ensemble_errors": SEED_MNIST_ERRORS["ensemble"],
            "seed_mnist_test_size": 10000,
        }
    )
    return ds


def _stats(ds: xr.Dataset) -> list[tuple[str, float, float, float, float]]:
    rows = []
    for cond in ds["condition"].values.tolist():
        v = ds["test_errors"].sel(condition=cond).values
        v = v[np.isfinite(v)]
        rows.append((cond, v.mean(), v.min(), v.max(), v.mean() / ds.attrs["n_test"]))
    alone = ds["subset_alone_errors"].values
    alone = alone[np.isfinite(alone)]
    if alone.size:
        rows.append(
            (
                "(subsets, no peers)",
                alone.mean(),
                alone.min(),
                alone.max(),
                alone.mean() / ds.attrs["n_test"],
            )
        )
    return rows


def summary(ds: xr.Dataset) -> str:
    """Errors per net: mean, min and max over nets and seeds, plus the ensembles."""
    n_test = int(ds.attrs["n_test"])
    lines = [
        f"co-distillation of {ds.sizes['net']} nets on sklearn digits "
        f"({int(ds.attrs['n_train'])} train / {n_test} test), {ds.sizes['seed']} seed(s)",
        f"{'condition':<22}{'mean':>8}{'min':>6}{'max':>6}{'error %':>9}{'ens. of nets':>14}",
    ]
    for cond, mean, lo, hi, rate in _stats(ds):
        if cond in ds["condition"].values:
            e = ds["ensemble_errors"].sel(condition=cond).values
            ens = f"{np.nanmean(e):.1f}"
        else:
            ens = "-"
        lines.append(f"{cond:<22}{mean:>8.1f}{lo:>6.0f}{hi:>6.0f}{100 * rate:>8.2f}%{ens:>14}")
    lines.append(
        "seed (MNIST, 10000 test): independent 158, ensemble 143, co-distilled 'much better'"
    )
    return "\n".join(lines)


def figures(ds: xr.Dataset, out_dir: str | Path) -> list[Path]:
    """Test errors per condition: every net (circles), their mean (bar), their ensemble
    (diamonds), against chance; a log axis keeps few errors and chance both readable."""
    from analyses.figures import figure_style, new_figure, save_figure

    with figure_style():
        fig, axes = new_figure(1, 1, width_in=5.5, height_in=3.2)
        _draw_errors(axes[0, 0], ds)
    return save_figure(fig, out_dir, "codistill_nets")


def _draw_errors(ax, ds: xr.Dataset) -> None:
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    from analyses.figures import COLORS, chance_line, legend_outside

    n_test = int(ds.attrs["n_test"])
    net = {"color": COLORS[2], "marker": "o", "markerfacecolor": "white", "markersize": 3.5}
    ensemble = {"color": COLORS[1], "marker": "D", "markersize": 4.5}
    labels = list(ds["condition"].values.tolist()) + ["subsets, no peers"]
    for i, cond in enumerate(labels):
        if i < ds.sizes["condition"]:
            v = ds["test_errors"].sel(condition=cond).values.ravel()
        else:
            v = ds["subset_alone_errors"].values.ravel()
        v = v[np.isfinite(v)]
        jitter = np.linspace(-0.15, 0.15, v.size) if v.size > 1 else np.zeros(1)
        if cond == "ensemble":  # one classifier per seed: its marks are the ensemble's
            ax.plot(i + jitter, v, linestyle="none", label="ensemble of the nets", **ensemble)
        else:
            ax.plot(i + jitter, v, linestyle="none", label="one net", **net)
        ax.plot([i - 0.25, i + 0.25], [v.mean()] * 2, color=COLORS[0], linewidth=2, label="mean")
        if i < ds.sizes["condition"] and cond != "ensemble":
            e = ds["ensemble_errors"].sel(condition=cond).values
            ax.plot(i + 0.34, np.nanmean(e), linestyle="none", **ensemble)
    chance_line(ax, 0.9 * n_test, label=f"chance: 90 % wrong ({0.9 * n_test:.0f})")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20, ha="right")
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    low = np.nanmin(np.concatenate([ds["test_errors"].values.ravel(), [0.9 * n_test]]))
    ax.set_ylim(max(0.5, 0.7 * low), 1.15 * n_test)
    ax.set_ylabel(f"test errors (of {n_test}, log scale)")
    ax.set_title(f"{ds.sizes['net']} nets on sklearn digits, {ds.sizes['seed']} seed(s)")
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))  # one entry per kind of mark
    legend_outside(ax, handles=list(unique.values()), below=True)
