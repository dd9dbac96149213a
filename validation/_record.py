"""One verdict of the validation suite: a theory prediction next to its measurement."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class Finding:
    """A documented finding: the theory as stated does not hold in the tested setting.

    Declared in the check module for one record (:func:`attach_findings`), with the
    ``reason`` (what fails and why, with the numbers) and the measured value the
    reason documents: ``expected``, a number matched within ``atol`` or a string matched
    exactly.  A failing record with a finding is a FINDING, not a FAIL, only while its
    measurement still :meth:`reproduces` the documented value.
    """

    reason: str
    expected: float | str
    atol: float = 0.0

    def reproduces(self, measured) -> bool:
        """Whether ``measured`` is the documented value (``|measured - expected| <= atol``)."""
        if isinstance(self.expected, str) or isinstance(measured, str):
            return measured == self.expected
        value = float(measured)
        return math.isfinite(value) and abs(value - float(self.expected)) <= self.atol


@dataclass(frozen=True)
class Record:
    """A checked prediction.

    ``theory`` and ``measured`` are numbers (or short strings for categorical
    predictions such as a regime); ``tolerance`` says how they are compared;
    ``passed`` is the comparison with the theory; ``provenance`` says where the simulation
    data came from (``"from cache PATH"`` or ``"simulated, cached in PATH"``, set by the
    runner); ``finding``: a documented :class:`Finding` for this record, or None.
    The suite's outcome is :attr:`verdict`.
    """

    name: str
    claim: str
    source: str
    theory: float | str
    measured: float | str
    tolerance: str
    passed: bool
    config: dict = field(default_factory=dict)
    figure: str | None = None
    note: str = ""
    provenance: str = ""

    finding: Finding | None = None

    @property
    def verdict(self) -> str:
        """``"PASS"`` (agrees with the theory), ``"FINDING"`` (disagrees as the record's
        documented finding says, with its number reproduced) or ``"FAIL"``."""
        if self.passed:
            return "PASS"
        if self.finding is not None and self.finding.reproduces(self.measured):
            return "FINDING"
        return "FAIL"

    @property
    def ok(self) -> bool:
        """The verdict counts as a success (PASS or FINDING) for the suite's exit status."""
        return self.verdict != "FAIL"

    def to_json(self) -> dict:
        out = asdict(self)
        out["verdict"] = self.verdict
        for key in ("theory", "measured"):
            value = out[key]
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = str(value)
        return out


def relative_check(name, claim, source, theory, measured, rtol, config, figure=None, note=""):
    """Record for ``|measured - theory| <= rtol * |theory|``."""
    theory, measured = float(theory), float(measured)
    ok = math.isfinite(measured) and abs(measured - theory) <= rtol * abs(theory)
    return Record(name, claim, source, theory, measured, f"relative {rtol:g}", bool(ok), config,
                  figure, note)  # fmt: skip


def bound_check(name, claim, source, bound, measured, config, figure=None, note=""):
    """Record for ``measured <= bound`` (e.g. an error that must stay small)."""
    measured = float(measured)
    ok = math.isfinite(measured) and measured <= bound
    return Record(name, claim, source, 0.0, measured, f"<= {bound:g}", bool(ok), config, figure,
                  note)  # fmt: skip


def attach_findings(records, findings: dict) -> list:
    """``records`` with ``findings[name]`` (a :class:`Finding`) attached by record name
    (a finding whose record a size does not produce is not used)."""
    return [replace(r, finding=findings[r.name]) if r.name in findings else r for r in records]
