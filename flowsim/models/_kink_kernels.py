"""Kinks of a piecewise-linear activation on a two-layer net (template; see
:mod:`flowsim._codegen`): frozen activation patterns, Filippov sliding, switch location.

Appended to the two-layer template for ReLU and leaky ReLU (its names: ``NEURON_BLOCK``,
``residuals``, ``flow_from_residuals``, ``_neuron_block``, ``_lane_dot``, ...); other
activations get the no-op stand-ins of :mod:`flowsim.models._smooth_switching`.

A kink at 0 makes the flow only piecewise smooth.  The stepping loop integrates with
the activation pattern frozen (``mode[k, i]``: +1 / -1 the side of the kink, 2 on it),
locates the first pre-activation that reaches its kink inside a step, ends the step
there and decides the new pattern (:func:`switch_cross`).

Sliding is handled **per neuron, jointly** (docs/theory.md §11).  With ``x~`` the
inputs, ``e`` the residuals, ``S_k`` neuron k's samples on their kinks and
``b_k = sum_{i not in S_k} e_i sigma'_i x~_i``, the input weights move as
``dw_k/dt = -(c_w a_k / n) g_k`` with ``g_k = b_k + sum_{j in S_k} q_j e_j x~_j`` and
slopes ``q_j`` in ``[sigma'(-1), sigma'(1)]`` (Filippov's convex hull).  The slopes
minimize ``|g_k|`` over that box (:func:`_box_slopes`, a small bound-constrained
least-squares problem): where the minimizer is inside the box, ``x~_j . g_k = 0`` and the
pre-activations stay exactly on their kinks (sliding on one surface or on the
intersection of several); where a slope sits on a bound, the pre-activation leaves its
kink to that bound's side, continuously, so leaving needs no event: the pair is moved
to its side once the step has carried it off (:func:`switch_locate`).  Samples that
reach their kinks together are decided together, as a small complementarity problem
(:func:`_decide`); a sliding motion whose kink turns repelling is left.  A neuron whose
input weight reaches 0 (every sample on its kink) has ``g_k = 0`` for ReLU: it is dead
and stays so.  Because every velocity is tangent to the sliding constraints, which are
linear in theta, a Runge-Kutta step keeps them to rounding, and ``a_k^2 - |w_k|^2`` is
conserved through sliding.
"""

import math

import numpy as np
from numba import prange

from flowsim import _abi
from flowsim._jit import PARALLEL_MIN_WORK_FROZEN, jit, pjit
from flowsim.models._two_layer_kernels import (
    ACTIVATION,
    NEURON_BLOCK,
    _lane_dot,
    _neuron_block,
    _scaled_gradient,
    _sum_parts,
    flow_from_residuals,
    residuals,
)

# --- template body ---

FROZEN_PATTERNS = True
"""The stepping loop freezes activation patterns (the two-layer flow's two passes)."""

SWITCH_EPS = 1e-12
"""Relative size (to ``|w_k| |x_i|``) below which a pre-activation is taken as 0."""

ON_KINK = 2
"""``mode`` of a pair on its kink (sliding, or held there by the slopes' bounds)."""


@jit
def _kink_slopes(dims):
    """``sigma'(-1)``, ``sigma'(1)``: the activation's slopes left and right of its kink."""
    z = np.array([-1.0, 1.0])
    s = np.empty(2)
    ds = np.empty(2)
    _abi.activate(dims[ACTIVATION], z, 2, 1.0, 1, s, ds, ds)
    return ds[0], ds[1]


@jit
def _slope_table(dims):
    """Slopes by ``mode + 1`` (mode -1, 1, 2), in rows: the frozen slope (row 0:
    sigma'(-1), -, sigma'(1), 0 on the kink, whose term :func:`_sliding_terms` adds);
    the slope of ``sigma(z) = s z`` for z <= 0 (row 1) and its increase for z > 0 (row 2),
    which on the kink is the side of z (exact for a pair that leaves its kink during a
    step, rounding otherwise)."""
    lo, hi = _kink_slopes(dims)
    table = np.zeros((3, 4))
    table[0, 0] = lo
    table[0, 2] = hi
    table[1, 0] = lo
    table[1, 2] = hi
    table[1, 3] = lo
    table[2, 3] = hi - lo
    return table


@jit
def _frozen_block(X, mode, D, k0, L, i, table, WT, z, slope, zslope):
    """Pre-activations z of block neurons k0..k0+L for sample i, their frozen slopes and
    the slopes of their activations ``sigma(z) = zslope * z`` (:func:`_slope_table`)."""
    z[:L] = 0.0
    for d in range(D):
        xd = X[i, d]
        for j in range(L):
            z[j] += WT[d, j] * xd
    for j in range(L):
        # table lookups: a select on the side compiled to branches, mispredicted
        # half the time on a mixed pattern (2.6 -> 1.2 ms at n = 4, m = 1e5)
        md = mode[k0 + j, i] + 1
        slope[j] = table[0, md]
        zslope[j] = table[1, md] + table[2, md] * (z[j] > 0.0)


