"""Honest outcomes: the detectors judge every attempt (an exit code 0 proves nothing), aidp's own
log lines are never evidence, the reason names the finding that decided, and nothing is checked
after the tool timed out. In process, against aidp's fake OpenAI server or shell tools that print
what Aider prints; waits pass on an injected clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aidp.config import load_settings
from aidp.core.clock import AutojumpClock
from aidp.engine.orchestrator import drive_run
from aidp.engine.run import create_run
from aidp.model.loader import load_plan
from aidp.state.breakers import BreakerBook, profile_key
from aidp.state.store import Store
from aidp.testing import FakeLLM
from tests.conftest import git
from tests.engine.test_providers import profile

SHELL = '[tools.sh]\nadapter = "shell"\n'
AIDER_SAYS = ("## SearchReplaceNoExactMatch: This SEARCH block failed to exactly match lines "
              "in notes/a.md\\nOnly 3 reflections allowed, stopping.\\n")


def plan(tool: str, *, run: str | None = None, extra: str = "",
         retry: str = "{max_attempts: 1}") -> str:
    run_line = f"\n        run: {json.dumps(run)}" if run is not None else ""
    return f"""version: 1
workstreams:
  - id: w
    scope: ["notes/**"]
    steps:
      - id: s
        tool: {tool}
        prompt: Write notes/a.md.{run_line}
        retry: {retry}{extra}
