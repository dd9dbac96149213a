"""Named, seeded data sets: the training sets of the condensation papers.

``make_data(kind, **params) -> (X, y)`` with ``X`` of shape (n, d) and ``y`` of
shape (n,), both float64 and C-contiguous.  The kinds and their parameters
(defaults in brackets):

``"sin1d"``
    1-D inputs ``x = linspace(low, high, n)`` [n=40, low=-1, high=1.5] and
    ``y = target(x)``, ``target`` a SymPy expression in ``x``
    ["sin(3*x) + sin(6*x)/2"] (the 1-D condensation experiments of [ZZJLZX22],
    [LXMZ21]).
``"sum_sin"``
    ``X`` uniform in ``[low, high]^d`` [d=5, n=80, low=-4, high=2] drawn from
    ``numpy.random.default_rng(seed)`` [seed=0], and
    ``y = sum_k 3.5 sin(5 x_k + 1)`` ([ZZJLZX22], section 5).
``"gaussian"``
    ``X ~ N(0, I_d)`` [d=5, n=100, seed=0] and ``y = target(x1, ..., xd)``, a
    SymPy expression in ``x1 .. xd`` ["x1"].
``"file"``
    An ``.npz`` file holding arrays ``X`` (n, d) or (n,) and ``y`` (n,);
    ``path`` is relative to ``base_dir`` (for a run configuration: the
    directory of the config file).

Target expressions are read by a whitelist parser (:mod:`flowsim._expressions`:
numbers, the symbols, ``+ - * / **``, ``pi``, ``E``, and the functions ``exp``,
``log``, ``sin``, ``tanh``, ``erf``, ``Abs``, ``Max``, ``Piecewise`` and the like; the
text is never evaluated) and evaluated with NumPy (``sympy.lambdify``).  A bad
parameter raises ValueError naming the parameter and what is allowed.

References
----------
.. [ZZJLZX22] Zhou, Zhou, Jin, Luo, Zhang, Xu. Towards understanding the
   condensation of neural networks at initial training. NeurIPS 2022.
.. [LXMZ21] Luo, Xu, Ma, Zhang. Phase diagram for two-layer ReLU neural networks
   at infinite-width limit. JMLR 22(71), 2021.
"""

from __future__ import annotations

import functools
import math
import stat
from pathlib import Path

import numpy as np

from flowsim._memory import format_bytes, over_limit

# kind -> parameter defaults (None: required).  The order is the documented one.
KINDS: dict[str, dict[str, object]] = {
    "sin1d": {"n": 40, "low": -1.0, "high": 1.5, "target": "sin(3*x) + sin(6*x)/2"},
    "sum_sin": {"d": 5, "n": 80, "low": -4.0, "high": 2.0, "seed": 0},
    "gaussian": {"d": 5, "n": 100, "target": "x1", "seed": 0},
    "file": {"path": None},
}

_INT_PARAMS = {"n": 1, "d": 1, "seed": 0}  # name -> smallest allowed value
_FLOAT_PARAMS = ("low", "high")
_STR_PARAMS = ("target", "path")


def make_data(kind: str, *, base_dir=None, **params) -> tuple[np.ndarray, np.ndarray]:
    """Build the data set ``kind`` (see the module docstring).

    Parameters
    ----------
    kind : {"sin1d", "sum_sin", "gaussian", "file"}
    base_dir : str or Path, optional
        Directory that a relative ``path`` of kind ``"file"`` is resolved
        against; default the current directory.
    **params
        The kind's parameters; missing ones take their defaults.

    Returns
    -------
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
    """
    return _make_data(kind, params, base_dir)


