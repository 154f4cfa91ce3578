"""Workstreams on the real Aider and the real Codex, through the whole engine, against aidp's
fake OpenAI server: files change, checkpoints are committed, usage is recorded, no request
leaves 127.0.0.1, and a dead provider opens the tool's breaker."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from aidp.testing import FakeLLM
from tests.conftest import Cli, git
from tests.tools.test_realtools import AIDER_DIFF, require

pytestmark = pytest.mark.realtools

KEY = "sk-fake-key-never-logged"
PROXY_NAMES = '["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", ' \
    '"https_proxy", "http_proxy", "no_proxy"]'
CODEX_PATCH = (
    "apply_patch <<'EOF'\n*** Begin Patch\n*** Update File: hello.py\n@@\n def greet():\n"
    "-    return \"hello, world\"\n+    return \"hello, codex\"\n*** End Patch\nEOF\n"
)


def profiles(base_url: str, codex_url: str | None = None) -> str:
    """Profiles ``aider`` and ``codex`` on ``base_url`` (codex on ``codex_url`` if given)."""
    return f"""
[tools.aider]
adapter = "aider"
command = "{require('aider')}"
model = "fake-model"
base_url = "{base_url}"
api_key_env = "AIDP_TEST_LLM_KEY"
env = {PROXY_NAMES}
timeout = "90s"

[tools.codex]
adapter = "codex"
command = "{require('codex')}"
model = "fake-model"
base_url = "{codex_url or base_url}"
api_key_env = "AIDP_TEST_LLM_KEY"
env = {PROXY_NAMES}
timeout = "90s"

[tools.codex.breaker]
failure_threshold = 1
cooldown = 600
on_open = "fail"
"""


def run(cli: Cli, llm: FakeLLM, plan: Path) -> tuple[int, dict[str, Any], str]:
    env = {**cli.env(), **llm.proxy_env(), "AIDP_TEST_LLM_KEY": KEY}
    import subprocess

    proc = subprocess.run(cli.popen_argv("run", str(plan), "--json"), cwd=cli.cwd, env=env,
                          capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stderr, proc.stderr
    summary = json.loads(proc.stdout)
    status = json.loads(cli("status", summary["run_id"], "--json", check=True).stdout)
    return proc.returncode, status, proc.stderr


def test_aider_then_codex_edit_and_checkpoint(cli: Cli, tmp_path: Path) -> None:
    """Step one on Aider, step two on Codex: each edit lands in its own checkpoint commit with
    trailers, usage is recorded per profile, the key stays out of logs, no stray request."""
    hello(cli)
    script = [{"reply": AIDER_DIFF, "usage": {"input_tokens": 120, "output_tokens": 30}},
              {"tool_calls": [{"name": "exec_command", "arguments": {"cmd": CODEX_PATCH}}]},
              {"reply": "Done.", "usage": {"input_tokens": 200, "output_tokens": 10}}]
    with FakeLLM(script) as llm:
        (cli.cwd / "aidp.toml").write_text(profiles(llm.base_url))
        plan = tmp_path / "plan.yaml"
        plan.write_text("""version: 1
workstreams:
  - id: greet
    scope: ["hello.py"]
    steps:
      - {id: world, tool: aider, prompt: "Make greet() say hello, world.", requires_change: true,
         checks: ["grep -q 'hello, world' hello.py"]}
      - {id: codex, tool: codex, depends_on: [world], prompt: "Make greet() say hello, codex.",
         requires_change: true, checks: ["grep -q 'hello, codex' hello.py"]}
