"""The OpenSpec reader: layouts, positions, deltas, proposals, tasks -- and it never crashes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aidp.exceptions import NotFoundError
from aidp.specs import DeltaOp, find_root, load_project
from aidp.specs.apply import ApplyError, apply_delta
from aidp.specs.markdown import fence_mask, parse_delta_spec
from aidp.specs.project import parse_delta_file, parse_proposal, parse_spec, parse_tasks
from aidp.specs.validate import validate_change, validate_spec
from tests.specs.corpus import ADD_OK, LOGIN, proposal, spec


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root


def test_spec_positions_name_file_and_line() -> None:
    """Every requirement and scenario keeps its 1-based line in the file it came from."""
    parsed = parse_spec("auth", spec("auth", LOGIN), "openspec/specs/auth/spec.md")
    assert [(r.key, r.position.line) for r in parsed.requirements] == [
        ("auth/Login", 7), ("auth/Logout", 18)]
    assert [(s.name, s.position.line) for s in parsed.requirements[0].scenarios] == [
        ("Good password", 10), ("Bad password", 14)]
    assert str(parsed.requirements[1].position) == "openspec/specs/auth/spec.md:18"
    assert parsed.title == "auth Specification" and parsed.purpose.startswith("Handle")


def test_delta_operations_and_lines() -> None:
    """ADDED, MODIFIED, REMOVED and RENAMED entries are read with their own lines."""
    text = (ADD_OK + "\n## MODIFIED Requirements\n### Requirement: Login\nThe system SHALL x.\n\n"
            "#### Scenario: s\n- **WHEN** a\n\n## REMOVED Requirements\n### Requirement: Old\n"
            "**Reason**: gone\n\n## RENAMED Requirements\n- FROM: `### Requirement: A`\n"
            "- TO: `### Requirement: B`\n")
    delta = parse_delta_file("auth", text, "d.md")
    assert [(d.op, d.name, d.position.line, d.renamed_to) for d in delta.deltas] == [
        (DeltaOp.ADDED, "Two factor", 2, None), (DeltaOp.MODIFIED, "Login", 10, None),
        (DeltaOp.REMOVED, "Old", 17, None), (DeltaOp.RENAMED, "A", 21, "B")]
    assert delta.deltas[0].requirement is not None
    assert delta.deltas[0].requirement.scenarios[0].name == "Code ok"


@pytest.mark.parametrize("header", ["## added requirements", "## ADDED Requirements",
                                    "## Added Requirements  "], ids=["lower", "upper", "mixed"])
def test_delta_section_titles_match_case_insensitively(header: str) -> None:
    """Delta section titles match whatever their case, as the reference CLI reads them."""
    plan = parse_delta_spec(ADD_OK.replace("## ADDED Requirements", header))
    assert [b.name for b in plan.added] == ["Two factor"]


def test_code_fences_hide_structure() -> None:
    """A requirement header inside a code fence is not a requirement."""
    text = ADD_OK + "\n```\n### Requirement: Fenced\n```\n~~~\n## REMOVED Requirements\n~~~\n"
    plan = parse_delta_spec(text)
    assert [b.name for b in plan.added] == ["Two factor"] and plan.removed == ()
    assert fence_mask(["```", "x", "```", "y"]) == [True, True, True, False]


def test_bom_and_crlf_are_normalised() -> None:
    """A BOM and CRLF line ends read exactly like plain LF text."""
    plain = parse_spec("a", spec("a", LOGIN))
    windows = parse_spec("a", "\ufeff" + spec("a", LOGIN).replace("\n", "\r\n"))
    assert [(r.name, r.text, r.position.line) for r in windows.requirements] == \
        [(r.name, r.text, r.position.line) for r in plain.requirements]


def test_bold_scenarios_are_not_scenarios() -> None:
    """Only level-4 headers with a body are scenarios; bold titles and bare headers are not."""
    parsed = parse_spec("a", spec("a", "### Requirement: R\nThe system SHALL x.\n\n**Scenario: "
                                       "bold**\n- x\n\n#### Scenario: bare\n"))
    assert parsed.requirements[0].scenarios == ()


def test_proposal_sections_and_breaking_changes() -> None:
    """proposal.md gives title, Why, What Changes bullets (BREAKING marked) and Impact."""
    parsed = parse_proposal(proposal("Add 2FA"))
    assert parsed.title == "Add 2FA"
    assert parsed.why.startswith("Because")
    assert parsed.changes == ("Change the thing", "**BREAKING** remove the old thing")
    assert parsed.breaking == ("**BREAKING** remove the old thing",)
    assert parsed.impact == "- Affected specs: base"


def test_tasks_numbering_groups_and_progress() -> None:
    """tasks.md checkboxes keep number, text, done flag, group and line."""
    tasks = parse_tasks("## 1. Build\n- [x] 1.1 Table\n- [ ] 1.2 API\nnot a task\n"
                        "## 2. Test\n* [X] 2.1 Unit\n- [ ] no number\n", "t.md")
    assert [(t.number, t.text, t.done, t.group, t.position.line) for t in tasks] == [
        ("1.1", "Table", True, "1", 2), ("1.2", "API", False, "1", 3),
        ("2.1", "Unit", True, "2", 6), (None, "no number", False, "2", 7)]


def _project(root: Path, *, v1: bool) -> Path:
    files = {
        "openspec/specs/auth/spec.md": spec("auth", LOGIN),
        "openspec/specs/auth/design.md": "# Design\n",
        "openspec/specs/identity/user-auth/spec.md": spec("user-auth", LOGIN),
        "openspec/changes/add-2fa/proposal.md": proposal("Add 2FA"),
        "openspec/changes/add-2fa/tasks.md": "## 1. Impl\n- [x] 1.1 a\n- [ ] 1.2 b\n",
        "openspec/changes/add-2fa/design.md": "# Design\nTOTP.\n",
        "openspec/changes/add-2fa/specs/auth/spec.md": ADD_OK,
        "openspec/changes/archive/2025-01-02-add-login/proposal.md": proposal("Login"),
        "openspec/changes/archive/2025-01-02-add-login/specs/auth/spec.md":
            "## ADDED Requirements\n" + LOGIN,
    }
    if v1:
        files["openspec/config.yaml"] = "schema: spec-driven\ncontext: |\n  Python shop.\n"
        files["openspec/changes/add-2fa/.openspec.yaml"] = "schema: spec-driven\n"
    else:
        files["openspec/project.md"] = "# Project\nConventions.\n"
    return _write(root, files)


@pytest.mark.parametrize("v1", [False, True], ids=["v0-project-md", "v1-config-yaml"])
def test_both_layouts_load(tmp_path: Path, v1: bool) -> None:
    """v0 (project.md) and v1 (config.yaml, .openspec.yaml) load specs, nested capabilities,
    changes with proposal / tasks / design, and the archive."""
    project = load_project(_project(tmp_path, v1=v1))
    assert project.layout == ("v1" if v1 else "v0")
    assert project.conventions == ("Python shop.\n" if v1 else "# Project\nConventions.\n")
    assert sorted(project.specs) == ["auth", "identity/user-auth"]
    assert project.specs["auth"].design == "# Design\n"
    change = project.changes["add-2fa"]
    assert change.progress == (1, 2) and change.design == "# Design\nTOTP.\n"
    assert [d.key for d in change.requirement_deltas] == ["auth/Two factor"]
    assert change.metadata.schema == ("spec-driven" if v1 else None)
    archived = project.archive["2025-01-02-add-login"]
    assert (archived.id, archived.archived_on) == ("add-login", "2025-01-02")


def test_find_root_walks_up(tmp_path: Path) -> None:
    """The openspec/ directory is found from any directory below it; none is NotFoundError."""
    root = _project(tmp_path / "repo", v1=True)
    assert find_root(root / "openspec" / "specs" / "auth") == root.resolve()
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(NotFoundError):
        find_root(tmp_path / "elsewhere")


def test_archive_merge_order(tmp_path: Path) -> None:
    """apply_delta renames, removes, modifies in place and appends additions, like archive."""
    delta = ("## RENAMED Requirements\n- FROM: `### Requirement: Logout`\n- TO: `### Requirement:"
             " Sign out`\n\n" + ADD_OK)
    merged = apply_delta("auth", delta, spec("auth", LOGIN), "x").content
    names = [r.name for r in parse_spec("auth", merged).requirements]
    assert names == ["Login", "Sign out", "Two factor"]


def test_archive_refusals_are_apply_errors() -> None:
    """MODIFIED of a missing requirement is refused with the reference's message."""
    delta = "## MODIFIED Requirements\n### Requirement: Ghost\nThe system SHALL x.\n"
    with pytest.raises(ApplyError, match=r'auth MODIFIED failed for header "### Requirement: '
                                         r'Ghost" - not found'):
        apply_delta("auth", delta, spec("auth", LOGIN), "x")


