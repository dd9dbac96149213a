"""Side-by-side speed comparisons of flowsim with NumPy, SciPy and PyTorch (not tests).

Run ``python -m benchmarks [--quick] [--full] [--only ID ...] [--json FILE]``; see
``benchmarks/README.md`` for the workloads and the measured results.
"""

from benchmarks import (
    attention,
    dropout,
    kernels,
    relu_flow,
    relu_flow3,
    resources,
    theory,
    trajectories,
    workflows,
)

WORKLOADS = {
    w.id: w
    for module in (
        kernels,
        attention,
        dropout,
        trajectories,
        theory,
        workflows,
        resources,
        relu_flow,
        relu_flow3,
    )
    for w in module.WORKLOADS
}

__all__ = ["WORKLOADS"]
