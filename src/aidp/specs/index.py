"""The spec index: every capability, requirement, scenario, change, delta and ``spec://``
reference of an ``openspec/`` tree, in a SQLite file beside the run database.

Why a sibling file (``.aidp/specs-index.db``, stdlib ``sqlite3``) and not a table of the run
database: the index is a *derived cache*. Everything in it is rebuilt from the Markdown files,
so it needs no Alembic migration (a schema change just rebuilds it), it always describes the
working tree it sits in (the run database may be a PostgreSQL server shared by a team, whose
rows would mix checkouts), it can use SQLite's FTS5 for text search whatever backend the run
database uses, and deleting it loses nothing. State that cannot be rebuilt -- proposal review
decisions -- belongs in the run database instead.

Rebuilds are incremental by content hash: each source file's SHA-256 is kept in ``files``; a
file whose hash is unchanged is not parsed and its rows are not written. Every row carries the
``file`` it came from and the ``gen`` (build generation) that wrote it, so "reindexing touches
only the changed file's rows" is checkable, and :class:`IndexStats` reports the rows written
(the row counts of aidp's own statements; FTS5's internal shadow tables are not counted).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aidp.specs.markdown import normalize_content
from aidp.specs.model import Requirement
from aidp.specs.project import (
    discover_spec_files,
    parse_delta_file,
    parse_proposal,
    parse_spec,
    parse_tasks,
)
from aidp.state.db import connect_sqlite

__all__ = [
    "INDEX_FILE",
    "SCHEMA_VERSION",
    "IndexStats",
    "IndexedRequirement",
    "SpecIndex",
    "find_references",
]

INDEX_FILE = Path(".aidp") / "specs-index.db"
SCHEMA_VERSION = 1
_URI = re.compile(r"spec://[^\s)\]>\"'`,;]+")
_ARCHIVED = re.compile(r"^(\d{4}-\d{2}-\d{2})-(.+)$")

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE files (path TEXT PRIMARY KEY, kind TEXT NOT NULL, owner TEXT NOT NULL,
                    hash TEXT NOT NULL, gen INTEGER NOT NULL);
CREATE TABLE capabilities (id TEXT PRIMARY KEY, file TEXT NOT NULL, title TEXT NOT NULL,
                           purpose TEXT NOT NULL, gen INTEGER NOT NULL);
CREATE TABLE requirements (key TEXT PRIMARY KEY, capability TEXT NOT NULL, name TEXT NOT NULL,
                           text TEXT NOT NULL, hash TEXT NOT NULL, file TEXT NOT NULL,
                           line INTEGER NOT NULL, gen INTEGER NOT NULL);
CREATE INDEX requirements_file ON requirements (file);
CREATE INDEX requirements_capability ON requirements (capability);
CREATE TABLE scenarios (requirement_key TEXT NOT NULL, ordinal INTEGER NOT NULL,
                        name TEXT NOT NULL, text TEXT NOT NULL, file TEXT NOT NULL,
                        line INTEGER NOT NULL, gen INTEGER NOT NULL,
                        PRIMARY KEY (requirement_key, ordinal));
CREATE INDEX scenarios_file ON scenarios (file);
CREATE TABLE changes (id TEXT PRIMARY KEY, name TEXT NOT NULL, archived_on TEXT,
                      title TEXT, file TEXT, gen INTEGER NOT NULL);
CREATE TABLE tasks (change_id TEXT NOT NULL, ordinal INTEGER NOT NULL, number TEXT,
                    text TEXT NOT NULL, done INTEGER NOT NULL, file TEXT NOT NULL,
                    line INTEGER NOT NULL, gen INTEGER NOT NULL,
                    PRIMARY KEY (change_id, ordinal));
CREATE INDEX tasks_file ON tasks (file);
CREATE TABLE deltas (change_id TEXT NOT NULL, op TEXT NOT NULL, requirement_key TEXT NOT NULL,
                     renamed_to TEXT, text TEXT, file TEXT NOT NULL, line INTEGER NOT NULL,
                     gen INTEGER NOT NULL);
CREATE INDEX deltas_file ON deltas (file);
CREATE INDEX deltas_key ON deltas (requirement_key);
CREATE INDEX deltas_change ON deltas (change_id);
CREATE TABLE refs (source_key TEXT NOT NULL, uri TEXT NOT NULL, file TEXT NOT NULL,
                   line INTEGER NOT NULL, gen INTEGER NOT NULL);
CREATE INDEX refs_file ON refs (file);
"""
_FTS = ("CREATE VIRTUAL TABLE requirements_fts USING fts5(key UNINDEXED, file UNINDEXED, name, "
        "text, scenarios)")
