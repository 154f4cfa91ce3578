"""``aidp validate`` and ``aidp plan``, in process (CliRunner) and via the installed script."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import Cli, init_repo
from tests.model._helpers import assert_untouched

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "schema"

GOOD = """\
version: 1
workstreams:
  - id: core
    scope: [src/core/**]
    steps:
      - {id: edit, run: "true"}
      - {id: test, depends_on: [edit], run: "true"}
  - id: ui
    scope: [src/ui/**]
    conflicts_with: [docs]
    steps: [{id: edit, run: "true"}]
  - id: docs
    scope: [docs/**]
    steps: [{id: write, run: "true"}]
  - id: ship
    depends_on: [core, ui]
    scope: [CHANGELOG.md]
    steps: [{id: tag, run: "echo {run_id}"}]
"""

BAD = """\
version: 1
workstreams:
  - id: a
    depends_on: [ghost]
    steps: [{id: s, run: "echo {nope}"}]
"""


def test_validate_ok_counts(tmp_path: Path) -> None:
    """validate prints the counts of workstreams, steps and files and exits 0."""
    repo = init_repo(tmp_path / "repo", {"plans/good.yaml": GOOD})
    done = Cli(repo)("validate", "plans")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok: 4 workstreams, 5 steps in 1 files"
    assert_untouched(repo)


def test_validate_json_ok(tmp_path: Path) -> None:
    """validate --json prints ok, workstreams and steps."""
    (tmp_path / "good.yaml").write_text(GOOD, encoding="utf-8")
    result = Cli(tmp_path, in_process=True)("validate", "--json", str(tmp_path / "good.yaml"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"ok": True, "workstreams": 4, "steps": 5}


def test_validate_prints_every_problem(tmp_path: Path) -> None:
    """Each problem is one file:line: [id] message line on stderr; the exit code is 2."""
    repo = init_repo(tmp_path / "repo", {"bad.yaml": BAD})
    done = Cli(repo, in_process=True)("validate", "bad.yaml")
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert "bad.yaml:4: [a] depends on unknown workstream 'ghost'" in lines
    assert any(line.startswith("bad.yaml:5: [a/s] unknown placeholder {nope}") for line in lines)
    assert done.stdout == ""
    assert_untouched(repo)


def test_plan_json(tmp_path: Path) -> None:
    """plan --json prints the analysis: waves, critical path, parallelism, step orders."""
    repo = init_repo(tmp_path / "repo", {"good.yaml": GOOD})
    done = Cli(repo, in_process=True)("plan", "--json", "good.yaml")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["ok"] is True
    assert data["waves"] == [["core", "ui", "docs"], ["ship"]]
    assert data["critical_path"] == ["core", "ship"]
    assert data["critical_steps"] == 3
    assert data["max_parallelism"] == 2
    assert data["step_orders"]["core"] == ["edit", "test"]
    assert_untouched(repo)


def test_plan_human_output(tmp_path: Path) -> None:
    """plan shows each wave's workstreams with their steps, the critical path and parallelism."""
    (tmp_path / "good.yaml").write_text(GOOD, encoding="utf-8")
    result = Cli(tmp_path, in_process=True)("plan", str(tmp_path / "good.yaml"))
    assert result.returncode == 0, result.stderr
    assert "edit -> test" in result.stdout
    assert "critical path: core -> ship (3 steps)" in result.stdout
    assert "max useful parallelism: 2" in result.stdout


def test_plan_problems_as_json(tmp_path: Path) -> None:
    """plan --json on a bad file prints ok: false with the problems, exit code 2."""
    (tmp_path / "bad.yaml").write_text(BAD, encoding="utf-8")
    result = Cli(tmp_path, in_process=True)("plan", "--json", str(tmp_path / "bad.yaml"))
    assert result.returncode == 2
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert {p["code"] for p in data["problems"]} == {"unknown-dependency", "placeholder"}


def test_repo_option_bounds_paths(tmp_path: Path) -> None:
    """--repo sets the root that scopes must stay inside (symlinks followed)."""
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "out").symlink_to(tmp_path)
    plan = tmp_path / "repo" / "p.yaml"
    plan.write_text(
        "version: 1\nworkstreams:\n  - id: a\n    scope: [out/**]\n"
        "    steps: [{id: s, run: 'true'}]\n",
        encoding="utf-8",
    )
    result = Cli(tmp_path, in_process=True)("validate", "--repo", str(tmp_path / "repo"), str(plan))
    assert result.returncode == 2
    assert "outside the repository" in result.stderr


def test_outside_a_repository_skips_the_repo_check(tmp_path: Path) -> None:
    """Without --repo and outside git, paths are checked lexically only."""
    plan = tmp_path / "p.yaml"
    plan.write_text(GOOD, encoding="utf-8")
    done = Cli(tmp_path)("validate", "p.yaml")
    assert done.returncode == 0, done.stderr


def test_examples_validate(tmp_path: Path) -> None:
    """The committed examples validate with the CLI (--offline: their env variables are
    not set here)."""
    result = Cli(tmp_path, in_process=True)("validate", "--offline", str(EXAMPLES))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: ")
