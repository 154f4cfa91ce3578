"""Retention of finished runs' branches: which ``aidp/RUN/WS`` branches ``aidp worktrees
prune`` may delete.

Owns :func:`prune_branches` and its rule: a branch is deleted only when its run is finished and
cannot be resumed (completed or cancelled, nobody driving it), the run is not among the newest
``keep_runs`` runs, the branch is not checked out anywhere, and its work is merged -- it holds
no commit of its own, or its head is in a branch outside ``aidp/``, or its merge target holds
its recorded merge (a squash too) or its tree. Unmerged work goes only with ``force``. Branches
of runs this database does not know are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aidp.core.states import RunState
from aidp.model.plan import Plan
from aidp.model.workstream import MergeStrategy
from aidp.state.lease import lease_is_live
from aidp.state.store import Store
from aidp.workspace.git import run_git
from aidp.workspace.merge import checked_out_branches, contains, is_merged

__all__ = ["BranchPrune", "prune_branches"]

# runs whose branches may go: nothing will build on them again (a failed run is resumable)
_FINISHED = (RunState.COMPLETED.value, RunState.CANCELLED.value)


@dataclass(frozen=True)
class BranchPrune:
    """What :func:`prune_branches` did: branches deleted, and branches kept because their work
    is not merged anywhere (``force`` deletes those)."""

    deleted: tuple[str, ...] = ()
    unmerged: tuple[str, ...] = ()


def prune_branches(store: Store, repo: Path, *, keep_runs: int, force: bool = False
                   ) -> BranchPrune:
    """Delete the branches of finished runs older than the newest ``keep_runs`` whose work is
    merged (all of them with ``force``); see the module docstring for the rule."""
    heads = _aidp_branches(repo)
    if not heads:
        return BranchPrune()
    held = checked_out_branches(repo)
    deleted: list[str] = []
    unmerged: list[str] = []
    for run in store.runs(limit=1_000_000)[keep_runs:]:  # newest first
        if run.status not in _FINISHED or lease_is_live(store.lease(run.id)):
            continue
        targets = {ws.id: ws.merge.into for ws in Plan.from_json(run.plan_json).workstreams
                   if ws.merge is not None and ws.merge.strategy is not MergeStrategy.NONE}
        for row in store.workstreams(run.id):
            sha = heads.get(row.branch)
            if sha is None or row.branch in held:
                continue
            if force or _merged(repo, row, sha, targets.get(row.ws_id)):
                # with its best-of candidates' branches (``BRANCH+STEP.ATTEMPT``): the kept
                # candidate is the workstream's checkpoint, the others were judged
                gone = [row.branch, *sorted(name for name in heads
                                            if name.startswith(row.branch + "+")
                                            and name not in held)]
                run_git(["branch", "-D", *gone], repo)
                deleted += gone
            else:
                unmerged.append(row.branch)
    return BranchPrune(tuple(deleted), tuple(unmerged))


def _aidp_branches(repo: Path) -> dict[str, str]:
    """Every local ``aidp/...`` branch, to its head sha."""
    out = run_git(["for-each-ref", "--format=%(objectname) %(refname:short)",
                   "refs/heads/aidp/"], repo).stdout
    return {name: sha for sha, _, name in (line.partition(" ") for line in out.splitlines())}


def _merged(repo: Path, row: Any, sha: str, into: str | None) -> bool:
    """Whether the work on workstream ``row``'s branch (at ``sha``) exists elsewhere."""
    if sha == row.base_sha:
        return True  # no commit of its own
    if contains(repo, sha, outside="refs/heads/aidp/"):
        return True
    if into is None:
        return False
    if row.merged_sha and sha == row.head_sha and contains(repo, row.merged_sha, only=into):
        return True  # its recorded merge (or squash) is still in the target
    return is_merged(repo, row.branch, into)
