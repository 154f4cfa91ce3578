"""Git workspaces: the git CLI wrapper, the worktree pool, checkpoints, merges, stale locks.

The public door of :mod:`aidp.workspace`; internals may move behind it. Names are imported on
first use: the CLI runs git on every start (:mod:`aidp.workspace.git`) and should not pay for the
worktree pool, checkpoints (pygit2) and merges when it does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aidp.workspace.checkpoint import (
        TRAILER_ATTEMPT,
        TRAILER_RUN,
        TRAILER_STEP,
        TRAILER_WORKSTREAM,
        CheckpointCommit,
        commit_staged,
        discard_unstaged,
        format_message,
        list_checkpoints,
        stage_all,
    )
    from aidp.workspace.git import (
        Identity,
        branch_exists,
        common_dir,
        current_branch,
        ensure_excluded,
        git_identity_env,
        repo_root,
        resolve_identity,
        rev_parse,
        run_git,
    )
    from aidp.workspace.locks import clean_stale_locks
    from aidp.workspace.merge import (
        checked_out_branches,
        is_merged,
        merge_into_target,
        merge_into_worktree,
    )
    from aidp.workspace.worktrees import Worktree, WorktreeInfo, WorktreePool, reset_worktree


__all__ = [
    "TRAILER_ATTEMPT",
    "TRAILER_RUN",
    "TRAILER_STEP",
    "TRAILER_WORKSTREAM",
    "CheckpointCommit",
    "Identity",
    "Worktree",
    "WorktreeInfo",
    "WorktreePool",
    "branch_exists",
    "checked_out_branches",
    "clean_stale_locks",
    "commit_staged",
    "common_dir",
    "current_branch",
    "discard_unstaged",
    "ensure_excluded",
    "format_message",
    "git_identity_env",
    "is_merged",
    "list_checkpoints",
    "merge_into_target",
    "merge_into_worktree",
    "repo_root",
    "reset_worktree",
    "resolve_identity",
    "rev_parse",
    "run_git",
    "stage_all",
]

_WHERE = {
    "CheckpointCommit": "aidp.workspace.checkpoint",
    "Identity": "aidp.workspace.git",
    "TRAILER_ATTEMPT": "aidp.workspace.checkpoint",
    "TRAILER_RUN": "aidp.workspace.checkpoint",
    "TRAILER_STEP": "aidp.workspace.checkpoint",
    "TRAILER_WORKSTREAM": "aidp.workspace.checkpoint",
    "Worktree": "aidp.workspace.worktrees",
    "WorktreeInfo": "aidp.workspace.worktrees",
    "WorktreePool": "aidp.workspace.worktrees",
    "branch_exists": "aidp.workspace.git",
    "checked_out_branches": "aidp.workspace.merge",
    "clean_stale_locks": "aidp.workspace.locks",
    "commit_staged": "aidp.workspace.checkpoint",
    "common_dir": "aidp.workspace.git",
    "current_branch": "aidp.workspace.git",
    "discard_unstaged": "aidp.workspace.checkpoint",
    "ensure_excluded": "aidp.workspace.git",
    "format_message": "aidp.workspace.checkpoint",
    "git_identity_env": "aidp.workspace.git",
    "is_merged": "aidp.workspace.merge",
    "list_checkpoints": "aidp.workspace.checkpoint",
    "merge_into_target": "aidp.workspace.merge",
    "merge_into_worktree": "aidp.workspace.merge",
    "repo_root": "aidp.workspace.git",
    "reset_worktree": "aidp.workspace.worktrees",
    "resolve_identity": "aidp.workspace.git",
    "rev_parse": "aidp.workspace.git",
    "run_git": "aidp.workspace.git",
    "stage_all": "aidp.workspace.checkpoint",
}


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
