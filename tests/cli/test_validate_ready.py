"""``aidp validate`` / ``plan`` report what ``aidp run`` would refuse (tool profiles,
capabilities, escalation profiles, environment variables, checked-out merge targets), located at
the step's line; ``aidp run`` refuses the same before it writes anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import Cli, git, init_repo

UNSET = "AIDP_TEST_SURELY_UNSET_VARIABLE"


def _repo(tmp_path: Path, text: str, **files: str) -> Path:
    return init_repo(tmp_path / "repo", {"plans/w.yaml": text, **files})


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


def _problems(cli: Cli, *args: str) -> list[dict[str, object]]:
    done = cli(*args, "--json")
    assert done.returncode == 2, (done.stdout, done.stderr)
    problems: list[dict[str, object]] = json.loads(done.stdout)["problems"]
    return problems


TOOL = """\
version: 1
workstreams:
  - id: w
    steps:
      - id: ok
        run: "true"
      - id: s
        depends_on: [ok]
        tool: nope
        prompt: hi
"""


def test_validate_reports_an_unknown_tool_profile_at_the_step(tmp_path: Path) -> None:
    """Rule: a step's tool must be a profile of aidp.toml (or built in); reported at its line."""
    repo = _repo(tmp_path, TOOL)
    problems = _problems(Cli(repo, in_process=True), "validate", "plans")
    assert [(p["file"], p["line"], p["id"], p["code"]) for p in problems] == [
        ("plans/w.yaml", _line(TOOL, "tool: nope"), "w/s", "unknown-tool")]
    assert "'nope'" in str(problems[0]["message"])
    toml = '[tools.nope]\nadapter = "shell"\ncommand = "true"\n'
    (repo / "aidp.toml").write_text(toml, encoding="utf-8")
    done = Cli(repo, in_process=True)("validate", "plans")
    assert done.returncode == 0, done.stderr


ESCALATE = """\
version: 1
workstreams:
  - id: w
    steps:
      - id: s
        run: "true"
        fix: {max: 1, escalate: [manual, nope]}
"""


def test_validate_and_plan_report_an_unknown_escalate_profile(tmp_path: Path) -> None:
    """Rule: every fix.escalate name must be a tool profile; validate and plan both exit 2."""
    repo = _repo(tmp_path, ESCALATE)
    cli = Cli(repo, in_process=True)
    for command in ("validate", "plan"):
        problems = _problems(cli, command, "plans/w.yaml")
        assert [(p["line"], p["id"]) for p in problems] == [(_line(ESCALATE, "fix:"), "w/s")]
        assert "escalate" in str(problems[0]["message"])
        assert "'nope'" in str(problems[0]["message"])


ENV = f"""\
version: 1
workstreams:
  - id: w
    steps:
      - id: s
        run: "true"
        env: [{UNSET}]
"""


def test_validate_reports_an_unset_env_variable_unless_offline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule: declared environment variables must be set (not checked with --offline)."""
    monkeypatch.delenv(UNSET, raising=False)
    repo = _repo(tmp_path, ENV)
    done = Cli(repo, in_process=True)("validate", "plans")
    assert done.returncode == 2
    assert f"plans/w.yaml:{_line(ENV, 'env:')}: [w/s] environment variable {UNSET}" \
        in done.stderr
    offline = Cli(repo, in_process=True)("validate", "--offline", "plans")
    assert offline.returncode == 0, offline.stderr


CAPABILITY = """\
version: 1
workstreams:
  - id: w
    steps:
      - id: s
        capability: review
        prompt: hi
"""


def test_validate_reports_an_unoffered_capability_and_reads_config(tmp_path: Path) -> None:
    """Rule: a step's capability must be offered by a profile of aidp.toml (or --config)."""
    repo = _repo(tmp_path, CAPABILITY)
    cli = Cli(repo, in_process=True)
    problems = _problems(cli, "validate", "plans", "--offline")
    assert [(p["line"], p["id"], p["code"]) for p in problems] == [
        (_line(CAPABILITY, "capability:"), "w/s", "unknown-capability")]
    other = tmp_path / "other.toml"
    other.write_text('[tools.rev]\nadapter = "manual"\ncapabilities = ["review"]\n',
                     encoding="utf-8")
    done = cli("validate", "plans", "--config", str(other))
    assert done.returncode == 0, done.stderr
    (repo / "aidp.toml").write_text(other.read_text(encoding="utf-8"), encoding="utf-8")
    assert cli("validate", "plans").returncode == 0


