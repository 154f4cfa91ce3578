"""``aidp specs`` through the real executable: messages, exit codes, JSON shapes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Cli, CliResult
from tests.specs.corpus import ADD_OK, LOGIN, proposal, spec


def aidp(cwd: Path, *args: str) -> CliResult:
    """The real ``aidp specs *args`` in ``cwd``; never a traceback."""
    proc = Cli(cwd)("specs", *args, timeout=90)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A small openspec tree: one good spec, one good change, one broken change."""
    files = {
        "openspec/config.yaml": "schema: spec-driven\n",
        "openspec/specs/auth/spec.md": spec("auth", LOGIN),
        "openspec/changes/add-2fa/proposal.md": proposal(),
        "openspec/changes/add-2fa/tasks.md": "## 1. Impl\n- [x] 1.1 a\n- [ ] 1.2 b\n",
        "openspec/changes/add-2fa/specs/auth/spec.md": ADD_OK,
        "openspec/changes/broken/proposal.md": proposal(),
        "openspec/changes/broken/specs/auth/spec.md":
            "## ADDED Requirements\n### Requirement: Lonely\nThe system SHALL x.\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_validate_reports_file_line_and_id(root: Path) -> None:
    """A broken change: one line per issue naming file, line and change id; exit 2."""
    result = aidp(root, "validate", "broken")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        "openspec/changes/broken/specs/auth/spec.md:2: [broken] error: ADDED \"Lonely\" must "
        "include at least one scenario")


def test_validate_valid_change_exits_0(root: Path) -> None:
    """A valid change validates with exit 0, also under --strict."""
    assert aidp(root, "validate", "add-2fa", "--strict").returncode == 0


def test_validate_json_carries_file_and_line(root: Path) -> None:
    """--json prints aidp's shape: every issue with level, file, line, path and message."""
    result = aidp(root, "validate", "--json")
    document = json.loads(result.stdout)
    assert result.returncode == 2 and document["ok"] is False
    broken = next(i for i in document["items"] if i["id"] == "broken")
    assert broken["issues"][0] == {
        "level": "ERROR", "file": "openspec/changes/broken/specs/auth/spec.md", "line": 2,
        "path": "auth/spec.md", "message": 'ADDED "Lonely" must include at least one scenario'}


@pytest.mark.parametrize("args", [("validate",), ("list",), ("resolve", "spec://a"),
                                  ("conflicts",), ("index",)], ids=" ".join)
def test_outside_an_openspec_tree(tmp_path: Path, args: tuple[str, ...]) -> None:
    """Without openspec/ above the directory: exit 3, one error line and a hint."""
    result = aidp(tmp_path, *args)
    assert result.returncode == 3
    assert result.stderr.startswith("error: no openspec/ directory")
    assert "hint:" in result.stderr


def test_unknown_item_is_exit_3(root: Path) -> None:
    """An id that is neither a change nor a spec: exit 3 with the known ids as hint."""
    result = aidp(root, "show", "nope")
    assert result.returncode == 3
    assert result.stderr.splitlines() == ["error: no change or spec 'nope'",
                                          "hint: known: add-2fa, broken, auth"]


def test_unknown_item_in_openspec_format(root: Path) -> None:
    """--format openspec reports an unknown id as the reference does: status JSON, exit 1."""
    result = aidp(root, "validate", "nope", "--format", "openspec")
    assert result.returncode == 1
    assert json.loads(result.stdout)["status"][0]["code"] == "unknown_item"


def test_resolve_json(root: Path) -> None:
    """resolve --json gives the requirement with its scenarios and lines."""
    result = aidp(root, "resolve", "spec://auth/Login#Bad%20password", "--json")
    data = json.loads(result.stdout)
    assert result.returncode == 0
    assert data["requirement"]["key"] == "auth/Login" and data["requirement"]["line"] == 7
    assert data["scenario"] == {"name": "Bad password", "line": 14,
                                "text": "- **WHEN** the password is wrong\n- **THEN** an error "
                                        "is shown"}


def test_resolve_at_change_and_missing(root: Path) -> None:
    """@<change> finds what the change adds; a missing requirement is exit 3 naming it."""
    assert aidp(root, "resolve", "spec://auth/Two factor@add-2fa").returncode == 0
    missing = aidp(root, "resolve", "spec://auth/Two factor")
    assert missing.returncode == 3
    assert missing.stderr.startswith("error: spec://auth/Two factor: no requirement 'Two factor'")


