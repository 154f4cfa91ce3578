"""The openai adapter against the fake LLM server, editing a real git worktree in tmp_path."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from aidp.config import RateLimit, ToolProfile
from aidp.errors.finding import FailureClass
from aidp.model.scope import compile_scope
from aidp.process.capped_log import CappedLog
from aidp.testing import FakeLLM
from aidp.tools.adapter import AdapterResult, Invocation
from aidp.tools.adapters import OpenAIAdapter
from aidp.tools.ratelimit import reset_limiters
from tests.conftest import git, init_repo

KEY = "sk-adapter-test-secret"
FILES = {"src/app.py": 'def greet():\n    return "hi"\n', "docs/guide.md": "# Guide\n",
         "README.md": "# repo\n", "specs/greeting.md": "Greetings say hello.\n"}
SR = ('src/app.py\n```python\n<<<<<<< SEARCH\n    return "hi"\n=======\n    return "hello"\n'
      '>>>>>>> REPLACE\n```\n')


@pytest.fixture(autouse=True)
def _fresh_limiters() -> Iterator[None]:
    reset_limiters()
    yield
    reset_limiters()


@dataclass
class Workspace:
    """A real repository and a real git worktree of it on branch ``ws``."""

    repo: Path
    worktree: Path
    attempt_dir: Path
    logs: list[CappedLog] = field(default_factory=list)

    def status(self) -> str:
        return git(self.worktree, "status", "--porcelain")

    def invocation(self, llm: FakeLLM | None, *, prompt: str = "Say hello instead of hi.",
                   scope: tuple[str, ...] = ("src/**",), edit_format: str = "diff",
                   rate_limit: RateLimit | None = None, timeout_s: float = 10,
                   cancel: threading.Event | None = None, env: dict[str, str] | None = None,
                   **profile: Any) -> Invocation:
        settings: dict[str, Any] = {"adapter": "openai", "model": "fake-model",
                                    "edit_format": edit_format,
                                    "rate_limit": rate_limit or RateLimit()}
        if llm is not None:
            settings["base_url"] = llm.base_url
        settings.update(profile)
        matcher = compile_scope(scope)
        scope_files = [p for p in git(self.worktree, "ls-files").split() if matcher.matches(p)]
        log = CappedLog(self.attempt_dir / f"attempt{len(self.logs)}.log")
        self.logs.append(log)
        return Invocation(
            run_id="R1", ws_id="ws", step_id="edit", attempt=1, profile_name="gpt",
            profile=ToolProfile(**settings), worktree=self.worktree, prompt=prompt,
            prompt_file=None, scope=list(scope), scope_files=scope_files,
            context_files=[self.worktree / "specs/greeting.md"], command=None,
            values={"repo": str(self.repo)},
            env={"OPENAI_API_KEY": KEY} if env is None else env, secrets=[KEY],
            timeout_s=timeout_s, grace_s=1, attempt_dir=self.attempt_dir, token="t",
            log=log, cancel=cancel or threading.Event(), in_scope=matcher.matches,
        )

    def log_text(self) -> str:
        for log in self.logs:
            log.close()
        return "".join(log.path.read_text() for log in self.logs)


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    repo = init_repo(tmp_path / "repo", FILES)
    worktree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "ws", str(worktree))
    attempt_dir = tmp_path / "attempt"
    attempt_dir.mkdir()
    space = Workspace(repo, worktree, attempt_dir)
    yield space
    space.log_text()


def run(ws: Workspace, llm: FakeLLM | None, **kwargs: Any) -> AdapterResult:
    return OpenAIAdapter().run(ws.invocation(llm, **kwargs))


def test_search_replace_edit_is_applied(ws: Workspace) -> None:
    """A SEARCH/REPLACE reply is applied in the worktree; exit 0, usage and events recorded."""
    with FakeLLM([{"reply": "Done.\n\n" + SR,
                   "usage": {"input_tokens": 120, "output_tokens": 30}}]) as llm:
        result = run(ws, llm)
        body = llm.requests[-1]["body"]
    assert result.exit_code == 0, result.findings
    assert result.findings == ()
    assert (ws.worktree / "src/app.py").read_text() == 'def greet():\n    return "hello"\n'
    assert ws.status() == " M src/app.py\n"
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.requests) == (
        120, 30, 1)
    last = result.events[-1]
    assert (last.kind, last.data["path"], last.data["kind"]) == ("file_change", "src/app.py",
                                                                 "update")
    assert body["model"] == "fake-model"
    system, user = body["messages"]
    assert "<<<<<<< SEARCH" in system["content"] and "src/**" in system["content"]
    assert 'return "hi"' in user["content"] and "Say hello instead of hi." in user["content"]
    assert "Greetings say hello." in user["content"]  # the read-only context file
    assert "# Guide" not in user["content"]  # docs/ is outside the scope


def test_whole_file_edit_is_applied(ws: Workspace) -> None:
    """A whole-file reply replaces the file; a new file in scope is created."""
    reply = ("src/app.py\n```python\ndef greet():\n    return 'whole'\n```\n\n"
             "src/extra.py\n```python\nX = 1\n```\n")
    with FakeLLM([reply]) as llm:
        result = run(ws, llm, edit_format="whole")
        system = llm.requests[-1]["body"]["messages"][0]["content"]
    assert result.exit_code == 0, result.findings
    assert "complete new content" in system
    assert (ws.worktree / "src/app.py").read_text() == "def greet():\n    return 'whole'\n"
    assert (ws.worktree / "src/extra.py").read_text() == "X = 1\n"
    assert sorted(ws.status().splitlines()) == [" M src/app.py", "?? src/extra.py"]


def test_out_of_scope_edit_is_rejected_and_nothing_is_written(ws: Workspace) -> None:
    """One edit outside the scope rejects the whole reply: a finding, git status clean."""
    reply = SR + "\ndocs/guide.md\n```\n<<<<<<< SEARCH\n# Guide\n=======\n# Hacked\n" \
                 ">>>>>>> REPLACE\n```\n"
    with FakeLLM([reply]) as llm:
        result = run(ws, llm)
    assert result.exit_code == 1
    assert [(f.code, f.file, f.failure_class) for f in result.findings] == [
        ("out-of-scope", "docs/guide.md", FailureClass.PERMANENT)]
    assert ws.status() == ""


@pytest.mark.parametrize(("reply", "code"), [
    ("I think the code is fine as it is.", "no-edits"),
    ("src/app.py\n```\n<<<<<<< SEARCH\n    return 'nope'\n=======\nx\n>>>>>>> REPLACE\n```\n",
     "search-not-found"),
    ("src/app.py\n```\n<<<<<<< SEARCH\n    return \"hi\"\n```\n", "malformed-block"),
    ("../escape.py\n```\n<<<<<<< SEARCH\n=======\nx\n>>>>>>> REPLACE\n```\n", "unsafe-path"),
], ids=["no-edits", "not-found", "malformed", "escape"])
def test_bad_replies_become_findings(ws: Workspace, reply: str, code: str) -> None:
    """Malformed, non-matching or unsafe replies: exit 1, a permanent finding, worktree clean."""
    with FakeLLM([reply]) as llm:
        result = run(ws, llm)
    assert result.exit_code == 1
    assert [f.code for f in result.findings][:1] == [code]
    assert all(f.failure_class is FailureClass.PERMANENT for f in result.findings)
    assert ws.status() == ""
    assert code in ws.log_text()


def test_rate_limited_429_is_transient_with_retry_after(ws: Workspace) -> None:
    """HTTP 429 with Retry-After: a transient finding carrying retry_after; one request only."""
    error = {"status": 429, "message": "Rate limit reached for requests", "retry_after": 7}
    with FakeLLM([{"error": error}]) as llm:
        result = run(ws, llm)
        requests = len(llm.requests)
    assert requests == 1  # no retry hidden inside the SDK
    assert result.exit_code == 1
    (finding,) = result.findings
    assert (finding.detector, finding.code, finding.failure_class, finding.retry_after) == (
        "openai-api", "rate-limit", FailureClass.TRANSIENT, 7.0)
    assert result.usage.requests == 1
    assert ws.status() == ""


@pytest.mark.parametrize(("step", "code", "failure"), [
    ({"error": {"status": 401, "message": "Incorrect API key provided"}}, "auth",
     FailureClass.PERMANENT),
    ({"error": {"status": 404, "message": "The model does not exist",
                "code": "model_not_found"}}, "not-found", FailureClass.PERMANENT),
    ({"error": {"status": 429, "message": "You exceeded your current quota",
                "code": "insufficient_quota"}}, "quota", FailureClass.PERMANENT),
    ({"error": {"status": 503, "message": "overloaded"}}, "http-503", FailureClass.TRANSIENT),
    ({"drop": True}, "connection", FailureClass.TRANSIENT),
], ids=["401", "404", "quota", "503", "drop"])
def test_endpoint_errors_map_to_findings(ws: Workspace, step: dict[str, Any], code: str,
                                         failure: FailureClass) -> None:
    """Each endpoint failure maps to one finding with its class; exit 1."""
    with FakeLLM([step]) as llm:
        result = run(ws, llm)
    assert result.exit_code == 1
    assert [(f.code, f.failure_class) for f in result.findings] == [(code, failure)]


def test_hang_times_out(ws: Workspace) -> None:
    """A hanging endpoint: the per-request timeout fires; timed_out and a transient finding."""
    with FakeLLM([{"hang": 60}]) as llm:
        result = run(ws, llm, timeout_s=0.5)
    assert result.timed_out and result.exit_code is None
    assert [(f.code, f.failure_class) for f in result.findings] == [
        ("timeout", FailureClass.TRANSIENT)]


def test_cancel_ends_a_hanging_request(ws: Workspace) -> None:
    """Setting cancel while the request hangs returns a cancelled result at once."""
    cancel = threading.Event()
    with FakeLLM([{"hang": 60}]) as llm:
        threading.Timer(0.3, cancel.set).start()
        began = time.monotonic()
        result = run(ws, llm, timeout_s=30, cancel=cancel)
    assert result.cancelled and result.exit_code is None
    assert time.monotonic() - began < 5


def test_rate_limit_waits_and_honours_cancel(ws: Workspace) -> None:
    """The profile's requests/min limit holds the second attempt back; cancel ends the wait."""
    cancel = threading.Event()
    with FakeLLM([SR, SR]) as llm:
        first = run(ws, llm, rate_limit=RateLimit(requests_per_minute=1))
        threading.Timer(0.3, cancel.set).start()
        second = run(ws, llm, rate_limit=RateLimit(requests_per_minute=1), cancel=cancel)
        requests = len(llm.requests)
    assert first.exit_code == 0
    assert second.cancelled
    assert requests == 1
    assert "rate limit of profile gpt: waiting" in ws.log_text()


