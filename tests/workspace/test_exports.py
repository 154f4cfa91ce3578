"""The public door of aidp.workspace: the export list is pinned."""

from __future__ import annotations

import aidp.workspace

EXPECTED = {
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
}


def test_export_list_is_pinned() -> None:
    """aidp.workspace exports exactly the documented names, each of them importable."""
    assert set(aidp.workspace.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(aidp.workspace, name) is not None
