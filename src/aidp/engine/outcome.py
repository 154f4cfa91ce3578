"""Deciding an attempt's outcome: a pure function of what git, the process, the detectors and
the checks said.

The exit code alone never decides: a step succeeds only if the tool exited 0, its output holds
no error finding that blocks (:func:`blocking_findings`: Aider exits 0 after a failed edit or
a provider error), every change lies inside the workstream's scope, a change was made when one
is required -- always for a model tool (:data:`MODEL_ADAPTERS`) -- and every acceptance check
exited 0. A failure's reason names the finding that decided it (:func:`deciding_finding`).
Pure: it reads results and returns an outcome; it runs and writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aidp.core.states import AttemptOutcome, FailureClass, StepState
from aidp.errors.finding import Finding, Severity

__all__ = [
    "FIXABLE_CODES",
    "MODEL_ADAPTERS",
    "REFUSED_CODES",
    "CheckResult",
    "ToolResult",
    "blocking_findings",
    "decide_outcome",
    "deciding_finding",
    "next_step_state",
    "provider_refused",
]

#: Adapters whose tool is a model: an attempt that changed nothing did not do its job (a shell
#: step that changes nothing may be fine).
MODEL_ADAPTERS = frozenset({"aider", "codex", "openai"})
#: Finding codes of a tool's output the tool can act on when told (the fix loop): its edits
#: that did not apply.
FIXABLE_CODES = frozenset({"search-replace-no-match", "search-replace-failed", "edit-format",
                           "reflections-exhausted"})
#: Finding codes (adapters' and detectors') for a provider that refused the call: bad
#: credentials, no permission, an unknown model, no quota. Permanent for the step, and a failure
#: of the endpoint for its breaker.
REFUSED_CODES = frozenset({
    "auth", "quota", "not-found",  # the openai adapter's
    "authentication", "permission_denied", "model_not_found", "insufficient_quota",  # detectors'
})


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


def blocking_findings(findings: Sequence[Finding], *, changed: bool) -> list[Finding]:
    """The findings of a tool's output that fail an attempt even if the tool exited 0.

    Errors only (warnings and info never fail an attempt): a permanent one always (an edit
    not applied, a refused call, the reflection limit); a transient or unknown one only when
    the tool changed nothing (Aider retries a rate limit itself: a 429 followed by an applied
    edit is a success)."""
    return [f for f in findings if f.severity is Severity.ERROR and (
        f.failure_class is FailureClass.PERMANENT or not changed)]


def deciding_finding(findings: Sequence[Finding]) -> Finding | None:
    """The finding that explains a failed tool: the first error of the class that decides
    (permanent before transient before unknown), else the first warning; None if none."""
    for severity in (Severity.ERROR, Severity.WARNING):
        ranked = [f for f in findings if f.severity is severity]
        for cls in (FailureClass.PERMANENT, FailureClass.TRANSIENT, FailureClass.UNKNOWN):
            for finding in ranked:
                if finding.failure_class is cls:
                    return finding
    return None


def provider_refused(findings: Sequence[Finding]) -> bool:
    """Whether an error finding says the provider refused the call (:data:`REFUSED_CODES`)."""
    return any(f.severity is Severity.ERROR and f.code in REFUSED_CODES for f in findings)


def _failed_by(finding: Finding, why: str) -> tuple[AttemptOutcome, str]:
    outcome = (AttemptOutcome.FAILED_PERMANENT if finding.failure_class is FailureClass.PERMANENT
               else AttemptOutcome.FAILED_TRANSIENT)
    return outcome, f"{finding.message} ({why})"


def decide_outcome(
    tool: ToolResult,
    *,
    outside_scope: Sequence[str] = (),
    changed: Sequence[str] = (),
    requires_change: bool = False,
    checks: Sequence[CheckResult] = (),
    tool_findings: Sequence[Finding] = (),
    model_tool: bool = False,
) -> tuple[AttemptOutcome, str | None]:
    """The outcome of one attempt and a one-line reason (None on success).

    ``tool_findings``: the adapter's and the detectors' findings on the tool's output;
    ``model_tool``: the tool is a model (:data:`MODEL_ADAPTERS`), so it must change something.
    """
    if tool.cancelled:
        return AttemptOutcome.CANCELLED, "cancelled"
    if tool.error is not None:
        return AttemptOutcome.FAILED_PERMANENT, tool.error
    if tool.timed_out:
        return AttemptOutcome.TIMED_OUT, "the tool exceeded its timeout and was killed"
    if tool.signal is not None:
        return AttemptOutcome.CRASHED, f"the tool was killed by signal {tool.signal}"
    if tool.exit_code != 0:
        deciding = deciding_finding(tool_findings)
        why = f"the tool exited with code {tool.exit_code}"
        if deciding is not None:
            return _failed_by(deciding, why)
        return AttemptOutcome.FAILED_TRANSIENT, why
    blocking = blocking_findings(tool_findings, changed=bool(changed))
    if blocking:
        deciding = deciding_finding(blocking)
        assert deciding is not None
        return _failed_by(deciding, "the tool exited 0")
    if outside_scope:
        shown = ", ".join(outside_scope[:5]) + (" ..." if len(outside_scope) > 5 else "")
        return AttemptOutcome.FAILED_PERMANENT, f"changed files outside the scope: {shown}"
    if requires_change and not changed:
        return AttemptOutcome.NO_CHANGE, "the step changed no file but requires a change"
    if model_tool and not changed:
        return AttemptOutcome.NO_CHANGE, "the model changed no file"
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
