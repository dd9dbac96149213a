"""RKC (stabilized explicit) and method="auto" against the non-stiff reference."""

import numpy as np
import pytest

import flowsim as fs
from flowsim import _abi
from flowsim.integrate.core import core


def _run(method, rtol, t_end=600.0, width=20):
    x = np.linspace(-1, 1.5, 30)
    X, y = x[:, None], np.sin(3 * x) + np.sin(6 * x) / 2
    net = fs.TwoLayer("tanh", width, 1)
    theta0 = net.init(3, scale=1e-3)
    save = np.linspace(0.0, t_end, 31)
    return fs.simulate(net, theta0, X, y, t_end=t_end, method=method, rtol=rtol, save=save)


@pytest.fixture(scope="module")
def reference():
    return _run("dop853", 1e-12)


def test_rkc_stability_polynomial_is_second_order():
    """One RKC step on y' = lambda y matches exp(h lambda) to O((h lambda)^3)."""
    kernels = core()
    for s in (2, 5, 17):
        coef = np.zeros((s + 1, 5))
        kernels.rkc_coefficients(s, coef)
        errors = []
        for z in (-1e-2, -5e-3):
            y_prev, y_cur = 1.0, 1.0 + coef[1, 2] * z
            for j in range(2, s + 1):
                mu, nu, mut, gam = coef[j, :4]
                y_next = (1 - mu - nu) + mu * y_cur + nu * y_prev + mut * z * y_cur + gam * z
                y_prev, y_cur = y_cur, y_next
            errors.append(abs(y_cur - np.exp(z)))
        assert np.log2(errors[0] / errors[1]) == pytest.approx(3.0, abs=0.2)


def test_rkc_stable_far_along_the_negative_axis():
    """|R_s(z)| <= 1 on [-0.6 s^2, 0] (the stability interval grows like s^2)."""
    kernels = core()
    s = 20
    coef = np.zeros((s + 1, 5))
    kernels.rkc_coefficients(s, coef)
    for z in np.linspace(-0.6 * s * s, -1e-3, 400):
        y_prev, y_cur = 1.0, 1.0 + coef[1, 2] * z
        for j in range(2, s + 1):
            mu, nu, mut, gam = coef[j, :4]
            step = (1 - mu - nu) + mu * y_cur + nu * y_prev + mut * z * y_cur + gam * z
            y_prev, y_cur = y_cur, step
        assert abs(y_cur) <= 1.0 + 1e-12


def test_rkc_converges_to_reference(reference):
    """RKC is second order with local error control: the global error falls with rtol
    (like rtol^(2/3)) and is small at tight tolerance."""
    errors = []
    for rtol in (1e-7, 1e-9):
        traj = _run("rkc", rtol)
        assert traj.status == "done"
        gap = np.max(np.abs(traj.theta - reference.theta))
        errors.append(gap / np.max(np.abs(reference.theta)))
    assert errors[1] < errors[0] / 10
    assert errors[1] < 1e-6


def test_auto_does_not_depend_on_the_wall_clock(monkeypatch):
    """The driver sizes its chunks by wall time (progress, max_wall, Ctrl-C); auto
    tests for stiffness at counts of accepted steps instead, so a slow machine
    (here: 16-step chunks) runs the same trajectory bit for bit (a three-layer net:
    dopri5 switching to RKC)."""
    from flowsim.integrate import simulate as sim

    x = np.linspace(-1, 1.5, 16)
    X, y = x[:, None], np.sin(3 * x) + np.sin(6 * x) / 2
    net = fs.ThreeLayer("tanh", (4, 4), 1)
    theta0 = net.init(3, scale=1e-2)
    kw = dict(t_end=3e3, rtol=1e-8, save_state="final", progress=False)
    fast = fs.simulate(net, theta0, X, y, **kw)
    monkeypatch.setattr(sim, "_CHUNK_SECONDS", 1e-9)
    slow = fs.simulate(net, theta0, X, y, **kw)
    assert "rkc" in [name for _, name in fast.method_log]
    assert slow.method_log == fast.method_log
    assert (slow.nfev, slow.n_accepted) == (fast.nfev, fast.n_accepted)
    np.testing.assert_array_equal(slow.theta_final, fast.theta_final)


def test_spectral_radius_matches_dense_hessian():
    x = np.linspace(-1, 1.5, 12)
    X, y = x[:, None], np.sin(3 * x)
    net = fs.TwoLayer("tanh", 4, 1)
    theta = net.init(1, scale=0.7)
    # dense Jacobian of the flow by central differences
    P = theta.size
    J = np.zeros((P, P))
    for j in range(P):
        e = np.zeros(P)
        e[j] = 1e-6
        J[:, j] = -(net.gradient(theta + e, X, y) - net.gradient(theta - e, X, y)) / 2e-6
    rho_true = np.max(np.abs(np.linalg.eigvalsh((J + J.T) / 2)))
    c, _ = net.flow_constants(net.unit_scales())
    c = np.concatenate([c, _abi.run_block()])  # the core reads the run's settings there
    f0 = -net.gradient(theta, X, y)
    v = np.zeros(P)
    mode, aux = np.zeros((0, 0), dtype=np.int8), np.zeros((0, 0))
    rho, used = core().spectral_radius(theta, f0, net.augment(X), y, c, net.core_dims(1), mode,
                                            aux, v, 200, np.empty(P), np.empty(P))  # fmt: skip
    assert rho == pytest.approx(rho_true, rel=0.02)