@pjit
def _forward_frozen(theta, X, c, dims, mode, out):
    """f(x_i) with the activation pattern frozen by ``mode`` (switching models).

    Vectorized over neurons, in blocks of :data:`NEURON_BLOCK` whose partial
    outputs are summed in block order (independent of the thread count).
    """
    m = dims[0]
    D = dims[1]
    n = X.shape[0]
    table = _slope_table(dims)
    nb = (m + NEURON_BLOCK - 1) // NEURON_BLOCK
    part = np.empty((nb, n))
    for b in prange(nb):
        k0, L, WT = _neuron_block(theta, m, D, b)
        z = np.empty(L)
        slope = np.empty(L)
        zslope = np.empty(L)
        v = np.empty(L)
        for i in range(n):
            _frozen_block(X, mode, D, k0, L, i, table, WT, z, slope, zslope)
            for j in range(L):
                v[j] = zslope[j] * z[j]
            part[b, i] = _lane_dot(theta, k0, v, L)
    _sum_parts(part, c[0], out)


# -- the slopes of the samples on their kinks: a box-constrained least-squares problem --


@jit
def _solve_free(H, free, nf, g, d, A, perm, tiny):
    """d = -H_FF^+ g_F on the free set F (Gaussian elimination, complete pivoting).

    H is positive semidefinite; directions whose pivot falls below ``tiny`` (a rank
    deficiency: more samples on the kink than independent inputs) get d = 0.
    """
    for r in range(nf):
        perm[r] = r
        d[r] = -g[free[r]]
        for q in range(nf):
            A[r, q] = H[free[r], free[q]]
    rank = nf
    for p in range(nf):
        best = 0.0
        br = p
        bc = p
        for r in range(p, nf):
            for q in range(p, nf):
                if abs(A[r, q]) > best:
                    best = abs(A[r, q])
                    br = r
                    bc = q
        if best <= tiny:
            rank = p
            break
        if br != p:  # swap rows (equations)
            for q in range(nf):
                A[p, q], A[br, q] = A[br, q], A[p, q]
            d[p], d[br] = d[br], d[p]
        if bc != p:  # swap columns (unknowns)
            for r in range(nf):
                A[r, p], A[r, bc] = A[r, bc], A[r, p]
            perm[p], perm[bc] = perm[bc], perm[p]
        for r in range(p + 1, nf):
            f = A[r, p] / A[p, p]
            if f != 0.0:
                for q in range(p, nf):
                    A[r, q] -= f * A[p, q]
                d[r] -= f * d[p]
    sol = np.zeros(nf)
    for p in range(rank - 1, -1, -1):
        acc = d[p]
        for q in range(p + 1, rank):
            acc -= A[p, q] * sol[q]
        sol[p] = acc / A[p, p]
    for r in range(nf):
        d[r] = 0.0
    for p in range(rank):
        d[perm[p]] = sol[p]


@jit
def _box_slopes(b, U, s, lo, hi, q, H, g, d, r, A, free, perm):
    """q in [lo, hi]^s minimizing |b + sum_j q_j U[j]|^2, warm-started from q (in place).

    A primal active-set method: Newton steps on the free slopes (inside the box, or on a
    bound with the gradient pointing in), cut at the box; exact on the free set, so
    ``U[j] . (b + U^T q) = 0`` to rounding for every slope inside the box.
    """
    D = b.size
    for j in range(s):
        q[j] = min(hi, max(lo, q[j]))
    if s == 1:
        uu = 0.0
        ub = 0.0
        for t in range(D):
            uu += U[0, t] * U[0, t]
            ub += U[0, t] * b[t]
        if uu > 0.0:
            q[0] = min(hi, max(lo, -ub / uu))
        return
    hmax = 0.0
    for j in range(s):
        for l in range(j, s):
            acc = 0.0
            for t in range(D):
                acc += U[j, t] * U[l, t]
            H[j, l] = acc
            H[l, j] = acc
        hmax = max(hmax, H[j, j])
    if hmax == 0.0:
        return
    bnorm = 0.0
    for t in range(D):
        bnorm += b[t] * b[t]
    full = False
    for _ in range(4 * s + 8):
        for t in range(D):
            r[t] = b[t]
        for j in range(s):
            for t in range(D):
                r[t] += q[j] * U[j, t]
        size = math.sqrt(bnorm)
        for j in range(s):
            size += abs(q[j]) * math.sqrt(H[j, j])
        nf = 0
        entering = 0
        for j in range(s):
            acc = 0.0
            for t in range(D):
                acc += U[j, t] * r[t]
            g[j] = acc
            tol = 1e-13 * math.sqrt(H[j, j]) * size
            inside = lo < q[j] < hi
            if inside or (q[j] <= lo and acc < -tol) or (q[j] >= hi and acc > tol):
                free[nf] = j
                nf += 1
                if not inside:
                    entering += 1
        if nf == 0 or (entering == 0 and full):
            break
        _solve_free(H, free, nf, g, d, A, perm, 1e-13 * hmax)
        alpha = 1.0
        hit = -1
        for f in range(nf):
            j = free[f]
            if d[f] > 0.0 and q[j] + d[f] > hi:
                step = (hi - q[j]) / d[f]
                if step < alpha:
                    alpha = step
                    hit = j
            elif d[f] < 0.0 and q[j] + d[f] < lo:
                step = (lo - q[j]) / d[f]
                if step < alpha:
                    alpha = step
                    hit = j
        for f in range(nf):
            j = free[f]
            q[j] = min(hi, max(lo, q[j] + alpha * d[f]))
        if hit >= 0:
            q[hit] = hi if q[hit] > 0.5 * (lo + hi) else lo
        full = hit < 0


