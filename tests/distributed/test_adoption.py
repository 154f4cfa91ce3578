"""The worker's side of an attempt, called in this process (no cluster): a checkpoint that a
worker pushed before it died is adopted by the next run of the same attempt -- the tool does not
run again -- and a remote branch moved by anything else is refused, never overwritten."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aidp.config import Settings
from aidp.core.states import AttemptKind, AttemptOutcome
from aidp.engine.distributed.attempt import (
    AttemptSpec,
    WorkerContext,
    run_remote_attempt,
    set_worker_context,
)
from aidp.model.workstream import Workstream
from aidp.workspace.worktrees import WorktreePool
from tests.helpers import commit_files, git, init_repo

BRANCH = "aidp/R1/a"


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A bare remote with the workstream's branch at main, and this process as a worker on a
    clone of it. Yields (remote, clone)."""
    seed = init_repo(tmp_path / "seed")
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(remote))
    git(remote, "branch", BRANCH, "main")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(remote), str(clone))
    set_worker_context(WorkerContext(clone, "origin", WorktreePool(clone), "w-test"))
    try:
        yield remote, clone
    finally:
        set_worker_context(None)


def _spec(remote: Path, counter: Path) -> AttemptSpec:
    ws = Workstream.model_validate({"id": "a", "scope": ["a/**"], "steps": [
        {"id": "s", "run": f"echo ran >> {counter}; mkdir -p a && echo hello > a/f.txt"}]})
    start = git(remote, "rev-parse", BRANCH).strip()
    return AttemptSpec(run_id="R1", ws=ws, branch=BRANCH, start_sha=start, step=ws.steps[0],
                       number=1, kind=AttemptKind.FIRST, profile_name="shell",
                       fix_findings=(), token="t" * 32, settings=Settings(), started_at=0.0)


def test_a_pushed_checkpoint_is_adopted_not_redone(worker: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    """The first run pushes its checkpoint; the same attempt run again (its worker's answer was
    lost) finds it on the remote and adopts it: same commit, the tool ran once."""
    remote, _ = worker
    counter = tmp_path / "counter"
    spec = _spec(remote, counter)
    first = run_remote_attempt(spec)
    assert first.invoked.outcome is AttemptOutcome.SUCCEEDED and not first.adopted
    assert git(remote, "rev-parse", BRANCH).strip() == first.invoked.sha
    again = run_remote_attempt(spec)
    assert again.adopted and again.invoked.outcome is AttemptOutcome.SUCCEEDED
    assert again.invoked.sha == first.invoked.sha
    assert again.invoked.changed == ["a/f.txt"]
    assert counter.read_text() == "ran\n"


def test_a_branch_moved_by_someone_else_is_refused(worker: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    """The remote's branch is no longer at the attempt's start and holds no checkpoint of this
    step: the attempt fails (transient), nothing runs, the branch is left as it is."""
    remote, clone = worker
    spec = _spec(remote, tmp_path / "counter")
    commit_files(clone, {"other.txt": "x\n"}, "someone else")
    git(clone, "push", "-q", "origin", f"HEAD:refs/heads/{BRANCH}", "--force")
    moved = git(remote, "rev-parse", BRANCH).strip()
    answer = run_remote_attempt(spec)
    assert answer.invoked.outcome is AttemptOutcome.FAILED_TRANSIENT
    assert "not at the attempt's start" in (answer.invoked.reason or "")
    assert not (tmp_path / "counter").exists()
    assert git(remote, "rev-parse", BRANCH).strip() == moved
