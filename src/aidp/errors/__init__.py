"""The error engine: findings, detectors (pluggy hookspecs, built-ins, entry points), and the
classification of a failure as transient, permanent or unknown.

Importing this package is cheap: the detector machinery (pluggy, the built-in detectors) is
imported on first use of :data:`hookimpl`, :class:`DetectorManager` or :func:`default_manager`.

Third-party detectors::

    from aidp.errors import AttemptEvidence, FailureClass, Finding, hookimpl

    @hookimpl
    def aidp_detect_attempt(evidence: AttemptEvidence) -> list[Finding]: ...

declared under the entry-point group ``aidp.detectors`` (:data:`ENTRY_POINT_GROUP`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aidp.errors.classify import classify, retry_after
from aidp.errors.finding import (
    AttemptEvidence,
    CheckEvidence,
    FailureClass,
    Finding,
    Severity,
    fingerprint_of,
)

if TYPE_CHECKING:
    from aidp.errors.hookspecs import hookimpl
    from aidp.errors.manager import (
        ENTRY_POINT_GROUP,
        Detection,
        DetectorFailure,
        DetectorManager,
        default_manager,
    )

__all__ = [
    "ENTRY_POINT_GROUP",
    "AttemptEvidence",
    "CheckEvidence",
    "Detection",
    "DetectorFailure",
    "DetectorManager",
    "FailureClass",
    "Finding",
    "Severity",
    "classify",
    "default_manager",
    "fingerprint_of",
    "hookimpl",
    "retry_after",
]

_LAZY = {
    "hookimpl": "aidp.errors.hookspecs",
    "ENTRY_POINT_GROUP": "aidp.errors.manager",
    "Detection": "aidp.errors.manager",
    "DetectorFailure": "aidp.errors.manager",
    "DetectorManager": "aidp.errors.manager",
    "default_manager": "aidp.errors.manager",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
