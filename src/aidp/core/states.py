"""aidp's vocabulary of states: runs, workstreams and steps, how an attempt ended
(:class:`AttemptOutcome`), why it failed (:class:`FailureClass`), what it was
(:class:`AttemptKind`), and the transition tables. Pure data: every state change in the engine and
the store goes through :func:`check`.

A table maps each state to the set of states it may move to; anything else is a bug and raises
:class:`~aidp.exceptions.IllegalTransition`. Tests cover every (from, to) pair of every table.

One word per concept everywhere: the enum's values are what the ``status`` columns, JSON keys and
CLI headings say (the database's CHECK constraints list the same values).
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from aidp.exceptions import IllegalTransition

__all__ = [
    "ATTEMPT_TRANSITIONS",
    "RETRYABLE_CLASSES",
    "RUN_TRANSITIONS",
    "STEP_TRANSITIONS",
    "WORKSTREAM_TRANSITIONS",
    "AttemptKind",
    "AttemptOutcome",
    "FailureClass",
    "ProposalState",
    "RunState",
    "StepState",
    "WorkstreamState",
    "check",
]


class RunState(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (RunState.COMPLETED, RunState.FAILED, RunState.CANCELLED)


class WorkstreamState(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self not in (WorkstreamState.PENDING, WorkstreamState.RUNNING)


class StepState(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    VALIDATING = "validating"  # the tool finished; acceptance checks are running
    RETRYING = "retrying"  # waiting for the next attempt (next_attempt_at is set)
    AWAITING_APPROVAL = "awaiting_approval"  # a human gate (manual adapter)
    CIRCUIT_OPEN = "circuit_open"  # waiting for its tool's circuit breaker
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"  # the last attempt ran out of time and no attempt is left
    SKIPPED = "skipped"  # a dependency failed, or the user chose to skip it
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _STEP_TERMINAL

    @property
    def succeeded(self) -> bool:
        return self is StepState.COMPLETED


_STEP_TERMINAL = frozenset(
    {StepState.COMPLETED, StepState.FAILED, StepState.TIMEOUT, StepState.SKIPPED,
     StepState.CANCELLED}
)


class AttemptOutcome(str, Enum):
    """How one attempt ended. ``None`` (no outcome yet) means the attempt is in flight.

    A step that ended failed or timed out records the outcome that ended it (``steps.outcome``):
    its last attempt's, or ``circuit_open`` when the breakers refused it and it had to fail.
    """

    SUCCEEDED = "succeeded"
    FAILED_TRANSIENT = "failed_transient"
    FAILED_PERMANENT = "failed_permanent"
    TIMED_OUT = "timed_out"
    CRASHED = "crashed"
    CANCELLED = "cancelled"
    NO_CHANGE = "no_change"
    BUDGET_EXCEEDED = "budget_exceeded"  # a budget was spent: the attempt did not start
    CIRCUIT_OPEN = "circuit_open"  # every breaker refused: no tool ran (a step's outcome only)


class FailureClass(str, Enum):
    """Whether running the same thing again may help: the one classification of a failure, used
    by findings, detectors, retry policies (``retry_on``) and recovery alike.

    How an attempt ended (crashed, circuit open, budget exceeded) is its
    :class:`AttemptOutcome`, not a class.
    """

    TRANSIENT = "transient"  # rate limit, 5xx, timeout, network, OOM kill: retry with backoff
    PERMANENT = "permanent"  # test failure, type error, conflict, bad credentials: fix, escalate
    UNKNOWN = "unknown"  # nobody recognised it: retried up to a small separate limit


#: The classes a retry policy may name in ``retry_on`` (a permanent failure is fixed, not retried).
RETRYABLE_CLASSES = (FailureClass.TRANSIENT, FailureClass.UNKNOWN)


class AttemptKind(str, Enum):
    """What an attempt was for (the ``kind`` column of attempts)."""

    FIRST = "first"  # the step's first try
    RETRY = "retry"  # the same profile again after a transient failure
    FIX = "fix"  # the same profile, fed the findings of the failed attempt
    ESCALATE = "escalate"  # the next profile of the escalation chain, fed the findings
    APPROVAL = "approval"  # a human approved a gate: stage, check and commit their work
    JUDGE = "judge"  # a best-of round's judge profile compared the passing candidates


class ProposalState(str, Enum):
    """A change proposal's review state (its transition table is in :mod:`aidp.specs.lifecycle`)."""

    DRAFT = "draft"
    REVIEW = "review"
    CHANGES_REQUESTED = "changes_requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    IN_PROGRESS = "in_progress"
    APPLIED = "applied"
    ARCHIVED = "archived"

    @property
    def terminal(self) -> bool:
        return self is ProposalState.ARCHIVED


