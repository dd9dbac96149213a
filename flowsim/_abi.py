"""The interface between the integrator core and a model: C callbacks by address.

The core (stepping loops, step control, dense output, events, BDF/RODAS/RKC)
is compiled once per machine; a model (and its activation) is compiled on its
own.  They meet through the functions of :data:`INTERFACE`: the model compiles
each as a C callback (``numba.cfunc``, cached like any kernel) and the core
calls it through its address, which travels at the end of the model's integer
array ``dims`` (the last :data:`N_FUNCTIONS` entries, in the order of
:data:`INTERFACE`).  A model's own kernels read ``dims`` from the front, so the
table is invisible to them.

Each argument is passed flat: an array as its data pointer followed by its
shape (C-contiguous arrays only), a scalar as itself.  Every callback returns
a float64 (0.0 where the model function returns nothing, the value as a float
where it returns an integer or a flag).  The argument kinds below fix both
sides: :func:`call` on the core's side, :func:`wrapper_source` on the model's.

The run's own settings travel the same way at the end of the float array ``c``
(the model's constants): the :data:`N_RUN` entries of :data:`RUN_BLOCK`, which
:func:`run_block` builds and ``fs.simulate`` appends.  The core applies the l2
penalty itself (it is the same for every model); a model's flow kernel that
supports dropout reads the masks' keep probabilities and the penalty's weights
from there, and only when ``c`` holds them (``c.size`` = its own count +
:data:`N_RUN`): called from Python, ``c`` has no run block.  Whoever calls the
core's loops directly must append one (``np.concatenate([c, run_block()])``).

The activation is a callback of its own, one level down: a model module is
compiled once per family (not per activation) and evaluates sigma and its
derivatives through :func:`activate`, on the address of the activation's
:data:`ACTIVATION_SIGNATURE` callback (``Activation.address``), which the model
keeps in its ``dims``.  One call evaluates a whole vector of pre-activations,
so the indirection costs one call per vector, not per element.

Writing a model family: implement the functions of :data:`INTERFACE` with
these exact arguments in the model's kernel template (no-op stand-ins for the
kink and Newton functions where the family has none, see
:mod:`flowsim.models._smooth_switching` and the three-layer template), and
:mod:`flowsim.models._base` does the rest.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# kinds: f = float64, i = int64, b = int8; digit = array dimension (0: scalar)
INTERFACE: tuple[tuple[str, str, str], ...] = (
    # (name, argument kinds, what the model function returns)
    ("flow", "f1 f2 f1 f1 i1 b2 f2 f1", "loss"),
    ("loss", "f1 f2 f1 f1 i1", "loss"),
    ("layer_norms", "f1 i1 f1", "none"),
    ("max_neuron_norm", "f1 i1", "value"),
    ("switch_init", "f1 f2 f1 f1 i1 b2 f2", "none"),
    ("switch_cross", "f1 f2 f1 f1 i1 b2 f2 i0 i0 f1", "loss"),
    # switch_locate's (theta, k, i) go to its last argument (3 floats)
    ("switch_locate", "f1 f1 f2 f2 f0 f2 f1 f1 i1 b2 f2 f1 f1 f1", "triple"),
    ("newton_work_size", "i1 i0", "count"),
    ("newton_factor", "f1 f2 f1 f1 i1 f0 f1", "flag"),
    ("newton_solve", "f1 i1 i0 f1 f1", "none"),
)
N_FUNCTIONS = len(INTERFACE)

RUN_BLOCK = ("l2", "penalty_1", "penalty_2", "keep_1", "keep_2", "seed", "step")
"""The run block at the end of ``c``: the l2 weight in the flow's units (``T lam``),
the dropout penalty's weight ``(1 - p) / p`` on hidden layer 1 and 2 (0: none),
the keep probability of the dropout masks on hidden layer 1 and 2 (1: no
masks), the seed of the masks, and the iteration (set by the discrete loop)."""
N_RUN = len(RUN_BLOCK)
INDEX = {name: q for q, (name, _, _) in enumerate(INTERFACE)}

_DTYPES = {"f": types.float64, "i": types.int64, "b": types.int8}


def run_block(*, l2: float = 0.0, penalty=(0.0, 0.0), keep=(1.0, 1.0),
              seed: int = 0) -> np.ndarray:  # fmt: skip
    """The :data:`RUN_BLOCK` of a run (the iteration starts at 0)."""
    return np.array([l2, *penalty, *keep, seed, 0.0], dtype=np.float64)


def _kinds(name: str) -> list[tuple[str, int]]:
    spec = dict((n, k) for n, k, _ in INTERFACE)[name]
    return [(kind[0], int(kind[1])) for kind in spec.split()]


def c_signature(name: str) -> numba.core.typing.templates.Signature:
    """The C signature of callback ``name``: float64(flat arguments)."""
    flat = []
    for dtype, ndim in _kinds(name):
        if ndim == 0:
            flat.append(_DTYPES[dtype])
        else:
            flat.append(types.CPointer(_DTYPES[dtype]))
            flat.extend([types.int64] * ndim)
    return types.float64(*flat)


def wrapper_source(name: str) -> str:
    """Source of ``_c_NAME``: rebuilds the arrays from pointers and calls ``NAME``."""
    params, args = [], []
    for q, (_, ndim) in enumerate(_kinds(name)):
        if ndim == 0:
            params.append(f"a{q}")
            args.append(f"a{q}")
            continue
        shape = [f"a{q}_{r}" for r in range(ndim)]
        params += [f"a{q}"] + shape
        args.append(f"carray(a{q}, ({', '.join(shape)},))")
    returns = dict((n, r) for n, _, r in INTERFACE)[name]
    if returns == "triple":  # (theta, k, i) written to the last array argument
        call = f"result = {name}({', '.join(args[:-1])})"
        body = f"    out = {args[-1]}\n    {call}\n"
        body += "    out[0] = result[0]\n    out[1] = result[1]\n    out[2] = result[2]\n"
        body += "    return 0.0\n"
    elif returns == "flag":
        body = f"    return 1.0 if {name}({', '.join(args)}) else 0.0\n"
    elif returns == "none":
        body = f"    {name}({', '.join(args)})\n    return 0.0\n"
    else:
        body = f"    return float({name}({', '.join(args)}))\n"
    return f"def _c_{name}({', '.join(params)}):\n{body}"


def table_source() -> str:
    """Source of the model module's callbacks (compiled on first use, cached)."""
    parts = ["from numba import carray as carray\n"]
    parts += [wrapper_source(name) for name, _, _ in INTERFACE]
    names = ", ".join(f"_c_{name}" for name, _, _ in INTERFACE)
    parts.append(f"CALLBACKS = ({names},)\n")
    return "\n\n".join(parts)


