"""The worktree pool: reuse, isolation between workstreams, locking, crash safety, prune."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from aidp.exceptions import InputError, StateError
from aidp.workspace import Worktree, WorktreePool, current_branch, reset_worktree
from tests.helpers import commit_files, git, write


def test_acquire_creates_worktree_on_new_branch(pool: WorktreePool, git_repo: Path) -> None:
    """acquire with a start point creates the branch there and checks it out in a pool slot."""
    wt = pool.acquire("aidp/r1/api", "main")
    assert wt.path.parent == (git_repo / ".aidp" / "worktrees").resolve()
    assert current_branch(wt.path) == "aidp/r1/api"
    assert (wt.path / "README.md").read_text() == "hello\n"
    assert git(wt.path, "rev-parse", "HEAD") == git(git_repo, "rev-parse", "main")
    pool.release(wt)


def test_released_slot_briefly_held_by_a_child_is_reused(pool: WorktreePool) -> None:
    """A child process being started by another thread shares the slot's lock descriptor until
    it execs: the next acquire waits for that moment instead of making a new slot."""
    first = pool.acquire("aidp/r1/a", "main")
    pid = os.fork()  # as subprocess does: the child holds a copy of the lock for a moment
    if pid == 0:
        time.sleep(0.04)
        os._exit(0)
    try:
        pool.release(first)
        second = pool.acquire("aidp/r1/b", "main")
    finally:
        os.waitpid(pid, 0)
    assert second.path == first.path
    pool.release(second)


def test_pool_directory_is_excluded_from_main_status(pool: WorktreePool, git_repo: Path) -> None:
    """The pool lives under .aidp/, which is excluded, so the main worktree stays clean."""
    wt = pool.acquire("aidp/r1/api", "main")
    assert git(git_repo, "status", "--porcelain") == ""
    pool.release(wt)


def test_release_then_acquire_reuses_slot_without_leftovers(pool: WorktreePool) -> None:
    """A released worktree is reused, on the new branch, with nothing left of the previous one."""
    first = pool.acquire("aidp/r1/a", "main")
    commit_files(first.path, {"a_only.txt": "a\n"}, "a's work")
    write(first.path / "untracked.txt", "junk\n")
    write(first.path / "debug.log", "ignored\n")
    write(first.path / "build" / "out.bin", "ignored dir\n")
    write(first.path / "README.md", "modified but not committed\n")
    pool.release(first)
    assert current_branch(first.path) is None  # detached: branch usable elsewhere

    second = pool.acquire("aidp/r1/b", "main")
    assert second.path == first.path
    assert current_branch(second.path) == "aidp/r1/b"
    for leftover in ("a_only.txt", "untracked.txt", "debug.log", "build"):
        assert not (second.path / leftover).exists(), leftover
    assert (second.path / "README.md").read_text() == "hello\n"
    assert git(second.path, "status", "--porcelain", "--ignored") == ""
    pool.release(second)


def test_acquire_existing_branch_without_start_point(pool: WorktreePool) -> None:
    """start_point=None checks the existing branch out as it is (resume)."""
    wt = pool.acquire("aidp/r1/a", "main")
    sha = commit_files(wt.path, {"work.txt": "done\n"}, "step 1")
    pool.release(wt)
    again = pool.acquire("aidp/r1/a", None)
    assert git(again.path, "rev-parse", "HEAD").strip() == sha
    assert (again.path / "work.txt").read_text() == "done\n"
    pool.release(again)


def test_acquire_missing_branch_without_start_point_is_input_error(pool: WorktreePool) -> None:
    """Resuming a branch that does not exist is rejected before any slot is taken."""
    with pytest.raises(InputError, match="does not exist"):
        pool.acquire("aidp/r1/nope", None)
    assert pool.list() == []


def test_acquire_unknown_start_point_is_input_error(pool: WorktreePool) -> None:
    """An unknown start point is rejected with the name in the message."""
    with pytest.raises(InputError, match="no-such-ref"):
        pool.acquire("aidp/r1/a", "no-such-ref")


@pytest.mark.parametrize("branch", ["a..b", "-x", "a b", "ends.lock", "a/"])
def test_invalid_branch_name_is_input_error(pool: WorktreePool, branch: str) -> None:
    """Branch names git would reject are refused before any slot is taken."""
    with pytest.raises(InputError, match="invalid branch name"):
        pool.acquire(branch, "main")
    assert pool.list() == []


def test_start_point_resets_existing_branch(pool: WorktreePool, git_repo: Path) -> None:
    """With a start point, an existing branch is reset to it (checkout -B)."""
    wt = pool.acquire("aidp/r1/a", "main")
    commit_files(wt.path, {"old.txt": "old\n"}, "old attempt")
    pool.release(wt)
    again = pool.acquire("aidp/r1/a", "main")
    assert git(again.path, "rev-parse", "HEAD") == git(git_repo, "rev-parse", "main")
    assert not (again.path / "old.txt").exists()
    pool.release(again)


def test_start_point_head_means_main_repository_head(pool: WorktreePool, git_repo: Path) -> None:
    """start_point 'HEAD' is resolved in the main repository, not in the reused slot."""
    wt = pool.acquire("aidp/r1/a", "main")
    commit_files(wt.path, {"a.txt": "a\n"}, "a")
    pool.release(wt)
    again = pool.acquire("aidp/r1/b", "HEAD")
    assert git(again.path, "rev-parse", "HEAD") == git(git_repo, "rev-parse", "main")
    pool.release(again)


def test_branch_checked_out_elsewhere_is_state_error(pool: WorktreePool) -> None:
    """A branch held by another worktree cannot be acquired again; the slot is given back."""
    wt = pool.acquire("aidp/r1/a", "main")
    with pytest.raises(StateError, match="aidp/r1/a"):
        pool.acquire("aidp/r1/a", None)
    assert [info.in_use for info in pool.list()] == [True, False]
    pool.release(wt)


def test_two_held_worktrees_get_distinct_slots(pool: WorktreePool) -> None:
    """While a worktree is held, the next acquire creates another slot."""
    one = pool.acquire("aidp/r1/a", "main")
    two = pool.acquire("aidp/r1/b", "main")
    assert one.path != two.path
    pool.release(one)
    pool.release(two)
    three = pool.acquire("aidp/r1/c", "main")
    assert three.path in (one.path, two.path)
    pool.release(three)


def test_prefer_reattaches_previous_slot(pool: WorktreePool) -> None:
    """prefer hands back the named idle slot even when a lower-numbered one is idle."""
    one = pool.acquire("aidp/r1/a", "main")
    two = pool.acquire("aidp/r1/b", "main")
    pool.release(one)
    pool.release(two)
    again = pool.acquire("aidp/r1/b", None, prefer=two.path)
    assert again.path == two.path
    pool.release(again)


def test_a_kept_slot_is_taken_back_as_it_is_and_by_nobody_else(git_repo: Path) -> None:
    """A slot marked by keep (a human gate's work) survives its process: another pool (a new
    aidp process) never hands it out, prune leaves it, and acquiring it back with
    keep_changes keeps modified, untracked and ignored files; after unkeep it is reused."""
    pool = WorktreePool(git_repo)
    gate = pool.acquire("aidp/r1/a", "main")
    write(gate.path / "README.md", "edited by hand\n")
    write(gate.path / "notes.txt", "by hand\n")
    write(gate.path / "debug.log", "ignored\n")
    pool.keep(gate, "r1 a/review: human gate")
    pool.release(gate)
    pool.detach_released()
    later = WorktreePool(git_repo)  # another process
    other = later.acquire("aidp/r2/x", "main")
    assert other.path != gate.path
    later.release(other)
    assert gate.path not in later.prune()
    again = later.acquire("aidp/r1/a", None, prefer=gate.path, keep_changes=True)
    assert again.path == gate.path and current_branch(again.path) == "aidp/r1/a"
    assert (again.path / "README.md").read_text() == "edited by hand\n"
    assert (again.path / "notes.txt").read_text() == "by hand\n"
    assert (again.path / "debug.log").exists()
    later.unkeep(again.path)
    later.release(again)
    reused = WorktreePool(git_repo).acquire("aidp/r3/y", "main")
    assert reused.path == gate.path and not (reused.path / "notes.txt").exists()


def test_prefer_in_use_falls_back_to_another_slot(pool: WorktreePool) -> None:
    """A preferred slot that is in use is skipped, not waited for."""
    held = pool.acquire("aidp/r1/a", "main")
    other = pool.acquire("aidp/r1/b", "main", prefer=held.path)
    assert other.path != held.path
    pool.release(held)
    pool.release(other)


def test_concurrent_acquire_from_two_pools_never_shares(git_repo: Path) -> None:
    """Two pools acquiring at once from two threads never hand out the same worktree."""
    pools = [WorktreePool(git_repo), WorktreePool(git_repo)]
    # A few idle slots to fight over.
    warm = [pools[0].acquire(f"aidp/warm/{i}", "main") for i in range(3)]
    for wt in warm:
        pools[0].release(wt)
    barrier = threading.Barrier(2)

    def grab(index: int) -> list[Worktree]:
        barrier.wait()
        return [pools[index].acquire(f"aidp/race/{index}-{i}", "main") for i in range(3)]

    with ThreadPoolExecutor(max_workers=2) as executor:
        futures = [executor.submit(grab, i) for i in range(2)]
        held = [wt for future in futures for wt in future.result()]
    paths = [wt.path for wt in held]
    assert len(paths) == 6
    assert len(set(paths)) == 6
    for wt in held:
        pools[0].release(wt)


_RACER = """
import sys, time
from pathlib import Path
from aidp.workspace import WorktreePool
repo, name, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
pool = WorktreePool(repo)
while not go.exists():
    time.sleep(0.005)
