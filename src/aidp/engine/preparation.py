"""Preparation: a workstream's worktree, ready for its next attempt.

Owns taking a worktree from the pool for a workstream -- at its start (with its dependencies'
heads merged in) or at its last checkpoint (after cleaning a crashed git's stale locks) -- and
resetting one a failed attempt left dirty. The store learns of a fresh preparation in the
attempt's claim transaction (deferred: one commit less per workstream). It never runs a tool.
"""

from __future__ import annotations

from pathlib import Path

from aidp.core.states import AttemptKind, StepState, WorkstreamState
from aidp.engine.runtime import AttemptReport, StepRuntime, WorkstreamRuntime
from aidp.exceptions import AidpError
from aidp.state.store import Store
from aidp.state.tx import Fence, Tx
from aidp.workspace.locks import clean_stale_locks
from aidp.workspace.merge import merge_dependencies
from aidp.workspace.worktrees import WorktreePool, reset_worktree

__all__ = ["Preparation"]


class Preparation:
    """The executor's worktree preparation (a mixin of :class:`~aidp.engine.executor.Executor`)."""

    store: Store
    fence: Fence
    run_id: str
    repo: Path
    pool: WorktreePool

    def prepare(self, wsr: WorkstreamRuntime, dep_heads: list[tuple[str, str]], *,
                keep: bool = False) -> None:
        """Give ``wsr`` a worktree at its last checkpoint (or at its start, merging deps).

        ``keep``: its files are work to commit (an approved human gate's, left in the
        worktree before aidp exited): its slot is taken back as it is, never reset or cleaned.
        """
        if wsr.worktree is not None:
            if wsr.needs_reset:
                reset_worktree(wsr.worktree)
                wsr.needs_reset = False
            return
        prefer = Path(wsr.worktree_path) if wsr.worktree_path else None
        fresh = wsr.base_sha is None
        if fresh:
            # The branch is created (or reset) at its start only while our lease is current: a
            # deposed holder, woken, moves no branch and starts nothing (the fence check fails).
            # The guarding transaction writes nothing; the preparation is recorded with the
            # attempt. Further dependencies are merged before the branch exists.
            start, merge_rest = merge_dependencies(
                self.pool, [sha for _, sha in dep_heads], into=wsr.branch,
                message=f"aidp: merge dependencies of {wsr.ws.id}: "
                + ", ".join(ws_id for ws_id, _ in dep_heads),
                trailers={"Aidp-Run": self.run_id, "Aidp-Workstream": wsr.ws.id})
            wt = self.pool.acquire(wsr.branch, start or wsr.base_ref, prefer=prefer,
                                   guard=lambda: self.store.write(self.fence),
                                   before_branch=merge_rest)
            wsr.worktree, wsr.worktree_path, wsr.needs_reset = wt, str(wt.path), False
            wsr.base_sha = wsr.head_sha = str(wt.pygit.head.target)
        else:
            ours = prefer is not None and prefer.parent == self.pool.root
            if prefer is not None and prefer.exists() and (
                    not ours or self.pool.slot_is_idle(prefer)):
                # A slot outside this pool (the original's, in a copied repository) is not
                # ours; one a live (deposed) holder still holds is left alone: its locks live.
                clean_stale_locks(self.repo, prefer if ours else None)
            # moves no branch; a gate's worktree is taken back as the person left it
            wt = self.pool.acquire(wsr.branch, None, prefer=prefer, keep_changes=keep)
            wsr.worktree, wsr.worktree_path, wsr.needs_reset = wt, str(wt.path), False
            wsr.head_sha = str(wt.pygit.head.target)
        # Recorded in this thread's next fenced write (the attempt's start, or whatever the
        # attempt writes first): one commit less per workstream. Before the tool runs either way.
        run_id, ws_id, branch = self.run_id, wsr.ws.id, wsr.branch
        worktree_path, base_sha, head_sha = wsr.worktree_path, wsr.base_sha, wsr.head_sha

        def record(tx: Tx) -> None:
            tx.update_ws(run_id, ws_id, status=WorkstreamState.RUNNING.value,
                         worktree=worktree_path, base_sha=base_sha, head_sha=head_sha,
                         **({"started_at": tx.now} if fresh else {}))
            if fresh:
                tx.event(run_id, "workstream.started", ws_id, branch=branch)
            tx.event(run_id, "workstream.prepared", ws_id, worktree=worktree_path,
                     base_sha=base_sha)

        self.store.defer(self.fence, record)

    def prepare_for(self, wsr: WorkstreamRuntime, sr: StepRuntime,
                    dep_heads: list[tuple[str, str]]) -> AttemptReport | None:
        """:meth:`prepare` for an attempt of ``sr``: None when ready, else the report that
        the workstream could not be prepared (nothing else to do again after it: the
        orchestrator fails the workstream)."""
        try:
            self.prepare(wsr, dep_heads, keep=sr.next_kind is AttemptKind.APPROVAL)
        except AidpError as exc:
            return AttemptReport(wsr.ws.id, sr.step.id, sr.last_number, sr.attempts, None,
                                 StepState.SKIPPED, prepare_error=exc.message)
        return None

