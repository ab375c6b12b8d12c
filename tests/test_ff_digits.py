"""The flat-digits Forward-Forward experiment: --quick run end to end, FF learns the digits,
seeds trained together equal seeds trained alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analyses.cli import main
from analyses.experiments import ff_digits as exp
from neurosim.export import check_variable_attrs, open_results


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ff_digits")
    assert main(["run", "ff-digits", "--quick", "--quiet", "--out", str(out)]) == 0
    return out, open_results(out / exp.RESULT_FILE)


def test_quick_run_structure_and_files(quick_run):
    out, ds = quick_run
    cfg = exp.Config.quick()
    assert ds["test_error"].dims == ("net", "scoring", "seed")
    assert ds["net"].values.tolist() == list(exp.NETS)
    assert ds["scoring"].values.tolist() == list(exp.SCORINGS)
    assert ds.sizes["seed"] == cfg.n_seeds and ds.sizes["epoch"] == cfg.epochs
    assert ds["receptive_field"].shape == (3, cfg.n_seeds, cfg.hidden, 8, 8)
    assert check_variable_attrs(ds) == []
    err = ds["test_error"]
    # backprop is scored by its softmax only; the FF nets every way
    assert np.all(np.isnan(err.sel(net="backprop", scoring=["goodness", "shortlist"]).values))
    ff = err.sel(net=["ff", "ff-recurrent"]).values
    assert np.all(np.isfinite(ff)) and np.all((ff >= 0) & (ff <= 1))
    lo, hi = ds["test_error_ci_low"].values, ds["test_error_ci_high"].values
    ok = np.isfinite(lo)
    assert np.all((lo[ok] >= 0) & (hi[ok] <= 1) & (lo[ok] <= hi[ok]))
    assert ds.attrs["experiment"] == "ff-digits"
    for stem in ("ff_digits_fields", "ff_digits_errors"):
        assert (out / f"{stem}.png").is_file() and (out / f"{stem}.pdf").is_file()
    text = exp.summary(ds)
    assert "1.31" in text and "t-interval" in text
    for net in exp.NETS:
        assert net in text


def test_ff_learns_flat_digits_in_the_quick_budget(quick_run):
    """Chance is 10 %: the feed-forward FF net (scored by goodness, every label) reaches at least
    85 % test accuracy in the quick budget, the recurrent one at least 70 %, the backprop net
    at least 90 %."""
    _, ds = quick_run
    err = ds["test_error_mean"]
    acc = {
        net: 1.0 - float(err.sel(net=net, scoring=s))
        for net, s in (("ff", "goodness"), ("ff-recurrent", "goodness"), ("backprop", "softmax"))
    }
    assert acc["ff"] >= 0.85, f"ff reached {acc['ff']:.3f} test accuracy (chance 0.10)"
    assert acc["ff-recurrent"] >= 0.70, f"ff-recurrent reached {acc['ff-recurrent']:.3f}"
    assert acc["backprop"] >= 0.90, f"backprop reached {acc['backprop']:.3f}"
    # the FF loss falls
    loss = ds["train_loss"].sel(net=["ff", "ff-recurrent"]).values
    assert np.all(loss[..., -1] < 0.5 * loss[..., 0])


@pytest.mark.parametrize("kind", exp.NETS)
def test_a_seed_trained_with_others_equals_the_seed_trained_alone(kind):
    cfg = exp.Config.quick().updated({"epochs": 1, "hidden": 16, "n_steps": 2})
    train, _ = exp._load(cfg)
    train = (train[0][:256], train[1][:256])
    together, _, _ = exp._train(kind, cfg, train, [5, 6], "cpu", quiet=True)
    alone, _, _ = exp._train(kind, cfg, train, [6], "cpu", quiet=True)
    for (name, p), q in zip(together.named_parameters(), alone.parameters(), strict=True):
        torch.testing.assert_close(p[1:2], q, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("nets", ["ff", "cnn"]),
        ("hidden", 0),
        ("n_steps", 0),
        ("damping", 1.0),
        ("threshold", -1.0),
        ("positive_goodness", "medium"),
        ("shortlist", 10),
        ("epochs", 1.5),
    ],
)
def test_bad_config_names_field(field, value):
    with pytest.raises(ValueError, match=field):
        exp.Config().updated({field: value})


@pytest.mark.slow
def test_full_run_ff_close_to_backprop():
    """The default budget, one seed (~1.5 min): both FF nets below 5 % test error by goodness."""
    ds = exp.run(exp.Config(n_seeds=1), quiet=True)
    err = ds["test_error_mean"]
    for net in ("ff", "ff-recurrent"):
        assert float(err.sel(net=net, scoring="goodness")) < 0.05, net
    assert float(err.sel(net="backprop", scoring="softmax")) < 0.05