def test_resolve_at_change_reports_the_delta_file_and_line(root: Path) -> None:
    """Rule: resolve @<change> reports the file and line the requirement comes from."""
    data = json.loads(aidp(root, "resolve", "spec://auth/Two factor@add-2fa", "--json").stdout)
    assert (data["file"], data["requirement"]["line"]) == (
        "openspec/changes/add-2fa/specs/auth/spec.md", 2)
    text = aidp(root, "resolve", "spec://auth/Two factor@add-2fa").stdout.splitlines()[0]
    assert text == "auth/Two factor (add-2fa, openspec/changes/add-2fa/specs/auth/spec.md:2)"


@pytest.mark.parametrize("date", ["2026-02-30", "9999-99-99"])
def test_resolve_rejects_impossible_dates(root: Path, date: str) -> None:
    """Rule: an @date that is not a calendar date is exit 2 naming the date."""
    result = aidp(root, "resolve", f"spec://auth/Login@{date}")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: spec://auth/Login@{date}: {date} is not a valid date")


def test_validate_all_in_openspec_without_a_root_is_exit_3(tmp_path: Path) -> None:
    """Rule: aidp's formats refuse an openspec/ with neither specs/, changes/ nor config.yaml."""
    (tmp_path / "openspec").mkdir()
    (tmp_path / "openspec" / "project.md").write_text("# Project\n")
    for args in (("validate",), ("validate", "--all", "--json")):
        result = aidp(tmp_path, *args)
        assert result.returncode == 3 and result.stdout == ""
        assert "no OpenSpec root" in result.stderr


def test_conflicts_exit_1_and_name_both_changes(root: Path) -> None:
    """Two active changes adding the same requirement: one line naming both, exit 1."""
    other = root / "openspec/changes/also-2fa/specs/auth"
    other.mkdir(parents=True)
    (other / "spec.md").write_text(ADD_OK)
    result = aidp(root, "conflicts")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "auth/Two factor: claimed by 2 changes: add-2fa (ADDED at openspec/changes/add-2fa/specs/"
        "auth/spec.md:2), also-2fa (ADDED at openspec/changes/also-2fa/specs/auth/spec.md:2)"]
    assert aidp(root, "conflicts", "--json").returncode == 1


def test_index_then_update_is_incremental(root: Path) -> None:
    """aidp specs index builds .aidp/specs-index.db; the second run reparses nothing."""
    first = json.loads(aidp(root, "index", "--json").stdout)
    second = json.loads(aidp(root, "index", "--json").stdout)
    assert (root / ".aidp" / "specs-index.db").is_file()
    assert first["files_changed"] == first["files_seen"] == 6
    assert (second["files_changed"], second["rows_written"]) == (0, 0)
    assert first["rows"]["requirements"] == 2
    found = json.loads(aidp(root, "search", "wrong password", "--json").stdout)
    assert [row["key"] for row in found] == ["auth/Login"]


def test_refs_reports_missing_reference(root: Path) -> None:
    """refs: an unresolved spec:// in a spec is reported with file and line; exit 2."""
    target = root / "openspec/specs/auth/spec.md"
    target.write_text(target.read_text().replace("log in.", "log in, see spec://billing/Pay."))
    result = aidp(root, "refs")
    assert result.returncode == 2
    assert result.stderr.startswith("openspec/specs/auth/spec.md:8: [auth/Login] unresolved "
                                    "reference: spec://billing/Pay: no such capability")


def test_list_text_and_show_text(root: Path) -> None:
    """list shows progress; show names every delta with its file and line."""
    listing = aidp(root, "list")
    assert "add-2fa  1/2 tasks  in-progress" in listing.stdout
    shown = aidp(root, "show", "add-2fa").stdout.splitlines()
    assert shown[2].split() == ["ADDED", "auth/Two", "factor",
                                "(openspec/changes/add-2fa/specs/auth/spec.md:2)"]


def test_specs_help_stays_light() -> None:
    """aidp --help does not import aidp.specs; aidp specs --help imports no database layer."""
    probe = ("import sys\nfrom aidp.cli.main import main\nsys.argv=['aidp']+sys.argv[1:]\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print('MODS', sorted(m for m in sys.modules if m.startswith(('aidp.specs', "
             "'sqlalchemy', 'sqlite3'))))")
    for args, forbidden in ((["--help"], ("aidp.specs",)), (["specs", "--help"],
                                                             ("sqlalchemy", "sqlite3"))):
        out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True,
                             text=True, timeout=60, check=True).stdout
        loaded = out.rsplit("MODS", 1)[1]
        assert not any(f"'{name}" in loaded for name in forbidden), loaded
