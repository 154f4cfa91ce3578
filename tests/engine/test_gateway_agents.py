"""The real Aider and the real Codex through the model gateway, against aidp's fake provider:
the provider's Retry-After reaches aidp's retry schedule, a token budget stops a multi-request
session before its later requests reach the provider, and the provider key is in no tool
process, agent command, file or output -- only in the gateway's upstream requests."""

from __future__ import annotations

import itertools
import json
import os
import threading
from datetime import datetime
from pathlib import Path

import pytest

from aidp.testing import FakeLLM
from tests.conftest import Cli, git
from tests.engine.test_real_agents import CODEX_PATCH, KEY, hello, profiles, run
from tests.tools.test_realtools import AIDER_DIFF

pytestmark = pytest.mark.realtools

ENV_DUMP = "env > codex-env.txt"


def test_aider_429_retry_after_reaches_the_retry_schedule(cli: Cli, tmp_path: Path) -> None:
    """Aider never prints a Retry-After. Through the gateway the provider's ``Retry-After: 4``
    is a finding (retry_after 4.0); no request follows a 429 sooner than 4 s (Aider's own
    retries included), and aidp's next attempt starts at least 4 s after the last 429."""
    hello(cli)
    script = [{"error": {"status": 429, "message": "Rate limit reached", "retry_after": 4}}]
    with FakeLLM(script, api_key=KEY) as llm:
        (cli.cwd / "aidp.toml").write_text(profiles(llm.base_url).replace(
            'timeout = "90s"', 'timeout = "10s"', 1))
        plan = tmp_path / "plan.yaml"
        plan.write_text("""version: 1
workstreams:
  - id: greet
    scope: ["hello.py"]
    steps:
      - {id: world, tool: aider, prompt: "Make greet() say hello, world.",
         retry: {max_attempts: 2, initial_delay: 0.1}}
""")
        code, status, stderr = run(cli, llm, plan)
        limited = sorted(r["time"] for r in llm.requests if r["path"] == "/v1/chat/completions")
    assert code == 1, stderr
    (step,) = status["workstreams"][0]["steps"]
    attempts = step["attempt_list"]
    assert len(attempts) == 2
    second = datetime.fromisoformat(attempts[1]["started_at"]).timestamp()
    before = [t for t in limited if t < second]
    assert before and second - before[-1] >= 4.0
    gaps = [b - a for a, b in itertools.pairwise(limited)]
    assert gaps and min(gaps) >= 3.9  # the gateway held Aider's own retries too
    findings = json.loads(cli("findings", status["run_id"], "--json", check=True).stdout)
    waits = {(f["detector"], f["code"], f["retry_after"]) for f in findings["findings"]}
    assert ("gateway", "rate_limit", 4.0) in waits


def test_codex_budget_stops_the_session_before_its_later_requests(cli: Cli,
                                                                  tmp_path: Path) -> None:
    """A 300-token budget; Codex's first turn costs 500 tokens and asks for a command: the
    command's follow-up request is refused by the gateway, Codex is stopped, the step ends
    budget_exceeded, and the provider's log holds exactly one model request."""
    hello(cli)
    script = [{"tool_calls": [{"name": "exec_command", "arguments": {"cmd": "echo one"}}],
               "usage": {"input_tokens": 400, "output_tokens": 100}},
              {"reply": "Done.", "usage": {"input_tokens": 500, "output_tokens": 10}}]
    with FakeLLM(script, api_key=KEY) as llm:
        (cli.cwd / "aidp.toml").write_text(profiles(llm.base_url))
        plan = tmp_path / "plan.yaml"
        plan.write_text("""version: 1
workstreams:
  - id: greet
    scope: ["hello.py"]
    steps:
      - {id: s, tool: codex, prompt: "Say hello.", budget: {tokens: 300}}
""")
        code, status, stderr = run(cli, llm, plan)
        model_requests = [r for r in llm.requests if r["path"] == "/v1/responses"]
    assert code == 1, stderr
    (step,) = status["workstreams"][0]["steps"]
    assert step["outcome"] == "budget_exceeded", step
    assert "budget of 300 tokens is spent (500)" in (step["reason"] or "")
    assert len(model_requests) == 1
    usage = json.loads(cli("usage", status["run_id"], "--json", check=True).stdout)
    assert usage["total"]["input_tokens"] == 400 and usage["total"]["output_tokens"] == 100


