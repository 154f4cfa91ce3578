"""The whole loop through the real CLI: plan a change (or an epic), run it, sync the files."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from tests.conftest import Cli, git, init_repo
from tests.specs.corpus import ADD_OK, LOGIN, proposal, spec

EPIC = "---\nname: auth\nstatus: in-progress\nprogress: 0%\n---\n# Epic: auth\n"


def _task(name: str, depends: str = "[]") -> str:
    return (f"---\nname: {name}\nstatus: open\ncreated: 2026-11-24T18:00:00Z\nupdated: "
            f"2026-11-24T18:00:00Z\ndepends_on: {depends}\nparallel: true\n---\n"
            f"## Description\nDo {name}.\n")


def _repo(tmp_path: Path) -> Path:
    return init_repo(tmp_path / "repo", {
        "openspec/config.yaml": "schema: spec-driven\n",
        "openspec/specs/auth/spec.md": spec("auth", LOGIN),
        "openspec/changes/add-2fa/proposal.md": proposal("Add 2FA"),
        "openspec/changes/add-2fa/tasks.md": "## 1. Impl\n- [ ] 1.1 Table\n- [ ] 1.2 Two factor\n",
        "openspec/changes/add-2fa/specs/auth/spec.md": ADD_OK,
        ".claude/epics/auth/epic.md": EPIC,
        ".claude/epics/auth/001.md": _task("Table"),
        ".claude/epics/auth/002.md": _task("Endpoint", "[1]"),
    })


def test_change_plan_run_sync_archive(tmp_path: Path) -> None:
    """plan -> run -> sync --archive: tasks ticked, change archived and merged, the tracked
    proposal moved approved -> in_progress -> applied -> archived."""
    repo = _repo(tmp_path)
    cli = Cli(repo)
    cli("proposals", "submit", "add-2fa", "--by", "alice", check=True)
    cli("proposals", "approve", "add-2fa", "--by", "bob", check=True)
    cli("specs", "plan", "add-2fa", "-o", "ws.yaml", "--tool", "shell", "--run",
        "echo {step} >> done.txt", check=True)
    git(repo, "add", "ws.yaml")
    git(repo, "commit", "-qm", "plan")
    assert json.loads(cli("run", "ws.yaml", "--json", check=True).stdout)["status"] == "completed"
    synced = json.loads(cli("specs", "sync", "--archive", "--json", check=True).stdout)
    assert [(e["file"], e["line"]) for e in synced["edits"]] == [
        ("openspec/changes/add-2fa/tasks.md", 2), ("openspec/changes/add-2fa/tasks.md", 3)]
    (archived,) = synced["archived"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}-add-2fa", archived)
    tasks = (repo / "openspec/changes/archive" / archived / "tasks.md").read_text()
    assert tasks.count("- [x]") == 2
    assert "### Requirement: Two factor" in (repo / "openspec/specs/auth/spec.md").read_text()
    history = json.loads(cli("proposals", "show", "add-2fa", "--json").stdout)["history"]
    assert [h["action"] for h in history] == ["create", "submit", "approve", "start", "apply",
                                              "archive"]


def test_section_workstreams_sync_into_their_change(tmp_path: Path) -> None:
    """plan --split sections -> run -> sync --archive: each section's workstream ticks its
    tasks in the one change, which is archived once."""
    repo = _repo(tmp_path)
    (repo / "openspec/changes/add-2fa/tasks.md").write_text(
        "## 1. Impl\n- [ ] 1.1 Table\n\n## 2. Docs\n- [ ] 2.1 Two factor\n")
    cli = Cli(repo)
    cli("specs", "plan", "add-2fa", "-o", "ws.yaml", "--split", "sections", "--tool", "shell",
        "--run", "echo {step} >> done.txt", check=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "plan")
    summary = json.loads(cli("run", "ws.yaml", "--json", check=True).stdout)
    assert sorted(w["id"] for w in summary["workstreams"]) == ["add-2fa-1", "add-2fa-2"]
    synced = json.loads(cli("specs", "sync", "--archive", "--json", check=True).stdout)
    assert [(e["file"], e["line"]) for e in synced["edits"]] == [
        ("openspec/changes/add-2fa/tasks.md", 2), ("openspec/changes/add-2fa/tasks.md", 5)]
    (archived,) = synced["archived"]
    tasks = (repo / "openspec/changes/archive" / archived / "tasks.md").read_text()
    assert tasks.count("- [x]") == 2


def test_epic_plan_run_sync(tmp_path: Path) -> None:
    """epic -> run -> sync: each finished task file gets status closed, the epic 100%."""
    repo = _repo(tmp_path)
    cli = Cli(repo)
    cli("specs", "epic", "auth", "-o", "epic.yaml", "--tool", "shell", "--run",
        "echo {workstream} >> done.txt", check=True)
    git(repo, "add", "epic.yaml")
    git(repo, "commit", "-qm", "plan")
    assert json.loads(cli("run", "epic.yaml", "--json", check=True).stdout)["status"] == \
        "completed"
    # the run itself closed the tasks as their workstreams completed: sync has nothing left
    assert "status: closed" in (repo / ".claude/epics/auth/002.md").read_text()
    assert "progress: 100%" in (repo / ".claude/epics/auth/epic.md").read_text()
    again = json.loads(cli("specs", "sync", "--json", check=True).stdout)
    assert again["edits"] == []


def test_epic_task_status_follows_the_run(tmp_path: Path) -> None:
    """While the run goes on: in-progress when a task's workstream starts, closed (and the
    epic's progress) when it completes; the other lines of the files stay byte-identical."""
    repo = init_repo(tmp_path / "repo", {
        ".claude/epics/auth/epic.md": EPIC, ".claude/epics/auth/001.md": _task("Table")})
    before = (repo / ".claude/epics/auth/001.md").read_text()
    cli = Cli(repo)
    go = tmp_path / "go"
    cli("specs", "epic", "auth", "-o", "epic.yaml", "--tool", "shell", "--run",
        f"while [ ! -e {go} ]; do sleep 0.05; done", check=True)
    git(repo, "add", "epic.yaml")
    git(repo, "commit", "-qm", "plan")
    task = repo / ".claude/epics/auth/001.md"
    proc = cli.popen("run", "epic.yaml", "--json")
    try:
        deadline = time.monotonic() + 30
        while "status: in-progress" not in task.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, "never in progress"
            time.sleep(0.05)
        assert "progress: 0%" in (repo / ".claude/epics/auth/epic.md").read_text()
        go.touch()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert json.loads(out)["status"] == "completed"
    after = task.read_text()
    assert "status: closed" in after
    assert "progress: 100%" in (repo / ".claude/epics/auth/epic.md").read_text()
    def rest(text: str) -> list[str]:
        return [line for line in text.split("\n") if not line.startswith(("status:", "updated:"))]
    assert rest(after) == rest(before)