def _make_data(kind, params, base_dir=None, where=""):
    """:func:`make_data` with error messages prefixed by ``where``."""
    p = check_params(kind, params, where)
    if kind != "file":  # X, y and a copy: 8 n (2 d + 2) bytes, checked before drawing
        d = 1 if kind == "sin1d" else p["d"]
        reason = over_limit(8 * p["n"] * (2 * d + 2), "the data set would")
        if reason is not None:
            raise ValueError(f"{where}n: n = {p['n']}, d = {d}: {reason}")
    if kind == "sin1d":
        x = np.linspace(p["low"], p["high"], p["n"])
        X = x[:, None]
        y = _evaluate(p["target"], ("x",), X, f"{where}target")
    elif kind == "sum_sin":
        rng = np.random.default_rng(p["seed"])
        X = rng.uniform(p["low"], p["high"], size=(p["n"], p["d"]))
        y = np.sum(3.5 * np.sin(5.0 * X + 1.0), axis=1)
    elif kind == "gaussian":
        rng = np.random.default_rng(p["seed"])
        X = rng.standard_normal((p["n"], p["d"]))
        y = _evaluate(p["target"], _gaussian_symbols(p["d"]), X, f"{where}target")
    else:
        X, y = _load(p["path"], base_dir, f"{where}path")
    return np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(y, dtype=np.float64)


def input_dim(kind: str, params: dict) -> int | None:
    """Input dimension of data set ``kind`` with (checked) ``params``; None for ``"file"``."""
    if kind == "sin1d":
        return 1
    if kind in ("sum_sin", "gaussian"):
        return int(params.get("d", KINDS[kind]["d"]))
    return None


def check_params(kind, params, where: str = "") -> dict:
    """Checked parameters of ``kind`` with the defaults filled in.

    ``where`` prefixes the parameter names in error messages (a config's
    ``"data.params."``); the kind itself is reported as ``{where}kind`` with the
    trailing ``params.`` dropped.
    """
    kind_path = where[: -len("params.")] + "kind" if where.endswith("params.") else "kind"
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"{kind_path}: must be one of {sorted(KINDS)}, got {kind!r}")
    if not isinstance(params, dict):
        raise ValueError(
            f"{where.rstrip('.') or 'params'}: must be a table of parameters, got {params!r}"
        )
    allowed = list(KINDS[kind])
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        names = ", ".join(f"{where}{u}" for u in unknown)
        raise ValueError(f"{names}: unknown parameter of {kind!r} data; allowed: {allowed}")
    out = {}
    for name, default in KINDS[kind].items():
        value = params.get(name, default)
        if value is None:
            raise ValueError(f"{where}{name}: missing; {kind!r} data needs it")
        out[name] = _check_value(name, value, f"{where}{name}")
    if "low" in out and not out["low"] < out["high"]:
        raise ValueError(f"{where}low: must be < high = {out['high']!r}, got {out['low']!r}")
    if "target" in out:
        symbols = ("x",) if kind == "sin1d" else _gaussian_symbols(out["d"])
        _compile(out["target"], symbols, f"{where}target")
    return out


def _check_value(name, value, path):
    if name in _INT_PARAMS:
        low = _INT_PARAMS[name]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{path}: must be an integer >= {low}, got {value!r}")
        return int(value)
    if name in _FLOAT_PARAMS:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise ValueError(f"{path}: must be a finite number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{path}: must be a finite number, got {value!r}")
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{path}: must be a non-empty string, got {value!r}")
    return value


def _gaussian_symbols(d: int) -> tuple[str, ...]:
    return tuple(f"x{k}" for k in range(1, d + 1))


@functools.cache
def _compile(text: str, symbols: tuple[str, ...], path: str):
    """Parse ``text`` as a SymPy expression in ``symbols``; returns a NumPy function."""
    import sympy as sp

    from flowsim import _expressions

    local = {name: sp.Symbol(name, real=True) for name in symbols}
    try:
        expr = _expressions.parse(text, local)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    args = [local[name] for name in symbols]
    try:
        return sp.lambdify(args, expr, modules="numpy")
    except Exception as exc:  # noqa: BLE001 - printer errors name the function
        raise ValueError(f"{path}: {text!r} cannot be evaluated with NumPy ({exc})") from None


def _evaluate(text, symbols, X, path) -> np.ndarray:
    f = _compile(text, tuple(symbols), path)
    with np.errstate(all="ignore"):
        value = np.asarray(f(*(X[:, k] for k in range(X.shape[1]))))
    if np.iscomplexobj(value):
        raise ValueError(f"{path}: {text!r} is not real on the data")
    y = np.broadcast_to(value.astype(np.float64), (X.shape[0],)).copy()
    bad = int(np.sum(~np.isfinite(y)))
    if bad:
        raise ValueError(f"{path}: {text!r} is not finite at {bad} of {y.size} data points")
    return y


