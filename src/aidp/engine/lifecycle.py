"""A workstream's lifecycle after its attempts: acting on reports, finishing, merging, failing.

Owns what the orchestrator does with a finished attempt (``_on_report``, ``_apply``), how a
workstream starts and ends (``_start_ws``, ``_finish_ws`` with its merge into the target,
``_fail_ws`` skipping its dependants), compensations (``_compensate``), the end of a run
(``_skip_unreachable``, ``_settle``, ``_cancel_rest``, ``_finish``). Runs on the orchestrator's
thread only; it never runs a step's tool (the executor does) and never picks what runs next (the
scheduler does).
"""

from __future__ import annotations

import time
from typing import Any

from aidp.core.dag import descendants
from aidp.core.states import (
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    WORKSTREAM_TRANSITIONS,
    AttemptKind,
    RunState,
    StepState,
    WorkstreamState,
    check,
)
from aidp.engine.compensation import run_compensations
from aidp.engine.invocation import prompt_text
from aidp.engine.ledger import HELD, RunLedger
from aidp.engine.run import RunSummary
from aidp.engine.runtime import AttemptReport, StepRuntime, WorkstreamRuntime
from aidp.exceptions import AidpError, LeaseLostError, StateError
from aidp.model.workstream import MergeStrategy
from aidp.resilience.recovery import History
from aidp.workspace.merge import plan_merge

__all__ = ["Lifecycle"]


