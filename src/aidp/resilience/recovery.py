"""What to do after a failed attempt: retry, fix, escalate or give up. Pure: no I/O, no clock.

One function, :func:`decide`, maps the step's policies, its attempt history and the attempt
that just ended (its outcome, failure class, findings' fingerprints, the provider's
``retry_after``) to a :class:`Verdict` and the updated :class:`History`:

* **crashed** (the tool died by a signal, or aidp died mid-attempt): retried with backoff until
  ``retry.max_crashes`` crashes; these attempts do not count against ``max_attempts``;
* **transient** (rate limit, 5xx, timeout, network): retried with backoff while
  ``max_attempts`` and the time ``budget`` allow, waiting at least the provider's
  ``retry_after``;
* **unknown** (nobody recognised the failure): as transient, but also capped by
  ``retry.max_unknown``;
* **permanent** (a failed acceptance check, a change outside the scope, no change, bad
  credentials): the fix loop -- up to ``fix.max`` attempts that feed the findings back to the
  tool, ended early when the same set of findings comes back twice in a row (oscillation) --
  then the next profile of ``fix.escalate`` (with a fresh fix loop), then failure.

A class not listed in ``retry.retry_on`` is not retried. The delay schedule itself is
:func:`aidp.resilience.retry.retry_delay`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from aidp.core.states import AttemptOutcome, FailureClass
from aidp.model.workstream import FixPolicy, RetryPolicy
from aidp.resilience.retry import retry_delay

__all__ = ["Action", "History", "Verdict", "decide", "failure_class"]


class Action(str, Enum):
    DONE = "done"  # succeeded or cancelled: nothing to decide
    RETRY = "retry"  # the same tool again, after ``delay_s``
    FIX = "fix"  # the same tool, with the findings, from the last checkpoint
    ESCALATE = "escalate"  # the next profile of the escalation chain, with the findings
    FAIL = "fail"


@dataclass(frozen=True)
class History:
    """What a step's attempts so far add up to (persisted with the step)."""

    counted: int = 0  # attempts counted against retry.max_attempts
    crashes: int = 0
    unknown: int = 0
    fixes: int = 0  # fix attempts of the current profile
    escalations: int = 0  # index into fix.escalate of the profile in use (0: the step's own)
    first_started_at: float | None = None
    last_fingerprints: tuple[str, ...] | None = None  # of the last permanent failure

    def to_dict(self) -> dict[str, object]:
        return {"counted": self.counted, "crashes": self.crashes, "unknown": self.unknown,
                "fixes": self.fixes, "escalations": self.escalations,
                "first_started_at": self.first_started_at,
                "last_fingerprints": list(self.last_fingerprints)
                if self.last_fingerprints is not None else None}

    @classmethod
    def from_dict(cls, data: dict[str, object] | None) -> History:
        if not data:
            return cls()
        fps = data.get("last_fingerprints")
        first = data.get("first_started_at")
        return cls(
            counted=int(data.get("counted", 0)),  # type: ignore[call-overload]
            crashes=int(data.get("crashes", 0)),  # type: ignore[call-overload]
            unknown=int(data.get("unknown", 0)),  # type: ignore[call-overload]
            fixes=int(data.get("fixes", 0)),  # type: ignore[call-overload]
            escalations=int(data.get("escalations", 0)),  # type: ignore[call-overload]
            first_started_at=float(first) if isinstance(first, int | float) else None,
            last_fingerprints=tuple(str(f) for f in fps) if isinstance(fps, list) else None,
        )


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str | None = None
    delay_s: float = 0.0
    profile: str | None = None  # ESCALATE: the profile to use next
    failure_class: FailureClass | None = None  # the class the step fails with (FAIL)
    notes: tuple[str, ...] = field(default=())


def failure_class(outcome: AttemptOutcome, detected: FailureClass | None) -> FailureClass | None:
    """The class of a failed attempt: from its outcome, refined by the detectors' class
    (``detected``, None when nothing matched).

    None when there is nothing to classify: the attempt succeeded, was cancelled, or crashed
    (a crash is an outcome, counted apart by :func:`decide`, not a class)."""
    if outcome in (AttemptOutcome.SUCCEEDED, AttemptOutcome.CANCELLED, AttemptOutcome.CRASHED):
        return None
    if outcome is AttemptOutcome.TIMED_OUT:
        return FailureClass.TRANSIENT
    if outcome in (AttemptOutcome.NO_CHANGE, AttemptOutcome.BUDGET_EXCEEDED):
        return FailureClass.PERMANENT
    if outcome is AttemptOutcome.FAILED_PERMANENT:
        # A failed check or scope violation is permanent whatever the tool printed, unless a
        # detector saw something transient (e.g. a check that could not reach a service).
        return (FailureClass.TRANSIENT if detected is FailureClass.TRANSIENT
                else FailureClass.PERMANENT)
    # FAILED_TRANSIENT: the tool failed; the detectors say why, or it stays unknown.
    return detected or FailureClass.UNKNOWN


