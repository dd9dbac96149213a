"""The integrator core and its plug-ins (#8): layering, a user's own model, compile sharing."""

import ast
import importlib.util
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import flowsim as fs
from flowsim import _abi

ROOT = Path(__file__).resolve().parent.parent


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_models_do_not_import_the_integrators():
    offenders = {
        f"{path.name}: {name}"
        for path in (ROOT / "flowsim" / "models").glob("*.py")
        for name in _imports(path)
        if name.startswith("flowsim.integrate")
    }
    assert not offenders


def test_core_text_does_not_depend_on_the_model():
    """One core module for every model and activation: the same file is built for all."""
    from flowsim.integrate.core import core

    first = core()
    X = np.linspace(-1, 1, 5)[:, None]
    y = X[:, 0] ** 2
    for net in (fs.TwoLayer("tanh", 3, 1), fs.ThreeLayer("tanh", (2, 2), 1)):
        fs.simulate(net, net.init(0, scale=0.1), X, y, t_end=1.0, progress=False)
    assert core() is first
    kernels = Path(first.__file__).parent
    assert len(list(kernels.glob("flowsim_gen_core_*.py"))) >= 1
    for name in ("rk_solve", "bdf_solve", "discrete_solve"):
        assert name in vars(first)


def test_one_model_module_serves_every_activation():
    """The model kernels are compiled once per family, not per activation: nets with
    different activations share the module (ReLU's kink treatment is the two-layer
    family's second module), and each activation brings only its own callback."""
    tanh, gelu, expr = (fs.TwoLayer(a, 3, 1) for a in ("tanh", "gelu", "x**3 + sin(x)"))
    assert tanh.kernels is gelu.kernels is expr.kernels
    assert fs.TwoLayer("relu", 3, 1).kernels is fs.TwoLayer("leaky_relu", 3, 1).kernels
    assert fs.TwoLayer("relu", 3, 1).kernels is not tanh.kernels
    assert fs.ThreeLayer("tanh", (2, 2), 1).kernels is fs.ThreeLayer("gelu", (2, 2), 1).kernels
    assert len({tanh.dims()[-1], gelu.dims()[-1], expr.dims()[-1]}) == 3  # the addresses


def test_a_pickled_net_leaves_its_process_local_addresses_behind():
    """The activation's callback address and the compiled modules belong to one process:
    a pickled net (sent to another process) drops them and rebuilds them on first use."""
    net = fs.TwoLayer("gelu", 3, 1)
    X = np.linspace(-1, 1, 5)[:, None]
    y = np.sin(X[:, 0])
    theta = net.init(0, scale=0.5)
    grad = net.gradient(theta, X, y)
    assert "address" in vars(net.activation)
    copy = pickle.loads(pickle.dumps(net))
    assert not {"kernels", "_serial_kernels"} & set(vars(copy))
    assert not {"kernels", "address"} & set(vars(copy.activation))
    assert np.array_equal(copy.gradient(theta, X, y), grad)


def test_interface_wrappers_cover_every_function_with_its_arity():
    for name, kinds, _ in _abi.INTERFACE:
        source = _abi.wrapper_source(name)
        flat = sum(1 + int(k[1]) if k[1] != "0" else 1 for k in kinds.split())
        assert len(_abi.c_signature(name).args) == flat
        assert source.startswith(f"def _c_{name}(")


@numba.njit
def _quartic(theta, X, y, grad):
    """R = sum_p (theta_p^4 / 4 - y_p theta_p^2 / 2) X[0, 0]: an exact reference."""
    total = 0.0
    for p in range(theta.size):
        total += (theta[p] ** 4 / 4 - y[p] * theta[p] ** 2 / 2) * X[0, 0]
        grad[p] = (theta[p] ** 3 - y[p] * theta[p]) * X[0, 0]
    return total