class Lifecycle(RunLedger):
    """The orchestrator's workstream lifecycle (a mixin of
    :class:`~aidp.engine.orchestrator.Orchestrator`)."""

    def _start_ws(self, wsr: WorkstreamRuntime, *, record: bool) -> None:
        """Mark ``wsr`` running. Unless ``record``, the store learns it in the same transaction
        as the worktree (Executor.prepare, on the worker), saving a commit per workstream."""
        if record:
            with self.store.write(self.fence) as tx:
                self._set_ws(tx, wsr, WorkstreamState.RUNNING, started_at=tx.now)
                tx.event(self.run_id, "workstream.started", wsr.ws.id, branch=wsr.branch)
        else:
            wsr.state = check(WORKSTREAM_TRANSITIONS, wsr.state, WorkstreamState.RUNNING)
        self.reporter.event("workstream.started", wsr.ws.id, None, {"branch": wsr.branch})

    def _on_report(self, wsr: WorkstreamRuntime, sr: StepRuntime, report: AttemptReport, *,
                   applied: bool = False, continuing: bool = False) -> None:
        """Act on a finished attempt: events, compensation, what follows a failure, the end
        of the workstream. ``applied``: the report is already in ``sr`` (:func:`_apply`);
        ``continuing``: the worker went on with the workstream's next step."""
        if report.prepare_error is not None:
            self._fail_ws(wsr, f"could not prepare the worktree: {report.prepare_error}")
            return
        if not applied:
            self._apply(sr, report)
        self.reporter.event(f"step.{report.state.value}", wsr.ws.id, sr.step.id, {
            "attempt": report.number, "outcome": report.outcome.value if report.outcome else None,
            "reason": report.reason, "sha": report.checkpoint_sha,
            "next_attempt_at": report.next_attempt_at, "failure_class": report.failure_class,
            "next": report.next_kind if report.next_attempt_at else None,
            **({"worktree": wsr.worktree_path, "prompt": prompt_text(sr.step)}
               if report.state is StepState.AWAITING_APPROVAL else {}),
        })
        if report.state in (StepState.FAILED, StepState.TIMEOUT, StepState.CANCELLED):
            self._compensate(wsr, sr)
        if report.state in (StepState.FAILED, StepState.TIMEOUT):
            choice = self.decide(sr, report) if self.decide is not None else None
            if choice == "retry":
                sr.history, sr.profile, sr.next_kind, sr.fix_findings = (
                    History(), None, AttemptKind.RETRY, ())
                with self.store.write(self.fence) as tx:
                    self._set_step(tx, sr, StepState.PENDING, attempts=0, reason=None,
                                   history_json=None, profile=None, failure_class=None,
                                   outcome=None)
                    tx.event(self.run_id, "step.retry_requested", wsr.ws.id, sr.step.id)
                return
            if choice == "skip":
                self.user_skipped.add(sr.key)
                with self.store.write(self.fence) as tx:
                    self._set_step(tx, sr, StepState.SKIPPED, reason="skipped by the user")
                    tx.event(self.run_id, "step.skipped", wsr.ws.id, sr.step.id,
                             reason="skipped by the user")
            elif choice == "abort":
                self.aborted = True
                with self.store.write() as tx:
                    tx.update_run(self.run_id, cancel_requested=True)
                    tx.event(self.run_id, "run.cancel_requested", by="interactive abort")
            else:
                self._skip_step_dependants(wsr, sr)
        if not continuing and all(other.state.terminal for other in wsr.open_steps()):
            self._finish_ws(wsr, recorded=report.closed_workstream)

    def _apply(self, sr: StepRuntime, report: AttemptReport) -> None:
        """Copy what an attempt left for the next one into the step's runtime."""
        sr.state = check(STEP_TRANSITIONS, sr.state, report.state)
        sr.attempts = report.counted
        sr.last_number = max(report.number, report.last_number)
        sr.reason = report.reason
        sr.next_attempt_at = report.next_attempt_at
        sr.history = report.history
        sr.next_kind = report.next_kind
        sr.profile = report.profile
        sr.fix_findings = report.fix_findings
        if report.checkpoint_sha:
            sr.checkpoint_sha = report.checkpoint_sha
        if sr.state in HELD:
            self.waiting.add(sr.key)

    def _skip_step_dependants(self, wsr: WorkstreamRuntime, failed: StepRuntime) -> None:
        doomed = descendants({s.id: s.depends_on for s in wsr.ws.steps}, failed.step.id)
        reason = f"dependency {failed.step.id} {failed.state.value}"
        with self.store.write(self.fence) as tx:
            for step_id in sorted(doomed):
                sr = self.steps[f"{wsr.ws.id}/{step_id}"]
                if not sr.state.terminal:
                    self._set_step(tx, sr, StepState.SKIPPED, reason=reason, finished_at=tx.now)
                    tx.event(self.run_id, "step.skipped", wsr.ws.id, step_id, reason=reason)
                    self.reporter.event("step.skipped", wsr.ws.id, step_id, {"reason": reason})

    def _finish_ws(self, wsr: WorkstreamRuntime, *, recorded: bool = False) -> None:
        """End ``wsr``: failed if a step did not complete, else merged and completed.
        ``recorded``: its last attempt already wrote the completion (no merge to do)."""
        if recorded:
            wsr.state = check(WORKSTREAM_TRANSITIONS, wsr.state, WorkstreamState.COMPLETED)
            wsr.reason = None
            self._release(wsr)
            self.reporter.event("workstream.completed", wsr.ws.id, None,
                                {"head": wsr.head_sha, "merged_sha": None})
            return
        steps = wsr.steps
        failed = [sr for sr in steps
                  if sr.state is not StepState.COMPLETED and sr.key not in self.user_skipped]
        if failed:
            first = failed[0]
            if self.cancelling and first.state is StepState.CANCELLED:
                return  # cancelled with the rest of the run (_cancel_rest), not failed
            self._fail_ws(wsr, f"step {first.step.id} {first.state.value}: {first.reason}")
            return
        waived = [sr for sr in steps if sr.key in self.user_skipped]
        if waived:  # the work was not done: neither completed nor merged
            self._end_ws_skipped(wsr, f"step {waived[0].step.id} skipped by the user")
            return
        landing, merge = None, wsr.ws.merge
        if merge is not None and merge.strategy is not MergeStrategy.NONE and merge.checks:
            self._queue_merge(wsr)  # lands (or is rejected) when its batch has been checked
            return
        if merge is not None and merge.strategy is not MergeStrategy.NONE:
            try:
                landing = plan_merge(
                    self.repo, wsr.head_sha or wsr.branch, merge.into,
                    strategy=merge.strategy.value,
                    message=f"aidp: {merge.strategy.value} {wsr.ws.id} "
                    f"({wsr.ws.title or wsr.branch})",
                    trailers={"Aidp-Run": self.run_id, "Aidp-Workstream": wsr.ws.id},
                    create_from=wsr.base_ref,
                )
            except AidpError as exc:  # the work stands: no compensation, dependants run
                self._merge_failed(wsr, merge.into, exc)
                return
        merged_sha = None if landing is None else landing.new
        wsr.merged_sha = merged_sha  # a squash result is where its dependants start
        wsr.merge_changed = landing is not None and landing.moves
        merge_info = self._merge_info(wsr)
        self._release(wsr)
        try:
            with self.store.write(self.fence) as tx:
                self._set_ws(tx, wsr, WorkstreamState.COMPLETED, finished_at=tx.now,
                             head_sha=wsr.head_sha, merged_sha=merged_sha, reason=None)
                tx.event(self.run_id, "workstream.completed", wsr.ws.id, head=wsr.head_sha,
                         **merge_info)
                if landing is not None:
                    landing.apply()  # only while our lease is current (see Executor._record)
        except LeaseLostError:
            raise
        except StateError as exc:  # the target moved meanwhile: the work stands, unmerged
            assert landing is not None
            wsr.merged_sha = None
            self._merge_failed(wsr, landing.branch, exc)
            return
        self.reporter.event("workstream.completed", wsr.ws.id, None,
                            {"head": wsr.head_sha, **merge_info})

    @staticmethod
    def _merge_info(wsr: WorkstreamRuntime) -> dict[str, Any]:
        """What the run's output says of ``wsr``'s merge: the target, the strategy, the sha,
        and whether the target changed (None: merged by an earlier orchestrator, not known)."""
        merged = wsr.merged_sha is not None and wsr.ws.merge is not None
        return {"merged_sha": wsr.merged_sha,
                "merged_into": wsr.ws.merge.into if merged and wsr.ws.merge else None,
                "merge_strategy": wsr.ws.merge.strategy.value if merged and wsr.ws.merge
                else None,
                "merge_changed": wsr.merge_changed if merged else None}

    def _queue_merge(self, wsr: WorkstreamRuntime) -> None:
        """Put finished ``wsr`` in its target's merge queue (``merge.checks``): see
        :class:`~aidp.engine.mergequeue.MergeQueue`, which the orchestrator mixes in."""
        raise NotImplementedError

    def _queue_summaries(self) -> list[dict[str, Any]]:
        """What the run's summary says of its merge queues (none without ``merge.checks``)."""
        return []

    def _merge_failed(self, wsr: WorkstreamRuntime, into: str, exc: AidpError) -> None:
        wsr.merge_failed = True
        self._fail_ws(wsr, f"all steps completed; merging into {into} failed: {exc.message}")

    def _compensate(self, wsr: WorkstreamRuntime, sr: StepRuntime | None) -> None:
        """Run the compensations of a failed or cancelled step (``sr``) or workstream."""
        actions = sr.step.compensate if sr is not None else wsr.ws.compensate
        if not actions:
            return
        results = run_compensations(
            actions, store=self.store, fence=self.fence, repo=self.repo, ws_id=wsr.ws.id,
            step_id=sr.step.id if sr is not None else None, branch=wsr.branch,
            worktree=wsr.worktree, pool=self.pool,
            log_dir=self.repo / ".aidp" / "runs" / self.run_id / "logs" / wsr.ws.id,
            grace_s=self.settings.run.kill_grace, release=lambda: self._release(wsr),
        )
        for result in results:
            self.reporter.event(
                "compensation.succeeded" if result.ok else "compensation.failed", wsr.ws.id,
                sr.step.id if sr is not None else None,
                {"action": result.kind, "detail": result.detail})

    def _fail_ws(self, wsr: WorkstreamRuntime, reason: str) -> None:
        # work that completed and only failed to land (refused, conflicting, or rejected by
        # the integration checks) is kept as it is: no compensation
        if (not wsr.merge_failed and not wsr.merge_rejected
                and (wsr.base_sha is not None or wsr.worktree is not None)):
            self._compensate(wsr, None)
        self._release(wsr)
        with self.store.write(self.fence) as tx:
            for step_id in wsr.step_order:
                sr = self.steps[f"{wsr.ws.id}/{step_id}"]
                if not sr.state.terminal:
                    self._set_step(tx, sr, StepState.SKIPPED, reason=reason, finished_at=tx.now)
            self._set_ws(tx, wsr, WorkstreamState.FAILED, finished_at=tx.now, reason=reason,
                         head_sha=wsr.head_sha)
            tx.event(self.run_id, "workstream.failed", wsr.ws.id, reason=reason)
            # a workstream whose steps completed and only its merge failed still delivers its
            # branch: its dependants build on that and run (not one the integration checks
            # rejected: its dependants' branches hold its work, which would land with theirs)
            skipped = ([] if wsr.delivered
                       else self._skip_dependants(tx, wsr, f"dependency {wsr.ws.id} failed"))
        self.reporter.event("workstream.failed", wsr.ws.id, None, {"reason": reason})
        for ws_id in skipped:
            self.reporter.event("workstream.skipped", ws_id, None,
                                {"reason": f"dependency {wsr.ws.id} failed"})

    def _end_ws_skipped(self, wsr: WorkstreamRuntime, reason: str) -> None:
        """End ``wsr`` skipped (a step skipped at --interactive): not merged, and its pending
        dependants skipped, as the work they build on was not done."""
        self._release(wsr)
        with self.store.write(self.fence) as tx:
            self._set_ws(tx, wsr, WorkstreamState.SKIPPED, finished_at=tx.now, reason=reason,
                         head_sha=wsr.head_sha)
            tx.event(self.run_id, "workstream.skipped", wsr.ws.id, reason=reason)
            skipped = self._skip_dependants(tx, wsr, f"dependency {wsr.ws.id} skipped")
        self.reporter.event("workstream.skipped", wsr.ws.id, None, {"reason": reason})
        for ws_id in skipped:
            self.reporter.event("workstream.skipped", ws_id, None,
                                {"reason": f"dependency {wsr.ws.id} skipped"})

    def _skip_dependants(self, tx: Any, wsr: WorkstreamRuntime, reason: str) -> list[str]:
        """Skip the pending workstreams depending on ``wsr``; their ids."""
        skipped = []
        for ws_id in sorted(self.dependants[wsr.ws.id]):
            other = self.ws[ws_id]
            if other.state is WorkstreamState.PENDING:
                self._set_ws(tx, other, WorkstreamState.SKIPPED, reason=reason,
                             finished_at=tx.now)
                for step_id in other.step_order:
                    sr = self.steps[f"{ws_id}/{step_id}"]
                    if not sr.state.terminal:
                        self._set_step(tx, sr, StepState.SKIPPED, reason=reason)
                tx.event(self.run_id, "workstream.skipped", ws_id, reason=reason)
                skipped.append(ws_id)
        return skipped

    def _cancel_rest(self) -> None:
        for wsr in self.ws.values():
            if not wsr.state.terminal and (wsr.base_sha is not None or wsr.worktree is not None):
                self._compensate(wsr, None)
        for sr in self.steps.values():
            if sr.state is StepState.AWAITING_APPROVAL:
                self._unkeep(self.ws[sr.ws_id])
        with self.store.write(self.fence) as tx:
            for sr in self.steps.values():
                if not sr.state.terminal:
                    self._set_step(tx, sr, StepState.CANCELLED, reason="run cancelled",
                                   finished_at=tx.now)
            for wsr in self.ws.values():
                if not wsr.state.terminal:
                    self._set_ws(tx, wsr, WorkstreamState.CANCELLED, reason="run cancelled",
                                 finished_at=tx.now)
        for wsr in self.ws.values():
            if wsr.worktree is not None:
                self._release(wsr)

    def _finish(self) -> RunSummary:
        states = [wsr.state for wsr in self.ws.values()]
        if any(s is WorkstreamState.CANCELLED for s in states):
            final = RunState.CANCELLED
        elif all(s is WorkstreamState.COMPLETED for s in states):
            final = RunState.COMPLETED
        else:
            final = RunState.FAILED
        with self.store.write(self.fence) as tx:
            self.run_state = check(RUN_TRANSITIONS, self.run_state, final)
            tx.update_run(self.run_id, status=final.value, finished_at=tx.now)
            tx.event(self.run_id, "run.finished", status=final.value)
        summary = RunSummary(self.run_id, final, [
            {
                "id": wsr.ws.id, "status": wsr.state.value, "branch": wsr.branch,
                "head": wsr.head_sha, "reason": wsr.reason, **self._merge_info(wsr),
                "steps": {s: self.steps[f"{wsr.ws.id}/{s}"].state.value for s in wsr.step_order},
            }
            for wsr in self.ws.values()
        ], time.monotonic() - self.started, self._queue_summaries())
        self.reporter.event("run.finished", None, None, summary.to_dict())
        return summary

    def _skip_unreachable(self) -> None:
        """Nothing runs and nothing can start: what is left can never become ready. Each is
        skipped with the reason: the dependency that did not complete."""
        for wsr in self.ws.values():
            if wsr.state not in (WorkstreamState.PENDING, WorkstreamState.RUNNING):
                continue
            blocked = [self.steps[f"{wsr.ws.id}/{s}"] for s in wsr.step_order
                       if not self.steps[f"{wsr.ws.id}/{s}"].state.terminal]
            deps = [d for d in wsr.ws.depends_on if not self.ws[d].delivered]
            ws_reason = (f"dependency {deps[0]} is {self.ws[deps[0]].state.value}" if deps
                         else "its steps can no longer complete")
            with self.store.write(self.fence) as tx:
                for sr in blocked:
                    waits = [d for d in sr.step.depends_on
                             if self.steps[f"{wsr.ws.id}/{d}"].state is not StepState.COMPLETED
                             and f"{wsr.ws.id}/{d}" not in self.user_skipped]
                    reason = (f"step {waits[0]} is "
                              f"{self.steps[f'{wsr.ws.id}/{waits[0]}'].state.value}"
                              if waits else ws_reason)
                    self._set_step(tx, sr, StepState.SKIPPED, finished_at=tx.now, reason=reason)
            if wsr.state is WorkstreamState.RUNNING:
                self._finish_ws(wsr)
            else:
                with self.store.write(self.fence) as tx:
                    self._set_ws(tx, wsr, WorkstreamState.SKIPPED, finished_at=tx.now,
                                 reason=ws_reason)

    def _settle(self) -> None:
        """Finish workstreams whose steps all ended before this orchestrator started (a resume
        after a failed merge, a crash between the last step and the workstream's end, or a
        rollback to the last step), once their dependencies completed."""
        for ws_id in sorted(self.to_settle):
            wsr = self.ws[ws_id]
            if wsr.state.terminal:
                self.to_settle.discard(ws_id)
                continue
            if not all(self.ws[d].delivered for d in wsr.ws.depends_on):
                continue
            self.to_settle.discard(ws_id)
            if wsr.state is WorkstreamState.PENDING:
                self._start_ws(wsr, record=True)
            self._finish_ws(wsr)
