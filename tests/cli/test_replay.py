"""``aidp replay``: a recorded step (the ``openai`` adapter, through the gateway) runs again with
no provider running and reproduces its checkpoint's tree; a recording that lacks what the tool
asks is named; live on another profile the tree is compared too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aidp.testing import FakeLLM
from tests.helpers import Cli

KEY = "sk-canary-replay-0b9e7c5a3d1f"
EDIT = "notes/a.md\n```\nhello from the model\n```\n"
PLAN = """version: 1
workstreams:
  - id: w
    scope: ["notes/**"]
    steps:
      - {id: s, tool: llm, prompt: "Write notes/a.md.", retry: {max_attempts: 1}}
"""


def toml(base_url: str, name: str = "llm") -> str:
    return (f'[tools.{name}]\nadapter = "openai"\nbase_url = "{base_url}"\nmodel = "fake-model"\n'
            f'edit_format = "whole"\napi_key_env = "AIDP_TEST_REPLAY_KEY"\ntimeout = 20\n')


@pytest.fixture
def recorded(cli_inproc: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
             ) -> tuple[Cli, str]:
    """A completed run whose one step was answered by a fake provider, now stopped."""
    monkeypatch.setenv("AIDP_TEST_REPLAY_KEY", KEY)
    cli = cli_inproc
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    with FakeLLM([{"reply": EDIT}], api_key=KEY) as llm:
        (cli.cwd / "aidp.toml").write_text(toml(llm.base_url))
        done = cli("run", str(plan), "--json", check=True)
    return cli, json.loads(done.stdout)["run_id"]


def test_replay_reproduces_the_checkpoint_with_no_provider(recorded: tuple[Cli, str]) -> None:
    cli, run_id = recorded
    result = cli("replay", run_id, "w/s", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout
    assert report["same"] and report["offline"]
    assert (report["requests"], report["recorded_requests"]) == (1, 1)
    assert report["tree"] == report["expected_tree"]
    text = cli("replay", run_id, "w/s")
    assert text.returncode == 0 and "same tree as checkpoint" in text.stdout
    # nothing of the run changed: no new run, attempt or worktree
    runs = json.loads(cli("runs", "--json", check=True).stdout)
    assert len(runs["runs"] if isinstance(runs, dict) else runs) == 1


def test_a_request_the_recording_lacks_is_named(recorded: tuple[Cli, str]) -> None:
    cli, run_id = recorded
    record = cli.cwd / ".aidp" / "runs" / run_id / "exchanges" / "w" / "s.1.jsonl"
    record.write_text("")
    result = cli("replay", run_id, "w/s")
    assert result.returncode == 1
    assert "request 1 (POST /chat/completions) is not in the recording" in result.stdout
    assert "the recording holds 0 model requests" in result.stdout


def test_replay_live_on_another_profile_compares_the_tree(recorded: tuple[Cli, str]) -> None:
    cli, run_id = recorded
    other = "notes/a.md\n```\nsomething else\n```\n"
    with FakeLLM([{"reply": other}], api_key=KEY) as llm:
        (cli.cwd / "aidp.toml").write_text(
            (cli.cwd / "aidp.toml").read_text() + toml(llm.base_url, "other"))
        result = cli("replay", run_id, "w/s", "--profile", "other", "--json")
        served = len(llm.requests)
    report = json.loads(result.stdout)
    assert result.returncode == 1 and served == 1
    assert not report["same"] and report["differing"] == ["notes/a.md"]
    assert not report["offline"] and report["profile"] == "other"


def test_unknown_step_and_missing_recording_are_clear_errors(recorded: tuple[Cli, str]
                                                             ) -> None:
    cli, run_id = recorded
    missing = cli("replay", run_id, "w/nope")
    assert missing.returncode == 3 and "Traceback" not in missing.stderr
    (cli.cwd / ".aidp" / "runs" / run_id / "exchanges" / "w" / "s.1.jsonl").unlink()
    gone = cli("replay", run_id, "w/s")
    assert gone.returncode == 3 and "no recorded model exchanges" in gone.stderr
