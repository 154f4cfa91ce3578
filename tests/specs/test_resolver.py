"""spec:// URIs: parsing, versions, renames followed, references graph, change conflicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from aidp.exceptions import InputError, NotFoundError
from aidp.specs import load_project
from aidp.specs.model import Position
from aidp.specs.resolver import find_conflicts, parse_uri, reference_graph, resolve
from tests.specs.corpus import ADD_OK, LOGIN, proposal, spec

RENAME_LOGOUT = ("## RENAMED Requirements\n- FROM: `### Requirement: Logout`\n"
                 "- TO: `### Requirement: Sign out`\n")
MODIFY_LOGIN = ("## MODIFIED Requirements\n### Requirement: Login\nThe system SHALL let a user "
                "log in with a code.\n\n#### Scenario: Good password\n- **WHEN** ok\n- **THEN** "
                "ok\n\n#### Scenario: Bad password\n- **WHEN** bad\n- **THEN** no\n")


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root


@pytest.fixture
def project_root(tmp_path: Path) -> Path:
    """Specs auth and identity/user-auth, two active changes, one archived rename."""
    archived_login = LOGIN.replace("### Requirement: Logout", "### Requirement: Sign off")
    return _write(tmp_path, {
        "openspec/config.yaml": "schema: spec-driven\n",
        "openspec/specs/auth/spec.md": spec("auth", LOGIN),
        "openspec/specs/identity/user-auth/spec.md": spec("user-auth", LOGIN),
        "openspec/changes/add-2fa/proposal.md": proposal(),
        "openspec/changes/add-2fa/specs/auth/spec.md": ADD_OK + "\n" + MODIFY_LOGIN,
        "openspec/changes/rename-logout/proposal.md": proposal(),
        "openspec/changes/rename-logout/specs/auth/spec.md": RENAME_LOGOUT,
        "openspec/changes/archive/2025-01-01-add-auth/proposal.md": proposal(),
        "openspec/changes/archive/2025-01-01-add-auth/specs/auth/spec.md":
            "## ADDED Requirements\n" + archived_login,
        "openspec/changes/archive/2025-02-01-rename-sign-off/proposal.md": proposal(),
        "openspec/changes/archive/2025-02-01-rename-sign-off/specs/auth/spec.md":
            "## RENAMED Requirements\n- FROM: `### Requirement: Sign off`\n"
            "- TO: `### Requirement: Logout`\n",
    })


@pytest.mark.parametrize("uri,path,scenario,version", [
    ("spec://auth", "auth", None, "current"),
    ("spec://auth/Login", "auth/Login", None, "current"),
    ("spec://auth/Login#Good%20password", "auth/Login", "Good password", "current"),
    ("spec://auth/Two%20factor@add-2fa", "auth/Two factor", None, "add-2fa"),
    ("spec://auth/Login#Bad password@2025-01-15", "auth/Login", "Bad password", "2025-01-15"),
    ("spec://identity/user-auth/Login", "identity/user-auth/Login", None, "current"),
], ids=["capability", "requirement", "scenario", "change-version", "archive-date", "nested"])
def test_parse_uri(uri: str, path: str, scenario: str | None, version: str) -> None:
    """URIs split into path, scenario and version; percent-escapes are decoded."""
    parsed = parse_uri(uri)
    assert (parsed.path, parsed.scenario, parsed.version) == (path, scenario, version)


@pytest.mark.parametrize("uri", ["http://auth", "spec://", "spec://auth@"],
                         ids=["scheme", "empty", "empty-version"])
def test_bad_uris_are_input_errors(uri: str) -> None:
    """Anything that is not spec://<capability>... is an InputError naming the URI."""
    with pytest.raises(InputError):
        parse_uri(uri)


def test_resolve_current_requirement_and_scenario(project_root: Path) -> None:
    """The current version names the requirement and scenario with their lines."""
    project = load_project(project_root)
    found = resolve(project, "spec://auth/Login#Bad%20password")
    assert found.requirement is not None and found.requirement.key == "auth/Login"
    assert found.scenario is not None and found.scenario.position.line == 14
    nested = resolve(project, "spec://identity/user-auth/Logout")
    assert nested.capability == "identity/user-auth" and nested.requirement is not None


def test_resolve_at_a_change(project_root: Path) -> None:
    """@<change> is the spec as archiving that change would leave it."""
    project = load_project(project_root)
    after = resolve(project, "spec://auth/Login@add-2fa")
    assert after.requirement is not None
    assert after.requirement.text == "The system SHALL let a user log in with a code."
    assert resolve(project, "spec://auth/Two%20factor@add-2fa").requirement is not None
    with pytest.raises(NotFoundError, match=r"no requirement 'Two factor' in auth$"):
        resolve(project, "spec://auth/Two factor")


def test_renames_are_followed_with_a_notice(project_root: Path) -> None:
    """An old name resolves to the new one -- across the archive, or at the renaming change."""
    project = load_project(project_root)
    old = resolve(project, "spec://auth/Sign off")
    assert old.requirement is not None and old.requirement.name == "Logout"
    assert any("renamed to 'Logout'" in n for n in old.notices)
    pending = resolve(project, "spec://auth/Logout@rename-logout")
    assert pending.requirement is not None and pending.requirement.name == "Sign out"


