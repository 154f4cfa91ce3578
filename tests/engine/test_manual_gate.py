"""The manual adapter: a step waits at a human gate until `aidp approve` or `aidp reject`."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli, commit_files, git

PLAN = """\
version: 1
workstreams:
  - id: docs
    scope: ["docs/**"]
    steps:
      - id: review
        tool: manual
        prompt: Write docs/notes.md by hand.
        checks: ["test -s docs/notes.md"]
      - {id: after, depends_on: [review], run: "echo more >> docs/notes.md"}
"""


def wait_for_gate(cli: Cli, deadline_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        result = cli("status", "--json")
        data = json.loads(result.stdout) if result.returncode == 0 else {}
        if data.get("workstreams"):  # no run yet: status prints an empty one and exits 0
            ws = data["workstreams"][0]
            if ws["steps"][0]["status"] == "awaiting_approval":
                return data
        time.sleep(0.2)
    raise AssertionError("the step never reached its gate")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_approve_commits_the_humans_work(cli: Cli, tmp_path: Path) -> None:
    """Approval: the worktree's changes are checked and committed; the run goes on."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    proc = cli.popen("run", str(plan), "--json")
    try:
        data = wait_for_gate(cli)
        ws = data["workstreams"][0]
        assert "aidp approve" in ws["steps"][0]["reason"]
        early = cli("approve", data["run_id"], "docs/after")
        assert early.returncode == 4 and "not awaiting approval" in early.stderr
        worktree = Path(ws["worktree"])
        (worktree / "docs").mkdir(exist_ok=True)
        (worktree / "docs" / "notes.md").write_text("by hand\n")
        cli("approve", data["run_id"], "docs/review", "--comment", "looks fine", check=True)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["status"] == "completed"
    branch = summary["workstreams"][0]["branch"]
    assert git(cli.cwd, "show", f"{branch}~1:docs/notes.md").strip() == "by hand"
    assert git(cli.cwd, "show", f"{branch}:docs/notes.md").split() == ["by", "hand", "more"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_reject_fails_the_step_with_the_reason(cli: Cli, tmp_path: Path) -> None:
    """Rejection: the step fails with who and why; its dependants are skipped."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    proc = cli.popen("run", str(plan), "--json")
    try:
        data = wait_for_gate(cli)
        missing = cli("reject", data["run_id"], "docs/review", "--reason", " ")
        assert missing.returncode == 4
        cli("reject", data["run_id"], "docs/review", "--reason", "not what we need",
            check=True)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    status = json.loads(cli("status", data["run_id"], "--json", check=True).stdout)
    review, after = status["workstreams"][0]["steps"]
    assert review["status"] == "failed" and "not what we need" in review["reason"]
    assert review["failure_class"] == "permanent"
    assert after["status"] == "skipped"
    assert not list((cli.cwd / ".aidp" / "worktrees").glob("*.keep"))  # its slot is free


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_gate_shows_its_worktree_and_prompt(cli: Cli, tmp_path: Path) -> None:
    """An open gate shows where to work and what to do: its worktree and prompt, in the run's
    output, in `status` (the note) and in `status --json` (the step's "gate")."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    proc = cli.popen("run", str(plan))
    try:
        data = wait_for_gate(cli)
        worktree = data["workstreams"][0]["worktree"]
        assert worktree
        step = data["workstreams"][0]["steps"][0]
        assert step["gate"] == {"worktree": worktree, "prompt": "Write docs/notes.md by hand."}
        assert "gate" not in data["workstreams"][0]["steps"][1] or (
            data["workstreams"][0]["steps"][1]["gate"] is None)
        text = cli("status", check=True).stdout
        note = next(line for line in text.splitlines() if "review" in line)
        assert worktree in note and "Write docs/notes.md by hand." in note
        assert proc.stdout is not None
        seen = ""
        while "Write docs/notes.md by hand." not in seen:
            line = proc.stdout.readline()
            assert line, f"aidp ended without showing the gate: {seen}"
            seen += line
        assert worktree in seen
        (Path(worktree) / "docs").mkdir(exist_ok=True)
        (Path(worktree) / "docs" / "notes.md").write_text("by hand\n")
        cli("approve", data["run_id"], "docs/review", check=True)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err


OTHER = """\
version: 1
workstreams:
  - id: other
    steps:
      - {id: touch, run: "echo x > other.txt"}
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
                         ids=["SIGINT", "SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_gates_work_survives_aidp_exiting(cli: Cli, tmp_path: Path,
                                             sig: signal.Signals) -> None:
    """Work a person leaves in the gate's worktree survives aidp stopping before the approval
    (Ctrl-C, SIGTERM, kill -9), another run in the same repository meanwhile, the approval and
    `aidp resume`: the approval commits it, in the step's checkpoint on the workstream branch."""
    commit_files(cli.cwd, {"docs/index.md": "old\n"}, "docs")
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    proc = cli.popen("run", str(plan))
    try:
        data = wait_for_gate(cli)
        run_id, worktree = data["run_id"], Path(data["workstreams"][0]["worktree"])
        (worktree / "docs" / "notes.md").write_text("by hand\n")  # untracked
        (worktree / "docs" / "index.md").write_text("edited by hand\n")  # tracked, modified
        os.killpg(proc.pid, sig)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (worktree / "docs" / "notes.md").read_text() == "by hand\n"
    assert (worktree / "docs" / "index.md").read_text() == "edited by hand\n"
    other = tmp_path / "other.yaml"
    other.write_text(OTHER)
    cli("run", str(other), check=True)  # takes a pooled worktree: never the gate's
    assert (worktree / "docs" / "notes.md").read_text() == "by hand\n"
    cli("approve", run_id, "docs/review", check=True)
    result = cli("resume", run_id, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    status = json.loads(cli("status", run_id, "--json", check=True).stdout)
    review = status["workstreams"][0]["steps"][0]
    assert review["status"] == "completed"
    branch = status["workstreams"][0]["branch"]
    checkpoint = review["checkpoint"]
    assert git(cli.cwd, "merge-base", "--is-ancestor", checkpoint, branch) == ""
    assert git(cli.cwd, "show", f"{checkpoint}:docs/notes.md").strip() == "by hand"
    assert git(cli.cwd, "show", f"{checkpoint}:docs/index.md").strip() == "edited by hand"
    assert "Aidp-Step: review" in git(cli.cwd, "log", "-1", "--format=%(trailers)", checkpoint)
    assert not list((cli.cwd / ".aidp" / "worktrees").glob("*.keep"))  # reusable again
