"""Classification of a failure from its findings (placeholder until the detectors land)."""

from __future__ import annotations

from collections.abc import Sequence

from aidp.errors.finding import FailureClass, Finding

__all__ = ["classify"]


def classify(findings: Sequence[Finding]) -> FailureClass:
    classes = {f.failure_class for f in findings}
    for cls in (FailureClass.PERMANENT, FailureClass.TRANSIENT):
        if cls in classes:
            return cls
    return FailureClass.UNKNOWN
