"""OpenSpec support: parse specs and changes, validate them as ``openspec`` does, index them,
resolve ``spec://`` references.

The public door; modules behind it may move.
"""

from __future__ import annotations

from aidp.specs.model import (
    Change,
    ChangeMetadata,
    DeltaOp,
    DeltaSpec,
    Position,
    Project,
    Proposal,
    Requirement,
    RequirementDelta,
    Scenario,
    Spec,
    Task,
)
from aidp.specs.project import find_root, load_project

__all__ = [
    "Change",
    "ChangeMetadata",
    "DeltaOp",
    "DeltaSpec",
    "Position",
    "Project",
    "Proposal",
    "Requirement",
    "RequirementDelta",
    "Scenario",
    "Spec",
    "Task",
    "find_root",
    "load_project",
]
