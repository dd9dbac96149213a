"""Tests of flowsim.measure: similarity, feature map, RD and S_w, effective rank, Wasserstein."""

import dataclasses
import itertools

import matplotlib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from scipy.stats import ortho_group  # noqa: E402

import flowsim.measure as fm  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(20240613)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --- cosine similarity ------------------------------------------------------------------


def naive_cosine(W):
    m = W.shape[0]
    C = np.zeros((m, m))
    for j in range(m):
        for k in range(m):
            nj, nk = np.sqrt(W[j] @ W[j]), np.sqrt(W[k] @ W[k])
            if nj > 0 and nk > 0:
                C[j, k] = (W[j] @ W[k]) / (nj * nk)
    return C


def test_cosine_similarity_matches_naive(rng):
    W = rng.standard_normal((9, 4))
    C = fm.cosine_similarity(W)
    assert C.shape == (9, 9)
    np.testing.assert_allclose(C, naive_cosine(W), atol=1e-14)
    np.testing.assert_allclose(np.diag(C), 1.0)
    np.testing.assert_array_equal(C, C.T)


def test_cosine_similarity_zero_rows(rng):
    W = rng.standard_normal((6, 3))
    W[[1, 4]] = 0.0
    W[2] = 1e-300  # near-zero relative to the others: no direction
    C = fm.cosine_similarity(W)
    assert np.all(np.isfinite(C))
    for k in (1, 2, 4):
        np.testing.assert_array_equal(C[k], 0.0)
        np.testing.assert_array_equal(C[:, k], 0.0)
    keep = [0, 3, 5]
    np.testing.assert_allclose(C[np.ix_(keep, keep)], naive_cosine(W[keep]), atol=1e-14)
    assert fm.cosine_similarity(np.zeros((3, 2))).tolist() == np.zeros((3, 3)).tolist()
    assert fm.cosine_similarity(np.zeros((0, 2))).shape == (0, 0)


def test_cosine_similarity_1d_and_nan():
    np.testing.assert_allclose(
        fm.cosine_similarity([2.0, -1.0, 0.0]), [[1, -1, 0], [-1, 1, 0], [0, 0, 0]]
    )
    with pytest.raises(ValueError, match="NaN"):
        fm.cosine_similarity([[1.0, np.nan]])


@settings(max_examples=50, deadline=None)
@given(
    hnp.arrays(
        np.float64, st.tuples(st.integers(0, 8), st.integers(1, 4)), elements=st.floats(-1e3, 1e3)
    )
)
def test_cosine_similarity_properties(W):
    C = fm.cosine_similarity(W)
    assert C.shape == (W.shape[0], W.shape[0])
    assert np.all(np.isfinite(C))
    assert np.all(np.abs(C) <= 1.0)
    np.testing.assert_allclose(C, C.T, atol=1e-15)


def blocks(rng, centers, n_per, noise=0.02):
    rows = [c + noise * rng.standard_normal((n_per, len(c))) for c in centers]
    labels = np.repeat(np.arange(len(centers)), n_per)
    return np.vstack(rows), labels


def test_block_order_groups_orientations(rng):
    W, labels = blocks(rng, [[1, 0, 0], [-1, 0, 0], [0, 1, 1]], 15)
    perm = rng.permutation(W.shape[0])
    W, labels = W[perm], labels[perm]
    order = fm.block_order(W)
    assert sorted(order.tolist()) == list(range(W.shape[0]))
    ordered = labels[order]
    # each orientation is one contiguous block: the label changes exactly twice
    assert np.count_nonzero(np.diff(ordered)) == 2
    assert np.array_equal(order, fm.block_order(W))  # deterministic


@pytest.mark.parametrize("method", ["cluster", "eigenvector"])
def test_block_order_recovers_planted_blocks(rng, method):
    """Four random orientations, blocks of unequal size and scale, shuffled: each block
    comes back contiguous."""
    centers = rng.standard_normal((4, 5))
    sizes = [5, 9, 3, 7]
    labels = np.repeat(np.arange(4), sizes)
    W = centers[labels] * rng.uniform(0.5, 3.0, (labels.size, 1))
    W += 1e-3 * rng.standard_normal(W.shape)
    perm = rng.permutation(labels.size)
    W, labels = W[perm], labels[perm]
    order = fm.block_order(W, method)
    assert sorted(order.tolist()) == list(range(labels.size))
    assert np.count_nonzero(np.diff(labels[order])) == 3
    C = fm.cosine_similarity(W)[np.ix_(order, order)]
    edges = [0, *(np.flatnonzero(np.diff(labels[order])) + 1), labels.size]
    for lo, hi in itertools.pairwise(edges):
        assert C[lo:hi, lo:hi].min() > 0.99  # a block of +1 on the diagonal


