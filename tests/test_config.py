import dataclasses

import pytest

from neurosim.config import Config, check_choice, check_positive_int, check_range


@dataclasses.dataclass(frozen=True, kw_only=True)
class Inner(Config):
    tau_ms: float = 10.0
    dt_ms: float = 1.0

    def __post_init__(self):
        check_range("tau_ms", self.tau_ms, 0, None, lo_inclusive=False)
        check_range("dt_ms", self.dt_ms, 0, self.tau_ms, lo_inclusive=False, hi_inclusive=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Outer(Config):
    seed: int = 0
    name: str = "a"
    sizes: tuple[int, ...] = (1, 2)
    inner: Inner = Inner()

    def __post_init__(self):
        check_choice("name", self.name, ["a", "b"])


def test_toml_round_trip():
    cfg = Outer(seed=3, sizes=(4, 5, 6), inner=Inner(tau_ms=20.0, dt_ms=2.0))
    assert Outer.from_toml(cfg.to_toml()) == cfg


def test_unknown_key_names_the_key_and_allowed():
    with pytest.raises(ValueError, match=r"unknown config key inner\.tua_ms.*allowed keys: tau_ms"):
        Outer().updated_from_toml("[inner]\ntua_ms = 3\n")
    with pytest.raises(ValueError, match="unknown config key bogus"):
        Outer.from_dict({"bogus": 1})


def test_out_of_range_names_field_and_range():
    with pytest.raises(ValueError, match=r"inner\.dt_ms must be in \(0, 10\); got 12"):
        Outer().updated({"inner": {"dt_ms": 12.0}})
    with pytest.raises(ValueError, match=r"name must be one of \['a', 'b'\]"):
        Outer(name="c")
    with pytest.raises(ValueError, match="seed must be an integer"):
        Outer.from_dict({"seed": "x"})


def test_nan_and_bool_rejected():
    with pytest.raises(ValueError, match="x must be in"):
        check_range("x", float("nan"), 0, 1)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        check_positive_int("n", True)
    with pytest.raises(ValueError, match=r"n must be an integer in \[1, 4\]"):
        check_positive_int("n", 5, hi=4)


def test_one_seed_check_for_every_config():
    """Seeds are integers in [0, 2**31 - 1] everywhere; a float or a bool is refused by name."""
    from analyses.experiments import codistill_nets, distill, transfer
    from neurosim.config import check_seed
    from neurosim.model import ModelConfig

    check_seed("seed", 0)
    check_seed("seed", 2**31 - 1)
    for bad in (-1, 2**31, 1.5, True, "3"):
        with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2147483647\]"):
            check_seed("seed", bad)
    for cls in (codistill_nets.Config, distill.Config, transfer.Config):
        with pytest.raises(ValueError, match="seed must be an integer"):
            cls(seed=1.5)
    with pytest.raises(ValueError, match="lattice_seed must be an integer"):
        ModelConfig(lattice_seed=-2)


def test_check_int_is_the_one_integer_check():
    """Integers (numpy ones too) pass and come back as int; bools, floats and out-of-range
    values fail naming the argument and the allowed range."""
    import numpy as np

    from neurosim.config import check_int

    assert check_int("n", 3, 1, 5) == 3
    assert type(check_int("n", np.int64(3), 1, 5)) is int
    assert check_int("n", -7) == -7
    for bad, text in (
        (True, r"n must be an integer in \[1, 5\]; got True"),
        (np.bool_(True), r"n must be an integer in \[1, 5\]"),
        (2.0, r"n must be an integer in \[1, 5\]; got 2.0"),
        ("2", r"n must be an integer in \[1, 5\]"),
        (0, r"n must be an integer in \[1, 5\]; got 0"),
        (6, r"n must be an integer in \[1, 5\]; got 6"),
    ):
        with pytest.raises(ValueError, match=text):
            check_int("n", bad, 1, 5)
    with pytest.raises(ValueError, match="k must be an integer >= 0; got -1"):
        check_int("k", -1, 0)
    with pytest.raises(ValueError, match="k must be an integer <= 3; got 4"):
        check_int("k", 4, None, 3)