def check_file(file: Path, where: str) -> int:
    """Size of the data file ``file``; ValueError unless it is a regular file within the
    memory limit (a device such as /dev/zero or a FIFO would be read forever)."""
    try:
        info = file.stat()
    except OSError as exc:
        raise ValueError(f"{where}: no such file {str(file)!r} ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(
            f"{where}: {str(file)!r} is not a regular file (a directory, device or pipe); "
            "must be an .npz file"
        )
    reason = over_limit(info.st_size, "reading it would")
    if reason is not None:
        raise ValueError(f"{where}: {str(file)!r} is {format_bytes(info.st_size)}; {reason}")
    return info.st_size


def _declared_bytes(archive, name: str) -> int:
    """Bytes of array ``name`` of an open .npz as float64, from its header alone (a
    compressed file can declare far more than its size)."""
    try:
        with archive.zip.open(f"{name}.npy") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0
            if version != (1, 0):
                read = np.lib.format.read_array_header_2_0
            shape, _, _ = read(fh)
    except KeyError:  # stored under another member name: np.load's own reading decides
        return 0
    return 8 * math.prod(shape)


def _load(path, base_dir, where) -> tuple[np.ndarray, np.ndarray]:
    file = Path(path).expanduser()
    if not file.is_absolute():
        file = Path(base_dir or ".") / file
    check_file(file, where)
    try:
        with np.load(file, allow_pickle=False) as archive:
            names = list(archive.files)
            missing = [k for k in ("X", "y") if k not in names]
            if missing:
                raise ValueError(f"{where}: {str(file)!r} has no array(s) {missing}; found {names}")
            declared = sum(_declared_bytes(archive, k) for k in ("X", "y"))
            reason = over_limit(2 * declared, "its arrays (as float64, and a copy) would")
            if reason is not None:
                raise ValueError(f"{where}: {str(file)!r}: {reason}")
            X, y = archive["X"], archive["y"]
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile/pickle/OS errors
        raise ValueError(f"{where}: cannot read {str(file)!r} as .npz ({exc})") from None
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if X.ndim != 2 or y.shape != (X.shape[0],) or X.shape[0] == 0:
        raise ValueError(
            f"{where}: {str(file)!r} must hold X of shape (n, d) and y of shape (n,), "
            f"got {X.shape} and {y.shape}"
        )
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise ValueError(f"{where}: {str(file)!r} holds NaN or infinite values")
    return X, y


# -- sequences for the attention model (flowsim.Attention) ----------------------------------


def _positive(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name}: must be an integer >= {low}, got {value!r}")
    return int(value)


