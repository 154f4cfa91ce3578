"""A thin, typed wrapper around the git command line.

Every git subprocess aidp starts goes through :func:`run_git`, which runs it with
:func:`aidp.process.runner.run_captured`: stdin is closed (or fed from ``input``), prompts are
disabled, the locale is ``C`` so output is parseable, variables that would point git at another
repository are dropped, and a timeout kills the whole process group (git's own children -- hooks,
helpers -- included). Failures raise :class:`~aidp.exceptions.GitError` carrying the argv, exit
code, stderr and working directory.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aidp.exceptions import GitError, InputError
from aidp.process.runner import run_captured

__all__ = [
    "FALLBACK_EMAIL",
    "FALLBACK_NAME",
    "Identity",
    "branch_exists",
    "common_dir",
    "current_branch",
    "ensure_excluded",
    "git_identity_env",
    "repo_root",
    "resolve_identity",
    "rev_parse",
    "run_git",
    "uncommitted_paths",
]

FALLBACK_NAME = "aidp"
FALLBACK_EMAIL = "aidp@localhost"

# Inherited values of these would make git operate on some other repository or index (for
# example when aidp itself is started from a git hook).
_LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment git runs in: aidp's own, without location overrides, non-interactive,
    with untranslated messages (they are parsed), plus ``extra``. Building it decodes every
    variable: a caller running git often builds it once and passes it as ``base_env``."""
    env = {k: v for k, v in os.environ.items() if k not in _LOCATION_VARS}
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["LC_ALL"] = "C"
    env["LANGUAGE"] = "C"
    env.setdefault("GIT_EDITOR", "true")
    if extra:
        env.update(extra)
    return env


def run_git(
    args: list[str],
    cwd: Path,
    *,
    check: bool = True,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 300.0,
    base_env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``git ARGS`` in ``cwd`` and return the completed process (text mode).

    Args:
        args: arguments after ``git``.
        cwd: working directory.
        check: raise :class:`GitError` on a non-zero exit code.
        input: text fed to stdin; without it stdin is ``/dev/null``.
        env: variables added to (overriding) the inherited environment.
        timeout_s: wall-clock limit in seconds; on expiry the process group is killed.
        base_env: a :func:`git_env` built earlier, instead of building it now.

    Raises:
        GitError: git is missing, timed out, or (with ``check``) exited non-zero.
    """
    try:
        done = run_captured(
            ["git", *args],
            cwd=cwd,
            env=git_env(env) if base_env is None else {**base_env, **(env or {})},
            input=input,
            timeout_s=timeout_s,
        )
    except FileNotFoundError as exc:
        raise GitError(args, 127, f"cannot run git: {exc}", cwd=cwd) from exc
    except subprocess.TimeoutExpired:
        raise GitError(args, -signal.SIGKILL, f"timed out after {timeout_s:g}s", cwd=cwd) from None
    if check and done.returncode != 0:
        raise GitError(args, done.returncode, done.stderr, cwd=cwd)
    return done


def repo_root(path: Path) -> Path:
    """Return the top directory of the working tree containing ``path`` (a worktree's own top).

    Raises:
        InputError: ``path`` is not inside a git working tree.
    """
    done = run_git(["rev-parse", "--show-toplevel"], path, check=False) if path.is_dir() else None
    if done is None or done.returncode != 0 or not done.stdout.strip():
        raise InputError(f"not a git repository: {path}")
    return Path(done.stdout.strip())


def common_dir(path: Path) -> Path:
    """Return the absolute common git directory (shared by all worktrees) of the repo at
    ``path``."""
    out = run_git(["rev-parse", "--path-format=absolute", "--git-common-dir"], path).stdout
    return Path(out.strip())


def rev_parse(cwd: Path, ref: str) -> str | None:
    """Return the full object id ``ref`` names, or None when it names nothing."""
    done = run_git(["rev-parse", "-q", "--verify", "--end-of-options", ref], cwd, check=False)
    sha = done.stdout.strip()
    return sha if done.returncode == 0 and sha else None


def branch_exists(cwd: Path, branch: str) -> bool:
    """Whether ``refs/heads/<branch>`` exists."""
    return rev_parse(cwd, f"refs/heads/{branch}") is not None


def current_branch(cwd: Path) -> str | None:
    """Return the branch checked out in the worktree at ``cwd``, or None when HEAD is detached."""
    done = run_git(["symbolic-ref", "-q", "--short", "HEAD"], cwd, check=False)
    name = done.stdout.strip()
    return name if done.returncode == 0 and name else None


def uncommitted_paths(repo: Path) -> list[str]:
    """The paths with uncommitted changes in the worktree at ``repo`` (modified, staged,
    deleted or untracked, ignored files excepted), sorted; aidp's own ``.aidp/`` is left out."""
    out = run_git(["status", "--porcelain=v1", "-z", "--untracked-files=all"], repo).stdout
    paths: list[str] = []
    entries = iter(out.split("\0"))
    for entry in entries:
        if len(entry) < 4:
            continue
        if entry[0] in "RC":
            next(entries, None)  # the rename's source follows its destination
        path = entry[3:]
        if path != ".aidp" and not path.startswith(".aidp/"):
            paths.append(path)
    return sorted(set(paths))


def ensure_excluded(repo: Path, pattern: str, *, common: Path | None = None) -> bool:
    """Add ``pattern`` to the common dir's ``info/exclude`` once (so every worktree honours it).

    ``common``: the common git directory when the caller knows it (saves a git process).
    Returns True when the pattern was added, False when it was already there.
    """
    exclude = (common or common_dir(repo)) / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    with open(exclude, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # two pools starting together must not both append
        handle.seek(0)
        text = handle.read()
        if pattern in (line.strip() for line in text.splitlines()):
            return False
        handle.write(("" if not text or text.endswith("\n") else "\n") + pattern + "\n")
        return True


@dataclass(frozen=True)
class Identity:
    """Who commits: author and committer name and email."""

    author_name: str
    author_email: str
    committer_name: str
    committer_email: str


def resolve_identity(cwd: Path) -> Identity:
    """Resolve the commit identity the way git does, falling back to ``aidp <aidp@localhost>``.

    Precedence: ``GIT_AUTHOR_*`` / ``GIT_COMMITTER_*`` environment, then ``user.name`` /
    ``user.email`` from the repository's config (all levels), then the fallback.
    """
    done = run_git(["config", "--get-regexp", r"^user\.(name|email)$"], cwd, check=False)
    config: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        if value.strip():
            config[key] = value.strip()
    name = config.get("user.name", FALLBACK_NAME)
    email = config.get("user.email", FALLBACK_EMAIL)
    env = os.environ
    return Identity(
        author_name=env.get("GIT_AUTHOR_NAME") or name,
        author_email=env.get("GIT_AUTHOR_EMAIL") or email,
        committer_name=env.get("GIT_COMMITTER_NAME") or name,
        committer_email=env.get("GIT_COMMITTER_EMAIL") or email,
    )


def git_identity_env(cwd: Path) -> dict[str, str]:
    """Environment for git commands that commit: the resolved identity, fallback included.

    The values are exactly what git itself would use when an identity is configured, so passing
    them never overrides a user's choice; they only fill in what is missing.
    """
    ident = resolve_identity(cwd)
    return {
        "GIT_AUTHOR_NAME": ident.author_name,
        "GIT_AUTHOR_EMAIL": ident.author_email,
        "GIT_COMMITTER_NAME": ident.committer_name,
        "GIT_COMMITTER_EMAIL": ident.committer_email,
    }
