"""Small dense inverses for the Jacobian factors (template; see :mod:`flowsim._codegen`).

Shared by the families whose ``newton_factor`` reduces the flow's Jacobian to small
dense matrices (Woodbury): :mod:`flowsim.models._two_layer_kernels` and
:mod:`flowsim.models._three_layer_factor`.
"""

import math

from flowsim._jit import jit

# --- template body ---


@jit
def _invert_small(Mat, work):
    """Invert the square ``Mat`` (q x q) in place (Gauss-Jordan, partial pivoting);
    ``work`` holds at least 2 q entries.

    Returns False when a pivot is zero or not finite."""
    q = Mat.shape[0]
    pivots = work[:q]
    prow = work[q : 2 * q]
    for col in range(q):
        piv = col
        best = abs(Mat[col, col])
        for r in range(col + 1, q):
            if abs(Mat[r, col]) > best:
                best = abs(Mat[r, col])
                piv = r
        if not (best > 0.0) or not math.isfinite(best):
            return False
        pivots[col] = piv
        if piv != col:
            for j in range(q):
                tmp = Mat[col, j]
                Mat[col, j] = Mat[piv, j]
                Mat[piv, j] = tmp
        inv = 1.0 / Mat[col, col]
        Mat[col, col] = 1.0
        for j in range(q):
            Mat[col, j] *= inv
            prow[j] = Mat[col, j]
        for r in range(q):
            if r != col:
                # a copy of the pivot row: no aliasing with the updated row, so
                # the loop vectorizes without run-time checks (22 -> 14 us at q = 40)
                f = Mat[r, col]
                Mat[r, col] = 0.0
                for j in range(q):
                    Mat[r, j] -= f * prow[j]
    # the row swaps of the elimination become column swaps of the inverse, in reverse
    for col in range(q - 1, -1, -1):
        piv = int(pivots[col])
        if piv != col:
            for r in range(q):
                tmp = Mat[r, col]
                Mat[r, col] = Mat[r, piv]
                Mat[r, piv] = tmp
    return True
