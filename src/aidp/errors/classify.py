"""What a set of findings means for the next move: the failure's class and how long to wait.

Pure functions, no I/O. The rule of :func:`classify`:

1. Only findings of severity ``error`` count; if there is none, the ``warning`` ones do (the
   best explanation there is); ``info`` never counts.
2. Among those: any **permanent** -> permanent (retrying unchanged cannot help, even if a
   transient error happened too: a test that fails will fail after the rate limit passes);
   else any **transient** -> transient; else (no findings, or only unknown ones) **unknown**.
"""

from __future__ import annotations

from collections.abc import Iterable

from aidp.errors.finding import FailureClass, Finding, Severity

__all__ = ["classify", "retry_after"]


def _counted(findings: Iterable[Finding]) -> list[Finding]:
    items = list(findings)
    errors = [f for f in items if f.severity is Severity.ERROR]
    return errors or [f for f in items if f.severity is Severity.WARNING]


def classify(findings: Iterable[Finding]) -> FailureClass:
    """The class of a failure from its findings (rule in the module docstring).

    Args:
        findings: what the detectors found for one attempt or check.

    Returns:
        PERMANENT, TRANSIENT or UNKNOWN.
    """
    classes = {f.failure_class for f in _counted(findings)}
    if FailureClass.PERMANENT in classes:
        return FailureClass.PERMANENT
    if FailureClass.TRANSIENT in classes:
        return FailureClass.TRANSIENT
    return FailureClass.UNKNOWN


def retry_after(findings: Iterable[Finding]) -> float | None:
    """The longest wait, in seconds, any finding asks for before a retry; None if none does.

    Negative or non-finite values are ignored (a provider's garbage must not stall a run).
    """
    waits = [f.retry_after for f in findings
             if f.retry_after is not None and 0 <= f.retry_after < float("inf")]
    return max(waits) if waits else None
