"""A refused merge of a finished workstream: its work stays completed, its dependants run."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Cli, git
from tests.engine.test_run import plan_file, run_json, status, steps_of, wss


def test_merge_refusal_keeps_the_work_and_runs_the_dependants(cli: Cli, tmp_path: Path) -> None:
    """Rule: a merge refusal never marks completed work failed nor skips its dependants."""
    repo = cli.cwd
    git(repo, "checkout", "-q", "-b", "integration")
    (repo / "shared.txt").write_text("target\n")
    git(repo, "add", "shared.txt")
    git(repo, "commit", "-q", "-m", "the target moved")
    git(repo, "checkout", "-q", "main")
    text = """
version: 1
workstreams:
  - id: a
    merge: {into: integration}
    steps: [{id: s, run: "echo a > shared.txt"}]
  - id: b
    depends_on: [a]
    steps: [{id: s, run: "grep -qx a shared.txt"}]
"""
    result, summary = run_json(cli, plan_file(tmp_path, text))
    assert result.returncode == 1
    data = status(cli, summary["run_id"])
    a, b = wss(data)["a"], wss(data)["b"]
    assert steps_of(data, "a")["s"]["status"] == "completed"
    assert a["status"] == "failed"
    assert a["reason"].startswith("all steps completed; merging into integration failed")
    assert b["status"] == "completed" and steps_of(data, "b")["s"]["status"] == "completed"
    assert git(repo, "show", "integration:shared.txt") == "target\n"
