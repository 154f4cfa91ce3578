"""The executor: one attempt of one step, from a prepared worktree to a checkpoint commit.

Runs on a worker thread. It prepares the workstream's worktree (from the pool, at its last
checkpoint), runs the tool in its own process session under a wall-clock timeout, checks the
scope of the changes, runs the acceptance checks, decides the outcome and commits the checkpoint
-- git first, then the database, so that a crash in between leaves a commit that resume adopts.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aidp.config import Settings
from aidp.engine.outcome import CheckResult, ToolResult, decide_outcome, next_step_state
from aidp.engine.states import AttemptOutcome, StepState, WorkstreamState
from aidp.exceptions import AidpError, ToolError
from aidp.model.scope import ScopeMatcher
from aidp.model.workstream import Step, Workstream
from aidp.resilience.retry import retry_delay, should_retry
from aidp.state.store import Fence, Store
from aidp.tools.process import CappedLog, ProcessResult, build_env, run_process
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
    ) -> None:
        self.store = store
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
        with self.store.write(self.fence) as tx:
            tx.update_ws(
                self.run_id,
                wsr.ws.id,
                status=WorkstreamState.RUNNING.value,
                worktree=wsr.worktree_path,
                base_sha=wsr.base_sha,
                head_sha=wsr.head_sha,
                **({"started_at": tx.now} if fresh else {}),
            )
            if fresh:
                tx.event(self.run_id, "workstream.started", wsr.ws.id, branch=wsr.branch)
            tx.event(self.run_id, "workstream.prepared", wsr.ws.id, worktree=wsr.worktree_path,
                     base_sha=wsr.base_sha)

    # -- one attempt -------------------------------------------------------------------------

    def run_attempt(
        self,
        wsr: WorkstreamRuntime,
        sr: StepRuntime,
        dep_heads: list[tuple[str, str]],
        siblings: list[StepRuntime] | None = None,
    ) -> AttemptReport:
        """Run one attempt of ``sr``; every effect is recorded before this returns.

        ``siblings``: the workstream's other steps. When they all completed and this attempt
        succeeds, the workstream's worktree goes back to the pool here, on the worker, instead
        of on the orchestrator's thread (their states cannot change meanwhile: a workstream
        runs one step at a time).
        """
        step = sr.step
        try:
            self.prepare(wsr, dep_heads)
        except AidpError as exc:
            return AttemptReport(wsr.ws.id, step.id, sr.last_number, sr.attempts, None,
                                 StepState.SKIPPED, prepare_error=exc.message)
        assert wsr.worktree is not None
        worktree = wsr.worktree.path
        number = sr.last_number + 1
        token = uuid.uuid4().hex
        log_path = self.run_dir / "logs" / wsr.ws.id / f"{step.id}.{number}.log"
        self._mkdir(log_path.parent)
        with self.store.write(self.fence) as tx:
            attempt_id = tx.insert_attempt(
                run_id=self.run_id, ws_id=wsr.ws.id, step_id=step.id, number=number,
                host=self.host, token=token, log_path=str(log_path),
            )
            tx.update_step(self.run_id, wsr.ws.id, step.id, status=StepState.RUNNING.value,
                           reason=None, next_attempt_at=None,
                           **({"started_at": tx.now} if sr.last_number == 0 else {}))
            tx.event(self.run_id, "step.started", wsr.ws.id, step.id, attempt=number)

        names = [*wsr.ws.env, *step.env]
        secrets = [self.base_env[n] for n in names if self.base_env.get(n)]
        values = self._placeholders(wsr, step, number, worktree)
        env = build_env(self.base_env, names, {
            "AIDP_RUN_ID": self.run_id, "AIDP_WORKSTREAM": wsr.ws.id, "AIDP_STEP": step.id,
            "AIDP_ATTEMPT": str(number), "AIDP_WORKTREE": str(worktree),
            "AIDP_PROMPT_FILE": str(values["prompt_file"]),
        })
        log = CappedLog(log_path, cap_bytes=self.settings.run.log_cap_bytes)
        changed: list[str] = []
        outside: list[str] = []
        checks: list[CheckResult] = []
        try:
            tool_result, process = self._run_tool(step, wsr, values, env, secrets, log, token)
            if tool_result.exit_code == 0 and not tool_result.cancelled:
                changed = stage_all(wsr.worktree)
                outside = [p for p in changed if not wsr.scope.matches(p)]
                if step.checks and not outside and not (step.requires_change and not changed):
                    with self.store.write(self.fence) as tx:
                        tx.update_step(self.run_id, wsr.ws.id, step.id,
                                       status=StepState.VALIDATING.value)
                        tx.event(self.run_id, "step.validating", wsr.ws.id, step.id,
                                 attempt=number, changed=len(changed))
                    checks = self._run_checks(step, values, env, secrets, log, worktree,
                                              token)
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
        counted = sr.attempts + (0 if interrupted else 1)
        retry = outcome is not AttemptOutcome.SUCCEEDED and should_retry(
            step.retry, outcome, counted
        )
        # Stopped because aidp itself is stopping (Ctrl-C): the step is pending again, and the
        # attempt does not count, as after a crash; `aidp resume` runs it.
        state = StepState.PENDING if interrupted else next_step_state(outcome, retry)
        next_at = time.time() + retry_delay(step.retry, counted) if retry else None
        with self.store.write(self.fence) as tx:
            tx.update_attempt(
                attempt_id, outcome=outcome.value, finished_at=tx.now, interrupted=interrupted,
                exit_code=process.exit_code if process else None,
                signal=process.signal if process else None,
                output_bytes=log.bytes_seen, error=reason,
                changed_files="\n".join(changed) if changed else None,
            )
            tx.update_step(
                self.run_id, wsr.ws.id, step.id, status=state.value, attempts=counted,
                reason=reason, next_attempt_at=next_at, checkpoint_sha=sha,
                **({"finished_at": tx.now} if state.terminal else {}),
            )
            if sha is not None:
                tx.insert_checkpoint(run_id=self.run_id, ws_id=wsr.ws.id, step_id=step.id,
                                     attempt=number, sha=sha)
                tx.update_ws(self.run_id, wsr.ws.id, head_sha=sha)
            tx.event(self.run_id, f"step.{state.value}", wsr.ws.id, step.id, attempt=number,
                     outcome=outcome.value, reason=reason, sha=sha, next_attempt_at=next_at)
        if sha is not None:
            wsr.head_sha = sha
            if siblings is not None and wsr.worktree is not None and all(
                other.state is StepState.COMPLETED for other in siblings
            ):
                self.pool.release(wsr.worktree)
                wsr.worktree = None
        return AttemptReport(wsr.ws.id, step.id, number, counted, outcome, state, reason, sha,
                             next_at)

    # -- helpers -----------------------------------------------------------------------------

    def _mkdir(self, path: Path) -> None:
        if path not in self._made_dirs:
            path.mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(path)

    def _placeholders(
        self, wsr: WorkstreamRuntime, step: Step, number: int, worktree: Path
    ) -> dict[str, str | list[str]]:
        prompt_file = ""
        if step.prompt is not None:
            path = self.run_dir / "prompts" / wsr.ws.id / f"{step.id}.md"
            self._mkdir(path.parent)
            path.write_text(step.prompt, encoding="utf-8")
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
        values: dict[str, str | list[str]],
        env: dict[str, str],
        secrets: list[str],
        log: CappedLog,
        token: str,
    ) -> tuple[ToolResult, ProcessResult | None]:
        """Run the step's tool; the process result is None when it could not start."""
        profile = self.settings.profile(step.tool)
        if profile is None:
            return ToolResult(None, error=f"unknown tool profile {step.tool!r}"), None
        command = step.run if step.run is not None else profile.command
        if command is None:
            return ToolResult(None, error=f"no command: the step has no `run` and profile "
                              f"{step.tool!r} no `command`"), None
        timeout_s = step.timeout
        if "timeout" not in step.model_fields_set and profile.timeout is not None:
            timeout_s = profile.timeout
        sink = self.on_output
        try:
            argv = build_argv(command, values)
            result = run_process(
                argv, cwd=Path(str(values["worktree"])), env=env, timeout_s=timeout_s, log=log,
                grace_s=self.settings.run.kill_grace, mask=secrets, cancel=self.cancel,
                token=token,
                on_output=None if sink is None else (
                    lambda data: sink(wsr.ws.id, step.id, data)),
            )
        except ToolError as exc:
            log.note(f"[aidp] {exc.message}")
            return ToolResult(None, error=exc.message), None
        except (KeyError, ValueError, IndexError) as exc:  # a bad placeholder in a profile command
            return ToolResult(None, error=f"bad command template: {exc}"), None
        return ToolResult(result.exit_code, result.signal, result.timed_out,
                          result.cancelled), result

    def _run_checks(
        self,
        step: Step,
        values: dict[str, str | list[str]],
        env: dict[str, str],
        secrets: list[str],
        log: CappedLog,
        worktree: Path,
        token: str,
    ) -> list[CheckResult]:
        results: list[CheckResult] = []
        for index, check in enumerate(step.check_list(), 1):
            name = check.name or (check.run if isinstance(check.run, str) else " ".join(check.run))
            log.note(f"check {index}: {name}")
            try:
                res = run_process(
                    build_argv(check.run, values), cwd=worktree, env=env, timeout_s=check.timeout,
                    log=log, grace_s=self.settings.run.kill_grace, mask=secrets,
                    cancel=self.cancel, token=token,  # resume finds a check by the same token
                )
            except ToolError as exc:
                results.append(CheckResult(name, None, error=exc.message))
                break
            result = CheckResult(name, res.exit_code, res.signal, res.timed_out, res.cancelled)
            results.append(result)
            if res.exit_code != 0:
                break
        return results
