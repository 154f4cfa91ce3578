"""Git in-process (libgit2) and the git CLI do the same to a workstream's start.

Each case runs on both paths (``AIDP_GIT=cli`` is the CLI fallback), and the results are compared
with what git itself says: trees, parents, messages, conflicting files, the files of a cleaned
worktree. Where libgit2 is not git (filter drivers, hooks), the CLI must be the one that runs.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import pytest

from aidp.exceptions import MergeConflictError
from aidp.workspace import WorktreePool, rev_parse
from aidp.workspace.merge import merge_dependencies
from aidp.workspace.native import CLI_ENV, MAX_NATIVE_FILES
from tests.helpers import commit_files, git

TRAILERS = {"Aidp-Run": "R1", "Aidp-Workstream": "fan"}


@pytest.fixture(params=["native", "cli"])
def git_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both paths: in-process where allowed (the default), and ``AIDP_GIT=cli``."""
    if request.param == "cli":
        monkeypatch.setenv(CLI_ENV, "cli")
    else:
        monkeypatch.delenv(CLI_ENV, raising=False)
    return str(request.param)


def _branch(repo: Path, name: str, files: dict[str, str], start: str = "main") -> str:
    git(repo, "checkout", "-q", "-b", name, start)
    sha = commit_files(repo, files, f"work on {name}")
    git(repo, "checkout", "-q", "main")
    return sha


def _start(pool: WorktreePool, branch: str, heads: list[str]) -> Path:
    """Prepare ``branch`` the way the engine starts a workstream depending on ``heads``."""
    start, merge_rest = merge_dependencies(pool, heads, into=branch, message="aidp: merge deps",
                                           trailers=TRAILERS)
    wt = pool.acquire(branch, start or "main", guard=contextlib.nullcontext,
                      before_branch=merge_rest)
    path = wt.path
    pool.release(wt)
    return path


def _files(path: Path) -> list[str]:
    """Every file under ``path`` (a worktree), ``.git`` left out."""
    found = []
    for top, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if d != ".git" or Path(top) != path]
        found += [os.path.relpath(os.path.join(top, n), path) for n in names if n != ".git"]
    return sorted(found)


def test_fan_in_merges_each_further_head_once(git_path: str, pool: WorktreePool,
                                              git_repo: Path) -> None:
    """Three heads, one contained in another: two merge commits on the first head, --no-ff,
    with the message and trailers; the tree is git's own merge of the three."""
    a = _branch(git_repo, "dep/a", {"a.txt": "a\n"})
    b = _branch(git_repo, "dep/b", {"b.txt": "b\n"})
    c = _branch(git_repo, "dep/c", {"c.txt": "c\n"})
    b2 = _branch(git_repo, "dep/b2", {"b2.txt": "b2\n"}, start="dep/b")  # contains b
    _start(pool, "aidp/R1/fan", [a, b, c, b2])
    head = rev_parse(git_repo, "refs/heads/aidp/R1/fan")
    assert head is not None
    first_parent = git(git_repo, "log", "--first-parent", "--format=%H %P", f"{a}..{head}")
    merges = [line.split() for line in first_parent.splitlines()]
    assert [m[2] for m in merges] == [b2, c]  # newest first; b is in b2: merged once, with it
    assert merges[-1][1] == a
    assert git(git_repo, "ls-tree", "--name-only", head).split() == [
        ".gitignore", "README.md", "a.txt", "b.txt", "b2.txt", "c.txt", "src"]
    message = git(git_repo, "log", "-1", "--format=%B", head)
    assert message.startswith("aidp: merge deps\n\n")
    assert git(git_repo, "log", "-1", "--format=%(trailers:key=Aidp-Workstream,valueonly)",
               head).strip() == "fan"
    assert git(git_repo, "log", "-1", "--format=%an <%ae>", head).strip() == git(
        git_repo, "log", "-1", "--format=%an <%ae>", "main").strip()