def test_template_override(ws: Workspace) -> None:
    """A step.md in <repo>/.aidp/templates replaces the built-in user message template."""
    override = ws.repo / ".aidp" / "templates"
    override.mkdir(parents=True)
    (override / "step.md").write_text("CUSTOM TASK: $prompt\n\n$files\n$context$fix")
    with FakeLLM([SR]) as llm:
        result = run(ws, llm)
        user = llm.requests[-1]["body"]["messages"][1]["content"]
    assert result.exit_code == 0
    assert user.startswith("CUSTOM TASK: Say hello instead of hi.")
    assert "# Task" not in user


def test_bad_template_is_an_error_naming_the_file(ws: Workspace) -> None:
    """An override with an unknown placeholder: error naming the template, no request sent."""
    override = ws.repo / ".aidp" / "templates"
    override.mkdir(parents=True)
    (override / "system.md").write_text("Be nice. $nonsense\n")
    with FakeLLM([SR]) as llm:
        result = run(ws, llm)
        requests = llm.requests
    assert result.exit_code is None and result.error is not None
    assert "system.md" in result.error and "$nonsense" in result.error
    assert requests == []


def test_api_key_is_masked_and_never_logged(ws: Workspace) -> None:
    """The key goes only into the Authorization header: recorded masked, absent from the log."""
    with FakeLLM([{"reply": f"echoing {KEY}\n" + SR}]) as llm:
        result = run(ws, llm)
        headers = llm.requests[-1]["headers"]
    assert result.exit_code == 0
    assert headers["authorization"] == "Bearer ***"
    text = ws.log_text()
    assert KEY not in text and "echoing ***" in text
    assert "[openai] POST" in text and "answered in" in text