def _environ_holders(needle: bytes, marker: bytes) -> list[str]:
    """Processes whose environment holds ``marker`` (a tool's or its commands') and
    ``needle``."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if marker in environ and needle in environ:
            found.append(pid)
    return found


def test_the_provider_key_reaches_only_the_gateways_upstream_requests(cli: Cli,
                                                                       tmp_path: Path) -> None:
    """The key is a canary: sampled from /proc during the attempts, absent from every process
    of them (Aider; Codex and the command it runs, which dumps its environment), from the
    worktree, .aidp/, git objects and the CLI's output; the provider still got it (it answers
    401 to anything else)."""
    hello(cli)
    script = [{"reply": AIDER_DIFF, "hang": 1},
              {"tool_calls": [{"name": "exec_command",
                               "arguments": {"cmd": ENV_DUMP + " && sleep 1"}}]},
              {"reply": "Done.", "hang": 1}]
    holders: list[str] = []
    seen = {"aider": threading.Event(), "codex": threading.Event()}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            if _environ_holders(b"AIDP_PROCESS_TOKEN", b"LITELLM_LOCAL_MODEL_COST_MAP"):
                seen["aider"].set()
            if _environ_holders(b"AIDP_PROCESS_TOKEN", b"CODEX_HOME"):
                seen["codex"].set()
            holders.extend(_environ_holders(KEY.encode(), b"AIDP_PROCESS_TOKEN"))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    with FakeLLM(script, api_key=KEY) as llm:
        (cli.cwd / "aidp.toml").write_text(profiles(llm.base_url))
        plan = tmp_path / "plan.yaml"
        plan.write_text("""version: 1
workstreams:
  - id: greet
    scope: ["**"]
    steps:
      - {id: world, tool: aider, prompt: "Make greet() say hello, world."}
      - {id: s, tool: codex, depends_on: [world], prompt: "Dump your environment.",
         requires_change: true}
""")
        sampler.start()
        try:
            code, status, stderr = run(cli, llm, plan)
        finally:
            stop.set()
            sampler.join(5)
        model_requests = len([r for r in llm.requests if r["path"] == "/v1/responses"])
        aider_requests = len([r for r in llm.requests
                              if r["path"] == "/v1/chat/completions"])
    assert code == 0, stderr
    assert (aider_requests, model_requests) == (1, 2)
    assert seen["aider"].is_set() and seen["codex"].is_set()
    assert holders == []
    branch = status["workstreams"][0]["branch"]
    dumped = git(cli.cwd, "show", f"{branch}:codex-env.txt")
    assert "AIDP_PROCESS_TOKEN" in dumped and KEY not in dumped
    for root in (cli.cwd / ".aidp", cli.cwd / ".git"):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in stderr
    assert KEY not in git(cli.cwd, "log", "--all", "-p")


def test_usage_is_the_providers_and_replay_needs_no_provider(cli: Cli,
                                                                    tmp_path: Path) -> None:
    """Step one on Aider, step two on Codex, through the gateway: the usage recorded equals the
    provider's totals; with the provider gone, ``aidp replay`` runs each step again from its
    starting commit and gets the same tree."""
    hello(cli)
    script = [{"reply": AIDER_DIFF, "usage": {"input_tokens": 120, "output_tokens": 30}},
              {"tool_calls": [{"name": "exec_command", "arguments": {"cmd": CODEX_PATCH}}],
               "usage": {"input_tokens": 400, "output_tokens": 50, "cached_tokens": 100}},
              {"reply": "Done.", "usage": {"input_tokens": 200, "output_tokens": 10}}]
    with FakeLLM(script, api_key=KEY) as llm:
        (cli.cwd / "aidp.toml").write_text(profiles(llm.base_url))
        plan = tmp_path / "plan.yaml"
        plan.write_text("""version: 1
workstreams:
  - id: greet
    scope: ["hello.py"]
    steps:
      - {id: world, tool: aider, prompt: "Make greet() say hello, world.", requires_change: true}
      - {id: codex, tool: codex, depends_on: [world], prompt: "Make greet() say hello, codex.",
         requires_change: true}
""")
        code, status, stderr = run(cli, llm, plan)
    assert code == 0, stderr
    run_id = status["run_id"]
    # the usage recorded is the provider's own totals, for both tools
    usage = json.loads(cli("usage", run_id, "--json", check=True).stdout)
    assert {k: usage["total"][k] for k in ("input_tokens", "output_tokens", "cached_tokens",
                                           "requests")} == {
        "input_tokens": 720, "output_tokens": 90, "cached_tokens": 100, "requests": 3}
    assert usage["profiles"]["aider"]["input_tokens"] == 120
    assert usage["profiles"]["codex"]["input_tokens"] == 600
    for step in ("world", "codex"):
        result = cli("replay", run_id, f"greet/{step}", "--json", timeout=180)
        report = json.loads(result.stdout)
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert report["same"] and report["requests"] == report["recorded_requests"] >= 1
