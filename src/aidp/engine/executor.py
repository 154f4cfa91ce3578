"""The executor: one attempt of one step, from a prepared worktree to a checkpoint commit.

What the design calls the Executor (:class:`Executor`): it runs on a worker thread, gives the
workstream a worktree from the pool (:mod:`~aidp.engine.preparation`: at its last checkpoint,
or at its start with its dependencies merged), and runs an attempt in four phases:

1. **admit** (:mod:`~aidp.engine.admission`): the profile, the budgets, the breakers, a human gate;
2. **invoke** (:mod:`~aidp.engine.invocation`): the tool in its own process session, the scope
   of its changes, the acceptance checks, the outcome and -- on success -- the checkpoint commit;
3. **judge**: the findings, their failure class and the recovery verdict (retry, fix, escalate,
   fail) of :func:`aidp.resilience.recovery.decide`;
4. **record**: the breakers told, the diagnostics bundle kept, the outcome written.

The store sees an attempt in these write transactions:

- the **claim** (``_claim``): the attempt row inserted and the step turned running, before the
  tool starts, so that a crash leaves an attempt in flight that resume finds, kills and counts
  (a fresh worktree's preparation is deferred into this transaction: one commit less);
- ``step.validating``, when acceptance checks follow the tool: a progress mark only;
- the **outcome** (``_record``): the attempt row finished, its findings, the step's new state
  and history, the checkpoint row, the workstream's head (and its completion when this was its
  last step and nothing merges), and their events -- one transaction, so a reader never sees an
  attempt finished without its step or a checkpoint without its attempt. The breaker book keeps
  its own rows in its own transactions (:class:`~aidp.state.breakers.BreakerBook`): a permit at
  admission, its settlement just before the outcome.

A refused attempt (no profile, budget spent, breaker open, waiting for a human) is recorded by
admission in a single transaction instead. Git is written before the database (the checkpoint
commit, then its row) so that a crash in between leaves a commit that resume adopts. The executor
never chooses what runs next (the scheduler does) and never finishes a workstream that merges
(the orchestrator does).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aidp.config import Settings, ToolProfile
from aidp.core.clock import Clock, SystemClock
from aidp.core.states import (
    AttemptKind,
    AttemptOutcome,
    FailureClass,
    StepState,
    WorkstreamState,
)
from aidp.engine.admission import Admission
from aidp.engine.diagnosis import (
    build_fix_prompt,
    check_finding,
    classify,
    dedupe_sourced,
    detect,
    detect_tool,
    finding_rows,
    no_change_finding,
    scope_findings,
)
from aidp.engine.invocation import Invoker, prompt_text
from aidp.engine.outcome import (
    FIXABLE_CODES,
    MODEL_ADAPTERS,
    CheckResult,
    ToolResult,
    decide_outcome,
)
from aidp.engine.preparation import Preparation
from aidp.engine.runtime import AttemptReport, StepRuntime, WorkstreamRuntime
from aidp.errors.finding import CheckEvidence, Finding
from aidp.exceptions import AidpError, ToolError
from aidp.model.workstream import MergeStrategy
from aidp.process.runner import CappedLog, build_env
from aidp.resilience.recovery import Action, History, decide, failure_class
from aidp.state.breakers import BreakerBook, Permit
from aidp.state.store import Store
from aidp.state.tx import Fence, Tx
from aidp.tools.adapter import AdapterResult
from aidp.tools.edits import DETECTOR as EDITS_DETECTOR
from aidp.workspace.checkpoint import RefUpdate, discard_unstaged, prepare_checkpoint, stage_all
from aidp.workspace.worktrees import WorktreePool

if TYPE_CHECKING:
    from aidp.model.workstream import Step
    from aidp.tools.adapter import Usage
    from aidp.tools.gateway.grant import Live

__all__ = ["Executor", "make_executor"]


@dataclass(frozen=True)
class _Admitted:
    """An attempt admission let through: what it runs as."""

    number: int
    kind: AttemptKind
    profile_name: str
    profile: ToolProfile | None
    permit: Permit | None
    choice_reason: str | None


@dataclass(frozen=True)
class _Claim:
    """The attempt's row, inserted before the tool starts."""

    attempt_id: int
    token: str
    log_path: Path
    worktree: Path
    started_at: float