def gaussian_sequences(n: int = 100, s: int = 10, d: int = 8, *, seed: int = 0,
                       direction=None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Gaussian token sequences labeled by a planted direction.

    Tokens ``X_ij ~ N(0, I_d)`` i.i.d., ``y_i = sign(w . xbar_i)`` (+1 at 0) with the
    mean token ``xbar_i = (1/s) sum_j X_ij`` and the unit vector ``w``: ``direction``
    normalized, or drawn N(0, I_d) (then normalized) after ``X``.

    Parameters
    ----------
    n, s, d : int
        Sequences, tokens per sequence, token dimension.
    seed : int
        Seed of ``numpy.random.default_rng``.
    direction : array_like, shape (d,), optional

    Returns
    -------
    X : ndarray, shape (n, s, d)
    y : ndarray, shape (n,)
        Labels -1 and +1 (the exponential loss of [CL25]).
    """
    n, s, d = _positive("n", n), _positive("s", s), _positive("d", d)
    rng = np.random.default_rng(_positive("seed", seed, 0))
    X = rng.standard_normal((n, s, d))
    w = rng.standard_normal(d) if direction is None else np.asarray(direction, dtype=np.float64)
    if w.shape != (d,) or not np.all(np.isfinite(w)) or not np.any(w):
        raise ValueError(f"direction: must be a finite nonzero vector of shape ({d},)")
    y = np.where(X.mean(axis=1) @ w >= 0.0, 1.0, -1.0)
    return X, y


def anchor_function(n: int = 1000, s: int = 10, *, anchors=(1, 2, 3, 4), keys=range(5, 37),
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The anchor-function task of [CL25] (their keys 5..100, shrunk for CPU).

    Each sequence holds ``s`` tokens: keys drawn uniformly from ``keys`` and one
    anchor drawn from ``anchors`` at a uniform position among the first ``s - 1``;
    the target is the key right after the anchor plus ``anchor mod 2``.  Tokens
    and targets lie in ``[0, max(keys) + 2)``: use a vocabulary of
    ``V = max(max(keys) + 2, max(anchors) + 1)`` tokens.

    Parameters
    ----------
    n, s : int
        Sequences and tokens per sequence (s >= 2).
    anchors, keys : sequences of int
        Disjoint sets of token ids >= 0.
    seed : int
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    ids : ndarray of int64, shape (n, s)
        Token ids (feed them to ``Attention(..., embedding=E)``).
    y : ndarray, shape (n,)
        Target token ids, float64 (the cross-entropy labels).

    References
    ----------
    .. [CL25] Chen, Luo. From condensation to rank collapse: a two-stage analysis
       of transformer training dynamics. NeurIPS 2025. arXiv:2510.06954.
    """
    n, s = _positive("n", n), _positive("s", s, 2)
    rng = np.random.default_rng(_positive("seed", seed, 0))
    sets = {}
    for name, values in (("anchors", anchors), ("keys", keys)):
        message = f"{name}: must be a non-empty sequence of integers >= 0, got {values!r}"
        try:
            array = np.array(list(values))
        except TypeError:
            raise ValueError(message) from None
        if array.size == 0 or array.dtype.kind not in "iu" or array.min() < 0:
            raise ValueError(message)
        sets[name] = np.unique(array).astype(np.int64)
    if np.intersect1d(sets["anchors"], sets["keys"]).size:
        raise ValueError("anchors and keys must be disjoint")
    ids = rng.choice(sets["keys"], size=(n, s))
    where = rng.integers(0, s - 1, size=n)
    anchor = rng.choice(sets["anchors"], size=n)
    rows = np.arange(n)
    ids[rows, where] = anchor
    y = (ids[rows, where + 1] + anchor % 2).astype(np.float64)
    return ids, y


# -- Markov chains for the token-attention model (flowsim.TokenAttention) -------------------


def markov_chain(V: int = 5, *, lam: float = 0.5, high: float = 0.4,
                 delta: float = 0.05) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The transition matrix ``P = lam I + (1 - lam) 1 pi^T`` of [CLXL26] and its ``pi``.

    Token 0 has the high frequency ``pi_0 = high``; the other V - 1 tokens share
    ``1 - high`` with small asymmetries: ``pi_k = (1 - high)/(V - 1) (1 + delta a_k)``,
    ``a_k`` evenly spaced from +1 (token 1) to -1 (token V - 1).  ``delta = 0`` makes
    them exactly symmetric.  ``pi`` is the stationary distribution of ``P``
    (``pi^T P = pi^T``): a token repeats with probability ``lam``, else is redrawn from ``pi``.

    Parameters
    ----------
    V : int
        Vocabulary size, >= 2.
    lam : float
        Self-transition weight in [0, 1).
    high : float
        Frequency of token 0, in (0, 1).
    delta : float
        Relative asymmetry among the low-frequency tokens, in [0, 1).

    Returns
    -------
    P : ndarray, shape (V, V)
        Row-stochastic transition matrix, ``P[a, b] = Prob(next = b | current = a)``.
    pi : ndarray, shape (V,)

    References
    ----------
    .. [CLXL26] Chen, Lin, Xu et al. Focus and dilution: the multi-stage learning
       process of attention. 2026.
    """
    V = _positive("V", V, 2)
    for name, value, low, high_end in (("lam", lam, 0.0, 1.0), ("high", high, 0.0, 1.0),
                                       ("delta", delta, 0.0, 1.0)):  # fmt: skip
        ok = isinstance(value, (int, float, np.integer, np.floating)) and value is not True
        ok = ok and value is not False
        closed = name != "high"  # lam and delta may be 0
        if not ok or not (low <= value < high_end if closed else low < value < high_end):
            interval = f"[{low:g}, {high_end:g})" if closed else f"({low:g}, {high_end:g})"
            raise ValueError(f"{name}: must be a number in {interval}, got {value!r}")
    a = np.linspace(1.0, -1.0, V - 1) if V > 2 else np.zeros(1)
    pi = np.concatenate([[high], (1.0 - high) / (V - 1) * (1.0 + delta * a)])
    P = lam * np.eye(V) + (1.0 - lam) * np.outer(np.ones(V), pi)
    return P, pi


def _check_transition(P) -> np.ndarray:
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] != P.shape[1] or P.shape[0] < 1:
        raise ValueError(f"P: must be a square matrix (V, V), got shape {P.shape}")
    if not np.all(np.isfinite(P)) or np.any(P < 0):
        raise ValueError("P: entries must be finite and >= 0")
    if np.max(np.abs(P.sum(axis=1) - 1.0)) > 1e-12:
        raise ValueError("P: every row must sum to 1 (a row-stochastic matrix)")
    return P


def markov_stationary(P) -> np.ndarray:
    """A stationary distribution of ``P``: ``pi >= 0``, ``sum pi = 1``, ``pi^T P = pi^T``
    (least squares; unique for an irreducible chain)."""
    P = _check_transition(P)
    V = P.shape[0]
    A = np.vstack([P.T - np.eye(V), np.ones((1, V))])
    b = np.concatenate([np.zeros(V), [1.0]])
    pi = np.clip(np.linalg.lstsq(A, b, rcond=None)[0], 0.0, None)
    return pi / pi.sum()


def markov_sequences(P, n: int = 1000, s: int = 4, *,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Sequences of a Markov chain and their next tokens.

    The first token is drawn from the stationary distribution (:func:`markov_stationary`),
    each next one from the row of ``P`` of the current token; the target is token s + 1.

    Returns
    -------
    ids : ndarray of int64, shape (n, s)
    y : ndarray, shape (n,)
        The next token ids, float64 (``TokenAttention``'s cross-entropy labels).
    """
    P = _check_transition(P)
    n, s = _positive("n", n), _positive("s", s)
    rng = np.random.default_rng(_positive("seed", seed, 0))
    cdf = np.cumsum(P, axis=1)
    cdf[:, -1] = 1.0
    ids = np.empty((n, s + 1), dtype=np.int64)
    start = np.cumsum(markov_stationary(P))
    start[-1] = 1.0
    ids[:, 0] = np.searchsorted(start, rng.random(n), side="right")
    for j in range(1, s + 1):
        rows = cdf[ids[:, j - 1]]
        ids[:, j] = np.sum(rows <= rng.random(n)[:, None], axis=1)
    return ids[:, :s], ids[:, s].astype(np.float64)


MAX_POPULATION = 1_000_000
"""Largest number of sequences V^s that :func:`markov_population` enumerates."""


def markov_population(P, s: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Every sequence of length s with its next-token distribution: the exact
    population (infinite-data) cross-entropy as a finite weighted sum.

    ``ids`` holds all V^s sequences (lexicographic order); row i of ``Y`` is
    ``Prob(sequence i) P[x_is]`` with ``Prob(x) = pi(x_1) prod_j P[x_j, x_(j+1)]`` and
    ``pi`` stationary.  For logits ``l(x)`` of the last position,
    ``sum_iv Y_iv (logsumexp(l_i) - l_iv) = E[-log softmax(l(x))_(x_(s+1))]``, the
    expected next-token cross-entropy, which ``TokenAttention`` computes from
    ``(ids, Y)`` directly.

    Returns
    -------
    ids : ndarray of int64, shape (V^s, s)
    Y : ndarray, shape (V^s, V)
        Sums to 1.
    """
    P = _check_transition(P)
    s = _positive("s", s)
    V = P.shape[0]
    if V**s > MAX_POPULATION:
        raise ValueError(f"s: V^s = {V}^{s} sequences exceed {MAX_POPULATION}; use "
                         f"markov_sequences for a sample")  # fmt: skip
    ids = np.indices((V,) * s).reshape(s, -1).T.astype(np.int64)
    prob = markov_stationary(P)[ids[:, 0]]
    for j in range(1, s):
        prob = prob * P[ids[:, j - 1], ids[:, j]]
    return ids, prob[:, None] * P[ids[:, -1]]
