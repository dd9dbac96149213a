"""The approximate Jacobian factor of three-layer nets with smoothed kinks, and BDF on
their flow (#9).

The factor (:mod:`flowsim.models._three_layer_factor`) stands for the Gauss-Newton term
plus one rank-one term per pair inside its ramp.  Checked here: its Woodbury solve
against that approximation built independently (NumPy, central differences); that it
holds the stiff part of the true Jacobian (the Newton iteration contracts where the
Jacobian's norm grows as 1/eps); BDF's trajectory against a tight explicit reference.
"""

import naive
import numpy as np
import pytest

import flowsim as fs
from flowsim.models._base import no_switching


def _slopes(net):
    return tuple(float(net.activation.derivative(v)) for v in (-1.0, 1.0))


def _layers(net, theta, X, scales=None):
    """Z, S1, H, U, S2 and f of the smoothed net (NumPy); ``scales`` = (S1, S2) fixes
    the ramps' scales."""
    lo, hi = _slopes(net)
    eps = net.smoothing
    a, W, V = naive.three_layer_split(theta, net.widths, net.D, net.bias)
    Xa = naive.augment(X, net.bias)
    Z = Xa @ V.T
    S1 = np.sqrt(Xa**2 @ (V**2).T) if scales is None else scales[0]
    H = naive.augment(naive.smoothed_kink(Z, S1, eps, lo, hi), net.bias)
    U = H @ W.T
    S2 = np.sqrt(H**2 @ (W**2).T) if scales is None else scales[1]
    f = naive.smoothed_kink(U, S2, eps, lo, hi) @ a / net.alpha
    return Z, S1, H, U, S2, f


def _curvature(net, u, s):
    """sigma''(u) at fixed scale s by a second central difference."""
    lo, hi = _slopes(net)
    d = 1e-3 * net.smoothing * s
    k = naive.smoothed_kink
    eps = net.smoothing
    return (k(u + d, s, eps, lo, hi) - 2 * k(u, s, eps, lo, hi) + k(u - d, s, eps, lo, hi)) / d**2


def _approximation(net, theta, X, y):
    """The factor's stated approximation of the loss Hessian (unit scales: -J = H):
    (1/n) sum_i grad f_i grad f_i^T, plus for every pair inside its ramp
    (1/n) e_i (d f_i / d pre) sigma''(pre) grad pre grad pre^T, every derivative taken
    at fixed ramp scales (the terms of the scales' own gradients are left out)."""
    n = X.shape[0]
    eps = net.smoothing
    Z, S1, H, U, S2, f = _layers(net, theta, X)
    e = f - y
    a = naive.three_layer_split(theta, net.widths, net.D, net.bias)[0]
    fixed = (S1, S2)
    grad_f = naive.central_differences(lambda t: _layers(net, t, X, fixed)[5], theta)
    grad_z = naive.central_differences(lambda t: _layers(net, t, X, fixed)[0].ravel(), theta)
    grad_u = naive.central_differences(lambda t: _layers(net, t, X, fixed)[3].ravel(), theta)
    approx = grad_f.T @ grad_f / n
    m1 = net.widths[0]
    lo, hi = _slopes(net)

    W = naive.three_layer_split(theta, net.widths, net.D, net.bias)[1]

    def f_of_h(h_row, i):  # f_i from h_i, layer 2's scales fixed
        return naive.smoothed_kink(h_row @ W.T, S2[i], eps, lo, hi) @ a / net.alpha

    pairs = 0
    for i in range(n):
        df_dh = naive.central_differences(lambda h_row, i=i: f_of_h(h_row, i), H[i])
        for j in range(m1):
            if abs(Z[i, j]) < eps * S1[i, j]:
                g = grad_z[i * m1 + j]
                w = e[i] * df_dh[j] * _curvature(net, Z[i, j], S1[i, j]) / n
                approx += w * np.outer(g, g)
                pairs += 1
        for k in range(net.widths[1]):
            if abs(U[i, k]) < eps * S2[i, k]:
                g = grad_u[i * net.widths[1] + k]
                w = e[i] * a[k] / net.alpha * _curvature(net, U[i, k], S2[i, k]) / n
                approx += w * np.outer(g, g)
                pairs += 1
    return approx, pairs