MARKDOWNISH = st.lists(st.sampled_from(
    ["#", "##", "###", "####", " ", "\n", "\r\n", "Requirement:", "Scenario:", "ADDED",
     "MODIFIED", "REMOVED", "RENAMED", "Requirements", "Purpose", "- ", "FROM:", "TO:", "`",
     "```", "~~~", "SHALL", "[x]", "[ ]", "1.1", "**", "\ufeff", "x", "é"]), max_size=80).map(
    "".join)


@settings(max_examples=150, deadline=None)
@given(text=st.one_of(MARKDOWNISH, st.text(max_size=300)))
def test_parsers_never_crash(text: str) -> None:
    """Any text parses as a spec, a delta, a proposal and tasks, and merges or is refused."""
    parse_spec("cap", text)
    parse_delta_file("cap", text)
    parse_proposal(text)
    parse_tasks(text)
    try:
        apply_delta("cap", text, text, "change")
    except ApplyError:
        pass


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=MARKDOWNISH)
def test_validation_never_crashes(tmp_path: Path, text: str) -> None:
    """Any text in any file of a change or spec yields a report, never an exception."""
    root = _write(tmp_path, {"openspec/specs/cap/spec.md": text,
                             "openspec/changes/c/proposal.md": text,
                             "openspec/changes/c/tasks.md": text,
                             "openspec/changes/c/.openspec.yaml": text,
                             "openspec/changes/c/specs/cap/spec.md": text})
    validate_spec("cap", root / "openspec/specs/cap/spec.md", root)
    validate_change("c", root / "openspec/changes/c", root)