def test_eigenvector_order_follows_the_leading_eigenvector(rng):
    W, _ = blocks(rng, [[1, 0.2, 0], [-1, 0.3, 0.1], [0.2, 1, 1]], 6)
    W = W[rng.permutation(W.shape[0])]
    values, vectors = np.linalg.eigh(naive_cosine(W))
    v = vectors[:, np.argmax(values)]
    order = fm.block_order(W, "eigenvector")
    projections = v[order] * np.sign(v[np.argmax(np.abs(v))])
    assert np.all(np.diff(projections) <= 1e-12)  # sorted, largest entry first
    with pytest.raises(ValueError, match=r"method: must be one of \['cluster', 'eigenvector'\]"):
        fm.block_order(W, "spectral")


def test_block_order_puts_zero_rows_last(rng):
    W = rng.standard_normal((8, 3))
    W[[0, 5]] = 0.0
    order = fm.block_order(W)
    assert order[-2:].tolist() == [0, 5]
    assert fm.block_order(np.zeros((0, 3))).shape == (0,)
    assert fm.block_order([[1.0, 0.0]]).tolist() == [0]


def test_plot_similarity(rng):
    W, _ = blocks(rng, [[1, 0], [0, 1]], 10)
    ax = fm.plot_similarity(W)
    assert isinstance(ax, matplotlib.axes.Axes)
    assert "neuron index" in ax.get_xlabel() and "neuron index" in ax.get_ylabel()
    image = ax.get_images()[0]
    assert image.get_clim() == (-1.0, 1.0)
    colorbar_axes = [a for a in ax.figure.axes if a is not ax]
    assert colorbar_axes and colorbar_axes[0].get_ylabel() == "cosine similarity"
    _, given_ax = plt.subplots()
    assert fm.plot_similarity(W, ax=given_ax, order=False) is given_ax
    np.testing.assert_allclose(given_ax.get_images()[0].get_array(), fm.cosine_similarity(W))
    _, eig_ax = plt.subplots()
    fm.plot_similarity(W, ax=eig_ax, order="eigenvector", colorbar=False)
    perm = fm.block_order(W, "eigenvector")
    np.testing.assert_allclose(eig_ax.get_images()[0].get_array(),
                               fm.cosine_similarity(W)[np.ix_(perm, perm)])  # fmt: skip
    assert eig_ax.get_xlabel() == "neuron index (eigenvector order)"
    with pytest.raises(ValueError, match="order: must be True, False or one of"):
        fm.plot_similarity(W, order="dendrogram")


# --- feature map ------------------------------------------------------------------------


class StandInNet:
    """The part of the two-layer model interface feature_map uses."""

    def __init__(self, m, input_dim=1, bias=True):
        self.m = m
        self.input_dim = input_dim
        self.bias = bias

    def unpack(self, theta):
        theta = np.asarray(theta)
        D = self.input_dim + int(self.bias)
        return {"a": theta[: self.m], "W": theta[self.m :].reshape(self.m, D)}


def test_feature_map_by_hand():
    a = np.array([2.0, -1.0, 0.5, -3.0])
    W = np.array([[3.0, 4.0], [-1.0, 1.0], [-1.0, -1.0], [0.0, -2.0]])  # columns: w_k, b_k
    net = StandInNet(4)
    angles, amplitudes = fm.feature_map(net, np.concatenate([a, W.ravel()]))
    np.testing.assert_allclose(
        angles, [np.arctan2(4, 3), 3 * np.pi / 4, -3 * np.pi / 4, -np.pi / 2], rtol=1e-15
    )
    np.testing.assert_allclose(amplitudes, [10.0, np.sqrt(2), 0.5 * np.sqrt(2), 6.0])
    result = fm.feature_map(net, np.concatenate([a, W.ravel()]))
    assert isinstance(result, fm.FeatureMap)
    np.testing.assert_array_equal(result.angles, angles)


