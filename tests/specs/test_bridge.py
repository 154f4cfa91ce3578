"""Change -> workstreams: tasks become chained steps whose prompts carry requirements."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from aidp.exceptions import NotFoundError
from aidp.model.loader import load_plan
from aidp.specs import load_project
from aidp.specs.bridge import change_to_workstreams, step_id
from tests.conftest import Cli, git, init_repo
from tests.specs.corpus import ADD_OK, LOGIN, proposal, spec

TWO_REQS = ADD_OK + ("\n### Requirement: Recovery codes\nThe system SHALL issue ten recovery "
                     "codes.\n\n#### Scenario: Codes shown once\n- **WHEN** 2FA is enabled\n"
                     "- **THEN** ten codes are shown once\n")
TASKS = ("## 1. Implementation\n- [x] 1.1 Add the table\n- [ ] 1.2 Ask for the code (Two "
         "factor)\n- [ ] 1.3 Generate Recovery codes\n## 2. Docs\n- [ ] 2.1 Write the guide\n")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A git repository with one spec and a change of two requirements and four tasks."""
    return init_repo(tmp_path / "repo", {
        "openspec/specs/auth/spec.md": spec("auth", LOGIN),
        "openspec/changes/add-2fa/proposal.md": proposal("Add 2FA"),
        "openspec/changes/add-2fa/tasks.md": TASKS,
        "openspec/changes/add-2fa/specs/auth/spec.md": TWO_REQS,
    })


def test_open_tasks_become_chained_steps(root: Path) -> None:
    """Each unticked task is a step depending on the previous one; ticked ones are left out."""
    document = change_to_workstreams(load_project(root), "add-2fa")
    (workstream,) = document["workstreams"]
    assert workstream["id"] == "add-2fa" and workstream["title"] == "Add 2FA"
    assert [(s["id"], s.get("depends_on")) for s in workstream["steps"]] == [
        ("task-1.2", None), ("task-1.3", ["task-1.2"]), ("task-2.1", ["task-1.3"])]
    assert all(s["tool"] == "manual" for s in workstream["steps"])


def test_prompts_carry_requirement_text_and_scenarios(root: Path) -> None:
    """A task naming a requirement gets that requirement (text and scenarios); a task naming
    none gets every requirement of the change."""
    steps = change_to_workstreams(load_project(root), "add-2fa")["workstreams"][0]["steps"]
    ask, recovery, guide = (s["prompt"] for s in steps)
    assert "### auth/Two factor (ADDED)\nThe system SHALL ask for a code." in ask
    assert "#### Scenario: Code ok\n- **WHEN** the code is right" in ask
    assert "Recovery codes" not in ask.split("Task:")[1].split("Requirements")[1]
    assert "#### Scenario: Codes shown once" in recovery and "Two factor (ADDED)" not in recovery
    assert "auth/Two factor" in guide and "auth/Recovery codes" in guide
    assert "Why:\nBecause the current behaviour" in guide


def test_no_tasks_means_one_step_per_delta(root: Path) -> None:
    """Without tasks.md, every requirement delta is a step of its own."""
    (root / "openspec/changes/add-2fa/tasks.md").unlink()
    steps = change_to_workstreams(load_project(root), "add-2fa")["workstreams"][0]["steps"]
    assert [s["id"] for s in steps] == ["added-Two-factor", "added-Recovery-codes"]


def test_generated_file_is_a_valid_plan(root: Path, tmp_path: Path) -> None:
    """The generated document passes aidp's workstream loader (ids, paths, DAG)."""
    document = change_to_workstreams(load_project(root), "add-2fa", tool="shell",
                                     checks=["true"])
    for step in document["workstreams"][0]["steps"]:
        step["run"] = "true"
    target = root / "ws.yaml"
    target.write_text(yaml.safe_dump(document))
    plan = load_plan([target], repo=root)
    assert plan.step_count == 3


@pytest.mark.parametrize("raw,expected", [("task-1.2", "task-1.2"), ("Two factor", "Two-factor"),
                                          ("--x--", "x"), ("ü", "step"), ("a" * 80, "a" * 56)],
                         ids=["dotted", "space", "dashes", "non-ascii", "long"])
def test_step_ids_fit_the_workstream_format(raw: str, expected: str) -> None:
    """Step ids are sanitised to the workstream id pattern."""
    assert step_id(raw, set()) == expected


def test_unknown_change_is_not_found(root: Path) -> None:
    """Planning a change that is not active is NotFoundError."""
    with pytest.raises(NotFoundError):
        change_to_workstreams(load_project(root), "nope")


def test_plan_then_run_end_to_end(root: Path) -> None:
    """aidp specs plan -o FILE, then aidp run FILE: every task step runs and checkpoints."""
    aidp = Cli(root)

    made = aidp("specs", "plan", "add-2fa", "-o", "ws.yaml", "--tool", "shell", "--run",
                "echo {step} >> done.txt")
    assert made.returncode == 0, made.stderr
    git(root, "add", "ws.yaml")
    git(root, "commit", "-qm", "plan")
    ran = aidp("run", "ws.yaml", "--json")
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    assert summary["status"] == "completed"