@jit
def _orthonormal(Q, count, D):
    """Orthonormalize the rows Q[:count] in place (Gram-Schmidt, twice), dropping
    dependent ones; returns the rank (the first rows of Q)."""
    rank = 0
    for row in range(count):
        norm0 = 0.0
        for t in range(D):
            Q[rank, t] = Q[row, t]
            norm0 += Q[row, t] ** 2
        for _ in range(2):
            for p in range(rank):
                dot = 0.0
                for t in range(D):
                    dot += Q[p, t] * Q[rank, t]
                for t in range(D):
                    Q[rank, t] -= dot * Q[p, t]
        norm = 0.0
        for t in range(D):
            norm += Q[rank, t] ** 2
        if norm > 1e-20 * norm0 and rank < D:
            inv = 1.0 / math.sqrt(norm)
            for t in range(D):
                Q[rank, t] *= inv
            rank += 1
    return rank


@jit
def _remove_span(v, Q, rank, D):
    """v minus its projection onto the orthonormal rows Q[:rank] (exactly 0 if rank = D)."""
    if rank == D:
        v[:D] = 0.0
        return
    for _ in range(2):
        for p in range(rank):
            dot = 0.0
            for t in range(D):
                dot += Q[p, t] * v[t]
            for t in range(D):
                v[t] -= dot * Q[p, t]


@jit
def _sliding_terms(X, e, D, mode, aux, k, lo, hi, g, work, U, H, A, q, gq, dq, r, free, perm):
    """Add neuron k's on-kink terms sum_j q_j e_j x~_j to ``g`` (holding b_k on entry),
    with the slopes q of :func:`_box_slopes` (warm-started from, and stored in, aux[k]).

    ``g`` is then made exactly tangent to the kinks of the slopes inside the box (it is
    so up to rounding): a neuron held on D independent kinks does not move at all.
    """
    n = X.shape[0]
    s = 0
    for i in range(n):
        if mode[k, i] == ON_KINK:
            work[s] = i
            q[s] = aux[k, i]
            for t in range(D):
                U[s, t] = e[i] * X[i, t]
            s += 1
    _box_slopes(g, U, s, lo, hi, q, H, gq, dq, r, A, free, perm)
    count = 0
    for j in range(s):
        i = work[j]
        aux[k, i] = q[j]
        for t in range(D):
            g[t] += q[j] * U[j, t]
        if lo < q[j] < hi and e[i] != 0.0:
            for t in range(D):
                U[count, t] = X[i, t]
            count += 1
    if count > 0:
        _remove_span(g, U, _orthonormal(U, count, D), D)


@jit
def _single_kinks(X, e, mode, aux, k0, L, lo, hi, WT, gw):
    """:func:`_sliding_terms` for the block's neurons with exactly one sample on its kink
    (the usual case), vectorized over them: with u = e_i x~_i, q = clip(-(u . b) / |u|^2),
    g = b + q u, made exactly tangent to the kink when q is inside the bounds; and g = 0
    for dead ReLU neurons (w_k = 0: every sample on its kink, q = 0 least).  Returns the
    number of other neurons with several samples on their kinks."""
    n = X.shape[0]
    D = gw.shape[0]
    one = np.empty((n, L))  # 1.0 where sample i is the neuron's only one on its kink
    count = np.zeros(L)
    for i in range(n):
        for j in range(L):
            one[i, j] = 1.0 if mode[k0 + j, i] == ON_KINK else 0.0
            count[j] += one[i, j]
    alive = np.ones(L)
    if lo == 0.0:
        for j in range(L):
            alive[j] = 0.0 if count[j] == n else 1.0
        for d in range(D):
            for j in range(L):
                alive[j] = 1.0 if WT[d, j] != 0.0 else alive[j]
        for d in range(D):
            for j in range(L):
                gw[d, j] *= alive[j]
    several = 0
    for j in range(L):
        several += count[j] >= 2.0 and alive[j] == 1.0
        count[j] = 1.0 if count[j] == 1.0 else 0.0
    which = np.zeros(L)
    for i in range(n):
        for j in range(L):
            one[i, j] *= count[j]
            which[j] += i * one[i, j]
    ub = np.zeros(L)
    xx = np.zeros(L)
    ee = np.zeros(L)
    for i in range(n):
        ei = e[i]
        for d in range(D):
            xd = X[i, d]
            for j in range(L):
                ub[j] += one[i, j] * xd * gw[d, j]
                xx[j] += one[i, j] * xd * xd
        for j in range(L):
            ee[j] += one[i, j] * ei
    q = np.zeros(L)
    for j in range(L):
        if count[j] == 1.0:
            i = int(which[j])
            q[j] = aux[k0 + j, i]
            if ee[j] != 0.0 and xx[j] > 0.0:
                q[j] = min(hi, max(lo, -ub[j] / (ee[j] * xx[j])))
                aux[k0 + j, i] = q[j]
    xg = np.zeros(L)
    for i in range(n):
        for d in range(D):
            xd = X[i, d]
            for j in range(L):
                gw[d, j] += one[i, j] * q[j] * ee[j] * xd
    for i in range(n):
        for d in range(D):
            xd = X[i, d]
            for j in range(L):
                xg[j] += one[i, j] * xd * gw[d, j]
    for j in range(L):  # the tangent correction's factor (0 unless sliding inside the bounds)
        inside = count[j] == 1.0 and lo < q[j] < hi and ee[j] != 0.0 and xx[j] > 0.0
        xg[j] = xg[j] / xx[j] if inside else 0.0
    for i in range(n):
        for d in range(D):
            xd = X[i, d]
            for j in range(L):
                gw[d, j] -= one[i, j] * xg[j] * xd
    return several