"""


def drive(repo: Path, db_url: str, tmp_path: Path, toml: str, plan_text: str
          ) -> tuple[Any, Store, str]:
    (repo / "aidp.toml").write_text(toml)
    path = tmp_path / "plan.yaml"
    path.write_text(plan_text)
    store = Store(db_url)
    settings = load_settings(repo)
    run_id = create_run(store, repo, load_plan([path]), parallel=1, settings=settings)
    summary = drive_run(store, repo, run_id, settings, clock=AutojumpClock())
    return summary, store, run_id


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")


def test_aider_failure_with_exit_0_is_not_a_success(repo: Path, db_url: str,
                                                     tmp_path: Path) -> None:
    """Rule: tool output with error findings fails the attempt whatever the exit code."""
    run = f"mkdir -p notes && echo x > notes/b.md && printf '{AIDER_SAYS}'; exit 0"
    summary, store, run_id = drive(repo, db_url, tmp_path, SHELL, plan("sh", run=run))
    try:
        assert not summary.ok
        (attempt,) = store.attempts(run_id)
        assert attempt.outcome == "failed_permanent"
        codes = {f.code for f in store.findings(run_id)}
        assert {"search-replace-no-match", "reflections-exhausted"} <= codes
        assert (attempt.error or "").startswith("Only 3 reflections allowed")
    finally:
        store.close()


def test_success_with_warnings_only_still_succeeds(repo: Path, db_url: str,
                                                   tmp_path: Path) -> None:
    """Rule: warning or info findings never fail an attempt, and benign output adds none."""
    item = '{{"type":"item.completed","item":{{"type":"error","message":"a hiccup"}}}}'
    run = (f"mkdir -p notes && echo x > notes/a.md && echo '{item}' "
           "&& echo 'all tests passed, no errors'")
    summary, store, run_id = drive(repo, db_url, tmp_path, SHELL, plan("sh", run=run))
    try:
        assert summary.ok
        (attempt,) = store.attempts(run_id)
        assert attempt.outcome == "succeeded"
        assert {f.severity for f in store.findings(run_id)} <= {"warning", "info"}
    finally:
        store.close()


def test_auth_failure_is_permanent_and_counts_against_the_breaker(
        repo: Path, db_url: str, tmp_path: Path) -> None:
    """Rule: a 401 is a permanent failure, named in the reason, and a failure for the breaker."""
    with FakeLLM([{"error": {"status": 401, "message": "Incorrect API key provided"}}]) as llm:
        summary, store, run_id = drive(repo, db_url, tmp_path, profile("llm", llm.base_url),
                                       plan("llm"))
    try:
        assert not summary.ok
        (attempt,) = store.attempts(run_id)
        assert attempt.outcome == "failed_permanent"
        assert "401" in (attempt.error or "")
        assert "exited with code" not in (attempt.error or "").split("(")[0]
        snap = BreakerBook(store).snapshot(profile_key("llm"))
        assert snap is not None and snap.counters.successes == 0
        assert snap.counters.transient_failures + snap.counters.permanent_failures == 1
        assert len(snap.failures) == 1  # it counts towards opening the breaker
    finally:
        store.close()


def test_failed_check_is_not_a_breaker_failure(repo: Path, db_url: str,
                                               tmp_path: Path) -> None:
    """Rule: a failed acceptance check says nothing against the provider: a breaker success."""
    edit = "notes/a.md\n```\nhello from the model\n```\n"
    with FakeLLM([{"reply": edit}]) as llm:
        summary, store, _run_id = drive(repo, db_url, tmp_path, profile("llm", llm.base_url),
                                       plan("llm", extra="\n        checks: [\"false\"]"))
    try:
        assert not summary.ok
        snap = BreakerBook(store).snapshot(profile_key("llm"))
        assert snap is not None and snap.counters.successes == 1 and not snap.failures
    finally:
        store.close()


def test_rate_limit_reason_names_the_finding(repo: Path, db_url: str, tmp_path: Path) -> None:
    """Rule: the failure reason names the deciding finding, not only the exit code."""
    script = [{"error": {"status": 429, "message": "slow down", "retry_after": 2}}]
    with FakeLLM(script) as llm:
        _summary, store, run_id = drive(repo, db_url, tmp_path, profile("llm", llm.base_url),
                                       plan("llm"))
    try:
        (attempt,) = store.attempts(run_id)
        assert attempt.outcome == "failed_transient"
        assert (attempt.error or "").startswith("HTTP 429")
        # aidp's own note about the failure is not read again by the detectors, and the
        # gateway's exact finding replaces the tool's report of the same 429
        [finding] = store.findings(run_id)
        assert (finding.detector, finding.code, finding.retry_after) == (
            "gateway", "rate_limit", 2.0)
    finally:
        store.close()


def test_model_tool_that_changes_nothing_enters_the_fix_loop(
        repo: Path, db_url: str, tmp_path: Path) -> None:
    """Rule: a model tool that changed nothing is NO_CHANGE (fixable) even without
    requires_change; a shell step that changes nothing still succeeds."""
    (repo / "notes").mkdir()
    (repo / "notes" / "a.md").write_text("same\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "notes")
    same = "notes/a.md\n```\nsame\n```\n"
    with FakeLLM([{"reply": same}]) as llm:
        summary, store, run_id = drive(
            repo, db_url, tmp_path, profile("llm", llm.base_url) + SHELL,
            plan("llm", retry="{max_attempts: 1}\n        fix: {max: 1}"))
    try:
        assert not summary.ok
        attempts = store.attempts(run_id)
        assert [a.outcome for a in attempts] == ["no_change", "no_change"]
        assert attempts[1].kind == "fix"
    finally:
        store.close()
    summary, store, run_id = drive(repo, db_url, tmp_path, SHELL, plan("sh", run="true"))
    try:
        assert summary.ok
    finally:
        store.close()


def test_no_checks_after_a_timeout(repo: Path, db_url: str, tmp_path: Path) -> None:
    """Rule: no check runs after the tool timed out (even if it then exited 0)."""
    marker = tmp_path / "checked"
    run = ("trap 'echo Traceback \\(most recent call last\\):; echo \"  File \\\"x.py\\\", "
           "line 1, in f\"; echo KeyboardInterrupt; exit 0' TERM; "
           "mkdir -p notes && echo x > notes/a.md; sleep 30 & wait")
    extra = f"\n        timeout: 1\n        checks: [\"touch {marker}; false\"]"
    _summary, store, run_id = drive(repo, db_url, tmp_path, SHELL, plan("sh", run=run,
                                                                        extra=extra))
    try:
        (attempt,) = store.attempts(run_id)
        assert attempt.outcome == "timed_out"
        assert not marker.exists()
        findings = store.findings(run_id)
        assert {f.detector for f in findings} == {"process"}  # no check, no KeyboardInterrupt
    finally:
        store.close()


def test_aidp_notes_are_not_detector_input() -> None:
    """Rule: aidp's own marker lines never reach the detectors; nor does what follows aidp's
    interrupt."""
    from aidp.engine.diagnosis import detector_text

    text = ("working\n--- [aidp] aider timed out after 15 s ---\n"
            "--- [openai] failed after 0.2s: HTTP 429: rate limited ---\nmore\n"
            "--- [aidp] stopping the tool: sending SIGINT (timeout) ---\n"
            "Traceback (most recent call last):\nKeyboardInterrupt\n")
    assert detector_text(text) == "working\nmore\n"
