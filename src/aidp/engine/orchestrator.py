"""The orchestrator: drives one run from its row in the store to its final status.

One orchestrator drives a run at a time (it holds the run's lease, renewed by
:func:`aidp.state.lease.keep_lease` on a heartbeat thread). It loads the run and recovers what a
crash left behind (:mod:`~aidp.engine.resume`), then loops: ask the scheduler
(:mod:`~aidp.engine.scheduler`) for ready steps, hand them to worker threads that run attempts
through the executor (:mod:`~aidp.engine.executor`), act on each finished attempt
(:mod:`~aidp.engine.lifecycle`), and drain the merge queues of targets with integration checks
(:mod:`~aidp.engine.mergequeue`) between rounds. This module owns the loop, the worker threads,
the run slots and human-gate decisions; creating a run is :mod:`~aidp.engine.run`'s, and it never
runs a tool itself.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aidp.config import Settings
from aidp.core.clock import Clock, SystemClock
from aidp.core.states import (
    STEP_TRANSITIONS,
    WORKSTREAM_TRANSITIONS,
    AttemptKind,
    FailureClass,
    RunState,
    StepState,
    WorkstreamState,
    check,
)
from aidp.engine.executor import make_executor
from aidp.engine.ledger import HELD, WAITING
from aidp.engine.mergequeue import MergeQueue
from aidp.engine.resume import Resume
from aidp.engine.run import Decision, Reporter, RunSummary, SilentReporter
from aidp.engine.runtime import AttemptReport, StepRuntime, WorkstreamRuntime
from aidp.engine.scheduler import next_step, pick_ready, rank_order
from aidp.exceptions import LeaseLostError, StateError
from aidp.model.workstream import MergeStrategy
from aidp.state.lease import acquire_lease, keep_lease, release_lease
from aidp.state.store import Store
from aidp.workspace.worktrees import WorktreePool

__all__ = ["AHEAD_MAX_FILES", "Orchestrator", "drive_run"]

# Preparing worktrees ahead needs a spare one: a full checkout, once (0.2-0.3 s at 5,000 files
# here, 4 s and more at 20,000), so only in repositories up to this size.
AHEAD_MAX_FILES = 5000


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
    return Orchestrator(store, repo, run_id, settings, reporter or SilentReporter(), decide,
                         parallel, clock or SystemClock()).run()


class Orchestrator(Resume, MergeQueue):
    """Drives one run: the lease, the worker threads and the scheduling loop (see the module
    docstring); :func:`drive_run` is its door."""

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
        self.waiting: set[str] = set()  # the keys of every HELD step (and maybe others)
        # (workstream, step, its report or a worker's exception -- None: not started -- the
        # step the worker went on with): from the workers to the orchestrator's thread, in order
        self.done: queue.Queue[tuple[WorkstreamRuntime, StepRuntime,
                                     AttemptReport | BaseException | None,
                                     StepRuntime | None]] = queue.Queue()
        self.ahead = 0
        self.run_slots = threading.BoundedSemaphore(1)
        self.merge_queues = {}
        self.check_runs = None
        self.scratch_trees = {}
        self.merge_jobs = {}
        self.merge_threads = None
        self.merge_tested = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> RunSummary:
        row = self.store.run(self.run_id)
        if RunState(row.status) is RunState.CANCELLED:
            raise StateError(f"run {self.run_id} was cancelled; start a new run")
        ttl_s = self.settings.run.lease_ttl
        self.fence = acquire_lease(self.store, self.run_id, ttl_s=ttl_s)
        stop_heartbeat = threading.Event()
        heartbeat = threading.Thread(target=keep_lease, args=(self.store, self.fence,
                                                              stop_heartbeat, self._lease_lost),
                                     kwargs={"ttl_s": ttl_s}, name="aidp-lease", daemon=True)
        heartbeat.start()
        # Released worktrees keep their branch until the end of the run (detached below): a
        # HEAD and reflog write less per workstream. Merge targets are detached at once.
        self.pool = WorktreePool(self.repo, detach_on_release=False)
        try:
            self._load(row)
            self.pool.always_detach = frozenset(
                wsr.ws.merge.into for wsr in self.ws.values() if wsr.ws.merge is not None)
            self.pool.owned = frozenset(wsr.branch for wsr in self.ws.values())
            self.executor = make_executor(
                store=self.store, fence=self.fence, repo=self.repo, settings=self.settings,
                pool=self.pool, cancel=self.cancel, on_output=self.reporter.output,
                clock=self.clock)
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
            self._close_merge_queues()
            heartbeat.join(timeout=5)
            if getattr(self, "executor", None) is not None:
                self.executor.close()
            if self.lease_lost is None:
                release_lease(self.store, self.fence)

    def _lease_lost(self, exc: LeaseLostError) -> None:
        """The heartbeat found the lease taken over: stop everything (the loop raises it)."""
        self.lease_lost = exc
        self.cancel.set()

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
            self._drop_merge_jobs()  # before the run's end is written
            self._cancel_rest()
        else:
            self._skip_unreachable()
            self._drain_merges((), wait=True)  # what ending the unreachable ones queued

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
                elif self._held(StepState.AWAITING_APPROVAL):
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
                    deps = self._dep_starts(wsr)
                    pool.submit(self._work, wsr, sr, deps)
                # after starting what is ready, so that batches fill meanwhile; what lands (or
                # fails to) may make dependants ready: look again before anything else
                if self.merge_queues and self._drain_merges(in_flight.keys()):
                    continue
            if not in_flight and (self.cancelling or (not self._retry_pending()
                                                      and not self._merges_queued())):
                return
            if not in_flight and self.merge_jobs:  # only batches under test: wait for one
                self.merge_tested.wait(0.5)
                continue
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

    def _dep_starts(self, wsr: WorkstreamRuntime) -> list[tuple[str, str]]:
        """What ``wsr`` starts from: (dependency id, commit) in ``depends_on`` order.

        A dependency's branch head -- except when the dependency was squash-merged into the
        same branch ``wsr`` merges into: then its squash result (``merged_sha``, also after a
        resume: it is loaded from the store). Starting from the head would bring the
        dependency's per-step commits into the target with ``wsr``'s own merge, undoing the
        squash. A dependency squashed into another branch (or ``wsr`` not merging) gives its
        head: the other target's history is no part of ``wsr``'s."""
        merge = wsr.ws.merge
        into = merge.into if merge is not None and merge.strategy is not MergeStrategy.NONE \
            else None
        starts = []
        for dep_id in wsr.ws.depends_on:
            dep = self.ws[dep_id]
            dm = dep.ws.merge
            squashed = (into is not None and dm is not None and dm.into == into
                        and dm.strategy is MergeStrategy.SQUASH and dep.merged_sha)
            starts.append((dep_id, (dep.merged_sha if squashed else dep.head_sha) or ""))
        return starts

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
                    report = self.executor.run_attempt(wsr, sr, may_close=True)
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
                sr.next_kind = AttemptKind.APPROVAL
                with self.store.write(self.fence) as tx:
                    self._set_step(tx, sr, StepState.PENDING, reason=None,
                                   history_json=json.dumps({"history": sr.history.to_dict(),
                                                            "next": AttemptKind.APPROVAL.value}))
                self.reporter.event("step.approved", wsr.ws.id, sr.step.id, data)
                continue
            reason = f"rejected by {data.get('by', '?')}: {data.get('reason', '')}"
            self._unkeep(wsr)
            with self.store.write(self.fence) as tx:
                tx.update_step(self.run_id, wsr.ws.id, sr.step.id,
                               status=StepState.FAILED.value, reason=reason,
                               failure_class=FailureClass.PERMANENT.value, finished_at=tx.now)
            self._on_report(wsr, sr, AttemptReport(
                wsr.ws.id, sr.step.id, sr.last_number, sr.attempts, None, StepState.FAILED,
                reason, history=sr.history, failure_class=FailureClass.PERMANENT.value))

    def _held(self, *states: StepState) -> list[StepRuntime]:
        """The steps in ``states`` (some of HELD), from ``waiting``: its keys, not every step
        of the run (a run's steps may be thousands; this is asked at every scheduling round).

        Keys of ended steps are dropped: only this thread moves a step out of an end state, so
        none can become HELD meanwhile. A running step keeps its key (its worker may make it
        HELD again between our reading its state and dropping the key)."""
        held = []
        for key in list(self.waiting):  # a worker may add one meanwhile
            sr = self.steps[key]
            state = sr.state
            if state.terminal:
                self.waiting.discard(key)
            elif state in states:
                held.append(sr)
        return held

    def _retry_pending(self) -> bool:
        """True while a step of a live workstream waits for its next attempt (or a human)."""
        return any(
            self.ws[sr.ws_id].state in (WorkstreamState.PENDING, WorkstreamState.RUNNING)
            for sr in self._held(*HELD)
        )

    def _wait_timeout(self, now: float) -> float:
        """Seconds until the next retry is due (0.5 when none is)."""
        due = [sr.next_attempt_at for sr in self._held(*WAITING)
               if sr.next_attempt_at is not None]
        return max(0.0, min(at - now for at in due)) if due else 0.5

