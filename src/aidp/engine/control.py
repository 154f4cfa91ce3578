"""Operations on a run from outside its orchestrator: a human gate's decision, cancel, rollback.

Owns :func:`decide_gate` (a journal entry the orchestrator acts on), :func:`cancel_run` (asks a
live orchestrator to stop, or cancels a run nobody drives) and :func:`rollback_run`. Whatever it
changes in the run's rows it changes under the run's lease; it never runs a step or a tool.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aidp.core.dag import descendants
from aidp.core.states import (
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    WORKSTREAM_TRANSITIONS,
    AttemptOutcome,
    RunState,
    StepState,
    WorkstreamState,
    check,
)
from aidp.exceptions import NotFoundError, StateError
from aidp.model.plan import Plan
from aidp.model.workstream import MergeStrategy
from aidp.process.runner import kill_by_token
from aidp.state.lease import acquire_lease, lease_is_live, release_lease
from aidp.state.store import Store
from aidp.state.tx import Tx
from aidp.workspace.checkpoint import list_checkpoints
from aidp.workspace.git import run_git

__all__ = ["Reopened", "Rollback", "cancel_run", "decide_gate", "rollback_run"]


def decide_gate(store: Store, run_id: str, ws_id: str, step_id: str, *, approve: bool,
                by: str, reason: str | None = None) -> None:
    """Approve or reject a step waiting at a human gate (the ``manual`` adapter).

    The decision goes into the journal; the run's orchestrator (now, or at ``aidp resume``)
    acts on it. Raises StateError when the step is not waiting for approval.
    """
    rows = [s for s in store.steps(run_id) if (s.ws_id, s.step_id) == (ws_id, step_id)]
    if not rows:
        raise NotFoundError(f"no step {ws_id}/{step_id} in run {run_id}")
    if rows[0].status != StepState.AWAITING_APPROVAL.value:
        raise StateError(f"step {ws_id}/{step_id} is {rows[0].status}, not awaiting approval")
    if not approve and not (reason or "").strip():
        raise StateError("a rejection needs a reason", hint="aidp reject RUN STEP --reason ...")
    with store.write() as tx:
        tx.event(run_id, "step.approved" if approve else "step.rejected", ws_id, step_id,
                 by=by, reason=reason)


def cancel_run(store: Store, run_id: str, *, by: str = "aidp cancel") -> bool:
    """Cancel ``run_id`` (``by``: who asked, for the journal). Returns True if a live
    orchestrator was asked to stop (it will end the run itself), False if the run was cancelled
    here and now."""
    row = store.run(run_id)
    state = RunState(row.status)
    if state is RunState.CANCELLED:
        return False
    if state is RunState.COMPLETED:
        raise StateError(f"run {run_id} already completed; nothing to cancel")
    if lease_is_live(store.lease(run_id)):
        with store.write() as tx:
            tx.update_run(run_id, cancel_requested=True)
            tx.event(run_id, "run.cancel_requested", by=by)
        return True
    fence = acquire_lease(store, run_id)
    try:
        in_flight = [a for a in store.attempts(run_id) if a.outcome is None]
        for attempt in in_flight:
            if attempt.token:
                kill_by_token(attempt.token, pid_hint=attempt.pid)
        with store.write(fence) as tx:
            for attempt in in_flight:
                tx.update_attempt(attempt.id, outcome=AttemptOutcome.CANCELLED.value,
                                  interrupted=True, finished_at=tx.now, error="cancelled")
            for s in store.steps(run_id):
                if not StepState(s.status).terminal:
                    tx.update_step(run_id, s.ws_id, s.step_id, status=StepState.CANCELLED.value,
                                   reason="run cancelled", finished_at=tx.now)
            for w in store.workstreams(run_id):
                if not WorkstreamState(w.status).terminal:
                    tx.update_ws(run_id, w.ws_id, status=WorkstreamState.CANCELLED.value,
                                 reason="run cancelled", finished_at=tx.now)
            check(RUN_TRANSITIONS, state, RunState.CANCELLED)
            tx.update_run(run_id, status=RunState.CANCELLED.value, cancel_requested=True,
                          finished_at=tx.now)
            tx.event(run_id, "run.finished", status=RunState.CANCELLED.value, by=by)
    finally:
        release_lease(store, fence)
    return False


@dataclass(frozen=True)
class Reopened:
    """A workstream a rollback reopened: the steps it runs again and, when it had been merged,
    the branch that keeps that earlier merge (``merged_into``, at ``merged_sha``)."""

    ws_id: str
    steps: tuple[str, ...]
    rebuilt: bool  # a dependant: its branch is rebuilt from its dependencies' new heads
    merged_into: str | None = None
    merged_sha: str | None = None


@dataclass(frozen=True)
class Rollback:
    """What :func:`rollback_run` did: the commit gone back to, and every reopened workstream --
    the rolled back one first, then its dependants (transitively) in plan order."""

    to: str
    workstreams: tuple[Reopened, ...]

    @property
    def reopened(self) -> list[str]:
        """The steps of the rolled back workstream that are pending again."""
        return list(self.workstreams[0].steps)


def rollback_run(store: Store, repo: Path, run_id: str, ws_id: str, step_id: str, *,
                 by: str | None = None) -> Rollback:
    """Move workstream ``ws_id`` back to the checkpoint of ``step_id``, and invalidate everything
    downstream of it.

    The steps checkpointed after it become pending again. When its head moves, every workstream
    depending on it (transitively) is reopened from scratch: its steps pending, its checkpoints
    forgotten, its base and head cleared, so that ``aidp resume`` prepares it afresh -- its
    branch reset onto the new heads of its dependencies -- instead of continuing from the
    commits built on the discarded ones. A reopened workstream that had been merged is merged
    again when it completes again; its target keeps the earlier merge (nothing is reverted).
    Refused while the run is live (the lease is taken for the duration).
    """
    fence = acquire_lease(store, run_id)
    try:
        ws_rows = {w.ws_id: w for w in store.workstreams(run_id)}
        ws = ws_rows.get(ws_id)
        if ws is None:
            raise NotFoundError(f"no workstream {ws_id!r} in run {run_id}")
        target = next((c for c in store.checkpoints(run_id)
                       if c.ws_id == ws_id and c.step_id == step_id), None)
        if target is None:
            raise NotFoundError(f"step {ws_id}/{step_id} has no checkpoint to go back to",
                                hint="`aidp status RUN` shows the checkpoints")
        plan = Plan.from_json(store.run(run_id).plan_json)
        into = {w.id: (w.merge.into if w.merge is not None
                       and w.merge.strategy is not MergeStrategy.NONE else None)
                for w in plan.workstreams}
        after = [c.step for c in list_checkpoints(repo, ws.branch, run_id=run_id,
                                                  base=target.sha)
                 if c.workstream == ws_id and c.step is not None]
        old_head = ws.head_sha
        steps: dict[str, dict[str, Any]] = {}
        for s in store.steps(run_id):
            steps.setdefault(s.ws_id, {})[s.step_id] = s
        reopened = [s for s in after if s in steps[ws_id]]
        downstream: list[str] = []
        if target.sha != old_head:
            below = descendants({w.id: w.depends_on for w in plan.workstreams}, ws_id)
            downstream = [w.id for w in plan.workstreams if w.id in below
                          and _touched(ws_rows[w.id], steps[w.id].values())]
        run_git(["update-ref", f"refs/heads/{ws.branch}", target.sha], repo)
        result = [_reopened(ws, reopened, into[ws_id], rebuilt=False)]
        with store.write(fence) as tx:
            _reopen_steps(tx, run_id, ws_id, [steps[ws_id][sid] for sid in reopened])
            ws_state = WorkstreamState(ws.status)
            if ws_state in (WorkstreamState.COMPLETED, WorkstreamState.FAILED):
                check(WORKSTREAM_TRANSITIONS, ws_state, WorkstreamState.PENDING)
                tx.update_ws(run_id, ws_id, status=WorkstreamState.PENDING.value,
                             finished_at=None, reason=None)
            tx.update_ws(run_id, ws_id, head_sha=target.sha,
                         **({"merged_sha": None} if reopened else {}))
            for other_id in downstream:
                other = ws_rows[other_id]
                redo = [s for s in steps[other_id].values()
                        if StepState(s.status) is not StepState.CANCELLED]
                _reopen_steps(tx, run_id, other_id, redo)
                check(WORKSTREAM_TRANSITIONS, WorkstreamState(other.status),
                      WorkstreamState.PENDING)
                tx.update_ws(run_id, other_id, status=WorkstreamState.PENDING.value,
                             base_sha=None, head_sha=None, merged_sha=None, reason=None,
                             started_at=None, finished_at=None)
                result.append(_reopened(other, [s.step_id for s in redo], into[other_id],
                                        rebuilt=True))
                tx.event(run_id, "workstream.reopened", other_id, by=f"rollback of {ws_id}",
                         previous_head=other.head_sha, previous_merge=other.merged_sha,
                         reopened=[s.step_id for s in redo])
            tx.event(run_id, "workstream.rolled_back", ws_id, step_id, to=target.sha,
                     previous_head=old_head, reopened=reopened, dependants=downstream, by=by)
        return Rollback(to=target.sha, workstreams=tuple(result))
    finally:
        release_lease(store, fence)


def _touched(ws: Any, steps: Iterable[Any]) -> bool:
    """Whether a workstream has anything to undo: prepared, or a step no longer pending."""
    if WorkstreamState(ws.status) is WorkstreamState.CANCELLED:
        return False
    return ws.base_sha is not None or any(
        StepState(s.status) is not StepState.PENDING for s in steps)


def _reopen_steps(tx: Tx, run_id: str, ws_id: str, rows: Sequence[Any]) -> None:
    for row in rows:
        check(STEP_TRANSITIONS, StepState(row.status), StepState.PENDING)
        tx.update_step(run_id, ws_id, row.step_id, status=StepState.PENDING.value, attempts=0,
                       checkpoint_sha=None, reason=None, started_at=None, finished_at=None,
                       next_attempt_at=None, outcome=None, history_json=None, profile=None,
                       failure_class=None)
    tx.delete_checkpoints(run_id, ws_id, [row.step_id for row in rows])


def _reopened(ws: Any, steps: Sequence[str], into: str | None, *, rebuilt: bool) -> Reopened:
    merged = ws.merged_sha if into is not None and steps else None
    return Reopened(ws_id=ws.ws_id, steps=tuple(steps), rebuilt=rebuilt,
                    merged_into=into if merged else None, merged_sha=merged)
