"""The git CLI wrapper: errors, stdin, environment, repository queries, identity."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aidp.exceptions import GitError, InputError
from aidp.workspace import (
    WorktreePool,
    branch_exists,
    current_branch,
    ensure_excluded,
    git_identity_env,
    repo_root,
    resolve_identity,
    rev_parse,
    run_git,
)
from tests.helpers import git, write

EMPTY_BLOB = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


def test_failure_raises_git_error_with_stderr(git_repo: Path) -> None:
    """A failing command raises GitError carrying argv, exit code, stderr and cwd."""
    with pytest.raises(GitError) as info:
        run_git(["checkout", "no-such-branch"], git_repo)
    assert info.value.argv == ["checkout", "no-such-branch"]
    assert info.value.returncode != 0
    assert "no-such-branch" in info.value.stderr
    assert info.value.cwd == git_repo


def test_check_false_returns_the_failure(git_repo: Path) -> None:
    """check=False hands back the completed process instead of raising."""
    done = run_git(["rev-parse", "--verify", "nope"], git_repo, check=False)
    assert done.returncode != 0


def test_stdin_is_never_inherited(git_repo: Path) -> None:
    """Without input, stdin is /dev/null: a command reading stdin sees it empty, never blocks."""
    assert run_git(["hash-object", "--stdin"], git_repo).stdout.strip() == EMPTY_BLOB


def test_input_is_fed_to_stdin(git_repo: Path) -> None:
    """input= is written to the command's stdin."""
    sha = run_git(["hash-object", "--stdin"], git_repo, input="hello\n").stdout.strip()
    assert sha == git(git_repo, "rev-parse", "HEAD:README.md").strip()


def test_output_is_in_c_locale_and_env_merges(git_repo: Path) -> None:
    """LC_ALL=C and no prompts are forced; env= adds variables on top."""
    out = run_git(["var", "GIT_AUTHOR_IDENT"], git_repo, env={"GIT_AUTHOR_NAME": "Env Name"})
    assert out.stdout.startswith("Env Name <")
    shown = run_git(["-c", "alias.env=!env", "env"], git_repo).stdout.splitlines()
    assert "LC_ALL=C" in shown and "GIT_TERMINAL_PROMPT=0" in shown


def test_inherited_git_dir_is_ignored(
    git_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GIT_DIR inherited from a hook does not redirect aidp's git commands."""
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    assert run_git(["rev-parse", "--show-toplevel"], git_repo).stdout.strip() == str(git_repo)


def test_timeout_kills_and_raises(git_repo: Path) -> None:
    """A command exceeding timeout_s is killed (with its children) and reported as GitError."""
    with pytest.raises(GitError, match="timed out"):
        run_git(["-c", "alias.nap=!sleep 30", "nap"], git_repo, timeout_s=0.5)


def test_repo_root_and_not_a_repository(git_repo: Path, tmp_path: Path) -> None:
    """repo_root finds the top from a subdirectory; outside a repository it is an InputError."""
    assert repo_root(git_repo / "src") == git_repo
    outside = tmp_path / "plain"
    outside.mkdir()
    with pytest.raises(InputError, match=f"not a git repository: {outside}"):
        repo_root(outside)
    with pytest.raises(InputError):
        repo_root(tmp_path / "missing")


def test_rev_parse_branch_exists_current_branch(git_repo: Path) -> None:
    """Ref queries answer None/False for what does not exist and None for a detached HEAD."""
    head = git(git_repo, "rev-parse", "HEAD").strip()
    assert rev_parse(git_repo, "main") == head
    assert rev_parse(git_repo, "nope") is None
    assert branch_exists(git_repo, "main")
    assert not branch_exists(git_repo, "nope")
    assert current_branch(git_repo) == "main"
    git(git_repo, "checkout", "-q", "--detach")
    assert current_branch(git_repo) is None


def test_ensure_excluded_adds_once_and_covers_worktrees(git_repo: Path) -> None:
    """The pattern lands once in the common info/exclude and applies inside worktrees too."""
    assert ensure_excluded(git_repo, "scratch/") is True
    assert ensure_excluded(git_repo, "scratch/") is False
    exclude = (git_repo / ".git" / "info" / "exclude").read_text().splitlines()
    assert exclude.count("scratch/") == 1
    pool = WorktreePool(git_repo)
    wt = pool.acquire("aidp/r/x", "main")
    assert ensure_excluded(wt.path, "scratch/") is False
    write(wt.path / "scratch" / "f.txt", "x\n")
    assert git(wt.path, "status", "--porcelain") == ""
    pool.release(wt)


def test_identity_from_config(git_repo: Path) -> None:
    """A configured identity is used as is."""
    ident = resolve_identity(git_repo)
    assert (ident.author_name, ident.author_email) == ("aidp tests", "tests@aidp.invalid")
    assert git_identity_env(git_repo)["GIT_COMMITTER_EMAIL"] == "tests@aidp.invalid"


def test_identity_fallback_lets_commits_work(
    git_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no identity configured anywhere, commits are made as aidp <aidp@localhost>."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(var, raising=False)
    run_git(["config", "--unset", "user.name"], git_repo)
    run_git(["config", "--unset", "user.email"], git_repo)
    env = git_identity_env(git_repo)
    assert env["GIT_AUTHOR_NAME"] == "aidp"
    assert env["GIT_COMMITTER_EMAIL"] == "aidp@localhost"
    run_git(["commit", "-q", "--allow-empty", "-m", "x"], git_repo, env=env)
    out = run_git(["log", "-1", "--format=%an <%ae> %cn <%ce>"], git_repo).stdout.strip()
    assert out == "aidp <aidp@localhost> aidp <aidp@localhost>"