def _example():
    path = ROOT / "examples" / "diagonal_linear.py"
    spec = importlib.util.spec_from_file_location("_example_diagonal_linear", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_user_model_example_matches_solve_ivp(capsys):
    example = _example()
    X, y, _ = example.problem(n=12, d=6)
    net = fs.UserModel(example.loss_and_gradient, 12, 6, layers=[("u", 6), ("v", 6)])
    theta0 = np.full(12, 1e-2)
    traj = fs.simulate(net, theta0, X, y, t_end=20.0, rtol=1e-12, atol=1e-16, n_save=5,
                       save_state="all", progress=False)  # fmt: skip

    def rhs(_t, theta):  # plain NumPy, independent of the example's Numba function
        u, v = theta[:6], theta[6:]
        e = X @ (u * u - v * v) - y
        s = X.T @ e / len(y)
        return -np.concatenate([2 * u * s, -2 * v * s])

    ref = solve_ivp(rhs, (0.0, 20.0), theta0, method="DOP853", rtol=1e-12, atol=1e-16,
                    t_eval=traj.t)  # fmt: skip
    assert traj.status == "done"
    np.testing.assert_allclose(traj.theta, ref.y.T, rtol=0, atol=1e-8)
    loss_ref = [0.5 * np.mean((X @ (t[:6] ** 2 - t[6:] ** 2) - y) ** 2) for t in ref.y.T]
    np.testing.assert_allclose(traj.loss, loss_ref, rtol=1e-7)
    np.testing.assert_allclose(traj.norms[:, 0], np.linalg.norm(ref.y[:6], axis=0), rtol=1e-8)
    results = example.main(["--d", "6", "--n", "12", "--t-end", "5"])
    assert results["gap"] < 1e-8 and "solve_ivp" in capsys.readouterr().out


def test_user_model_events_gd_and_scales():
    """theta_p' = (y_p - theta_p^2) theta_p: logistic growth, solved exactly."""
    net = fs.UserModel(_quartic, 3, 1)
    X = np.ones((3, 1))
    y = np.array([1.0, 4.0, 9.0])
    theta0 = np.full(3, 1e-3)

    def exact(t):  # theta^2 = y / (1 + (y / theta0^2 - 1) exp(-2 y t))
        return np.sqrt(y / (1 + (y / theta0**2 - 1) * np.exp(-2 * y * t)))

    traj = fs.simulate(net, theta0, X, y, t_end=3.0, rtol=1e-11, atol=1e-15, n_save=4,
                       save_state="all", scales={"theta": 1e-3}, progress=False)  # fmt: skip
    np.testing.assert_allclose(traj.theta, [exact(t) for t in traj.t], rtol=1e-8)
    # escape: |theta| reaches 1, exactly when sum_p theta_p(t)^2 = 1
    traj = fs.simulate(net, theta0, X, y, t_end=3.0, rtol=1e-11, atol=1e-15,
                       events=[fs.escape(1.0)], progress=False)  # fmt: skip
    t_esc = traj.event("escape").t
    assert traj.status == "event"
    assert np.sum(exact(t_esc) ** 2) == pytest.approx(1.0, rel=1e-7)
    # gradient descent: the plain NumPy recursion
    gd = fs.simulate(net, theta0, X, y, t_end=1.0, method="gd", dt=0.01, progress=False)
    theta = theta0.copy()
    for _ in range(100):
        theta = theta - 0.01 * (theta**3 - y * theta)
    np.testing.assert_allclose(gd.theta_final, theta, rtol=1e-12)


def test_user_model_bad_input():
    with pytest.raises(TypeError, match="numba.njit"):
        fs.UserModel(lambda theta, X, y, g: 0.0, 3, 1)
    with pytest.raises(ValueError, match="layers hold 4 parameters"):
        fs.UserModel(_quartic, 3, 1, layers=[("a", 4)])
    net = fs.UserModel(_quartic, 3, 1)
    with pytest.raises(ValueError, match="not available"):
        fs.simulate(net, np.ones(3), np.ones((3, 1)), np.ones(3), t_end=1.0, method="bdf")
    with pytest.raises(ValueError, match=r"X must have shape \(n, 1\)"):
        fs.simulate(net, np.ones(3), np.ones((3, 2)), np.ones(3), t_end=1.0)


CONCURRENT = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    import flowsim as fs
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.001)
    net = fs.TwoLayer(sys.argv[2], 4, 1)
    X = np.linspace(-1, 1, 6)[:, None]
    traj = fs.simulate(net, net.init(0, scale=0.3), X, np.sin(3 * X[:, 0]), t_end=5.0,
                       method="dopri5", progress=False)
    print(repr(float(traj.loss[-1])), traj.nfev)
    """
)


@pytest.mark.slow
def test_concurrent_first_use_compiles_once(tmp_path):
    """Three processes start on one new activation at once: all finish with the same
    numbers, and the compile notice (first use) appears once."""
    expression = f"x + x**3/{np.random.default_rng().integers(10**6, 10**7)}"
    env = {**os.environ, "FLOWSIM_CACHE_DIR": str(tmp_path / "cache")}
    # the core and the two-layer kernels first, so that the three race for the activation
    (tmp_path / "go").touch()
    subprocess.run([sys.executable, "-c", CONCURRENT, str(tmp_path / "go"), "tanh"],
                   env=env, check=True, capture_output=True, timeout=900)  # fmt: skip
    (tmp_path / "go").unlink(missing_ok=True)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", "import logging; logging.basicConfig(level=logging.INFO)\n"
             + CONCURRENT, str(tmp_path / "go"), expression],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(3)
    ]  # fmt: skip
    (tmp_path / "go").touch()
    results = [p.communicate(timeout=900) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in results]
    assert len({out for out, _ in results}) == 1
    notices = sum(err.count("compiling activation kernels") for _, err in results)
    assert notices == 1, [err for _, err in results]


PARALLEL_RUN = textwrap.dedent(
    """
    import numpy as np
    import flowsim as fs
    rng = np.random.default_rng(0)
    net = fs.TwoLayer("tanh", 300, 2)  # n * P = 200 * 1200: the parallel kernels
    X = rng.uniform(-1, 1, (200, 2))
    traj = fs.simulate(net, net.init(1, scale=1e-2), X, np.tanh(X @ [1.0, -1.0]), t_end=1.0,
                       method="dopri5", progress=False)
    print(repr(float(traj.loss[-1])))
    """
)


@pytest.mark.slow
def test_parallel_callbacks_load_from_the_cache(tmp_path):
    """The second process loads the parallel kernels' callbacks from the cache (it used to
    abort in LLVM: 'Symbol not found: allocate_sched') and gets the same numbers."""
    env = {**os.environ, "FLOWSIM_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", PARALLEL_RUN], env=env, capture_output=True,
                           text=True, timeout=900) for _ in range(2)]  # fmt: skip
    assert [r.returncode for r in runs] == [0, 0], runs[1].stderr[-2000:]
    assert runs[0].stdout == runs[1].stdout