@jit
def _block_sliding(theta, X, e, dims, mode, aux, k0, L, lo, hi, gw):
    """Add the on-kink terms of the block's neurons with several samples on their kinks
    (not dead ones: :func:`_single_kinks`) to their sums ``gw`` (D, L)."""
    m = dims[0]
    D = dims[1]
    n = X.shape[0]
    smax = 0
    for j in range(L):
        on = 0
        for i in range(n):
            on += mode[k0 + j, i] == ON_KINK
        smax = max(smax, on)
    ints = np.empty((3, smax), dtype=np.int64)
    vec = np.empty((3, smax))
    mats = np.empty((2, smax, smax))
    U = np.empty((smax, D))
    rv = np.empty(D)
    g = np.empty(D)
    for j in range(L):
        k = k0 + j
        on = 0
        for i in range(n):
            on += mode[k, i] == ON_KINK
        if on <= 1 or (on == n and lo == 0.0 and _dead(theta, m, D, k)):
            continue  # done by _single_kinks
        for d in range(D):
            g[d] = gw[d, j]
        _sliding_terms(X, e, D, mode, aux, k, lo, hi, g, ints[0], U, mats[0], mats[1], vec[0],
                       vec[1], vec[2], rv, ints[1], ints[2])  # fmt: skip
        for d in range(D):
            gw[d, j] = g[d]


@jit
def _dead(theta, m, D, k):
    """Neuron k's input weight is exactly 0."""
    for d in range(D):
        if theta[m + k * D + d] != 0.0:
            return False
    return True


@pjit
def _backward_frozen(theta, X, e, c, dims, mode, aux, out):
    """As :func:`_backward` with the activation pattern frozen by ``mode``: vectorized
    over neurons in blocks; neurons with samples on their kinks get their Filippov terms
    afterwards (:func:`_sliding_terms`)."""
    m = dims[0]
    D = dims[1]
    n = X.shape[0]
    table = _slope_table(dims)
    lo = table[0, 0]
    hi = table[0, 2]
    nb = (m + NEURON_BLOCK - 1) // NEURON_BLOCK
    for b in prange(nb):
        k0, L, WT = _neuron_block(theta, m, D, b)
        ga = np.zeros(L)
        gw = np.zeros((D, L))
        z = np.empty(L)
        slope = np.empty(L)
        zslope = np.empty(L)
        r = np.empty(L)
        for i in range(n):
            _frozen_block(X, mode, D, k0, L, i, table, WT, z, slope, zslope)
            ei = e[i]
            for j in range(L):
                r[j] = ei * slope[j]
                ga[j] += ei * zslope[j] * z[j]
            for d in range(D):
                xd = X[i, d]
                for j in range(L):
                    gw[d, j] += r[j] * xd
        flat = mode.reshape(mode.size)
        on_kink = 0
        for j in range(k0 * n, (k0 + L) * n):
            on_kink += flat[j] == ON_KINK
        if on_kink > 0:
            if _single_kinks(X, e, mode, aux, k0, L, lo, hi, WT, gw) > 0:
                _block_sliding(theta, X, e, dims, mode, aux, k0, L, lo, hi, gw)
        _scaled_gradient(theta, c, m, D, n, k0, L, ga, gw, out)


# -- deciding the pattern at a kink ----------------------------------------------------


@jit
def _preact(theta, X, dims, k, i):
    m = dims[0]
    D = dims[1]
    z = 0.0
    for d in range(D):
        z += theta[m + k * D + d] * X[i, d]
    return z


@jit
def _scale(theta, X, dims, k, i):
    """|w_k| |x_i|: the size below which a pre-activation is rounding noise."""
    m = dims[0]
    D = dims[1]
    sw = 0.0
    sx = 0.0
    for d in range(D):
        sw += theta[m + k * D + d] ** 2
        sx += X[i, d] ** 2
    return math.sqrt(sw * sx)


