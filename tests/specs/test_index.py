"""The spec index: incremental by content hash, lookups by key, text and change."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from aidp.specs.index import SCHEMA_VERSION, SpecIndex
from tests.specs.corpus import ADD_OK, LOGIN, proposal, spec


def many_specs(root: Path, count: int) -> Path:
    """``count`` capabilities of two requirements (three scenarios) each, plus one change."""
    for n in range(count):
        target = root / "openspec" / "specs" / f"cap-{n:04d}" / "spec.md"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(spec(f"cap-{n:04d}", LOGIN.replace("log in", f"log in to area {n}")))
    change = root / "openspec" / "changes" / "add-2fa"
    (change / "specs" / "cap-0001").mkdir(parents=True)
    (change / "proposal.md").write_text(proposal("Add 2FA"))
    (change / "tasks.md").write_text("## 1. Impl\n- [x] 1.1 a\n- [ ] 1.2 b\n")
    (change / "specs" / "cap-0001" / "spec.md").write_text(ADD_OK)
    return root


def test_reindexing_1000_specs_touches_one_files_rows(tmp_path: Path) -> None:
    """Reindexing 1,000 specs where one file changed reparses that file and writes only its
    rows: every row of the new generation comes from it, no other row is rewritten."""
    root = many_specs(tmp_path, 1000)
    with SpecIndex.for_root(root) as index:
        first = index.update(root)
        assert (first.files_seen, first.files_changed) == (1003, 1003)
        total_rows = sum(index.counts().values())
        changed = root / "openspec" / "specs" / "cap-0500" / "spec.md"
        changed.write_text(changed.read_text().replace("end sessions", "end all sessions"))
        second = index.update(root)
        rel = "openspec/specs/cap-0500/spec.md"
        assert (second.files_seen, second.files_changed, second.files_removed) == (1003, 1, 0)
        assert index.rows_of_generation(second.generation) == index.rows_of_file(rel)
        assert index.rows_of_file(rel) == 1 + 1 + 2 + 3  # files, capability, reqs, scenarios
        # its 6 rows and 2 search entries deleted and inserted again, its files row replaced
        assert second.rows_written == 2 * (6 + 2) + 1
        assert sum(index.counts().values()) == total_rows
        assert index.requirement("cap-0500/Logout").text == (  # type: ignore[union-attr]
            "The system SHALL end all sessions on request.")


def test_unchanged_tree_writes_nothing(tmp_path: Path) -> None:
    """A second update with no file changed writes no row."""
    root = many_specs(tmp_path, 5)
    with SpecIndex.for_root(root) as index:
        index.update(root)
        again = index.update(root)
    assert (again.files_changed, again.rows_written) == (0, 0)


def test_removed_files_drop_their_rows(tmp_path: Path) -> None:
    """Deleting a spec removes its capability, requirements and scenarios from the index."""
    root = many_specs(tmp_path, 3)
    with SpecIndex.for_root(root) as index:
        index.update(root)
        (root / "openspec" / "specs" / "cap-0002" / "spec.md").unlink()
        stats = index.update(root)
        assert stats.files_removed == 1
        assert index.capabilities() == ["cap-0000", "cap-0001"]
        assert index.requirement("cap-0002/Login") is None
        assert index.rows_of_file("openspec/specs/cap-0002/spec.md") == 1  # the count's own 1


def test_lookup_by_key_text_and_change(tmp_path: Path) -> None:
    """Requirements are found by key (with scenarios and lines), by words, and by change."""
    root = many_specs(tmp_path, 3)
    with SpecIndex.for_root(root) as index:
        index.update(root)
        found = index.requirement("cap-0001/Login")
        assert found is not None and found.line == 7 and len(found.hash) == 64
        assert [s[0] for s in found.scenarios] == ["Good password", "Bad password"]
        assert index.search("area 2")[0] == "cap-0002/Login"
        assert set(index.search("wrong password")) == {f"cap-{n:04d}/Login" for n in range(3)}
        assert index.deltas("add-2fa") == [
            ("add-2fa", "ADDED", "cap-0001/Two factor", None,
             "openspec/changes/add-2fa/specs/cap-0001/spec.md", 2)]
        assert index.changes() == [("add-2fa", "Add 2FA", 1, 2)]


def test_references_are_indexed(tmp_path: Path) -> None:
    """spec:// URIs inside requirement text are stored with their file and line."""
    root = many_specs(tmp_path, 2)
    target = root / "openspec" / "specs" / "cap-0000" / "spec.md"
    target.write_text(target.read_text().replace(
        "The system SHALL end sessions on request.",
        "The system SHALL end sessions on request, see spec://cap-0001/Login."))
    with SpecIndex.for_root(root) as index:
        index.update(root)
        assert index.references() == [("cap-0000/Logout", "spec://cap-0001/Login",
                                        "openspec/specs/cap-0000/spec.md", 19)]


def test_old_schema_is_rebuilt(tmp_path: Path) -> None:
    """An index file from another schema version is dropped and rebuilt, not migrated."""
    root = many_specs(tmp_path, 2)
    path = root / ".aidp" / "specs-index.db"
    path.parent.mkdir()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO meta VALUES ('schema', '0')")
        conn.execute("CREATE TABLE junk (x)")
    with SpecIndex(path) as index:
        stats = index.update(root)
        assert stats.files_changed == 5
        tables = {r[0] for r in index.conn.execute("SELECT name FROM sqlite_master")}
        version = index.conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0]
    assert "junk" not in tables and version == str(SCHEMA_VERSION)


@pytest.mark.parametrize("query", ["", "   ", '"', "AND OR NOT", "scenario*"],
                         ids=["empty", "blank", "quote", "operators", "star"])
def test_search_never_fails_on_odd_queries(tmp_path: Path, query: str) -> None:
    """Any search text is taken literally: no FTS syntax error reaches the user."""
    root = many_specs(tmp_path, 1)
    with SpecIndex.for_root(root) as index:
        index.update(root)
        assert isinstance(index.search(query), list)
