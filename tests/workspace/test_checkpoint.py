"""Checkpoints: staging every kind of change, commits with trailers, reading them back."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aidp.exceptions import InputError, StateError
from aidp.workspace import (
    Worktree,
    WorktreePool,
    commit_staged,
    discard_unstaged,
    list_checkpoints,
    stage_all,
)
from tests.helpers import commit_files, git, write

TRAILERS = {"Aidp-Run": "R1", "Aidp-Workstream": "api", "Aidp-Step": "impl", "Aidp-Attempt": "1"}


@pytest.fixture
def wt(pool: WorktreePool) -> Iterator[Worktree]:
    """A worktree on branch aidp/R1/api at main."""
    worktree = pool.acquire("aidp/R1/api", "main")
    yield worktree
    pool.release(worktree)


def _add(path: Path) -> None:
    write(path / "new.txt", "new\n")


def _modify(path: Path) -> None:
    write(path / "README.md", "changed\n")


def _delete(path: Path) -> None:
    (path / "src" / "app.py").unlink()


def _rename(path: Path) -> None:
    (path / "README.md").rename(path / "README.txt")


def _chmod(path: Path) -> None:
    os.chmod(path / "src" / "app.py", 0o755)


def _new_subdir(path: Path) -> None:
    write(path / "pkg" / "deep" / "mod.py", "y = 2\n")


def _ignored(path: Path) -> None:
    write(path / "run.log", "ignored\n")
    write(path / "build" / "out.o", "ignored\n")


def _symlink(path: Path) -> None:
    (path / "link").symlink_to("README.md")


def _file_to_directory(path: Path) -> None:
    (path / "README.md").unlink()
    write(path / "README.md" / "inner.md", "now a directory\n")


def _mixed(path: Path) -> None:
    _modify(path)
    _ignored(path)
    _delete(path)
    _new_subdir(path)


CASES: list[tuple[str, Callable[[Path], None], list[str]]] = [
    ("add", _add, ["new.txt"]),
    ("modify", _modify, ["README.md"]),
    ("delete", _delete, ["src/app.py"]),
    ("rename", _rename, ["README.md", "README.txt"]),
    ("mode", _chmod, ["src/app.py"]),
    ("new-subdirectory", _new_subdir, ["pkg/deep/mod.py"]),
    ("ignored-only", _ignored, []),
    ("symlink", _symlink, ["link"]),
    ("file-to-directory", _file_to_directory, ["README.md", "README.md/inner.md"]),
    ("mixed", _mixed, ["README.md", "pkg/deep/mod.py", "src/app.py"]),
]


@pytest.mark.parametrize(
    ("change", "expected"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES]
)
def test_stage_all_stages_every_change_and_names_it(
    wt: Worktree, change: Callable[[Path], None], expected: list[str]
) -> None:
    """stage_all stages like `git add -A` and returns exactly the paths that differ from HEAD."""
    change(wt.path)
    assert stage_all(wt) == expected
    staged = git(wt.path, "diff", "--cached", "--name-only", "--no-renames").split()
    assert sorted(staged) == expected
    # Nothing is left unstaged (ignored files do not show up at all).
    status = git(wt.path, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert [line for line in status if line[1] != " "] == []


def test_stage_all_sees_changes_after_git_cli_touched_index(wt: Worktree) -> None:
    """pygit2's cached index is re-read, so changes made via the git CLI in between count."""
    write(wt.path / "a.txt", "a\n")
    assert stage_all(wt) == ["a.txt"]
    commit_staged(wt, message="a", trailers=TRAILERS)
    commit_files(wt.path, {"b.txt": "b\n"}, "via cli")
    write(wt.path / "c.txt", "c\n")
    assert stage_all(wt) == ["c.txt"]


