"""Discrete training: full-batch gradient descent and Adam (template).

Both act on the original parameters ``theta = S * theta_bar`` (``S`` the
per-parameter scale vector) while the state is kept normalized:

* GD with learning rate ``eta`` is forward Euler on the flow,
  ``theta_bar += (eta / T) * F(theta_bar)`` with ``F = d theta_bar / d t_bar``
  and ``t = T t_bar``;
* Adam [KB15] uses the original-units gradient ``g = -(S * F) / T``; with a
  weight decay ``wd > 0`` it is AdamW [LH19] (PyTorch's form): each step first
  scales ``theta`` by ``1 - lr wd``, decoupled from the moments.

Each iteration advances the nominal time by ``eta``; save points record the
first iterate at or after each requested time (no interpolation).  Events
(:mod:`flowsim.integrate.events`) are evaluated at every iterate and fire at the
first iterate where their condition holds (``g >= 0``), with that iterate's
time, state and loss: no interpolation between iterates, since there is no
trajectory between them.

Adam's epsilon comes in two forms (``adam_form``):

* ``ADAM_TORCH`` (PyTorch, the paper's algorithm 1): ``theta -= lr m_hat /
  (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - b1^k)``, ``v_hat = v / (1 - b2^k)``;
* ``ADAM_TF1`` (TensorFlow 1's "epsilon hat", the paper's section 2 variant):
  ``theta -= lr_k m / (sqrt(v) + eps)`` with ``lr_k = lr sqrt(1 - b2^k) / (1 - b1^k)``.

The two agree for ``eps = 0``; otherwise TF1's eps is the torch eps times
``sqrt(1 - b2^k)``, which matters early (small ``k``) and for small gradients.

References
----------
.. [KB15] Kingma, Ba. Adam: a method for stochastic optimization. ICLR 2015.
.. [LH19] Loshchilov, Hutter. Decoupled weight decay regularization. ICLR 2019.
"""

import math

import numpy as np

from flowsim import _abi
from flowsim._jit import jit
from flowsim._rng import rng_permutation
from flowsim.integrate._model import flow, loss
from flowsim.integrate.events import event_values
from flowsim.integrate.explicit import (
    F_LOSS,
    I_ACCEPTED,
    I_EVENT,
    I_NFEV,
    I_SAVE,
    I_STATUS,
    S_DONE,
    S_EVENT,
    S_NONFINITE,
    _all_finite,
    _copy,
    _record,
)

# --- template body ---

ADAM = 1
ADAM_TORCH = 0
ADAM_TF1 = 1


@jit
def _batch(X, Y, seed, it, perm, Xb, Yb, Xl, Yl):
    """The minibatch of iteration ``it``: epoch ``it // n_batches`` shuffles the
    samples (:func:`rng_permutation` of ``(seed, epoch)``), its batches take them in
    that order, ``Xb.shape[0]`` at a time and the rest (``Xl``) last.  Returns the
    batch's (X, Y) copies."""
    n = X.shape[0]
    size = Xb.shape[0]
    n_batches = n // size + (1 if Xl.shape[0] > 0 else 0)
    epoch, q = divmod(it, n_batches)
    if q == 0 or perm[n] != epoch:  # a new epoch, or a resumed run's first batch
        rng_permutation(seed, epoch, perm[:n])
        perm[n] = epoch
    first = q * size
    Xq, Yq = (Xb, Yb) if first + size <= n else (Xl, Yl)
    for r in range(Xq.shape[0]):
        i = perm[first + r]
        _copy(X[i], Xq[r])
        Yq[r] = Y[i]
    return Xq, Yq


