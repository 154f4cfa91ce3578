"""The shipped examples: the OpenSpec tree validates (also for the real openspec CLI), its
change compiles into a valid plan, the CCPM epic compiles too."""

from __future__ import annotations

from pathlib import Path

import yaml

from aidp.model.loader import load_plan
from aidp.specs import load_project
from aidp.specs.bridge import change_to_workstreams
from aidp.specs.ccpm import epic_to_workstreams, find_epic, load_epic
from aidp.specs.compat import validation_document
from aidp.specs.resolver import find_conflicts, reference_graph
from aidp.specs.validate import validate_change, validate_spec
from tests.specs.conftest import REPO, Reference

OPENSPEC = REPO / "examples" / "openspec"
CCPM = REPO / "examples" / "ccpm"


def _reports() -> list[tuple[object, int]]:
    return [(validate_change("add-two-factor", OPENSPEC / "openspec/changes/add-two-factor",
                             OPENSPEC, strict=True), 0),
            (validate_spec("auth", OPENSPEC / "openspec/specs/auth/spec.md", OPENSPEC,
                           strict=True), 0)]


def test_example_openspec_tree_is_valid_and_clean() -> None:
    """Every item validates under --strict; references resolve; no change conflicts."""
    reports = _reports()
    assert all(report.valid for report, _ in reports)  # type: ignore[attr-defined]
    project = load_project(OPENSPEC)
    assert reference_graph(project).problems == () and find_conflicts(project) == []


def test_example_matches_openspec(reference: Reference) -> None:
    """The real openspec CLI gives the example the same verdicts and issues."""
    _, ref = reference.json(OPENSPEC, "validate", "--all", "--strict", "--json")
    ours = validation_document(OPENSPEC, _reports(), ("change", "spec"))  # type: ignore[arg-type]
    strip = [{k: v for k, v in item.items() if k != "durationMs"} for item in ref["items"]]
    assert [{k: v for k, v in i.items() if k != "durationMs"} for i in ours["items"]] == strip


def test_example_change_and_epic_compile_to_plans(tmp_path: Path) -> None:
    """The example change and the example epic become workstream files aidp accepts."""
    change = change_to_workstreams(load_project(OPENSPEC), "add-two-factor")
    epic = epic_to_workstreams(load_epic(find_epic(CCPM, "two-factor"), CCPM))
    for name, document in (("change.yaml", change), ("epic.yaml", epic)):
        (tmp_path / name).write_text(yaml.safe_dump(document))
    assert load_plan([tmp_path / "change.yaml"]).step_count == 4
    assert len(load_plan([tmp_path / "epic.yaml"]).workstreams) == 3
