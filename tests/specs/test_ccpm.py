"""CCPM epics: task files read with stable keys, mapped onto workstreams, bad input located."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aidp.exceptions import ValidationError
from aidp.model.loader import load_plan
from aidp.specs.ccpm import epic_to_workstreams, find_epic, load_epic
from tests.conftest import Cli

EPIC = "---\nname: auth\nstatus: in-progress\nprogress: 20%\n---\n# Epic: auth\n"


def task(name: str, status: str = "open", depends: str = "[]", parallel: str = "true",
         github: int | None = None, conflicts: str | None = None) -> str:
    lines = ["---", f"name: {name}", f"status: {status}", f"depends_on: {depends}",
             f"parallel: {parallel}"]
    if github is not None:
        lines.append(f"github: https://github.com/acme/app/issues/{github}")
    if conflicts is not None:
        lines.append(f"conflicts_with: {conflicts}")
    lines += ["---", f"## Description\nDo {name}.", "## Acceptance Criteria",
              "- [ ] it works", "- [x] it is fast", ""]
    return "\n".join(lines)


def make_epic(root: Path, files: dict[str, str]) -> Path:
    directory = root / ".claude" / "epics" / "auth"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "epic.md").write_text(EPIC)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


BEFORE_SYNC = {"001.md": task("Add table", status="closed"),
               "002.md": task("Login endpoint", depends="[1]", conflicts="[3]"),
               "003.md": task("Logout endpoint", depends="[2]"),
               "004.md": task("Docs", parallel="false")}
AFTER_SYNC = {"101.md": task("Add table", status="closed", github=101),
              "102.md": task("Login endpoint", depends="[101]", github=102, conflicts="[103]"),
              "103.md": task("Logout endpoint", depends="[102]", github=103),
              "104.md": task("Docs", parallel="false", github=104)}


@pytest.mark.parametrize("files", [BEFORE_SYNC, AFTER_SYNC], ids=["before-sync", "after-sync"])
def test_tasks_map_onto_workstreams(tmp_path: Path, files: dict[str, str]) -> None:
    """Open tasks become workstreams keyed by name (stable across the sync's renames):
    depends_on and conflicts_with map over, closed dependencies count as met, and
    parallel: false conflicts with every other open task."""
    epic = load_epic(make_epic(tmp_path, files), tmp_path)
    document = epic_to_workstreams(epic)
    shape = {w["id"]: (w.get("depends_on", []), w.get("conflicts_with", []))
             for w in document["workstreams"]}
    assert shape == {
        "login-endpoint": ([], ["docs", "logout-endpoint"]),
        "logout-endpoint": (["login-endpoint"], ["docs"]),
        "docs": ([], ["login-endpoint", "logout-endpoint"]),
    }
    login = next(w for w in document["workstreams"] if w["id"] == "login-endpoint")
    assert "- [ ] it works" in login["steps"][0]["prompt"]
    (task_102,) = [t for t in epic.tasks if t.name == "Login endpoint"]
    assert task_102.acceptance == (("it works", False), ("it is fast", True))


def test_generated_epic_plan_loads(tmp_path: Path) -> None:
    """The workstream file of an epic passes aidp's loader (DAG, conflicts, ids)."""
    document = epic_to_workstreams(load_epic(make_epic(tmp_path, BEFORE_SYNC), tmp_path))
    target = tmp_path / "ws.yaml"
    target.write_text(yaml.safe_dump(document))
    assert len(load_plan([target], repo=tmp_path).workstreams) == 3


@pytest.mark.parametrize("text,message,line", [
    ("no front matter\n", "no YAML front matter", 1),
    ("---\nname: x\n", "not closed", 1),
    ("---\nname: [x\n---\n", "not valid YAML", 2),
    ("---\nstatus: open\n---\n", "task has no name", 2),
    ("---\nname: x\ndepends_on: [9]\n---\n", "depends_on: no task 9", 3),
    ("---\nname: x\ndepends_on: [abc]\n---\n", "'abc' is not a task number", 3),
], ids=["no-front-matter", "unclosed", "bad-yaml", "no-name", "unknown-dep", "bad-number"])
def test_bad_task_files_name_file_and_line(tmp_path: Path, text: str, message: str,
                                           line: int) -> None:
    """A broken task file is a ValidationError whose problem names file and line."""
    with pytest.raises(ValidationError) as caught:
        load_epic(make_epic(tmp_path, {"005.md": text}), tmp_path)
    problem = caught.value.problems[0]
    assert problem.file == ".claude/epics/auth/005.md" and problem.line == line
    assert message in problem.message


def test_find_epic_by_name_or_path(tmp_path: Path) -> None:
    """An epic is found by name under .claude/epics/, in archived/, or by its path."""
    directory = make_epic(tmp_path, BEFORE_SYNC)
    assert find_epic(tmp_path, "auth") == directory
    assert find_epic(tmp_path, str(directory)) == directory


def test_cli_epic_reports_problems_in_one_line_each(tmp_path: Path) -> None:
    """aidp specs epic on a broken epic: every problem as file:line: [id] message, exit 2."""
    make_epic(tmp_path, {**BEFORE_SYNC, "009.md": "---\nname: y\ndepends_on: [42]\n---\n"})
    proc = Cli(tmp_path)("specs", "epic", "auth", timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[0] == (".claude/epics/auth/009.md:3: [y] depends_on: no task "
                                           "42 in this epic")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_task_parser_never_crashes(tmp_path: Path, text: str) -> None:
    """Any task file text loads or is a ValidationError, never another exception."""
    try:
        load_epic(make_epic(tmp_path, {"007.md": "---\n" + text}), tmp_path)
    except ValidationError:
        pass


def test_declared_scopes_allow_parallel_tasks(tmp_path: Path) -> None:
    """Tasks with disjoint scope globs stay parallel, and a parallel: true task without scope
    runs beside them (its overlap is accepted: scope_overlap: allow)."""
    files = {"001.md": task("Api").replace("parallel: true", "parallel: true\nscope: [src/api/**]"),
             "002.md": task("Web").replace("parallel: true", "parallel: true\nfiles: [web/**]"),
             "003.md": task("Misc")}
    document = epic_to_workstreams(load_epic(make_epic(tmp_path, files), tmp_path))
    shape = {w["id"]: (w.get("scope"), w.get("conflicts_with", []))
             for w in document["workstreams"]}
    assert shape == {"api": (["src/api/**"], []), "web": (["web/**"], []), "misc": (None, [])}
    target = tmp_path / "ws.yaml"
    target.write_text(yaml.safe_dump(document))
    assert len(load_plan([target], repo=tmp_path).workstreams) == 3
