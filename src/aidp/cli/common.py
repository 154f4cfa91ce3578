"""What every CLI command shares: finding the repository, settings, the store, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from aidp.exceptions import GitError, InputError, NotFoundError

if TYPE_CHECKING:
    from aidp.config import Settings
    from aidp.state.store import Store

__all__ = [
    "Context", "actor", "echo_json", "git_toplevel", "repo_options", "resolve_repo",
    "split_step_ref",
]

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
    """Repository, settings and (lazily) the store of one CLI invocation."""

    def __init__(self, repo: Path | None, config_path: Path | None) -> None:
        from aidp.config import load_settings

        self.repo = resolve_repo(repo)
        self.settings: Settings = load_settings(self.repo, config_path)
        self._store: Store | None = None

    @property
    def database_url(self) -> str:
        return self.settings.database_url(self.repo)

    def store(self, *, create: bool = False) -> Store:
        """Open the store; ``create`` makes the database (and ``.aidp/``) if missing."""
        if self._store is None:
            from aidp.state.store import Store

            url = self.database_url
            if url.startswith("sqlite") and url.endswith("/.aidp/aidp.db"):
                db_file = self.repo / ".aidp" / "aidp.db"
                if not db_file.exists():
                    if not create:
                        raise NotFoundError(f"no aidp database in {self.repo}",
                                            hint="start a run with `aidp run FILE`")
                    self.ensure_aidp_dir()
            self._store = Store(url)
        return self._store

    def resolve_step(self, run_ref: str | None, step_ref: str) -> tuple[str, str, str]:
        """``(run_id, ws_id, step_id)`` from a run reference and ``WS/STEP`` (or a step id
        unique in the run); NotFoundError otherwise."""
        store = self.store()
        run_id = store.resolve_run(run_ref)
        ws_id, step_id = split_step_ref(step_ref, [(s.ws_id, s.step_id)
                                                   for s in store.steps(run_id)])
        return run_id, ws_id, step_id

    def ensure_aidp_dir(self) -> None:
        """Create ``.aidp/`` and keep it out of git (``.git/info/exclude``)."""
        from aidp.workspace.git import ensure_excluded

        (self.repo / ".aidp").mkdir(exist_ok=True)
        ensure_excluded(self.repo, ".aidp/")

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def echo_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()


def split_step_ref(ref: str, known: list[tuple[str, str]]) -> tuple[str, str]:
    """``ws/step`` or a step id unique in the run, resolved against ``known`` (ws, step) pairs."""
    if "/" in ref:
        ws_id, step_id = ref.split("/", 1)
        if (ws_id, step_id) in known:
            return ws_id, step_id
        raise NotFoundError(f"no step {ref!r} in this run")
    matches = [pair for pair in known if pair[1] == ref]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFoundError(f"no step {ref!r} in this run")
    raise NotFoundError(f"step id {ref!r} is ambiguous",
                        hint="use WORKSTREAM/STEP: " + ", ".join(f"{w}/{s}" for w, s in matches))


def actor() -> str:
    """Who is acting, for the journal: ``user@host``."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