""")
        code, status, stderr = run(cli, llm, plan)
        stray, paths = list(llm.stray), [r["path"] for r in llm.requests]
    assert code == 0, stderr
    assert stray == []
    assert paths[0] == "/v1/chat/completions" and paths[1:] == ["/v1/responses"] * 2
    ws = status["workstreams"][0]
    branch = ws["branch"]
    assert git(cli.cwd, "show", f"{branch}:hello.py").strip().endswith('"hello, codex"')
    log = git(cli.cwd, "log", "--format=%(trailers:key=Aidp-Step,valueonly)", f"{branch}",
              "-2").split()
    assert log == ["codex", "world"]
    steps = {s["id"]: s for s in ws["steps"]}
    world, codex = steps["world"]["attempt_list"][-1], steps["codex"]["attempt_list"][-1]
    assert (world["profile"], world["outcome"]) == ("aider", "succeeded")
    assert (codex["profile"], codex["outcome"]) == ("codex", "succeeded")
    assert world["usage"]["input_tokens"] > 0 and codex["usage"]["input_tokens"] > 0
    usage = json.loads(cli("usage", status["run_id"], "--json", check=True).stdout)
    assert set(usage["profiles"]) == {"aider", "codex"}
    logs = "".join(p.read_text(errors="replace")
                   for p in (cli.cwd / ".aidp" / "runs").rglob("*.log"))
    assert KEY not in logs


def test_dead_provider_is_transient_and_opens_codex_breaker(cli: Cli, tmp_path: Path) -> None:
    """Codex against a server that is gone: the attempt ends at once, is classified transient,
    and the breaker of profile codex opens (threshold 1), so the next step fails fast."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    with FakeLLM(["unused"]) as llm:
        (cli.cwd / "aidp.toml").write_text(profiles(dead))
        plan = tmp_path / "plan.yaml"
        plan.write_text("""version: 1
workstreams:
  - id: a
    scope: ["a/**"]
    steps: [{id: s, tool: codex, prompt: "Write a/x."}]
  - id: b
    depends_on: [a]
    scope: ["b/**"]
    steps: [{id: s, tool: codex, prompt: "Write b/x."}]
  - id: c
    scope: ["c/**"]
    conflicts_with: [a]
    steps: [{id: s, tool: codex, prompt: "Write c/x."}]
""")
        code, status, stderr = run(cli, llm, plan)
        stray = list(llm.stray)
    assert code == 1, stderr
    assert stray == []
    steps = {w["id"]: w["steps"][0] for w in status["workstreams"]}
    first = [s for s in steps.values() if s["attempt_list"]]
    assert len(first) == 1, steps
    (attempt,) = first[0]["attempt_list"]
    assert attempt["failure_class"] == "transient", attempt
    assert any(s["outcome"] == "circuit_open" for s in steps.values()), steps
    listed = json.loads(cli("breakers", "list", "--json", check=True).stdout)
    items = listed if isinstance(listed, list) else listed.get("breakers", [])
    assert {i["key"]: i["state"] for i in items}.get("profile:codex") == "open"


QUOTED_ERRORS = (
    "Earlier the log said: The API provider is not able to authenticate you. Check your API "
    "key.\nlitellm.AuthenticationError: Error code: 401 - 401 Unauthorized\n"
    "## SearchReplaceNoExactMatch: This SEARCH block failed to exactly match lines in hello.py\n"
    "Only 3 reflections allowed, stopping.\nThat is fixed now:\n\n"
)


def test_aider_reply_quoting_errors_still_succeeds(cli: Cli, tmp_path: Path) -> None:
    """A model reply that quotes a 401, Aider's authentication message, a failed SEARCH block
    and the reflection limit (Aider echoes the reply into its output) is the model's text, not
    Aider's error: the edit is applied, the attempt succeeds, no error finding is recorded."""
    hello(cli)
    with FakeLLM([{"reply": QUOTED_ERRORS + AIDER_DIFF}]) as llm:
        (cli.cwd / "aidp.toml").write_text(profiles(llm.base_url))
        plan = tmp_path / "plan.yaml"
        plan.write_text("""version: 1
workstreams:
  - id: greet
    scope: ["hello.py"]
    steps:
      - {id: world, tool: aider, prompt: "Make greet() say hello, world.",
         retry: {max_attempts: 1}}
""")
        code, status, stderr = run(cli, llm, plan)
    logs = "".join(p.read_text(errors="replace")
                   for p in (cli.cwd / ".aidp" / "runs").rglob("*.log"))
    assert "not able to authenticate you" in logs  # Aider did echo the reply
    assert code == 0, (stderr, logs)
    (step,) = status["workstreams"][0]["steps"]
    assert [a["outcome"] for a in step["attempt_list"]] == ["succeeded"]
    findings = json.loads(cli("findings", status["run_id"], "--json", check=True).stdout)
    assert findings["findings"] == []


HELLO_PLAN = """version: 1
workstreams:
  - id: greet
    scope: ["hello.py"]
    steps:
      - {id: world, tool: aider, prompt: "Make greet() say hello, world.",
         retry: {max_attempts: 1}}
"""


def hello(cli: Cli) -> None:
    (cli.cwd / "hello.py").write_text('def greet():\n    return "hello"\n')
    git(cli.cwd, "add", "-A")
    git(cli.cwd, "commit", "-qm", "hello")


def test_aider_search_block_matching_nothing_fails_the_step(cli: Cli, tmp_path: Path) -> None:
    """A1: Aider exits 0 after its SEARCH block matched nothing 4 times and "Only 3 reflections
    allowed, stopping."; aidp records a permanent failure with those findings, no checkpoint."""
    hello(cli)
    wrong = AIDER_DIFF.replace('    return "hello"\n=', '    return "goodbye"\n=')
    with FakeLLM([{"reply": wrong}] * 4) as llm:
        (cli.cwd / "aidp.toml").write_text(profiles(llm.base_url))
        plan = tmp_path / "plan.yaml"
        plan.write_text(HELLO_PLAN)
        code, status, stderr = run(cli, llm, plan)
    assert code == 1, stderr
    (step,) = status["workstreams"][0]["steps"]
    assert [a["outcome"] for a in step["attempt_list"]] == ["failed_permanent"], step
    branch = status["workstreams"][0]["branch"]
    assert git(cli.cwd, "rev-parse", branch) == git(cli.cwd, "rev-parse", "HEAD")  # no commit
    findings = json.loads(cli("findings", status["run_id"], "--json", check=True).stdout)
    codes = {f["code"] for f in findings["findings"]}
    assert {"search-replace-no-match", "reflections-exhausted"} <= codes, findings


