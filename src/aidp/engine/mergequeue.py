"""The merge queue: finished workstreams land on a target only through its integration checks.

A workstream whose ``merge`` declares ``checks`` does not land when its steps complete: it is
queued for its target (``merge.queued``), in DAG order -- plan order, as a dependant starts only
once its dependencies have landed, so the two are never queued together. A batch of up to
``merge.batch`` entries is taken when the batch is full or when no workstream merging into that
target has a step running (nothing more will join soon); it is merged and checked on a thread
of its own (one batch per target at a time), so that steps go on starting meanwhile, and what
it decided -- land, reject, conflict -- is applied on the orchestrator's thread:

1. The batch's merged tree is built in memory on the target's head: one merge commit per
   workstream (:func:`~aidp.workspace.merge.merge_commit`, the commit an unchecked merge would
   make), each on the previous one, so prefix ``i`` of the batch is commit ``c_i``. An entry
   that conflicts leaves the queue as an unchecked merge's conflict does (failed, its work
   delivered to its dependants).
2. The checks run on ``c_k`` in a scratch worktree (:class:`~aidp.workspace.scratch.ScratchTree`,
   detached: no branch moves) -- ``merge.checked``, with the batch, the verdict and the
   running count of check runs.
3. Pass: the target moves to ``c_k`` by compare-and-swap inside the fenced transaction that
   marks the batch's workstreams completed (each with its own merge commit as ``merged_sha``).
   Fail: :func:`first_failing` bisects the prefixes (``c_0``, the target, is known to pass;
   ``c_k`` to fail) to the first failing one, ``c_h``; the target moves to ``c_{h-1}``
   (the longest prefix that passed, possibly none), entry ``h`` is rejected -- failed with the
   checks' findings (``merge.rejected``, rows in ``findings`` under step ``@merge``), its
   compensations not run, its branch kept, and its dependants skipped, since their branches
   hold its work and would land it with theirs -- and the entries after it stay queued, to be
   tested again without it. With one bad entry among ``k`` that costs ``1 + ceil(log2 k)``
   check runs, plus the re-test of the entries after it in a later batch.

So the target only ever moves to a commit whose tree passed the checks, and only by a CAS in a
fenced transaction. The queue lives in memory: after a crash, ``aidp resume`` finds the queued
workstreams still running with every step completed and settles them into the queue again; a
batch whose move reached git but not the store lands again as "nothing to merge" (its commits
are already in the target), without a check run.

What the queue cannot see: the target's own head is assumed to pass the checks (a target that
fails them without any merge gets its first queued entry blamed), and a check is assumed to
be deterministic (a flaky one rejects a workstream that a re-run would have passed).
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from aidp.core.states import WorkstreamState
from aidp.engine.diagnosis import check_finding, dedupe_sourced, detect, finding_rows
from aidp.engine.invocation import run_checks
from aidp.engine.lifecycle import Lifecycle
from aidp.engine.runtime import WorkstreamRuntime
from aidp.errors.finding import Finding
from aidp.exceptions import AidpError, LeaseLostError, StateError
from aidp.model.workstream import MergeSpec, MergeStrategy
from aidp.process.capped_log import CappedLog
from aidp.process.runner import build_env, new_token
from aidp.workspace.checkpoint import RefUpdate
from aidp.workspace.git import rev_parse
from aidp.workspace.merge import checked_out_branches, merge_commit
from aidp.workspace.scratch import ScratchTree

__all__ = ["MERGE_STEP", "MergeQueue", "first_failing"]

#: The step id under which the findings of a rejected merge are stored (not a valid step id,
#: so it names no step of the workstream).
MERGE_STEP = "@merge"


def first_failing(count: int, passes: Callable[[int], bool]) -> int:
    """The first failing prefix of a chain of ``count`` prefixes where prefix 0 passes and
    prefix ``count`` fails: the ``h`` in ``1..count`` with ``passes(h - 1)`` and not
    ``passes(h)``, found by bisection -- ``ceil(log2 count)`` calls of ``passes`` (with a prefix
    in ``1..count-1``), none when ``count`` is 1.

    Exact when passing is monotone (no prefix passes after a failing one); otherwise it is
    still *a* boundary between a passing prefix and a failing one."""
    low, high = 0, count  # passes(low), not passes(high)
    while high - low > 1:
        mid = (low + high) // 2
        if passes(mid):
            low = mid
        else:
            high = mid
    return high


@dataclass(frozen=True)
class _Verdict:
    """One run of the integration checks on a commit: passed, and if not, its findings."""

    passed: bool
    number: int  # the target's check run this was (1, 2, ...)
    findings: tuple[tuple[str, Finding], ...] = ()
    log_path: str | None = None


@dataclass
class _Decided:
    """What testing one batch decided, off the orchestrator's thread (nothing applied yet)."""

    batch: list[WorkstreamRuntime]
    refusal: StateError | None = None  # the target is checked out: the batch is not merged
    conflicts: list[tuple[WorkstreamRuntime, AidpError]] = field(default_factory=list)
    chain: list[tuple[WorkstreamRuntime, str]] = field(default_factory=list)  # (entry, prefix)
    old: str | None = None  # the target's head when the batch was built
    base: str = ""
    bad: int | None = None  # the first failing prefix (None: the whole chain passed)
    verdict: _Verdict | None = None  # the failing prefix's check run


