"""Deciding an attempt's outcome: a pure function of what git, the process and the checks said.

The exit code alone never decides: a step succeeds only if the tool exited 0, every change lies
inside the workstream's scope, a change was made when one is required, and every acceptance
check exited 0. Pure: it reads results and returns an outcome; it runs and writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aidp.core.states import AttemptOutcome, StepState

__all__ = ["CheckResult", "ToolResult", "decide_outcome", "next_step_state"]


@dataclass(frozen=True)
class ToolResult:
    """What the tool's process did (``error``: it could not be started at all)."""

    exit_code: int | None
    signal: int | None = None
    timed_out: bool = False
    cancelled: bool = False
    error: str | None = None


@dataclass(frozen=True)
class CheckResult:
    name: str
    exit_code: int | None
    signal: int | None = None
    timed_out: bool = False
    cancelled: bool = False
    error: str | None = None


def decide_outcome(
    tool: ToolResult,
    *,
    outside_scope: Sequence[str] = (),
    changed: Sequence[str] = (),
    requires_change: bool = False,
    checks: Sequence[CheckResult] = (),
) -> tuple[AttemptOutcome, str | None]:
    """The outcome of one attempt and a one-line reason (None on success)."""
    if tool.cancelled:
        return AttemptOutcome.CANCELLED, "cancelled"
    if tool.error is not None:
        return AttemptOutcome.FAILED_PERMANENT, tool.error
    if tool.timed_out:
        return AttemptOutcome.TIMED_OUT, "the tool exceeded its timeout and was killed"
    if tool.signal is not None:
        return AttemptOutcome.CRASHED, f"the tool was killed by signal {tool.signal}"
    if tool.exit_code != 0:
        return AttemptOutcome.FAILED_TRANSIENT, f"the tool exited with code {tool.exit_code}"
    if outside_scope:
        shown = ", ".join(outside_scope[:5]) + (" ..." if len(outside_scope) > 5 else "")
        return AttemptOutcome.FAILED_PERMANENT, f"changed files outside the scope: {shown}"
    if requires_change and not changed:
        return AttemptOutcome.NO_CHANGE, "the step changed no file but requires a change"
    for check in checks:
        if check.cancelled:
            return AttemptOutcome.CANCELLED, "cancelled"
        if check.error is not None:
            return AttemptOutcome.FAILED_PERMANENT, f"check {check.name!r}: {check.error}"
        if check.timed_out:
            return AttemptOutcome.TIMED_OUT, f"check {check.name!r} exceeded its timeout"
        if check.signal is not None:
            return AttemptOutcome.FAILED_PERMANENT, (
                f"check {check.name!r} was killed by signal {check.signal}"
            )
        if check.exit_code != 0:
            return AttemptOutcome.FAILED_PERMANENT, (
                f"check {check.name!r} failed with exit code {check.exit_code}"
            )
    return AttemptOutcome.SUCCEEDED, None


def next_step_state(outcome: AttemptOutcome, retry: bool) -> StepState:
    """The step's state after an attempt ended with ``outcome``."""
    if outcome is AttemptOutcome.SUCCEEDED:
        return StepState.COMPLETED
    if outcome is AttemptOutcome.CANCELLED:
        return StepState.CANCELLED
    if retry:
        return StepState.RETRYING
    return StepState.TIMEOUT if outcome is AttemptOutcome.TIMED_OUT else StepState.FAILED