def test_feature_map_range(rng):
    net = StandInNet(50)
    angles, amplitudes = fm.feature_map(net, rng.standard_normal(150))
    assert np.all((-np.pi <= angles) & (angles <= np.pi))
    assert np.all(amplitudes >= 0)


@pytest.mark.parametrize(("input_dim", "bias"), [(2, True), (1, False), (3, False)])
def test_feature_map_needs_1d_with_bias(input_dim, bias):
    net = StandInNet(3, input_dim=input_dim, bias=bias)
    with pytest.raises(ValueError, match="1D input and bias"):
        fm.feature_map(net, np.zeros(3 + 3 * (input_dim + int(bias))))


def test_feature_map_bad_unpack():
    class Bad(StandInNet):
        def unpack(self, theta):
            return {"a": np.zeros(3), "W": np.zeros((3, 3))}

    with pytest.raises(ValueError, match="shape"):
        fm.feature_map(Bad(3), None)


def test_plot_feature_map(rng):
    angles = rng.uniform(-np.pi, np.pi, 20)
    amplitudes = rng.uniform(0, 1, 20)
    ax = fm.plot_feature_map(angles, amplitudes)
    assert isinstance(ax, matplotlib.axes.Axes)
    np.testing.assert_allclose(ax.get_xlim(), (-np.pi, np.pi))
    np.testing.assert_allclose(ax.get_xticks(), [-np.pi, -np.pi / 2, 0, np.pi / 2, np.pi])
    assert "orientation" in ax.get_xlabel() and "amplitude" in ax.get_ylabel()
    _, given_ax = plt.subplots()
    assert fm.plot_feature_map(angles, amplitudes, ax=given_ax, color="red") is given_ax
    with pytest.raises(ValueError, match="one length"):
        fm.plot_feature_map(angles, amplitudes[:-1])


# --- relative distance and S_w ----------------------------------------------------------


def test_relative_distance_by_hand():
    theta0 = np.array([[3.0, 0.0], [0.0, 4.0]])  # |theta0| = 5
    theta = theta0 + np.array([[0.0, 1.0], [0.0, 0.0]])
    assert fm.relative_distance(theta, theta0) == pytest.approx(0.2, rel=1e-15)
    assert isinstance(fm.relative_distance(theta, theta0), float)
    assert fm.relative_distance(theta0, theta0) == 0.0


def test_relative_distance_time_axis(rng):
    theta0 = rng.standard_normal((5, 3))
    path = theta0[None] * (1.0 + np.linspace(0, 2, 7))[:, None, None]
    rd = fm.relative_distance(path, theta0)
    assert rd.shape == (7,)
    np.testing.assert_allclose(rd, np.linspace(0, 2, 7), atol=1e-14)
    # any shape
    v0 = rng.standard_normal(4)
    np.testing.assert_allclose(
        fm.relative_distance(np.stack([v0, 2 * v0]), v0), [0.0, 1.0], atol=1e-15
    )


