"""The runtime records: the engine's in-memory view of a run's workstreams, steps and attempts.

Owns :class:`StepRuntime`, :class:`WorkstreamRuntime`, :class:`AttemptReport` and the branch
naming rule. Pure data: the scheduler reads these, the executor and the orchestrator update them;
this module imports no store, pool, breaker or process code (the worktree type is imported for
annotations only), so the pure scheduler can depend on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aidp.core.states import AttemptKind, AttemptOutcome, StepState, WorkstreamState
from aidp.errors.finding import Finding
from aidp.model.scope import ScopeMatcher
from aidp.model.workstream import Step, Workstream
from aidp.resilience.recovery import History

if TYPE_CHECKING:
    from aidp.workspace.worktrees import Worktree

__all__ = ["AttemptReport", "StepRuntime", "WorkstreamRuntime", "branch_name"]


def branch_name(run_id: str, ws_id: str) -> str:
    return f"aidp/{run_id}/{ws_id}"


@dataclass
class StepRuntime:
    """The orchestrator's view of one step (the database holds the same, durably)."""

    ws_id: str
    step: Step
    state: StepState
    attempts: int = 0  # attempts counted against the retry policy since the last reset
    last_number: int = 0  # the highest attempt number ever used
    next_attempt_at: float | None = None
    checkpoint_sha: str | None = None
    reason: str | None = None
    history: History = field(default_factory=History)
    profile: str | None = None  # the profile of the next attempt (None: the step's tool)
    next_kind: AttemptKind = AttemptKind.RETRY  # what the next attempt is for
    fix_findings: tuple[Finding, ...] = ()  # what a fix attempt feeds back

    @property
    def key(self) -> str:
        return f"{self.ws_id}/{self.step.id}"


@dataclass
class WorkstreamRuntime:
    """The orchestrator's view of one workstream and its worktree."""

    ws: Workstream
    state: WorkstreamState
    branch: str
    base_ref: str  # the resolved commit of ``ws.base``
    scope: ScopeMatcher
    base_sha: str | None = None  # the prepared start (after merging dependencies)
    head_sha: str | None = None
    merged_sha: str | None = None  # its target's sha after its merge (None: not merged)
    merge_changed: bool | None = None  # its merge moved the target (None: not known here)
    worktree_path: str | None = None
    worktree: Worktree | None = None
    needs_reset: bool = False
    reason: str | None = None
    step_order: list[str] = field(default_factory=list)
    steps: list[StepRuntime] = field(default_factory=list)  # in ``step_order``
    merge_failed: bool = False  # every step completed; only merging into the target failed
    # every step completed; the target's integration checks failed with its merge (merge queue)
    merge_rejected: bool = False
    # How many of ``steps``, from the first, are known to be completed: the scans below start
    # there, so that a step costs the same at the end of a long workstream as at its start.
    # Whoever moves a step out of COMPLETED (a rollback) calls :meth:`reopened`.
    settled: int = 0

    def open_steps(self) -> Iterator[StepRuntime]:
        """Its steps that have not completed, in ``step_order`` (amortised O(1) per step
        completed in that order: the completed ones before the first open step are skipped
        once, not at every call)."""
        steps = self.steps
        i, n = self.settled, len(steps)
        while i < n and steps[i].state is StepState.COMPLETED:
            i += 1
        self.settled = i  # several threads may advance it: each writes a true lower bound
        for j in range(i, n):
            if steps[j].state is not StepState.COMPLETED:
                yield steps[j]

    def only_open(self, sr: StepRuntime) -> bool:
        """Every step but ``sr`` completed."""
        return all(other is sr for other in self.open_steps())

    def reopened(self) -> None:
        """A completed step is no longer completed: scan from the first step again."""
        self.settled = 0

    @property
    def delivered(self) -> bool:
        """Its work is done: completed, or failed only in merging into its target (its
        dependants build on its branch head, not on the target, so they can run)."""
        return self.state is WorkstreamState.COMPLETED or (
            self.merge_failed and self.state is WorkstreamState.FAILED
            and self.head_sha is not None)


@dataclass(frozen=True)
class AttemptReport:
    """What one attempt did, for the orchestrator to act on (already written to the store)."""

    ws_id: str
    step_id: str
    number: int
    counted: int
    outcome: AttemptOutcome | None
    state: StepState
    reason: str | None = None
    checkpoint_sha: str | None = None
    next_attempt_at: float | None = None
    prepare_error: str | None = None  # the workstream itself could not be prepared
    history: History = field(default_factory=History)
    next_kind: AttemptKind = AttemptKind.RETRY
    profile: str | None = None
    fix_findings: tuple[Finding, ...] = ()
    failure_class: str | None = None
    closed_workstream: bool = False  # the workstream's completion was recorded with it
    last_number: int = 0  # the highest attempt number used, when above ``number`` (best-of)
