"""The error engine: findings, detectors (pluggy hookspecs, built-ins, entry points), and the
classification of a failure as transient, permanent or unknown."""

from __future__ import annotations

from aidp.errors.finding import AttemptEvidence, CheckEvidence, FailureClass, Finding, Severity

__all__ = ["AttemptEvidence", "CheckEvidence", "FailureClass", "Finding", "Severity"]
