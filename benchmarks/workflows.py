"""W1-W4: whole training runs, from small initialization to the end, side by side.

Every row is one complete run (timed once: ``repeat = 1``), compared with a
tight reference at a set of check times.  A row can end in four ways, kept in
the row's ``status`` and shown in the table:

* ``done`` -- reached ``t_end`` (or the workload's terminal event);
* ``timeout`` -- stopped by its wall-clock limit ("did not finish"): flowsim
  through ``simulate(..., max_wall=...)``, SciPy by an exception raised from
  the right-hand side once the limit has passed, diffrax by ``max_steps``;
  the time is then a lower bound and so is the ratio;
* ``extrapolated`` -- PyTorch gradient descent in the default run: a fixed
  number of steps is timed and the time scaled to the full step count
  (``--full`` runs it for real);
* ``failed`` -- the competitor raised (for instance LSODA's dense ``P x P``
  work array at ``P = 3e5``).

Accuracy: the loss at every check time reached and the state at the last one,
against the reference (``_reference``): SciPy ``solve_ivp`` LSODA at
``rtol = 1e-12`` with the analytic Jacobian ``-H`` (:func:`benchmarks._problem.hessian`),
cached in ``benchmarks/results/<id>_reference_<hash>.npz``.  A ratio counts
only when the flowsim row is at least as accurate as the competitor at the
same check time; the table's ``accuracy`` column says which.

PyTorch's learning rate is ``1/k`` for the smallest integer ``k`` with
``1/k < 2 / lambda_max``, where ``lambda_max`` is the largest Hessian
eigenvalue along the reference trajectory (GD is stable below ``2/lambda``; a
rate ``1/k`` puts every integer time on an iterate, so the check times are hit
exactly).
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from benchmarks import _problem as problem
from benchmarks._common import ONE_RUN, RESULTS_DIR, Impl, Skip, Workload, max_abs_relative
from benchmarks.kernels import numpy_gradient

FLOWSIM_METHODS = ("auto", "dopri5", "rkc", "rodas")
"""flowsim methods run on W1 (rows whose method this build lacks are skipped)."""

SEED = 0
WARM_SECONDS = 10.0  # flowsim warm-up: the same run, stopped after this many seconds
GD_REAL_SECONDS = {"quick": 3.0, "default": 10.0}  # GD runs for real below this estimate
REF_RTOL = 1e-12
REF_ATOL_RELATIVE = 1e-12  # reference atol = this * RMS(theta0)
N_LAMBDA = 60  # log-spaced reference states at which the Hessian's spectrum is computed


@dataclass(frozen=True)
class Spec:
    """One whole-run problem: a two-layer net on ``n`` points of the 1-D sine target.

    ``init`` holds the keyword arguments of ``TwoLayer.init`` besides the seed.
    ``escape_norm`` / ``loss_target`` make the run stop at flowsim's
    ``escape(norm=...)`` / ``loss_below(...)`` event (``t_end`` is then a cap).
    Wall limits (seconds) apply to the rows that can run long; ``full`` under
    ``--full``, ``quick`` under ``--quick``.
    """

    id: str
    activation: str
    m: int
    init: dict
    t_end: float
    check_t: tuple
    n: int = 40
    rtol: float = 1e-8
    atol: float = 1e-8  # flowsim's, on the normalized state (O(1) at t = 0)
    escape_norm: float | None = None
    loss_target: float | None = None
    quick_m: int | None = None
    wall: dict = field(default_factory=lambda: {"quick": 20.0, "default": 60.0, "full": 600.0})
    gd_probe_t: dict = field(default_factory=lambda: {"quick": 1e2, "default": 1e3})
    lr_unit: float = 1.0  # GD's learning rate is lr_unit / k: it divides every check time

    def mode(self, data) -> str:
        if bool(data.get("full", False)):
            return "full"
        return "quick" if bool(data.get("quick", False)) else "default"

    def wall_limit(self, data) -> float:
        return self.wall[self.mode(data)]


# -- data and the reference ---------------------------------------------------------------------


def _data_maker(spec: Spec):
    def make(quick):
        import flowsim as fs

        m = spec.quick_m if (quick and spec.quick_m) else spec.m
        X, Xa, y = problem.sin_data(spec.n)
        net = fs.TwoLayer(spec.activation, m, 1, bias=True)
        theta0 = net.init(SEED, **spec.init)
        rms = float(np.sqrt(np.mean(theta0**2)))
        return {
            "X": X,
            "Xa": Xa,
            "y": y,
            "theta0": theta0,
            "m": m,
            "check_t": np.asarray(spec.check_t, dtype=np.float64),
            # solve_ivp integrates theta itself, O(rms) at t = 0: the same atol as flowsim's
            "atol_scipy": spec.atol * rms,
            "ref_atol": REF_ATOL_RELATIVE * rms,
            "quick": bool(quick),
        }

    return make


def _rhs(spec: Spec, data):
    """The NumPy right-hand side ``-grad R`` the SciPy competitors integrate."""
    Xa, y, m = data["Xa"], data["y"], data["m"]
    if spec.activation == "tanh":
        return lambda t, theta: -numpy_gradient(theta, Xa, y, m)  # K1's, as in T1
    return lambda t, theta: -problem.gradient(theta, Xa, y, m, spec.activation)


def _escape_event(spec: Spec, data):
    m, D = data["m"], data["Xa"].shape[1]

    def event(t, theta):
        return problem.max_neuron_norm(theta, m, D) - spec.escape_norm

    event.terminal = True
    event.direction = 1
    return event


def _loss_event(spec: Spec, data):
    Xa, y, m = data["Xa"], data["y"], data["m"]

    def event(t, theta):
        return problem.loss(theta, Xa, y, m, spec.activation) - spec.loss_target

    event.terminal = True
    event.direction = -1
    return event


def _scipy_events(spec: Spec, data):
    if spec.escape_norm is not None:
        return [_escape_event(spec, data)]
    if spec.loss_target is not None:
        return [_loss_event(spec, data)]
    return None


_REFERENCES: dict[str, dict] = {}


def _reference_for(spec: Spec):
    """``reference(data)``: the cached tight run (None when the problem is too large for it)."""

    def reference(data):
        if data["theta0"].size > 5000:
            return None  # dense Jacobian: not at this size (W3)
        import scipy
        from scipy.integrate import solve_ivp

        digest = hashlib.sha256()
        for key in ("Xa", "y", "theta0", "check_t"):
            digest.update(np.ascontiguousarray(data[key]).tobytes())
        digest.update(
            f"{spec.activation} {spec.t_end} {spec.escape_norm} {spec.loss_target} {REF_RTOL} "
            f"{data['ref_atol']} LSODA-jac {N_LAMBDA} scipy {scipy.__version__}".encode()
        )
        key = f"{spec.id}_{digest.hexdigest()[:16]}"
        if key in _REFERENCES:
            return _REFERENCES[key]
        path = RESULTS_DIR / f"{spec.id}_reference_{digest.hexdigest()[:16]}.npz"
        if path.exists():
            with np.load(path) as npz:
                ref = {name: npz[name] for name in npz.files}
            _REFERENCES[key] = ref
            return ref
        print(
            f"{spec.id}: computing the reference (LSODA, rtol {REF_RTOL:g}, analytic Jacobian; "
            "cached afterwards) ...",
            file=sys.stderr,
            flush=True,
        )
        Xa, y, m, act = data["Xa"], data["y"], data["m"], spec.activation
        check_t = data["check_t"]
        grid = np.logspace(-2, math.log10(spec.t_end), N_LAMBDA)
        t_eval = np.union1d(check_t, grid)
        tic = time.perf_counter()
        sol = solve_ivp(
            lambda t, theta: -problem.gradient(theta, Xa, y, m, act),
            (0.0, spec.t_end),
            data["theta0"],
            method="LSODA",
            jac=lambda t, theta: -problem.hessian(theta, Xa, y, m, act),
            rtol=REF_RTOL,
            atol=data["ref_atol"],
            t_eval=t_eval,
            events=_scipy_events(spec, data),
        )
        wall = time.perf_counter() - tic
        if sol.status < 0:
            raise RuntimeError(f"{spec.id} reference failed: {sol.message}")
        states = [sol.y[:, j] for j in range(sol.t.size)]
        times = list(sol.t)
        t_event = np.nan
        theta_event = np.full(data["theta0"].size, np.nan)
        if sol.status == 1:  # terminal event
            t_event = float(sol.t_events[0][0])
            theta_event = sol.y_events[0][0]
            states.append(theta_event)
            times.append(t_event)
        lambdas = np.array([np.linalg.eigvalsh(problem.hessian(s, Xa, y, m, act))[-1]
                            for s in states])  # fmt: skip
        on_check = np.isin(sol.t, check_t)
        ref = {
            "check_t": sol.t[on_check],
            "loss": np.array([problem.loss(s, Xa, y, m, act) for s in sol.y[:, on_check].T]),
            "theta": sol.y[:, on_check],
            "t_event": np.float64(t_event),
            "theta_event": theta_event,
            "lambda_t": np.array(times),
            "lambda_max": lambdas,
            "nfev": np.int64(sol.nfev),
            "wall_time": np.float64(wall),
        }
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        np.savez(path, **ref)
        _REFERENCES[key] = ref
        print(f"{spec.id}: reference in {wall:.1f} s, {sol.nfev} evaluations", file=sys.stderr)
        return ref

    return reference


def stable_learning_rate(lambda_max: float, unit: float = 1.0) -> float:
    """The largest ``unit / k`` (integer ``k >= 1``) strictly below ``2 / lambda_max``.

    GD on a quadratic with curvature ``lambda`` is stable for ``lr < 2 / lambda``;
    ``unit`` divides every check time, so the iterates land on them.
    """
    bound = 2.0 / lambda_max
    return unit / (math.floor(unit / bound) + 1)


# -- one run's outcome and its accuracy --------------------------------------------------------


@dataclass
class Run:
    """What a row's call produced, in a form common to every implementation.

    ``loss[j]`` and ``states[:, j]`` belong to ``check_t[j]`` for the check
    times reached (in order); ``t_event``/``theta_event`` to the terminal event.
    ``time`` replaces the timed call's duration (extrapolated rows).
    """

    status: str
    t_reached: float
    loss: np.ndarray
    states: np.ndarray | None = None
    t_event: float | None = None
    theta_event: np.ndarray | None = None
    nfev: int | None = None
    time: float | None = None
    note: str | None = None


def _error(run: Run, ref) -> dict | None:
    """Errors against the reference; ``error`` is the headline number.

    ``theta_t[j]``: ``max |theta - theta_ref| / max |theta_ref|`` at ``check_t[j]``;
    ``loss``: the largest relative loss error over the check times reached;
    ``t_event``: the relative error of the event time.  The headline is the
    event-time error where there is an event, else the state error at the last
    check time reached.
    """
    if ref is None or run is None:
        return None
    k = min(len(run.loss), len(ref["loss"]))
    out: dict = {"t": float(ref["check_t"][k - 1]) if k else None}
    parts = []
    if k:
        loss_ref = ref["loss"][:k]
        out["loss"] = float(np.max(np.abs(np.asarray(run.loss[:k]) - loss_ref) / loss_ref))
    if k and run.states is not None and run.states.shape[1] >= k:
        out["theta_t"] = [max_abs_relative(run.states[:, j], ref["theta"][:, j]) for j in range(k)]
        out["theta"] = out["theta_t"][-1]
        parts.append(f"theta {out['theta']:.1e}")
    if "loss" in out:
        parts.append(f"loss {out['loss']:.1e}")
    if k and k < len(ref["check_t"]):
        parts.append(f"to t={out['t']:g}")
    if run.t_event is not None and math.isfinite(float(ref["t_event"])):
        t_ref = float(ref["t_event"])
        out["t_event"] = abs(run.t_event - t_ref) / t_ref
        parts.insert(0, f"t_esc {out['t_event']:.1e}")
        if run.theta_event is not None:
            out["theta_event"] = max_abs_relative(run.theta_event, ref["theta_event"])
            parts.insert(1, f"theta_esc {out['theta_event']:.1e}")
    if "t_event" in out:
        out["error"] = out["t_event"]
    else:
        out["error"] = out.get("theta")
    out["text"] = ", ".join(parts) if parts else None
    return out


def _collect(run: Run) -> dict:
    return {
        "vector": run,
        "nfev": run.nfev,
        "note": run.note,
        "status": run.status,
        "time": run.time,
        "row": {"t_reached": run.t_reached, "t_event": run.t_event},
    }


# -- flowsim ------------------------------------------------------------------------------------


def _flowsim_builder(spec: Spec, method: str, *, t_end=None, switching="auto", rtol=None):
    rtol = spec.rtol if rtol is None else rtol

    def build(data):
        import flowsim as fs

        if method not in fs.METHODS:
            raise Skip(f"flowsim has no method {method!r} in this build")
        t_stop = spec.t_end if t_end is None else t_end
        net = fs.TwoLayer(spec.activation, int(data["m"]), 1, bias=True)
        X, y, theta0 = data["X"], data["y"], data["theta0"]
        check_t = data["check_t"][data["check_t"] <= t_stop]
        events = []
        if spec.escape_norm is not None:
            events.append(fs.escape(norm=spec.escape_norm))
        if spec.loss_target is not None:
            events.append(fs.loss_below(spec.loss_target))
        limit = spec.wall_limit(data)
        large = theta0.size > 10**5

        def run(max_wall):
            return fs.simulate(
                net, theta0, X, y, t_end=t_stop, method=method, rtol=rtol,
                atol=spec.atol * rtol / spec.rtol,
                save=np.concatenate([[0.0], check_t]), save_state="final" if large else "all",
                events=events, max_wall=max_wall, progress=False, switching=switching,
            )  # fmt: skip

        # warm-up: the same run, cut short -- compiles or loads every kernel it reaches
        run(0.2 if large else WARM_SECONDS)
        return lambda: _flowsim_run(run(limit), limit)

    return build


def _flowsim_run(traj, limit) -> Run:
    saved = traj.t.size - 1  # without t = 0
    states = None
    if traj.theta_bar.shape[0] == traj.t.size:
        states = (traj.theta_bar[1:] * traj.scale_vector).T
    event = traj.events[0] if traj.events else None
    status = {"done": "done", "event": "done", "max_wall": "timeout"}.get(traj.status, "failed")
    methods = " -> ".join(f"{name}@{t:.3g}" for t, name in traj.method_log)
    note = f"{traj.n_accepted} steps ({traj.n_rejected} rejected), methods {methods}"
    if traj.n_switches:
        note += f", {traj.n_switches} kink switches"
    if status != "done":
        note = f"{traj.status} at t = {traj.t_stop:.4g} (limit {limit:g} s); " + note
    return Run(
        status=status,
        t_reached=traj.t_stop,
        loss=traj.loss[1 : saved + 1],
        states=states,
        t_event=None if event is None else event.t,
        theta_event=None if event is None else event.theta,
        nfev=traj.nfev,
        note=note,
    )


# -- SciPy --------------------------------------------------------------------------------------


class _OutOfTime(Exception):
    pass


class _LimitedRHS:
    """The right-hand side, raising :class:`_OutOfTime` once ``limit`` seconds have passed."""

    def __init__(self, fun, limit):
        self.fun = fun
        self.deadline = time.perf_counter() + limit
        self.calls = 0
        self.t_last = 0.0

    def __call__(self, t, theta):
        self.calls += 1
        self.t_last = t
        if self.calls % 64 == 0 and time.perf_counter() > self.deadline:
            raise _OutOfTime
        return self.fun(t, theta)


def _scipy_builder(spec: Spec, method: str, *, rtol=None):
    rtol = spec.rtol if rtol is None else rtol

    def build(data):
        from scipy.integrate import solve_ivp

        fun = _rhs(spec, data)
        Xa, y, m = data["Xa"], data["y"], data["m"]
        check_t = data["check_t"]
        limit = spec.wall_limit(data)

        def call():
            rhs = _LimitedRHS(fun, limit)
            try:
                sol = solve_ivp(
                    rhs, (0.0, spec.t_end), data["theta0"], method=method, rtol=rtol,
                    atol=data["atol_scipy"] * rtol / spec.rtol, t_eval=check_t,
                    events=_scipy_events(spec, data),
                )  # fmt: skip
            except _OutOfTime:
                return Run("timeout", rhs.t_last, np.empty(0), nfev=rhs.calls,
                           note=f"did not finish: stopped at t = {rhs.t_last:.4g} after "
                                f"{limit:g} s (wall limit)")  # fmt: skip
            except MemoryError as exc:
                n = data["theta0"].size
                return Run("failed", 0.0, np.empty(0), nfev=rhs.calls,
                           note=f"MemoryError ({exc}); P = {n}: a dense P x P matrix is "
                                f"{8 * n * n / 2**30:.0f} GiB")  # fmt: skip
            losses = [problem.loss(s, Xa, y, m, spec.activation) for s in sol.y.T]
            event = sol.status == 1 and sol.t_events and sol.t_events[0].size
            return Run(
                status="done" if sol.status >= 0 else "failed",
                t_reached=float(sol.t[-1]) if sol.t.size else 0.0,
                loss=np.array(losses),
                states=sol.y,
                t_event=float(sol.t_events[0][0]) if event else None,
                theta_event=sol.y_events[0][0] if event else None,
                nfev=rhs.calls,
                note=None if sol.status >= 0 else sol.message,
            )

        return call

    return build


# -- PyTorch gradient descent ---------------------------------------------------------------------


def _threads() -> int:
    try:
        import numba

        return int(numba.get_num_threads())
    except ImportError:
        import os

        return os.cpu_count() or 1


def _torch_gd_builder(spec: Spec, reference):
    def build(data):
        import torch

        ref = reference(data)
        if ref is None:
            raise Skip("no reference trajectory to take the learning rate from")
        lam = float(np.max(ref["lambda_max"]))
        lr = stable_learning_rate(lam, spec.lr_unit)
        t_target = float(ref["t_event"]) if spec.escape_norm is not None else spec.t_end
        n_total = int(math.ceil(t_target / lr - 1e-9))
        m, n = int(data["m"]), data["y"].size
        D = data["Xa"].shape[1]
        Xa = torch.from_numpy(np.ascontiguousarray(data["Xa"]))
        y = torch.from_numpy(np.ascontiguousarray(data["y"]))
        theta0 = data["theta0"]
        check_steps = {int(round(t / lr)): j for j, t in enumerate(data["check_t"])}
        act = {"tanh": torch.tanh, "x2tanh": lambda z: z * z * torch.tanh(z)}[spec.activation]
        threads = _threads()

        def descend(n_steps):
            a = torch.tensor(theta0[:m], requires_grad=True)
            W = torch.tensor(theta0[m:].reshape(m, D), requires_grad=True)
            optimizer = torch.optim.SGD([a, W], lr=lr)
            losses, states, t_event, theta_event = [], [], None, None
            for k in range(n_steps + 1):
                optimizer.zero_grad(set_to_none=True)
                e = act(Xa @ W.T) @ a - y
                loss = 0.5 * (e @ e) / n
                if k in check_steps:
                    losses.append(loss.item())
                    states.append(torch.cat([a.detach(), W.detach().ravel()]).numpy().copy())
                if spec.escape_norm is not None:
                    if torch.linalg.vector_norm(W.detach(), dim=1).max().item() >= spec.escape_norm:
                        t_event = k * lr
                        theta_event = torch.cat([a.detach(), W.detach().ravel()]).numpy().copy()
                        break
                if k == n_steps:
                    break
                loss.backward()
                optimizer.step()
            return k, losses, states, t_event, theta_event

        # warm-up, and the cost of a step: run for real when that is cheap, else extrapolate
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            descend(20)
            tic = time.perf_counter()
            descend(200)
            per_step = (time.perf_counter() - tic) / 200
        finally:
            torch.set_num_threads(previous)
        mode = spec.mode(data)
        if mode == "full" or per_step * n_total < GD_REAL_SECONDS[mode]:
            # to the end; an escape run continues (up to twice as long) to its own escape
            n_steps = n_total if spec.escape_norm is None else 2 * n_total
        else:
            n_steps = min(n_total, int(round(spec.gd_probe_t[mode] / lr)))

        def call():
            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                tic = time.perf_counter()
                k, losses, states, t_event, theta_event = descend(n_steps)
                elapsed = time.perf_counter() - tic
            finally:
                torch.set_num_threads(previous)
            note = (f"lr = {lr:g} (2/lambda_max = {2 / lam:.3g}, lambda_max = {lam:.3g} along "
                    f"the reference), {threads} torch threads (Numba's count)")  # fmt: skip
            estimate = None
            status = "done"
            if k < n_total and t_event is None and n_steps < n_total:
                status = "extrapolated"
                estimate = elapsed * n_total / max(k, 1)
                note = (f"extrapolated from {k} steps (t = {k * lr:g}, {elapsed:.3g} s) to "
                        f"{n_total} steps (t = {n_total * lr:g}); " + note)  # fmt: skip
            else:
                note = f"{k} steps; " + note
            return Run(
                status=status,
                t_reached=k * lr,
                loss=np.array(losses),
                states=np.array(states).T if states else None,
                t_event=t_event,
                theta_event=theta_event,
                nfev=k + 1,
                time=estimate,
                note=note,
            )

        return call

    return build


# -- diffrax (optional) -------------------------------------------------------------------------


DIFFRAX_MAX_STEPS = 2 * 10**6
DIFFRAX_PCOEFF, DIFFRAX_ICOEFF = 0.4, 0.3
"""PID gains: ``factor = 0.9 err^(-0.7/k) err_prev^(0.4/k)``, flowsim's PI controller
(``flowsim.integrate.control``: PI_ALPHA = pcoeff + icoeff, PI_BETA = pcoeff; ``k`` = 5
for both Tsit5 and dopri5, the same SAFETY, MIN_FACTOR and MAX_FACTOR)."""


def _diffrax_builder(spec: Spec, t_end: float):
    """diffrax Tsit5 on ``theta`` with ``jax.grad`` of the loss, at SciPy's tolerances.

    The solve is compiled ahead of time (``jit(...).lower(...).compile()``, its time
    reported in the note, not in the row's time), then warmed up on ``theta = 0``, a
    fixed point that the controller crosses in a few growing steps.
    """

    def build(data):
        import jax

        jax.config.update("jax_enable_x64", True)  # before any JAX array is made
        import diffrax
        import jax.numpy as jnp

        if spec.activation != "tanh":
            raise Skip(f"the diffrax row has no {spec.activation!r} loss")
        m, D = int(data["m"]), data["Xa"].shape[1]
        Xa, y = jnp.asarray(data["Xa"]), jnp.asarray(data["y"])
        n = data["y"].size
        check_t = data["check_t"][data["check_t"] <= t_end]

        def loss(theta):
            e = jnp.tanh(Xa @ theta[m:].reshape(m, D).T) @ theta[:m] - y
            return 0.5 * (e @ e) / n

        gradient = jax.grad(loss)
        term = diffrax.ODETerm(lambda t, theta, args: -gradient(theta))
        controller = diffrax.PIDController(
            rtol=spec.rtol, atol=float(data["atol_scipy"]),
            pcoeff=DIFFRAX_PCOEFF, icoeff=DIFFRAX_ICOEFF,
        )  # fmt: skip
        # the check times, and the final state wherever the run stopped
        saveat = diffrax.SaveAt(ts=jnp.asarray(check_t), t1=True)

        def solve(theta0):
            sol = diffrax.diffeqsolve(
                term, diffrax.Tsit5(), t0=0.0, t1=float(t_end), dt0=None, y0=theta0,
                stepsize_controller=controller, saveat=saveat, max_steps=DIFFRAX_MAX_STEPS,
                throw=False,
            )  # fmt: skip
            accepted, rejected = sol.stats["num_accepted_steps"], sol.stats["num_rejected_steps"]
            return sol.ts, sol.ys, sol.result, accepted, rejected

        theta0 = jnp.asarray(data["theta0"], dtype=jnp.float64)
        tic = time.perf_counter()
        compiled = jax.jit(solve).lower(theta0).compile()
        compile_time = time.perf_counter() - tic
        ts, ys, *_ = jax.block_until_ready(compiled(jnp.zeros_like(theta0)))  # warm-up
        if ys.dtype != np.float64:
            raise RuntimeError(f"diffrax ran in {ys.dtype}: jax_enable_x64 came too late")
        Xa_np, y_np = data["Xa"], data["y"]

        def call():
            ts, ys, result, accepted, rejected = jax.block_until_ready(compiled(theta0))
            ts, ys = np.asarray(ts), np.asarray(ys)
            accepted, rejected = int(accepted), int(rejected)
            steps = accepted + rejected
            # saved in order, inf after the last: the check times reached, then the final state
            saved = int(np.sum(np.isfinite(ts)))
            reached = saved - 1
            if not np.array_equal(ts[:reached], check_t[:reached]):
                raise RuntimeError(f"diffrax saved at {ts[:saved]}, expected {check_t}")
            t_reached = float(ts[saved - 1])
            losses = np.array([problem.loss(s, Xa_np, y_np, m, spec.activation)
                               for s in ys[:reached]])  # fmt: skip
            note = (
                f"{accepted} steps ({rejected} rejected), Tsit5 + PIDController(pcoeff "
                f"{DIFFRAX_PCOEFF}, icoeff {DIFFRAX_ICOEFF}), JIT compile {compile_time:.2g} s "
                f"(not timed), jax {jax.__version__}, diffrax {diffrax.__version__}"
            )
            if bool(result == diffrax.RESULTS.successful):
                status = "done"
            elif bool(result == diffrax.RESULTS.max_steps_reached):
                status = "timeout"
                stop = f"did not finish: max_steps = {DIFFRAX_MAX_STEPS} at t = {t_reached:.4g}"
                note = f"{stop}; {note}"
            else:
                status = "failed"
                note = f"{diffrax.RESULTS[result]} (t = {t_reached:.4g}); " + note
            return Run(
                status=status,
                t_reached=t_reached,
                loss=losses,
                states=ys[:reached].T,
                nfev=6 * steps + 3,  # Tsit5: 7 stages, first same as last; 3 to start
                note=note,
            )

        return call

    return build


# -- the workloads ------------------------------------------------------------------------------


def _checks(t_end):
    """10, 30, 100, 300, ... up to ``t_end`` (integers: GD at lr = 1/k lands on them)."""
    decades = 10.0 ** np.arange(1, round(math.log10(t_end)) + 1)
    return tuple(float(t) for t in np.sort(np.concatenate([decades, 3 * decades])) if t <= t_end)


W1_SPEC = Spec(id="W1", activation="tanh", m=100, init={"scale": 1e-4}, t_end=1e5,
               check_t=_checks(1e5))  # fmt: skip
W2_SPEC = Spec(id="W2", activation="x2tanh", m=100, init={"scale": 1e-3}, t_end=1e8,
               check_t=(1e2, 1e3, 1e4, 1e5), escape_norm=0.2,
               gd_probe_t={"quick": 1e3, "default": 1e4}, lr_unit=100.0)  # fmt: skip
W3_SPEC = Spec(id="W3", activation="relu", m=100_000, n=4, init={"gamma": 0.5, "gamma_prime": 0},
               t_end=1e6, check_t=(), loss_target=1e-6, quick_m=1000)  # fmt: skip

EQUAL_ACCURACY = {
    "scipy LSODA + numpy": ("W1", None, "auto", 1e-6),
    "scipy LSODA + numpy, rtol 1e-10": ("W1", None, "auto", 2e-9),
    "W2 torch GD f64": ("W2", None, "auto", 1e-3),
    "diffrax Tsit5, t = 1e3": ("W4", 1e3, "dop853", 2e-8),
    "diffrax Tsit5, t = 1e5": ("W4", 1e5, "auto", 5e-9),
}
"""Competitor row (prefixed by its workload where two share a name) -> (workload,
t_end, method, rtol) of the flowsim row it is compared
with: the loosest rtol of 1, 2, 5 x 10^k found as accurate in theta and in the loss
(the table's accuracy column checks each pair on every run).  Measured (theta, loss):
LSODA rtol 1e-8 3.5e-7, 5.0e-7 -- auto rtol 1e-6 1.1e-7, 3.7e-7.  LSODA rtol 1e-10
3.6e-9, 5.2e-9 on an AVX-512 machine, 5.2e-9, 2.6e-9 on an AVX2 one (NumPy's tanh
differs) -- auto 1e-8 1.2e-9, 5.9e-9; 5e-9 7.5e-10, 3.4e-9; 2e-9 3.5e-10, 1.2e-9.
W2, GD at its stable rate (theta at t = 1e4, escape time): 1.7e-4, 3.5e-3 -- auto
rtol 1e-3 6.9e-5, 1.9e-5 (2e-3: 1.0e-4, 2.7e-3, no faster; 5e-3: 6.4e-4).  diffrax to 1e5
2.3e-9, 3.7e-9 -- the same auto 5e-9.  diffrax to 1e3 6.2e-11, 4.2e-11 -- dop853 1e-8
2.6e-10, 7.6e-12 on the AVX-512 machine (5e-9 9.2e-12, 7.6e-12 there), on the AVX2 one
1e-8 6.7e-12, 7.5e-12; 2e-8 2.8e-11, 7.3e-12; 5e-8 2.0e-9, 6.5e-12 (auto: 5e-9 2.1e-11,
5.9e-11; 2e-9 1.3e-11, 2.3e-11, 0.15 s against dop853's 0.11 s).  The reference itself
is good to ~3e-10 at 1e5 (Radau at the same tolerance agrees to 2.7e-10 in theta, 3.9e-10
in the loss), 6e-12 at 1e3."""


def _equal_name(competitor: str) -> str:
    _, t_end, method, rtol = EQUAL_ACCURACY[competitor]
    at = "" if t_end is None else f"t = {t_end:.0e}, ".replace("e+0", "e")
    return f"flowsim {method}, {at}rtol {rtol:g}"


def _equal_rows(workload: str, spec) -> tuple:
    """The flowsim rows of ``workload``'s equal-accuracy pairs (one per distinct name)."""
    rows = {}
    for competitor, (wid, t_end, method, rtol) in EQUAL_ACCURACY.items():
        name = _equal_name(competitor)
        if wid == workload and name not in rows:
            rows[name] = Impl(name, _flowsim_builder(spec, method, t_end=t_end, rtol=rtol),
                              kind="flowsim", collect=_collect, compare_to=name,
                              requires=("numba",))  # fmt: skip
    return tuple(rows.values())


_w1_reference = _reference_for(W1_SPEC)
_w2_reference = _reference_for(W2_SPEC)

_ACCURACY_NOTE = (
    "error: theta = max |theta - theta_ref| / max |theta_ref| at the last check time reached "
    "(t = {checks}), loss = largest relative loss error over the check times reached; "
    "reference: solve_ivp LSODA rtol 1e-12 with the analytic Jacobian (cached)"
)


def _flowsim_rows(spec, reference_name, **kwargs):
    row = dict(kind="flowsim", collect=_collect, requires=("numba",))
    return tuple(
        Impl(f"flowsim {method}", _flowsim_builder(spec, method, **kwargs),
             compare_to=f"flowsim {reference_name}", **row)
        for method in FLOWSIM_METHODS
    )  # fmt: skip


W1 = Workload(
    id="W1",
    title=(
        "whole run, two-layer tanh, n = 40, m = 100, init std 1e-4, t = 0..1e5, rtol = 1e-8 "
        "(plateau, descent, secondary plateau, stiff tail)"
    ),
    make_data=_data_maker(W1_SPEC),
    reference=_w1_reference,
    error=_error,
    impls=(
        *_flowsim_rows(W1_SPEC, "auto"),
        *_equal_rows("W1", W1_SPEC),
        Impl(
            "scipy LSODA + numpy",
            _scipy_builder(W1_SPEC, "LSODA"),
            collect=_collect,
            compare_to=_equal_name("scipy LSODA + numpy"),
            requires=("scipy",),
        ),
        Impl(
            "scipy LSODA + numpy, rtol 1e-10",
            _scipy_builder(W1_SPEC, "LSODA", rtol=1e-10),
            collect=_collect,
            compare_to=_equal_name("scipy LSODA + numpy, rtol 1e-10"),
            requires=("scipy",),
        ),
        Impl(
            "scipy RK45 + numpy",
            _scipy_builder(W1_SPEC, "RK45"),
            collect=_collect,
            compare_to="flowsim auto",
            requires=("scipy",),
        ),
        Impl(
            "torch GD f64",
            _torch_gd_builder(W1_SPEC, _w1_reference),
            collect=_collect,
            compare_to="flowsim auto",
            requires=("torch",),
        ),
    ),  # fmt: skip
    notes=(
        _ACCURACY_NOTE.format(checks=", ".join(f"{t:g}" for t in W1_SPEC.check_t)),
        "wall limits: 60 s (20 s with --quick, 600 s with --full) for every row; a row that "
        "hits it is a timeout: its time and ratio are lower bounds",
        "torch GD: lr = largest 1/k below 2/lambda_max (largest Hessian eigenvalue along the "
        "reference); default run: 1e3 time units timed and extrapolated, --full: all of it",
        "scipy atol = 1e-8 * RMS(theta0) on theta = flowsim's atol 1e-8 on theta / scale",
    ),
    **ONE_RUN,
)

W2 = Workload(
    id="W2",
    title="to escape, two-layer x^2 tanh (p = 3), n = 40, m = 100, init std 1e-3, rtol = 1e-8",
    make_data=_data_maker(W2_SPEC),
    reference=_w2_reference,
    error=_error,
    impls=(
        *_flowsim_rows(W2_SPEC, "auto"),
        *_equal_rows("W2", W2_SPEC),
        Impl(
            "torch GD f64",
            _torch_gd_builder(W2_SPEC, _w2_reference),
            collect=_collect,
            compare_to=_equal_name("W2 torch GD f64"),
            requires=("torch",),
        ),
    ),  # fmt: skip
    notes=(
        "escape: the largest neuron's input-weight norm |w_k| (bias included) reaches 0.2, "
        "flowsim's escape(norm=0.2); t_esc = relative error of the escape time",
        "reference: solve_ivp LSODA rtol 1e-12 with the analytic Jacobian and the same event",
        "torch GD: lr as in W1; default run: 1e4 time units timed and extrapolated to the "
        "reference escape time, --full: run until its own escape",
    ),
    **ONE_RUN,
)

W3 = Workload(
    id="W3",
    title=(
        "ReLU phase-diagram run, gamma = 0.5, gamma' = 0 (linear regime), n = 4, m = 1e5 "
        "(1e3 with --quick), to loss 1e-6"
    ),
    make_data=_data_maker(W3_SPEC),
    reference=lambda data: None,
    error=_error,
    impls=(
        Impl(
            "flowsim auto",
            _flowsim_builder(W3_SPEC, "auto"),
            kind="flowsim",
            collect=_collect,
            compare_to="flowsim auto",
            requires=("numba",),
        ),
        Impl(
            "flowsim auto, switching=False",
            _flowsim_builder(W3_SPEC, "auto", switching=False),
            kind="flowsim",
            collect=_collect,
            compare_to="flowsim auto",
            requires=("numba",),
        ),
        Impl(
            "scipy LSODA + numpy",
            _scipy_builder(W3_SPEC, "LSODA"),
            collect=_collect,
            compare_to="flowsim auto",
            requires=("scipy",),
        ),
    ),  # fmt: skip
    notes=(
        "no reference: at P = 3e5 no dense-Jacobian solver runs; rows report the time the loss "
        "reaches 1e-6 (t_event in the JSON)",
        "flowsim auto treats the ReLU kinks as switching surfaces (steps end on them); "
        "switching=False ignores them (the error control alone handles the kinks)",
    ),
    **ONE_RUN,
)

W4 = Workload(
    id="W4",
    title="W1 with diffrax Tsit5 (JAX, x64, PID controller, rtol = 1e-8), to t = 1e3 and 1e5",
    make_data=_data_maker(W1_SPEC),
    reference=_w1_reference,
    error=_error,
    impls=(
        Impl(
            "flowsim auto, t = 1e3",
            _flowsim_builder(W1_SPEC, "auto", t_end=1e3),
            kind="flowsim",
            collect=_collect,
            compare_to="flowsim auto, t = 1e3",
            requires=("numba",),
        ),
        # the explicit methods on the non-stiff part: dopri5 is Tsit5's like (order 5(4),
        # same controller), dop853 flowsim's highest order
        *(
            Impl(
                f"flowsim {method}, t = 1e3",
                _flowsim_builder(W1_SPEC, method, t_end=1e3),
                kind="flowsim",
                collect=_collect,
                compare_to=f"flowsim {method}, t = 1e3",
                requires=("numba",),
            )
            for method in ("dopri5", "dop853")
        ),
        *_equal_rows("W4", W1_SPEC),
        Impl(
            "flowsim auto, t = 1e5",
            _flowsim_builder(W1_SPEC, "auto"),
            kind="flowsim",
            collect=_collect,
            compare_to="flowsim auto, t = 1e5",
            requires=("numba",),
        ),
        Impl(
            "diffrax Tsit5, t = 1e3",
            _diffrax_builder(W1_SPEC, 1e3),
            collect=_collect,
            compare_to=_equal_name("diffrax Tsit5, t = 1e3"),
            requires=("jax", "diffrax"),
        ),
        Impl(
            "diffrax Tsit5, t = 1e5",
            _diffrax_builder(W1_SPEC, 1e5),
            collect=_collect,
            compare_to=_equal_name("diffrax Tsit5, t = 1e5"),
            requires=("jax", "diffrax"),
        ),
    ),  # fmt: skip
    notes=(
        "optional competitor: skipped when jax or diffrax is not importable (pip install -e "
        "'.[bench-jax]'); diffrax has no wall limit, its runs stop after 2e6 steps (a timeout)",
        "diffrax: same rtol, atol = 1e-8 * RMS(theta0) on theta (as SciPy's), PID gains = "
        "flowsim's PI controller; compiled ahead of time and warmed up, compile time in the note "
        "and not timed; nfev = 6 per step (FSAL) + 3",
    ),
    **ONE_RUN,
)

WORKLOADS = (W1, W2, W3, W4)