held = [pool.acquire(f"aidp/race/{name}-{i}", "main") for i in range(3)]
print(" ".join(str(wt.path) for wt in held), flush=True)
sys.stdin.read()  # hold until the parent closes our stdin
"""


def test_concurrent_acquire_from_two_processes_never_shares(
    pool: WorktreePool, git_repo: Path, tmp_path: Path
) -> None:
    """Two processes acquiring at once never hand out the same worktree."""
    for wt in [pool.acquire(f"aidp/warm/{i}", "main") for i in range(2)]:
        pool.release(wt)
    go = tmp_path / "go"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(git_repo), name, str(go)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("p", "q")
    ]
    go.touch()
    paths: list[str] = []
    for proc in racers:
        assert proc.stdout is not None and proc.stdin is not None
        paths.extend(proc.stdout.readline().split())
    try:
        assert len(paths) == 6
        assert len(set(paths)) == 6
    finally:
        for proc in racers:
            assert proc.stdout is not None and proc.stdin is not None
            proc.stdin.close()
            proc.wait()
            proc.stdout.close()


_HOLDER = """
import sys, time
from pathlib import Path
from aidp.workspace import WorktreePool
pool = WorktreePool(Path(sys.argv[1]))
wt = pool.acquire(sys.argv[2], "main")
print(wt.path, flush=True)
time.sleep(60)
"""


def _spawn_holder(repo: Path, branch: str) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(repo), branch],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line, "holder process did not acquire a worktree"
    return proc, Path(line)


def test_worktree_held_by_other_process_is_not_handed_out(
    pool: WorktreePool, git_repo: Path
) -> None:
    """A worktree held by another process is in use; this process gets a different one."""
    proc, held_path = _spawn_holder(git_repo, "aidp/r1/other")
    try:
        mine = pool.acquire("aidp/r1/mine", "main", prefer=held_path)
        assert mine.path != held_path
        in_use = {info.path: info.in_use for info in pool.list()}
        assert in_use[held_path] is True
        pool.release(mine)
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_lock_of_killed_process_is_free_again(pool: WorktreePool, git_repo: Path) -> None:
    """When the holder is killed -9, its worktree becomes idle and is reused."""
    proc, held_path = _spawn_holder(git_repo, "aidp/r1/crashed")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()
    assert {info.path: info.in_use for info in pool.list()}[held_path] is False
    # The dead holder left its branch checked out there; a new attempt resumes it in place.
    wt = pool.acquire("aidp/r1/crashed", None, prefer=held_path)
    assert wt.path == held_path
    assert current_branch(wt.path) == "aidp/r1/crashed"
    pool.release(wt)


def test_branch_left_in_idle_slot_by_dead_process_is_reclaimed(
    pool: WorktreePool, git_repo: Path
) -> None:
    """Resuming without prefer works even though a dead holder left the branch checked out."""
    blocker = pool.acquire("aidp/r1/blocker", "main")  # takes pool-0, so the holder gets pool-1
    proc, held_path = _spawn_holder(git_repo, "aidp/r1/crashed")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()
    pool.release(blocker)
    wt = pool.acquire("aidp/r1/crashed", None)
    assert wt.path == blocker.path != held_path
    assert current_branch(wt.path) == "aidp/r1/crashed"
    assert current_branch(held_path) is None
    pool.release(wt)


def test_slot_debris_from_crash_is_recreated(pool: WorktreePool) -> None:
    """A slot directory that is not a registered worktree (crash mid-creation) is rebuilt."""
    pool.root.mkdir(parents=True, exist_ok=True)
    write(pool.root / "pool-0" / "half-written.txt", "debris\n")
    wt = pool.acquire("aidp/r1/a", "main")
    assert wt.path == pool.root / "pool-0"
    assert not (wt.path / "half-written.txt").exists()
    assert (wt.path / "README.md").exists()
    pool.release(wt)


def test_slot_removed_behind_our_back_is_recreated(pool: WorktreePool) -> None:
    """A slot whose directory was deleted by hand is recreated (git worktree add --force)."""
    wt = pool.acquire("aidp/r1/a", "main")
    pool.release(wt)
    subprocess.run(["rm", "-rf", str(wt.path)], check=True)
    again = pool.acquire("aidp/r1/b", "main", prefer=wt.path)
    assert again.path == wt.path
    assert current_branch(again.path) == "aidp/r1/b"
    pool.release(again)


def test_list_reports_branch_head_use_and_dirt(pool: WorktreePool, git_repo: Path) -> None:
    """list() shows each slot's branch, head, whether it is in use and whether it is dirty."""
    busy = pool.acquire("aidp/r1/a", "main")
    idle = pool.acquire("aidp/r1/b", "main")
    pool.release(idle)
    write(idle.path / "left-behind.txt", "unsaved\n")
    infos = {info.path: info for info in pool.list()}
    main_sha = git(git_repo, "rev-parse", "main").strip()
    assert infos[busy.path].branch == "aidp/r1/a"
    assert infos[busy.path].head == main_sha
    assert infos[busy.path].in_use and not infos[busy.path].dirty
    assert infos[idle.path].branch is None
    assert not infos[idle.path].in_use and infos[idle.path].dirty
    pool.release(busy)