@dataclass(frozen=True)
class _Invoked:
    """What the tool and the checks did, and the outcome decided from it."""

    result: AdapterResult
    changed: list[str]
    outside: list[str]
    checks: list[CheckResult]
    check_outputs: list[CheckEvidence]
    outcome: AttemptOutcome
    reason: str | None
    sha: str | None
    output_bytes: int
    env_names: list[str]
    tool_sourced: list[tuple[str, Finding]]  # the adapter's and the detectors' on its output
    detector_failures: tuple[str, ...]
    # the checkpoint commit's branch move, made in the fenced transaction that records it
    checkpoint: RefUpdate | None = None


@dataclass(frozen=True)
class _Judgement:
    """The findings of the attempt and what follows it."""

    interrupted: bool
    sourced: list[tuple[str, Finding]]
    findings: list[Finding]
    detector_failures: tuple[str, ...]
    failure: FailureClass | None
    state: StepState
    reason: str | None
    history: History
    counted: int
    next_kind: AttemptKind
    next_profile: str | None
    next_at: float | None
    delay_s: float
    fix_findings: tuple[Finding, ...]
    step_class: str | None

class Executor(Preparation, Admission, Invoker):
    """Runs attempts for one run; shared by the worker threads."""

    def __init__(
        self,
        *,
        store: Store,
        fence: Fence,
        repo: Path,
        settings: Settings,
        pool: WorktreePool,
        cancel: threading.Event,
        on_output: Callable[[str, str, bytes], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.breakers = BreakerBook(store, clock=self.clock.now, run_id=fence.run_id)
        self.on_output = on_output
        self.interrupting = False  # set when aidp stops (Ctrl-C) rather than the run cancelled
        self.fence = fence
        self.run_id = fence.run_id
        self.repo = repo
        self.settings = settings
        self.pool = pool
        self.cancel = cancel
        self.run_dir = repo / ".aidp" / "runs" / self.run_id
        self.host = socket.gethostname()
        self.base_env = dict(os.environ)  # read once: os.environ decodes on every access
        self._made_dirs: set[Path] = set()

    def close(self) -> None:
        """Let go of what the executor holds beyond the run (nothing, locally)."""

    # -- one attempt -------------------------------------------------------------------------

    def run_attempt(
        self,
        wsr: WorkstreamRuntime,
        sr: StepRuntime,
        may_close: bool = False,
    ) -> AttemptReport:
        """Run one attempt of ``sr`` in ``wsr``'s worktree (:meth:`prepare_for` made it
        ready); every effect is recorded before this returns.

        ``may_close``: when the workstream's other steps all completed and this attempt
        succeeds, the workstream's worktree goes back to the pool here, on the worker, instead
        of on the orchestrator's thread (their states cannot change meanwhile: a workstream
        runs one step at a time).
        """
        if sr.step.best_of is not None and sr.next_kind is not AttemptKind.APPROVAL:
            from aidp.engine.best_of import run_round

            return run_round(self, wsr, sr, may_close)
        admitted = self._admission(wsr, sr)
        if isinstance(admitted, AttemptReport):
            return admitted
        claim = self._claim(wsr, sr, admitted)
        invoked = self._invoke(wsr, sr, admitted, claim)
        judgement = self._judge(sr, admitted, claim, invoked)
        if admitted.kind is AttemptKind.APPROVAL:  # the gate's work is committed or judged
            self.pool.unkeep(claim.worktree)
        return self._record(wsr, sr, admitted, claim, invoked, judgement, may_close)

    def _admission(self, wsr: WorkstreamRuntime, sr: StepRuntime) -> _Admitted | AttemptReport:
        """Phase 1: the attempt's number, kind and profile, or the report that it may not
        start (no profile, a budget spent, every breaker open, a human gate)."""
        step = sr.step
        number = sr.last_number + 1
        kind = (sr.next_kind if sr.last_number or sr.next_kind is AttemptKind.APPROVAL
                else AttemptKind.FIRST)
        profile_name = sr.profile or step.tool
        matched: str | None = None
        if sr.profile is None and step.capability is not None:
            try:
                choice = self._choose(step)
            except ToolError as exc:
                return self._no_profile(wsr, sr, exc)
            profile_name, matched = choice.profile, choice.reason
        spent = self._budget_spent(wsr, step, profile_name)
        if spent is not None:
            return self._stop_for_budget(wsr, sr, number, kind, profile_name, spent)
        gate = self._admit(wsr, sr, profile_name)
        if isinstance(gate, AttemptReport):
            return gate
        profile_name, permit, choice_reason = gate
        if matched is not None:
            choice_reason = matched + (f"; {choice_reason}" if choice_reason else "")
        profile = self.settings.profile(profile_name)
        if profile is not None and profile.adapter == "manual" and kind is not AttemptKind.APPROVAL:
            assert wsr.worktree is not None
            # before the gate opens: whatever ends aidp, the person's work there stays theirs
            self.pool.keep(wsr.worktree, f"{self.run_id} {wsr.ws.id}/{sr.step.id}: human gate")
            return self._await_approval(wsr, sr)
        return _Admitted(number, kind, profile_name, profile, permit, choice_reason)

    def _claim(self, wsr: WorkstreamRuntime, sr: StepRuntime, admitted: _Admitted,
               candidate: tuple[int, int | None] | None = None) -> _Claim:
        """The first write transaction: the attempt row and the step running. ``candidate``:
        (round, place) of a best-of-N candidate (the round: the number of its first attempt)."""
        step, number, kind = sr.step, admitted.number, admitted.kind
        profile_name, profile = admitted.profile_name, admitted.profile
        assert wsr.worktree is not None
        worktree = wsr.worktree.path
        token = uuid.uuid4().hex
        log_path = self.run_dir / "logs" / wsr.ws.id / f"{step.id}.{number}.log"
        self._mkdir(log_path.parent)
        started_at = self.clock.now()
        with self.store.write(self.fence) as tx:
            attempt_id = tx.insert_attempt(
                run_id=self.run_id, ws_id=wsr.ws.id, step_id=step.id, number=number,
                host=self.host, token=token, log_path=str(log_path), kind=kind.value,
                profile=profile_name, adapter=profile.adapter if profile else None,
                choice_reason=admitted.choice_reason, capability=step.capability,
                language=step.language,
                **({"round": candidate[0], "candidate": candidate[1]} if candidate else {}),
            )
            tx.update_step(self.run_id, wsr.ws.id, step.id, status=StepState.RUNNING.value,
                           reason=None, next_attempt_at=None,
                           **({"started_at": tx.now} if sr.last_number == 0 else {}))
            tx.event(self.run_id, "step.started", wsr.ws.id, step.id, attempt=number,
                     attempt_kind=kind.value, profile=profile_name,
                     **({"choice_reason": admitted.choice_reason}
                        if admitted.choice_reason else {}))
        return _Claim(attempt_id, token, log_path, worktree, started_at)

    def _invoke(self, wsr: WorkstreamRuntime, sr: StepRuntime, admitted: _Admitted,
                claim: _Claim, candidate: int | None = None) -> _Invoked:
        """Phase 2: run the tool, stage its changes, run the checks, decide the outcome and
        commit the checkpoint on success (git only: the store learns it in :meth:`_record`).

        ``candidate``: a best-of-N candidate's place (1..N): ``{candidate}`` and
        ``$AIDP_CANDIDATE`` tell the tool (empty otherwise)."""
        step, number, kind = sr.step, admitted.number, admitted.kind
        profile_name, profile = admitted.profile_name, admitted.profile
        worktree, token, log_path = claim.worktree, claim.token, claim.log_path
        assert wsr.worktree is not None
        key_env = profile.key_env() if profile else None
        names = [*wsr.ws.env, *step.env, *(profile.env if profile else ()),
                 *([key_env] if key_env else [])]
        secrets = [self.base_env[n] for n in names if self.base_env.get(n)]
        prompt = step.prompt
        if kind in (AttemptKind.FIX, AttemptKind.ESCALATE) and sr.fix_findings:
            prompt = build_fix_prompt(prompt_text(step), sr.fix_findings,
                                      kind=kind.value)
        values = self._placeholders(wsr, step, number, worktree, prompt)
        findings_file = ""
        if sr.fix_findings and kind in (AttemptKind.FIX, AttemptKind.ESCALATE):
            path = self.run_dir / "findings" / wsr.ws.id / f"{step.id}.{number}.json"
            self._mkdir(path.parent)
            path.write_text(json.dumps([f.to_dict() for f in sr.fix_findings], indent=1),
                            encoding="utf-8")
            findings_file = str(path)
        values["findings_file"] = findings_file
        values["attempt_kind"] = kind.value
        values["candidate"] = str(candidate or "")
        env = build_env(self.base_env, names, {
            "AIDP_CANDIDATE": str(candidate or ""),
            "AIDP_RUN_ID": self.run_id, "AIDP_WORKSTREAM": wsr.ws.id, "AIDP_STEP": step.id,
            "AIDP_ATTEMPT": str(number), "AIDP_WORKTREE": str(worktree),
            "AIDP_PROMPT_FILE": str(values["prompt_file"]), "AIDP_ATTEMPT_KIND": kind.value,
            "AIDP_FINDINGS_FILE": findings_file,
        })
        log = CappedLog(log_path, cap_bytes=self.settings.run.log_cap_bytes)
        changed: list[str] = []
        outside: list[str] = []
        checks: list[CheckResult] = []
        check_outputs: list[CheckEvidence] = []
        result = AdapterResult(None, error="not run")
        tool_sourced: list[tuple[str, Finding]] = []
        detector_failures: tuple[str, ...] = ()
        try:
            result = self._run_tool(
                step, wsr, sr, profile_name, values, env, secrets, log, token, prompt, number,
                budget=self._live_budget(wsr, step, profile_name))
            tool_result = ToolResult(result.exit_code, result.signal, result.timed_out,
                                     result.cancelled, result.error)
            clean = (tool_result.exit_code == 0 and not tool_result.cancelled
                     and not tool_result.timed_out and tool_result.signal is None)
            if clean:
                changed = stage_all(wsr.worktree)
                outside = [p for p in changed if not wsr.scope.matches(p)]
            if not tool_result.cancelled:  # the detectors judge every attempt, not only failures
                log.sync()  # past the cap, the kept tail reaches the file
                tool_sourced, detector_failures = detect_tool(
                    tool=profile_name, adapter=profile.adapter if profile else "?",
                    result=result, log_path=log_path, worktree=worktree, changed=changed)
            tool_findings = [f for _, f in tool_sourced]
            model_tool = profile is not None and profile.adapter in MODEL_ADAPTERS

            def judged(checks: list[CheckResult]) -> tuple[AttemptOutcome, str | None]:
                return decide_outcome(
                    tool_result, outside_scope=outside, changed=changed,
                    requires_change=step.requires_change, checks=checks,
                    tool_findings=tool_findings, model_tool=model_tool)

            outcome, reason = judged([])
            if result.budget_exceeded is not None:  # the gateway refused a request: stopped
                outcome, reason = AttemptOutcome.BUDGET_EXCEEDED, result.budget_exceeded
            if outcome is AttemptOutcome.SUCCEEDED and step.checks:  # never after a failure
                self._validating(wsr, step, number, len(changed))
                checks, check_outputs = self._run_checks(step, values, env, secrets, log,
                                                         worktree, token)
                outcome, reason = judged(checks)
            sha, checkpoint = None, None
            if outcome is AttemptOutcome.SUCCEEDED:
                checkpoint = prepare_checkpoint(
                    wsr.worktree,
                    message=f"aidp: {wsr.ws.id}/{step.id}"
                    + (f": {step.title}" if step.title else ""),
                    trailers={"Aidp-Run": self.run_id, "Aidp-Workstream": wsr.ws.id,
                              "Aidp-Step": step.id, "Aidp-Attempt": str(number)},
                    unchanged=not changed,
                )
                sha = checkpoint.new
                if checks:
                    discard_unstaged(wsr.worktree, to=sha)
            else:
                wsr.needs_reset = True
        except AidpError as exc:  # git failed under the attempt: record it, never lose the row
            # The error says whether trying again may help (no git error does today).
            outcome = (AttemptOutcome.FAILED_TRANSIENT if exc.retryable
                       else AttemptOutcome.FAILED_PERMANENT)
            reason, sha, checkpoint = exc.message, None, None
            log.note(f"[aidp] {exc.message}")
            wsr.needs_reset = True
        finally:
            log.close()
        return _Invoked(result, changed, outside, checks, check_outputs, outcome, reason, sha,
                        log.bytes_seen, names, tool_sourced, detector_failures, checkpoint)

    def _live_budget(self, wsr: WorkstreamRuntime, step: Step, profile_name: str
                     ) -> Callable[[Usage, Sequence[Live]], str | None] | None:
        """What the gateway asks before each model request: why no more may be spent."""
        return lambda live, others: self._budget_spent(wsr, step, profile_name, live, others)

    def _validating(self, wsr: WorkstreamRuntime, step: Step, number: int, changed: int) -> None:
        """The tool is done and the checks start: a progress mark in the store."""
        with self.store.write(self.fence) as tx:
            tx.update_step(self.run_id, wsr.ws.id, step.id, status=StepState.VALIDATING.value)
            tx.event(self.run_id, "step.validating", wsr.ws.id, step.id, attempt=number,
                     changed=changed)

    def _judge(self, sr: StepRuntime, admitted: _Admitted, claim: _Claim, invoked: _Invoked
               ) -> _Judgement:
        """Phase 3: the findings (the tool's, the detectors', scope and checks), their failure
        class and the recovery verdict: the step's next state and what its next attempt is."""
        step = sr.step
        _profile_name, _profile = admitted.profile_name, admitted.profile
        _worktree, _log_path, started_at = claim.worktree, claim.log_path, claim.started_at
        result, _changed, outside = invoked.result, invoked.changed, invoked.outside
        checks, check_outputs = invoked.checks, invoked.check_outputs
        outcome, reason = invoked.outcome, invoked.reason
        interrupted = outcome is AttemptOutcome.CANCELLED and self.interrupting
        sourced = list(invoked.tool_sourced) if outcome is not AttemptOutcome.CANCELLED else [
            ("tool", f) for f in result.findings]
        detector_failures = invoked.detector_failures
        if outcome not in (AttemptOutcome.SUCCEEDED, AttemptOutcome.CANCELLED):
            failed_checks = [c for c in check_outputs if c.exit_code != 0]
            detected = detect(None, failed_checks)
            sourced += detected.findings
            detector_failures += detected.failures
            sourced += [("scope", f) for f in scope_findings(outside)]
            if outcome is AttemptOutcome.NO_CHANGE:
                sourced.append(("aidp", no_change_finding()))
            explained = {source for source, _ in detected.findings}
            sourced += [(c.name, check_finding(c.name, c.exit_code, c.output))
                        for c in failed_checks if c.name not in explained]
        sourced = dedupe_sourced(sourced)
        findings = [f for _, f in sourced]
        detected_class = classify(findings)
        failure = failure_class(outcome, detected_class)
        # What the tool itself can fix when told: failed checks, no change, changes outside
        # the scope, edits the adapter could not apply (not: bad credentials, unknown model).
        fixable = outcome is not AttemptOutcome.BUDGET_EXCEEDED and (
            bool(outside) or outcome is AttemptOutcome.NO_CHANGE or any(
            c.exit_code != 0 for c in checks) or any(
            f.detector == EDITS_DETECTOR for f in result.findings) or any(
            f.code in FIXABLE_CODES for _, f in invoked.tool_sourced))
        verdict, history = decide(
            step.retry, step.fix, sr.history, outcome=outcome, failure=failure,
            started_at=started_at, now=self.clock.now(),
            fingerprints=[f.fingerprint for f in findings],
            retry_after_s=max((f.retry_after for f in findings if f.retry_after), default=None),
            fixable=fixable, interrupted=interrupted,
        )
        next_kind, next_profile, next_at = AttemptKind.RETRY, sr.profile, None
        fix_findings: tuple[Finding, ...] = ()
        if outcome is AttemptOutcome.SUCCEEDED:
            state = StepState.COMPLETED
        elif outcome is AttemptOutcome.CANCELLED:
            # Stopped because aidp itself is stopping (Ctrl-C): the step is pending again, and
            # the attempt does not count, as after a crash; `aidp resume` runs it.
            state = StepState.PENDING if interrupted else StepState.CANCELLED
        elif verdict.action is Action.FAIL:
            state = (StepState.TIMEOUT if outcome is AttemptOutcome.TIMED_OUT
                     else StepState.FAILED)
        else:
            state = StepState.RETRYING
            next_at = self.clock.now() + verdict.delay_s
            if verdict.action in (Action.FIX, Action.ESCALATE):
                next_kind = AttemptKind(verdict.action.value)
                fix_findings = tuple(findings)
            if verdict.action is Action.ESCALATE:
                next_profile = verdict.profile
        if verdict.action is Action.FAIL or verdict.notes:
            reason = "; ".join(x for x in (reason, verdict.reason, *verdict.notes) if x)
        step_class = (verdict.failure_class.value if verdict.failure_class is not None
                      else None)
        counted = history.counted + history.crashes
        return _Judgement(interrupted, sourced, findings, detector_failures, failure, state,
                          reason, history, counted, next_kind, next_profile, next_at,
                          verdict.delay_s, fix_findings, step_class)

    def _record(self, wsr: WorkstreamRuntime, sr: StepRuntime, admitted: _Admitted,
                claim: _Claim, invoked: _Invoked, judgement: _Judgement,
                may_close: bool, *, verdict: dict[str, Any] | None = None,
                also: Callable[[Tx], None] | None = None) -> AttemptReport:
        """Phase 4: tell the breakers, keep a failed attempt's diagnostics, then write the
        outcome in one transaction (see the module docstring) and report it.

        Best-of-N: ``verdict`` holds the kept candidate's verdict columns, and ``also`` writes
        the other candidates' rows in the same transaction."""
        step, number, profile_name = sr.step, admitted.number, admitted.profile_name
        outcome, sha, sourced, findings = (invoked.outcome, invoked.sha, judgement.sourced,
                                           judgement.findings)
        failure, state, reason = judgement.failure, judgement.state, judgement.reason
        history, counted, step_class = judgement.history, judgement.counted, judgement.step_class
        next_kind, next_profile, next_at = (judgement.next_kind, judgement.next_profile,
                                            judgement.next_at)
        fix_findings = judgement.fix_findings
        diagnostics = self._settle(wsr, sr, admitted, claim, invoked, judgement)
        # The workstream's last step completed: it ends in this transaction too (unless it
        # merges, which the orchestrator does), one commit less per workstream.
        others_done = sha is not None and may_close and wsr.only_open(sr)
        closes = others_done and (
            wsr.ws.merge is None or wsr.ws.merge.strategy is MergeStrategy.NONE)
        with self.store.write(self.fence) as tx:
            if also is not None:
                also(tx)
            tx.update_attempt(claim.attempt_id, finished_at=tx.now, **self._attempt_values(
                invoked, judgement, diagnostics), **(verdict or {}))
            tx.insert_findings(self._finding_rows(wsr.ws.id, step.id, number, sourced))
            tx.update_step(
                self.run_id, wsr.ws.id, step.id, status=state.value, attempts=counted,
                reason=reason, next_attempt_at=next_at, checkpoint_sha=sha,
                history_json=json.dumps({"history": history.to_dict(), "next": next_kind.value}),
                failure_class=step_class if state.terminal else None,
                outcome=outcome.value if state.terminal else None,
                profile=next_profile,
                **({"finished_at": tx.now} if state.terminal else {}),
            )
            if sha is not None:
                tx.insert_checkpoint(run_id=self.run_id, ws_id=wsr.ws.id, step_id=step.id,
                                     attempt=number, sha=sha)
                tx.update_ws(self.run_id, wsr.ws.id, head_sha=sha, **(
                    {"status": WorkstreamState.COMPLETED.value, "finished_at": tx.now,
                     "merged_sha": None, "reason": None} if closes else {}))
            tx.event(self.run_id, f"step.{state.value}", wsr.ws.id, step.id, attempt=number,
                     outcome=outcome.value, reason=reason, sha=sha, next_attempt_at=next_at,
                     failure_class=failure.value if failure else None,
                     findings=len(findings), next=next_kind.value if next_at else None,
                     delay_s=round(judgement.delay_s, 3) if next_at else None)
            if outcome is AttemptOutcome.BUDGET_EXCEEDED:
                tx.event(self.run_id, "budget.exceeded", wsr.ws.id, step.id, attempt=number,
                         limit=reason, profile=profile_name)
            if closes:
                tx.event(self.run_id, "workstream.completed", wsr.ws.id, head=sha,
                         merged_sha=None)
            if invoked.checkpoint is not None:
                # Last, so that it is the commit's only precondition: the branch moves only
                # while our lease token is current (checked as this transaction began), and a
                # takeover waits for this commit. A crash before the commit leaves a checkpoint
                # the journal lacks; resume adopts it by its trailers.
                invoked.checkpoint.apply()
        if sha is not None:
            wsr.head_sha = sha
            if others_done and wsr.worktree is not None:
                self.pool.release(wsr.worktree)
                wsr.worktree = None
        return AttemptReport(wsr.ws.id, step.id, number, counted, outcome, state, reason, sha,
                             next_at, history=history, next_kind=next_kind,
                             profile=next_profile, fix_findings=fix_findings,
                             failure_class=step_class, closed_workstream=closes)

    def _settle(self, wsr: WorkstreamRuntime, sr: StepRuntime, admitted: _Admitted,
                claim: _Claim, invoked: _Invoked, judgement: _Judgement) -> Path | None:
        """Tell the breakers how the attempt went; keep a failed attempt's diagnostics bundle
        (its path; None for a success, a cancellation, or a bundle not written)."""
        outcome = invoked.outcome
        breaker_state = self._settle_breaker(admitted.permit, admitted.profile_name, outcome,
                                             judgement.failure, judgement.findings)
        if outcome in (AttemptOutcome.SUCCEEDED, AttemptOutcome.CANCELLED):
            return None
        return self._write_diagnostics(
            wsr, sr.step, admitted.number, admitted.kind, admitted.profile_name, invoked.result,
            outcome, judgement.reason, judgement.step_class, judgement.findings,
            judgement.detector_failures, invoked.env_names, claim.log_path, claim.worktree,
            breaker_state)

    @staticmethod
    def _attempt_values(invoked: _Invoked, judgement: _Judgement,
                        diagnostics: Path | None) -> dict[str, Any]:
        """The attempt row's columns once it finished (``finished_at`` apart)."""
        result, failure = invoked.result, judgement.failure
        return {
            "outcome": invoked.outcome.value, "interrupted": judgement.interrupted,
            "exit_code": result.exit_code, "signal": result.signal, "pid": result.pid,
            "output_bytes": invoked.output_bytes, "error": judgement.reason,
            "changed_files": "\n".join(invoked.changed) if invoked.changed else None,
            "failure_class": failure.value if failure else None,
            "tool_version": result.version, "input_tokens": result.usage.input_tokens,
            "output_tokens": result.usage.output_tokens, "cost_usd": result.usage.cost_usd,
            "requests": result.usage.requests, "cached_tokens": result.usage.cached_tokens,
            "latency_ms": round(result.latency_s * 1000),
            "diagnostics_path": str(diagnostics) if diagnostics else None,
        }

    def _finding_rows(self, ws_id: str, step_id: str, number: int,
                      sourced: Sequence[tuple[str, Finding]]) -> list[dict[str, Any]]:
        return finding_rows(self.run_id, ws_id, step_id, number, sourced)


def make_executor(**kwargs: Any) -> Executor:
    """The executor ``settings.executor.kind`` names: local threads, or a Dask cluster's
    workers (:class:`aidp.engine.distributed.executor.DaskExecutor`, imported only then)."""
    settings: Settings = kwargs["settings"]
    if settings.executor.kind == "dask":
        from aidp.engine.distributed.executor import DaskExecutor

        return DaskExecutor(**kwargs)
    return Executor(**kwargs)
