"""The schema of the run database, for operators: which revision it is at, which migrations it
still needs, and upgrading it on purpose (``aidp db status`` / ``aidp db upgrade``).

aidp upgrades a SQLite file implicitly when it opens it (one user's file), but never a server
database that many services share (PostgreSQL): there, an older schema stops aidp with a clear
error until an operator backs it up and runs ``aidp db upgrade --yes``
(:meth:`aidp.state.store.Store`, ``[database] auto_upgrade``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from aidp.app.context import AppContext
from aidp.exceptions import InputError, NotFoundError

__all__ = ["DatabaseStatus", "database_status", "upgrade_database"]


@dataclass(frozen=True)
class DatabaseStatus:
    """Where the database is (password hidden), its dialect, its schema revision (None:
    empty), the revision this aidp needs, and the migrations still to run (revision, title)."""

    url: str
    dialect: str
    revision: str | None
    head: str
    pending: list[tuple[str, str]]

    @property
    def current(self) -> bool:
        return self.revision == self.head

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "current": self.current,
                "pending": [{"revision": r, "title": t} for r, t in self.pending]}


def database_status(app: AppContext) -> DatabaseStatus:
    """Read the schema revision without changing anything.

    Raises:
        NotFoundError: the default SQLite database does not exist yet.
    """
    from aidp.state import db

    if not app.has_database():
        raise NotFoundError(f"no aidp database in {app.repo}",
                            hint="start a run with `aidp run FILE`, or `aidp db upgrade --yes`")
    engine = db.make_engine(app.database_url)
    try:
        revision = db.current_revision(engine)
        return DatabaseStatus(engine.url.render_as_string(hide_password=True),
                              engine.dialect.name, revision, db.HEAD_REVISION,
                              db.pending_revisions(revision))
    finally:
        engine.dispose()


def upgrade_database(app: AppContext, *, yes: bool
                     ) -> tuple[DatabaseStatus | None, DatabaseStatus]:
    """Bring the schema to this aidp's head (an empty or missing database is created there).
    Returns the status before (None: there was no database file) and after.

    Raises:
        InputError: ``yes`` is False and there is something to do (nothing is changed).
        ConfigError: the schema is newer than this aidp knows.
    """
    from aidp.state import db
    from aidp.state.store import Store

    before = database_status(app) if app.has_database() else None
    if before is not None:
        db.check_revision(before.revision, before.url, upgrade=True)
        if before.current:
            return before, before
    if not yes:
        todo = ", ".join(r for r, _ in before.pending) if before else "create it"
        raise InputError(f"the database needs an upgrade to {db.HEAD_REVISION} ({todo}); "
                         "nothing was changed",
                         hint="back it up first (PostgreSQL: pg_dump), then add --yes")
    app.ensure_aidp_dir()
    Store(app.database_url, create=True, upgrade=True).close()
    after = database_status(app)
    return before, after