def test_prune_keeps_dirty_and_in_use_worktrees(pool: WorktreePool, git_repo: Path) -> None:
    """prune removes clean idle slots, keeps dirty idle ones, never touches one in use."""
    busy = pool.acquire("aidp/r1/busy", "main")
    dirty = pool.acquire("aidp/r1/dirty", "main")
    clean = pool.acquire("aidp/r1/clean", "main")
    pool.release(dirty)
    pool.release(clean)
    write(dirty.path / "README.md", "unsaved edit\n")
    write(clean.path / "cache.log", "ignored files are not unsaved work\n")

    assert pool.prune() == [clean.path]
    assert not clean.path.exists()
    assert dirty.path.exists() and busy.path.exists()
    registered = git(git_repo, "worktree", "list", "--porcelain")
    assert str(clean.path) not in registered

    assert pool.prune(force=True) == [dirty.path]
    assert not dirty.path.exists()
    assert busy.path.exists()
    assert [info.path for info in pool.list()] == [busy.path]
    pool.release(busy)
    assert pool.prune() == [busy.path]
    assert pool.list() == []
    assert list(pool.root.iterdir()) == []  # lock files went with their slots


def test_reset_worktree_returns_to_branch_head(pool: WorktreePool) -> None:
    """reset_worktree discards changes and untracked files, and ignored ones by default."""
    wt = pool.acquire("aidp/r1/a", "main")
    write(wt.path / "README.md", "changed\n")
    write(wt.path / "new.txt", "new\n")
    write(wt.path / "keep.log", "ignored\n")
    git(wt.path, "add", "new.txt")
    reset_worktree(wt, remove_ignored=False)
    assert (wt.path / "README.md").read_text() == "hello\n"
    assert not (wt.path / "new.txt").exists()
    assert (wt.path / "keep.log").exists()
    reset_worktree(wt)
    assert not (wt.path / "keep.log").exists()
    pool.release(wt)


