"""Git workspaces: the git CLI wrapper, the worktree pool, checkpoints, merges, stale locks.

The public door of :mod:`aidp.workspace`; internals may move behind it.
"""

from __future__ import annotations

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