def test_fan_in_conflict_names_the_files_and_moves_nothing(git_path: str, pool: WorktreePool,
                                                           git_repo: Path) -> None:
    """A conflicting further head: the same error on both paths, no branch made."""
    a = _branch(git_repo, "dep/a", {"README.md": "from a\n", "a.txt": "a\n"})
    b = _branch(git_repo, "dep/b", {"b.txt": "b\n"})
    c = _branch(git_repo, "dep/c", {"README.md": "from c\n", "src/app.py": "x = 3\n"})
    with pytest.raises(MergeConflictError) as info:
        _start(pool, "aidp/R1/fan", [a, b, c])
    assert info.value.files == ["README.md"]
    assert info.value.branch == c and info.value.into == "aidp/R1/fan"
    assert rev_parse(git_repo, "refs/heads/aidp/R1/fan") is None
    assert git(git_repo, "status", "--porcelain") == ""


def test_a_reused_slot_is_exactly_the_new_start(git_path: str, pool: WorktreePool,
                                                git_repo: Path) -> None:
    """What a failed step left in a slot -- changed, untracked, ignored files, an empty
    directory, a nested repository -- is gone when the slot starts the next workstream."""
    path = _start(pool, "aidp/R1/one", [])
    (path / "README.md").write_text("changed\n")
    (path / "new" / "deep").mkdir(parents=True)
    (path / "new" / "deep" / "u.txt").write_text("untracked\n")
    (path / "x.log").write_text("ignored\n")
    (path / "build").mkdir()
    (path / "build" / "out.o").write_text("ignored\n")
    (path / "empty").mkdir()
    git(path, "init", "-q", "vendored")
    commit_files(path / "vendored", {"v.txt": "v\n"}, "nested")
    (path / "src" / "app.py").unlink()
    other = _branch(git_repo, "dep/other", {"other.txt": "o\n"})
    again = _start(pool, "aidp/R1/two", [other])
    assert again == path
    assert _files(again) == [".gitignore", "README.md", "other.txt", "src/app.py"]
    assert not (again / "empty").exists()
    assert (again / "README.md").read_text() == "hello\n"
    assert git(again, "status", "--porcelain", "--ignored") == ""
    assert git(again, "rev-parse", "HEAD").strip() == other


def test_a_filter_driver_is_applied_by_git(git_path: str, pool: WorktreePool,
                                           git_repo: Path) -> None:
    """libgit2 runs no filter drivers: a repository that uses one is checked out by git."""
    git(git_repo, "config", "filter.upper.smudge", "tr a-z A-Z")
    git(git_repo, "config", "filter.upper.clean", "cat")
    base = commit_files(git_repo, {".gitattributes": "*.up filter=upper\n",
                                   "note.up": "quiet\n"}, "a filtered file")
    path = _start(pool, "aidp/R1/one", [])
    path = _start(pool, "aidp/R1/two", [base])  # the slot is reused: a checkout, not an add
    assert (path / "note.up").read_text() == "QUIET\n"


def test_a_post_checkout_hook_runs(git_path: str, pool: WorktreePool, git_repo: Path) -> None:
    """A repository with a post-checkout hook gets it run, as git would."""
    hook = git_repo / ".git" / "hooks" / "post-checkout"
    marker = git_repo.parent / "hook-ran"
    hook.write_text(f"#!/bin/sh\necho \"$1 $2\" >> {marker}\n")
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    other = _branch(git_repo, "dep/other", {"other.txt": "o\n"})  # git runs it here too
    _start(pool, "aidp/R1/one", [])
    before = marker.read_text().splitlines()
    _start(pool, "aidp/R1/two", [other])  # the slot is reused: a checkout, not an add
    assert marker.read_text().splitlines()[len(before):][-1].split()[1] == other


def test_many_files_go_to_git(pool: WorktreePool, git_repo: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the size limit a checkout is git's (libgit2 would hold the GIL for every stat)."""
    monkeypatch.delenv(CLI_ENV, raising=False)
    head = rev_parse(git_repo, "HEAD")
    assert head is not None
    import pygit2

    repo = pygit2.Repository(str(git_repo))
    assert pool.capabilities.checkout(repo, head, 10)
    assert not pool.capabilities.checkout(repo, head, MAX_NATIVE_FILES + 1)
    monkeypatch.setenv(CLI_ENV, "cli")
    assert not pool.capabilities.checkout(repo, head, 10)
    assert not pool.capabilities.merge(repo)