SWITCHING = ("switch_init", "switch_cross", "switch_locate")
"""The kink functions: compiled only for runs that treat kinks."""
NEWTON = ("newton_factor", "newton_solve")
"""The Jacobian-factor functions: compiled only for runs that use RODAS or BDF."""

_STUB_VALUES = {"loss": "math.nan", "value": "math.nan", "none": "None",
                "triple": "(2.0, -1, -1)", "count": "1", "flag": "False"}  # fmt: skip


def _skipped(switching: bool, newton: bool) -> tuple[str, ...]:
    return (() if switching else SWITCHING) + (() if newton else NEWTON)


def compiled(module, *, switching: bool = True, newton: bool = True) -> bool:
    """Whether this process holds every callback of ``module`` a run needs."""
    table = module.__dict__.get("_flowsim_table", {})
    skip = _skipped(switching, newton)
    return all(name in table for name, _, _ in INTERFACE if name not in skip)


def compile_table(module, *, switching: bool = True, newton: bool = True) -> list[int]:
    """Compile (or load from the cache) the callbacks of a model module that a run
    needs: their addresses in the order of :data:`INTERFACE`.

    Without ``switching`` (``newton``) the kink (Jacobian-factor) functions are
    not compiled: the core never calls them on such a run, and their place holds
    the address of an inert stand-in (NaN, no kink, no factor) shared by every
    model, so that nothing is ever called through a null address.
    """
    skip = _skipped(switching, newton)
    # Load Numba's threading layer first: a cached callback with parallel loops links to
    # its symbols (allocate_sched ...), and LLVM aborts the process if they are missing;
    # a dispatcher does this itself on its first call, a cfunc loaded from the cache not.
    numba.get_num_threads()
    table = module.__dict__.setdefault("_flowsim_table", {})
    for (name, _, _), fn in zip(INTERFACE, module.CALLBACKS, strict=True):
        if name not in skip and name not in table:
            table[name] = numba.cfunc(c_signature(name), **CFUNC_OPTIONS)(fn).address
    if not skip:
        return [table[name] for name, _, _ in INTERFACE]
    stubs = stub_table()
    return [table.get(name, stubs[q]) for q, (name, _, _) in enumerate(INTERFACE)]


EVENT_SIGNATURE = types.float64(
    types.float64, types.CPointer(types.float64), types.int64,
    types.CPointer(types.float64), types.int64, types.int64, types.float64,
)  # fmt: skip
"""A custom event's callback ``g(t, y, n_y, thresholds, n_thresholds, n_events, loss)``
(:mod:`flowsim.integrate.events`): the event fires where ``g`` crosses 0 upwards."""