R, W, S = RunState, WorkstreamState, StepState

RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    R.PENDING: frozenset({R.RUNNING, R.CANCELLED}),
    R.RUNNING: frozenset({R.COMPLETED, R.FAILED, R.CANCELLED}),
    # `aidp resume` of a failed run retries what failed; `rollback` reopens a completed one.
    R.FAILED: frozenset({R.RUNNING, R.CANCELLED}),
    R.COMPLETED: frozenset({R.RUNNING}),
    R.CANCELLED: frozenset(),
}

WORKSTREAM_TRANSITIONS: dict[WorkstreamState, frozenset[WorkstreamState]] = {
    W.PENDING: frozenset({W.RUNNING, W.SKIPPED, W.CANCELLED}),
    W.RUNNING: frozenset({W.COMPLETED, W.FAILED, W.CANCELLED, W.PENDING,
                          W.SKIPPED}),  # SKIPPED: a step skipped at --interactive
    W.FAILED: frozenset({W.PENDING}),  # resume retries it
    W.SKIPPED: frozenset({W.PENDING}),  # resume retries what its failed dependency blocked
    W.COMPLETED: frozenset({W.PENDING}),  # rollback
    W.CANCELLED: frozenset(),
}

STEP_TRANSITIONS: dict[StepState, frozenset[StepState]] = {
    S.PENDING: frozenset({S.RUNNING, S.SKIPPED, S.CANCELLED, S.CIRCUIT_OPEN,
                          S.AWAITING_APPROVAL, S.COMPLETED}),  # COMPLETED: adopted on resume
    S.RUNNING: frozenset({S.VALIDATING, S.COMPLETED, S.FAILED, S.TIMEOUT, S.RETRYING,
                          S.CANCELLED, S.AWAITING_APPROVAL, S.PENDING, S.SKIPPED,
                          S.CIRCUIT_OPEN}),  # CIRCUIT_OPEN: the breaker refused the attempt
    S.VALIDATING: frozenset({S.COMPLETED, S.FAILED, S.RETRYING, S.CANCELLED, S.PENDING,
                             S.TIMEOUT, S.SKIPPED}),
    S.RETRYING: frozenset({S.RUNNING, S.CANCELLED, S.CIRCUIT_OPEN, S.PENDING}),
    S.CIRCUIT_OPEN: frozenset({S.RUNNING, S.CANCELLED, S.PENDING, S.FAILED, S.SKIPPED}),
    # approved: RUNNING (the gate's attempt stages, checks and commits the human's work)
    S.AWAITING_APPROVAL: frozenset({S.RUNNING, S.COMPLETED, S.FAILED, S.CANCELLED, S.PENDING,
                                    S.SKIPPED}),
    S.COMPLETED: frozenset({S.PENDING}),  # rollback
    S.FAILED: frozenset({S.PENDING, S.SKIPPED}),  # resume / interactive retry or skip
    S.TIMEOUT: frozenset({S.PENDING, S.SKIPPED}),
    S.SKIPPED: frozenset({S.PENDING}),
    S.CANCELLED: frozenset(),
}

# An attempt starts without an outcome (None) and gets exactly one; outcomes are final.
ATTEMPT_TRANSITIONS: dict[AttemptOutcome | None, frozenset[AttemptOutcome]] = {
    None: frozenset(AttemptOutcome),
    **{outcome: frozenset() for outcome in AttemptOutcome},
}


E = TypeVar("E", RunState, WorkstreamState, StepState)


def check(table: dict[E, frozenset[E]], current: E, new: E) -> E:
    """Return ``new`` if ``current -> new`` is allowed by ``table``; staying put is allowed."""
    if current is not new and new not in table[current]:
        raise IllegalTransition(f"{type(current).__name__}: {current.value} -> {new.value}")
    return new
