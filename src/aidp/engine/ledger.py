"""The orchestrator's ledger: its in-memory view of one run, and the writes that keep that view
and the store in step.

Owns the attributes the orchestrator's rooms share (:mod:`~aidp.engine.resume`,
:mod:`~aidp.engine.lifecycle`, :mod:`~aidp.engine.orchestrator`) and the three primitives that
change state in memory and in the store together (``_set_step``, ``_set_ws``) or give a
worktree back to the pool (``_release``). It decides nothing: callers choose the new state, and
every transition is checked against the tables of :mod:`aidp.core.states`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aidp.config import Settings
from aidp.core.clock import Clock
from aidp.core.states import (
    STEP_TRANSITIONS,
    WORKSTREAM_TRANSITIONS,
    RunState,
    StepState,
    WorkstreamState,
    check,
)
from aidp.engine.run import Decision, Reporter
from aidp.engine.runtime import AttemptReport, StepRuntime, WorkstreamRuntime
from aidp.exceptions import LeaseLostError
from aidp.state.store import Store
from aidp.state.tx import Fence
from aidp.workspace.worktrees import WorktreePool

__all__ = ["HELD", "WAITING", "RunLedger"]

# steps waiting for their next attempt to come due
WAITING = (StepState.RETRYING, StepState.CIRCUIT_OPEN)
# steps that may start again later without a worker on them: WAITING, or at a human gate
HELD = (*WAITING, StepState.AWAITING_APPROVAL)


class RunLedger:
    """What the orchestrator knows of its run (the store holds the same, durably)."""

    clock: Clock
    store: Store
    fence: Fence
    repo: Path
    run_id: str
    settings: Settings
    reporter: Reporter
    decide: Callable[[StepRuntime, AttemptReport], Decision] | None
    pool: WorktreePool
    cancel: threading.Event
    lease_lost: LeaseLostError | None
    run_state: RunState
    parallel: int
    ws: dict[str, WorkstreamRuntime]
    steps: dict[str, StepRuntime]
    waiting: set[str]  # the keys of every HELD step (and maybe others)
    user_skipped: set[str]
    aborted: bool
    cancelling: bool
    dependants: dict[str, set[str]]
    to_settle: set[str]
    started: float

    def _set_step(self, tx: Any, sr: StepRuntime, state: StepState, **values: Any) -> None:
        if sr.state is StepState.COMPLETED and state is not StepState.COMPLETED:
            self.ws[sr.ws_id].reopened()
        sr.state = check(STEP_TRANSITIONS, sr.state, state)
        if "attempts" in values:
            sr.attempts = values["attempts"]
        if "reason" in values:
            sr.reason = values["reason"]
        if "checkpoint_sha" in values:
            sr.checkpoint_sha = values["checkpoint_sha"]
        if state is not StepState.RETRYING:
            sr.next_attempt_at = None
            values.setdefault("next_attempt_at", None)
        if state in HELD:
            self.waiting.add(sr.key)
        tx.update_step(self.run_id, sr.ws_id, sr.step.id, status=state.value, **values)

    def _set_ws(self, tx: Any, wsr: WorkstreamRuntime, state: WorkstreamState, **values: Any
                ) -> None:
        wsr.state = check(WORKSTREAM_TRANSITIONS, wsr.state, state)
        if "reason" in values:
            wsr.reason = values["reason"]
        tx.update_ws(self.run_id, wsr.ws.id, status=state.value, **values)

    def _unkeep(self, wsr: WorkstreamRuntime) -> None:
        """``wsr``'s human gate closed without an approval (rejected, cancelled): its slot,
        kept for the person's work until now, may be reused."""
        if wsr.worktree_path:
            self.pool.unkeep(Path(wsr.worktree_path))

    def _release(self, wsr: WorkstreamRuntime) -> None:
        if wsr.worktree is not None:
            try:
                self.pool.release(wsr.worktree)
            finally:
                wsr.worktree = None

