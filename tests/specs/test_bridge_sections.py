"""Change -> workstreams: tasks.md sections as chained workstreams, tagged tests as checks."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from aidp.app.changes import compile_change
from aidp.config import load_settings
from aidp.exceptions import InputError
from aidp.model.loader import load_plan
from aidp.specs import load_project
from aidp.specs.bridge import change_of_workstream, change_to_workstreams
from tests.conftest import Cli, git, init_repo
from tests.specs.corpus import LOGIN, proposal, spec

DELTA = """## ADDED Requirements
### Requirement: Two factor
The system SHALL ask for a code.

#### Scenario: Code ok
- **WHEN** the code is right
- **THEN** the session starts

#### Scenario: Code wrong
- **WHEN** the code is wrong
- **THEN** the session does not start
"""
TASKS = ("## 1. Backend\n- [x] 1.1 Add the table\n- [ ] 1.2 Ask for the code (Two factor)\n"
         "- [ ] 1.3 Store the secret\n## 2. Frontend\n- [ ] 2.1 Show the code form\n"
         "## 3. Docs\n- [ ] 3.1 Write the guide\n")
PROOF = '''import pytest


@pytest.mark.spec("spec://auth/Two factor#Code ok")
def test_code_ok():
    assert True


def test_code_wrong():
    """Proves spec://auth/Two%20factor#Code%20wrong@add-2fa."""
    assert True