def test_aider_401_is_permanent_and_opens_the_breaker(cli: Cli, tmp_path: Path) -> None:
    """A1: the provider answers 401 and Aider exits 0; aidp records a permanent failure whose
    finding names authentication, and the endpoint's breaker counts it (threshold 1: open)."""
    hello(cli)
    error = {"error": {"status": 401, "message": "Incorrect API key provided"}}
    with FakeLLM([error] * 4) as llm:
        (cli.cwd / "aidp.toml").write_text(
            profiles(llm.base_url) + '\n[tools.aider.breaker]\nfailure_threshold = 1\n'
            'cooldown = 600\non_open = "fail"\n')
        plan = tmp_path / "plan.yaml"
        plan.write_text(HELLO_PLAN)
        code, status, stderr = run(cli, llm, plan)
    assert code == 1, stderr
    (step,) = status["workstreams"][0]["steps"]
    (attempt,) = step["attempt_list"]
    assert (attempt["outcome"], attempt["failure_class"]) == ("failed_permanent", "permanent")
    findings = json.loads(cli("findings", status["run_id"], "--json", check=True).stdout)
    assert "authentication" in {f["code"] for f in findings["findings"]}, findings
    listed = json.loads(cli("breakers", "list", "--json", check=True).stdout)
    items = listed if isinstance(listed, list) else listed.get("breakers", [])
    assert {i["key"]: i["state"] for i in items}.get("profile:aider") == "open", items


def test_best_of_aider_codex_and_openai_keeps_the_smallest_passing_edit(
        cli: Cli, tmp_path: Path) -> None:
    """One best-of-3 round of the real Aider, the real Codex and the openai adapter, each
    against its own fake provider, at once: openai's edit fails the check, Codex's passes with
    a docstring more, Aider's passes with the smallest diff and wins; every provider saw its
    own requests only, and the run's usage is the three candidates'."""
    hello(cli)
    wordy = ("apply_patch <<'EOF'\n*** Begin Patch\n*** Update File: hello.py\n@@\n def greet():\n"
             "+    \"\"\"Greet the world.\"\"\"\n-    return \"hello\"\n"
             "+    return \"hello, world\"\n*** End Patch\nEOF\n")
    scripts = {
        "aider": [{"reply": AIDER_DIFF, "usage": {"input_tokens": 120, "output_tokens": 30}}],
        "codex": [{"tool_calls": [{"name": "exec_command", "arguments": {"cmd": wordy}}]},
                  {"reply": "Done.", "usage": {"input_tokens": 200, "output_tokens": 10}}],
        "llm": [{"reply": "hello.py\n```\ndef greet():\n    return 1\n```\n",
                 "usage": {"input_tokens": 90, "output_tokens": 15}}],
    }
    servers = {name: FakeLLM(script) for name, script in scripts.items()}
    for server in servers.values():
        server.__enter__()
    try:
        toml = profiles(servers["aider"].base_url, servers["codex"].base_url) + (
            f'\n[tools.llm]\nadapter = "openai"\nmodel = "fake-model"\nedit_format = "whole"'
            f'\nbase_url = "{servers["llm"].base_url}"\napi_key_env = "AIDP_TEST_LLM_KEY"\n')
        (cli.cwd / "aidp.toml").write_text(toml)
        plan = tmp_path / "plan.yaml"
        plan.write_text("""version: 1
workstreams:
  - id: greet
    scope: ["hello.py"]
    steps:
      - id: world
        prompt: "Make greet() say hello, world."
        best_of: {n: 3, profiles: [aider, codex, llm]}
        checks: ["python3 -c 'import hello; assert hello.greet() == \\"hello, world\\"'"]
""")
        code, status, stderr = run(cli, servers["aider"], plan)
        requests = {name: len(server.requests) for name, server in servers.items()}
        stray = [s for server in servers.values() for s in server.stray]
    finally:
        for server in servers.values():
            server.__exit__(None, None, None)
    assert code == 0, stderr
    assert stray == []
    assert requests["aider"] == 1 and requests["codex"] == 2 and requests["llm"] == 1
    (step,) = status["workstreams"][0]["steps"]
    verdicts = {a["profile"]: (a["candidate"]["verdict"], a["candidate"]["reason"])
                for a in step["attempt_list"]}
    assert verdicts["aider"][0] == "won", verdicts
    assert verdicts["codex"] == ("lost", "lost to candidate 1: larger diff (3 vs 2 lines)")
    assert verdicts["llm"][0] == "failed"
    branch = status["workstreams"][0]["branch"]
    assert git(cli.cwd, "show", f"{branch}:hello.py") == 'def greet():\n    return "hello, world"\n'
    usage = json.loads(cli("usage", status["run_id"], "--json", check=True).stdout)
    assert set(usage["profiles"]) == {"aider", "codex", "llm"}