def test_release_is_idempotent_and_closes_pygit(pool: WorktreePool) -> None:
    """Releasing twice is harmless; a released worktree refuses further pygit2 use."""
    wt = pool.acquire("aidp/r1/a", "main")
    assert wt.pygit.workdir.rstrip("/") == str(wt.path)
    pool.release(wt)
    pool.release(wt)
    assert wt.released
    with pytest.raises(StateError):
        _ = wt.pygit


def test_pool_outside_repository_is_input_error(tmp_path: Path) -> None:
    """A pool on a directory that is not a git repository is rejected."""
    with pytest.raises(InputError, match="not a git repository"):
        WorktreePool(tmp_path)


def test_lazy_detach_keeps_branch_until_detach_released(git_repo: Path) -> None:
    """detach_on_release=False leaves the branch in the idle slot; the branch can still be
    acquired elsewhere, and detach_released frees every such slot (merge targets at once)."""
    pool = WorktreePool(git_repo, detach_on_release=False, always_detach={"aidp/r1/target"})
    first = pool.acquire("aidp/r1/a", "main")
    busy = pool.acquire("aidp/r1/busy", "main")  # keeps first's slot from being preferred
    pool.release(first)
    assert current_branch(first.path) == "aidp/r1/a"
    again = pool.acquire("aidp/r1/a", None)  # the idle slot holding it is detached on demand
    assert current_branch(again.path) == "aidp/r1/a"
    target = pool.acquire("aidp/r1/target", "main")
    pool.release(target)
    assert current_branch(target.path) is None
    for wt in (again, busy):
        pool.release(wt)
    assert current_branch(busy.path) == "aidp/r1/busy"
    detached = pool.detach_released()
    assert busy.path in detached
    for wt in (first, again, busy, target):
        assert current_branch(wt.path) is None


def test_a_copied_repository_does_not_reuse_the_originals_slots(
    pool: WorktreePool, git_repo: Path, tmp_path: Path
) -> None:
    """`cp -a` of a repository copies its pool, whose slots still point at the original's git
    directory: the copy's pool makes its own, so commits land in the copy, not the original."""
    wt = pool.acquire("aidp/r1/a", "main")
    pool.release(wt)
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(git_repo), str(copy)], check=True)
    original_refs = git(git_repo, "for-each-ref")

    other = WorktreePool(copy)
    wt2 = other.acquire("aidp/r2/b", "main")
    assert wt2.path.parent == (copy / ".aidp" / "worktrees").resolve()
    commit_files(wt2.path, {"b.txt": "b\n"}, "b's work")
    head = git(wt2.path, "rev-parse", "HEAD")
    other.release(wt2)
    assert git(copy, "rev-parse", "aidp/r2/b") == head
    assert git(git_repo, "for-each-ref") == original_refs  # the original is untouched
    missing = subprocess.run(["git", "cat-file", "-e", head.strip()], cwd=git_repo,
                             capture_output=True, check=False)
    assert missing.returncode != 0  # the commit exists only in the copy