'''


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A repository with a spec, a change of one requirement and three tasks.md sections, and
    two tests proving the change's scenarios."""
    return init_repo(tmp_path / "repo", {
        "openspec/specs/auth/spec.md": spec("auth", LOGIN),
        "openspec/changes/add-2fa/proposal.md": proposal("Add 2FA"),
        "openspec/changes/add-2fa/tasks.md": TASKS,
        "openspec/changes/add-2fa/specs/auth/spec.md": DELTA,
        "tests/test_2fa.py": PROOF,
        "pytest.ini": "[pytest]\nmarkers =\n    spec(uri): the scenario this test proves\n",
        "aidp.toml": f'[specs]\ntest_command = "{sys.executable} -m pytest -q"\n'
                     'checks = ["true"]\n',
    })


def _compiled(root: Path, tmp_path: Path, split: str | None) -> dict[str, Any]:
    path = compile_change(root, load_settings(root), "add-2fa", "shell", into=tmp_path / "out",
                          split=split)
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict)
    return document


def test_sections_become_chained_workstreams(root: Path, tmp_path: Path) -> None:
    """split=sections: one workstream per numbered section, id <change>-<n>, each depending on
    the previous one; steps chained inside a section only; sync ids stay task-<number>."""
    document = _compiled(root, tmp_path, "sections")
    workstreams = document["workstreams"]
    assert [(w["id"], w.get("depends_on"), [(s["id"], s.get("depends_on")) for s in w["steps"]])
            for w in workstreams] == [
        ("add-2fa-1", None, [("task-1.2", None), ("task-1.3", ["task-1.2"])]),
        ("add-2fa-2", ["add-2fa-1"], [("task-2.1", None)]),
        ("add-2fa-3", ["add-2fa-2"], [("task-3.1", None)])]
    assert workstreams[1]["title"] == "Add 2FA -- section 2"
    for workstream in workstreams:
        for step in workstream["steps"]:
            step["run"] = "true"
    target = root / "ws.yaml"
    target.write_text(yaml.safe_dump(document))
    assert load_plan([target], repo=root).step_count == 4


def test_split_change_keeps_one_workstream(root: Path, tmp_path: Path) -> None:
    """The default (split=change) is one workstream named after the change, as before."""
    (workstream,) = _compiled(root, tmp_path, None)["workstreams"]
    assert workstream["id"] == "add-2fa" and "depends_on" not in workstream
    assert [s["id"] for s in workstream["steps"]] == ["task-1.2", "task-1.3", "task-2.1",
                                                      "task-3.1"]


def test_tagged_tests_become_the_steps_check(root: Path, tmp_path: Path) -> None:
    """A step whose requirement has tagged scenarios gets `<test_command> <node ids>` after
    [specs] checks, and its prompt says which test proves which scenario."""
    document = _compiled(root, tmp_path, "sections")
    steps = {s["id"]: s for w in document["workstreams"] for s in w["steps"]}
    command = (f"{sys.executable} -m pytest -q tests/test_2fa.py::test_code_ok "
               "tests/test_2fa.py::test_code_wrong")
    assert steps["task-1.2"]["checks"] == ["true", command]
    prompt = steps["task-1.2"]["prompt"]
    assert "- auth/Two factor#Code ok: tests/test_2fa.py::test_code_ok" in prompt
    assert "- auth/Two factor#Code wrong: tests/test_2fa.py::test_code_wrong" in prompt
    assert steps["task-3.1"]["checks"] == ["true", command]  # names no requirement: all of them


def test_untagged_change_gets_only_configured_checks(root: Path) -> None:
    """Without tagged tests, steps carry [specs] checks only and no test lines."""
    document = change_to_workstreams(load_project(root), "add-2fa", checks=["make lint"])
    step = document["workstreams"][0]["steps"][0]
    assert step["checks"] == ["make lint"] and "Tests that prove" not in step["prompt"]


def test_split_from_settings(root: Path, tmp_path: Path) -> None:
    """[specs] split = "sections" is the default of compile_change; an explicit split wins."""
    config = root / "aidp.toml"
    config.write_text(config.read_text() + 'split = "sections"\n')
    assert len(_compiled(root, tmp_path, None)["workstreams"]) == 3
    assert len(_compiled(root, tmp_path, "change")["workstreams"]) == 1


def test_plan_split_sections_shows_waves(root: Path) -> None:
    """`aidp plan --change X --split sections`: the sections are successive waves."""
    cli = Cli(root)
    result = cli("plan", "--change", "add-2fa", "--split", "sections", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["waves"] == [["add-2fa-1"], ["add-2fa-2"], ["add-2fa-3"]]
    assert summary["critical_path"] == ["add-2fa-1", "add-2fa-2", "add-2fa-3"]
    text = cli("plan", "--change", "add-2fa", "--split", "sections")
    assert text.returncode == 0 and "add-2fa-3" in text.stdout and "3 waves" in text.stdout
    assert not (root / ".aidp" / "changes").exists()  # plan writes nothing


def test_plan_bad_split_input_exits_2(root: Path) -> None:
    """--split without --change, or an unknown split, is bad input (exit 2, no traceback)."""
    cli = Cli(root)
    alone = cli("plan", "ws.yaml", "--split", "sections")
    assert alone.returncode == 2 and "--split needs --change" in alone.stderr
    unknown = cli("plan", "--change", "add-2fa", "--split", "tasks")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr


def test_bad_tag_stops_compilation_naming_file_and_line(root: Path) -> None:
    """A tag naming no known scenario makes `aidp plan --change` fail before anything runs."""
    (root / "tests/test_typo.py").write_text('import pytest\n\n\n@pytest.mark.spec('
                                             '"spec://auth/Two factor#Code okay")\n'
                                             'def test_x():\n    pass\n')
    result = Cli(root)("plan", "--change", "add-2fa")
    assert result.returncode == 2
    assert result.stderr.startswith("error: tests/test_typo.py:4:")
    assert "Traceback" not in result.stderr
    with pytest.raises(InputError):
        compile_change(root, load_settings(root), "add-2fa", None, into=root / "out")


@pytest.mark.parametrize("ws_id,expected", [
    ("add-2fa", "add-2fa"), ("add-2fa-3", "add-2fa"), ("add-2fa-x", None), ("other-1", None),
], ids=["change", "section", "not-a-number", "unknown"])
def test_section_workstreams_map_back_to_their_change(ws_id: str, expected: str | None) -> None:
    """A section workstream id leads back to its change (what `aidp specs sync` needs)."""
    assert change_of_workstream(ws_id, ["add-2fa"]) == expected


@pytest.mark.parametrize("proof,status,code", [("assert True", "completed", 0),
                                               ("assert False", "failed", 1)],
                         ids=["proof-passes", "proof-fails"])
def test_compiled_check_runs_the_proving_tests(root: Path, tmp_path: Path, proof: str,
                                               status: str, code: int) -> None:
    """`aidp run` of a compiled section plan runs the tagged tests as the step's check: the
    step completes when they pass and fails when one fails."""
    (root / "tests/test_2fa.py").write_text(PROOF.replace("assert True\n\n\ndef",
                                                          f"{proof}\n\n\ndef"))
    git(root, "add", "-A")
    git(root, "commit", "-q", "--allow-empty", "-m", "proof")
    document = _compiled(root, tmp_path, "sections")
    first = document["workstreams"][0]
    first["steps"] = first["steps"][:1]
    first["steps"][0]["run"] = "true"
    first["steps"][0]["retry"] = {"max_attempts": 1}
    document["workstreams"] = [first]
    (root / "ws.yaml").write_text(yaml.safe_dump(document))
    result = Cli(root)("run", "ws.yaml", "--json", timeout=60)
    summary = json.loads(result.stdout)
    assert (result.returncode, summary["status"]) == (code, status), result.stderr
