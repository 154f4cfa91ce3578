"""CCPM epics as real projects write them: zero-padded task numbers, ``title:`` and a heading
above the front matter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aidp.exceptions import ValidationError
from aidp.model.yaml_tree import load_yaml
from aidp.specs.ccpm import epic_to_workstreams, load_epic
from tests.conftest import Cli
from tests.specs.test_ccpm import make_epic


def front(name: str, depends: str = "[]", parallel: str = "true", extra: str = "") -> str:
    return (f"---\nname: {name}\nstatus: open\ndepends_on: {depends}\nparallel: {parallel}\n"
            f"conflicts_with: []\n{extra}---\n## Description\nDo {name}.\n")


def nineteen(**overrides: str) -> dict[str, str]:
    """Tasks 001-019 named ``t1``..``t19``, no dependencies unless overridden."""
    files = {f"{n:03d}.md": front(f"t{n}") for n in range(1, 20)}
    files.update(overrides)
    return files


def shape(root: Path, files: dict[str, str]) -> dict[str, tuple[list[str], list[str]]]:
    document = epic_to_workstreams(load_epic(make_epic(root, files), root))
    return {w["id"]: (w.get("depends_on", []), w.get("conflicts_with", []))
            for w in document["workstreams"]}


@pytest.mark.parametrize("depends", [
    "[010, 012]",
    "\n  - 010\n  - 012",
    '["010", "012"]',
    "010, 012",
    '"010, 012"',
], ids=["flow", "block", "quoted-list", "scalar", "quoted-scalar"])
def test_zero_padded_task_numbers_are_decimal(tmp_path: Path, depends: str) -> None:
    """Task references are decimal digits: 010 is task 010, never octal 8, in any CCPM style."""
    files = nineteen(**{"011.md": front("t11", "[010]"),
                        "013.md": front("t13", depends),
                        "019.md": front("t19", "[018, 017]"),
                        "009.md": front("t9", "[008]")})
    got = shape(tmp_path, files)
    assert got["t11"][0] == ["t10"]
    assert got["t13"][0] == ["t10", "t12"]
    assert got["t19"][0] == ["t17", "t18"]
    assert got["t9"][0] == ["t8"]
    assert load_yaml("a: 010") == {"a": 8}  # the rest of aidp's YAML is unchanged


def test_bare_number_matches_a_zero_padded_task(tmp_path: Path) -> None:
    """A bare number (10) matches the task of that numeric value (010.md); an unknown one is
    an error naming file and line."""
    assert shape(tmp_path, nineteen(**{"014.md": front("t14", "[10, 3]")}))["t14"][0] == \
        ["t10", "t3"]
    with pytest.raises(ValidationError) as caught:
        load_epic(make_epic(tmp_path, {"020.md": front("t20", "[20, 21]")}), tmp_path)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line) == (".claude/epics/auth/020.md", 4)
    assert "depends_on: no task 21" in problem.message


def test_title_is_read_as_the_name_with_a_warning(tmp_path: Path) -> None:
    """A task with title: and no name: is read, its title as name, with a warning at that line."""
    text = front("x").replace("name: x", "title: Login form")
    epic = load_epic(make_epic(tmp_path, {"003.md": text}), tmp_path)
    assert [t.name for t in epic.tasks] == ["Login form"]
    (warning,) = epic.warnings
    assert (warning.file, warning.line) == (".claude/epics/auth/003.md", 2)
    assert "title:" in warning.message


def test_heading_above_front_matter_is_read_with_a_warning(tmp_path: Path) -> None:
    """A '# Task 00N' heading above the front matter is skipped with a warning; lines stay true."""
    text = "# Task 003\n\n" + front("login", "[9]")
    with pytest.raises(ValidationError) as caught:
        load_epic(make_epic(tmp_path, {"003.md": text}), tmp_path)
    assert caught.value.problems[0].line == 6  # depends_on, counted in the whole file
    text = "# Task 003\n\n" + front("login")
    epic = load_epic(make_epic(tmp_path, {"003.md": text}), tmp_path)
    assert [t.name for t in epic.tasks] == ["login"]
    (warning,) = epic.warnings
    assert (warning.file, warning.line) == (".claude/epics/auth/003.md", 1)
    assert "heading" in warning.message


def test_cli_prints_warnings_to_stderr(tmp_path: Path) -> None:
    """aidp specs epic prints each import warning as one stderr line and still compiles."""
    text = "# Task 003\n" + front("x").replace("name: x", "title: Login form")
    make_epic(tmp_path, {"003.md": text})
    proc = Cli(tmp_path)("specs", "epic", "auth", "-o", "ws.yaml", timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert len(lines) == 2 and all(".claude/epics/auth/003.md:" in line for line in lines)


def _planned(root: Path, files: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the workstream file ``aidp specs epic`` writes, ``aidp plan --json`` of it)."""
    make_epic(root, files)
    cli = Cli(root)
    compiled = cli("specs", "epic", "auth", "-o", "ws.yaml", "--tool", "shell", "--run", "true",
                   timeout=60)
    assert compiled.returncode == 0, compiled.stderr
    planned = cli("plan", "ws.yaml", "--json", timeout=60)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    return load_yaml((root / "ws.yaml").read_text()), json.loads(planned.stdout)


