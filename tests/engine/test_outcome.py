"""decide_outcome precedence and next_step_state."""

from __future__ import annotations

from typing import Any

import pytest

from aidp.core.states import AttemptOutcome, StepState
from aidp.engine.outcome import CheckResult, ToolResult, decide_outcome, next_step_state

O = AttemptOutcome
OK = ToolResult(0)
BAD_CHECK = CheckResult("lint", 1)

# Each case: (tool result, keyword arguments, expected outcome, a fragment of the reason).
# Every case also carries every lower-precedence failure, so the first rule must win.
PRECEDENCE: list[Any] = [
    pytest.param(ToolResult(1, signal=9, timed_out=True, cancelled=True, error="boom"),
                 {"outside_scope": ["x"], "requires_change": True, "checks": [BAD_CHECK]},
                 O.CANCELLED, "cancelled", id="cancelled-beats-all"),
    pytest.param(ToolResult(None, signal=9, timed_out=True, error="no such binary"),
                 {"outside_scope": ["x"], "requires_change": True, "checks": [BAD_CHECK]},
                 O.FAILED_PERMANENT, "no such binary", id="tool-error-beats-timeout"),
    pytest.param(ToolResult(1, signal=9, timed_out=True),
                 {"outside_scope": ["x"], "requires_change": True, "checks": [BAD_CHECK]},
                 O.TIMED_OUT, "timeout", id="timeout-beats-signal"),
    pytest.param(ToolResult(None, signal=11),
                 {"outside_scope": ["x"], "requires_change": True, "checks": [BAD_CHECK]},
                 O.CRASHED, "signal 11", id="signal-beats-exit"),
    pytest.param(ToolResult(3),
                 {"outside_scope": ["x"], "requires_change": True, "checks": [BAD_CHECK]},
                 O.FAILED_TRANSIENT, "code 3", id="exit-beats-scope"),
    pytest.param(OK, {"outside_scope": ["secret.txt"], "requires_change": True,
                      "checks": [BAD_CHECK]},
                 O.FAILED_PERMANENT, "secret.txt", id="scope-beats-no-change"),
    pytest.param(OK, {"requires_change": True, "checks": [BAD_CHECK]},
                 O.NO_CHANGE, "requires a change", id="no-change-beats-checks"),
    pytest.param(OK, {"changed": ["a"], "requires_change": True, "checks": [BAD_CHECK]},
                 O.FAILED_PERMANENT, "'lint' failed with exit code 1", id="failing-check"),
    pytest.param(OK, {"checks": [CheckResult("c", None, error="not found")]},
                 O.FAILED_PERMANENT, "'c': not found", id="check-error"),
    pytest.param(OK, {"checks": [CheckResult("c", None, timed_out=True)]},
                 O.TIMED_OUT, "'c' exceeded", id="check-timeout"),
    pytest.param(OK, {"checks": [CheckResult("c", None, signal=9)]},
                 O.FAILED_PERMANENT, "signal 9", id="check-signal"),
    pytest.param(OK, {"checks": [CheckResult("c", None, cancelled=True)]},
                 O.CANCELLED, "cancelled", id="check-cancelled"),
    pytest.param(OK, {"checks": [CheckResult("first", 0), CheckResult("second", 2),
                                 CheckResult("third", None, timed_out=True)]},
                 O.FAILED_PERMANENT, "'second'", id="checks-in-order"),
    pytest.param(OK, {"checks": [CheckResult("first", None, timed_out=True),
                                 CheckResult("second", 2)]},
                 O.TIMED_OUT, "'first'", id="first-failing-check-wins"),
]


@pytest.mark.parametrize(("tool", "kwargs", "outcome", "reason"), PRECEDENCE)
def test_decide_outcome_precedence(tool: ToolResult, kwargs: dict[str, Any],
                                   outcome: AttemptOutcome, reason: str) -> None:
    """The first failing rule in precedence order decides the outcome and its reason."""
    got, why = decide_outcome(tool, **kwargs)
    assert got is outcome
    assert why is not None and reason in why


@pytest.mark.parametrize("kwargs", [
    pytest.param({}, id="nothing"),
    pytest.param({"changed": ["a"], "requires_change": True}, id="required-change-made"),
    pytest.param({"checks": [CheckResult("a", 0), CheckResult("b", 0)]}, id="checks-pass"),
    pytest.param({"changed": [], "requires_change": False}, id="no-change-not-required"),
])
def test_success_has_no_reason(kwargs: dict[str, Any]) -> None:
    """Exit 0, changes in scope, required change made and checks passing: succeeded, no reason."""
    assert decide_outcome(OK, **kwargs) == (O.SUCCEEDED, None)


def test_outside_scope_reason_is_shortened() -> None:
    """More than five files outside the scope: the first five are named, then '...'."""
    files = [f"f{i}" for i in range(8)]
    _, reason = decide_outcome(OK, outside_scope=files, changed=files)
    assert reason is not None
    assert "f0, f1, f2, f3, f4 ..." in reason and "f5" not in reason


def test_exit_code_none_without_error_is_a_failure() -> None:
    """A tool without exit code, signal or error never counts as success."""
    outcome, _ = decide_outcome(ToolResult(None))
    assert outcome is O.FAILED_TRANSIENT


@pytest.mark.parametrize(("outcome", "retry", "state"), [
    (O.SUCCEEDED, False, StepState.COMPLETED),
    (O.SUCCEEDED, True, StepState.COMPLETED),
    (O.CANCELLED, False, StepState.CANCELLED),
    (O.CANCELLED, True, StepState.CANCELLED),
    (O.TIMED_OUT, False, StepState.TIMEOUT),
    (O.TIMED_OUT, True, StepState.RETRYING),
    (O.FAILED_TRANSIENT, False, StepState.FAILED),
    (O.FAILED_TRANSIENT, True, StepState.RETRYING),
    (O.FAILED_PERMANENT, False, StepState.FAILED),
    (O.CRASHED, False, StepState.FAILED),
    (O.CRASHED, True, StepState.RETRYING),
    (O.NO_CHANGE, False, StepState.FAILED),
], ids=lambda v: v.value if hasattr(v, "value") else f"retry={v}")
def test_next_step_state(outcome: AttemptOutcome, retry: bool, state: StepState) -> None:
    """Success completes, cancel cancels, a retry waits, a last timeout is timeout, else failed."""
    assert next_step_state(outcome, retry) is state
