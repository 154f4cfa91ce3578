"""What every CLI command shares: finding the repository, its settings and the application
layer's context on it (:mod:`aidp.app`, the CLI's only door to state), JSON output, the actor.

It opens no store, pool or breaker book itself: that is :class:`aidp.app.AppContext`'s job."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from aidp.exceptions import GitError, InputError

if TYPE_CHECKING:
    from aidp.config import Settings

__all__ = [
    "Context", "actor", "console", "echo_json", "git_toplevel", "repo_options", "resolve_repo",
]

#: The width rich lays tables out in when stdout is not a terminal: wide enough never to wrap
#: or cut a cell (a pipe or a file has no width; ``grep`` and ``less -S`` want whole lines).
PIPE_WIDTH = 100_000

F = TypeVar("F", bound=Callable[..., Any])


def repo_options(func: F) -> F:
    """Add ``--repo`` and ``--config`` to a command."""
    func = click.option(
        "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
        help="aidp.toml to use (default: the repository's).",
    )(func)
    func = click.option(
        "--repo", type=click.Path(path_type=Path, file_okay=False),
        help="Target git repository (default: the one containing the current directory).",
    )(func)
    return func


def _executor_setting(key: str) -> Any:
    def store(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        if value is not None:  # the settings overlay reads it; `aidp serve` passes it on
            os.environ[f"AIDP_EXECUTOR__{key}"] = value
    return store


def executor_options(func: F) -> F:
    """Add ``--executor`` and ``--scheduler`` (they override ``[executor]`` of aidp.toml, for
    this process and the run workers it starts)."""
    func = click.option(
        "--scheduler", expose_value=False, callback=_executor_setting("SCHEDULER"),
        help="The Dask scheduler's address, tcp://HOST:8786 ([executor] scheduler).",
    )(func)
    func = click.option(
        "--executor", type=click.Choice(["local", "dask"]), expose_value=False,
        callback=_executor_setting("KIND"),
        help="Where attempts run: local threads, or a Dask cluster's `aidp worker`s "
        "([executor] kind; default local).",
    )(func)
    return func


def git_toplevel(cwd: Path | None = None) -> Path | None:
    """The top-level directory (resolved) of the git work tree around ``cwd`` (default: the
    current directory), or None outside one or when git cannot run."""
    from aidp.workspace.git import repo_root

    try:
        return repo_root(Path.cwd() if cwd is None else cwd).resolve()
    except (InputError, GitError):
        return None


def resolve_repo(repo: Path | None) -> Path:
    """The top level of ``repo`` (or of the current directory); InputError if not a repo."""
    where = (repo or Path.cwd()).resolve()
    if not where.is_dir():
        raise InputError(f"not a directory: {where}")
    top = git_toplevel(where)
    if top is None:
        raise InputError(f"not a git repository: {where}",
                         hint="run aidp inside a git repository or pass --repo PATH")
    return top


class Context:
    """Repository and settings of one CLI invocation, and the application layer's context on
    them (:attr:`app`: every query and command goes through it; the CLI never opens the store).
    """

    def __init__(self, repo: Path | None, config_path: Path | None) -> None:
        from aidp.app.context import AppContext

        self.app = AppContext.open(resolve_repo(repo), config_path)
        self.repo: Path = self.app.repo
        self.settings: Settings = self.app.settings

    def ensure_aidp_dir(self) -> None:
        """Create ``.aidp/`` and keep it out of git (``.git/info/exclude``)."""
        self.app.ensure_aidp_dir()

    def close(self) -> None:
        """Close what the application layer opened (the store)."""
        self.app.close()


def console() -> Any:
    """A rich Console on stdout: colour only on a terminal and never with ``NO_COLOR`` set
    (then not even bold: no ANSI escape at all), and no 80-column wrapping on a pipe."""
    import os

    from rich.console import Console

    plain = bool(os.environ.get("NO_COLOR"))
    out = Console(color_system=None) if plain else Console()
    if not out.is_terminal:
        out.width = PIPE_WIDTH
    return out


def echo_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()


def actor() -> str:
    """Who is acting, for the journal: ``user@host``."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