class MergeQueue(Lifecycle):
    """The orchestrator's merge queues, one per target branch (a mixin of
    :class:`~aidp.engine.orchestrator.Orchestrator`; see the module docstring)."""

    merge_queues: dict[str, list[WorkstreamRuntime]]  # target -> its queue, in DAG order
    check_runs: Counter[str] | None  # target -> check runs so far (None: not read yet)
    scratch_trees: dict[str, ScratchTree]  # target -> where its checks run
    merge_jobs: dict[str, Future[_Decided]]  # target -> the batch being tested
    merge_threads: ThreadPoolExecutor | None
    merge_tested: threading.Event  # set when a batch's test ends

    def _queue_merge(self, wsr: WorkstreamRuntime) -> None:
        merge = wsr.ws.merge
        assert merge is not None
        queue = self.merge_queues.setdefault(merge.into, [])
        if wsr in queue:
            return
        queue.append(wsr)
        position = {ws_id: i for i, ws_id in enumerate(self.ws)}
        queue.sort(key=lambda w: position[w.ws.id])
        self._release(wsr)  # its worktree is not needed any more: the queue works in memory
        with self.store.write(self.fence) as tx:
            tx.event(self.run_id, "merge.queued", wsr.ws.id, into=merge.into,
                     head=wsr.head_sha, queued=len(queue))
        self.reporter.event("merge.queued", wsr.ws.id, None,
                            {"into": merge.into, "queued": len(queue)})

    def _merges_queued(self) -> bool:
        return any(self.merge_queues.values())

    def _drain_merges(self, busy: Collection[str], *, wait: bool = False) -> bool:
        """Apply what tested batches decided, and start testing the next: for each target, a
        batch when its queue holds a full one, or all of it when none of ``busy`` (workstream
        ids with a step running) merges into it. ``wait``: test (and wait for) every batch
        until the queues are empty. Nothing new starts while the run is stopping. Whether
        any batch was applied (workstreams ended)."""
        applied = False
        for into, queue in self.merge_queues.items():
            while True:
                job = self.merge_jobs.get(into)
                if job is not None:
                    if not (wait or job.done()):
                        break
                    del self.merge_jobs[into]
                    self._apply_batch(into, queue, job.result())  # its exception surfaces here
                    applied = True
                if not queue or self.cancel.is_set():
                    break
                spec = _spec(queue[0])
                running = any(_into(self.ws[ws_id]) == into for ws_id in busy)
                if running and len(queue) < spec.batch:
                    break
                if self.merge_threads is None:
                    self.merge_threads = ThreadPoolExecutor(thread_name_prefix="aidp-merge")
                self.merge_tested.clear()
                job = self.merge_threads.submit(self._test_batch, into, spec,
                                                queue[: spec.batch])
                job.add_done_callback(lambda _: self.merge_tested.set())
                self.merge_jobs[into] = job
                if not wait:
                    break
        return applied

    def _test_batch(self, into: str, spec: MergeSpec, batch: list[WorkstreamRuntime]
                    ) -> _Decided:
        """On a merge thread: merge ``batch`` onto ``into`` in memory, run the checks on the
        result, and bisect a failure to its first failing entry. Changes no runtime record
        (:meth:`_apply_batch` does, on the orchestrator's thread)."""
        decided = _Decided(list(batch))
        holders = checked_out_branches(self.repo)
        if into in holders:
            decided.refusal = StateError(
                f"branch {into} is checked out in {holders[into]}; "
                "aidp will not move a checked-out branch")
            return decided
        old = rev_parse(self.repo, f"refs/heads/{into}")
        base = old or rev_parse(self.repo, f"{batch[0].base_ref}^{{commit}}")
        assert base is not None  # a base_ref is a resolved commit of the repository
        decided.old, decided.base = old, base
        tip = base
        strategy: Literal["merge", "squash"] = (
            "squash" if spec.strategy is MergeStrategy.SQUASH else "merge")
        for wsr in batch:
            try:
                tip = merge_commit(
                    self.repo, tip, wsr.head_sha or wsr.branch, strategy=strategy,
                    message=f"aidp: {strategy} {wsr.ws.id} ({wsr.ws.title or wsr.branch})",
                    trailers={"Aidp-Run": self.run_id, "Aidp-Workstream": wsr.ws.id},
                    into=into, name=wsr.branch)
            except AidpError as exc:  # a conflict: out of the queue, its work delivered
                decided.conflicts.append((wsr, exc))
                continue
            decided.chain.append((wsr, tip))
        chain = decided.chain
        if not chain:
            return decided
        members = [w.ws.id for w, _ in chain]
        verdicts: dict[int, _Verdict] = {}

        def passes(prefix: int) -> bool:
            sha = chain[prefix - 1][1] if prefix else base
            if sha == base:  # nothing new on the target (a resumed landing): nothing to check
                return True
            verdict = self._check(into, spec, sha, members[:prefix])
            verdicts[prefix] = verdict
            return verdict.passed

        if not passes(len(chain)):
            decided.bad = first_failing(len(chain), passes)
            decided.verdict = verdicts[decided.bad]
        return decided

    def _apply_batch(self, into: str, queue: list[WorkstreamRuntime], decided: _Decided
                     ) -> None:
        """On the orchestrator's thread: land what passed, reject the first entry that
        failed, fail the conflicts; drop what was decided from ``queue``."""
        if decided.refusal is not None:
            for wsr in decided.batch:
                queue.remove(wsr)
                self._merge_failed(wsr, into, decided.refusal)
            return
        for wsr, exc in decided.conflicts:
            queue.remove(wsr)
            self._merge_failed(wsr, into, exc)
        chain = decided.chain
        landed = chain if decided.bad is None else chain[: decided.bad - 1]
        if landed:
            self._land(into, decided.old, decided.base, landed)
        for wsr, _ in landed:
            queue.remove(wsr)
        if decided.bad is not None:
            assert decided.verdict is not None
            culprit = chain[decided.bad - 1][0]
            queue.remove(culprit)
            self._reject(culprit, into, decided.verdict)

    def _check(self, into: str, spec: MergeSpec, sha: str, members: list[str]) -> _Verdict:
        """Run the integration checks on commit ``sha`` (``members`` merged onto ``into``) in
        the target's scratch worktree; record ``merge.checked``."""
        if self.check_runs is None:  # the running count goes on from earlier orchestrators'
            self.check_runs = Counter(
                json.loads(e.data or "{}").get("into") for e in self.store.events(self.run_id)
                if e.kind == "merge.checked")
        self.check_runs[into] += 1
        number = self.check_runs[into]
        scratch = self.scratch_trees.setdefault(into, ScratchTree(self.repo, into))
        path = scratch.checkout(sha)
        log_path = (self.repo / ".aidp" / "runs" / self.run_id / "logs" / "merge-queue"
                    / f"{scratch.path.name}.{number}.log")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = CappedLog(log_path, cap_bytes=self.settings.run.log_cap_bytes)
        log.note(f"[aidp] merge queue {into}: {' '.join(members)} at {sha[:12]}")
        values: dict[str, str | list[str]] = {
            "worktree": str(path), "run_id": self.run_id, "repo": str(self.repo)}
        env = build_env(dict(os.environ), (), {
            "AIDP_RUN_ID": self.run_id, "AIDP_WORKTREE": str(path), "AIDP_MERGE_INTO": into})
        token = new_token()  # journaled first: a resume after a crash kills what it left running
        with self.store.write(self.fence) as tx:
            tx.event(self.run_id, "merge.checking", None, into=into, members=members, sha=sha,
                     token=token)
        try:
            results, evidence = run_checks(
                spec.check_list(), values, env, [], log, path, token,
                grace_s=self.settings.run.kill_grace, cancel=self.cancel)
        finally:
            log.close()
        failed = [c for c in evidence if c.exit_code != 0]
        passed = bool(results) and all(r.exit_code == 0 and r.error is None for r in results)
        sourced: list[tuple[str, Finding]] = []
        if not passed:
            detected = detect(None, failed)
            explained = {source for source, _ in detected.findings}
            sourced = dedupe_sourced([
                *detected.findings,
                *((c.name, check_finding(c.name, c.exit_code, c.output))
                  for c in failed if c.name not in explained),
                *((r.name, check_finding(r.name, None, r.error))
                  for r in results if r.error is not None)])
        with self.store.write(self.fence) as tx:
            tx.event(self.run_id, "merge.checked", None, into=into, members=members,
                     sha=sha, passed=passed, check_runs=number, log=str(log_path), token=token)
        self.reporter.event("merge.checked", None, None, {
            "into": into, "members": members, "passed": passed, "check_runs": number})
        return _Verdict(passed, number, tuple(sourced), str(log_path))

    def _land(self, into: str, old: str | None, base: str,
              chain: list[tuple[WorkstreamRuntime, str]]) -> None:
        """Move ``into`` from ``old`` to the last commit of ``chain`` (compare-and-swap) in the
        fenced transaction that marks its workstreams completed."""
        landing = RefUpdate(self.repo, into, chain[-1][1], old,
                            f"aidp: merge queue {' '.join(w.ws.id for w, _ in chain)}")
        before = base
        for wsr, sha in chain:
            wsr.merged_sha, wsr.merge_changed = sha, sha != before
            before = sha
        try:
            with self.store.write(self.fence) as tx:
                for wsr, _ in chain:
                    self._set_ws(tx, wsr, WorkstreamState.COMPLETED, finished_at=tx.now,
                                 head_sha=wsr.head_sha, merged_sha=wsr.merged_sha, reason=None)
                    tx.event(self.run_id, "workstream.completed", wsr.ws.id,
                             head=wsr.head_sha, **self._merge_info(wsr))
                landing.apply()  # only while our lease is current (see Executor._record)
        except LeaseLostError:
            raise
        except StateError as exc:  # the target moved meanwhile: the work stands, unmerged
            for wsr, _ in chain:
                wsr.state = WorkstreamState.RUNNING  # the transaction rolled back
                wsr.merged_sha = wsr.merge_changed = None
                self._merge_failed(wsr, into, exc)
            return
        for wsr, _ in chain:
            self.reporter.event("workstream.completed", wsr.ws.id, None,
                                {"head": wsr.head_sha, **self._merge_info(wsr)})

    def _reject(self, wsr: WorkstreamRuntime, into: str, verdict: _Verdict) -> None:
        """Take ``wsr`` out of the queue: its merge broke the checks (``verdict``)."""
        first = verdict.findings[0][1].message.splitlines()[0] if verdict.findings else \
            "no finding"
        with self.store.write(self.fence) as tx:
            tx.insert_findings(finding_rows(self.run_id, wsr.ws.id, MERGE_STEP,
                                            verdict.number, verdict.findings))
            tx.event(self.run_id, "merge.rejected", wsr.ws.id, into=into, log=verdict.log_path,
                     findings=[_brief(f) for _, f in verdict.findings])
        self.reporter.event("merge.rejected", wsr.ws.id, None,
                            {"into": into, "reason": first})
        wsr.merge_rejected = True
        self._fail_ws(wsr, f"integration checks failed when merged onto {into}: {first}")

    def _drop_merge_jobs(self) -> None:
        """Wait for the batches still being tested -- the run is stopping: their checks are
        cancelled -- and drop what they decided (resume queues those workstreams again)."""
        if self.merge_threads is not None:
            self.merge_threads.shutdown(wait=True)
            self.merge_threads = None
        self.merge_jobs.clear()

    def _close_merge_queues(self) -> None:
        """:meth:`_drop_merge_jobs`, then remove the scratch worktrees (at the end of the
        orchestrator's run)."""
        self._drop_merge_jobs()
        for scratch in self.scratch_trees.values():
            scratch.remove()

    def _queue_summaries(self) -> list[dict[str, Any]]:
        """Per target with integration checks: queued, landed, rejected, conflicts and check
        runs over the whole run (from the journal: earlier orchestrators' too)."""
        targets = sorted({m.into for w in self.ws.values() if (m := w.ws.merge) is not None
                          and m.checks and m.strategy is not MergeStrategy.NONE})
        if not targets:
            return []
        queued: dict[str, set[str]] = {t: set() for t in targets}
        runs: Counter[str] = Counter()
        for event in self.store.events(self.run_id):
            if event.kind in ("merge.queued", "merge.checked"):
                into = json.loads(event.data or "{}").get("into")
                if into in queued and event.kind == "merge.queued":
                    queued[into].add(event.ws_id)
                elif into in queued:
                    runs[into] += 1
        summaries = []
        for into in targets:
            mine = [w for w in self.ws.values() if _into(w) == into]
            summaries.append({
                "into": into, "queued": len(queued[into]),
                "landed": [w.ws.id for w in mine
                           if w.state is WorkstreamState.COMPLETED and w.merged_sha],
                "rejected": [w.ws.id for w in mine if w.merge_rejected],
                "not_merged": [w.ws.id for w in mine if w.merge_failed],
                "check_runs": runs[into]})
        return summaries


def _spec(wsr: WorkstreamRuntime) -> MergeSpec:
    assert wsr.ws.merge is not None
    return wsr.ws.merge


def _into(wsr: WorkstreamRuntime) -> str | None:
    merge = wsr.ws.merge
    return merge.into if merge is not None and merge.strategy is not MergeStrategy.NONE \
        else None


def _brief(finding: Finding) -> dict[str, Any]:
    return {"detector": finding.detector, "code": finding.code,
            "message": finding.message[:500]}
