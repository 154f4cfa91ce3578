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


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_run_change_on_a_model_then_archive(spec_cli: Cli) -> None:
    """run --change on the openai adapter: every task is a request whose prompt carries the
    requirement text and its scenarios (as the fake server recorded them); after the run the
    change archives, its deltas merged into the specs."""
    from aidp.testing import FakeLLM

    # one reply per task, each a real change: a model that changes nothing fails the step
    replies = [{"reply": f"impl/2fa-{n}.md\n```\nsecond factor: part {n}\n```\n"}
               for n in range(1, 5)]
    with FakeLLM(replies) as llm:
        (spec_cli.cwd / "aidp.toml").write_text(
            f'[specs]\nrequire_approval = false\n\n[tools.model]\nadapter = "openai"\n'
            f'base_url = "{llm.base_url}"\nmodel = "fake-model"\nedit_format = "whole"\n')
        env_cli = Cli(spec_cli.cwd, spec_cli.db_url)
        base_env = env_cli.env
        env_cli.env = lambda: {**base_env(), "OPENAI_API_KEY": "not-a-key"}  # type: ignore[method-assign]
        result = env_cli("run", "--change", CHANGE, "--tool", "model", "--json")
        bodies = [json.dumps(r["body"]) for r in llm.requests]
    assert result.returncode == 0, result.stderr
    assert len(bodies) == 4
    assert all("SHALL accept a six-digit TOTP code" in body for body in bodies[:3])
    assert all("Scenario: Valid code" in body for body in bodies[:3])
    archived = spec_cli("specs", "archive", CHANGE)
    assert archived.returncode == 0, archived.stderr
    spec = (spec_cli.cwd / "openspec" / "specs" / "auth" / "spec.md").read_text()
    assert "One-time codes" in spec
    assert not (spec_cli.cwd / "openspec" / "changes" / CHANGE).exists()
