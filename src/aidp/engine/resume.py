"""The resume path: loading a run from the store and making it consistent after a crash.

Starting and resuming a run are the same code: the store is the single source of truth. This
room owns ``_load`` (the runtimes from the rows), ``_recover`` (kill and mark attempts a dead
orchestrator left in flight, count crashes, reset failed steps for a resume, turn the run
running) and ``_adopt_checkpoints`` (checkpoint commits that reached git but not the store). It
runs once, on the orchestrator's thread, before the scheduling loop; it never starts a tool.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from typing import Any

from aidp.core.dag import all_descendants, step_order
from aidp.core.states import (
    RUN_TRANSITIONS,
    AttemptKind,
    AttemptOutcome,
    RunState,
    StepState,
    WorkstreamState,
    check,
)
from aidp.engine.ledger import HELD, RunLedger
from aidp.engine.runtime import StepRuntime, WorkstreamRuntime
from aidp.engine.scheduler import chain_ranks, conflict_map
from aidp.errors.finding import FailureClass, Finding, Severity
from aidp.model.plan import Plan
from aidp.model.scope import compile_scope
from aidp.process.runner import kill_by_token
from aidp.resilience.recovery import History
from aidp.workspace.checkpoint import list_checkpoints
from aidp.workspace.git import rev_parse

__all__ = ["Resume"]


class Resume(RunLedger):
    """The orchestrator's resume path (a mixin of
    :class:`~aidp.engine.orchestrator.Orchestrator`)."""

    parallel_override: int | None
    attempt_rows: list[Any]
    ranks: dict[str, int]
    conflicts: dict[str, frozenset[str]]

    def _load(self, row: Any) -> None:
        plan = Plan.from_json(row.plan_json)
        options = json.loads(row.options_json or "{}")
        self.parallel = self.parallel_override or int(options.get("parallel") or
                                                      self.settings.run.parallel)
        self.run_state = RunState(row.status)
        ws_rows = {r.ws_id: r for r in self.store.workstreams(self.run_id)}
        step_rows = {(r.ws_id, r.step_id): r for r in self.store.steps(self.run_id)}
        self.attempt_rows = self.store.attempts(self.run_id)
        last_numbers: Counter[tuple[str, str]] = Counter()
        for a in self.attempt_rows:
            key = (a.ws_id, a.step_id)
            last_numbers[key] = max(last_numbers[key], a.number)
        for ws in plan.workstreams:
            r = ws_rows[ws.id]
            self.ws[ws.id] = WorkstreamRuntime(
                ws=ws, state=WorkstreamState(r.status), branch=r.branch, base_ref=r.base_ref,
                scope=compile_scope(ws.scope), base_sha=r.base_sha, head_sha=r.head_sha,
                merged_sha=r.merged_sha,
                worktree_path=r.worktree, reason=r.reason, step_order=step_order(ws),
            )
            for step in ws.steps:
                s = step_rows[(ws.id, step.id)]
                saved = json.loads(s.history_json) if s.history_json else {}
                sr = self.steps[f"{ws.id}/{step.id}"] = StepRuntime(
                    ws_id=ws.id, step=step, state=StepState(s.status), attempts=s.attempts,
                    last_number=last_numbers[(ws.id, step.id)],
                    next_attempt_at=s.next_attempt_at, checkpoint_sha=s.checkpoint_sha,
                    reason=s.reason, history=History.from_dict(saved.get("history")),
                    profile=s.profile,
                    next_kind=AttemptKind(saved.get("next") or AttemptKind.RETRY.value),
                )
                if sr.next_kind in (AttemptKind.FIX, AttemptKind.ESCALATE) and sr.last_number:
                    # a resumed fix loop feeds back the same findings as before the crash
                    sr.fix_findings = tuple(
                        _finding(f) for f in self.store.findings(self.run_id, ws.id, step.id)
                        if f.attempt == sr.last_number)
            wsr = self.ws[ws.id]
            wsr.steps = [self.steps[f"{ws.id}/{s}"] for s in wsr.step_order]
        self.waiting = {key for key, sr in self.steps.items() if sr.state in HELD}
        self.ranks = chain_ranks(self.ws)
        self.conflicts = conflict_map(self.ws)
        edges = {ws_id: list(wsr.ws.depends_on) for ws_id, wsr in self.ws.items()}
        self.dependants = all_descendants(edges)

    # -- recovery ----------------------------------------------------------------------------

    def _unfinished_merge_checks(self) -> set[str]:
        """The tokens of integration checks the journal saw start but not end (no query for a
        plan without any)."""
        started: set[str] = set()
        if not any(w.ws.merge is not None and w.ws.merge.checks for w in self.ws.values()):
            return started
        for row in self.store.read(
                "SELECT kind, data FROM events WHERE run_id = :run_id "
                "AND kind IN ('merge.checking', 'merge.checked')", {"run_id": self.run_id}):
            token = json.loads(row.data or "{}").get("token")
            if token and row.kind == "merge.checking":
                started.add(token)
            elif token:
                started.discard(token)
        return started

    def _recover(self) -> None:
        """Make the run consistent after a crash or for a resume of a failed run."""
        in_flight = [a for a in self.attempt_rows if a.outcome is None]
        for attempt in in_flight:  # the dead orchestrator's tools may still be running
            if attempt.token:
                kill_by_token(attempt.token, pid_hint=attempt.pid)
        for token in self._unfinished_merge_checks():  # and its integration checks
            kill_by_token(token)
        with self.store.write(self.fence) as tx:
            for attempt in in_flight:
                tx.update_attempt(attempt.id, outcome=AttemptOutcome.CRASHED.value,
                                  interrupted=True, finished_at=tx.now,
                                  error="interrupted: the orchestrator stopped")
                tx.event(self.run_id, "attempt.interrupted", attempt.ws_id, attempt.step_id,
                         attempt=attempt.number)
        # The dead run's worktrees still have its branches checked out: free them before any
        # workstream claims a slot, or a fresh workstream may take such a slot while the
        # branch's own workstream tries to check the branch out elsewhere.
        # A run never driven before (still pending: it turns running below, before any
        # worktree is taken) has no branch checked out anywhere: no `git worktree list`.
        # What dead processes left in idle slots would fail every checkout there: git's lock
        # files, and in a `cp -a` copy the original's registrations holding the branches.
        self.pool.forget_foreign()
        self.pool.clean_idle_locks()
        if self.run_state is not RunState.PENDING:
            self.pool.detach_idle([wsr.branch for wsr in self.ws.values()])
        adopted = self._adopt_checkpoints()
        # a best-of round's candidates in flight are one crash of their step
        crashed = Counter(f"{ws_id}/{step_id}" for ws_id, step_id, _ in {
            (a.ws_id, a.step_id, a.round or a.number) for a in in_flight})
        with self.store.write(self.fence) as tx:
            for sr in self.steps.values():
                if sr.state in (StepState.RUNNING, StepState.VALIDATING):
                    # aidp died under this attempt: a crash, counted apart and capped, so a
                    # step that kills aidp every time cannot loop through resumes
                    hist = replace(sr.history, crashes=sr.history.crashes + crashed[sr.key])
                    sr.history = hist
                    if hist.crashes >= sr.step.retry.max_crashes:
                        reason = (f"crashed {hist.crashes} times (max_crashes "
                                  f"{sr.step.retry.max_crashes}), the last time with aidp")
                        self._set_step(tx, sr, StepState.FAILED, reason=reason,
                                       outcome=AttemptOutcome.CRASHED.value,
                                       finished_at=tx.now,
                                       history_json=_history_json(sr))
                        tx.event(self.run_id, "step.failed", sr.ws_id, sr.step.id,
                                 reason=reason, outcome=AttemptOutcome.CRASHED.value)
                    else:
                        self._set_step(tx, sr, StepState.PENDING, reason=None,
                                       history_json=_history_json(sr))
                elif sr.state in (StepState.FAILED, StepState.TIMEOUT, StepState.SKIPPED):
                    sr.history, sr.profile, sr.next_kind, sr.fix_findings = (
                        History(), None, AttemptKind.RETRY, ())
                    self._set_step(tx, sr, StepState.PENDING, reason=None, attempts=0,
                                   history_json=None, profile=None, failure_class=None,
                                   outcome=None)
            for wsr in self.ws.values():
                if wsr.state in (WorkstreamState.FAILED, WorkstreamState.SKIPPED):
                    self._set_ws(tx, wsr, WorkstreamState.PENDING, reason=None)
            resumed = self.run_state is not RunState.PENDING
            self.run_state = check(RUN_TRANSITIONS, self.run_state, RunState.RUNNING)
            tx.update_run(self.run_id, status=RunState.RUNNING.value, reason=None,
                          finished_at=None,
                          **({} if resumed else {"started_at": tx.now}))
            tx.event(self.run_id, "run.resumed" if resumed else "run.started",
                     parallel=self.parallel, adopted=adopted,
                     interrupted=len(in_flight), holder_token=self.fence.token)
        self.to_settle = {
            ws_id for ws_id, wsr in self.ws.items()
            if not wsr.state.terminal
            and all(self.steps[f"{ws_id}/{s}"].state.terminal for s in wsr.step_order)
        }
        self.reporter.event("run.resumed" if resumed else "run.started", None, None,
                            {"parallel": self.parallel, "adopted": adopted,
                             "workstreams": len(self.ws), "steps": len(self.steps)})

    def _adopt_checkpoints(self) -> int:
        """Record checkpoint commits that exist in git but not in the store."""
        adopted = 0
        for wsr in self.ws.values():
            if wsr.base_sha is None or wsr.state is WorkstreamState.COMPLETED:
                continue  # never prepared, or finished: nothing can be missing
            head = rev_parse(self.repo, f"refs/heads/{wsr.branch}")
            if head is None:
                continue
            commits = list_checkpoints(self.repo, wsr.branch, run_id=self.run_id,
                                       base=wsr.base_sha, workstream=wsr.ws.id)
            missing = [c for c in commits
                       if f"{wsr.ws.id}/{c.step}" in self.steps
                       and self.steps[f"{wsr.ws.id}/{c.step}"].state is not StepState.COMPLETED]
            if not missing and head == wsr.head_sha:
                continue
            with self.store.write(self.fence) as tx:
                for commit in missing:
                    sr = self.steps[f"{wsr.ws.id}/{commit.step}"]
                    self._set_step(tx, sr, StepState.COMPLETED, checkpoint_sha=commit.sha,
                                   reason=None, finished_at=tx.now)
                    tx.insert_checkpoint(run_id=self.run_id, ws_id=wsr.ws.id,
                                         step_id=commit.step, attempt=int(commit.attempt or 0),
                                         sha=commit.sha, adopted=True)
                    tx.event(self.run_id, "step.adopted", wsr.ws.id, commit.step,
                             sha=commit.sha, attempt=commit.attempt)
                    adopted += 1
                if head != wsr.head_sha:
                    wsr.head_sha = head
                    tx.update_ws(self.run_id, wsr.ws.id, head_sha=head)
        return adopted


def _history_json(sr: StepRuntime) -> str:
    return json.dumps({"history": sr.history.to_dict(), "next": sr.next_kind.value})


def _finding(row: Any) -> Finding:
    return Finding(
        detector=row.detector, message=row.message,
        failure_class=FailureClass(row.failure_class), severity=Severity(row.severity),
        file=row.file, line=row.line, column=row.col, code=row.code,
        retry_after=row.retry_after, fingerprint=row.fingerprint,
    )
