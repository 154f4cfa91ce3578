"""Merges: dependencies into a worktree, finished workstreams into their target branch."""

from __future__ import annotations

from pathlib import Path

import pytest

from aidp.exceptions import InputError, MergeConflictError, StateError
from aidp.workspace import (
    WorktreePool,
    is_merged,
    merge_into_target,
    merge_into_worktree,
    rev_parse,
)
from tests.helpers import commit_files, git

TRAILERS = {"Aidp-Run": "R1", "Aidp-Workstream": "ui"}


def _branch(repo: Path, name: str, files: dict[str, str], start: str = "main") -> str:
    """Create branch ``name`` at ``start`` with one commit of ``files`` (main stays checked out)."""
    git(repo, "checkout", "-q", "-b", name, start)
    sha = commit_files(repo, files, f"work on {name}")
    git(repo, "checkout", "-q", "main")
    return sha


def _detach_main(repo: Path) -> None:
    """Free branch main in the main worktree so merge_into_target may move it."""
    git(repo, "checkout", "-q", "--detach")


def test_merge_into_worktree_merges_every_dependency(pool: WorktreePool, git_repo: Path) -> None:
    """Starting at the first dependency, the others are merged with --no-ff merge commits."""
    a = _branch(git_repo, "dep/a", {"a.txt": "a\n"})
    b = _branch(git_repo, "dep/b", {"b.txt": "b\n"})
    c = _branch(git_repo, "dep/c", {"c.txt": "c\n"})
    wt = pool.acquire("aidp/R1/ui", "dep/a")
    head = merge_into_worktree(wt, ["dep/b", "dep/c"], message="merge deps", trailers=TRAILERS)
    assert git(wt.path, "rev-parse", "HEAD").strip() == head
    assert all((wt.path / name).exists() for name in ("a.txt", "b.txt", "c.txt"))
    parents = git(wt.path, "log", "--first-parent", "--format=%P", f"{a}..HEAD").splitlines()
    assert [line.split()[1] for line in parents] == [c, b]
    assert git(wt.path, "log", "-1", "--format=%(trailers:key=Aidp-Run,valueonly)").strip() == "R1"
    assert git(wt.path, "status", "--porcelain") == ""
    pool.release(wt)


def test_merge_into_worktree_conflict_names_files_and_leaves_clean(
    pool: WorktreePool, git_repo: Path
) -> None:
    """On conflict: files named, merge aborted, HEAD back where it was, no MERGE_HEAD."""
    _branch(git_repo, "dep/a", {"README.md": "from a\n", "a.txt": "a\n"})
    _branch(git_repo, "dep/b", {"b.txt": "b\n"})
    _branch(git_repo, "dep/c", {"README.md": "from c\n", "src/app.py": "x = 3\n"})
    wt = pool.acquire("aidp/R1/ui", "dep/a")
    before = git(wt.path, "rev-parse", "HEAD")
    with pytest.raises(MergeConflictError) as info:
        merge_into_worktree(wt, ["dep/b", "dep/c"], message="merge deps", trailers=TRAILERS)
    assert info.value.files == ["README.md"]
    assert info.value.branch == "dep/c"
    assert info.value.into == "aidp/R1/ui"
    assert git(wt.path, "rev-parse", "HEAD") == before  # dep/b's merge was undone too
    assert rev_parse(wt.path, "MERGE_HEAD") is None
    assert git(wt.path, "status", "--porcelain", "--untracked-files=all") == ""
    pool.release(wt)


def test_merge_into_target_merge_makes_two_parent_commit(git_repo: Path) -> None:
    """strategy=merge records a merge commit (no fast-forward) carrying the trailers."""
    src = _branch(git_repo, "aidp/R1/ui", {"ui.txt": "ui\n"})
    _detach_main(git_repo)
    old = git(git_repo, "rev-parse", "main").strip()
    new = merge_into_target(
        git_repo,
        "aidp/R1/ui",
        "main",
        strategy="merge",
        message="land ui",
        trailers=TRAILERS,
        create_from="main",
    )
    assert git(git_repo, "rev-parse", "main").strip() == new
    assert git(git_repo, "log", "-1", "--format=%P", new).split() == [old, src]
    assert git(git_repo, "log", "-1", "--format=%s", new).strip() == "land ui"
    assert (
        git(
            git_repo, "log", "-1", "--format=%(trailers:key=Aidp-Workstream,valueonly)", new
        ).strip()
        == "ui"
    )
    assert is_merged(git_repo, "aidp/R1/ui", "main")
    # Merging again changes nothing.
    again = merge_into_target(
        git_repo,
        "aidp/R1/ui",
        "main",
        strategy="merge",
        message="land ui",
        trailers=TRAILERS,
        create_from="main",
    )
    assert again == new


