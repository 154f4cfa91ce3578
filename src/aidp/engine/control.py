"""Operations on a run from outside its orchestrator: a human gate's decision, cancel, rollback.

Owns :func:`decide_gate` (a journal entry the orchestrator acts on), :func:`cancel_run` (asks a
live orchestrator to stop, or cancels a run nobody drives) and :func:`rollback_run`. Whatever it
changes in the run's rows it changes under the run's lease; it never runs a step or a tool.
"""

from __future__ import annotations

from pathlib import Path

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
from aidp.process.runner import kill_by_token
from aidp.state.lease import acquire_lease, lease_is_live, release_lease
from aidp.state.store import Store
from aidp.workspace.checkpoint import list_checkpoints
from aidp.workspace.git import run_git

__all__ = ["cancel_run", "decide_gate", "rollback_run"]


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


def cancel_run(store: Store, run_id: str) -> bool:
    """Cancel ``run_id``. Returns True if a live orchestrator was asked to stop (it will end the
    run itself), False if the run was cancelled here and now."""
    row = store.run(run_id)
    state = RunState(row.status)
    if state is RunState.CANCELLED:
        return False
    if state is RunState.COMPLETED:
        raise StateError(f"run {run_id} already completed; nothing to cancel")
    if lease_is_live(store.lease(run_id)):
        with store.write() as tx:
            tx.update_run(run_id, cancel_requested=True)
            tx.event(run_id, "run.cancel_requested", by="aidp cancel")
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
            tx.event(run_id, "run.finished", status=RunState.CANCELLED.value, by="aidp cancel")
    finally:
        release_lease(store, fence)
    return False


def rollback_run(store: Store, repo: Path, run_id: str, ws_id: str, step_id: str) -> list[str]:
    """Move workstream ``ws_id`` back to the checkpoint of ``step_id``.

    The steps checkpointed after it become pending again; returns their ids. Refused while the
    run is live (the lease is taken for the duration).
    """
    fence = acquire_lease(store, run_id)
    try:
        ws = next((w for w in store.workstreams(run_id) if w.ws_id == ws_id), None)
        if ws is None:
            raise NotFoundError(f"no workstream {ws_id!r} in run {run_id}")
        target = next((c for c in store.checkpoints(run_id)
                       if c.ws_id == ws_id and c.step_id == step_id), None)
        if target is None:
            raise NotFoundError(f"step {ws_id}/{step_id} has no checkpoint to go back to",
                                hint="`aidp status RUN` shows the checkpoints")
        after = [c.step for c in list_checkpoints(repo, ws.branch, run_id=run_id,
                                                  base=target.sha)
                 if c.workstream == ws_id and c.step is not None]
        old_head = ws.head_sha
        run_git(["update-ref", f"refs/heads/{ws.branch}", target.sha], repo)
        steps = {s.step_id: s for s in store.steps(run_id) if s.ws_id == ws_id}
        reopened = [s for s in after if s in steps]
        with store.write(fence) as tx:
            for sid in reopened:
                check(STEP_TRANSITIONS, StepState(steps[sid].status), StepState.PENDING)
                tx.update_step(run_id, ws_id, sid, status=StepState.PENDING.value, attempts=0,
                               checkpoint_sha=None, reason=None, finished_at=None, outcome=None)
            tx.delete_checkpoints(run_id, ws_id, reopened)
            ws_state = WorkstreamState(ws.status)
            if ws_state in (WorkstreamState.COMPLETED, WorkstreamState.FAILED):
                check(WORKSTREAM_TRANSITIONS, ws_state, WorkstreamState.PENDING)
                tx.update_ws(run_id, ws_id, status=WorkstreamState.PENDING.value,
                             finished_at=None, reason=None)
            tx.update_ws(run_id, ws_id, head_sha=target.sha)
            tx.event(run_id, "workstream.rolled_back", ws_id, step_id, to=target.sha,
                     previous_head=old_head, reopened=reopened)
        return reopened
    finally:
        release_lease(store, fence)