MERGE = """\
version: 1
workstreams:
  - id: w
    merge: {into: TARGET}
    steps: [{id: s, run: "true"}]
"""


def test_validate_refuses_a_merge_target_checked_out_in_any_worktree(tmp_path: Path) -> None:
    """Rule: a merge target checked out in any worktree (main one or added) is refused."""
    repo = _repo(tmp_path, MERGE.replace("TARGET", "main"))
    cli = Cli(repo, in_process=True)
    problems = _problems(cli, "validate", "plans")
    assert [(p["line"], p["id"], p["code"]) for p in problems] == [
        (_line(MERGE, "merge:"), "w", "merge-target-checked-out")]
    git(repo, "worktree", "add", "-q", "-b", "integration", str(tmp_path / "other"))
    (repo / "plans" / "w.yaml").write_text(MERGE.replace("TARGET", "integration"))
    problems = _problems(cli, "validate", "plans")
    assert str(tmp_path / "other") in str(problems[0]["message"])
    (repo / "plans" / "w.yaml").write_text(MERGE.replace("TARGET", "release"))
    assert cli("validate", "plans").returncode == 0


def test_run_refuses_before_creating_anything(tmp_path: Path) -> None:
    """Rule: run refuses validate's problems before any branch or run row exists."""
    text = CAPABILITY + """\
  - id: m
    depends_on: [w]
    merge: {into: main}
    steps: [{id: s, run: "true"}]
"""
    repo = _repo(tmp_path, text)
    done = Cli(repo, in_process=True)("run", "plans/w.yaml")
    assert done.returncode == 2
    assert f"plans/w.yaml:{_line(text, 'capability:')}: [w/s] no tool profile" in done.stderr
    assert f"plans/w.yaml:{_line(text, 'merge:')}: [m] merge target 'main'" in done.stderr
    assert git(repo, "branch", "--list", "aidp/*") == ""
    assert not (repo / ".aidp" / "aidp.db").exists()


GUIDE = """\
version: 1
workstreams:
  - id: docs
    scope: ["docs/**"]
    steps: [{id: draft, run: "mkdir -p docs && echo guide > docs/guide.md"}]
"""


def test_the_tour_and_a_user_file_reusing_an_example_id(tmp_path: Path) -> None:
    """Rule: files given together form one plan; a duplicate id across files names both files
    and suggests validating one file; the README tour works as written."""
    repo = init_repo(tmp_path / "repo")
    cli = Cli(repo, in_process=True)
    assert cli("init").returncode == 0
    assert cli("validate", "workstreams/").returncode == 0
    assert cli("plan", "workstreams/example.yaml").returncode == 0
    ran = cli("run", "workstreams/example.yaml")
    assert ran.returncode == 0, (ran.stdout, ran.stderr)
    (repo / "workstreams" / "guide.yaml").write_text(GUIDE, encoding="utf-8")
    done = cli("validate", "workstreams/")
    assert done.returncode == 2
    assert ("workstreams/guide.yaml:3: [docs] duplicate workstream id 'docs' (first at "
            "workstreams/example.yaml:5); the files given together form one plan: rename one, "
            "or validate and run one file at a time (aidp validate workstreams/guide.yaml)"
            ) in done.stderr
    assert cli("validate", "workstreams/guide.yaml").returncode == 0


def test_validate_reports_a_path_the_system_refuses(tmp_path: Path) -> None:
    """A file name too long for the file system is a located problem (exit 2), not a
    traceback."""
    cli = Cli(init_repo(tmp_path / "repo"))
    result = cli("validate", "x" * 5000 + ".yaml", "--json")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    problem = json.loads(result.stdout)["problems"][0]
    assert problem["code"] == "unreadable" and "too long" in problem["message"]