def test_merge_into_target_merges_diverged_branches(git_repo: Path) -> None:
    """A target that moved on is merged with the source without conflicts when they touch
    different files."""
    _branch(git_repo, "aidp/R1/ui", {"ui.txt": "ui\n"})
    commit_files(git_repo, {"main.txt": "main\n"}, "main moved on")
    _detach_main(git_repo)
    new = merge_into_target(
        git_repo,
        "aidp/R1/ui",
        "main",
        strategy="merge",
        message="land ui",
        trailers=TRAILERS,
        create_from="main",
    )
    files = git(git_repo, "ls-tree", "-r", "--name-only", new).split()
    assert {"ui.txt", "main.txt", "README.md"} <= set(files)


def test_merge_into_target_squash_makes_one_parent_commit(git_repo: Path) -> None:
    """strategy=squash records one commit, parent = old target, tree = merged tree."""
    _branch(git_repo, "aidp/R1/ui", {"ui.txt": "ui\n", "README.md": "ui readme\n"})
    _detach_main(git_repo)
    old = git(git_repo, "rev-parse", "main").strip()
    new = merge_into_target(
        git_repo,
        "aidp/R1/ui",
        "main",
        strategy="squash",
        message="land ui",
        trailers=TRAILERS,
        create_from="main",
    )
    assert git(git_repo, "log", "-1", "--format=%P", new).split() == [old]
    assert git(git_repo, "show", f"{new}:README.md") == "ui readme\n"
    assert is_merged(git_repo, "aidp/R1/ui", "main")  # by content
    again = merge_into_target(
        git_repo,
        "aidp/R1/ui",
        "main",
        strategy="squash",
        message="land ui",
        trailers=TRAILERS,
        create_from="main",
    )
    assert again == new


def test_merge_into_target_creates_missing_target(git_repo: Path) -> None:
    """A missing target branch is created from create_from, then the source merged into it."""
    src = _branch(git_repo, "aidp/R1/ui", {"ui.txt": "ui\n"})
    main = git(git_repo, "rev-parse", "main").strip()
    new = merge_into_target(
        git_repo,
        "aidp/R1/ui",
        "integration/R1",
        strategy="merge",
        message="land ui",
        trailers=TRAILERS,
        create_from="main",
    )
    assert git(git_repo, "rev-parse", "integration/R1").strip() == new
    assert git(git_repo, "log", "-1", "--format=%P", new).split() == [main, src]


def test_merge_into_target_conflict_names_files_and_keeps_target(git_repo: Path) -> None:
    """A conflicting merge raises with the files and leaves the target untouched."""
    _branch(git_repo, "aidp/R1/ui", {"README.md": "ui\n", "src/app.py": "x = 2\n"})
    commit_files(git_repo, {"README.md": "main\n", "src/app.py": "x = 3\n"}, "main edits")
    _detach_main(git_repo)
    old = git(git_repo, "rev-parse", "main")
    with pytest.raises(MergeConflictError) as info:
        merge_into_target(
            git_repo,
            "aidp/R1/ui",
            "main",
            strategy="merge",
            message="land ui",
            trailers=TRAILERS,
            create_from="main",
        )
    assert info.value.files == ["README.md", "src/app.py"]
    assert info.value.into == "main"
    assert git(git_repo, "rev-parse", "main") == old
    assert not is_merged(git_repo, "aidp/R1/ui", "main")


def test_merge_into_target_refuses_checked_out_branch(git_repo: Path) -> None:
    """A branch checked out in a worktree is never moved behind the user's back."""
    _branch(git_repo, "aidp/R1/ui", {"ui.txt": "ui\n"})
    with pytest.raises(StateError, match="checked out in") as info:
        merge_into_target(
            git_repo,
            "aidp/R1/ui",
            "main",
            strategy="merge",
            message="land ui",
            trailers=TRAILERS,
            create_from="main",
        )
    assert info.value.hint


def test_merge_into_target_unknown_source_is_input_error(git_repo: Path) -> None:
    """An unknown source branch is rejected by name."""
    with pytest.raises(InputError, match="nope"):
        merge_into_target(
            git_repo,
            "nope",
            "integration",
            strategy="merge",
            message="m",
            trailers={},
            create_from="main",
        )


def test_is_merged_false_for_unmerged_or_missing(git_repo: Path) -> None:
    """An unmerged branch, or a missing one, is not merged."""
    _branch(git_repo, "aidp/R1/ui", {"ui.txt": "ui\n"})
    assert not is_merged(git_repo, "aidp/R1/ui", "main")
    assert not is_merged(git_repo, "aidp/R1/missing", "main")
    assert is_merged(git_repo, "main", "aidp/R1/ui")