@jit
def _project(theta, X, dims, mode, k):
    """Put neuron k's on-kink samples exactly on their kinks: w_k minus its orthogonal
    projection onto their inputs' span (exactly 0 when they span every direction)."""
    m = dims[0]
    D = dims[1]
    n = X.shape[0]
    Q = np.empty((n, D))
    count = 0
    for i in range(n):
        if mode[k, i] == ON_KINK:
            for t in range(D):
                Q[count, t] = X[i, t]
            count += 1
    if count > 0:
        _remove_span(theta[m + k * D : m + (k + 1) * D], Q, _orthonormal(Q, count, D), D)


@jit
def _direction(X, e, dims, mode, aux, k, g):
    """g = g_k, the direction of neuron k's input weights (solving its on-kink slopes)."""
    D = dims[1]
    n = X.shape[0]
    table = _slope_table(dims)
    g[:] = 0.0
    for i in range(n):
        slope = table[0, mode[k, i] + 1]
        for t in range(D):
            g[t] += e[i] * slope * X[i, t]
    ints = np.empty((3, n), dtype=np.int64)
    U = np.empty((n, D))
    H = np.empty((n, n))
    A = np.empty((n, n))
    vec = np.empty((3, n))
    r = np.empty(D)
    _sliding_terms(X, e, D, mode, aux, k, table[0, 0], table[0, 2], g, ints[0], U, H, A, vec[0],
                   vec[1], vec[2], r, ints[1], ints[2])  # fmt: skip


KEEP = 3
"""``old`` entry of a sample that is not being decided."""


MAX_ENUMERATED = 5
"""Up to this many samples decided at once, every pattern is tried (3 modes each)."""


@jit
def _preferred(old_i, q, lo, hi, rank):
    """Mode of preference ``rank`` (0, 1, 2) for a sample decided at its kink: on the
    kink; then, if it was crossing (old -1 / 1), onward, else (a sliding motion turned
    unstable) the side its slope leans to (q above or below the middle of the bounds);
    then the other side."""
    if rank == 0:
        return ON_KINK
    first = -old_i if (old_i == 1 or old_i == -1) else (1 if q >= 0.5 * (lo + hi) else -1)
    return first if rank == 1 else -first


@jit
def _consistent(theta, X, e, dims, mode, aux, k, old, g, lo, hi):
    """Whether the pattern of neuron k's decided samples is a Filippov solution: a sample
    on its kink has its slope inside the box and an attracting kink (a_k e_i > 0), or has it
    on a bound and does not move at all (a dead neuron); a sample on a side moves there
    (or not at all)."""
    D = dims[1]
    n = X.shape[0]
    a_k = theta[k]
    _direction(X, e, dims, mode, aux, k, g)
    for i in range(n):
        if old[i] == KEEP:
            continue
        xg = 0.0
        for t in range(D):
            xg += X[i, t] * g[t]
        moving = -a_k * xg  # sign of d(pre-activation)/dt
        md = mode[k, i]
        if md == ON_KINK:
            q = aux[k, i]
            inside = lo < q < hi
            if not ((inside and a_k * e[i] > 0.0) or (not inside and moving == 0.0)):
                return False
        elif md * moving < 0.0:
            return False
    return True


@jit
def _decide(theta, X, e, dims, mode, aux, k, old):
    """Decide the samples of neuron k put on their kinks at this state (``old[i]`` their
    previous mode: -1, 1, or 0 / ON_KINK if it was on the kink; :data:`KEEP` for the
    others), jointly: the first consistent pattern (:func:`_consistent`) in the order
    of :func:`_preferred` (a small complementarity problem, enumerated up to
    :data:`MAX_ENUMERATED` samples).  On a repelling kink both sides are solutions:
    a crossing sample keeps moving the way it came; a sample that was sliding leaves to
    the side its slope leans to, the side gradient descent chatters on more, and the
    side a symmetric smoothing of the kink holds it on.  Beyond that size, or if no
    pattern is consistent, the samples are decided one by one from the least-norm
    slopes.

    A dead ReLU neuron (input weight exactly 0, so every sample is on its kink) is
    held: every sample on its kink with slope 0, the bound, whatever was decided
    before.  Holding it is a Filippov solution (q = 0 gives velocity 0), the one
    gradient descent takes with ReLU'(0) = 0; left to the enumeration, a sample put
    on a side with the neuron at rest left the others with interior slopes that
    looked repelling, and the pattern flipped forever at one instant.
    """
    D = dims[1]
    n = X.shape[0]
    lo, hi = _kink_slopes(dims)
    if lo == 0.0 and _dead(theta, dims[0], D, k):
        for i in range(n):
            mode[k, i] = ON_KINK
            aux[k, i] = lo
        return
    g = np.empty(D)
    _direction(X, e, dims, mode, aux, k, g)  # the least-norm slopes, all on the kink
    idx = np.empty(n, dtype=np.int64)
    q0 = np.empty(n)
    count = 0
    for i in range(n):
        if old[i] != KEEP:
            idx[count] = i
            q0[count] = aux[k, i]
            count += 1
    if count == 0:
        return
    if count <= MAX_ENUMERATED:
        total = 3**count
        for code in range(total):
            rest = code
            for r in range(count):
                i = idx[r]
                mode[k, i] = _preferred(old[i], q0[r], lo, hi, rest % 3)
                aux[k, i] = 0.5 * (lo + hi) if mode[k, i] == ON_KINK else 0.0
                rest //= 3
            if _consistent(theta, X, e, dims, mode, aux, k, old, g, lo, hi):
                return
        for r in range(count):  # none: back on the kink, decided one by one
            mode[k, idx[r]] = ON_KINK
            aux[k, idx[r]] = q0[r]
    a_k = theta[k]
    for _ in range(n + 1):
        _direction(X, e, dims, mode, aux, k, g)
        changed = False
        for i in range(n):
            if old[i] == KEEP or mode[k, i] != ON_KINK:
                continue
            q = aux[k, i]
            xg = 0.0
            for t in range(D):
                xg += X[i, t] * g[t]
            moving = -a_k * xg
            inside = lo < q < hi
            if (inside and a_k * e[i] > 0.0) or (not inside and moving == 0.0):
                continue  # sliding, or held (a dead neuron)
            bound = 1 if q >= hi else -1
            if not inside and (moving > 0.0) == (bound > 0):
                mode[k, i] = bound
            else:
                mode[k, i] = _preferred(old[i], q, lo, hi, 1)
            changed = True
        if not changed:
            break