def _factor(net, theta, X, y, shift, scales=None):
    """M^-1 of the compiled factor (normalized variables: ``theta`` is ``theta_bar``), as
    a dense matrix; unit scales unless given."""
    Xa = np.ascontiguousarray(net.augment(X))
    c, _ = net.flow_constants(scales or net.unit_scales())
    kernels, dims, n = net.kernels_for(X.shape[0]), net.dims(), X.shape[0]
    work = np.empty(kernels.newton_work_size(dims, n))
    assert kernels.newton_factor(theta, Xa, y, c, dims, shift, work)
    out = np.empty(theta.size)
    cols = []
    for p in range(theta.size):
        kernels.newton_solve(work, dims, n, np.eye(theta.size)[p], out)
        cols.append(out.copy())
    return np.array(cols).T


@pytest.mark.parametrize("act, bias", [("relu", True), ("leaky_relu", False)])
def test_factor_solves_its_stated_approximation(act, bias):
    """Both layers' ramps hold pairs; the Woodbury solve equals the dense solve of
    ``shift I + approximation`` built from NumPy and central differences, in normalized
    variables ``theta = S theta_bar``, time ``t = T t_bar``, where the flow's Jacobian
    is ``-T S^-1 H S``."""
    rng = np.random.default_rng(7)
    net = fs.ThreeLayer(act, (5, 4), 2, bias=bias, alpha=1.3, smoothing=0.3)
    X = rng.normal(size=(6, 2))
    y = rng.normal(size=6)
    theta = net.init(2, scale=1.0)
    approx, pairs = _approximation(net, theta, X, y)
    assert pairs >= 4
    scales = {"a": 0.5, "W": 2.0, "V": 0.3}
    S = net.scale_vector(scales)
    T = net.flow_constants(scales)[1]
    for shift in (0.3, 3.0, 300.0):
        M = np.linalg.inv(_factor(net, theta / S, X, y, shift, scales))  # M, not M^-1:
        reference = shift * np.eye(theta.size) + T * approx * S[None, :] / S[:, None]
        # (the error of M is not scaled by its condition)
        assert np.max(np.abs(M - reference)) < 1e-7 * np.max(np.abs(reference))


def _condensed_state(eps):
    """Benchmark R2's case at (10, 10), at t = 100 of its smoothed flow: pairs slide in
    their ramps (the plateau before the loss's last drop)."""
    X = np.linspace(-1.0, 1.0, 4)[:, None]
    y = np.maximum(X[:, 0] - 0.2, 0.0) + np.maximum(-X[:, 0] - 0.3, 0.0)
    net = fs.ThreeLayer("relu", (10, 10), 1, smoothing=eps)
    traj = fs.simulate(net, net.init(0, scale=1e-3), X, y, t_end=100.0, rtol=1e-10,
                       save_state="final", progress=False)  # fmt: skip
    # unit scales: the flow is -grad R itself, at the scale the weights have grown to
    return net, traj.theta_final, X, y


def _true_jacobian(net, theta, X, y):
    Xa = np.ascontiguousarray(net.augment(X))
    c, _ = net.flow_constants(net.unit_scales())
    kernels, dims = net.kernels_for(X.shape[0]), net.dims()
    mode, aux = no_switching()

    def flow(t):
        out = np.empty(t.size)
        kernels.flow(t, Xa, y, c, dims, mode, aux, out)
        return out

    # the step: far inside the narrowest ramp (eps s ~ 1.5e-9 for a second-layer neuron
    # that stayed small, eps = 1e-4); the flow's entries are < 0.1, so rounding adds ~1e-5
    return naive.central_differences(flow, theta, h=1e-12)


