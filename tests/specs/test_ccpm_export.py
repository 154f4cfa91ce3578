"""CCPM export: a plan written as an epic imports back as the same DAG; nothing is overwritten."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from aidp.exceptions import InputError
from aidp.model.loader import load_plan
from aidp.specs.ccpm import epic_to_workstreams, find_epic, load_epic
from aidp.specs.ccpm_export import plan_to_epic, write_epic
from tests.conftest import Cli

# schema -> api -> release (a chain), ui -> release (fan-in), api <-> docs (a conflict pair).
PLAN = """\
version: 1
workstreams:
  - id: schema
    title: "Add schema: users"
    scope: ["db/**"]
    steps:
      - id: create
        tool: manual
        prompt: Create the users table.
        checks: ["test -f db/users.sql"]
  - id: api
    depends_on: [schema]
    conflicts_with: [docs]
    scope: ["api/**"]
    steps:
      - {id: stub, run: "echo stub"}
      - {id: write, tool: manual, prompt: Write the endpoint., depends_on: [stub],
         checks: [{name: lint, run: "ruff check api"}]}
  - id: docs
    scope: ["docs/**"]
    steps: [{id: write, tool: manual, prompt: Document it.}]
  - id: ui
    title: User interface
    scope: ["ui/**"]
    steps: [{id: build, tool: manual, prompt: Build the UI.}]
  - id: release
    depends_on: [api, ui]
    scope: ["CHANGELOG.md"]
    steps: [{id: tag, tool: manual, prompt: Tag it.}]
"""


def _shape(workstreams: list[dict[str, object]] | list[object], ids: list[str]) -> dict:
    """Edges and conflicts keyed by plan position, so renamed ids compare equal."""
    position = {ws_id: i for i, ws_id in enumerate(ids)}
    depends = {(position[d], i) for i, ws in enumerate(workstreams)
               for d in _field(ws, "depends_on")}
    conflicts = {frozenset((i, position[c])) for i, ws in enumerate(workstreams)
                 for c in _field(ws, "conflicts_with")}
    return {"depends": depends, "conflicts": conflicts}


def _field(ws: object, name: str) -> list[str]:
    return list(ws.get(name, [])) if isinstance(ws, dict) else list(getattr(ws, name))


def _plan_json(cli: Cli, file: str) -> dict:
    result = cli("plan", "--json", file, "--repo", str(cli.cwd), check=True)
    return json.loads(result.stdout)


@pytest.fixture
def exported(cli: Cli) -> Cli:
    (cli.cwd / "plan.yaml").write_text(PLAN)
    result = cli("specs", "export-epic", "demo", "plan.yaml", check=True)
    assert result.stdout.strip() == "wrote .claude/epics/demo/: epic.md and 5 tasks"
    return cli


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_round_trip_keeps_the_dag(exported: Cli) -> None:
    """Export then import gives the same dependency edges (chain and fan-in), keeps the
    conflict pair, and `aidp plan` shows the same waves."""
    root = exported.cwd
    original = load_plan([root / "plan.yaml"], repo=root)
    directory = find_epic(root, "demo")
    epic = load_epic(directory, root)
    assert [t.number for t in epic.tasks] == ["1", "2", "3", "4", "5"]
    assert [t.name for t in epic.tasks] == ["Add schema: users", "api", "docs",
                                            "User interface", "release"]
    document = epic_to_workstreams(epic)
    back = document["workstreams"]
    original_ids = [ws.id for ws in original.workstreams]
    back_ids = [ws["id"] for ws in back]
    before = _shape(list(original.workstreams), original_ids)
    after = _shape(back, back_ids)
    assert after["depends"] == before["depends"] == {(0, 1), (1, 4), (3, 4)}
    assert frozenset((1, 2)) in after["conflicts"]
    # parallel: false on a conflicting task serialises it against every other task on import
    assert after["conflicts"] >= before["conflicts"]

    (root / "back.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    rename = dict(zip(back_ids, original_ids, strict=True))
    waves_before = _plan_json(exported, "plan.yaml")["waves"]
    waves_after = [[rename[w] for w in wave] for wave in _plan_json(exported, "back.yaml")["waves"]]
    assert waves_after == waves_before == [["schema", "docs", "ui"], ["api"], ["release"]]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_existing_epic_is_not_overwritten(exported: Cli) -> None:
    """An existing epic directory without --force: exit 2, one line, files unchanged; --force
    replaces it."""
    directory = exported.cwd / ".claude" / "epics" / "demo"
    (directory / "006.md").write_text("stale task\n")
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    result = exported("specs", "export-epic", "demo", "plan.yaml")
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before

    exported("specs", "export-epic", "demo", "plan.yaml", "--force", check=True)
    assert sorted(p.name for p in directory.iterdir()) == \
        ["001.md", "002.md", "003.md", "004.md", "005.md", "epic.md"]


def test_task_files_follow_the_ccpm_format(repo: Path) -> None:
    """Task front matter carries CCPM's fields; acceptance criteria come from steps and checks."""
    (repo / "plan.yaml").write_text(PLAN)
    plan = load_plan([repo / "plan.yaml"], repo=repo)
    files = plan_to_epic(plan, "demo", now=datetime(2026, 11, 24, 18, 0, tzinfo=UTC))
    assert list(files) == ["epic.md", "001.md", "002.md", "003.md", "004.md", "005.md"]
    epic_meta = yaml.safe_load(files["epic.md"].split("---")[1])
    assert epic_meta["status"] == "backlog" and epic_meta["progress"] == "0%"
    assert epic_meta["prd"] == "" and epic_meta["github"] == ""
    assert "created: 2026-11-24T18:00:00Z" in files["epic.md"]
    api = yaml.safe_load(files["002.md"].split("---")[1])
    assert {k: api[k] for k in ("name", "status", "github", "depends_on", "parallel",
                                "conflicts_with", "scope")} == {
        "name": "api", "status": "open", "github": "", "depends_on": [1], "parallel": False,
        "conflicts_with": [3], "scope": ["api/**"]}
    assert "# Task: api" in files["002.md"] and "Write the endpoint." in files["002.md"]
    write_epic(repo, "demo", files, force=False)
    task = load_epic(find_epic(repo, "demo"), repo).tasks[1]
    assert [text for text, _ in task.acceptance] == [
        "Step `stub` done", "Step `write` done", "lint: `ruff check api` passes"]
    assert yaml.safe_load(files["005.md"].split("---")[1])["parallel"] is True


@pytest.mark.parametrize("name", ["../out", "a/b", ".", ""], ids=["parent", "nested", "dot",
                                                                 "empty"])
def test_epic_name_must_be_one_directory(repo: Path, name: str) -> None:
    """A name that is not one plain directory name is refused before anything is written."""
    with pytest.raises(InputError):
        write_epic(repo, name, {"epic.md": "---\nname: x\n---\n"}, force=True)
    assert not (repo / ".claude").exists()
