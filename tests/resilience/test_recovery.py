"""The recovery decision after a failed attempt: pure, with an injected draw and no clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aidp.core.states import AttemptOutcome, FailureClass
from aidp.model.workstream import FixPolicy, RetryPolicy
from aidp.resilience.recovery import Action, History, decide, failure_class

O = AttemptOutcome


def mid() -> float:
    return 0.5


def retry(**kw: object) -> RetryPolicy:
    return RetryPolicy.model_validate(kw)


def fix(**kw: object) -> FixPolicy:
    return FixPolicy.model_validate(kw)


def run(hist: History, failure: FailureClass | None, *, r: RetryPolicy | None = None,
        f: FixPolicy | None = None, now: float = 100.0,
        outcome: AttemptOutcome = O.FAILED_TRANSIENT, **kw: object):
    return decide(r or retry(max_attempts=5, initial_delay=1), f or fix(), hist,
                  outcome=outcome, failure=failure, started_at=now - 1, now=now,
                  draw=mid, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("outcome", "detected", "kind"), [
    (O.SUCCEEDED, None, None),
    (O.CANCELLED, None, None),
    (O.CRASHED, "transient", None),
    (O.TIMED_OUT, None, FailureClass.TRANSIENT),
    (O.NO_CHANGE, None, FailureClass.PERMANENT),
    (O.FAILED_PERMANENT, None, FailureClass.PERMANENT),
    (O.FAILED_PERMANENT, "transient", FailureClass.TRANSIENT),
    (O.FAILED_TRANSIENT, None, FailureClass.UNKNOWN),
    (O.FAILED_TRANSIENT, "unknown", FailureClass.UNKNOWN),
    (O.FAILED_TRANSIENT, "transient", FailureClass.TRANSIENT),
    (O.FAILED_TRANSIENT, "permanent", FailureClass.PERMANENT),
], ids=lambda v: getattr(v, "value", str(v)))
def test_failure_class(outcome: AttemptOutcome, detected: str | None,
                       kind: FailureClass | None) -> None:
    """The outcome decides timeouts (a crash is an outcome with no class); the detectors
    refine a tool's failure."""
    assert failure_class(outcome, FailureClass(detected) if detected else None) is kind


def test_transient_retries_until_max_attempts() -> None:
    """Transient failures retry with backoff until max_attempts attempts have failed."""
    hist = History()
    delays = []
    for _ in range(4):
        verdict, hist = run(hist, FailureClass.TRANSIENT)
        assert verdict.action is Action.RETRY
        delays.append(verdict.delay_s)
    verdict, hist = run(hist, FailureClass.TRANSIENT)
    assert verdict.action is Action.FAIL and "5 attempts" in (verdict.reason or "")
    assert delays == [1.0, 2.0, 4.0, 8.0]


def test_retry_after_is_a_floor_on_the_delay() -> None:
    """A provider's Retry-After longer than the backoff is honoured."""
    verdict, _ = run(History(), FailureClass.TRANSIENT, retry_after_s=7.5)
    assert verdict.action is Action.RETRY and verdict.delay_s == 7.5


def test_budget_stops_retries() -> None:
    """No retry is scheduled past first attempt + budget."""
    r = retry(max_attempts=10, initial_delay=5, budget=8)
    hist = History(first_started_at=90.0)
    verdict, _ = run(hist, FailureClass.TRANSIENT, r=r, now=95.0)
    assert verdict.action is Action.FAIL and "budget" in (verdict.reason or "")
    verdict, _ = run(hist, FailureClass.TRANSIENT, r=r, now=92.0)
    assert verdict.action is Action.RETRY


def test_unknown_has_its_own_cap() -> None:
    """Unknown failures stop at max_unknown even when max_attempts allows more."""
    r = retry(max_attempts=10, max_unknown=2, initial_delay=0)
    verdict, hist = run(History(), FailureClass.UNKNOWN, r=r)
    assert verdict.action is Action.RETRY
    verdict, hist = run(hist, FailureClass.UNKNOWN, r=r)
    assert verdict.action is Action.FAIL and "unknown" in (verdict.reason or "")


