"""`aidp plan --change` and `aidp run --change`: an OpenSpec change runs as workstreams, only
once approved, and its proposal moves to in_progress and then applied."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import Cli, git

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "openspec" / "openspec"
CHANGE = "add-two-factor"


@pytest.fixture
def spec_cli(cli: Cli) -> Cli:
    shutil.copytree(EXAMPLE, cli.cwd / "openspec")
    (cli.cwd / "aidp.toml").write_text(
        '[tools.impl]\nadapter = "shell"\n'
        'command = "mkdir -p impl && echo \\"$AIDP_STEP\\" >> impl/log.txt"\n')
    git(cli.cwd, "add", "-A")
    git(cli.cwd, "commit", "-qm", "specs")
    return cli


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_plan_change_writes_nothing(spec_cli: Cli) -> None:
    """plan --change shows one step per open task and leaves the repository untouched."""
    result = spec_cli("plan", "--change", CHANGE, "--json", check=True)
    data = json.loads(result.stdout)
    assert data["step_orders"][CHANGE] == ["task-1.1", "task-1.2", "task-1.3", "task-2.1"]
    assert not (spec_cli.cwd / ".aidp").exists()
    both = spec_cli("plan", "--change", CHANGE, "x.yaml")
    assert both.returncode == 2 and "Traceback" not in both.stderr


def test_run_change_needs_approval_then_applies(spec_cli: Cli) -> None:
    """An unapproved change is refused (exit 4, nothing run); approved, it runs and its
    proposal ends applied."""
    refused = spec_cli("run", "--change", CHANGE, "--tool", "impl")
    assert refused.returncode == 4 and "not approved" in refused.stderr
    assert "Traceback" not in refused.stderr
    spec_cli("proposals", "submit", CHANGE, check=True)
    spec_cli("proposals", "approve", CHANGE, check=True)
    result = spec_cli("run", "--change", CHANGE, "--tool", "impl", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    branch = summary["workstreams"][0]["branch"]
    assert git(spec_cli.cwd, "show", f"{branch}:impl/log.txt").split() == [
        "task-1.1", "task-1.2", "task-1.3", "task-2.1"]
    shown = spec_cli("proposals", "show", CHANGE, "--json", check=True).stdout
    assert json.loads(shown)["state"] == "applied"
