"""Rate dynamics: Euler vs the closed form, consensus weights, beta schedules, config errors."""

import math

import pytest
import torch

from neurosim.dynamics import TERMS, DynamicsConfig, consensus, drift, euler


def leak(r0: torch.Tensor, tau_ms: float, dt_ms: float, t_ms: float) -> torch.Tensor:
    x = r0.clone()
    for _ in range(round(t_ms / dt_ms)):
        x = euler(x, drift(x, torch.zeros_like(x), tau_ms), dt_ms)
    return x


def test_pure_leak_matches_the_closed_form_and_converges_at_first_order():
    """tau dx/dt = -x has x(t) = r0 exp(-t / tau); Euler's error is O(dt)."""
    r0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    tau, t_end = 20.0, 60.0
    exact = r0 * math.exp(-t_end / tau)
    errors = []
    for dt in (2.0, 1.0, 0.5, 0.25):
        x = leak(r0, tau, dt, t_end)
        # the Euler iterate is exactly r0 (1 - dt/tau)^n
        torch.testing.assert_close(x, r0 * (1 - dt / tau) ** round(t_end / dt))
        errors.append(float((x - exact).abs().max()))
    assert errors[-1] < 2e-3
    for coarse, fine in zip(errors, errors[1:], strict=False):
        assert 1.8 < coarse / fine < 2.2  # halving dt halves the error


def test_relaxation_to_a_fixed_consensus():
    """With a constant consensus c, x(t) = c + (x0 - c) exp(-t / tau)."""
    x0, c = torch.tensor([3.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)
    x = x0.clone()
    for _ in range(4000):
        x = euler(x, drift(x, c, 20.0), 0.01)
    expected = c + (x0 - c) * math.exp(-40.0 / 20.0)
    # first-order Euler error: |x0 - c| exp(-t/tau) * t * dt / (2 tau^2) = 1.35e-4
    err = float((x - expected).abs().max())
    assert 0.5e-4 < err < 2e-4


def test_consensus_is_a_normalised_weighted_mean():
    shape = (2, 3, 2, 4)
    terms = {name: torch.full(shape, float(i + 1)) for i, name in enumerate(TERMS)}
    w = torch.tensor([[1.0, 1.0], [2.0, 0.0], [1.0, 1.0], [0.0, 2.0]])  # [4 terms, 2 levels]
    out = consensus(terms, w)
    assert out.shape == shape
    torch.testing.assert_close(out[..., 0, :], torch.full((2, 3, 4), (1 + 4 + 3) / 4))
    torch.testing.assert_close(out[..., 1, :], torch.full((2, 3, 4), (1 + 3 + 8) / 4))
    torch.testing.assert_close(consensus(terms, 5 * w), out)  # scale-free
    same = {name: terms["lateral"] for name in TERMS}
    torch.testing.assert_close(consensus(same, w), terms["lateral"])
    with pytest.raises(ValueError, match="positive sum"):
        consensus(terms, torch.zeros(4, 2))


def test_beta_schedules():
    const = DynamicsConfig(beta=2.0)
    assert [const.beta_at(t) for t in (0, 5, 11)] == [2.0, 2.0, 2.0]
    lin = DynamicsConfig(n_steps=5, beta=1.0, beta_schedule="linear", beta_end=5.0)
    assert [lin.beta_at(t) for t in range(5)] == pytest.approx([1, 2, 3, 4, 5])
    geo = DynamicsConfig(n_steps=3, beta=1.0, beta_schedule="geometric", beta_end=100.0)
    assert [geo.beta_at(t) for t in range(3)] == pytest.approx([1, 10, 100])
    assert geo.beta_at(1, n_steps=5) == pytest.approx(100**0.25)


def test_config_round_trips_through_toml():
    cfg = DynamicsConfig(tau_ms=30.0, dt_ms=3.0, w_lateral=2.5, beta_schedule="linear")
    assert DynamicsConfig.from_toml(cfg.to_toml()) == cfg
    assert cfg.term_weights() == (1.0, 1.0, 2.5, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(tau_ms=10.0, dt_ms=10.5), r"dt_ms must be in \(0, tau_ms=10\]"),
        (dict(tau_ms=10.0, dt_ms=12.0), "dt_ms"),
        (dict(dt_ms=0.0), "dt_ms"),
        (dict(tau_ms=-1.0), "tau_ms"),
        (dict(n_steps=0), "n_steps"),
        (dict(w_lateral=-1.0), "w_lateral"),
        (dict(w_bottom_up=0.0, w_top_down=0.0, w_lateral=0.0, w_previous=0.0), "not all be 0"),
        (dict(beta=-0.1), "beta"),
        (dict(beta_schedule="cosine"), "beta_schedule"),
        (dict(integrator="rk4"), "integrator must be one of"),
        (dict(beta=0.0, beta_schedule="geometric"), "geometric"),
    ],
)
def test_bad_configs_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DynamicsConfig(**kwargs)