@jit
def _put_on_kinks(theta, X, dims, mode, aux, k, old):
    """Project neuron k onto the kinks of its ``old != KEEP`` samples (set on the kink) and
    of its other on-kink samples (those the step carried off first move to their sides,
    as in :func:`_leave_kinks`), add any other sample that the projection puts on its
    kink (the input weight reaching 0, or several samples on one hyperplane), to be
    decided with them."""
    n = X.shape[0]
    lo, hi = _kink_slopes(dims)
    before = 0.0
    for i in range(n):
        before = max(before, _scale(theta, X, dims, k, i))
        if mode[k, i] == ON_KINK and old[i] == KEEP:  # already left its kink in this step?
            z = _preact(theta, X, dims, k, i)
            if abs(z) > SWITCH_EPS * _scale(theta, X, dims, k, i):
                mode[k, i] = 1 if z > 0.0 else -1
    _project(theta, X, dims, mode, k)
    added = False
    for i in range(n):
        if mode[k, i] != ON_KINK:
            if abs(_preact(theta, X, dims, k, i)) <= SWITCH_EPS * before:
                old[i] = mode[k, i]
                mode[k, i] = ON_KINK
                aux[k, i] = 0.5 * (lo + hi)
                added = True
    if added:
        _project(theta, X, dims, mode, k)


@jit
def switch_init(theta, X, y, c, dims, mode, aux):
    """Pattern from the signs of the pre-activations; exact zeros decided jointly."""
    m = dims[0]
    n = X.shape[0]
    lo, hi = _kink_slopes(dims)
    zeros = 0
    for k in range(m):
        for i in range(n):
            z = _preact(theta, X, dims, k, i)
            mode[k, i] = 1 if z > 0.0 else -1
            aux[k, i] = 0.0
            if z == 0.0:
                mode[k, i] = ON_KINK
                aux[k, i] = 0.5 * (lo + hi)
                zeros += 1
    if zeros == 0:
        return
    e = np.empty(n)
    residuals(theta, X, y, c, dims, mode, e)
    old = np.empty(n, dtype=np.int8)
    for k in range(m):
        any_zero = False
        for i in range(n):
            old[i] = 0 if mode[k, i] == ON_KINK else KEEP
            any_zero = any_zero or mode[k, i] == ON_KINK
        if any_zero:
            _decide(theta, X, e, dims, mode, aux, k, old)


@jit
def switch_cross(theta, X, y, c, dims, mode, aux, k, i, out):
    """At the kink of (neuron k, sample i): put theta on it (with neuron k's other on-kink
    samples), decide the neuron's pattern there (:func:`_decide`), and evaluate the flow
    under the new pattern into ``out``; returns the loss."""
    n = X.shape[0]
    lo, hi = _kink_slopes(dims)
    old = np.full(n, KEEP, dtype=np.int8)
    old[i] = mode[k, i]
    mode[k, i] = ON_KINK
    aux[k, i] = 0.5 * (lo + hi)
    _put_on_kinks(theta, X, dims, mode, aux, k, old)
    e = np.empty(n)
    value = residuals(theta, X, y, c, dims, mode, e)
    _decide(theta, X, e, dims, mode, aux, k, old)
    _leave_repelling(theta, X, e, dims, mode, aux)
    flow_from_residuals(theta, X, e, c, dims, mode, aux, out)
    return value


@jit
def _repelling(theta, e, mode, aux, k, i, lo, hi):
    """(k, i) slides on a kink that repels (``a_k e_i < 0``, slope inside the bounds)."""
    return mode[k, i] == ON_KINK and lo < aux[k, i] < hi and theta[k] * e[i] < 0.0