def test_parallel_tasks_without_scope_run_side_by_side(tmp_path: Path) -> None:
    """Three parallel: true tasks with conflicts_with: [] and no scope: aidp plan runs all three
    at once (scope stays '**', the overlap is accepted: clashing edits surface at merge)."""
    document, plan = _planned(tmp_path, {f"00{n}.md": front(f"t{n}") for n in (1, 2, 3)})
    assert plan["max_parallelism"] == 3 and plan["waves"] == [["t1", "t2", "t3"]]
    for ws in document["workstreams"]:
        assert "conflicts_with" not in ws and "scope" not in ws
        assert ws["scope_overlap"] == "allow"


def test_conflicts_with_and_parallel_false_still_serialize(tmp_path: Path) -> None:
    """A conflicts_with pair never runs together; a parallel: false task, and a task saying
    neither parallel: nor scope:, run beside nothing."""
    files = {"001.md": front("t1").replace("conflicts_with: []", "conflicts_with: [2]"),
             "002.md": front("t2"), "003.md": front("t3"), "004.md": front("t4")}
    document, plan = _planned(tmp_path, files)
    conflicts = {w["id"]: w.get("conflicts_with", []) for w in document["workstreams"]}
    assert conflicts["t1"] == ["t2"] and plan["max_parallelism"] == 3  # t1|t2, t3, t4

    files["003.md"] = front("t3", parallel="false")
    files["004.md"] = front("t4").replace("parallel: true\n", "")
    document, plan = _planned(tmp_path, files)
    conflicts = {w["id"]: w.get("conflicts_with", []) for w in document["workstreams"]}
    assert conflicts["t3"] == ["t1", "t2", "t4"] and conflicts["t4"] == ["t1", "t2", "t3"]
    assert plan["max_parallelism"] == 1  # t3 and t4 run alone, t1 and t2 not together


def test_declared_overlapping_scopes_are_still_refused(tmp_path: Path) -> None:
    """Tasks that name their files are checked like any workstream: overlapping globs of two
    parallel tasks are a scope-conflict naming the task, not silently run together."""
    extra = "scope: [src/**]\n"
    files = {"001.md": front("t1", extra=extra), "002.md": front("t2", extra=extra)}
    make_epic(tmp_path, files)
    cli = Cli(tmp_path)
    assert cli("specs", "epic", "auth", "-o", "ws.yaml", timeout=60).returncode == 0
    proc = cli("validate", "ws.yaml", timeout=60)
    assert proc.returncode == 2 and "scope overlaps workstream 't1'" in proc.stdout + proc.stderr
