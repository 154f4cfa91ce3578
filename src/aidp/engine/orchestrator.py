"""The orchestrator: a run's lifecycle, from its row in the store to its final status.

One orchestrator drives a run at a time (it holds the run's lease and renews it from a heartbeat
thread). It loads the run from the store -- the store is the single source of truth, so starting
and resuming are the same code -- recovers what a crash left behind, then loops: ask the
scheduler for ready steps, hand them to worker threads (the executor), and act on each finished
attempt: the next step, a retry, skipping dependants, finishing a workstream and merging it.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from aidp.config import Settings
from aidp.core.clock import Clock, SystemClock
from aidp.core.dag import all_descendants, descendants, step_order
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
from aidp.engine.compensation import run_compensations
from aidp.engine.executor import (
    AttemptReport,
    Executor,
    StepRuntime,
    WorkstreamRuntime,
    branch_name,
)
from aidp.engine.scheduler import chain_ranks, conflict_map, next_step, pick_ready, rank_order
from aidp.errors.finding import FailureClass, Finding, Severity
from aidp.exceptions import AidpError, InputError, LeaseLostError, StateError
from aidp.model.plan import Plan
from aidp.model.scope import compile_scope
from aidp.model.workstream import MergeStrategy
from aidp.process.runner import kill_by_token
from aidp.resilience.recovery import History
from aidp.state.lease import LEASE_TTL_S, acquire_lease, release_lease, renew_lease
from aidp.state.store import Fence, Store
from aidp.workspace.checkpoint import list_checkpoints
from aidp.workspace.git import rev_parse
from aidp.workspace.merge import merge_into_target
from aidp.workspace.worktrees import WorktreePool

__all__ = [
    "Decision", "Reporter", "RunSummary", "create_run", "drive_run", "new_run_id", "preflight",
]

Decision = Literal["retry", "skip", "abort"]
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


# steps waiting for their next attempt to come due
_WAITING = (StepState.RETRYING, StepState.CIRCUIT_OPEN)
# Preparing worktrees ahead needs a spare one: a full checkout, once (0.2-0.3 s at 5,000 files
# here, 4 s and more at 20,000), so only in repositories up to this size.
AHEAD_MAX_FILES = 5000


def new_run_id(now: float | None = None) -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, Crockford base32 (sortable)."""
    import os

    millis = int((time.time() if now is None else now) * 1000)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


class Reporter(Protocol):
    """Receives progress as it happens (the CLI's live view).

    ``event`` is called on the orchestrator's thread with what the journal records;
    ``output`` is called on worker threads with each chunk of a tool's output (already masked
    and capped by nothing: keep only what you show, and return fast).
    """

    def event(self, kind: str, ws_id: str | None, step_id: str | None, data: dict[str, Any]
              ) -> None: ...

    def output(self, ws_id: str, step_id: str, data: bytes) -> None: ...


class _Silent:
    def event(self, kind: str, ws_id: str | None, step_id: str | None, data: dict[str, Any]
              ) -> None:
        return None

    def output(self, ws_id: str, step_id: str, data: bytes) -> None:
        return None


@dataclass(frozen=True)
class RunSummary:
    """The outcome of driving a run, for the CLI's summary and ``--json``."""

    run_id: str
    state: RunState
    workstreams: list[dict[str, Any]] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.state is RunState.COMPLETED

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.state.value,
            "ok": self.ok,
            "duration_s": round(self.duration_s, 3),
            "workstreams": self.workstreams,
        }


