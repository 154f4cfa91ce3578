"""Merges are visible: the run's progress lines, its summary and ``--json`` say what landed
where, and a squash that changed nothing says so."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Cli, git
from tests.engine.test_run import plan_file

PLAN = """
version: 1
workstreams:
  - id: a
    scope: ["a/**"]
    merge: {into: integration, strategy: squash}
    steps: [{id: s, run: "mkdir -p a && echo a > a/f"}]
  - id: b
    scope: ["x.txt"]
    merge: {into: integration, strategy: squash}
    steps: [{id: s, run: "echo x > x.txt"}]
  - id: c
    scope: ["c/**"]
    merge: {into: integration}
    depends_on: [a]
    steps: [{id: s, run: "mkdir -p c && echo c > c/f"}]
"""


def _integration_with_x(repo: Path) -> None:
    """``integration`` already holds what ``b`` will write: b's squash changes nothing."""
    git(repo, "checkout", "-q", "-b", "integration")
    (repo / "x.txt").write_text("x\n")
    git(repo, "add", "x.txt")
    git(repo, "commit", "-q", "-m", "x already there")
    git(repo, "checkout", "-q", "main")


def test_run_output_and_summary_name_each_merge(cli_inproc: Cli, tmp_path: Path) -> None:
    repo = cli_inproc.cwd
    _integration_with_x(repo)
    result = cli_inproc("run", plan_file(tmp_path, PLAN))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    squash_a = git(repo, "log", "-1", "--format=%h", "--abbrev=7", "--grep=squash a ",
                   "integration").strip()
    merge_c = git(repo, "rev-parse", "--short=7", "integration").strip()
    progress, _, summary = out.partition("\n  ")  # the summary's lines are indented
    assert f"squashed a into integration ({squash_a})" in progress
    assert "squash of b into integration changed nothing" in progress
    assert f"merged c into integration ({merge_c})" in progress
    for line in (f"squashed a into integration ({squash_a})",
                 "squash of b into integration changed nothing",
                 f"merged c into integration ({merge_c})"):
        assert line in summary, summary


def test_json_summary_carries_the_merges(cli_inproc: Cli, tmp_path: Path) -> None:
    repo = cli_inproc.cwd
    _integration_with_x(repo)
    result = cli_inproc("run", "--json", plan_file(tmp_path, PLAN))
    assert result.returncode == 0, result.stderr
    data = {w["id"]: w for w in json.loads(result.stdout)["workstreams"]}
    head = git(repo, "rev-parse", "integration").strip()
    assert data["c"]["merged_into"] == "integration" and data["c"]["merged_sha"] == head
    assert data["c"]["merge_strategy"] == "merge" and data["c"]["merge_changed"] is True
    assert data["a"]["merge_strategy"] == "squash" and data["a"]["merge_changed"] is True
    assert data["b"]["merge_changed"] is False
    assert "squash of b into integration changed nothing" in result.stderr  # progress lines