def test_resolve_at_an_archive_date(project_root: Path) -> None:
    """@<date> undoes later archived changes: before the rename, Logout was Sign off."""
    project = load_project(project_root)
    then = resolve(project, "spec://auth/Sign off@2025-01-15")
    assert then.requirement is not None and then.requirement.name == "Sign off"
    with pytest.raises(NotFoundError):
        resolve(project, "spec://auth/Logout@2025-01-15")
    assert resolve(project, "spec://auth/Logout@2025-03-01").requirement is not None


@pytest.mark.parametrize("uri,message", [
    ("spec://billing", "no such capability"),
    ("spec://auth/Nope", "no requirement 'Nope'"),
    ("spec://auth/Login#Nope", "no scenario 'Nope'"),
    ("spec://auth/Login@no-such-change", "unknown version"),
], ids=["capability", "requirement", "scenario", "version"])
def test_missing_targets_name_what_is_missing(project_root: Path, uri: str,
                                              message: str) -> None:
    """A URI that names nothing is NotFoundError saying which part is missing."""
    with pytest.raises(NotFoundError, match=message):
        resolve(load_project(project_root), uri)


def test_two_changes_claiming_one_requirement_conflict(project_root: Path) -> None:
    """Two active changes that modify / rename the same requirement are one conflict each."""
    _write(project_root, {
        "openspec/changes/remove-login/proposal.md": proposal(),
        "openspec/changes/remove-login/specs/auth/spec.md":
            "## REMOVED Requirements\n### Requirement: Login\n",
        "openspec/changes/also-sign-out/proposal.md": proposal(),
        "openspec/changes/also-sign-out/specs/auth/spec.md":
            ADD_OK.replace("Two factor", "Sign out"),
    })
    conflicts = {c.key: [(cl.change, cl.op.value) for cl in c.claims]
                 for c in find_conflicts(load_project(project_root))}
    assert conflicts == {
        "auth/Login": [("add-2fa", "MODIFIED"), ("remove-login", "REMOVED")],
        "auth/Sign out": [("also-sign-out", "ADDED"), ("rename-logout", "RENAMED")],
    }


def test_independent_changes_do_not_conflict(project_root: Path) -> None:
    """Changes touching different requirements are not reported."""
    assert find_conflicts(load_project(project_root)) == []


def test_reference_graph_missing_targets_and_cycles(tmp_path: Path) -> None:
    """References become edges; a missing target names file, line and requirement, and a
    cycle names the whole chain."""
    def req(name: str, text: str) -> str:
        return (f"### Requirement: {name}\nThe system SHALL {text}.\n\n#### Scenario: s\n"
                "- **WHEN** a\n- **THEN** b\n\n")

    _write(tmp_path, {
        "openspec/specs/a/spec.md": spec("a", req("One", "see spec://b/Two")
                                         + req("Lonely", "see spec://b/Missing")),
        "openspec/specs/b/spec.md": spec("b", req("Two", "see spec://c/Three")),
        "openspec/specs/c/spec.md": spec("c", req("Three", "see spec://a/One and spec://a")),
    })
    graph = reference_graph(load_project(tmp_path))
    assert graph.edges["a/One"] == ("b/Two",)
    assert graph.edges["c/Three"] == ("a/One", "a")
    rendered = sorted(p.render() for p in graph.problems)
    assert rendered == [
        "openspec/specs/a/spec.md:15: [a/Lonely] unresolved reference: spec://b/Missing: no "
        "requirement 'Missing' in b",
        "openspec/specs/c/spec.md:8: [c/Three] reference cycle: a/One -> b/Two -> c/Three -> "
        "a/One",
    ]


def _line_of(path: Path, text: str) -> int:
    return path.read_text().split("\n").index(text) + 1


def test_resolve_at_a_change_names_the_file_it_comes_from(project_root: Path) -> None:
    """Rule: at @<change>, a requirement's file and line are those of the file it comes from --
    the change's delta spec for what the change adds or modifies, the current spec otherwise."""
    project = load_project(project_root)
    delta = "openspec/changes/add-2fa/specs/auth/spec.md"
    added = resolve(project, "spec://auth/Two%20factor#Code%20ok@add-2fa")
    assert added.requirement is not None and added.scenario is not None
    assert added.requirement.position == Position(
        delta, _line_of(project_root / delta, "### Requirement: Two factor"))
    assert added.scenario.position == Position(
        delta, _line_of(project_root / delta, "#### Scenario: Code ok"))
    modified = resolve(project, "spec://auth/Login@add-2fa").requirement
    assert modified is not None and modified.position == Position(
        delta, _line_of(project_root / delta, "### Requirement: Login"))
    current = "openspec/specs/auth/spec.md"
    untouched = resolve(project, "spec://auth/Logout@add-2fa")
    assert untouched.requirement is not None and untouched.requirement.position == Position(
        current, _line_of(project_root / current, "### Requirement: Logout"))


@pytest.mark.parametrize("date", ["2026-02-30", "9999-99-99", "2025-13-01"])
def test_impossible_dates_are_rejected(project_root: Path, date: str) -> None:
    """Rule: @YYYY-MM-DD must be a real calendar date; otherwise an InputError naming it."""
    with pytest.raises(InputError, match=f"{date}.*not a valid date"):
        resolve(load_project(project_root), f"spec://auth/Login@{date}")
