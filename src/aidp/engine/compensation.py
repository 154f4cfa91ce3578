"""Compensations: the undo actions a step or workstream declares for when it ends failed or
cancelled -- reset the worktree to the last checkpoint, delete the branch, run a command.

Each action is recorded in the ``compensations`` table, keyed by its position, so it runs at most
once successfully (a resume does not repeat what succeeded, and retries what failed). A failing
compensation is recorded, journaled and reported; it never hides the step's own failure and
never stops the other compensations.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aidp.exceptions import AidpError
from aidp.model.workstream import Compensation
from aidp.process.runner import CappedLog, build_env, run_process
from aidp.state.store import Store
from aidp.state.tx import Fence
from aidp.tools.shell import build_argv
from aidp.workspace.git import run_git
from aidp.workspace.worktrees import Worktree, WorktreePool, reset_worktree

__all__ = ["CompensationResult", "run_compensations"]


@dataclass(frozen=True)
class CompensationResult:
    position: int
    kind: str
    ok: bool
    detail: str


def run_compensations(
    actions: Sequence[Compensation],
    *,
    store: Store,
    fence: Fence,
    repo: Path,
    ws_id: str,
    step_id: str | None,
    branch: str,
    worktree: Worktree | None,
    pool: WorktreePool,
    log_dir: Path,
    grace_s: float,
    cancel: threading.Event | None = None,
    release: Callable[[], None] | None = None,
) -> list[CompensationResult]:
    """Run the ``actions`` not yet recorded as succeeded; record each result.

    ``release`` gives the worktree back to the pool; ``delete_branch`` calls it first (a branch
    cannot be deleted while a worktree has it checked out).
    """
    if not actions:
        return []
    run_id = fence.run_id
    done = {(r.position, r.status) for r in store.compensations(run_id)
            if r.ws_id == ws_id and r.step_id == (step_id or "")}
    results = []
    for position, action in enumerate(actions):
        if (position, "succeeded") in done:
            continue
        if action.delete_branch and worktree is not None and release is not None:
            release()
            worktree = None
        try:
            detail = _apply(action, repo=repo, branch=branch, worktree=worktree, pool=pool,
                            log_path=log_dir / f"compensate.{step_id or 'ws'}.{position}.log",
                            grace_s=grace_s, cancel=cancel, run_id=run_id, ws_id=ws_id)
            result = CompensationResult(position, action.kind, True, detail)
        except AidpError as exc:
            result = CompensationResult(position, action.kind, False, exc.message)
        except OSError as exc:
            result = CompensationResult(position, action.kind, False, str(exc))
        results.append(result)
        with store.write(fence) as tx:
            tx.delete_compensation(run_id, ws_id, step_id or "", position)
            tx.insert_compensation(run_id=run_id, ws_id=ws_id, step_id=step_id or "",
                                   position=position, kind=action.kind,
                                   status="succeeded" if result.ok else "failed",
                                   detail=result.detail[:2000])
            tx.event(run_id, "compensation.succeeded" if result.ok else "compensation.failed",
                     ws_id, step_id, position=position, action=action.kind,
                     detail=result.detail[:500])
    return results


class _CompensationFailed(AidpError):
    pass


def _apply(action: Compensation, *, repo: Path, branch: str, worktree: Worktree | None,
           pool: WorktreePool, log_path: Path, grace_s: float,
           cancel: threading.Event | None, run_id: str, ws_id: str) -> str:
    if action.reset:
        if worktree is None:
            return "no worktree to reset"
        reset_worktree(worktree)
        return f"reset {worktree.path} to {branch}"
    if action.delete_branch:
        if worktree is not None:
            raise _CompensationFailed("the workstream's worktree still holds the branch")
        pool.detach_idle([branch])
        result = run_git(["branch", "-D", branch], repo, check=False)
        if result.returncode != 0 and "not found" not in result.stderr:
            raise _CompensationFailed(result.stderr.strip() or "git branch -D failed")
        return f"deleted {branch}" if result.returncode == 0 else f"{branch} was already gone"
    assert action.run is not None
    cwd = worktree.path if worktree is not None else repo
    values: dict[str, str | list[str]] = {
        "worktree": str(cwd), "repo": str(repo), "run_id": run_id, "workstream": ws_id,
        "branch": branch}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = build_env(dict(os.environ), (), {
        "AIDP_RUN_ID": run_id, "AIDP_WORKSTREAM": ws_id, "AIDP_BRANCH": branch,
        "AIDP_WORKTREE": str(cwd)})
    with CappedLog(log_path) as log:
        try:
            argv = build_argv(action.run, values)
        except (KeyError, ValueError, IndexError) as exc:
            raise _CompensationFailed(f"bad command template: {exc}") from exc
        res = run_process(argv, cwd=cwd, env=env, timeout_s=action.timeout, log=log,
                          grace_s=grace_s, cancel=cancel, token=uuid.uuid4().hex)
    if res.exit_code != 0:
        how = "timed out" if res.timed_out else (
            f"killed by signal {res.signal}" if res.signal else f"exit code {res.exit_code}")
        raise _CompensationFailed(f"command {how} (log: {log_path})")
    return f"command succeeded (log: {log_path})"