def test_relative_distance_errors():
    with pytest.raises(ValueError, match="zero"):
        fm.relative_distance(np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        fm.relative_distance(np.ones((2, 4)), np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        fm.relative_distance([np.nan, 1.0], [1.0, 1.0])


@pytest.mark.parametrize("s", [-0.5, 0.0, 0.25, 1.0])
def test_slope_of_exact_power_law(s):
    m = np.array([100, 200, 400, 800, 1600, 3200])
    fit = fm.slope_S_w(m, 3.0 * m**s)
    assert fit.slope == pytest.approx(s, abs=1e-12)
    assert fit.stderr < 1e-12
    assert fit.intercept == pytest.approx(np.log(3.0), abs=1e-10)
    assert fit.n == 6


def test_slope_of_noisy_power_law(rng):
    s = -0.5
    m = np.repeat(np.logspace(2, 4, 5), 4)  # 5 widths, 4 seeds each
    rd = 2.0 * m**s * np.exp(0.05 * rng.standard_normal(m.size))
    fit = fm.slope_S_w(m, rd)
    assert fit.stderr < 0.02
    assert abs(fit.slope - s) < 4 * fit.stderr
    assert abs(fit.rvalue) > 0.99


@pytest.mark.parametrize(
    ("widths", "rd", "message"),
    [
        ([10, 20], [1.0, 2.0], "3 distinct"),
        ([10, 10, 20, 20], [1.0, 1.1, 2.0, 2.1], "3 distinct"),
        ([10, 20, 40], [1.0, 0.0, 2.0], "RD must be positive"),
        ([10, -20, 40], [1.0, 1.0, 2.0], "widths must be positive"),
        ([10, 20, 40], [1.0, np.nan, 2.0], "RD contains NaN"),
        ([10, 20, 40], [1.0, 2.0], "one length"),
    ],
)
def test_slope_validation(widths, rd, message):
    with pytest.raises(ValueError, match=message):
        fm.slope_S_w(widths, rd)


def test_slope_fit_is_frozen():
    fit = fm.slope_S_w([1, 2, 4], [1.0, 2.0, 4.0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.slope = 0.0


# --- effective rank ---------------------------------------------------------------------


@pytest.mark.parametrize(("rows", "cols", "k"), [(6, 6, 1), (6, 6, 3), (8, 5, 5), (4, 9, 2)])
def test_effective_rank_of_equal_singular_values(rows, cols, k):
    U = ortho_group.rvs(rows, random_state=1)[:, :k]
    V = ortho_group.rvs(cols, random_state=2)[:, :k]
    M = 2.5 * U @ V.T
    assert fm.effective_rank(M) == pytest.approx(k, rel=1e-10)


def test_effective_rank_bounds_and_zero(rng):
    assert fm.effective_rank(np.zeros((3, 4))) == 0.0
    assert fm.effective_rank(np.zeros((0, 4))) == 0.0
    M = rng.standard_normal((6, 4))
    erank = fm.effective_rank(M)
    assert 1.0 <= erank <= 4.0
    assert fm.effective_rank(1e-8 * M) == pytest.approx(erank, rel=1e-12)
    # hand value: singular values (3, 1) -> p = (3/4, 1/4)
    p = np.array([0.75, 0.25])
    assert fm.effective_rank(np.diag([3.0, 1.0])) == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    with pytest.raises(ValueError, match="2D"):
        fm.effective_rank(np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        fm.effective_rank([[np.nan]])


# --- Wasserstein ------------------------------------------------------------------------


def test_amplitude_wasserstein_by_hand():
    a = np.array([1.0, -2.0, 3.0])
    W = np.array([[0.6, 0.8], [0.0, -2.0], [4.0, 0.0]])  # |w| = 1, 2, 4
    # equal sample sizes: W1 = mean |sorted(|a|) - sorted(|w|)| = (0 + 0 + 1) / 3
    assert fm.amplitude_wasserstein(a, W) == pytest.approx(1.0 / 3.0, rel=1e-14)
    assert fm.amplitude_wasserstein({"a": a, "W": W}) == pytest.approx(1.0 / 3.0, rel=1e-14)
    # two neurons: |a| = (1, 5), |w| = (2, 2): (1 + 3) / 2
    assert fm.amplitude_wasserstein([1.0, -5.0], [[2.0], [-2.0]]) == pytest.approx(2.0)
    # balanced |a_k| = |w_k|: zero
    assert fm.amplitude_wasserstein(np.linalg.norm(W, axis=1), W) == 0.0


def test_amplitude_wasserstein_errors():
    with pytest.raises(ValueError, match="W is missing"):
        fm.amplitude_wasserstein(np.ones(3))
    with pytest.raises(ValueError, match="keys"):
        fm.amplitude_wasserstein({"a": np.ones(2)})
    with pytest.raises(ValueError, match="rows"):
        fm.amplitude_wasserstein(np.ones(3), np.ones((2, 2)))
    with pytest.raises(ValueError, match="m = 0"):
        fm.amplitude_wasserstein(np.ones(0), np.ones((0, 2)))
    with pytest.raises(ValueError, match="NaN"):
        fm.amplitude_wasserstein([np.nan], [[1.0]])
    with pytest.raises(ValueError, match="either"):
        fm.amplitude_wasserstein({"a": np.ones(1), "W": np.ones((1, 1))}, np.ones((1, 1)))


def test_public_api():
    for name in fm.__all__:
        assert hasattr(fm, name)


# --- attention measures ([CL25]) --------------------------------------------------------


def test_effective_rank_and_ratio_vectorized_exact_values():
    U = ortho_group.rvs(5, random_state=3)
    V = ortho_group.rvs(4, random_state=4)
    rank_one = 3.0 * np.outer(U[:, 0], V[:, 0])
    stack = np.stack(
        [rank_one, np.eye(5)[:, :4] * 2.0, U[:, :4] @ np.diag([4.0, 2.0, 1.0, 1.0]) @ V.T]
    )
    p = np.array([4.0, 2.0, 1.0, 1.0]) / 8.0
    np.testing.assert_allclose(
        fm.effective_rank(stack), [1.0, 4.0, np.exp(-(p * np.log(p)).sum())], rtol=1e-12
    )
    assert fm.effective_rank(np.eye(7)) == pytest.approx(7.0, rel=1e-14)
    np.testing.assert_allclose(fm.singular_value_ratio(stack), [0.0, 1.0, 0.5], atol=1e-15)
    assert fm.singular_value_ratio(np.zeros((3, 3))) == 0.0
    assert fm.singular_value_ratio(np.ones((1, 4))) == 0.0
    assert fm.effective_rank(np.zeros((2, 3, 3))).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="2D matrix or a stack"):
        fm.singular_value_ratio(np.ones(3))


def test_cosine_with_direction():
    v = np.array([3.0, 4.0])
    W = np.array([[3.0, -6.0, 0.0, 4.0], [4.0, -8.0, 0.0, -3.0]])  # columns: v, -2v, 0, v-perp
    np.testing.assert_allclose(fm.cosine_with(W, v), [1.0, -1.0, 0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(
        fm.cosine_with(W.T, v, axis="rows"), [1.0, -1.0, 0.0, 0.0], atol=1e-15
    )
    theta = 0.3
    rotated = np.array([[np.cos(theta)], [np.sin(theta)]])
    stack = np.stack([rotated, 2 * rotated])  # a time axis
    np.testing.assert_allclose(fm.cosine_with(stack, [1.0, 0.0]), [[np.cos(theta)]] * 2, rtol=1e-15)
    with pytest.raises(ValueError, match="axis: must be one of"):
        fm.cosine_with(W, v, axis="diagonal")
    with pytest.raises(ValueError, match=r"direction must have shape \(2,\)"):
        fm.cosine_with(W, [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="direction is zero"):
        fm.cosine_with(W, [0.0, 0.0])


def test_reordered_similarity_blocks_and_explicit_order():
    u, w = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 1.0]) / np.sqrt(2)
    W = np.array([u, 2 * w, -u, 3 * u, -w])  # orientations +-u, +-w
    C, perm = fm.reordered_similarity(W)
    assert sorted(perm.tolist()) == list(range(5))
    np.testing.assert_allclose(C, fm.cosine_similarity(W)[np.ix_(perm, perm)])
    # eigenvector order: rows of one orientation are contiguous
    labels = [
        ("u" if abs(row[0]) > 0 else "w") + ("+" if row.sum() > 0 else "-") for row in W[perm]
    ]
    runs = [key for key, _ in itertools.groupby(labels)]
    assert len(runs) == len(set(labels)) == 4
    C2, perm2 = fm.reordered_similarity(W, order=[4, 3, 2, 1, 0])
    assert perm2.tolist() == [4, 3, 2, 1, 0]
    assert C2[0, 0] == pytest.approx(1.0) and C2[0, 3] == pytest.approx(-1.0)  # -w against 2w
    with pytest.raises(ValueError, match="order: must be a permutation of range"):
        fm.reordered_similarity(W, order=[0, 0, 1, 2, 3])
    with pytest.raises(ValueError, match="order: must be one of"):
        fm.reordered_similarity(W, order="random")


def test_relative_change_of_a_group():
    WQ0, WK0 = np.ones((2, 2)), np.zeros((2, 3))  # |group_0| = 2
    WQt = np.stack([WQ0, 2 * WQ0])
    WKt = np.stack([WK0, np.full((2, 3), np.sqrt(2.0 / 6.0))])  # adds |.| = sqrt(2)
    dist = fm.relative_change([WQt, WKt], [WQ0, WK0])
    np.testing.assert_allclose(dist, [0.0, np.sqrt(4.0 + 2.0) / 2.0], rtol=1e-14)
    norm = fm.relative_change([WQt, WKt], [WQ0, WK0], measure="norm")
    np.testing.assert_allclose(norm, [0.0, np.sqrt(16.0 + 2.0) / 2.0 - 1.0], rtol=1e-14)
    assert fm.relative_change([2 * WQ0], [WQ0], measure="norm") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="measure: must be one of"):
        fm.relative_change([WQ0], [WQ0], measure="angle")
    with pytest.raises(ValueError, match=r"group_t\[1\] must have shape"):
        fm.relative_change([WQt, WK0], [WQ0, WK0])
    with pytest.raises(ValueError, match="group_0 is zero"):
        fm.relative_change([WK0], [WK0], measure="norm")


def test_principal_angles_constructed_and_against_scipy(rng):
    from scipy.linalg import subspace_angles

    # span(e1, e2) against span(cos a e1 + sin a e3, cos b e2 + sin b e4): angles a, b exactly
    a, b = 0.2, 1e-7
    A = np.eye(5)[:, :2] @ np.array([[2.0, 1.0], [0.0, 3.0]])  # a non-orthonormal basis
    B = np.zeros((5, 2))
    B[[0, 2], 0] = np.cos(a), np.sin(a)
    B[[1, 3], 1] = np.cos(b), np.sin(b)
    np.testing.assert_allclose(fm.principal_angles(A, B), [b, a], rtol=1e-9)
    for _ in range(3):
        P, Q = rng.standard_normal((7, 3)), rng.standard_normal((7, 2))
        np.testing.assert_allclose(
            fm.principal_angles(P, Q), np.sort(subspace_angles(P, Q)), rtol=1e-10, atol=1e-14
        )
    stack = fm.principal_angles(np.stack([A, A]), np.stack([B, A]))
    np.testing.assert_allclose(stack[0], [b, a], rtol=1e-9)
    np.testing.assert_allclose(stack[1], [0.0, 0.0], atol=1e-12)
    with pytest.raises(ValueError, match="same number of rows"):
        fm.principal_angles(np.ones((3, 1)), np.ones((4, 1)))


def test_singular_subspace_recovers_planted_vectors():
    U = ortho_group.rvs(4, random_state=5)
    V = ortho_group.rvs(3, random_state=6)
    M = U[:, :3] @ np.diag([5.0, 2.0, 1.0]) @ V.T
    left = fm.singular_subspace(M)
    right = fm.singular_subspace(M, 2, side="right")
    assert left.shape == (4, 1) and right.shape == (3, 2)
    assert fm.principal_angles(left, U[:, :1])[0] < 1e-7
    np.testing.assert_allclose(fm.principal_angles(right, V[:, :2]), 0.0, atol=1e-7)
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 3\]"):
        fm.singular_subspace(M, 4)
    with pytest.raises(ValueError, match="side: must be one of"):
        fm.singular_subspace(M, side="up")


def test_trajectory_pca_against_the_covariance_eigenvectors(rng):
    """Scores and shares against NumPy's covariance eigendecomposition; a trajectory
    moving on a line has one component."""
    T, shape = 30, (4, 3)
    states = rng.standard_normal((T, *shape)) * np.linspace(3, 0.1, 12).reshape(shape)
    scores, explained = fm.trajectory_pca(states, k=3)
    flat = states.reshape(T, -1)
    cov = np.cov(flat.T, bias=True)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1][:3]
    np.testing.assert_allclose(explained, values[order] / values.sum(), rtol=1e-10)
    reference = (flat - flat.mean(axis=0)) @ vectors[:, order]
    np.testing.assert_allclose(np.abs(scores), np.abs(reference), rtol=1e-8, atol=1e-10)
    direction = rng.standard_normal(shape)
    line = np.linspace(-1, 2, 7)[:, None, None] * direction
    scores, explained = fm.trajectory_pca(line, k=2)
    np.testing.assert_allclose(explained, [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(np.abs(scores[:, 0]), np.abs(np.linspace(-1, 2, 7) - 0.5)
                               * np.linalg.norm(direction), rtol=1e-12, atol=1e-12)  # fmt: skip
    with pytest.raises(ValueError, match="k must be"):
        fm.trajectory_pca(line, k=0)
    with pytest.raises(ValueError, match="T >= 2"):
        fm.trajectory_pca(line[:1])
