"""Stale git lock files left by killed processes are removed on request."""

from __future__ import annotations

from pathlib import Path

import pytest

from aidp.exceptions import GitError
from aidp.workspace import WorktreePool, clean_stale_locks, run_git
from tests.helpers import git, write


def test_stale_worktree_index_lock_blocks_commit_until_cleaned(
    pool: WorktreePool, git_repo: Path
) -> None:
    """A leftover index.lock in a worktree's gitdir breaks git commit until it is cleaned."""
    wt = pool.acquire("aidp/R1/api", "main")
    gitdir = Path(git(wt.path, "rev-parse", "--absolute-git-dir").strip())
    lock = gitdir / "index.lock"
    lock.write_text("")
    write(wt.path / "a.txt", "a\n")
    with pytest.raises(GitError) as info:
        run_git(["add", "-A"], wt.path)
    assert "index.lock" in info.value.stderr
    assert clean_stale_locks(git_repo, wt.path) == [lock]
    run_git(["add", "-A"], wt.path)
    run_git(["commit", "-q", "-m", "works again"], wt.path)
    assert clean_stale_locks(git_repo, wt.path) == []
    pool.release(wt)


def test_stale_branch_ref_lock_blocks_commit_until_cleaned(
    pool: WorktreePool, git_repo: Path
) -> None:
    """A leftover refs/heads/aidp/**.lock blocks committing on that branch until cleaned."""
    wt = pool.acquire("aidp/R1/api", "main")
    lock = git_repo / ".git" / "refs" / "heads" / "aidp" / "R1" / "api.lock"
    lock.write_text("")
    with pytest.raises(GitError):
        run_git(["commit", "-q", "--allow-empty", "-m", "blocked"], wt.path)
    assert clean_stale_locks(git_repo, wt.path) == [lock]
    run_git(["commit", "-q", "--allow-empty", "-m", "works again"], wt.path)
    pool.release(wt)


def test_common_dir_locks_are_removed(git_repo: Path) -> None:
    """The common dir's index, HEAD, packed-refs and config locks are removed, nothing else."""
    common = git_repo / ".git"
    names = ["index.lock", "HEAD.lock", "packed-refs.lock", "config.lock"]
    for name in names:
        (common / name).write_text("")
    keep = common / "refs" / "heads" / "user-branch.lock"
    keep.write_text("")
    with pytest.raises(GitError):
        run_git(["commit", "-q", "--allow-empty", "-m", "blocked"], git_repo)
    assert sorted(p.name for p in clean_stale_locks(git_repo, None)) == sorted(names)
    assert keep.exists()
    keep.unlink()
    run_git(["commit", "-q", "--allow-empty", "-m", "works again"], git_repo)
