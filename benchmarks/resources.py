"""M1 (memory of a very wide run) and L1 (compile latency), each in fresh subprocesses.

M1: a two-layer tanh net with ``m = 10^6`` neurons on W1's data, 200 save
points, ``save_state="final"`` (observables at every save point, the full
state only at the end), a short ``t_end``.  The child process imports
flowsim, builds the data, warms up with a tiny ``t_end`` (compiles or loads
the kernels), then measures one run with :func:`benchmarks._common.measure_call_memory`:
peak RSS over the child's whole life (``VmHWM``) and the growth during the
run.  Target: peak under 2 GiB.

L1: ``import flowsim`` plus the first ``simulate`` of a small net (m = 10, 40
points, default method), timed inside a fresh interpreter.  Cold: with
``FLOWSIM_CACHE_DIR`` and ``NUMBA_CACHE_DIR`` pointing at a new empty
directory, so every kernel is generated and compiled.  Warm: a second fresh
interpreter with the same directories, so everything loads from the cache.
New activation: the same directories and an expression they have never seen, so
only its callback compiles (the core and the model kernels load).  Targets: cold
under 20 s, warm under 2 s, new activation under 5 s.

The timed number of each row is measured in the child (M1: the one
``simulate`` call; L1: import + first ``simulate``); the child's interpreter
start-up is reported separately in the note.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import _MALLOC_ENV, Impl, Workload

GIB = 2**30
M1_TARGET_BYTES = 2 * GIB
L1_TARGETS = {"cold": 20.0, "warm": 2.0, "new": 5.0}
M1_T_END = 1.0
M1_WIDTH = 10**6
M1_QUICK_WIDTH = 10**5
CHILD_TIMEOUT = 900


def _child_env(extra=None) -> dict:
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), root]))
    env.update(extra or {})
    return env


def _run_child(code: str, env: dict) -> dict:
    """Run ``python -c code`` and return the JSON object it prints last."""
    tic = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        env=env,
        check=False,
    )
    wall = time.perf_counter() - tic
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = [line for line in (done.stderr or done.stdout).strip().splitlines() if line]
        where = next((line.strip() for line in tail if line.strip().startswith("File")), "")
        error = f"child exited with code {done.returncode}: {(tail or ['no output'])[0]} {where}"
        return {"error": error.strip(), "process_wall": wall}
    result = json.loads(lines[-1])
    result["process_wall"] = wall
    return result


def _failed(result) -> dict:
    return {"vector": None, "nfev": None, "note": result["error"], "status": "failed",
            "time": result["process_wall"]}  # fmt: skip


# -- M1 -----------------------------------------------------------------------------------------

_M1_CHILD = """
import faulthandler; faulthandler.enable()
import json, sys, time
import numpy as np
import flowsim as fs
from benchmarks._common import measure_call_memory
from benchmarks._problem import sin_data

method, m, t_end = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
X, Xa, y = sin_data(40)
net = fs.TwoLayer("tanh", m, 1, bias=True)
theta0 = net.init(0, scale=1e-4)
kwargs = dict(method=method, rtol=1e-8, atol=1e-8, n_save=200, save_state="final",
              progress=False)
fs.simulate(net, theta0, X, y, t_end=t_end * 1e-6, **kwargs)  # compile or load the kernels
out = {}

def call():
    tic = time.perf_counter()
    out["traj"] = fs.simulate(net, theta0, X, y, t_end=t_end, **kwargs)
    out["wall"] = time.perf_counter() - tic

memory = measure_call_memory(call)
traj = out["traj"]
print(json.dumps({
    **memory, "wall": out["wall"], "nfev": traj.nfev, "steps": traj.n_accepted,
    "status": traj.status, "saved": int(traj.t.size),
    "loss_finite": int(np.isfinite(traj.loss).sum()),
    "states_kept": int(traj.theta_bar.shape[0]), "P": int(theta0.size),
    "theta_bytes": int(theta0.nbytes),
}))
"""


def _m1_data(quick):
    return {"m": M1_QUICK_WIDTH if quick else M1_WIDTH, "t_end": M1_T_END}


def _m1_builder(method):
    def build(data):
        import flowsim as fs

        if method not in fs.METHODS:
            from benchmarks._common import Skip

            raise Skip(f"flowsim has no method {method!r} in this build")
        args = f"{method!r}, {str(int(data['m']))!r}, {str(float(data['t_end']))!r}"
        code = f"import sys; sys.argv[1:] = [{args}]\n" + _M1_CHILD
        env = _child_env(_MALLOC_ENV)
        return lambda: _run_child(code, env)

    return build


def _m1_collect(result):
    if "error" in result:
        return _failed(result)
    peak = result["peak_rss_kib"] * 1024
    verdict = "met" if peak < M1_TARGET_BYTES else "NOT met"
    note = (
        f"P = {result['P']}, {result['steps']} steps, {result['saved']} save points "
        f"({result['loss_finite']} losses, {result['states_kept']} full state kept; one state "
        f"is {result['theta_bytes'] / 2**20:.0f} MiB), status {result['status']}; peak "
        f"{peak / GIB:.2f} GiB vs target 2 GiB: {verdict}"
    )
    return {
        "vector": None,
        "nfev": result["nfev"],
        "note": note,
        "status": "done" if result["status"] == "done" else "failed",
        "time": result["wall"],
        "row": {
            "peak_rss_kib": result["peak_rss_kib"],
            "call_rss_kib": result["call_rss_kib"],
            "target_bytes": M1_TARGET_BYTES,
            "target_met": bool(peak < M1_TARGET_BYTES),
            "child": result,
        },
    }


M1 = Workload(
    id="M1",
    title=(
        f"memory, two-layer tanh, m = 1e6 (1e5 with --quick), n = 40, 200 save points, "
        f"save_state='final', t = 0..{M1_T_END:g}; target: peak RSS < 2 GiB"
    ),
    make_data=_m1_data,
    reference=lambda data: None,
    error=lambda vector, reference: None,
    impls=tuple(
        Impl(
            f"flowsim {method}",
            _m1_builder(method),
            kind="flowsim",
            collect=_m1_collect,
            requires=("numba",),
            probe=False,
        )
        for method in ("auto", "dopri5")
    ),  # fmt: skip
    repeat=1,
    quick_repeat=1,
    min_time=0.0,
    quick_min_time=0.0,
    notes=(
        "each row runs in its own fresh interpreter: peak RSS = VmHWM over its whole life "
        "(imports, kernels, data, warm-up, run); call +RSS = growth during the one run; "
        "best time = that run's wall time",
    ),
)


# -- L1 -----------------------------------------------------------------------------------------

_L1_CHILD = """
import faulthandler; faulthandler.enable()
import json, time
tic = time.perf_counter()
import flowsim as fs
imported = time.perf_counter()
import numpy as np
x = np.linspace(-1.0, 1.5, 40)
net = fs.TwoLayer({activation!r}, 10, 1)
theta0 = net.init(0, scale=1e-2)
traj = fs.simulate(net, theta0, x[:, None], np.sin(3 * x) + np.sin(6 * x) / 2, t_end=10.0,
                   progress=False)