def test_commit_trailers_are_parsed_by_git_log(wt: Worktree) -> None:
    """Checkpoint trailers are real git trailers: git log %(trailers) reads every one."""
    write(wt.path / "a.txt", "a\n")
    stage_all(wt)
    sha = commit_staged(wt, message="step impl", trailers=TRAILERS, body="Did the thing.")
    assert git(wt.path, "rev-parse", "aidp/R1/api").strip() == sha
    for key, value in TRAILERS.items():
        out = git(wt.path, "log", "-1", f"--format=%(trailers:key={key},valueonly)", sha)
        assert out.strip() == value
    assert git(wt.path, "log", "-1", "--format=%s", sha).strip() == "step impl"
    assert git(wt.path, "log", "-1", "--format=%b", sha).startswith("Did the thing.\n\nAidp-Run")
    assert git(wt.path, "status", "--porcelain") == ""
    assert git(wt.path, "show", "--format=", "--name-only", sha).split() == ["a.txt"]


def test_commit_uses_repository_identity(wt: Worktree) -> None:
    """Author and committer come from the repository's configuration."""
    sha = commit_staged(wt, message="step", trailers=TRAILERS)
    assert git(wt.path, "log", "-1", "--format=%an <%ae>|%cn <%ce>", sha).strip() == (
        "aidp tests <tests@aidp.invalid>|aidp tests <tests@aidp.invalid>"
    )