def test_classes_not_in_retry_on_fail_at_once() -> None:
    """retry_on: [transient] leaves unknown failures unretried."""
    only_transient = retry(max_attempts=5, retry_on=["transient"])
    verdict, _ = run(History(), FailureClass.UNKNOWN, r=only_transient)
    assert verdict.action is Action.FAIL


def test_crashes_are_counted_apart_and_capped() -> None:
    """Crashes do not use max_attempts; the crash cap ends a poison step."""
    r = retry(max_attempts=1, max_crashes=3, initial_delay=0)
    hist = History()
    actions = []
    for _ in range(3):
        verdict, hist = run(hist, None, r=r, outcome=O.CRASHED)
        actions.append(verdict.action)
    assert actions == [Action.RETRY, Action.RETRY, Action.FAIL]
    assert hist.counted == 0 and hist.crashes == 3
    assert verdict.failure_class is None


def test_fix_loop_then_escalation_then_failure() -> None:
    """Permanent: fix.max fix attempts, then each escalation profile with its own loop."""
    f = fix(max=1, escalate=["codex", "manual"])
    hist = History()
    seen = []
    for n in range(6):
        verdict, hist = run(hist, FailureClass.PERMANENT, f=f, fingerprints=[f"fp{n}"])
        seen.append((verdict.action, verdict.profile))
    assert seen == [(Action.FIX, None), (Action.ESCALATE, "codex"), (Action.FIX, None),
                    (Action.ESCALATE, "manual"), (Action.FIX, None), (Action.FAIL, None)]


def test_same_findings_twice_end_the_fix_loop() -> None:
    """Oscillation: the same fingerprint set after a fix attempt stops the loop."""
    f = fix(max=5)
    verdict, hist = run(History(), FailureClass.PERMANENT, f=f, fingerprints=["a", "b"])
    assert verdict.action is Action.FIX
    verdict, hist = run(hist, FailureClass.PERMANENT, f=f, fingerprints=["b", "a"])
    assert verdict.action is Action.FAIL and "same findings" in (verdict.reason or "")


def test_unfixable_permanent_fails() -> None:
    """A permanent failure of the tool itself (e.g. bad credentials) skips the fix loop."""
    verdict, _ = run(History(), FailureClass.PERMANENT, f=fix(max=3), fixable=False)
    assert verdict.action is Action.FAIL


def test_interrupted_counts_nothing() -> None:
    """An attempt aidp stopped on purpose changes no counter."""
    verdict, hist = run(History(), None, interrupted=True, outcome=O.CRASHED)
    assert verdict.action is Action.DONE and hist.crashes == 0


def test_history_round_trips() -> None:
    """History survives the database as a dict (resume continues the same loop)."""
    hist = History(2, 1, 1, 1, 1, 3.5, ("x",))
    assert History.from_dict(hist.to_dict()) == hist
    assert History.from_dict(None) == History()


@given(st.lists(st.sampled_from([*FailureClass, None]), min_size=1, max_size=60))
def test_every_sequence_terminates(kinds: list[FailureClass | None]) -> None:
    """Whatever the failures, a step fails within max_attempts + max_crashes + fix budget."""
    r = retry(max_attempts=3, max_crashes=2, max_unknown=2, initial_delay=0)
    f = fix(max=2, escalate=["b"])
    hist = History()
    bound = 3 + 2 + (2 + 1) * 2
    for n, kind in enumerate(kinds * 10):
        outcome = O.CRASHED if kind is None else O.FAILED_TRANSIENT  # None: a crash
        verdict, hist = run(hist, kind, r=r, f=f, fingerprints=[str(n)], outcome=outcome)
        if verdict.action is Action.FAIL:
            assert n < bound
            return
    raise AssertionError("no failure verdict")