@jit
def _leave_repelling(theta, X, e, dims, mode, aux):
    """Decide again (:func:`_decide`) every neuron with a sliding pair whose kink now
    repels: an unstable sliding motion, which the flow leaves (at every switch, so that
    runs with a switch in nearly every step leave them too)."""
    m = dims[0]
    n = X.shape[0]
    lo, hi = _kink_slopes(dims)
    old = np.empty(n, dtype=np.int8)
    for k in range(m):
        found = False
        for i in range(n):  # the mode test first: a call per pair costs more than the loop
            found = found or (
                mode[k, i] == ON_KINK and _repelling(theta, e, mode, aux, k, i, lo, hi)
            )
        if found:
            for i in range(n):
                old[i] = ON_KINK if _repelling(theta, e, mode, aux, k, i, lo, hi) else KEEP
            _decide(theta, X, e, dims, mode, aux, k, old)


# -- locating the next kink on a step's dense output ------------------------------------


@jit
def _dense_preact(y0, K, P, h, theta_frac, X, dims, k, i):
    """Pre-activation of (k, i) on the dense output, evaluating neuron k only."""
    m = dims[0]
    D = dims[1]
    R = P.shape[0]
    q = P.shape[1]
    z = 0.0
    for d in range(D):
        p = m + k * D + d
        v = y0[p]
        for j in range(R):
            w = 0.0
            power = theta_frac
            for l in range(q):
                w += P[j, l] * power
                power *= theta_frac
            v += h * w * K[j, p]
        z += v * X[i, d]
    return z


@jit
def _root(y0, K, P, h, X, dims, k, i, lo, hi, flo, fhi):
    """Root of the dense pre-activation of (k, i) in [lo, hi], where its values
    flo and fhi differ in sign (Illinois regula falsi)."""
    for _ in range(100):
        if hi - lo <= 1e-15:
            break
        mid = (lo * fhi - hi * flo) / (fhi - flo)
        if not (lo < mid < hi):
            mid = 0.5 * (lo + hi)
        fm = _dense_preact(y0, K, P, h, mid, X, dims, k, i)
        if (fm > 0.0) == (fhi > 0.0):
            hi = mid
            fhi = fm
            flo *= 0.5
        else:
            lo = mid
            flo = fm
            fhi *= 0.5
        if fm == 0.0:
            return mid
    return hi


LEAVE_GRID = 16
"""Points on the dense output at which a pair that starts the step on its kink
is followed: it leaves to its side and may come back within the step."""


DIP_REACH = 2.0
"""A pair on its side at both ends of a step is followed on the dense output
(:func:`_dip_root`) when it starts moving toward its kink at a speed that would
reach it within this many steps."""


@jit
def _dip_root(y0, K, P, h, X, dims, k, i, md, z0, before):
    """A pair on side ``md`` at both ends of the step that may cross its kink and come
    back inside it (a pre-activation whose motion reverses, e.g. as a_k passes 0): the
    first crossing seen on :data:`LEAVE_GRID` points of the dense output before
    ``before``, located between the grid points around it, or 2.0 if none."""
    z_prev = z0
    eps = SWITCH_EPS * _scale(y0, X, dims, k, i)
    for j in range(1, LEAVE_GRID):
        th = j / LEAVE_GRID
        if th >= before:
            break
        z = _dense_preact(y0, K, P, h, th, X, dims, k, i)
        if md * z < -eps:
            return _root(y0, K, P, h, X, dims, k, i, th - 1.0 / LEAVE_GRID, th, z_prev, z)
        z_prev = z
    return 2.0


@jit
def _return_root(y0, K, P, h, X, dims, k, i, md, z1):
    """A pair that starts on its kink, left to side ``md`` and ends the step on the
    other side: the time it comes back (the first sign change after it was on
    side md), or 0.0 if it is never seen on side md (then the kink is decided
    again at the start of the step)."""
    z_prev = 0.0
    left = False
    for j in range(1, LEAVE_GRID + 1):
        th = j / LEAVE_GRID
        z = z1 if j == LEAVE_GRID else _dense_preact(y0, K, P, h, th, X, dims, k, i)
        if md * z > 0.0:
            left = True
        elif md * z < 0.0:
            if left:
                return _root(y0, K, P, h, X, dims, k, i, th - 1.0 / LEAVE_GRID, th, z_prev, z)
            # not seen on side md at the grid: look closer to the start
            th_try = th
            for _ in range(40):
                th_try *= 0.5
                z_try = _dense_preact(y0, K, P, h, th_try, X, dims, k, i)
                if md * z_try > 0.0:
                    return _root(y0, K, P, h, X, dims, k, i, th_try, th, z_try, z)
            return 0.0
        z_prev = z
    return 1.0