def decide(
    retry: RetryPolicy,
    fix: FixPolicy,
    history: History,
    *,
    outcome: AttemptOutcome,
    failure: FailureClass | None,
    started_at: float,
    now: float,
    fingerprints: Sequence[str] = (),
    retry_after_s: float | None = None,
    fixable: bool = True,
    interrupted: bool = False,
    draw: Callable[[], float] = random.random,
) -> tuple[Verdict, History]:
    """The verdict on an attempt that started at ``started_at`` and just ended at ``now``.

    ``fixable``: the permanent failure is one the tool could fix (a failed check, no change, a
    change outside the scope) rather than one of the tool itself (bad credentials); only those
    enter the fix loop. ``interrupted``: aidp stopped it on purpose (Ctrl-C); nothing counts.
    """
    first = history.first_started_at if history.first_started_at is not None else started_at
    history = replace(history, first_started_at=first)
    if interrupted:
        return Verdict(Action.DONE), history
    crashed = outcome is AttemptOutcome.CRASHED
    if failure is None and not crashed:  # succeeded or cancelled: it counts, nothing to decide
        return Verdict(Action.DONE), replace(history, counted=history.counted + 1)

    def backoff(counted: int, hist: History, why: str) -> tuple[Verdict, History]:
        delay = retry_delay(retry, counted, draw)
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        if retry.budget is not None and now + delay > first + retry.budget:
            return (Verdict(Action.FAIL, f"{why}; the retry budget of {retry.budget:g}s is spent",
                            failure_class=failure), hist)
        return Verdict(Action.RETRY, why, delay_s=delay, failure_class=failure), hist

    if crashed:
        hist = replace(history, crashes=history.crashes + 1)
        if hist.crashes >= retry.max_crashes:
            return (Verdict(Action.FAIL, f"crashed {hist.crashes} times (max_crashes "
                            f"{retry.max_crashes})", failure_class=failure), hist)
        return backoff(hist.crashes, hist, f"crash {hist.crashes} of {retry.max_crashes}")

    counted = history.counted + 1
    hist = replace(history, counted=counted)
    if failure in (FailureClass.TRANSIENT, FailureClass.UNKNOWN):
        if failure is FailureClass.UNKNOWN:
            hist = replace(hist, unknown=hist.unknown + 1)
        if failure.value not in retry.retry_on:
            return Verdict(Action.FAIL, f"{failure.value} failures are not retried",
                           failure_class=failure), hist
        if counted >= retry.max_attempts:
            return (Verdict(Action.FAIL, f"{counted} attempts (max_attempts "
                            f"{retry.max_attempts})", failure_class=failure), hist)
        if failure is FailureClass.UNKNOWN and hist.unknown >= retry.max_unknown:
            return (Verdict(Action.FAIL, f"{hist.unknown} unknown failures (max_unknown "
                            f"{retry.max_unknown})", failure_class=failure), hist)
        return backoff(counted, hist, f"{failure.value} failure, attempt {counted} of "
                       f"{retry.max_attempts}")

    # Permanent.
    fps = tuple(sorted(set(fingerprints)))
    previous = hist.last_fingerprints
    hist = replace(hist, last_fingerprints=fps)
    if not fixable:
        return Verdict(Action.FAIL, "permanent failure", failure_class=failure), hist
    oscillating = bool(fps) and previous == fps and hist.fixes > 0
    if not oscillating and hist.fixes < fix.max:
        hist = replace(hist, fixes=hist.fixes + 1)
        return (Verdict(Action.FIX, f"fix attempt {hist.fixes} of {fix.max}",
                        failure_class=failure), hist)
    notes = ("the same findings came back: the fix loop stopped",) if oscillating else ()
    if hist.escalations < len(fix.escalate):
        profile = fix.escalate[hist.escalations]
        hist = replace(hist, escalations=hist.escalations + 1, fixes=0,
                       last_fingerprints=None)
        return (Verdict(Action.ESCALATE, f"escalating to {profile}", profile=profile,
                        failure_class=failure, notes=notes), hist)
    why = "permanent failure" + (f" after {hist.fixes} fix attempts" if hist.fixes else "")
    if oscillating:
        why += " (the same findings twice in a row)"
    return Verdict(Action.FAIL, why, failure_class=failure, notes=notes), hist