done = time.perf_counter()
hwm = None
with open("/proc/self/status") as fh:
    for line in fh:
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
print(json.dumps({"import": imported - tic, "simulate": done - imported, "total": done - tic,
                  "nfev": traj.nfev, "status": traj.status, "method": traj.method,
                  "peak_rss_kib": hwm}))
"""

_L1_DIRS: dict[str, str] = {}


def _l1_cache_env(fresh: bool) -> dict:
    if fresh or "root" not in _L1_DIRS:
        root = tempfile.mkdtemp(prefix="flowsim-bench-L1-")
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _L1_DIRS["root"] = root
    root = _L1_DIRS["root"]
    return _child_env(
        {
            "FLOWSIM_CACHE_DIR": os.path.join(root, "flowsim"),
            "NUMBA_CACHE_DIR": os.path.join(root, "numba"),
        }
    )


def _l1_child(activation: str = "tanh") -> str:
    return _L1_CHILD.replace("{activation!r}", repr(activation))


def _l1_builder(kind):
    def build(data):
        if kind == "cold":
            return lambda: _run_child(_l1_child(), _l1_cache_env(fresh=True))
        if "root" not in _L1_DIRS:  # the cold row did not run: fill a cache first
            _run_child(_l1_child(), _l1_cache_env(fresh=True))
        env = _l1_cache_env(fresh=False)
        if kind == "new":  # an expression this cache has never seen: its callback compiles
            return lambda: _run_child(_l1_child(f"x + x**3/{_fresh_number()}"), env)
        return lambda: _run_child(_l1_child(), env)

    return build


def _fresh_number() -> int:
    return int.from_bytes(os.urandom(4), "little") % 10**6 + 10**6


def _l1_collect(kind):
    target = L1_TARGETS[kind]

    def collect(result):
        if "error" in result:
            return _failed(result)
        verdict = "met" if result["total"] < target else "NOT met"
        note = (
            f"import flowsim {result['import']:.2f} s + first simulate {result['simulate']:.2f} s "
            f"({result['method']}, {result['nfev']} evaluations, {result['status']}); the "
            f"process took {result['process_wall']:.2f} s with interpreter start-up; "
            f"target {target:g} s: {verdict}"
        )
        return {
            "vector": None,
            "nfev": result["nfev"],
            "note": note,
            "time": result["total"],
            "row": {
                "peak_rss_kib": result["peak_rss_kib"],
                "target_seconds": target,
                "target_met": bool(result["total"] < target),
                "child": result,
            },
        }

    return collect


L1 = Workload(
    id="L1",
    title=(
        "compile latency: import flowsim + first simulate (m = 10, n = 40, t = 10) in a fresh "
        "interpreter; cold = empty FLOWSIM_CACHE_DIR and NUMBA_CACHE_DIR (target 20 s), warm "
        "= the same directories again (target 2 s), new activation = the same directories "
        "and an expression never compiled there, x + x**3/N (target 5 s)"
    ),
    make_data=lambda quick: {},
    reference=lambda data: None,
    error=lambda vector, reference: None,
    impls=tuple(
        Impl(
            label,
            _l1_builder(kind),
            kind="flowsim",
            collect=_l1_collect(kind),
            requires=("numba",),
            probe=False,
        )
        for kind, label in (
            ("cold", "cold cache"),
            ("warm", "warm cache"),
            ("new", "new activation, core and model kernels cached"),
        )
    ),
    repeat=1,
    quick_repeat=1,
    min_time=0.0,
    quick_min_time=0.0,
    notes=(
        "best time = import flowsim + first simulate, measured inside the child; peak RSS = "
        "the child's VmHWM at the end",
    ),
)

WORKLOADS = (M1, L1)
