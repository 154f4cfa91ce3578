"""Workstream file models, the loader and validation, and JSON Schema export."""

from __future__ import annotations

from aidp.model.loader import load_plan, parse_file
from aidp.model.plan import Plan
from aidp.model.refname import check_ref_name, is_valid_branch_name
from aidp.model.schema import workstream_schema
from aidp.model.scope import ScopeMatcher, compile_scope, globs_overlap
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
    "ScopeMatcher",
    "Step",
    "Workstream",
    "WorkstreamFile",
    "check_ref_name",
    "compile_scope",
    "globs_overlap",
    "is_valid_branch_name",
    "load_plan",
    "parse_file",
    "workstream_schema",
]