def test_factor_holds_the_stiff_part_of_the_jacobian():
    """Where pairs slide, the Jacobian grows as 1/eps and the approximation's error does
    not: BDF's simplified Newton iteration, ``x <- x - M~^-1 (M x - r)``, contracts by
    the spectral radius of ``I - M~^-1 M``, about 0.05 / shift at both eps (measured:
    0.49, 0.049, 0.005 at shifts 0.1, 1, 10; the shift is ~1/h)."""
    norms, misses, contractions = {}, {}, {}
    for eps in (1e-3, 1e-4):
        net, theta, X, y = _condensed_state(eps)
        J = _true_jacobian(net, theta, X, y)
        P = theta.size
        contractions[eps] = []
        for shift in (1.0, 10.0):
            Minv = _factor(net, theta, X, y, shift)
            M = shift * np.eye(P) - J
            contractions[eps].append(np.max(np.abs(np.linalg.eigvals(np.eye(P) - Minv @ M))))
            if shift == 1.0:
                misses[eps] = np.linalg.norm(np.linalg.inv(Minv) - M, 2)
        norms[eps] = np.linalg.norm(J, 2)
        assert max(contractions[eps]) < 0.1, (eps, contractions[eps])
    assert norms[1e-4] > 5 * norms[1e-3]  # stiff: the ramps' rates grow as 1/eps ...
    assert misses[1e-4] < 2 * misses[1e-3]  # ... and the factor keeps up with them
    assert contractions[1e-4][0] < 2 * contractions[1e-3][0]


@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_bdf_follows_the_smoothed_flow_and_auto_starts_with_it(act):
    """BDF (rtol 1e-9) against dop853 at rtol 1e-12 on the stiff smoothed flow, with
    fewer gradients than dopri5 at the same tolerance; ``auto`` runs BDF from the start."""
    X = np.linspace(-1.0, 1.0, 4)[:, None]
    y = np.maximum(X[:, 0] - 0.2, 0.0) + np.maximum(-X[:, 0] - 0.3, 0.0)
    net = fs.ThreeLayer(act, (10, 10), 1, smoothing=1e-3)
    theta0 = net.init(0, scale=1e-3)
    kw = dict(t_end=150.0, save=[50.0, 100.0, 150.0], progress=False)
    ref = fs.simulate(net, theta0, X, y, method="dop853", rtol=1e-12, atol=1e-16, **kw)
    bdf = fs.simulate(net, theta0, X, y, method="bdf", rtol=1e-9, atol=1e-14, **kw)
    assert ref.status == bdf.status == "done"
    rel = np.linalg.norm(bdf.theta - ref.theta, axis=1) / np.linalg.norm(ref.theta, axis=1)
    assert np.all(rel < 1e-5), rel
    dopri5 = fs.simulate(net, theta0, X, y, method="dopri5", rtol=1e-9, atol=1e-14, **kw)
    assert 2 * bdf.nfev < dopri5.nfev
    auto = fs.simulate(net, theta0, X, y, method="auto", **kw)
    assert [name for _, name in auto.method_log] == ["bdf"]


def test_the_factor_is_offered_where_it_holds():
    X = np.linspace(-1, 1, 5)[:, None]
    smooth = fs.ThreeLayer("relu", (3, 3), 1, smoothing=1e-2)
    theta = smooth.init(0, scale=0.1)
    with pytest.raises(ValueError, match="approximate and RODAS needs the exact one"):
        fs.simulate(smooth, theta, X, X[:, 0], t_end=1.0, method="rodas")
    exact = fs.ThreeLayer("relu", (3, 3), 1)
    with pytest.raises(ValueError, match="smoothed kinks only"):
        fs.simulate(exact, theta, X, X[:, 0], t_end=1.0, method="bdf")
    assert smooth.stiff_from_start and not exact.stiff_from_start
    traj = fs.simulate(exact, theta, X, X[:, 0], t_end=1.0, method="auto", progress=False)
    assert traj.method_log[0][1] == "dopri5"