_FTS_FALLBACK = ("CREATE TABLE requirements_fts (key TEXT, file TEXT, name TEXT, text TEXT, "
                 "scenarios TEXT)")
# Tables whose rows belong to one source file (column ``file``), in deletion order.
FILE_TABLES = ("capabilities", "requirements", "scenarios", "changes", "tasks", "deltas", "refs")


@dataclass(frozen=True)
class IndexStats:
    """What one :meth:`SpecIndex.update` did: files seen / reparsed / dropped, rows written."""

    files_seen: int
    files_changed: int
    files_removed: int
    rows_written: int
    generation: int


@dataclass(frozen=True)
class IndexedRequirement:
    """A requirement as the index returns it."""

    key: str
    capability: str
    name: str
    text: str
    hash: str
    file: str
    line: int
    scenarios: tuple[tuple[str, str, int], ...]  # (name, text, line)


def find_references(text: str) -> Iterator[tuple[str, int]]:
    """``(uri, line offset)`` of every ``spec://`` URI in ``text`` (trailing dots dropped)."""
    for offset, line in enumerate(text.split("\n")):
        for match in _URI.finditer(line):
            yield match.group(0).rstrip(".:"), offset


def _sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _sources(root: Path) -> Iterator[tuple[str, str, str, Path]]:
    """(relative path, kind, owner, file) of every indexed file under ``root/openspec``."""
    base = root / "openspec"
    for capability, path in discover_spec_files(base / "specs"):
        yield path.relative_to(root).as_posix(), "spec", capability, path
    changes = base / "changes"
    if not changes.is_dir():
        return
    dirs: list[tuple[str, Path]] = []
    for entry in sorted(changes.iterdir()):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        if entry.name == "archive":
            dirs += [(old.name, old) for old in sorted(entry.iterdir())
                     if old.is_dir() and _ARCHIVED.match(old.name)]
        else:
            dirs.append((entry.name, entry))
    for change_id, directory in dirs:
        for name, kind in (("proposal.md", "proposal"), ("tasks.md", "tasks")):
            path = directory / name
            if path.is_file():
                yield path.relative_to(root).as_posix(), kind, change_id, path
        for capability, path in discover_spec_files(directory / "specs"):
            yield path.relative_to(root).as_posix(), "delta", f"{change_id}\0{capability}", path