def test_commit_falls_back_to_aidp_identity(
    git_repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without any configured identity, checkpoints are made as aidp <aidp@localhost>."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    git(git_repo, "config", "--unset", "user.name")
    git(git_repo, "config", "--unset", "user.email")
    pool = WorktreePool(git_repo)
    wt = pool.acquire("aidp/R1/anon", "main")
    try:
        sha = commit_staged(wt, message="step", trailers=TRAILERS)
    finally:
        pool.release(wt)
    assert git(git_repo, "log", "-1", "--format=%an <%ae>", sha).strip() == "aidp <aidp@localhost>"


def test_empty_checkpoint_commit(wt: Worktree) -> None:
    """A step that changed nothing still gets its checkpoint: an empty commit on HEAD."""
    before = git(wt.path, "rev-parse", "HEAD").strip()
    assert stage_all(wt) == []
    sha = commit_staged(wt, message="nothing changed", trailers=TRAILERS)
    assert git(wt.path, "rev-parse", f"{sha}^").strip() == before
    assert git(wt.path, "rev-parse", f"{sha}^{{tree}}") == git(
        wt.path, "rev-parse", f"{before}^{{tree}}"
    )


def test_commit_refuses_detached_head(wt: Worktree) -> None:
    """A checkpoint never lands on a detached HEAD or another branch."""
    git(wt.path, "checkout", "-q", "--detach")
    with pytest.raises(StateError, match="not on branch"):
        commit_staged(wt, message="step", trailers=TRAILERS)


@pytest.mark.parametrize(
    ("message", "trailers"),
    [("", {}), ("two\nlines", {}), ("ok", {"Bad Key": "v"}), ("ok", {"K": "multi\nline"})],
    ids=["empty-subject", "multiline-subject", "space-in-key", "newline-in-value"],
)
def test_malformed_message_is_input_error(
    wt: Worktree, message: str, trailers: dict[str, str]
) -> None:
    """Messages and trailers that git could not parse back are rejected."""
    with pytest.raises(InputError):
        commit_staged(wt, message=message, trailers=trailers)


def test_discard_unstaged_keeps_ignored_files(wt: Worktree) -> None:
    """discard_unstaged restores the last commit, deletes untracked files, keeps ignored ones."""
    write(wt.path / "README.md", "check run changed me\n")
    write(wt.path / "scratch" / "tmp.txt", "untracked\n")
    write(wt.path / "check.log", "ignored\n")
    write(wt.path / "build" / "cache.o", "ignored\n")
    git(wt.path, "add", "README.md")
    discard_unstaged(wt)
    assert (wt.path / "README.md").read_text() == "hello\n"
    assert not (wt.path / "scratch").exists()
    assert (wt.path / "check.log").exists()
    assert (wt.path / "build" / "cache.o").exists()
    assert git(wt.path, "status", "--porcelain") == ""


def _checkpoint(wt: Worktree, run: str, step: str, attempt: int, ws: str = "api") -> str:
    write(wt.path / f"{run}-{step}.txt", f"{attempt}\n")
    stage_all(wt)
    trailers = {
        "Aidp-Run": run,
        "Aidp-Workstream": ws,
        "Aidp-Step": step,
        "Aidp-Attempt": str(attempt),
    }
    return commit_staged(wt, message=f"{step} #{attempt}", trailers=trailers)


def test_list_checkpoints_filters_by_run_and_base(wt: Worktree, git_repo: Path) -> None:
    """Only this run's checkpoints after base are listed, oldest first, with parsed trailers."""
    old = _checkpoint(wt, "R0", "impl", 1)
    git(wt.path, "commit", "-q", "--allow-empty", "-m", "human commit without trailers")
    first = _checkpoint(wt, "R1", "impl", 1)
    _checkpoint(wt, "R2", "impl", 1)
    second = _checkpoint(wt, "R1", "tests", 3)

    found = list_checkpoints(git_repo, "aidp/R1/api", run_id="R1", base="main")
    assert [c.sha for c in found] == [first, second]
    assert [(c.workstream, c.step, c.attempt, c.subject) for c in found] == [
        ("api", "impl", 1, "impl #1"),
        ("api", "tests", 3, "tests #3"),
    ]
    assert [c.sha for c in list_checkpoints(git_repo, "aidp/R1/api", run_id="R1", base=first)] == [
        second
    ]
    assert [c.sha for c in list_checkpoints(git_repo, "aidp/R1/api", run_id="R0")] == [old]
    assert list_checkpoints(git_repo, "aidp/R1/missing", run_id="R1") == []


def test_list_checkpoints_filters_by_workstream(wt: Worktree, git_repo: Path) -> None:
    """Checkpoints of merged dependency workstreams are excluded when a workstream is named."""
    mine = _checkpoint(wt, "R1", "impl", 1, ws="api")
    _checkpoint(wt, "R1", "impl", 1, ws="db")
    found = list_checkpoints(git_repo, "aidp/R1/api", run_id="R1", base="main", workstream="api")
    assert [c.sha for c in found] == [mine]


def test_stage_all_applies_clean_filters_like_git(wt: Worktree) -> None:
    """Paths with a filter attribute (git-lfs style) are staged through git, filter applied."""
    git(wt.path, "config", "filter.upper.clean", "tr a-z A-Z")
    git(wt.path, "config", "filter.upper.smudge", "cat")
    write(wt.path / ".gitattributes", "*.up filter=upper\n")
    write(wt.path / "shout.up", "hello\n")
    write(wt.path / "plain.txt", "hello\n")
    assert stage_all(wt) == [".gitattributes", "plain.txt", "shout.up"]
    sha = commit_staged(wt, message="filtered", trailers=TRAILERS)
    assert git(wt.path, "show", f"{sha}:shout.up") == "HELLO\n"
    assert git(wt.path, "show", f"{sha}:plain.txt") == "hello\n"
    assert git(wt.path, "status", "--porcelain") == ""


def test_discard_unstaged_drops_staged_new_file(wt: Worktree) -> None:
    """A new file that was staged but not committed is removed from index and disk."""
    write(wt.path / "staged.txt", "x\n")
    stage_all(wt)
    discard_unstaged(wt)
    assert not (wt.path / "staged.txt").exists()
    assert git(wt.path, "status", "--porcelain", "--untracked-files=all") == ""


def test_symlink_and_executable_bit_are_committed_as_git_would(wt: Worktree) -> None:
    """A symlink is stored as a link (120000) and a chmod +x as mode 100755."""
    _symlink(wt.path)
    _chmod(wt.path)
    stage_all(wt)
    sha = commit_staged(wt, message="modes", trailers=TRAILERS)
    modes = {
        line.split("\t")[1]: line.split()[0]
        for line in git(wt.path, "ls-tree", "-r", sha).splitlines()
    }
    assert modes["link"] == "120000"
    assert modes["src/app.py"] == "100755"
