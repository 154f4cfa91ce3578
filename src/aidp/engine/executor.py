"""The executor: one attempt of one step, from a prepared worktree to a checkpoint commit.

Runs on a worker thread. It prepares the workstream's worktree (from the pool, at its last
checkpoint), runs the tool in its own process session under a wall-clock timeout, checks the
scope of the changes, runs the acceptance checks, decides the outcome and commits the checkpoint
-- git first, then the database, so that a crash in between leaves a commit that resume adopts.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aidp.config import Settings, ToolProfile
from aidp.core.clock import Clock, SystemClock
from aidp.core.states import AttemptOutcome, FailureClass, StepState, WorkstreamState
from aidp.engine.diagnosis import (
    build_fix_prompt,
    check_finding,
    classify,
    dedupe_sourced,
    detect,
    no_change_finding,
    read_log_text,
    scope_findings,
    write_bundle,
)
from aidp.engine.outcome import CheckResult, ToolResult, decide_outcome
from aidp.errors.finding import AttemptEvidence, CheckEvidence, Finding
from aidp.exceptions import AidpError, ToolError
from aidp.model.scope import ScopeMatcher
from aidp.model.workstream import MergeStrategy, Step, Workstream
from aidp.process.runner import CappedLog, build_env, run_process
from aidp.resilience.breaker import BreakerPolicy
from aidp.resilience.recovery import Action, History, decide, failure_class
from aidp.state.breakers import BreakerBook, Permit, endpoint_key, profile_key
from aidp.state.store import Fence, Store, Tx
from aidp.tools.adapter import AdapterResult, Invocation
from aidp.tools.edits import DETECTOR as EDITS_DETECTOR
from aidp.tools.registry import (
    Choice,
    ProfileHealth,
    choose_profile,
    fallback_chain,
    get_adapter,
)
from aidp.tools.shell import build_argv
from aidp.workspace.checkpoint import commit_staged, discard_unstaged, stage_all
from aidp.workspace.locks import clean_stale_locks
from aidp.workspace.merge import merge_into_worktree
from aidp.workspace.worktrees import Worktree, WorktreePool, reset_worktree

__all__ = ["AttemptReport", "Executor", "StepRuntime", "WorkstreamRuntime", "branch_name"]


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
    next_kind: str = "retry"  # what the next attempt is: retry | fix | escalate
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
    worktree_path: str | None = None
    worktree: Worktree | None = None
    needs_reset: bool = False
    reason: str | None = None
    step_order: list[str] = field(default_factory=list)
    steps: list[StepRuntime] = field(default_factory=list)  # in ``step_order``


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
    next_kind: str = "retry"
    profile: str | None = None
    fix_findings: tuple[Finding, ...] = ()
    failure_class: str | None = None
    closed_workstream: bool = False  # the workstream's completion was recorded with it


class Executor:
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
        self.breakers = BreakerBook(store, clock=self.clock.now)
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

    # -- worktree ----------------------------------------------------------------------------

    def prepare(self, wsr: WorkstreamRuntime, dep_heads: list[tuple[str, str]]) -> None:
        """Give ``wsr`` a worktree at its last checkpoint (or at its start, merging deps)."""
        if wsr.worktree is not None:
            if wsr.needs_reset:
                reset_worktree(wsr.worktree)
                wsr.needs_reset = False
            return
        prefer = Path(wsr.worktree_path) if wsr.worktree_path else None
        fresh = wsr.base_sha is None
        if fresh:
            start = dep_heads[0][1] if dep_heads else wsr.base_ref
            wt = self.pool.acquire(wsr.branch, start, prefer=prefer)
            wsr.worktree = wt
            if len(dep_heads) > 1:
                merge_into_worktree(
                    wt,
                    [sha for _, sha in dep_heads[1:]],
                    message=f"aidp: merge dependencies of {wsr.ws.id}: "
                    + ", ".join(ws_id for ws_id, _ in dep_heads),
                    trailers={"Aidp-Run": self.run_id, "Aidp-Workstream": wsr.ws.id},
                )
            wsr.base_sha = str(wt.pygit.head.target)
            wsr.head_sha = wsr.base_sha
        else:
            if prefer is not None and prefer.exists():
                clean_stale_locks(self.repo, prefer)
            wt = self.pool.acquire(wsr.branch, None, prefer=prefer)
            wsr.worktree = wt
            wsr.head_sha = str(wt.pygit.head.target)
        wsr.worktree_path = str(wsr.worktree.path)
        wsr.needs_reset = False
        worktree_path, base_sha, head_sha = wsr.worktree_path, wsr.base_sha, wsr.head_sha

        def record(tx: Tx) -> None:
            tx.update_ws(
                self.run_id,
                wsr.ws.id,
                status=WorkstreamState.RUNNING.value,
                worktree=worktree_path,
                base_sha=base_sha,
                head_sha=head_sha,
                **({"started_at": tx.now} if fresh else {}),
            )
            if fresh:
                tx.event(self.run_id, "workstream.started", wsr.ws.id, branch=wsr.branch)
            tx.event(self.run_id, "workstream.prepared", wsr.ws.id, worktree=worktree_path,
                     base_sha=base_sha)

        # Recorded in this thread's next fenced write (the attempt's start, or whatever the
        # attempt writes first): one commit less per workstream. Before the tool runs either way.
        self.store.defer(self.fence, record)

    def prepare_for(self, wsr: WorkstreamRuntime, sr: StepRuntime,
                    dep_heads: list[tuple[str, str]]) -> AttemptReport | None:
        """:meth:`prepare` for an attempt of ``sr``: None when ready, else the report that
        the workstream could not be prepared (nothing else to do again after it: the
        orchestrator fails the workstream)."""
        try:
            self.prepare(wsr, dep_heads)
        except AidpError as exc:
            return AttemptReport(wsr.ws.id, sr.step.id, sr.last_number, sr.attempts, None,
                                 StepState.SKIPPED, prepare_error=exc.message)
        return None

    # -- one attempt -------------------------------------------------------------------------

    def run_attempt(
        self,
        wsr: WorkstreamRuntime,
        sr: StepRuntime,
        siblings: list[StepRuntime] | None = None,
    ) -> AttemptReport:
        """Run one attempt of ``sr`` in ``wsr``'s worktree (:meth:`prepare_for` made it
        ready); every effect is recorded before this returns.

        ``siblings``: the workstream's other steps. When they all completed and this attempt
        succeeds, the workstream's worktree goes back to the pool here, on the worker, instead
        of on the orchestrator's thread (their states cannot change meanwhile: a workstream
        runs one step at a time).
        """
        step = sr.step
        assert wsr.worktree is not None
        worktree = wsr.worktree.path
        number = sr.last_number + 1
        kind = sr.next_kind if sr.last_number or sr.next_kind == "approval" else "first"
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
        if profile is not None and profile.adapter == "manual" and kind != "approval":
            return self._await_approval(wsr, sr)
        token = uuid.uuid4().hex
        log_path = self.run_dir / "logs" / wsr.ws.id / f"{step.id}.{number}.log"
        self._mkdir(log_path.parent)
        started_at = self.clock.now()
        with self.store.write(self.fence) as tx:
            attempt_id = tx.insert_attempt(
                run_id=self.run_id, ws_id=wsr.ws.id, step_id=step.id, number=number,
                host=self.host, token=token, log_path=str(log_path), kind=kind,
                profile=profile_name, adapter=profile.adapter if profile else None,
                choice_reason=choice_reason,
            )
            tx.update_step(self.run_id, wsr.ws.id, step.id, status=StepState.RUNNING.value,
                           reason=None, next_attempt_at=None,
                           **({"started_at": tx.now} if sr.last_number == 0 else {}))
            tx.event(self.run_id, "step.started", wsr.ws.id, step.id, attempt=number,
                     attempt_kind=kind, profile=profile_name)

        key_env = profile.key_env() if profile else None
        names = [*wsr.ws.env, *step.env, *(profile.env if profile else ()),
                 *([key_env] if key_env else [])]
        secrets = [self.base_env[n] for n in names if self.base_env.get(n)]
        prompt = step.prompt
        if kind in ("fix", "escalate") and sr.fix_findings:
            prompt = build_fix_prompt(self._prompt_text(step), sr.fix_findings, kind=kind)
        values = self._placeholders(wsr, step, number, worktree, prompt)
        findings_file = ""
        if sr.fix_findings and kind in ("fix", "escalate"):
            path = self.run_dir / "findings" / wsr.ws.id / f"{step.id}.{number}.json"
            self._mkdir(path.parent)
            path.write_text(json.dumps([f.to_dict() for f in sr.fix_findings], indent=1),
                            encoding="utf-8")
            findings_file = str(path)
        values["findings_file"] = findings_file
        values["attempt_kind"] = kind
        env = build_env(self.base_env, names, {
            "AIDP_RUN_ID": self.run_id, "AIDP_WORKSTREAM": wsr.ws.id, "AIDP_STEP": step.id,
            "AIDP_ATTEMPT": str(number), "AIDP_WORKTREE": str(worktree),
            "AIDP_PROMPT_FILE": str(values["prompt_file"]), "AIDP_ATTEMPT_KIND": kind,
            "AIDP_FINDINGS_FILE": findings_file,
        })
        log = CappedLog(log_path, cap_bytes=self.settings.run.log_cap_bytes)
        changed: list[str] = []
        outside: list[str] = []
        checks: list[CheckResult] = []
        check_outputs: list[CheckEvidence] = []
        result = AdapterResult(None, error="not run")
        try:
            result = self._run_tool(step, wsr, sr, profile_name, values, env, secrets, log,
                                    token, prompt, number)
            tool_result = ToolResult(result.exit_code, result.signal, result.timed_out,
                                     result.cancelled, result.error)
            if tool_result.exit_code == 0 and not tool_result.cancelled:
                changed = stage_all(wsr.worktree)
                outside = [p for p in changed if not wsr.scope.matches(p)]
                if step.checks and not outside and not (step.requires_change and not changed):
                    with self.store.write(self.fence) as tx:
                        tx.update_step(self.run_id, wsr.ws.id, step.id,
                                       status=StepState.VALIDATING.value)
                        tx.event(self.run_id, "step.validating", wsr.ws.id, step.id,
                                 attempt=number, changed=len(changed))
                    checks, check_outputs = self._run_checks(step, values, env, secrets, log,
                                                             worktree, token)
            outcome, reason = decide_outcome(
                tool_result, outside_scope=outside, changed=changed,
                requires_change=step.requires_change, checks=checks,
            )
            sha = None
            if outcome is AttemptOutcome.SUCCEEDED:
                sha = commit_staged(
                    wsr.worktree,
                    message=f"aidp: {wsr.ws.id}/{step.id}"
                    + (f": {step.title}" if step.title else ""),
                    trailers={"Aidp-Run": self.run_id, "Aidp-Workstream": wsr.ws.id,
                              "Aidp-Step": step.id, "Aidp-Attempt": str(number)},
                )
                if checks:
                    discard_unstaged(wsr.worktree)
            else:
                wsr.needs_reset = True
        except AidpError as exc:  # git failed under the attempt: record it, never lose the row
            outcome, reason, sha = AttemptOutcome.FAILED_PERMANENT, exc.message, None
            log.note(f"[aidp] {exc.message}")
            wsr.needs_reset = True
        finally:
            log.close()

        interrupted = outcome is AttemptOutcome.CANCELLED and self.interrupting
        sourced: list[tuple[str, Finding]] = [("tool", f) for f in result.findings]
        detector_failures: tuple[str, ...] = ()
        if outcome not in (AttemptOutcome.SUCCEEDED, AttemptOutcome.CANCELLED):
            evidence = AttemptEvidence(
                tool=profile_name, adapter=profile.adapter if profile else "?",
                exit_code=result.exit_code, signal=result.signal, timed_out=result.timed_out,
                duration_s=result.duration_s, output=read_log_text(log_path),
                worktree=worktree, log_path=log_path,
                events=tuple({"kind": e.kind, **e.data} for e in result.events),
                changed_files=tuple(changed),
            )
            failed_checks = [c for c in check_outputs if c.exit_code != 0]
            detected = detect(evidence, failed_checks)
            sourced += detected.findings
            detector_failures = detected.failures
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
        fixable = bool(outside) or outcome is AttemptOutcome.NO_CHANGE or any(
            c.exit_code != 0 for c in checks) or any(
            f.detector == EDITS_DETECTOR for f in result.findings)
        verdict, history = decide(
            step.retry, step.fix, sr.history, outcome=outcome, failure=failure,
            started_at=started_at, now=self.clock.now(),
            fingerprints=[f.fingerprint for f in findings],
            retry_after_s=max((f.retry_after for f in findings if f.retry_after), default=None),
            fixable=fixable, interrupted=interrupted,
        )
        next_kind, next_profile, next_at = "retry", sr.profile, None
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
                next_kind = verdict.action.value
                fix_findings = tuple(findings)
            if verdict.action is Action.ESCALATE:
                next_profile = verdict.profile
        if verdict.action is Action.FAIL or verdict.notes:
            reason = "; ".join(x for x in (reason, verdict.reason, *verdict.notes) if x)
        step_class = (verdict.failure_class.value if verdict.failure_class is not None
                      else None)
        counted = history.counted + history.crashes
        breaker_state = self._settle_breaker(permit, profile_name, outcome, failure, findings)
        diagnostics = None
        if outcome not in (AttemptOutcome.SUCCEEDED, AttemptOutcome.CANCELLED):
            diagnostics = self._write_diagnostics(
                wsr, step, number, kind, profile_name, result, outcome, reason, step_class,
                findings, detector_failures, names, log_path, worktree, breaker_state)
        # The workstream's last step completed: it ends in this transaction too (unless it
        # merges, which the orchestrator does), one commit less per workstream.
        closes = sha is not None and siblings is not None and all(
            other.state is StepState.COMPLETED for other in siblings) and (
            wsr.ws.merge is None or wsr.ws.merge.strategy is MergeStrategy.NONE)
        with self.store.write(self.fence) as tx:
            tx.update_attempt(
                attempt_id, outcome=outcome.value, finished_at=tx.now, interrupted=interrupted,
                exit_code=result.exit_code, signal=result.signal,
                pid=result.pid, output_bytes=log.bytes_seen, error=reason,
                changed_files="\n".join(changed) if changed else None,
                failure_class=failure.value if failure else None,
                tool_version=result.version, input_tokens=result.usage.input_tokens,
                output_tokens=result.usage.output_tokens, cost_usd=result.usage.cost_usd,
                requests=result.usage.requests,
                diagnostics_path=str(diagnostics) if diagnostics else None,
            )
            tx.insert_findings([
                {"run_id": self.run_id, "ws_id": wsr.ws.id, "step_id": step.id,
                 "attempt": number, "source": source[:255],
                 "detector": f.detector, "file": f.file, "line": f.line, "col": f.column,
                 "code": f.code, "message": f.message[:4000], "severity": f.severity.value,
                 "failure_class": f.failure_class.value, "fingerprint": f.fingerprint,
                 "retry_after": f.retry_after}
                for source, f in sourced
            ])
            tx.update_step(
                self.run_id, wsr.ws.id, step.id, status=state.value, attempts=counted,
                reason=reason, next_attempt_at=next_at, checkpoint_sha=sha,
                history_json=json.dumps({"history": history.to_dict(), "next": next_kind}),
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
                     findings=len(findings), next=next_kind if next_at else None,
                     delay_s=round(verdict.delay_s, 3) if next_at else None)
            if closes:
                tx.event(self.run_id, "workstream.completed", wsr.ws.id, head=sha,
                         merged_sha=None)
        if sha is not None:
            wsr.head_sha = sha
            if siblings is not None and wsr.worktree is not None and all(
                other.state is StepState.COMPLETED for other in siblings
            ):
                self.pool.release(wsr.worktree)
                wsr.worktree = None
        return AttemptReport(wsr.ws.id, step.id, number, counted, outcome, state, reason, sha,
                             next_at, history=history, next_kind=next_kind,
                             profile=next_profile, fix_findings=fix_findings,
                             failure_class=step_class, closed_workstream=closes)

    # -- circuit breakers ---------------------------------------------------------------------

    def _guarded(self, profile: ToolProfile | None) -> bool:
        if profile is None:
            return False
        enabled = profile.breaker.enabled
        return enabled if enabled is not None else profile.adapter not in ("shell", "manual")

    def _breaker_keys(self, name: str, profile: ToolProfile) -> list[str]:
        return [profile_key(name), *([endpoint_key(profile.base_url)]
                                     if profile.base_url else [])]

    def _admit(self, wsr: WorkstreamRuntime, sr: StepRuntime, wanted: str
               ) -> tuple[str, Permit | None, str | None] | AttemptReport:
        """The profile this attempt runs with and its breaker permit: ``wanted`` if its
        breakers admit it, else the first profile of its fallback chain that they admit.
        When none does, the step waits in ``circuit_open`` (or fails, ``on_open: fail``)."""
        chain = fallback_chain(self.settings, wanted)
        refusals: list[str] = []
        retry_at: list[float] = []
        for name in chain:
            profile = self.settings.profile(name)
            if not self._guarded(profile):
                reason = None if name == wanted else (
                    "; ".join(refusals) + f"; chose {name} (fallback of {wanted})")
                return name, None, reason
            assert profile is not None
            permit = self.breakers.admit_all(self._breaker_keys(name, profile),
                                             BreakerPolicy.from_profile(profile),
                                             now=self.clock.now())
            if permit.allowed:
                reason = None if name == wanted else (
                    "; ".join(refusals) + f"; chose {name} (fallback of {wanted})")
                if permit.probe:
                    reason = (reason + "; " if reason else "") + f"{name}: half-open probe"
                return name, permit, reason
            refusals.append(f"{name}: breaker open ({', '.join(permit.refused_by)})")
            if permit.retry_at is not None:
                retry_at.append(permit.retry_at)
        first = self.settings.profile(wanted)
        wait = first is None or first.breaker.on_open == "wait"
        when = min(retry_at) if retry_at else self.clock.now() + 1.0
        budget = sr.step.retry.budget
        started = sr.history.first_started_at
        if wait and budget is not None and started is not None and when > started + budget:
            wait = False
        reason = "; ".join(refusals) + (
            "; waiting for a breaker to close" if wait else "; no healthy profile")
        state = StepState.CIRCUIT_OPEN if wait else StepState.FAILED
        with self.store.write(self.fence) as tx:
            tx.update_step(self.run_id, wsr.ws.id, sr.step.id, status=state.value,
                           reason=reason, next_attempt_at=when if wait else None,
                           outcome=None if wait else AttemptOutcome.CIRCUIT_OPEN.value,
                           **({} if wait else {"finished_at": tx.now}))
            tx.event(self.run_id, f"step.{state.value}", wsr.ws.id, sr.step.id, reason=reason,
                     next_attempt_at=when if wait else None)
        return AttemptReport(wsr.ws.id, sr.step.id, sr.last_number, sr.attempts, None, state,
                             reason, next_attempt_at=when if wait else None,
                             history=sr.history, next_kind=sr.next_kind, profile=sr.profile,
                             fix_findings=sr.fix_findings)

    def _choose(self, step: Step) -> Choice:
        """The profile for a step asking for a capability: the registry scores the matching
        profiles (capability, language, environment, priority, recent success, breakers)."""
        health: dict[str, ProfileHealth] = {}
        rates = self._success_rates()
        for name, profile in self.settings.tools.items():
            open_ = False
            if self._guarded(profile):
                snap = self.breakers.snapshot(profile_key(name), now=self.clock.now())
                open_ = snap is not None and snap.state.value == "open"
            health[name] = ProfileHealth(breaker_open=open_, success_rate=rates.get(name))
        return choose_profile(
            self.settings, tool=None, capability=step.capability, language=step.language,
            environment=self.base_env.get("AIDP_ENVIRONMENT"), health=health)

    def _success_rates(self) -> dict[str, float]:
        """Share of succeeded attempts per profile in this run (recent success)."""
        totals: dict[str, list[int]] = {}
        for row in self.store.attempts(self.run_id):
            if row.profile and row.outcome:
                item = totals.setdefault(row.profile, [0, 0])
                item[0] += row.outcome == AttemptOutcome.SUCCEEDED.value
                item[1] += 1
        return {name: ok / n for name, (ok, n) in totals.items() if n}

    def _no_profile(self, wsr: WorkstreamRuntime, sr: StepRuntime, exc: ToolError
                    ) -> AttemptReport:
        """No profile offers the step's capability: the step fails (permanent)."""
        reason = exc.message
        with self.store.write(self.fence) as tx:
            tx.update_step(self.run_id, wsr.ws.id, sr.step.id, status=StepState.FAILED.value,
                           reason=reason, failure_class="permanent", next_attempt_at=None,
                           finished_at=tx.now)
            tx.event(self.run_id, "step.failed", wsr.ws.id, sr.step.id, reason=reason)
        return AttemptReport(wsr.ws.id, sr.step.id, sr.last_number, sr.attempts, None,
                             StepState.FAILED, reason, history=sr.history,
                             failure_class="permanent")

    def _settle_breaker(self, permit: Permit | None, profile_name: str,
                        outcome: AttemptOutcome, failure: FailureClass | None,
                        findings: list[Finding]) -> dict[str, str] | None:
        """Tell the breakers how the attempt went; their states afterwards (for diagnostics).

        Only transient failures count against a provider; a success or a permanent failure
        (the provider answered) counts for it; a cancelled attempt gives its slot back."""
        profile = self.settings.profile(profile_name)
        if permit is None or profile is None:
            return None
        policy = BreakerPolicy.from_profile(profile)
        if outcome is AttemptOutcome.CANCELLED:
            after = self.breakers.release_all(permit, policy, now=self.clock.now())
        else:
            transient = failure is FailureClass.TRANSIENT
            crashed = outcome is AttemptOutcome.CRASHED
            answered = not crashed and failure in (None, FailureClass.PERMANENT)
            after = self.breakers.record_all(
                permit, policy, success=answered,
                transient=transient, now=self.clock.now(),
                retry_after=max((f.retry_after for f in findings if f.retry_after),
                                default=None) if transient else None)
        return {key: snap.state.value for key, snap in after.items()}

    def _budget_spent(self, wsr: WorkstreamRuntime, step: Step, profile_name: str
                      ) -> str | None:
        """Which budget (step, workstream, profile, run) is already spent, if any."""
        profile = self.settings.profile(profile_name)
        levels = [("step", step.budget), ("workstream", wsr.ws.budget),
                  (f"profile {profile_name}", profile.budget if profile else None),
                  ("run", self.settings.run.budget)]
        if all(budget is None for _, budget in levels):
            return None
        rows = self.store.usage(self.run_id)
        for level, budget in levels:
            if budget is None:
                continue
            mine = [r for r in rows if (
                level == "run"
                or (level == "workstream" and r.ws_id == wsr.ws.id)
                or (level == "step" and (r.ws_id, r.step_id) == (wsr.ws.id, step.id))
                or (level.startswith("profile") and r.profile == profile_name))]
            tokens = sum(int(r.input_tokens or 0) + int(r.output_tokens or 0) for r in mine)
            cost = sum(float(r.cost_usd or 0.0) for r in mine)
            if budget.tokens is not None and tokens >= budget.tokens:
                return f"the {level} budget of {budget.tokens} tokens is spent ({tokens})"
            if budget.cost_usd is not None and cost >= budget.cost_usd:
                return (f"the {level} budget of ${budget.cost_usd:g} is spent "
                        f"(${cost:.4f})")
        return None

    def _stop_for_budget(self, wsr: WorkstreamRuntime, sr: StepRuntime, number: int,
                         kind: str, profile_name: str, spent: str) -> AttemptReport:
        """Record an attempt that did not start because a budget is spent; the step fails."""
        step = sr.step
        with self.store.write(self.fence) as tx:
            attempt_id = tx.insert_attempt(
                run_id=self.run_id, ws_id=wsr.ws.id, step_id=step.id, number=number,
                host=self.host, kind=kind, profile=profile_name)
            tx.update_attempt(attempt_id, outcome=AttemptOutcome.BUDGET_EXCEEDED.value,
                              finished_at=tx.now, error=spent)
            tx.update_step(self.run_id, wsr.ws.id, step.id, status=StepState.FAILED.value,
                           reason=spent, outcome=AttemptOutcome.BUDGET_EXCEEDED.value,
                           next_attempt_at=None,
                           finished_at=tx.now)
            tx.event(self.run_id, "step.failed", wsr.ws.id, step.id, attempt=number,
                     outcome=AttemptOutcome.BUDGET_EXCEEDED.value, reason=spent)
        return AttemptReport(wsr.ws.id, step.id, number, sr.attempts,
                             AttemptOutcome.BUDGET_EXCEEDED, StepState.FAILED, spent,
                             history=sr.history)

    def _await_approval(self, wsr: WorkstreamRuntime, sr: StepRuntime) -> AttemptReport:
        """A human gate: the step waits, its worktree prepared, for `aidp approve/reject`."""
        reason = (f"waiting for a human: aidp approve {self.run_id} {wsr.ws.id}/{sr.step.id} "
                  f"(or aidp reject ... --reason)")
        prompt = self._prompt_text(sr.step)
        with self.store.write(self.fence) as tx:
            tx.update_step(self.run_id, wsr.ws.id, sr.step.id,
                           status=StepState.AWAITING_APPROVAL.value, reason=reason,
                           next_attempt_at=None)
            tx.event(self.run_id, "step.awaiting_approval", wsr.ws.id, sr.step.id,
                     worktree=wsr.worktree_path, prompt=(prompt or "")[:2000])
        return AttemptReport(wsr.ws.id, sr.step.id, sr.last_number, sr.attempts, None,
                             StepState.AWAITING_APPROVAL, reason, history=sr.history,
                             next_kind="approval", profile=sr.profile)

    # -- helpers -----------------------------------------------------------------------------

    def _mkdir(self, path: Path) -> None:
        if path not in self._made_dirs:
            path.mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(path)

    def _prompt_text(self, step: Step) -> str | None:
        """The step's own prompt (the loader resolved ``prompt_file`` relative to its file)."""
        if step.prompt is not None:
            return step.prompt
        if step.prompt_file:
            try:
                return Path(step.prompt_file).read_text(encoding="utf-8")
            except OSError:
                return None
        return None

    def _placeholders(
        self, wsr: WorkstreamRuntime, step: Step, number: int, worktree: Path,
        prompt: str | None,
    ) -> dict[str, str | list[str]]:
        prompt_file = ""
        if prompt is not None:
            name = f"{step.id}.md" if prompt is step.prompt else f"{step.id}.{number}.md"
            path = self.run_dir / "prompts" / wsr.ws.id / name
            self._mkdir(path.parent)
            path.write_text(prompt, encoding="utf-8")
            prompt_file = str(path)
        return {
            "worktree": str(worktree),
            "prompt_file": prompt_file,
            "run_id": self.run_id,
            "workstream": wsr.ws.id,
            "step": step.id,
            "attempt": str(number),
            "repo": str(self.repo),
            "context_files": [str(worktree / c) for c in step.context],
        }

    def _run_tool(
        self,
        step: Step,
        wsr: WorkstreamRuntime,
        sr: StepRuntime,
        profile_name: str,
        values: dict[str, str | list[str]],
        env: dict[str, str],
        secrets: list[str],
        log: CappedLog,
        token: str,
        prompt: str | None,
        number: int,
    ) -> AdapterResult:
        """Run the step's tool through its profile's adapter (never raises for the tool)."""
        profile = self.settings.profile(profile_name)
        if profile is None:
            return AdapterResult(None, error=f"unknown tool profile {profile_name!r}")
        try:
            adapter = get_adapter(profile.adapter)
        except ToolError as exc:
            log.note(f"[aidp] {exc.message}")
            return AdapterResult(None, error=exc.message)
        timeout_s = step.timeout
        if "timeout" not in step.model_fields_set and profile.timeout is not None:
            timeout_s = profile.timeout
        assert wsr.worktree is not None
        worktree = wsr.worktree.path
        attempt_dir = self.run_dir / "attempts" / wsr.ws.id / f"{step.id}.{number}"
        local = profile.adapter in ("shell", "manual")  # no HOME, config or file list needed
        if not local:
            attempt_dir.mkdir(parents=True, exist_ok=True)
        sink = self.on_output
        invocation = Invocation(
            run_id=self.run_id, ws_id=wsr.ws.id, step_id=step.id, attempt=number,
            profile_name=profile_name, profile=profile, worktree=worktree, prompt=prompt,
            prompt_file=Path(str(values["prompt_file"])) if values["prompt_file"] else None,
            scope=tuple(wsr.ws.scope), scope_files=() if local else tuple(_scope_files(wsr)),
            context_files=tuple(worktree / c for c in step.context),
            command=step.run if step.run is not None else profile.command,
            values=values, env=env, secrets=tuple(secrets), timeout_s=timeout_s,
            grace_s=self.settings.run.kill_grace, attempt_dir=attempt_dir, token=token,
            log=log, cancel=self.cancel,
            on_output=None if sink is None else (lambda data: sink(wsr.ws.id, step.id, data)),
            in_scope=wsr.scope.matches,
        )
        try:
            return adapter.run(invocation)
        except Exception as exc:  # noqa: BLE001 -- an adapter bug or a plugin's: a failed attempt, not a crash
            log.note(f"[aidp] adapter {profile.adapter!r} raised {type(exc).__name__}: {exc}")
            return AdapterResult(None, error=f"adapter {profile.adapter!r} raised "
                                 f"{type(exc).__name__}: {exc}")

    def _run_checks(
        self,
        step: Step,
        values: dict[str, str | list[str]],
        env: dict[str, str],
        secrets: list[str],
        log: CappedLog,
        worktree: Path,
        token: str,
    ) -> tuple[list[CheckResult], list[CheckEvidence]]:
        """Run the acceptance checks in order until one fails; their results and output."""
        results: list[CheckResult] = []
        evidence: list[CheckEvidence] = []
        for index, check in enumerate(step.check_list(), 1):
            command = check.run if isinstance(check.run, str) else " ".join(check.run)
            name = check.name or command
            log.note(f"check {index}: {name}")
            output = _Tail(CHECK_OUTPUT_BYTES)
            try:
                res = run_process(
                    build_argv(check.run, values), cwd=worktree, env=env, timeout_s=check.timeout,
                    log=log, grace_s=self.settings.run.kill_grace, mask=secrets,
                    cancel=self.cancel, token=token,  # resume finds a check by the same token
                    on_output=output.feed,
                )
            except ToolError as exc:
                results.append(CheckResult(name, None, error=exc.message))
                break
            result = CheckResult(name, res.exit_code, res.signal, res.timed_out, res.cancelled)
            results.append(result)
            evidence.append(CheckEvidence(
                name=name, command=command, exit_code=res.exit_code, signal=res.signal,
                timed_out=res.timed_out, output=output.text(), worktree=worktree))
            if res.exit_code != 0:
                break
        return results, evidence

    def _write_diagnostics(
        self, wsr: WorkstreamRuntime, step: Step, number: int, kind: str, profile_name: str,
        result: AdapterResult, outcome: AttemptOutcome, reason: str | None,
        failure_class: str | None, findings: list[Finding], detector_failures: tuple[str, ...],
        env_names: list[str], log_path: Path, worktree: Path,
        breaker_state: dict[str, str] | None = None,
    ) -> Path | None:
        """Keep the failed attempt's diagnostics bundle; None if it could not be written."""
        profile = self.settings.profile(profile_name)
        path = self.run_dir / "diagnostics" / wsr.ws.id / f"{step.id}.{number}.json"
        data = {
            "run_id": self.run_id, "workstream": wsr.ws.id, "step": step.id,
            "attempt": number, "kind": kind, "profile": profile_name,
            "adapter": profile.adapter if profile else None, "tool_version": result.version,
            "command_line": list(result.command_line), "env_names": sorted(set(env_names)),
            "outcome": outcome.value, "reason": reason, "failure_class": failure_class,
            "exit_code": result.exit_code, "signal": result.signal,
            "timed_out": result.timed_out, "duration_s": round(result.duration_s, 3),
            "findings": [f.to_dict() for f in findings],
            "detector_failures": list(detector_failures),
            "usage": result.usage.to_dict(), "log_path": str(log_path),
            "breaker": breaker_state,
        }
        try:
            return write_bundle(path, data, worktree=worktree, log_path=log_path)
        except OSError:
            return None


CHECK_OUTPUT_BYTES = 256 * 1024


class _Tail:
    """The last ``cap`` bytes of a stream (a check's output, for the detectors)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > 2 * self.cap:
            del self.data[: len(self.data) - self.cap]

    def text(self) -> str:
        return bytes(self.data[-self.cap:]).decode("utf-8", "replace")


def _scope_files(wsr: WorkstreamRuntime) -> list[str]:
    """The tracked files of the worktree inside the scope (aider's editable files)."""
    assert wsr.worktree is not None
    try:
        index = wsr.worktree.pygit.index
        return [entry.path for entry in index if wsr.scope.matches(entry.path)]
    except Exception:  # noqa: BLE001 -- a broken index: the adapter works without the list
        return []