@jit
def discrete_solve(
    y, X, Y, c, dims, S, T, lr, n_iter, rule, adam_b1, adam_b2, adam_eps, adam_form, adam_wd,
    fst, ist, g, m1, m2, mode, aux,
    save_iter, save_state_row, out_t, out_loss, out_norms, out_maxnorm, out_states,
    ev_kind, ev_thr, ev_terminal, ev_g, ev_t, ev_states, ev_loss,
    perm, Xb, Yb, Xl, Yl, chunk,
):  # fmt: skip
    """Run up to ``chunk`` iterations (``rule`` 0: GD, 1: Adam); state in ``ist``/``fst``.

    The iteration count ``ist[I_ACCEPTED]`` is absolute (a resumed run starts
    from the count it stopped at), so times ``it * lr`` and Adam's bias
    corrections continue; ``m1``, ``m2`` are Adam's moments (original units).

    Stochastic training: the iteration goes to ``c``'s run block
    (:data:`flowsim._abi.RUN_BLOCK`), where a model's flow kernel finds it with
    the keep probabilities and the seed of its dropout masks; an empty ``Xb``
    is full-batch, otherwise each iteration takes the minibatch of
    :func:`_batch` (``perm``: n + 1 entries, the epoch's order and the epoch).
    The loss recorded and seen by the events is then the full-data loss,
    evaluated only where needed, not the minibatch's or the masked one.
    """
    n = y.size
    n_save = save_iter.size
    run = c.size - _abi.N_RUN
    seed = np.int64(c[run + 5])
    stochastic = Xb.shape[0] > 0 or c[run + 3] < 1.0 or c[run + 4] < 1.0
    steps = 0
    while steps < chunk:
        it = ist[I_ACCEPTED]
        c[run + 6] = it
        if stochastic and it >= n_iter:  # the last iterate: no step follows, only its loss
            loss_value = loss(y, X, Y, c, dims)
            if not math.isfinite(loss_value):
                ist[I_STATUS] = S_NONFINITE
                break
        else:
            if Xb.shape[0] > 0:
                Xq, Yq = _batch(X, Y, seed, it, perm, Xb, Yb, Xl, Yl)
                loss_value = flow(y, Xq, Yq, c, dims, mode, aux, g)
            else:
                loss_value = flow(y, X, Y, c, dims, mode, aux, g)
            ist[I_NFEV] += 1
            if not (math.isfinite(loss_value) and _all_finite(g)):
                ist[I_STATUS] = S_NONFINITE
                break
            saving = ist[I_SAVE] < n_save and save_iter[ist[I_SAVE]] <= it
            if stochastic and (saving or ev_kind.size > 0):
                loss_value = loss(y, X, Y, c, dims)
        fst[F_LOSS] = loss_value
        while ist[I_SAVE] < n_save and save_iter[ist[I_SAVE]] <= it:
            _record(
                y,
                it * lr,
                loss_value,
                dims,
                0,
                out_t,
                out_loss,
                out_norms,
                out_maxnorm,
                out_states,
                save_state_row,
                ist,
            )
        stop = -1
        if ev_kind.size > 0:
            event_values(ev_kind, ev_thr, it * lr, y, loss_value, dims, ev_g)
            for q in range(ev_kind.size):
                if ev_t[q] != ev_t[q] and ev_g[q] >= 0.0:  # not fired yet, holds now
                    ev_t[q] = it * lr
                    _copy(y, ev_states[q])
                    ev_loss[q] = loss_value
                    if ev_terminal[q] != 0 and stop < 0:
                        stop = q
        if stop >= 0:
            ist[I_EVENT] = stop
            ist[I_STATUS] = S_EVENT
            break
        if it >= n_iter:
            ist[I_STATUS] = S_DONE
            break
        if rule == ADAM:
            k = it + 1
            bc1 = 1.0 - adam_b1**k
            bc2 = 1.0 - adam_b2**k
            lr_k = lr * math.sqrt(bc2) / bc1
            decay = 1.0 - lr * adam_wd
            for p in range(n):
                grad = -S[p] * g[p] / T
                m1[p] = adam_b1 * m1[p] + (1.0 - adam_b1) * grad
                m2[p] = adam_b2 * m2[p] + (1.0 - adam_b2) * grad * grad
                if adam_form == ADAM_TF1:
                    step = lr_k * m1[p] / (math.sqrt(m2[p]) + adam_eps)
                else:
                    step = lr * (m1[p] / bc1) / (math.sqrt(m2[p] / bc2) + adam_eps)
                y[p] = decay * y[p] - step / S[p]
        else:
            step = lr / T
            for p in range(n):
                y[p] += step * g[p]
        ist[I_ACCEPTED] = it + 1
        steps += 1
    fst[0] = ist[I_ACCEPTED] * lr
    return np.int64(0)