def test_unknown_toml_key_is_rejected():
    with pytest.raises(ValueError, match="unknown config key tau"):
        DynamicsConfig.from_dict({"tau": 3.0})


def test_integrators_are_the_drift_and_a_named_step():
    """Euler is x + dt * drift; exponential Euler is the exact solution for a held consensus;
    with dt = tau Euler is GLOM's discrete update x <- consensus."""
    from neurosim.dynamics import integrate, step_fraction

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    c = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        integrate(x, c, 20.0, 5.0, "euler"), euler(x, drift(x, c, 20.0), 5.0)
    )
    torch.testing.assert_close(
        integrate(x, c, 20.0, 5.0, "exponential"), c + (x - c) * math.exp(-5.0 / 20.0)
    )
    # with a previous-state term a: exact for tau dx/dt = (1 - a)(m - x), m the other terms
    a, m = 0.25, torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    cons = a * x + (1 - a) * m
    torch.testing.assert_close(
        integrate(x, cons, 20.0, 5.0, "exponential", a), m + (x - m) * math.exp(-0.75 * 0.25)
    )
    t = torch.full((3, 5, 1), a, dtype=torch.float64)
    torch.testing.assert_close(
        integrate(x, cons, 20.0, 5.0, "exponential", t),
        integrate(x, cons, 20.0, 5.0, "exponential", a),
    )
    torch.testing.assert_close(integrate(x, c, 10.0, 10.0, "euler"), c)  # GLOM: x <- consensus
    assert step_fraction("euler", 20.0, 5.0) == 0.25
    assert step_fraction("exponential", 20.0, 5.0) == pytest.approx(1 - math.exp(-0.25))
    # a config at dt = tau is allowed and gives a full step
    glom = DynamicsConfig(tau_ms=10.0, dt_ms=10.0)
    assert glom.fraction_per_step == 1.0
    assert DynamicsConfig(integrator="exponential").fraction_per_step < 0.25


def test_exponential_euler_is_exact_for_a_fixed_consensus():
    """For a constant consensus the exponential step has no discretisation error at any dt."""
    from neurosim.dynamics import integrate

    x0 = torch.tensor([3.0], dtype=torch.float64)
    c = torch.tensor([1.0], dtype=torch.float64)
    for dt in (1.0, 10.0, 40.0):
        x = x0.clone()
        for _ in range(round(40.0 / dt)):
            x = integrate(x, c, 20.0, dt, "exponential")
        torch.testing.assert_close(x, c + (x0 - c) * math.exp(-40.0 / 20.0))


def test_consensus_weights_renormalise_hidden_columns():
    from neurosim.dynamics import consensus_weights, weighted_consensus

    raw = torch.tensor([[1.0, 1.0], [1.0, 0.0], [2.0, 1.0], [0.0, 2.0]])
    w = consensus_weights(raw)
    assert w[0] == pytest.approx([0.25, 0.25, 0.5, 0.0])
    assert w[1] == pytest.approx([0.25, 0.0, 0.25, 0.5])
    mask = torch.tensor([[True, False]])
    w_masked = consensus_weights(raw, mask)
    torch.testing.assert_close(w_masked[0][0], torch.tensor([[[0.25], [0.0]]]))
    torch.testing.assert_close(w_masked[0][2], torch.tensor([[[0.5], [2 / 3]]]))
    terms = [torch.full((1, 2, 3), float(i)) for i in range(4)]
    out = weighted_consensus(terms, w_masked[0])
    torch.testing.assert_close(out[0, 1], torch.full((3,), (1 + 2 * 2) / 3))
    with pytest.raises(ValueError, match="positive sum"):
        consensus_weights(torch.zeros(4, 2))
