"""analyses.subruns: finished sub-runs kept on disk, resumed, never mixed across configs."""

from __future__ import annotations

import dataclasses
import os
import signal

import numpy as np
import pytest

from analyses.subruns import (
    Interrupted,
    SubrunMismatch,
    SubrunStore,
    first_difference,
    run_units,
    signals_as_interrupts,
)
from neurosim.config import Config, check_int


@dataclasses.dataclass(frozen=True, kw_only=True)
class Inner(Config):
    width: int = 4


@dataclasses.dataclass(frozen=True, kw_only=True)
class Cfg(Config):
    seed: int = 0
    epochs: int = 2
    inner: Inner = Inner()

    def __post_init__(self):
        check_int("epochs", self.epochs, 1, 100)


def store(tmp_path, cfg=None, **kwargs):
    kwargs.setdefault("experiment", "fake")
    return SubrunStore(tmp_path / "subruns", config=cfg or Cfg(), **kwargs)


def compute_counting(calls):
    def compute(unit, done):
        calls.append((unit, sorted(done)))
        return {
            key: {"value": np.float32(len(key)) * np.arange(3, dtype=np.float32), "label": key}
            for key in unit
        }

    return compute


def test_a_store_writes_nothing_until_it_begins(tmp_path):
    s = store(tmp_path)
    assert not (tmp_path / "subruns").exists() and len(s) == 0 and "a" not in s
    s.begin()
    assert [p.name for p in (tmp_path / "subruns").iterdir()] == ["fingerprint.json"]


def test_units_are_kept_whole_and_read_back_exactly(tmp_path):
    s = store(tmp_path)
    unit = {"seed=0/a": {"x": np.arange(4, dtype=np.float32), "n": 3}, "seed=0/b": {"x": [1]}}
    path = s.put(unit)
    assert path.parent == tmp_path / "subruns" and path.suffix == ".npz"
    again = store(tmp_path)
    assert "seed=0/a" in again and "seed=0/b" in again and len(again) == 2
    got = again.get("seed=0/a")
    assert got["x"].dtype == np.float32 and got["x"].tolist() == [0, 1, 2, 3]
    assert int(got["n"]) == 3
    assert again.get("seed=0/b")["x"].tolist() == [1]
    with pytest.raises(KeyError):
        again.get("seed=1/a")
    with pytest.raises(ValueError, match="sub-run 'k': obj must be a numeric or text array"):
        again.put({"k": {"obj": [object()]}})


def test_run_units_resumes_with_the_same_results_and_counts_what_was_kept(tmp_path):
    units = [("s0",), ("s1", "s22"), "s333"]
    first = []
    full = run_units(units, compute_counting(first), store=store(tmp_path), desc="t", quiet=True)
    assert first == [(("s0",), []), (("s1", "s22"), ["s0"]), (("s333",), ["s0", "s1", "s22"])]
    # an interrupted run kept only the first two units; the resumed run computes the rest
    (tmp_path / "subruns" / next(p.name for p in (tmp_path / "subruns").glob("s333*"))).unlink()
    resumed_store = store(tmp_path)
    assert resumed_store.plan(["s0", "s1", "s22", "s333"]) == ["s333"]
    assert (resumed_store.n_kept, resumed_store.n_planned) == (3, 4)
    second = []
    resumed = run_units(units, compute_counting(second), store=resumed_store, desc="t", quiet=True)
    assert second == [(("s333",), ["s0", "s1", "s22"])]  # kept results are there for it
    assert resumed.keys() == full.keys()
    for key in full:
        for name in full[key]:
            np.testing.assert_array_equal(resumed[key][name], full[key][name])
            assert resumed[key][name].dtype == full[key][name].dtype
    # without a store: computed, nothing kept
    calls = []
    assert run_units(["a"], compute_counting(calls), desc="t", quiet=True)["a"]["label"] == "a"


def test_a_different_config_experiment_or_device_is_refused_naming_the_field(tmp_path):
    store(tmp_path).put({"a": {"x": 1}})
    with pytest.raises(SubrunMismatch, match=r"different config \(epochs: 2 there, 3 now\)") as e:
        store(tmp_path, Cfg(epochs=3))
    assert e.value.field == "epochs"
    with pytest.raises(SubrunMismatch, match=r"inner.width: 4 there, 5 now"):
        store(tmp_path, Cfg(inner=Inner(width=5)))
    with pytest.raises(SubrunMismatch, match="experiment 'fake', not 'other'"):
        store(tmp_path, experiment="other")
    with pytest.raises(SubrunMismatch, match="device 'cpu', not 'cuda'"):
        store(tmp_path, device="cuda")
    fresh = store(tmp_path, Cfg(epochs=3), reset=True)
    assert "a" not in fresh
    fresh.begin()
    assert list((tmp_path / "subruns").glob("*.npz")) == []
    assert "a" not in store(tmp_path, Cfg(epochs=3))


def test_first_difference_flattens_nested_fields():
    assert first_difference({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 2}}) is None
    assert first_difference({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}}) == ("b.c", 2, 3)
    assert first_difference({"a": 1}, {}) == ("a", 1, None)


def test_sigterm_becomes_an_interrupt_with_its_exit_code_and_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as err, signals_as_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)
        signal.pause()  # not reached: the handler raises first
    assert err.value.exit_code == 143 and isinstance(err.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is before
    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with signals_as_interrupts():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # nohup's stays ignored
    finally:
        signal.signal(signal.SIGINT, ignored)
