"""The ``flowsim`` command.

flowsim validate [NAME ...] [--quick | --full] [--out DIR] [--json FILE]
                 [--store DIR] [--scheduler local|dask|tcp://HOST:PORT] [--workers N]
flowsim derive ACTIVATION [--json]
flowsim run CONFIG.toml [--out DIR] [--quiet] [--force]
flowsim sweep SWEEP.toml [--scheduler local|dask|tcp://HOST:PORT] [--workers N] [--store DIR]
              [--threads N] [--dry-run] [--retry-failed] [--quiet]
flowsim store ls|show|gc|verify DIR ...
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def _new_out_dir(base: Path | None) -> Path:
    """``base`` if given (refused when it holds a report), else a fresh numbered directory."""
    if base is not None:
        if (base / "report.md").exists():
            raise SystemExit(f"flowsim: {base}/report.md exists; choose another --out or remove it")
        return base
    root = Path.cwd() / "flowsim-results"
    k = 1
    while (root / f"validate-{k:03d}").exists():
        k += 1
    return root / f"validate-{k:03d}"


_CACHE_HELP = ("simulation cache, keyed by the numerics that made it (default: "
              "$FLOWSIM_CACHE_DIR/validation, else ~/.cache/flowsim/validation)")  # fmt: skip


def _cmd_validate(args) -> int:
    from flowsim.validation import CHECKS
    from flowsim.validation._runner import describe, provenances, run, table, write_report

    if args.list:
        rows = [(name, *describe(name)) for name in CHECKS]
        width = max(len(name) for name in CHECKS)
        sizes = max(len(", ".join(row[2])) for row in rows)
        for name, summary, size_names in rows:
            print(f"{name:<{width}}  {', '.join(size_names):<{sizes}}  {summary}")
        return 0
    names = args.names or list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        print(f"flowsim validate: unknown check(s) {', '.join(unknown)}; available: "
              f"{', '.join(CHECKS)} (flowsim validate --list)", file=sys.stderr)  # fmt: skip
        return 2
    out_dir = _new_out_dir(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = "full" if args.full else "quick"
    sweep = {"store": args.store, "scheduler": args.scheduler, "workers": args.workers}
    records, timings = run(names, size, out_dir, cache_dir=args.cache, refresh=args.refresh,
                           sweep=sweep)  # fmt: skip
    print(table(records))
    print("\nsimulation data: " + "; ".join(f"{k} {v}" for k, v in provenances(records).items()))
    report = write_report(records, timings, out_dir, size)
    print(f"\nreport: {report}")
    if args.json:
        Path(args.json).write_text(json.dumps({"checks": [r.to_json() for r in records]}, indent=2))
    return 0 if all(r.ok for r in records) else 1


def _cmd_figure(args) -> int:
    from flowsim.validation import CHECKS
    from flowsim.validation._runner import draw_figure

    if args.name not in CHECKS:
        print(f"flowsim figure: unknown figure {args.name!r}; available: {', '.join(CHECKS)}",
              file=sys.stderr)  # fmt: skip
        return 2
    out = args.out or Path.cwd() / "flowsim-results" / "figures"
    size = "full" if args.full else "quick"
    path, provenance = draw_figure(args.name, size, out, args.cache)
    print(f"simulation data: {provenance}", file=sys.stderr)
    print(path)
    return 0


def _cmd_derive(args) -> int:
    from flowsim.theory.describe import describe, format_text

    try:
        info = describe(args.activation)
    except ValueError as exc:
        print(f"flowsim derive: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=2) if args.json else format_text(info))
    return 0


def _cmd_theory_attention(args) -> int:
    import numpy as np

    import flowsim as fs
    from flowsim.data import gaussian_sequences
    from flowsim.integrate.simulate import escape
    from flowsim.theory.attention import stage1, stage2

    act = None if args.activation == "none" else args.activation
    try:
        if not (args.eps > 0 and args.delta > 0):
            raise ValueError(f"--eps and --delta must be > 0, got {args.eps:g}, {args.delta:g}")
        X, y = gaussian_sequences(args.n, args.s, args.d, seed=args.data_seed)
        net = fs.Attention(args.d, hidden=args.hidden, activation=act)
        p = net.unpack(net.init(args.seed, scale=args.eps))
        st1 = stage1(X, y, activation=act)
        outer = (p["WV"], p["W1"], p["W2"][:, 0])
        blow = st1.blowup(*outer)
        a1, a2 = st1.assumption1(*outer)
        run = st1.simulate(*outer, t_end=1.01 * blow.T_star, method="dop853", rtol=1e-12,
                           atol=1e-14 * args.eps, save_state="final", n_save=2, progress=False,
                           events=[escape(norm=args.delta)])  # fmt: skip
        if run.status != "event":
            raise ValueError(f"the leading order does not reach --delta {args.delta:g}")
        WV, W1, W2 = st1.unpack(run.theta_final, net.hidden)
        st2 = stage2(WV, W1, W2, X, y, activation=act)
        limits = st2.limits(p["WQ"], p["WK"]) if st2.simple else None
    except ValueError as exc:
        print(f"flowsim theory attention: {_one_line(exc)}", file=sys.stderr)
        return 2
    info = {
        "config": {"n": args.n, "s": args.s, "d": args.d, "hidden": net.hidden,
                   "activation": args.activation, "eps": args.eps, "seed": args.seed,
                   "data_seed": args.data_seed, "delta": args.delta},
        "stage1": {"S_norm": float(np.linalg.norm(st1.S)), "v": st1.v.tolist(), "c1": st1.c1,
                   "time_factor": st1.time_factor, "E0": blow.E0, "bound": blow.bound,
                   "T_star": blow.T_star, "t_star": blow.t_star, "assumption1": [a1, a2]},
        "stage2": {"at_t": run.t_final / st1.time_factor,
                   "singular_values": st2.singular_values.tolist(), "rate": st2.rate,
                   "simple": st2.simple, "p1": st2.P[:, 0].tolist(), "q1": st2.Q[:, 0].tolist(),
                   "WQ_limit_c": None if limits is None else limits["c"].tolist()},
    }  # fmt: skip
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    one, two = info["stage1"], info["stage2"]
    print(
        f"attention, Gaussian sequences n={args.n} s={args.s} d={args.d} h={net.hidden}, "
        f"{args.activation}, eps={args.eps:g} (init seed {args.seed}, data seed "
        f"{args.data_seed})"
    )
    print(
        f"stage 1: |S| = {one['S_norm']:.6g}, c1 = {one['c1']:.6g}, time factor "
        f"|c1||S|/(ns) = {one['time_factor']:.6g}"
    )
    print(
        f"  E(0) = {one['E0']:.6g}; blow-up T* = {one['T_star']:.6g} <= E(0)^(-1/3) = "
        f"{one['bound']:.6g} (rescaled), t* = {one['t_star']:.6g} (net time)"
    )
    print(f"  Assumption 1 at the start: |A1|/d = {a1:.3f}, |A2|/(d h) = {a2:.3f}")
    print(
        f"stage 2 (outer weights of the leading order when a column of WV reaches "
        f"{args.delta:g}, t = {two['at_t']:.6g}):"
    )
    print("  singular values of F: " + ", ".join(f"{v:.4g}" for v in st2.singular_values))
    print(
        f"  decay rate of sigma2/sigma1 of WQ, WK: s1 - s2 = {st2.rate:.6g}"
        + ("" if st2.simple else " (s1 not simple: no rank-one limit)")
    )
    return 0


def _cmd_warmup(args) -> int:
    from flowsim.activations import activation
    from flowsim.integrate.core import warmup

    try:
        for name in args.activation:
            activation(name)
    except ValueError as exc:
        print(f"flowsim warmup: {exc}", file=sys.stderr)
        return 2
    warmup(args.activation or ["tanh"], report=lambda what, s: print(f"{what}: {s:.1f} s"))
    return 0


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _run_summary(stem, cfg, traj, npz, meta) -> str:
    import textwrap

    parts = [
        f"{stem}: {traj.status} ({traj.message}).",
        f"Reached t = {traj.t_final:.6g} of t_end = {cfg.solver.t_end:g};",
        f"loss {traj.loss[0]:.4g} -> {traj.loss[-1]:.4g}." if traj.loss.size else "no save point.",
        f"{traj.nfev} gradient evaluations ({traj.n_accepted} steps accepted,",
        f"{traj.n_rejected} rejected) in {traj.wall_time:.3g} s.",
    ]
    if traj.events:
        fired = ", ".join(f"{e.name} at t = {e.t:.6g} (loss {e.loss:.4g})" for e in traj.events)
        parts.append(f"Events: {fired}.")
    elif cfg.events:
        parts.append("No event fired.")
    parts.append(f"Saved {npz} and {meta.name} (key {traj.config['run_key'][:12]}).")
    return textwrap.fill(" ".join(parts), width=100)


def _cmd_run(args) -> int:
    from flowsim.config import RunConfig, run_config

    def fail(message, code=2) -> int:
        print(f"flowsim run: {message}", file=sys.stderr)
        return code

    try:
        cfg = RunConfig.from_toml(args.config)
    except (ValueError, OSError) as exc:
        return fail(f"{args.config}: {_one_line(exc)}")
    # Trajectory.save replaces a suffix: keep dots out of the file stem
    stem = cfg.name or Path(args.config).stem.replace(".", "_")
    out_dir = args.out if args.out is not None else Path("flowsim-results")
    base = out_dir / stem
    existing = [p for p in (out_dir / f"{stem}.npz", out_dir / f"{stem}.json") if p.exists()]
    if existing and not args.force:
        names = " and ".join(str(p) for p in existing)
        verb = "exist" if len(existing) > 1 else "exists"
        return fail(f"{names} {verb}; use --force to overwrite or choose another --out", 1)
    try:  # before the simulation, not after it: a file in there, not only permissions
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        return fail(f"--out {out_dir}: cannot write there ({exc.strerror or exc})")
    try:
        traj = run_config(cfg, progress=False if args.quiet else None)
    except (ValueError, OSError) as exc:
        return fail(f"{args.config}: {_one_line(exc)}")
    try:
        npz, meta = traj.save(base)  # atomic: on failure the old pair (or none) is left
    except OSError as exc:
        return fail(f"cannot save {base}.npz and .json ({exc.strerror or exc}); nothing was "
                    "written, the result is lost", 1)  # fmt: skip
    if not args.quiet:
        print(_run_summary(stem, cfg, traj, npz, meta))
    return 0 if traj.status in ("done", "event") else 1


DEFAULT_STORE = Path("flowsim-results") / "store"


def _too_large_preview(sweep, name, first: int = 10) -> int:
    """``--dry-run`` of a sweep over MAX_RUNS: the count and the first runs, built lazily."""
    import itertools

    from flowsim.sweep import MAX_RUNS

    print(f"{name}: {len(sweep)} runs, more than the maximum {MAX_RUNS}: flowsim sweep would "
          f"refuse it (split the sweep); the first {first}:")  # fmt: skip
    for run in itertools.islice(sweep.iter_runs(), first):
        values = ", ".join(f"{k}={_cell(v)}" for k, v in run.point.items())
        print(f"  {run.index:5d}  {run.key[:12]}  {values}")
    return 2


def _cmd_sweep(args) -> int:
    from flowsim.store import Store, StoreError
    from flowsim.sweep import MAX_RUNS, Sweep, run_sweep

    def fail(message, code=2) -> int:
        print(f"flowsim sweep: {message}", file=sys.stderr)
        return code

    try:
        sweep = Sweep.from_toml(args.sweep)
        name = sweep.name or Path(args.sweep).stem
        if args.dry_run and len(sweep) > MAX_RUNS:
            return _too_large_preview(sweep, name)
        runs = sweep.runs()
    except (ValueError, OSError) as exc:
        return fail(f"{args.sweep}: {_one_line(exc)}")
    try:
        store = Store(args.store)
    except (StoreError, OSError) as exc:
        return fail(f"--store: {_one_line(exc)}")
    try:
        result = run_sweep(sweep, store, scheduler=args.scheduler, workers=args.workers,
                           threads=args.threads, retry_failed=args.retry_failed,
                           dry_run=args.dry_run, progress=not args.quiet)  # fmt: skip
    except ValueError as exc:
        return fail(_one_line(exc))
    except (RuntimeError, OSError) as exc:
        return fail(_one_line(exc), 1)
    except KeyboardInterrupt:
        n = sum(store.status(run.key) is not None for run in runs)
        return fail(f"interrupted; {n} of {len(runs)} runs are in {store.root} (the runs in "
                    "progress were dropped); the same command resumes", 130)  # fmt: skip
    if args.dry_run:
        n_dup = f", {result.duplicates} duplicate points" if result.duplicates else ""
        print(f"{name}: {len(runs)} runs, {result.total} distinct{n_dup}; {result.stored} in "
              f"{store.root}; {len(result.planned)} would run:")  # fmt: skip
        for run in result.planned:
            was = store.status(run.key)
            values = ", ".join(f"{k}={_cell(v)}" for k, v in run.point.items())
            print(f"  {run.index:5d}  {run.key[:12]}  {'retry' if was else 'new  '}  {values}")
        return 0
    if not args.quiet:
        print(f"{name}: {result.total} runs; {result.stored} were stored, {result.computed} "
              f"computed, {result.elsewhere} computed by another process; {result.ok} ok, "
              f"{result.failed} failed ({result.elapsed:.1f} s). Store: {store.root}")  # fmt: skip
        for key, reason, message in result.failures[:20]:
            print(f"  failed {key[:12]}  {reason}: {message}")
        if len(result.failures) > 20:
            print(f"  ... and {len(result.failures) - 20} more (flowsim store ls --failed)")
        if result.failed and not args.retry_failed:
            print("  (failures are not rerun; use --retry-failed)")
    return 0 if result.failed == 0 else 1


def _open_store(args):
    from flowsim.store import Store, StoreError

    try:
        return Store(args.dir, create=False)
    except (StoreError, OSError, ValueError) as exc:
        print(f"flowsim store: {_one_line(exc)}", file=sys.stderr)
        return None


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _store_warnings(prog: str):
    """A context in which a :class:`~flowsim.store.StoreWarning` (a bad result,
    skipped) is one line on stderr: ``prog: warning: PATH: what is wrong``."""
    import contextlib
    import warnings

    from flowsim.store import StoreWarning

    @contextlib.contextmanager
    def context():
        with warnings.catch_warnings():
            warnings.simplefilter("always", StoreWarning)
            show = warnings.showwarning

            def showwarning(message, category, *rest, **kwargs):
                if issubclass(category, StoreWarning):
                    print(f"{prog}: warning: {message}", file=sys.stderr)
                else:
                    show(message, category, *rest, **kwargs)

            warnings.showwarning = showwarning
            yield

    return context()


def _cmd_store_ls(args) -> int:
    store = _open_store(args)
    if store is None:
        return 2
    with _store_warnings("flowsim store ls"):
        rows = store.rows()
    if args.failed:
        rows = [r for r in rows if r["status"] == "failed"]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    running = store.running()
    n_failed = sum(r["status"] == "failed" for r in rows)
    print(f"{store.root}: {len(rows)} results ({len(rows) - n_failed} ok, {n_failed} failed)"
          + (f", {len(running)} running" if running else ""))  # fmt: skip
    if not rows:
        return 0
    # the config fields that differ between results, then a few numbers
    fields = sorted({k for r in rows for k in r if "." in k and not k.startswith("event.")})
    varying = [f for f in fields if len({repr(r.get(f)) for r in rows}) > 1]
    events = sorted({k for r in rows for k in r if k.startswith("event.") and k.endswith(".t")})
    columns = ["key", "status", "reason", *varying, "loss_final", *events, "wall_time"]
    table = [columns] + [
        [r["key"][:12] if c == "key" else _cell(r.get(c)) for c in columns] for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    for i, row in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def _cmd_store_show(args) -> int:
    from flowsim.store import StoreError

    store = _open_store(args)
    if store is None:
        return 2
    try:
        key = store.resolve(args.key)
    except StoreError as exc:
        print(f"flowsim store show: {_one_line(exc)}", file=sys.stderr)
        return 2
    try:
        print(json.dumps(store.record(key), indent=2, sort_keys=True))
    except StoreError:
        pass  # named by the check below
    print("files: " + ", ".join(str(p) for p in sorted(store.path(key).iterdir())))
    problem = store.check(key)
    if problem:
        print(f"flowsim store show: {problem}", file=sys.stderr)
        return 1
    return 0


def _cmd_store_verify(args) -> int:
    store = _open_store(args)
    if store is None:
        return 2
    results = store.verify(every=True)
    n_bad = n_unsummed = 0
    for key, problem in results.items():
        n_bad += problem is not None
        if problem:
            print(f"{key[:12]}  bad: {problem}")
            continue
        unsummed = "files" not in (store.record(key) or {})
        n_unsummed += unsummed
        if args.all:
            print(f"{key[:12]}  ok" + (" (no checksum: written before checksums; its "
                                       "trajectory loads)" if unsummed else ""))  # fmt: skip
    note = f"; {n_unsummed} without checksum (older records)" if n_unsummed else ""
    print(f"{store.root}: {len(results)} results, {n_bad} bad{note}", file=sys.stderr)
    return 1 if n_bad else 0


def _cmd_store_gc(args) -> int:
    import errno

    store = _open_store(args)
    if store is None:
        return 2
    try:
        with _store_warnings("flowsim store gc"):
            removed = store.gc(failed=args.failed, dry_run=args.dry_run)
    except OSError as exc:
        cannot = exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
        what = "cannot write to the store" if cannot else "failed"
        print(f"flowsim store gc: {what} {store.root}: {_one_line(exc)}", file=sys.stderr)
        return 1
    verb = "would remove" if args.dry_run else "removed"
    print(f"{store.root}: {verb} {len(removed)} entries")
    for path in removed:
        print(f"  {path.relative_to(store.root)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowsim",
        description="Gradient-flow simulation of small-initialization training, "
        "checked against condensation theory.",
    )
    from flowsim import __version__

    parser.add_argument("--version", action="version", version=f"flowsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    from flowsim.validation import CHECKS

    checks = ", ".join(CHECKS)
    p = sub.add_parser(
        "validate",
        help="run the validation suite (theory vs simulation)",
        description="Run the validation checks and write a report.  Each record's verdict is "
        "PASS, FAIL or FINDING (the theory as stated does not hold in the tested setting, "
        "documented in the check with its reason and numbers).  Exit status 0 when every "
        "record passed or is a documented finding whose numbers still reproduce, 1 otherwise, "
        "2 for an unknown check.",
    )
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"checks to run (default: all): {checks}")  # fmt: skip
    p.add_argument("--list", action="store_true",
                   help="list the checks (name, sizes, one-line description) and exit")  # fmt: skip
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes (default)")
    size.add_argument("--full", action="store_true",
                      help="paper sizes (slow: the phase diagram's sweeps alone take about "
                      "19 minutes on 2 idle cores; simulations are cached for the next "
                      "run)")  # fmt: skip
    p.add_argument("--out", type=Path, default=None,
                   help="output directory (default: ./flowsim-results/validate-NNN)")  # fmt: skip
    p.add_argument("--json", metavar="FILE", help="also write the records as JSON")
    p.add_argument("--refresh", action="store_true", help="re-simulate even if cached")
    p.add_argument("--cache", type=Path, default=None, help=_CACHE_HELP)
    p.add_argument("--store", type=Path, default=None, metavar="DIR",
                   help="result store of the checks whose full size is a sweep "
                   "(validation/sweeps/; default: ./flowsim-results/store)")  # fmt: skip
    p.add_argument("--scheduler", default="local", metavar="local|dask|tcp://HOST:PORT",
                   help="where those sweeps run (default: local process pool)")  # fmt: skip
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes of those sweeps (default: the CPU count)")  # fmt: skip
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("figure", help="draw one paper figure from cached simulation data")
    p.add_argument("name", help=f"the check whose figure to draw: {checks}")
    p.add_argument("--out", type=Path, default=None,
                   help="output directory (default: ./flowsim-results/figures)")  # fmt: skip
    p.add_argument("--full", action="store_true", help="use the full-size data")
    p.add_argument("--cache", type=Path, default=None, help=_CACHE_HELP)
    p.set_defaults(func=_cmd_figure)

    p = sub.add_parser("derive", help="leading-order theory of an activation")
    p.add_argument("activation", help="registered name (tanh, xtanh, relu, ...) or expression in x")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=_cmd_derive)

    p = sub.add_parser("theory", help="print a model's theory predictions")
    theory_sub = p.add_subparsers(dest="theory_command", required=True)
    q = theory_sub.add_parser(
        "attention",
        help="stage-1 and stage-2 predictions of [CL25] for one attention layer",
        description="Stage-1 (direction v, time factor, blow-up T* and its bound, Assumption "
        "1) and stage-2 (F, its singular values, the rate s1 - s2) predictions for an "
        "attention layer on Gaussian sequences (flowsim.data.gaussian_sequences), stage 2 "
        "from the leading order's outer weights when a column of WV reaches --delta.  Exit "
        "status 2 for bad input.",
    )
    q.add_argument("--n", type=int, default=100, help="sequences (default 100)")
    q.add_argument("--s", type=int, default=10, help="tokens per sequence (default 10)")
    q.add_argument("--d", type=int, default=8, help="token dimension (default 8)")
    q.add_argument("--hidden", type=int, default=None, help="hidden width h (default d)")
    q.add_argument("--activation", default="tanh", help="activation, or none (default tanh)")
    q.add_argument("--eps", type=float, default=1e-3, help="init scale (default 1e-3)")
    q.add_argument("--seed", type=int, default=0, help="init seed (default 0)")
    q.add_argument("--data-seed", type=int, default=0, help="data seed (default 0)")
    q.add_argument("--delta", type=float, default=0.1, help="end of stage 1 (default 0.1)")
    q.add_argument("--json", action="store_true", help="print a JSON object")
    q.set_defaults(func=_cmd_theory_attention)

    p = sub.add_parser(
        "warmup",
        help="compile the integrator core, the model kernels and activations ahead of time",
        description="Compile (or load from the cache) the integrator core, every method, "
        "the two- and three-layer kernels, serial and parallel, and each ACTIVATION's "
        "callback.  "
        "Run it once per machine or node image, before a sweep or a course; what is cached "
        "already takes well under a second.  Cache: $FLOWSIM_CACHE_DIR or ~/.cache/flowsim.",
    )
    p.add_argument("activation", nargs="*", help="names or expressions in x (default: tanh)")
    p.set_defaults(func=_cmd_warmup)

    p = sub.add_parser(
        "run",
        help="run one simulation from a TOML config",
        description="Run the simulation described by CONFIG.toml (schema: flowsim/config.py) "
        "and save DIR/NAME.npz and DIR/NAME.json (NAME: the config's name, else the file's "
        "stem).  Exit status 0 when the run reached t_end or a terminal event, 1 when it "
        "stopped early (non-finite state, step underflow, max_steps, max_wall, interrupt) or "
        "the result exists, 2 for a bad config.",
    )
    p.add_argument("config", type=Path, metavar="CONFIG.toml", help="run configuration")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="output directory (default: ./flowsim-results)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    p.add_argument("--force", action="store_true", help="overwrite an existing result")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "sweep",
        help="run many configs from a sweep file into a result store",
        description="Expand SWEEP.toml (a base run config, a [grid], [zip] lists and seeds; "
        "schema: flowsim/sweep.py) and run every config that the store lacks.  Exit status 0 "
        "when every run of the sweep is stored as ok, 1 when some failed (non-finite, "
        "max_wall, exception; kept as failures and not rerun without --retry-failed), 2 for "
        "a bad sweep file or option.",
    )
    p.add_argument("sweep", type=Path, metavar="SWEEP.toml", help="sweep file")
    p.add_argument("--scheduler", default="local", metavar="local|dask|tcp://HOST:PORT",
                   help="local: process pool (default); dask: a Dask LocalCluster; "
                   "tcp://HOST:PORT: a running Dask scheduler")  # fmt: skip
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes (local, dask; default: CPU count)")  # fmt: skip
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="Numba threads per worker (default 1)")  # fmt: skip
    p.add_argument("--store", type=Path, default=DEFAULT_STORE, metavar="DIR",
                   help=f"result store (default: ./{DEFAULT_STORE})")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="list what would run, run nothing")
    p.add_argument("--retry-failed", action="store_true", help="rerun stored failures")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("store", help="list, show or clean a result store")
    store_sub = p.add_subparsers(dest="store_command", required=True)
    q = store_sub.add_parser("ls", help="one line per result")
    q.add_argument("dir", type=Path, metavar="DIR", help="store directory")
    q.add_argument("--failed", action="store_true", help="only the failures")
    q.add_argument("--json", action="store_true", help="print the rows as JSON")
    q.set_defaults(func=_cmd_store_ls)
    q = store_sub.add_parser("show", help="the record of one result")
    q.add_argument("dir", type=Path, metavar="DIR", help="store directory")
    q.add_argument("key", metavar="KEY", help="key or unique prefix (4 to 64 hex digits)")
    q.set_defaults(func=_cmd_store_show)
    q = store_sub.add_parser(
        "verify",
        help="check every result against the checksums of its record",
        description="Check every result: its record readable, its config hashing to its key, "
        "each file of the result with the size and SHA-256 its record gives (records "
        "written before checksums: the trajectory must load).  Prints one line per bad "
        "result; exit status 0 when all are sound, 1 otherwise.  A sweep recomputes a "
        "bad result.",
    )
    q.add_argument("dir", type=Path, metavar="DIR", help="store directory")
    q.add_argument("--all", action="store_true", help="a line for every result, sound or not")
    q.set_defaults(func=_cmd_store_verify)
    q = store_sub.add_parser(
        "gc",
        help="remove leftovers of killed writers (and failures with --failed)",
        description="Remove temporary directories that no live process is writing, result "
        "directories without result.json, and with --failed the failure records (so that "
        "the next sweep reruns them); rebuild manifest.json.",
    )
    q.add_argument("dir", type=Path, metavar="DIR", help="store directory")
    q.add_argument("--failed", action="store_true", help="also remove failure records")
    q.add_argument("--dry-run", action="store_true", help="list, remove nothing")
    q.set_defaults(func=_cmd_store_gc)
    return parser


def _show_notices() -> None:
    """Print flowsim's notices (a first compile of kernels, ...) on stderr, once."""
    import logging

    logger = logging.getLogger("flowsim")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("flowsim: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _show_notices()
    try:
        status = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader left (flowsim store ls | head): no traceback, and no second error
        # when Python flushes stdout at exit (the recipe of the `signal` module's docs)
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        # commands that save (run, sweep) say what they kept; anywhere else nothing was
        # written yet: a line, the conventional status, no traceback
        print(f"flowsim {args.command}: interrupted", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
