"""What a crashed run leaves for its resume beyond its own worktree: stale git locks in idle pool
slots, and -- in a ``cp -a`` copy of the repository -- worktree registrations of the original."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from aidp.state.store import Store
from tests.engine.test_crash_resume import (
    CLI_TIMEOUT_S,
    checkpoint_commits,
    kill9,
    kill_leftovers,
    leftover_processes,
    run_ids,
    wait_for,
    write_small_plan,
)
from tests.helpers import Cli, git


def _gitdir(worktree: Path) -> Path:
    return Path(git(worktree, "rev-parse", "--absolute-git-dir").strip())


def _slow_once(marker: Path, then: str) -> str:
    return f"if [ ! -e {marker} ]; then touch {marker}; sleep 60; fi; {then}"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_stale_locks_in_idle_pool_slots_are_cleaned_on_resume(
    cli: Cli, repo: Path, tmp_path: Path, db_url: str
) -> None:
    """Resume removes stale *.lock files of a dead run from every idle pool slot's gitdir."""
    warm = write_small_plan(tmp_path / "warm.yaml", {
        "w1": [{"id": "a", "run": "mkdir -p w1 && echo a > w1/a.txt"}],
        "w2": [{"id": "a", "run": "mkdir -p w2 && echo a > w2/a.txt"}],
    })
    cli("run", "--parallel", "2", str(warm), timeout=CLI_TIMEOUT_S, check=True)
    slots = sorted(p for p in (repo / ".aidp" / "worktrees").glob("pool-*") if p.is_dir())
    assert len(slots) == 2
    marker = tmp_path / "slow-once"
    plan = write_small_plan(tmp_path / "plan.yaml", {
        "first": [{"id": "a", "run": "mkdir -p first && echo a > first/a.txt"},
                  {"id": "b", "depends_on": ["a"],
                   "run": _slow_once(marker, "echo b > first/b.txt")}],
        "second": [{"id": "c", "run": "mkdir -p second && echo c > second/c.txt"}],
    })
    store = Store(db_url)
    run_id = None
    proc = cli.popen("run", "--parallel", "1", str(plan))
    try:
        try:
            wait_for(marker.exists, "first/b to be under way")
        finally:
            kill9(proc)
        run_id = run_ids(store, repo)[-1]
        locks = []
        for slot in slots:  # the interrupted workstream's slot and the idle one
            gitdir = _gitdir(slot)
            for name in ("index.lock", "HEAD.lock", "ORIG_HEAD.lock"):
                (gitdir / name).write_text("")
                locks.append(gitdir / name)
        done = cli("resume", run_id, "--parallel", "2", timeout=CLI_TIMEOUT_S)
        assert done.returncode == 0, done.stdout + done.stderr
        assert store.run(run_id).status == "completed"
        assert [lock for lock in locks if lock.exists()] == []
        assert [s for _, _, s in checkpoint_commits(repo, f"aidp/{run_id}/second")] == ["c"]
    finally:
        store.close()
        if run_id is not None:
            kill_leftovers(run_id)


def test_a_cp_a_copy_of_a_crashed_repository_resumes(repo: Path, tmp_path: Path) -> None:
    """A copy's worktree registrations of the original's slots are foreign: resume drops them."""
    cli = Cli(repo)  # the default database, .aidp/aidp.db: copied with the repository
    marker = tmp_path / "slow-once"
    plan = write_small_plan(tmp_path / "plan.yaml", {
        "first": [{"id": "a", "run": "mkdir -p first && echo a > first/a.txt"},
                  {"id": "b", "depends_on": ["a"],
                   "run": _slow_once(marker, "echo b > first/b.txt")}],
        "second": [{"id": "c", "run": "mkdir -p second && echo c > second/c.txt"}],
    })
    run_id = None
    proc = cli.popen("run", "--parallel", "2", str(plan))
    try:
        wait_for(marker.exists, "first/b to be under way")
    finally:
        kill9(proc)
    store = Store(f"sqlite+pysqlite:///{repo / '.aidp' / 'aidp.db'}")
    try:
        (run_id,) = run_ids(store, repo)
        kill_leftovers(run_id)  # the dead run's `sleep 60` (its token is in both databases)
        wait_for(lambda: not leftover_processes(run_id), "the dead run's tools to go")
        (worktree,) = [Path(w.worktree or "") for w in store.workstreams(run_id)
                       if w.ws_id == "first"]
        assert worktree.parent == repo / ".aidp" / "worktrees"
        lock = _gitdir(worktree) / "index.lock"  # the original's own: the copy leaves it be
        lock.write_text("")
        copy = tmp_path / "copy"
        subprocess.run(["cp", "-a", str(repo), str(copy)], check=True)
        original = {what: git(repo, *args) for what, args in {
            "refs": ("for-each-ref",), "worktrees": ("worktree", "list", "--porcelain")}.items()}
        original_admin = {p: p.read_bytes() for p in (repo / ".git" / "worktrees").rglob("*")
                          if p.is_file() and not p.name.endswith(".lock")}

        done = Cli(copy)("resume", run_id, timeout=CLI_TIMEOUT_S)
        assert done.returncode == 0, done.stdout + done.stderr
        branch = f"aidp/{run_id}/first"
        assert [s for _, _, s in checkpoint_commits(copy, branch)] == ["a", "b"]
        assert git(copy, "show", f"{branch}:first/b.txt") == "b\n"
        copy_worktrees = git(copy, "worktree", "list", "--porcelain")
        assert str(repo) + "/" not in copy_worktrees, copy_worktrees

        assert git(repo, "for-each-ref") == original["refs"]  # the original is untouched
        assert git(repo, "worktree", "list", "--porcelain") == original["worktrees"]
        assert {p: p.read_bytes() for p in original_admin} == original_admin
        assert lock.exists()
        again = cli("resume", run_id, timeout=CLI_TIMEOUT_S)  # and resumes on its own
        assert not lock.exists()
        assert again.returncode == 0, again.stdout + again.stderr
        assert [s for _, _, s in checkpoint_commits(repo, branch)] == ["a", "b"]
        assert store.run(run_id).status == "completed"
    finally:
        store.close()
        if run_id is not None:
            kill_leftovers(run_id)
