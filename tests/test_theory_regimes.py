"""Tests of flowsim.theory.regimes: the phase diagram of [LXMZ21]."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import flowsim as fs
from flowsim.theory import (
    SCHEMES,
    e_et_al,
    exponents,
    kappa,
    kappa_prime,
    regime,
    scales_for,
    scheme,
)

EXPECTED = {
    "LeCun": "linear",
    "He": "linear",
    "Xavier": "critical",
    "NTK": "linear",
    "mean-field": "critical",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_named_schemes(name):
    assert regime(*SCHEMES[name]) == EXPECTED[name]
    assert scheme(name) == SCHEMES[name]


def test_scheme_table_values():
    assert SCHEMES == {
        "LeCun": (0.5, 0.5),
        "He": (0.5, 0.5),
        "Xavier": (1.0, 0.0),
        "NTK": (0.5, 0.0),
        "mean-field": (1.0, 0.0),
    }


@pytest.mark.parametrize("s", [-1.0, 0.0, 0.5, 1.0, 2.0, 5.0])
def test_e_et_al_is_the_linear_line_gamma_equals_gamma_prime(s):
    assert e_et_al(s) == (s, s)
    assert scheme("E et al.", beta_exponent=s) == (s, s)
    assert regime(*e_et_al(s)) == "linear"
    # beta1 = beta = m^-s, beta2 = alpha = 1  =>  kappa = kappa' = beta
    m = 1000.0
    beta = m**-s
    assert exponents(beta, 1.0, 1.0, m) == pytest.approx((s, s), abs=1e-12)


def test_scheme_errors():
    with pytest.raises(ValueError, match="beta_exponent"):
        scheme("E et al.")
    with pytest.raises(ValueError, match="fixed point"):
        scheme("NTK", beta_exponent=1.0)
    with pytest.raises(ValueError, match="name must be one of"):
        scheme("Kaiming")


H = 1e-6  # well outside atol = 1e-12


@pytest.mark.parametrize(
    "point, expected",
    [
        # vertical boundary gamma = 1, gamma' <= 0
        ((1.0, -0.5), "critical"),
        ((1.0 + H, -0.5), "condensed"),
        ((1.0 - H, -0.5), "linear"),
        ((1.0, 0.0), "critical"),  # the corner
        ((1.0, H), "linear"),  # above the corner: gamma' > gamma - 1
        ((1.0, -H), "critical"),
        # diagonal boundary gamma' = gamma - 1, gamma >= 1
        ((2.0, 1.0), "critical"),
        ((2.0, 1.0 + H), "linear"),
        ((2.0, 1.0 - H), "condensed"),
        ((3.0, 2.0), "critical"),
        ((1.0 + H, H), "critical"),
        # the diagonal continued below gamma = 1 is not a boundary
        ((0.5, -0.5), "linear"),
        ((0.99, -0.01), "linear"),
        # interiors
        ((0.2, 3.0), "linear"),
        ((4.0, 0.0), "condensed"),
        ((1.5, -2.0), "condensed"),
    ],
)
def test_both_sides_of_each_boundary(point, expected):
    assert regime(*point) == expected


def test_atol_decides_on_the_boundary():
    assert regime(1.0 + 1e-13, -0.5) == "critical"
    assert regime(1.0 + 1e-13, -0.5, atol=0.0) == "condensed"
    assert regime(2.0, 1.0 - 1e-3, atol=1e-2) == "critical"


@given(
    st.floats(-10, 10, allow_nan=False),
    st.floats(-10, 10, allow_nan=False),
)
def test_regime_matches_the_inequalities_off_the_boundary(g, gp):
    r = regime(g, gp)
    on_boundary = (abs(g - 1) <= 1e-12 and gp <= 1e-12) or (
        abs(gp - (g - 1)) <= 1e-12 and g >= 1 - 1e-12
    )
    if on_boundary:
        assert r == "critical"
    elif g < 1 or gp > g - 1:
        assert r == "linear"
    else:
        assert r == "condensed"
        assert g > 1 and gp < g - 1


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: regime(float("nan"), 0.0), "gamma"),
        (lambda: regime(0.0, float("inf")), "gamma_prime"),
        (lambda: regime(0.0, "x"), "gamma_prime"),
        (lambda: regime(None, 0.0), "gamma"),
        (lambda: regime(True, 0.0), "gamma"),
        (lambda: regime(0.0, 0.0, atol=-1.0), "atol"),
        (lambda: scales_for(float("nan"), 0.0, 10), "gamma"),
        (lambda: scales_for(0.0, 0.0, 0), "m"),
        (lambda: scales_for(0.0, 0.0, 10, alpha=-1.0), "alpha"),
        (lambda: kappa(-1.0, 1.0, 1.0), "beta1"),
        (lambda: kappa(1.0, 0.0, 1.0), "beta2"),
        (lambda: kappa(1.0, 1.0, float("inf")), "alpha"),
        (lambda: kappa_prime(1.0, float("nan")), "beta2"),
        (lambda: exponents(1.0, 1.0, 1.0, 1.0), "m"),
        (lambda: e_et_al(float("nan")), "beta_exponent"),
    ],
)
def test_validation_names_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name} "):
        call()


@pytest.mark.parametrize("gamma, gamma_prime", [(0.5, 0.5), (1.0, 0.0), (1.75, 0.25), (3.0, -1)])
@pytest.mark.parametrize("m, alpha", [(100, 1.0), (1000, 2.5)])
def test_scales_for_gives_the_exponents(gamma, gamma_prime, m, alpha):
    beta1, beta2 = scales_for(gamma, gamma_prime, m, alpha)
    assert kappa(beta1, beta2, alpha) == pytest.approx(m**-gamma, rel=1e-12)
    assert kappa_prime(beta1, beta2) == pytest.approx(m**-gamma_prime, rel=1e-12)
    assert exponents(beta1, beta2, alpha, m) == pytest.approx((gamma, gamma_prime), abs=1e-12)
    # alpha = 1: the choice of docs/theory.md §2
    b1, b2 = scales_for(gamma, gamma_prime, m)
    assert b1 == pytest.approx(m ** (-(gamma + gamma_prime) / 2), rel=1e-14)
    assert b2 == pytest.approx(m ** (-(gamma - gamma_prime) / 2), rel=1e-14)


@pytest.mark.parametrize("alpha", [1.0, 3.0])
def test_scales_for_matches_two_layer_init(alpha):
    m = 64
    net = fs.TwoLayer("tanh", m, 2, alpha=alpha)
    gamma, gamma_prime = 1.5, 0.25
    beta1, beta2 = scales_for(gamma, gamma_prime, m, alpha)
    by_exponents = net.init(7, gamma=gamma, gamma_prime=gamma_prime)
    by_scales = net.init(7, beta1=beta1, beta2=beta2)
    np.testing.assert_allclose(by_exponents, by_scales, rtol=1e-14, atol=0)


def test_kappa_definitions():
    assert kappa(0.2, 3.0, 4.0) == pytest.approx(0.15)
    assert kappa_prime(0.2, 4.0) == pytest.approx(0.05)
    # mean-field: alpha = m, beta1 = beta2 = 1
    assert exponents(1.0, 1.0, 1000.0, 1000.0) == pytest.approx((1.0, 0.0))
    # NTK: alpha = sqrt(m)
    assert exponents(1.0, 1.0, math.sqrt(1000.0), 1000.0) == pytest.approx((0.5, 0.0))