def preflight(repo: Path, plan: Plan, *, tools: Collection[str] = ("shell",)) -> dict[str, str]:
    """Check what validation of the files alone cannot: every workstream's base is a commit of
    ``repo``, every step's tool is a configured profile, every declared environment variable is
    set. Returns the resolved base commit of each workstream; raises InputError listing every
    problem (nothing is written)."""
    import os

    problems: list[str] = []
    resolved: dict[str, str | None] = {}
    bases: dict[str, str] = {}
    for ws in plan.workstreams:
        where = plan.sources.get(ws.id, "?")
        if ws.base not in resolved:
            resolved[ws.base] = rev_parse(repo, f"{ws.base}^{{commit}}")
        sha = resolved[ws.base]
        if sha is None:
            problems.append(f"{where}: [{ws.id}] base {ws.base!r} is not a commit in {repo}")
        else:
            bases[ws.id] = sha
        for step in ws.steps:
            if step.capability is not None:
                pass  # the registry picks a profile offering it when the step starts
            elif step.tool not in tools:
                problems.append(f"{where}: [{ws.id}/{step.id}] unknown tool profile "
                                f"{step.tool!r} (known: {', '.join(sorted(tools))})")
            for name in step.fix.escalate:
                if name not in tools:
                    problems.append(f"{where}: [{ws.id}/{step.id}] fix.escalate names unknown "
                                    f"tool profile {name!r}")
            for name in [*ws.env, *step.env]:
                if name not in os.environ:
                    problems.append(f"{where}: [{ws.id}/{step.id}] environment variable {name} "
                                    "is not set")
    if problems:
        raise InputError("; ".join(problems), hint="fix the workstream file, aidp.toml or the "
                         "environment")
    return bases


def create_run(
    store: Store,
    repo: Path,
    plan: Plan,
    *,
    parallel: int,
    tools: Collection[str] = ("shell",),
    run_id: str | None = None,
    bases: Mapping[str, str] | None = None,
) -> str:
    """Record a new run of ``plan`` (status pending) and return its id, after
    :func:`preflight` (unless its result is given as ``bases``)."""
    if bases is None:
        bases = preflight(repo, plan, tools=tools)
    run_id = run_id or new_run_id()
    with store.write() as tx:
        tx.insert_run(id=run_id, status=RunState.PENDING.value, repo=str(repo),
                      plan_json=plan.to_json(), options_json=json.dumps({"parallel": parallel}),
                      sources=json.dumps(plan.sources))
        tx.insert_workstreams([
            dict(run_id=run_id, ws_id=ws.id, position=i, status=WorkstreamState.PENDING.value,
                 branch=branch_name(run_id, ws.id), base_ref=bases[ws.id])
            for i, ws in enumerate(plan.workstreams)
        ])
        tx.insert_steps([
            dict(run_id=run_id, ws_id=ws.id, step_id=step.id, position=j,
                 status=StepState.PENDING.value)
            for ws in plan.workstreams for j, step in enumerate(ws.steps)
        ])
        tx.event(run_id, "run.created", workstreams=len(plan.workstreams),
                 steps=plan.step_count, parallel=parallel)
    return run_id


def drive_run(
    store: Store,
    repo: Path,
    run_id: str,
    settings: Settings,
    *,
    reporter: Reporter | None = None,
    decide: Callable[[StepRuntime, AttemptReport], Decision] | None = None,
    parallel: int | None = None,
    clock: Clock | None = None,
) -> RunSummary:
    """Drive ``run_id`` until every workstream is finished (this is also ``aidp resume``).

    ``clock``: the time source for retry schedules (tests pass an
    :class:`~aidp.core.clock.AutojumpClock` so that backoff waits take no time).
    """
    return _Orchestrator(store, repo, run_id, settings, reporter or _Silent(), decide,
                         parallel, clock or SystemClock()).run()


