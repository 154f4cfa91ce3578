"""The real Aider and Codex CLIs, driven by their adapters against the fake LLM server.

Each test runs a real tool on a real git repository in tmp_path, talking only to a
:class:`~aidp.testing.FakeLLM` on 127.0.0.1; every other outbound connection goes to the fake's
proxy sink, and the tests assert there was none. The tools come from
``scripts/setup_ai_tools.sh``; without them these tests skip with the reason, unless
``AIDP_REQUIRE_REAL_TOOLS=1`` (set by ``.ci/run``), which turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from aidp.config import ToolProfile
from aidp.errors import AttemptEvidence, FailureClass, classify, default_manager
from aidp.process.runner import _pids_with_token
from aidp.testing import FakeLLM
from aidp.tools.adapter import AdapterResult, Invocation
from aidp.tools.adapters._common import resolve_command
from aidp.tools.adapters.aider import AiderAdapter
from aidp.tools.adapters.codex import CodexAdapter
from tests.helpers import git, init_repo
from tests.tools._adapters import GREETING, KEY_ENV, SECRET, invocation, log_text

pytestmark = pytest.mark.realtools

WORLD = 'def greet():\n    return "hello, world"\n'
AIDER_DIFF = (
    "hello.py\n```python\n<<<<<<< SEARCH\n    return \"hello\"\n=======\n"
    "    return \"hello, world\"\n>>>>>>> REPLACE\n```\n"
)
CODEX_PATCH = (
    "apply_patch <<'EOF'\n*** Begin Patch\n*** Update File: hello.py\n@@\n def greet():\n"
    "-    return \"hello\"\n+    return \"hello, world\"\n*** End Patch\nEOF\n"
)
#: Seconds a killed tool may take beyond timeout + grace (final drain, reaping, a busy machine).
SLACK_S = 8.0
#: Step timeout of the Aider failure tests: Aider retries 429s and dead servers for ~80 s, so
#: aidp's clock ends them; it must leave room for Aider's start-up (2-4 s here, 20 s on a 2-core
#: machine under a load of 8).
AIDER_FAILURE_TIMEOUT_S = 25.0
#: For a hang, Aider first waits out its own request timeout (15 % of the step timeout) three
#: times (the openai client's retries) before it prints "timed out": start-up + 3 x 6 s < 40 s.
AIDER_HANG_TIMEOUT_S = 40.0


def require(tool: str) -> str:
    """The installed binary of ``tool``; skip (or fail under AIDP_REQUIRE_REAL_TOOLS=1)."""
    binary = resolve_command(None, tool, os.environ)
    if binary is None:
        reason = f"{tool} is not installed (run scripts/setup_ai_tools.sh)"
        if os.environ.get("AIDP_REQUIRE_REAL_TOOLS") == "1":
            pytest.fail(reason + "; AIDP_REQUIRE_REAL_TOOLS=1 requires it")
        pytest.skip(reason)
    return binary[0]


def closed_port_url() -> str:
    """The base URL of a port on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def assert_nothing_left(inv: Invocation) -> None:
    """No process carrying the attempt's token is alive (zombies do not count)."""
    deadline = time.monotonic() + 5.0
    while (left := _pids_with_token(inv.token)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == set()


def run_tool(
    tmp_path: Path, adapter: AiderAdapter | CodexAdapter, profile: ToolProfile, llm: FakeLLM,
    **kwargs: Any,
) -> tuple[AdapterResult, Invocation, Path]:
    """Run ``adapter`` once on a fresh repository; return the result, invocation and repo."""
    repo = init_repo(tmp_path / "repo", {"hello.py": GREETING})
    extra_env = {**llm.proxy_env(), **kwargs.pop("extra_env", {})}
    with invocation(tmp_path, repo, profile, extra_env=extra_env, **kwargs) as inv:
        result = adapter.run(inv)
    assert_nothing_left(inv)
    assert llm.stray == []
    assert SECRET not in log_text(tmp_path)
    return result, inv, repo


def failure_class(result: AdapterResult, inv: Invocation, text: str) -> FailureClass:
    """How aidp's own detectors classify this attempt's output and events."""
    evidence = AttemptEvidence(
        tool=inv.profile_name, adapter=inv.profile.adapter, exit_code=result.exit_code,
        signal=result.signal, timed_out=result.timed_out, duration_s=result.duration_s,
        output=text, worktree=inv.worktree,
        events=tuple({"kind": event.kind, **event.data} for event in result.events))
    return classify(default_manager().detect_attempt(evidence).findings)


def authorization(request: dict[str, Any]) -> str | None:
    """The (masked) Authorization header of a recorded request."""
    headers = {name.lower(): value for name, value in request["headers"].items()}
    return headers.get("authorization")


def aider_profile(llm: FakeLLM, base_url: str | None = None) -> ToolProfile:
    return ToolProfile(adapter="aider", command=require("aider"), model=llm.model,
                       base_url=base_url or llm.base_url, api_key_env=KEY_ENV)


def codex_profile(llm: FakeLLM, base_url: str | None = None) -> ToolProfile:
    return ToolProfile(adapter="codex", command=require("codex"), model=llm.model,
                       base_url=base_url or llm.base_url, api_key_env=KEY_ENV,
                       sandbox="workspace-write")


# -- aider ---------------------------------------------------------------------------------------


def test_aider_diff_edit_changes_the_file_and_commits_nothing(tmp_path: Path) -> None:
    """Aider applies a diff-format reply to the worktree, leaves it uncommitted, keeps its own
    files outside the worktree, and reports usage and the edit."""
    with FakeLLM([{"reply": AIDER_DIFF}]) as llm:
        result, inv, repo = run_tool(tmp_path, AiderAdapter(), aider_profile(llm), llm)
        requests = llm.requests
    assert (repo / "hello.py").read_text() == WORLD
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == " M hello.py\n"
    assert git(repo, "rev-list", "--count", "HEAD") == "1\n"
    assert result.exit_code == 0 and not result.timed_out and result.error is None
    assert result.version == "0.86.2"
    assert result.usage.requests == 1 and result.usage.input_tokens > 0
    assert result.usage.output_tokens > 0
    assert ("file_change", {"path": "hello.py", "kind": "update"}) in [
        (event.kind, event.data) for event in result.events]
    assert len(requests) == 1 and requests[0]["path"] == "/v1/chat/completions"
    assert authorization(requests[0]) == "Bearer ***"  # a key was sent (the fake masks it)
    assert "hello, world" in str(requests[0]["body"]["messages"])
    assert (inv.attempt_dir / "aider.chat.history.md").is_file()
    assert (inv.attempt_dir / "home" / ".aider").is_dir()


@pytest.mark.parametrize(("script", "dead", "timeout_s", "telltales"), [
    ([{"error": {"status": 429, "message": "Rate limit reached", "retry_after": 1}}], False,
     AIDER_FAILURE_TIMEOUT_S, ["RateLimitError", "rate limited"]),
    # each of these waits out Aider's own retries (about 25 s): the default tier keeps one
    pytest.param([{"reply": "unused"}], True, AIDER_FAILURE_TIMEOUT_S, ["Connection error"],
                 marks=pytest.mark.slow),
    # Aider's own request timeout is 30 s or more: this one waits it out (slow tier)
    pytest.param([{"hang": 120}], False, AIDER_HANG_TIMEOUT_S, ["litellm.Timeout", "timed out"],
                 marks=pytest.mark.slow),
], ids=["429-forever", "dead-server", "hang-before-headers"])
def test_aider_failures_end_in_time_and_say_why(
    tmp_path: Path, script: list[dict[str, Any]], dead: bool, timeout_s: float,
    telltales: list[str],
) -> None:
    """Aider retries on its own and exits 0 anyway; aidp's wall clock ends it within the step
    timeout (+ grace), nothing is left running, and the log holds a detector's telltale."""
    with FakeLLM(script) as llm:
        profile = aider_profile(llm, closed_port_url() if dead else None)
        result, inv, repo = run_tool(tmp_path, AiderAdapter(), profile, llm, timeout_s=timeout_s)
    assert result.timed_out
    assert result.duration_s <= timeout_s + 3.0 + SLACK_S
    text = log_text(tmp_path)
    note = f"--- [aidp] aider timed out after {timeout_s:g} s ---"
    assert note in text
    for telltale in telltales:
        assert telltale in text.replace(note, "")  # Aider's own words, not aidp's note
    assert any(event.kind == "error" for event in result.events)
    assert failure_class(result, inv, text) is FailureClass.TRANSIENT
    assert (repo / "hello.py").read_text() == GREETING


def test_aider_edit_that_never_matches_ends_in_a_permanent_failure(tmp_path: Path) -> None:
    """A SEARCH block that matches nothing: Aider reflects 3 times, gives up, exits 0 anyway;
    the file is unchanged and the detectors call it permanent."""
    wrong = AIDER_DIFF.replace('    return "hello"\n=', '    return "goodbye"\n=')
    with FakeLLM([{"reply": wrong}]) as llm:
        result, inv, repo = run_tool(tmp_path, AiderAdapter(), aider_profile(llm), llm)
        requests = len(llm.requests)
    text = log_text(tmp_path)
    assert result.exit_code == 0 and not result.timed_out
    assert "Only 3 reflections allowed" in text
    assert requests == 4 and result.usage.requests == 4
    assert (repo / "hello.py").read_text() == GREETING
    assert failure_class(result, inv, text) is FailureClass.PERMANENT


def test_aider_cancel_interrupts_it_at_once(tmp_path: Path) -> None:
    """A cancel sends Aider SIGINT, then kills its group: it ends within the grace period."""
    cancel = threading.Event()
    with FakeLLM([{"hang": 120}]) as llm:
        timer = threading.Timer(4.0, cancel.set)
        timer.start()
        try:
            result, _, _ = run_tool(tmp_path, AiderAdapter(), aider_profile(llm), llm,
                                    cancel=cancel, grace_s=2.0)
        finally:
            timer.cancel()
    assert result.cancelled and not result.timed_out
    assert result.duration_s <= 4.0 + 2.0 + SLACK_S


def test_aider_probe_reports_version_and_endpoint(tmp_path: Path) -> None:
    """probe() runs aider --version and asks the endpoint for its models."""
    with FakeLLM(["unused"]) as llm:
        good = AiderAdapter().probe("aider", aider_profile(llm), dict(os.environ))
        bad = AiderAdapter().probe("aider", aider_profile(llm, closed_port_url()),
                                   dict(os.environ))
        assert llm.requests[0]["path"] == "/v1/models"
    assert good.ok and good.version == "0.86.2" and good.canary_ok
    assert not bad.ok and bad.version == "0.86.2" and bad.canary_ok is False
    assert "unreachable" in bad.detail


# -- codex ---------------------------------------------------------------------------------------


def test_codex_apply_patch_changes_the_file(tmp_path: Path) -> None:
    """Codex runs the model's exec_command apply_patch heredoc on the worktree, reports it as a
    file_change, and its usage and final message come from the JSONL."""
    script = [{"tool_calls": [{"name": "exec_command", "arguments": {"cmd": CODEX_PATCH}}]},
              {"reply": "Done: greet() says hello, world."}]
    with FakeLLM(script) as llm:
        result, inv, repo = run_tool(tmp_path, CodexAdapter(), codex_profile(llm), llm)
        requests = llm.requests
    assert (repo / "hello.py").read_text() == WORLD
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == " M hello.py\n"
    assert result.exit_code == 0 and not result.timed_out and result.error is None
    kinds = [event.kind for event in result.events]
    assert ("file_change", {"path": "hello.py", "kind": "update"}) in [
        (event.kind, event.data) for event in result.events]
    assert kinds[-2:] == ["message", "usage"]
    assert result.events[-2].data["text"] == "Done: greet() says hello, world."
    assert result.usage.requests == 1 and result.usage.input_tokens > 0
    assert [r["path"] for r in requests] == ["/v1/responses", "/v1/responses"]
    assert authorization(requests[0]) == "Bearer ***"  # env_key reached Codex
    assert (inv.attempt_dir / "codex-home" / "config.toml").is_file()


@pytest.mark.parametrize(("script", "dead", "timeout_s", "telltale"), [
    ([{"error": {"status": 429, "message": "Rate limit reached", "retry_after": 1}}], False,
     20.0, "429 Too Many Requests"),
    ([{"reply": "unused"}], True, 20.0, "Connection failed"),
    ([{"stall": 120}], False, 8.0, "idle timeout"),
    ([{"hang": 120}], False, 5.0, "[aidp] codex timed out after 5 s"),
], ids=["429-forever", "dead-server", "stall-mid-stream", "hang-before-headers"])
def test_codex_failures_end_in_time_and_say_why(
    tmp_path: Path, script: list[dict[str, Any]], dead: bool, timeout_s: float, telltale: str,
) -> None:
    """Each failure ends within the step timeout (+ grace): Codex's own turn.failed where it
    has one, aidp's wall clock for a hang before headers; nothing is left running."""
    with FakeLLM(script) as llm:
        profile = codex_profile(llm, closed_port_url() if dead else None)
        result, inv, repo = run_tool(tmp_path, CodexAdapter(), profile, llm, timeout_s=timeout_s)
    assert result.duration_s <= timeout_s + 3.0 + SLACK_S
    text = log_text(tmp_path)
    assert telltale in text
    if not result.timed_out:  # a timeout is the engine's to classify, from the result
        assert failure_class(result, inv, text) is FailureClass.TRANSIENT
    if "hang" in str(script):
        assert result.timed_out
    else:
        assert result.exit_code == 1 and not result.timed_out
        assert [e.data["source"] for e in result.events if e.kind == "error"][-1] == "turn.failed"
    assert (repo / "hello.py").read_text() == GREETING


def test_codex_probe_reports_version_and_endpoint() -> None:
    """probe() runs codex --version and asks the endpoint for its models."""
    with FakeLLM(["unused"]) as llm:
        probe = CodexAdapter().probe("codex", codex_profile(llm), {**os.environ, KEY_ENV: SECRET})
    assert probe.ok and probe.version == "0.169.0" and probe.canary_ok


@pytest.mark.parametrize("key_env", [KEY_ENV, "AIDP_LLM_CRED"], ids=["key-name", "plain-name"])
def test_codex_shell_commands_do_not_see_the_provider_key(tmp_path: Path, key_env: str) -> None:
    """A model-issued ``echo $KEY`` gets nothing back: the generated config keeps the provider
    key (by the profile's api_key_env -- also a name no default pattern matches -- and as
    OPENAI_API_KEY) out of the commands Codex runs, while Codex itself still sends it to the
    provider, and aidp's process token still reaches them."""
    canary = "sk-openai-Canary-7777"
    command = (f'echo "key=${key_env} openai=$OPENAI_API_KEY '
               'token=${AIDP_PROCESS_TOKEN:+set}"')
    script = [{"tool_calls": [{"name": "exec_command", "arguments": {"cmd": command}}]},
              {"reply": "Printed it."}]
    with FakeLLM(script) as llm:
        profile = codex_profile(llm).model_copy(update={"api_key_env": key_env})
        result, _, _ = run_tool(tmp_path, CodexAdapter(), profile, llm,
                                extra_env={key_env: SECRET, "OPENAI_API_KEY": canary})
        requests = llm.requests
    assert result.exit_code == 0 and result.error is None
    assert [r["path"] for r in requests] == ["/v1/responses", "/v1/responses"]
    assert authorization(requests[0]) == "Bearer ***"  # Codex still authenticates
    outputs = [item for item in requests[1]["body"]["input"]
               if isinstance(item, dict) and item.get("type") == "function_call_output"]
    assert len(outputs) == 1
    output = json.dumps(outputs[0])
    assert "key= openai= token=set" in output  # ran, saw neither key, kept aidp's token
    assert SECRET not in output and canary not in output
    assert SECRET not in json.dumps(requests) and canary not in json.dumps(requests)
    assert canary not in log_text(tmp_path)
