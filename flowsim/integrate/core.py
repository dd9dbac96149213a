"""The integrator core: every stepping loop, compiled once per machine.

The core is one generated module (:mod:`flowsim._codegen`) made of the bodies
of the stepper templates (:mod:`flowsim.integrate._model`, ``control``,
:mod:`flowsim._dense`, ``events``, ``explicit``, ``discrete``, ``stiff``,
``rosenbrock``, ``bdf``).  Its text does not depend on any model or
activation: it reaches the model through the callbacks of :mod:`flowsim._abi`,
whose addresses travel at the end of the model's ``dims``
(:meth:`flowsim.models._base.Model.core_dims`).  A new
model or activation therefore compiles only its own kernels.  Its clients: the
model families of :mod:`flowsim.models` (the user's own too), through
``flowsim.simulate``, and the rescaled blow-up flows of :mod:`flowsim.theory.blowup`,
a batch of independent systems (``rk_solve_batch``).
"""

from __future__ import annotations

import functools
from types import ModuleType

import numpy as np

from flowsim import _codegen, _dense, _rng
from flowsim.integrate import _model, bdf, control, discrete, events, explicit, rosenbrock, stiff

TEMPLATES = (_model, control, _dense, _rng, events, explicit, discrete, stiff, rosenbrock, bdf)


@functools.cache
def core() -> ModuleType:
    """The compiled stepping loops (built and imported on first use)."""
    parts = [_codegen.template_body(t) for t in TEMPLATES]
    return _codegen.build_module("core", parts, label="the integrator core (once per machine)")


WARMUP_METHODS = ("dopri5", "dop853", "rk4", "rkc", "rodas", "bdf", "auto", "gd", "adam")


def warmup(activations=("tanh",), *, report=None) -> list[tuple[str, float]]:
    """Compile ahead of time: the core (every method, events), the two-layer kernels
    (with and without kink treatment) and the three-layer kernels in their serial and
    parallel forms, the theory's rescaled blow-up flows, and each activation's callback.
    What is already cached loads in well under a second.

    Parameters
    ----------
    activations : iterable of str
        Registered names or expressions in ``x``.
    report : callable, optional
        Called with ``(what, seconds)`` after each item.

    Returns
    -------
    list of (str, float)
        Each item and the seconds it took.
    """
    import time

    from flowsim.activations import activation
    from flowsim.integrate.simulate import escape, simulate
    from flowsim.models import ThreeLayer, TwoLayer

    done = []

    def timed(what, fn):
        started = time.perf_counter()
        fn()
        done.append((what, time.perf_counter() - started))
        if report is not None:
            report(*done[-1])

    X = np.linspace(-1.0, 1.0, 4)[:, None]
    y = X[:, 0] ** 2
    small = TwoLayer("tanh", 2, 1)
    theta = small.init(0, scale=0.5)

    def core_methods():
        for method in WARMUP_METHODS:
            options = {"dt": 0.1} if method in ("rk4", "gd", "adam") else {}
            simulate(small, theta, X, y, t_end=1.0, method=method, events=[escape(10.0)],
                     progress=False, **options)  # fmt: skip

    timed("integrator core (every method)", core_methods)
    for net in (TwoLayer("tanh", 2, 1), TwoLayer("relu", 2, 1), ThreeLayer("tanh", (2, 2), 1)):
        label = f"{net.kind} kernels" + (" with kink treatment" if net.has_kinks else "")
        every = {"switching": net.has_kinks, "newton": True}
        timed(label + " (small runs)", lambda net=net, e=every: net.core_dims(1, **e))
        timed(label + " (parallel)", lambda net=net, e=every: net.core_dims(10**9, **e))

    def rescaled_flows():
        from flowsim.theory import blowup_time

        net = TwoLayer("xtanh", 2, 1)
        blowup_time(net, net.init(0, scale=1e-3), X, y - y.mean(), delta=0.5)

    timed("rescaled blow-up flows (blowup_time)", rescaled_flows)
    for name in activations:
        act = activation(name)
        timed(f"activation {act.name}", lambda act=act: act.address)
    return done