class _Orchestrator:
    def __init__(
        self,
        store: Store,
        repo: Path,
        run_id: str,
        settings: Settings,
        reporter: Reporter,
        decide: Callable[[StepRuntime, AttemptReport], Decision] | None,
        parallel: int | None,
        clock: Clock,
    ) -> None:
        self.clock = clock
        self.store = store
        self.repo = repo
        self.run_id = run_id
        self.settings = settings
        self.reporter = reporter
        self.decide = decide
        self.parallel_override = parallel
        self.cancel = threading.Event()
        self.lease_lost: LeaseLostError | None = None
        self.user_skipped: set[str] = set()
        self.aborted = False
        self.cancelling = False
        self.ws: dict[str, WorkstreamRuntime] = {}
        self.steps: dict[str, StepRuntime] = {}
        self.started = time.monotonic()
        self.decision_cursor = 0  # journal position of the last approve / reject looked at
        self.gate_since: dict[str, int] = {}
        self.waiting: set[str] = set()  # keys of steps that may be in _WAITING
        # (workstream, step, its report or a worker's exception -- None: not started -- the
        # step the worker went on with): from the workers to the orchestrator's thread, in order
        self.done: queue.Queue[tuple[WorkstreamRuntime, StepRuntime,
                                     AttemptReport | BaseException | None,
                                     StepRuntime | None]] = queue.Queue()
        self.ahead = 0
        self.run_slots = threading.BoundedSemaphore(1)

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> RunSummary:
        row = self.store.run(self.run_id)
        if RunState(row.status) is RunState.CANCELLED:
            raise StateError(f"run {self.run_id} was cancelled; start a new run")
        self.fence: Fence = acquire_lease(self.store, self.run_id)
        stop_heartbeat = threading.Event()
        heartbeat = threading.Thread(target=self._heartbeat, args=(stop_heartbeat,),
                                     name="aidp-lease", daemon=True)
        heartbeat.start()
        # Released worktrees keep their branch until the end of the run (detached below): a
        # HEAD and reflog write less per workstream. Merge targets are detached at once.
        self.pool = WorktreePool(self.repo, detach_on_release=False)
        try:
            self._load(row)
            self.pool.always_detach = frozenset(
                wsr.ws.merge.into for wsr in self.ws.values() if wsr.ws.merge is not None)
            self.executor = Executor(store=self.store, fence=self.fence, repo=self.repo,
                                     settings=self.settings, pool=self.pool, cancel=self.cancel,
                                     on_output=self.reporter.output, clock=self.clock)
            self._recover()
            self._loop()
            return self._finish()
        finally:
            stop_heartbeat.set()
            self.cancel.set()
            for wsr in self.ws.values():
                if wsr.worktree is not None:
                    self._release(wsr)
            self.pool.detach_released()
            heartbeat.join(timeout=5)
            if self.lease_lost is None:
                release_lease(self.store, self.fence)

    def _heartbeat(self, stop: threading.Event) -> None:
        while not stop.wait(LEASE_TTL_S / 3):
            try:
                renew_lease(self.store, self.fence)
            except LeaseLostError as exc:
                self.lease_lost = exc
                self.cancel.set()
                return
            except Exception:  # noqa: BLE001 -- a database hiccup: try again at the next beat, before expiry
                continue

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
                    profile=s.profile, next_kind=saved.get("next") or "retry",
                )
                if sr.next_kind in ("fix", "escalate") and sr.last_number:
                    # a resumed fix loop feeds back the same findings as before the crash
                    sr.fix_findings = tuple(
                        _finding(f) for f in self.store.findings(self.run_id, ws.id, step.id)
                        if f.attempt == sr.last_number)
            wsr = self.ws[ws.id]
            wsr.steps = [self.steps[f"{ws.id}/{s}"] for s in wsr.step_order]
        self.waiting = {key for key, sr in self.steps.items() if sr.state in _WAITING}
        self.ranks = chain_ranks(self.ws)
        self.conflicts = conflict_map(self.ws)
        edges = {ws_id: list(wsr.ws.depends_on) for ws_id, wsr in self.ws.items()}
        self.dependants = all_descendants(edges)

    # -- recovery ----------------------------------------------------------------------------

    def _recover(self) -> None:
        """Make the run consistent after a crash or for a resume of a failed run."""
        in_flight = [a for a in self.attempt_rows if a.outcome is None]
        for attempt in in_flight:  # the dead orchestrator's tools may still be running
            if attempt.token:
                kill_by_token(attempt.token, pid_hint=attempt.pid)
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
        if self.run_state is not RunState.PENDING:
            self.pool.detach_idle([wsr.branch for wsr in self.ws.values()])
        adopted = self._adopt_checkpoints()
        crashed = Counter(f"{a.ws_id}/{a.step_id}" for a in in_flight)
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
                        History(), None, "retry", ())
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

    # -- main loop ---------------------------------------------------------------------------

    def _loop(self) -> None:
        # ``parallel`` steps run at once (``run_slots``); ``ahead`` more workers get their
        # worktree ready meanwhile and take a slot the moment one frees, without waiting for
        # this thread.
        ahead = self.settings.run.prepare_ahead
        self.ahead = max(1, self.parallel // 4) if ahead is None else ahead
        if self.ahead and self.pool.tracked_files() > AHEAD_MAX_FILES:
            self.ahead = 0
        self.run_slots = threading.BoundedSemaphore(self.parallel)
        with ThreadPoolExecutor(max_workers=self.parallel + self.ahead,
                                thread_name_prefix="aidp-step") as pool:
            try:
                self._schedule(pool)
            except BaseException:
                # Ctrl-C or a lost lease: stop the tools now (leaving the `with` waits for the
                # workers); what they were running becomes pending again for `aidp resume`.
                self.executor.interrupting = True
                self.cancel.set()
                raise
        if self.cancelling:
            self._cancel_rest()
        else:
            self._skip_unreachable()

    def _schedule(self, pool: ThreadPoolExecutor) -> None:
        """Start ready steps and act on finished attempts until nothing is left to do.

        A worker that finishes a step goes straight on with its workstream's next step when
        that one is ready (see :meth:`_work`); its reports arrive here in order, through
        ``self.done``, and are acted on as if each step had been started from here.
        """
        in_flight: dict[str, StepRuntime] = {}  # workstream id -> its step being run
        tools: Counter[str] = Counter()
        limits = {name: p.concurrency for name, p in self.settings.tools.items()}
        order = rank_order(self.ws, self.ranks)  # ended workstreams are dropped now and then
        ended = 0  # how many in ``order`` have ended
        next_cancel_poll = 0.0
        while True:
            if self.lease_lost is not None:
                raise self.lease_lost
            now = self.clock.now()
            if not self.cancelling and (self.aborted or now >= next_cancel_poll):
                next_cancel_poll = now + 0.5
                if self.aborted or self.store.cancel_requested(self.run_id):
                    self.cancelling = True
                    self.cancel.set()
                    self.reporter.event("run.cancelling", None, None, {})
                elif any(sr.state is StepState.AWAITING_APPROVAL for sr in self.steps.values()):
                    self._poll_decisions()
            if not self.cancelling:
                self._settle()
                for wsr, sr in pick_ready(
                    self.ws, self.steps, busy=in_flight.keys(), running_tools=tools,
                    tool_limits=limits, slots=self.parallel + self.ahead - len(in_flight),
                    now=now,
                    ranks=self.ranks, conflicts=self.conflicts, waived=self.user_skipped,
                    order=order,
                ):
                    if wsr.state is WorkstreamState.PENDING:
                        self._start_ws(wsr, record=False)
                    sr.state = check(STEP_TRANSITIONS, sr.state, StepState.RUNNING)
                    in_flight[wsr.ws.id] = sr
                    tools[sr.step.tool] += 1
                    deps = [(d, self.ws[d].head_sha or "") for d in wsr.ws.depends_on]
                    pool.submit(self._work, wsr, sr, deps)
            if not in_flight and (self.cancelling or not self._retry_pending()):
                return
            if not in_flight:  # only retries due later: let the clock pass the time
                self.clock.idle(self._wait_timeout(now), self.cancel)
                continue
            timeout = 0.5 if self.cancelling else min(0.5, self._wait_timeout(now))
            try:
                items = [self.done.get(timeout=timeout)]
            except queue.Empty:
                continue
            while True:  # everything that arrived meanwhile, in order
                try:
                    items.append(self.done.get_nowait())
                except queue.Empty:
                    break
            for wsr, sr, report, nxt in items:
                if isinstance(report, BaseException):
                    raise report  # a bug, or the lease lost under a worker: let it surface
                if report is None:  # prepared ahead, not started: the run is stopping
                    sr.state = check(STEP_TRANSITIONS, sr.state, StepState.PENDING)
                    if wsr.base_sha is None:
                        wsr.state = check(WORKSTREAM_TRANSITIONS, wsr.state,
                                          WorkstreamState.PENDING)
                    del in_flight[wsr.ws.id]
                    tools[sr.step.tool] -= 1
                    continue
                self._on_report(wsr, sr, report, applied=True, continuing=nxt is not None)
                if nxt is not None:
                    in_flight[wsr.ws.id] = nxt
                    self.reporter.event("step.started", wsr.ws.id, nxt.step.id,
                                        {"attempt": nxt.last_number + 1})
                else:
                    del in_flight[wsr.ws.id]
                    tools[sr.step.tool] -= 1
                    ended += wsr.state.terminal
            if ended * 8 > len(order):  # pick_ready skips ended ones; drop them now and then
                order = [w for w in order if not w.state.terminal]
                ended = 0

    def _work(self, wsr: WorkstreamRuntime, sr: StepRuntime,
              deps: list[tuple[str, str]]) -> None:
        """On a worker: prepare ``wsr``'s worktree, take a run slot, run ``sr``, then each next
        step of ``wsr`` that is ready at once.

        Going straight on saves the round trip through the orchestrator's thread per step
        (the scheduler would choose the same: active workstreams go first). It stops at the
        first step that did not complete, at a step of another tool profile (whose concurrency
        limit the orchestrator counts), and when the run is stopping. Each report is applied to
        the runtimes here and queued, with the step that follows it, for :meth:`_schedule`.
        """
        try:
            fresh = wsr.base_sha is None
            failed = self.executor.prepare_for(wsr, sr, deps)  # before a slot: see _loop
            if failed is not None:
                self.done.put((wsr, sr, failed, None))
                return
            if not self._take_slot():
                self.store.drop_deferred()  # nothing ran: the store is not told it was prepared
                if fresh:  # as if never prepared
                    self._release(wsr)
                    wsr.base_sha = wsr.head_sha = wsr.worktree_path = None
                self.done.put((wsr, sr, None, None))
                return
            try:
                self.reporter.event("step.started", wsr.ws.id, sr.step.id,
                                    {"attempt": sr.last_number + 1})
                while True:
                    siblings = [other for other in wsr.steps if other is not sr]
                    report = self.executor.run_attempt(wsr, sr, siblings)
                    self._apply(sr, report)
                    nxt = None
                    if (report.state is StepState.COMPLETED and not self.cancel.is_set()
                            and self.lease_lost is None):
                        nxt = next_step(wsr, self.steps, self.clock.now(), self.user_skipped)
                        if nxt is not None and nxt.step.tool != sr.step.tool:
                            nxt = None
                    if nxt is not None:
                        nxt.state = check(STEP_TRANSITIONS, nxt.state, StepState.RUNNING)
                    self.done.put((wsr, sr, report, nxt))
                    if nxt is None:
                        return
                    sr = nxt
            finally:
                self.run_slots.release()
        except BaseException as exc:
            self.done.put((wsr, sr, exc, None))
            raise

    def _take_slot(self) -> bool:
        """Wait for one of the ``parallel`` run slots; False when the run stops meanwhile."""
        while not self.run_slots.acquire(timeout=0.2):
            if self.cancel.is_set():
                return False
        if self.cancel.is_set():
            self.run_slots.release()
            return False
        return True

    def _skip_unreachable(self) -> None:
        """Nothing runs and nothing can start: what is left can never become ready. Each is
        skipped with the reason: the dependency that did not complete."""
        for wsr in self.ws.values():
            if wsr.state not in (WorkstreamState.PENDING, WorkstreamState.RUNNING):
                continue
            blocked = [self.steps[f"{wsr.ws.id}/{s}"] for s in wsr.step_order
                       if not self.steps[f"{wsr.ws.id}/{s}"].state.terminal]
            deps = [d for d in wsr.ws.depends_on
                    if self.ws[d].state is not WorkstreamState.COMPLETED]
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
            if any(self.ws[d].state is not WorkstreamState.COMPLETED for d in wsr.ws.depends_on):
                continue
            self.to_settle.discard(ws_id)
            if wsr.state is WorkstreamState.PENDING:
                self._start_ws(wsr, record=True)
            self._finish_ws(wsr)

    def _poll_decisions(self) -> None:
        """Act on `aidp approve` / `aidp reject` of steps waiting at a human gate.

        A decision counts only when it came after the step's latest gate (a rolled-back step
        that reaches its gate again needs a new decision)."""
        for event in self.store.events(self.run_id, after_id=self.decision_cursor):
            self.decision_cursor = event.id
            key = f"{event.ws_id}/{event.step_id}"
            if event.kind == "step.awaiting_approval":
                self.gate_since[key] = event.id
                continue
            if event.kind not in ("step.approved", "step.rejected") or key not in self.steps:
                continue
            sr, wsr = self.steps[key], self.ws[event.ws_id]
            if sr.state is not StepState.AWAITING_APPROVAL or event.id < self.gate_since.get(
                    key, 0):
                continue
            data = json.loads(event.data or "{}")
            if event.kind == "step.approved":
                sr.next_kind = "approval"
                with self.store.write(self.fence) as tx:
                    self._set_step(tx, sr, StepState.PENDING, reason=None,
                                   history_json=json.dumps({"history": sr.history.to_dict(),
                                                            "next": "approval"}))
                self.reporter.event("step.approved", wsr.ws.id, sr.step.id, data)
                continue
            reason = f"rejected by {data.get('by', '?')}: {data.get('reason', '')}"
            with self.store.write(self.fence) as tx:
                tx.update_step(self.run_id, wsr.ws.id, sr.step.id,
                               status=StepState.FAILED.value, reason=reason,
                               failure_class="permanent", finished_at=tx.now)
            self._on_report(wsr, sr, AttemptReport(
                wsr.ws.id, sr.step.id, sr.last_number, sr.attempts, None, StepState.FAILED,
                reason, history=sr.history, failure_class="permanent"))

    def _retry_pending(self) -> bool:
        """True while a step of a live workstream waits for its next attempt (or a human)."""
        return any(
            sr.state in (StepState.RETRYING, StepState.CIRCUIT_OPEN,
                         StepState.AWAITING_APPROVAL)
            and self.ws[sr.ws_id].state in (WorkstreamState.PENDING, WorkstreamState.RUNNING)
            for sr in self.steps.values()
        )

    def _wait_timeout(self, now: float) -> float:
        """Seconds until the next retry is due (0.5 when none is)."""
        due = []
        for key in list(self.waiting):  # a worker may add one meanwhile
            sr = self.steps[key]
            if sr.state not in _WAITING:
                self.waiting.discard(key)
            elif sr.next_attempt_at is not None:
                due.append(sr.next_attempt_at)
        return max(0.0, min(at - now for at in due)) if due else 0.5

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
        })
        if report.state in (StepState.FAILED, StepState.TIMEOUT, StepState.CANCELLED):
            self._compensate(wsr, sr)
        if report.state in (StepState.FAILED, StepState.TIMEOUT):
            choice = self.decide(sr, report) if self.decide is not None else None
            if choice == "retry":
                sr.history, sr.profile, sr.next_kind, sr.fix_findings = (
                    History(), None, "retry", ())
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
        if not continuing and all(other.state.terminal for other in wsr.steps):
            self._finish_ws(wsr, recorded=report.closed_workstream)

    def _apply(self, sr: StepRuntime, report: AttemptReport) -> None:
        """Copy what an attempt left for the next one into the step's runtime."""
        sr.state = check(STEP_TRANSITIONS, sr.state, report.state)
        sr.attempts = report.counted
        sr.last_number = report.number
        sr.reason = report.reason
        sr.next_attempt_at = report.next_attempt_at
        sr.history = report.history
        sr.next_kind = report.next_kind
        sr.profile = report.profile
        sr.fix_findings = report.fix_findings
        if report.checkpoint_sha:
            sr.checkpoint_sha = report.checkpoint_sha
        if sr.state in _WAITING:
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
        merged_sha = None
        if wsr.ws.merge is not None and wsr.ws.merge.strategy is not MergeStrategy.NONE:
            try:
                merged_sha = merge_into_target(
                    self.repo, wsr.head_sha or wsr.branch, wsr.ws.merge.into,
                    strategy=wsr.ws.merge.strategy.value,
                    message=f"aidp: {wsr.ws.merge.strategy.value} {wsr.ws.id} "
                    f"({wsr.ws.title or wsr.branch})",
                    trailers={"Aidp-Run": self.run_id, "Aidp-Workstream": wsr.ws.id},
                    create_from=wsr.base_ref,
                )
            except AidpError as exc:
                self._fail_ws(wsr, f"merge into {wsr.ws.merge.into} failed: {exc.message}")
                return
        self._release(wsr)
        with self.store.write(self.fence) as tx:
            self._set_ws(tx, wsr, WorkstreamState.COMPLETED, finished_at=tx.now,
                         head_sha=wsr.head_sha, merged_sha=merged_sha, reason=None)
            tx.event(self.run_id, "workstream.completed", wsr.ws.id, head=wsr.head_sha,
                     merged_sha=merged_sha)
        self.reporter.event("workstream.completed", wsr.ws.id, None,
                            {"head": wsr.head_sha, "merged_sha": merged_sha})

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
        if wsr.base_sha is not None or wsr.worktree is not None:
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
            skip_reason = f"dependency {wsr.ws.id} failed"
            for ws_id in sorted(self.dependants[wsr.ws.id]):
                other = self.ws[ws_id]
                if other.state is WorkstreamState.PENDING:
                    self._set_ws(tx, other, WorkstreamState.SKIPPED, reason=skip_reason,
                                 finished_at=tx.now)
                    for step_id in other.step_order:
                        sr = self.steps[f"{ws_id}/{step_id}"]
                        if not sr.state.terminal:
                            self._set_step(tx, sr, StepState.SKIPPED, reason=skip_reason)
                    tx.event(self.run_id, "workstream.skipped", ws_id, reason=skip_reason)
        self.reporter.event("workstream.failed", wsr.ws.id, None, {"reason": reason})
        for ws_id in sorted(self.dependants[wsr.ws.id]):
            if self.ws[ws_id].state is WorkstreamState.SKIPPED:
                self.reporter.event("workstream.skipped", ws_id, None,
                                    {"reason": f"dependency {wsr.ws.id} failed"})

    def _cancel_rest(self) -> None:
        for wsr in self.ws.values():
            if not wsr.state.terminal and (wsr.base_sha is not None or wsr.worktree is not None):
                self._compensate(wsr, None)
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
                "head": wsr.head_sha, "reason": wsr.reason,
                "steps": {s: self.steps[f"{wsr.ws.id}/{s}"].state.value for s in wsr.step_order},
            }
            for wsr in self.ws.values()
        ], time.monotonic() - self.started)
        self.reporter.event("run.finished", None, None, summary.to_dict())
        return summary

    # -- state changes: memory and store together ---------------------------------------------

    def _set_step(self, tx: Any, sr: StepRuntime, state: StepState, **values: Any) -> None:
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
        if state in _WAITING:
            self.waiting.add(sr.key)
        tx.update_step(self.run_id, sr.ws_id, sr.step.id, status=state.value, **values)

    def _set_ws(self, tx: Any, wsr: WorkstreamRuntime, state: WorkstreamState, **values: Any
                ) -> None:
        wsr.state = check(WORKSTREAM_TRANSITIONS, wsr.state, state)
        if "reason" in values:
            wsr.reason = values["reason"]
        tx.update_ws(self.run_id, wsr.ws.id, status=state.value, **values)

    def _release(self, wsr: WorkstreamRuntime) -> None:
        if wsr.worktree is not None:
            try:
                self.pool.release(wsr.worktree)
            finally:
                wsr.worktree = None


def _history_json(sr: StepRuntime) -> str:
    return json.dumps({"history": sr.history.to_dict(), "next": sr.next_kind})


def _finding(row: Any) -> Finding:
    return Finding(
        detector=row.detector, message=row.message,
        failure_class=FailureClass(row.failure_class), severity=Severity(row.severity),
        file=row.file, line=row.line, column=row.col, code=row.code,
        retry_after=row.retry_after, fingerprint=row.fingerprint,
    )