def test_missing_api_key_is_an_error(ws: Workspace) -> None:
    """No value for the profile's api_key_env: the tool cannot start; nothing is sent."""
    with FakeLLM([SR]) as llm:
        result = run(ws, llm, env={}, api_key_env="MY_KEY")
        assert llm.requests == []
    assert result.error is not None and "MY_KEY" in result.error


def test_probe(ws: Workspace) -> None:
    """probe: ok when the endpoint lists the model; a canary request otherwise; 401 not ok."""
    adapter = OpenAIAdapter()
    env = {"OPENAI_API_KEY": KEY}
    with FakeLLM(["ok"], model="fake-model") as llm:
        listed = adapter.probe("gpt", ToolProfile(adapter="openai", model="fake-model",
                                                  base_url=llm.base_url), env)
        canary = adapter.probe("gpt", ToolProfile(adapter="openai", model="other",
                                                  base_url=llm.base_url), env)
        paths = [r["path"] for r in llm.requests]
    assert listed.ok and listed.canary_ok and listed.latency_s is not None
    assert canary.ok and "canary" in canary.detail
    assert paths == ["/v1/models", "/v1/models", "/v1/chat/completions"]
    with FakeLLM([{"error": {"status": 401, "message": "bad key"}}]) as llm:
        refused = adapter.probe("gpt", ToolProfile(adapter="openai", model="other",
                                                   base_url=llm.base_url), env)
    assert not refused.ok and refused.canary_ok is False and "401" in refused.detail
    missing = adapter.probe("gpt", ToolProfile(adapter="openai", model="m"), {})
    assert not missing.ok and "OPENAI_API_KEY" in missing.detail


@pytest.mark.parametrize(("headers", "expected"), [
    ({"retry-after": "12"}, 12.0), ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
    ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0), ({"retry-after": "soon"}, None),
    ({}, None),
], ids=["seconds", "millis-first", "past-date", "garbage", "absent"])
def test_retry_after_header_forms(headers: dict[str, str], expected: float | None) -> None:
    """Retry-After in seconds, retry-after-ms, or an HTTP date becomes retry_after seconds."""
    import httpx
    import openai

    from aidp.tools.adapters.openai_api import error_finding

    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(429, headers=headers, request=request)
    finding, timed_out = error_finding(
        openai.RateLimitError("slow down", response=response, body=None), model="m")
    assert not timed_out and finding.code == "rate-limit"
    assert finding.retry_after == expected
