"""The opened repository every query and command works on: its root, its settings and (opened on
first use) its store.

This module owns finding the database of a repository (``[database] url`` of ``aidp.toml``, the
SQLite file ``.aidp/aidp.db`` by default) and building the :class:`~aidp.state.store.Store` on it;
no interface builds a store itself. It does not find the repository (an interface knows where it
runs: the CLI asks git for the work tree around the current directory) and reads no run state.
Importing it is cheap: the store is imported when it is first opened.

It also keeps what :meth:`AppContext.cached` read, for as long as the database has not changed
(a long-lived context, as in ``aidp serve``, answers repeated reads without the database).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from aidp.exceptions import NotFoundError

if TYPE_CHECKING:
    from aidp.config import Settings
    from aidp.state.store import Store

__all__ = ["AppContext"]

T = TypeVar("T")
#: Reads kept by :meth:`AppContext.cached` (the oldest go first).
CACHE_ENTRIES = 256


class AppContext:
    """A repository opened for the application layer.

    Args:
        repo: the top level of the git work tree.
        settings: its settings (see :meth:`open` to load them from ``aidp.toml``).

    The store is opened on the first query or command that needs it and closed by
    :meth:`close` (or on leaving a ``with`` block).
    """

    def __init__(self, repo: Path, settings: Settings) -> None:
        self.repo = repo
        self.settings = settings
        self._store: Store | None = None
        self._cache: dict[Hashable, tuple[int, object]] = {}
        self._cache_lock = threading.Lock()

    @classmethod
    def open(cls, repo: Path, config_path: Path | None = None) -> AppContext:
        """The context of ``repo`` with the settings of ``config_path`` (default: the
        repository's ``aidp.toml``, then the environment).

        Raises:
            ConfigError: the configuration file is invalid.
        """
        from aidp.config import load_settings

        return cls(repo, load_settings(repo, config_path))

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL of the run database."""
        return self.settings.database_url(self.repo)

    def has_database(self) -> bool:
        """False only when the database is the default SQLite file and it does not exist yet."""
        url = self.database_url
        if url.startswith("sqlite") and url.endswith("/.aidp/aidp.db"):
            return (self.repo / ".aidp" / "aidp.db").exists()
        return True

    def store(self, *, create: bool = False) -> Store:
        """The store (opened once per context).

        Args:
            create: make the database (and ``.aidp/``) when it is missing.

        Raises:
            NotFoundError: the default SQLite database does not exist and ``create`` is False.
        """
        if self._store is None:
            from aidp.state.store import Store

            if not self.has_database():
                if not create:
                    raise NotFoundError(f"no aidp database in {self.repo}",
                                        hint="start a run with `aidp run FILE`")
                self.ensure_aidp_dir()
            self._store = Store(self.database_url,
                                upgrade=self.settings.database.auto_upgrade)
        return self._store

    def cached(self, key: Hashable, load: Callable[[], T]) -> T:
        """``load()``, or what it returned for ``key`` before if nobody has committed to the
        database since (:meth:`~aidp.state.store.Store.data_version`). Only for values read
        from the database alone (not the clock, not files) and never mutated by callers
        (frozen views). Where the backend has no cheap version (PostgreSQL), always
        ``load()``."""
        version = self.store().data_version()
        if version is None:
            return load()
        with self._cache_lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]  # type: ignore[return-value]  # stored by this key's loader
        value = load()  # read after the version: a commit in between only makes it newer
        with self._cache_lock:
            self._cache.pop(key, None)
            self._cache[key] = (version, value)
            while len(self._cache) > CACHE_ENTRIES:
                del self._cache[next(iter(self._cache))]
        return value

    def ensure_aidp_dir(self) -> None:
        """Create ``.aidp/`` and keep it out of git (``.git/info/exclude``)."""
        from aidp.workspace.git import ensure_excluded

        (self.repo / ".aidp").mkdir(exist_ok=True)
        ensure_excluded(self.repo, ".aidp/")

    def close(self) -> None:
        """Close the store if it was opened (the context may be used again: it reopens)."""
        if self._store is not None:
            self._store.close()
            self._store = None
        with self._cache_lock:
            self._cache.clear()

    def __enter__(self) -> AppContext:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