CFUNC_OPTIONS = {"cache": True, "nogil": True, "fastmath": {"contract"}, "error_model": "numpy"}


def stub_source() -> str:
    """Inert stand-ins of every interface function, and their callbacks."""
    parts = []
    for name, kinds, returns in INTERFACE:
        arity = len(kinds.split()) - (1 if returns == "triple" else 0)  # (theta, k, i) buffer
        params = ", ".join(f"a{q}" for q in range(arity))
        parts.append(f"@jit\ndef {name}({params}):\n    return {_STUB_VALUES[returns]}\n")
    return "\n\n".join(parts + [table_source()])


@functools.cache
def stub_table() -> list[int]:
    """Addresses of the inert stand-ins, in the order of :data:`INTERFACE`."""
    from flowsim import _codegen

    return compile_table(_codegen.build_module("abi_stubs", [stub_source()], parallel=False))


def _llvm(context, typ):
    return context.get_value_type(typ)


@intrinsic
def call(typingctx, address, args):
    """``call(address, (a0, a1, ...))``: the callback at ``address`` on the flat
    arguments (C-contiguous arrays as pointer + shape); returns its float64."""
    for typ in args.types:
        if isinstance(typ, types.Array) and typ.layout != "C":
            raise numba.core.errors.TypingError(f"callback arguments must be C arrays: {typ}")

    def codegen(context, builder, signature, llargs):
        addr, tup = llargs
        flat_values, flat_types = [], []
        for q, typ in enumerate(args.types):
            value = builder.extract_value(tup, q)
            if isinstance(typ, types.Array):
                ary = context.make_array(typ)(context, builder, value)
                flat_values.append(ary.data)
                flat_types.append(ary.data.type)
                for extent in cgutils.unpack_tuple(builder, ary.shape, typ.ndim):
                    flat_values.append(extent)
                    flat_types.append(extent.type)
            else:
                cast = context.cast(builder, value, typ, _scalar_type(typ))
                flat_values.append(cast)
                flat_types.append(_llvm(context, _scalar_type(typ)))
        fnty = ir.FunctionType(ir.DoubleType(), flat_types)
        fn = builder.inttoptr(addr, fnty.as_pointer())
        return builder.call(fn, flat_values)

    return types.float64(types.int64, args), codegen


def _scalar_type(typ):
    if isinstance(typ, types.Float):
        return types.float64
    return types.int64


ACTIVATION_SIGNATURE = types.float64(
    types.CPointer(types.float64), types.int64, types.float64, types.int64,
    types.CPointer(types.float64), types.CPointer(types.float64), types.CPointer(types.float64),
)  # fmt: skip
"""``activate(z, n, scale, order, s, ds, d2s)``: for ``j < n`` and ``x = scale z[j]``,
``s[j] = sigma(x)``, and with ``order >= 1`` ``ds[j] = sigma'(x)``, with ``order = 2``
``d2s[j] = sigma''(x)``; the outputs an order leaves out are not touched (they may be
any array, ``s`` itself).  Returns 0."""


@intrinsic
def activate(typingctx, address, z, n, scale, order, s, ds, d2s):
    """``activate(address, z, n, scale, order, s, ds, d2s)``: the activation callback at
    ``address`` (:data:`ACTIVATION_SIGNATURE`) on the first ``n`` elements of the
    C-contiguous arrays ``z``, ``s``, ``ds``, ``d2s`` (any shape: their data in order)."""
    arrays = (z, s, ds, d2s)
    for typ in arrays:
        if not isinstance(typ, types.Array) or typ.layout != "C" or typ.dtype != types.float64:
            raise numba.core.errors.TypingError(f"activate takes C float64 arrays: {typ}")

    def codegen(context, builder, signature, llargs):
        addr, zv, nv, scv, orv, sv, dsv, d2sv = llargs
        ptr = [
            context.make_array(typ)(context, builder, value).data
            for typ, value in zip(arrays, (zv, sv, dsv, d2sv), strict=True)
        ]
        i64, f64 = ir.IntType(64), ir.DoubleType()
        fnty = ir.FunctionType(f64, [f64.as_pointer(), i64, f64, i64] + [f64.as_pointer()] * 3)
        fn = builder.inttoptr(addr, fnty.as_pointer())
        return builder.call(fn, [ptr[0], nv, scv, orv, ptr[1], ptr[2], ptr[3]])

    sig = types.float64(types.int64, z, types.int64, types.float64, types.int64, s, ds, d2s)
    return sig, codegen