@pjit
def _crossings(y0, y1, K, P, h, X, dims, mode, best_th, best_k, best_i, sliding):
    """Per block of neurons: the earliest crossing inside the step (theta in
    [0, 1], 2.0 if none) and the number of on-kink samples."""
    m = dims[0]
    D = dims[1]
    n = X.shape[0]
    for b in prange(best_th.size):
        th_b = 2.0
        k_b = -1
        i_b = -1
        count = 0
        for k in range(b * NEURON_BLOCK, min(m, (b + 1) * NEURON_BLOCK)):
            for i in range(n):
                md = mode[k, i]
                if md == ON_KINK:
                    count += 1
                    continue
                z1 = 0.0  # _preact, inline: a call per pair costs 5x the arithmetic
                for d in range(D):
                    z1 += y1[m + k * D + d] * X[i, d]
                if md * z1 < 0.0 and md * z1 < -SWITCH_EPS * _scale(y1, X, dims, k, i):
                    z0 = _preact(y0, X, dims, k, i)
                    eps0 = SWITCH_EPS * _scale(y0, X, dims, k, i)
                    # clearly on its side at the start: the crossing is the root of the
                    # dense output.  On its kink (to rounding, on either side), a root
                    # could be that rounding, found again at every step (a stall): the
                    # pair is followed from where it leaves (_return_root).
                    if md * z0 > eps0:
                        th_hi = min(th_b, 1.0)
                        z_hi = z1
                        if th_b < 1.0:  # one evaluation rules out a crossing after the best
                            z_hi = _dense_preact(y0, K, P, h, th_b, X, dims, k, i)
                            if md * z_hi > 0.0:
                                continue
                        th = _root(y0, K, P, h, X, dims, k, i, 0.0, th_hi, z0, z_hi)
                    elif md * z0 >= -eps0:
                        th = _return_root(y0, K, P, h, X, dims, k, i, md, z1)
                    else:  # already on the other side at the start
                        th = 0.0
                    if th < th_b:
                        th_b = th
                        k_b = k
                        i_b = i
                    continue
                # on its side at both ends: did it cross the kink and come back inside the
                # step?  Only a pair moving toward its kink fast enough to reach it can.
                v0 = 0.0
                for d in range(D):
                    v0 += K[0, m + k * D + d] * X[i, d]
                if md * v0 < 0.0:
                    z0 = _preact(y0, X, dims, k, i)
                    if md * (z0 + DIP_REACH * h * v0) < 0.0 < md * z0:
                        th = _dip_root(y0, K, P, h, X, dims, k, i, md, z0, th_b)
                        if th < th_b:
                            th_b = th
                            k_b = k
                            i_b = i
        best_th[b] = th_b
        best_k[b] = k_b
        best_i[b] = i_b
        sliding[b] = count


@jit
def _leave_kinks(y1, X, y, c, dims, mode, aux):
    """After a step with no crossing: move each on-kink pair the step carried off its kink
    to its side (its slope sat on that side's bound, so the flow does not change); return
    the first on-kink pair whose kink now repels (``a_k e_i < 0``, its slope inside the
    bounds: an unstable sliding motion, which the flow must leave), or (-1, -1)."""
    m = dims[0]
    n = X.shape[0]
    for k in range(m):
        for i in range(n):
            if mode[k, i] == ON_KINK:
                z = _preact(y1, X, dims, k, i)
                if abs(z) > SWITCH_EPS * _scale(y1, X, dims, k, i):
                    mode[k, i] = 1 if z > 0.0 else -1
    e = np.empty(n)
    residuals(y1, X, y, c, dims, mode, e)
    lo, hi = _kink_slopes(dims)
    for k in range(m):
        for i in range(n):  # the mode test first: a call per pair costs more than the loop
            if mode[k, i] == ON_KINK and _repelling(y1, e, mode, aux, k, i, lo, hi):
                return k, i
    return -1, -1


@jit
def switch_locate(y0, y1, K, P, h, X, y, c, dims, mode, aux, scratch, scratch_f):
    """Earliest switch inside the step: (theta in [0, 1] or 2.0 if none, k, i).

    A pre-activation whose sign disagrees with its frozen side at the end of the
    step crossed the kink (located on the dense output).  Ties go to the first (k, i)
    in order, whatever the thread count.  A step that ends with no crossing moves the
    pairs it carried off their kinks to their sides, and ends at a kink that turned
    repelling there (theta = 1: the step stands, :func:`switch_cross` decides the side;
    the kink's jump ``a_k e_i`` changed sign inside the step, so it was small).
    """
    m = dims[0]
    n = X.shape[0]
    nb = (m + NEURON_BLOCK - 1) // NEURON_BLOCK
    best_th = np.empty(nb)
    best_k = np.empty(nb, dtype=np.int64)
    best_i = np.empty(nb, dtype=np.int64)
    sliding = np.empty(nb, dtype=np.int64)
    if n * m * dims[1] >= PARALLEL_MIN_WORK_FROZEN:
        _crossings(y0, y1, K, P, h, X, dims, mode, best_th, best_k, best_i, sliding)
    else:
        _crossings_serial(y0, y1, K, P, h, X, dims, mode, best_th, best_k, best_i, sliding)  # noqa: F821
    best = 2.0
    kb = -1
    ib = -1
    n_sliding = 0
    for b in range(nb):
        n_sliding += sliding[b]
        if best_th[b] < best:
            best = best_th[b]
            kb = best_k[b]
            ib = best_i[b]
    if best > 1.0 and n_sliding > 0:
        kr, ir = _leave_kinks(y1, X, y, c, dims, mode, aux)
        if kr >= 0:
            return 1.0, kr, ir
    return best, kb, ib