class SpecIndex:
    """The index file of one repository; open it, :meth:`update` it, query it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # the store's connection factory: autocommit, WAL, the same busy timeout and pragmas
        self.conn = connect_sqlite(path)
        self.fts5 = False
        self._written = 0
        self._ensure_schema()

    def _write(self, sql: str, args: tuple[object, ...] = ()) -> None:
        self._written += max(self.conn.execute(sql, args).rowcount, 0)

    def _write_many(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        if rows:
            self._written += max(self.conn.executemany(sql, rows).rowcount, 0)

    @classmethod
    def for_root(cls, root: Path) -> SpecIndex:
        """The index at ``root/.aidp/specs-index.db``."""
        return cls(root / INDEX_FILE)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> SpecIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ensure_schema(self) -> None:
        version = None
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            version = row[0] if row else None
            fts = self.conn.execute("SELECT value FROM meta WHERE key = 'fts5'").fetchone()
            self.fts5 = bool(fts and fts[0] == "1")
        except sqlite3.OperationalError:
            pass
        if version == str(SCHEMA_VERSION):
            return
        # A derived cache: an unknown or old schema is simply rebuilt.
        tables = [r[0] for r in self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "AND name NOT LIKE 'requirements_fts_%'")]
        self.conn.execute("BEGIN IMMEDIATE")
        for table in tables:
            self.conn.execute(f'DROP TABLE IF EXISTS "{table}"')
        for statement in filter(str.strip, _SCHEMA.split(";")):
            self.conn.execute(statement)
        try:
            self.conn.execute(_FTS)
            self.fts5 = True
        except sqlite3.OperationalError:  # SQLite built without FTS5: LIKE search instead
            self.conn.execute(_FTS_FALLBACK)
            self.fts5 = False
        self.conn.executemany("INSERT INTO meta VALUES (?, ?)",
                              [("schema", str(SCHEMA_VERSION)), ("generation", "0"),
                               ("fts5", "1" if self.fts5 else "0")])
        self.conn.execute("COMMIT")

    # -- building --------------------------------------------------------------------------

    def update(self, root: Path) -> IndexStats:
        """Bring the index in line with the files under ``root/openspec``, reparsing only files
        whose content hash changed. One write transaction."""
        known = {path: (kind, owner, digest) for path, kind, owner, digest in
                 self.conn.execute("SELECT path, kind, owner, hash FROM files")}
        seen: set[str] = set()
        changed: list[tuple[str, str, str, str, bytes]] = []
        for rel, kind, owner, path in _sources(root):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            seen.add(rel)
            digest = _sha(data)
            if known.get(rel) != (kind, owner, digest):
                changed.append((rel, kind, owner, digest, data))
        removed = sorted(set(known) - seen)
        self._written = 0
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            generation = int(self.conn.execute(
                "SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]) + 1
            if changed or removed:
                self.conn.execute("UPDATE meta SET value = ? WHERE key = 'generation'",
                                  (str(generation),))
            else:
                generation -= 1
            for rel in removed:
                self._forget(rel)
                self._write("DELETE FROM files WHERE path = ?", (rel,))
            for rel, kind, owner, digest, data in changed:
                self._forget(rel)
                self._insert(rel, kind, owner, normalize_content(data.decode("utf-8", "replace")),
                             generation)
                self._write("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
                            (rel, kind, owner, digest, generation))
            self._ensure_change_rows(generation)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return IndexStats(len(seen), len(changed), len(removed), self._written, generation)

    def rebuild(self, root: Path) -> IndexStats:
        """Forget everything and index ``root`` from scratch."""
        self.conn.execute("BEGIN IMMEDIATE")
        for table in (*FILE_TABLES, "files", "requirements_fts"):
            self.conn.execute(f"DELETE FROM {table}")
        self.conn.execute("COMMIT")
        return self.update(root)

    def _forget(self, rel: str) -> None:
        for table in (*FILE_TABLES, "requirements_fts"):
            self._write(f"DELETE FROM {table} WHERE file = ?", (rel,))

    def _requirement_rows(self, req: Requirement, rel: str, gen: int) -> None:
        self._write("INSERT OR REPLACE INTO requirements VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                          (req.key, req.capability, req.name, req.text, _sha(req.raw), rel,
                           req.position.line, gen))
        self._write_many(
            "INSERT OR REPLACE INTO scenarios VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(req.key, n, s.name, s.text, rel, s.position.line, gen)
             for n, s in enumerate(req.scenarios)])
        self._write("INSERT INTO requirements_fts VALUES (?, ?, ?, ?, ?)",
                          (req.key, rel, req.name, req.text,
                           "\n".join(f"{s.name}\n{s.text}" for s in req.scenarios)))
        self._reference_rows(req.key, req.raw, req.position.line, rel, gen)

    def _reference_rows(self, source: str, text: str, first_line: int, rel: str,
                        gen: int) -> None:
        self._write_many("INSERT INTO refs VALUES (?, ?, ?, ?, ?)",
                              [(source, uri, rel, first_line + offset, gen)
                               for uri, offset in find_references(text)])

    def _insert(self, rel: str, kind: str, owner: str, text: str, gen: int) -> None:
        if kind == "spec":
            spec = parse_spec(owner, text, rel)
            self._write("INSERT OR REPLACE INTO capabilities VALUES (?, ?, ?, ?, ?)",
                              (owner, rel, spec.title, spec.purpose, gen))
            for req in spec.requirements:
                self._requirement_rows(req, rel, gen)
            return
        if kind == "proposal":
            proposal = parse_proposal(text, rel)
            self._change_row(owner, proposal.title or owner, rel, gen)
            return
        if kind == "tasks":
            self._write_many(
                "INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(owner, n, t.number, t.text, int(t.done), rel, t.position.line, gen)
                 for n, t in enumerate(parse_tasks(text, rel))])
            return
        change_id, capability = owner.split("\0", 1)
        delta_spec = parse_delta_file(capability, text, rel)
        for delta in delta_spec.deltas:
            body = delta.requirement.text if delta.requirement else None
            self._write("INSERT INTO deltas VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                              (change_id, delta.op.value, delta.key, delta.renamed_to, body, rel,
                               delta.position.line, gen))
            if delta.requirement is not None:
                self._reference_rows(f"{change_id}:{delta.key}", delta.requirement.raw,
                                     delta.position.line, rel, gen)

    def _change_row(self, change_id: str, title: str | None, rel: str | None, gen: int) -> None:
        match = _ARCHIVED.match(change_id)
        name, archived_on = (match.group(2), match.group(1)) if match else (change_id, None)
        self._write("INSERT OR REPLACE INTO changes VALUES (?, ?, ?, ?, ?, ?)",
                          (change_id, name, archived_on, title, rel, gen))

    def _ensure_change_rows(self, gen: int) -> None:
        """A change without proposal.md still has a row (owned by no file)."""
        owners = {r[0].split("\0", 1)[0] for r in self.conn.execute(
            "SELECT owner FROM files WHERE kind IN ('tasks', 'delta')")}
        present = {r[0] for r in self.conn.execute("SELECT id FROM changes")}
        with_proposal = {r[0] for r in self.conn.execute(
            "SELECT owner FROM files WHERE kind = 'proposal'")}
        for change_id in sorted(owners - present):
            self._change_row(change_id, None, None, gen)
        for change_id in sorted(present - owners - with_proposal):
            self._write("DELETE FROM changes WHERE id = ? AND file IS NULL", (change_id,))

    # -- queries ---------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        return {table: self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in ("files", *FILE_TABLES)}

    def requirement(self, key: str) -> IndexedRequirement | None:
        """The requirement ``<capability>/<name>``, or None."""
        row = self.conn.execute("SELECT key, capability, name, text, hash, file, line FROM "
                                "requirements WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        scenarios = tuple((str(n), str(t), int(ln)) for n, t, ln in self.conn.execute(
            "SELECT name, text, line FROM scenarios WHERE requirement_key = ? ORDER BY ordinal",
            (key,)))
        return IndexedRequirement(row[0], row[1], row[2], row[3], row[4], row[5], int(row[6]),
                                  scenarios)

    def requirements_of(self, capability: str) -> list[str]:
        """Keys of a capability's requirements in file order."""
        return [r[0] for r in self.conn.execute(
            "SELECT key FROM requirements WHERE capability = ? ORDER BY line", (capability,))]

    def capabilities(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT id FROM capabilities ORDER BY id")]

    def search(self, text: str, limit: int = 20) -> list[str]:
        """Requirement keys whose name, text or scenarios match ``text`` (FTS5 when built in,
        else a case-insensitive substring match), best first."""
        if self.fts5:
            terms = " ".join('"' + word.replace('"', '""') + '"' for word in text.split())
            if not terms:
                return []
            return [r[0] for r in self.conn.execute(
                "SELECT key FROM requirements_fts WHERE requirements_fts MATCH ? ORDER BY rank "
                "LIMIT ?", (terms, limit))]
        pattern = f"%{text}%"
        return [r[0] for r in self.conn.execute(
            "SELECT key FROM requirements_fts WHERE name LIKE ? OR text LIKE ? OR scenarios LIKE ?"
            " ORDER BY key LIMIT ?", (pattern, pattern, pattern, limit))]

    def deltas(self, change_id: str | None = None,
               key: str | None = None) -> list[tuple[str, str, str, str | None, str, int]]:
        """(change, op, requirement key, renamed_to, file, line) for one change or key."""
        query = "SELECT change_id, op, requirement_key, renamed_to, file, line FROM deltas"
        clauses, args = [], []
        if change_id is not None:
            clauses.append("change_id = ?")
            args.append(change_id)
        if key is not None:
            clauses.append("requirement_key = ?")
            args.append(key)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        return list(self.conn.execute(query + " ORDER BY change_id, file, line", args))

    def changes(self, *, archived: bool | None = False) -> list[tuple[str, str | None, int, int]]:
        """(id, title, done tasks, total tasks) of active (or archived, or all) changes."""
        where = "" if archived is None else \
            ("WHERE archived_on IS NOT NULL" if archived else "WHERE archived_on IS NULL")
        return list(self.conn.execute(
            "SELECT c.id, c.title, COALESCE(SUM(t.done), 0), COUNT(t.ordinal) FROM changes c "
            f"LEFT JOIN tasks t ON t.change_id = c.id {where} GROUP BY c.id ORDER BY c.id"))

    def references(self) -> list[tuple[str, str, str, int]]:
        """(source key, uri, file, line) of every ``spec://`` reference."""
        return list(self.conn.execute("SELECT source_key, uri, file, line FROM refs "
                                      "ORDER BY file, line"))

    def rows_of_generation(self, generation: int) -> int:
        """How many rows (all tables) the given build generation wrote."""
        return sum(self.conn.execute(f"SELECT COUNT(*) FROM {table} WHERE gen = ?",
                                     (generation,)).fetchone()[0]
                   for table in ("files", *FILE_TABLES))

    def rows_of_file(self, rel: str) -> int:
        """How many rows (all tables, the files row included) come from one file."""
        return 1 + sum(int(self.conn.execute(f"SELECT COUNT(*) FROM {table} WHERE file = ?",
                                             (rel,)).fetchone()[0]) for table in FILE_TABLES)
