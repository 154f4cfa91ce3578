"""Workstream file models, the loader and validation, and JSON Schema export."""

from __future__ import annotations

from aidp.model.plan import Plan
from aidp.model.workstream import (
    Check,
    MergeSpec,
    MergeStrategy,
    RetryPolicy,
    Step,
    Workstream,
    WorkstreamFile,
)

__all__ = [
    "Check",
    "MergeSpec",
    "MergeStrategy",
    "Plan",
    "RetryPolicy",
    "Step",
    "Workstream",
    "WorkstreamFile",
]
