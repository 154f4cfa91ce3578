"""Detector manager (placeholder until the detectors land): finds nothing."""

from __future__ import annotations

from dataclasses import dataclass

from aidp.errors.finding import AttemptEvidence, CheckEvidence, Finding

__all__ = ["Detection", "DetectorFailure", "DetectorManager", "default_manager"]


@dataclass(frozen=True)
class DetectorFailure:
    detector: str
    message: str


@dataclass(frozen=True)
class Detection:
    findings: tuple[Finding, ...] = ()
    failures: tuple[DetectorFailure, ...] = ()


class DetectorManager:
    def detect_attempt(self, evidence: AttemptEvidence) -> Detection:
        return Detection()

    def detect_check(self, evidence: CheckEvidence) -> Detection:
        return Detection()


def default_manager() -> DetectorManager:
    return DetectorManager()
