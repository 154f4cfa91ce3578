"""Stale git lock files left by killed processes are removed on request."""

from __future__ import annotations

import subprocess
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


def test_idle_slot_locks_are_cleaned_busy_or_lived_in_ones_kept(
    pool: WorktreePool, git_repo: Path
) -> None:
    """Idle slots lose their gitdir's *.lock files; a slot in use, or one a live process works
    in, keeps them."""
    idle, busy, lived_in = (pool.acquire(f"aidp/R1/{n}", "main") for n in ("a", "b", "c"))
    pool.release(idle)
    pool.release(lived_in)
    locks = {}
    for wt in (idle, busy, lived_in):
        gitdir = Path(git(wt.path, "rev-parse", "--absolute-git-dir").strip())
        locks[wt.path] = [gitdir / "index.lock", gitdir / "HEAD.lock"]
        for lock in locks[wt.path]:
            lock.write_text("")
    sleeper = subprocess.Popen(["sleep", "30"], cwd=lived_in.path)
    try:
        assert sorted(pool.clean_idle_locks()) == sorted(locks[idle.path])
    finally:
        sleeper.kill()
        sleeper.wait()
    assert all(lock.exists() for lock in locks[busy.path] + locks[lived_in.path])
    assert sorted(pool.clean_idle_locks()) == sorted(locks[lived_in.path])
    for lock in locks[busy.path]:
        lock.unlink()
    pool.release(busy)


def test_a_copy_forgets_only_the_originals_slot_registrations(
    pool: WorktreePool, git_repo: Path, tmp_path: Path
) -> None:
    """A cp -a copy drops its registrations of the original's pool slots, nothing else."""
    held = pool.acquire("aidp/R1/a", "main")
    user_wt = tmp_path / "user-wt"
    git(git_repo, "worktree", "add", "-q", str(user_wt), "-b", "user")
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(git_repo), str(copy)], check=True)
    before = git(git_repo, "worktree", "list", "--porcelain")
    other = WorktreePool(copy)
    mine = other.acquire("aidp/R2/b", "main")
    other.release(mine)

    dropped = other.forget_foreign()
    assert [p.name for p in dropped] == [held.path.name]
    assert git(git_repo, "worktree", "list", "--porcelain") == before
    listed = git(copy, "worktree", "list", "--porcelain")
    assert str(held.path) not in listed and str(mine.path) in listed and str(user_wt) in listed
    again = other.acquire("aidp/R1/a", None)  # no longer "checked out" in the original's slot
    assert again.path.parent == other.root
    other.release(again)
    assert other.forget_foreign() == []
    pool.release(held)
