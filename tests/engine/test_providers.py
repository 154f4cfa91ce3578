"""Recovery against a model provider (aidp's fake OpenAI server and the openai adapter):
Retry-After honoured, breakers that open and are shared by concurrent runs, fallback along a
profile chain, budgets. Waits pass on an injected clock; nothing sleeps for a backoff."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from aidp.config import load_settings
from aidp.core.clock import AutojumpClock
from aidp.engine.orchestrator import drive_run
from aidp.engine.run import create_run
from aidp.model.loader import load_plan
from aidp.resilience.breaker import BreakerPolicy
from aidp.state.breakers import BreakerBook, profile_key
from aidp.state.store import Store
from aidp.testing import FakeLLM
from tests.conftest import Cli

EDIT = "notes/a.md\n```\nhello from the model\n```\n"


def profile(name: str, base_url: str, **extra: Any) -> str:
    adapter = extra.pop("adapter", "openai")
    lines = [f"[tools.{name}]", f'adapter = "{adapter}"', f'base_url = "{base_url}"',
             'model = "fake-model"', 'edit_format = "whole"', "timeout = 20"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()
              if not isinstance(value, dict)]
    for key, value in extra.items():
        if isinstance(value, dict):
            lines.append(f"[tools.{name}.{key}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in value.items()]
    return "\n".join(lines) + "\n"


def plan_text(tool: str, count: int = 1, retry: str = "{max_attempts: 1}") -> str:
    items = "\n".join(f"""
  - id: w{i}
    scope: ["notes/**", "w{i}/**"]
    conflicts_with: [{", ".join(f"w{j}" for j in range(count) if j != i)}]
    steps:
      - id: s
        tool: {tool}
        prompt: Write notes/a.md.
        retry: {retry}""" for i in range(count))
    return "version: 1\nworkstreams:" + items + "\n"


def drive(repo: Path, db_url: str, plan: Path) -> tuple[Any, AutojumpClock, Store, str]:
    store = Store(db_url)
    settings = load_settings(repo)
    run_id = create_run(store, repo, load_plan([plan]), parallel=2, settings=settings)
    clock = AutojumpClock()
    summary = drive_run(store, repo, run_id, settings, clock=clock)
    return summary, clock, store, run_id


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")


def test_retry_after_is_honoured(repo: Path, db_url: str, tmp_path: Path) -> None:
    """429 with Retry-After: 2, three times, then an answer: the step completes after waits of
    at least 2 s each (on the injected clock), and the findings say rate limit."""
    script = [{"error": {"status": 429, "message": "slow down", "retry_after": 2}, "times": 3},
              {"reply": EDIT}]
    with FakeLLM(script) as llm:
        (repo / "aidp.toml").write_text(profile("llm", llm.base_url))
        plan = tmp_path / "plan.yaml"
        plan.write_text(plan_text("llm", retry="{max_attempts: 5, initial_delay: 0.1}"))
        summary, clock, store, run_id = drive(repo, db_url, plan)
        requests = len(llm.requests)
    try:
        assert summary.ok
        assert requests == 4
        delays = [json.loads(e.data)["delay_s"] for e in store.events(run_id)
                  if e.kind == "step.retrying"]
        assert len(delays) == 3 and min(delays) >= 2.0
        # the clock passed each wait (less the few milliseconds the bookkeeping took)
        assert len(clock.jumps) == 3 and min(clock.jumps) >= 1.5
        attempts = store.attempts(run_id)
        assert [a.outcome for a in attempts] == ["failed_transient"] * 3 + ["succeeded"]
        findings = store.findings(run_id)
        assert {f.failure_class for f in findings} == {"transient"}
        assert all(f.retry_after == 2 for f in findings)
    finally:
        store.close()


def test_fallback_runs_on_the_next_healthy_profile(repo: Path, db_url: str,
                                                  tmp_path: Path) -> None:
    """aider -> codex -> openai with the breakers of aider and codex forced open: the step runs
    on openai, and the attempt records the choice and its reason."""
    with FakeLLM([{"reply": EDIT}]) as llm:
        (repo / "aidp.toml").write_text(
            profile("a", llm.base_url + "/a-is-down", fallback=["b"], adapter="aider")
            + profile("b", llm.base_url + "/b-is-down", fallback=["c"], adapter="codex")
            + profile("c", llm.base_url))
        settings = load_settings(repo)
        store = Store(db_url)
        book = BreakerBook(store)
        for name in ("a", "b"):
            policy = BreakerPolicy.from_profile(settings.tools[name])
            for _ in range(policy.failure_threshold):
                admission = book.admit(profile_key(name), policy)
                book.record(profile_key(name), policy, admission, success=False,
                            transient=True)
        store.close()
        plan = tmp_path / "plan.yaml"
        plan.write_text(plan_text("a"))
        summary, _, store, run_id = drive(repo, db_url, plan)
    try:
        assert summary.ok
        (attempt,) = store.attempts(run_id)
        assert attempt.profile == "c" and attempt.outcome == "succeeded"
        assert "a: breaker open" in attempt.choice_reason
        assert "b: breaker open" in attempt.choice_reason
        assert "chose c" in attempt.choice_reason
    finally:
        store.close()


def test_capability_picks_the_best_matching_profile(repo: Path, db_url: str,
                                                    tmp_path: Path) -> None:
    """A step asking for capability code_edit in python runs on the matching profile of the
    highest priority, and the attempt says why."""
    with FakeLLM([{"reply": EDIT}]) as llm:
        (repo / "aidp.toml").write_text(
            profile("low", llm.base_url, capabilities=["code_edit"], priority=1)
            + profile("high", llm.base_url, capabilities=["code_edit"], languages=["python"],
                      priority=5)
            + profile("other", llm.base_url, capabilities=["review"], priority=9))
        plan = tmp_path / "plan.yaml"
        plan.write_text("""version: 1
workstreams:
  - id: w
    scope: ["notes/**"]
    steps:
      - {id: s, capability: code_edit, language: python, prompt: Write notes/a.md.}
""")
        summary, _, store, run_id = drive(repo, db_url, plan)
    try:
        assert summary.ok
        (attempt,) = store.attempts(run_id)
        assert attempt.profile == "high"
        assert "high" in attempt.choice_reason
    finally:
        store.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_budget_stops_further_attempts(repo: Path, db_url: str, tmp_path: Path) -> None:
    """A profile budget of 100 tokens: once spent, the next attempt does not start and the
    step ends with outcome budget_exceeded."""
    with FakeLLM([{"reply": EDIT, "usage": {"input_tokens": 80, "output_tokens": 40}}]) as llm:
        (repo / "aidp.toml").write_text(profile("llm", llm.base_url,
                                                budget={"tokens": 100}))
        plan = tmp_path / "plan.yaml"
        plan.write_text("""version: 1
workstreams:
  - id: w
    scope: ["notes/**"]
    steps:
      - id: s
        tool: llm
        prompt: Write notes/a.md.
        checks: ["false"]
        fix: {max: 3}
""")
        summary, _, store, run_id = drive(repo, db_url, plan)
    try:
        assert not summary.ok
        outcomes = [a.outcome for a in store.attempts(run_id)]
        assert outcomes[-1] == "budget_exceeded" and len(outcomes) == 2
        (step,) = store.steps(run_id)
        assert step.outcome == "budget_exceeded" and "100 tokens" in step.reason
        assert step.failure_class is None
        usage = store.usage(run_id)
        assert sum(r.input_tokens + r.output_tokens for r in usage) == 120
    finally:
        store.close()


def test_dead_provider_opens_the_breaker_across_concurrent_runs(
        cli: Cli, tmp_path: Path) -> None:
    """A provider that always fails with 500: two runs at once, eight steps each, share the
    breaker; it opens after the threshold, the other steps fail fast with circuit_open, and the
    provider saw no more requests than the threshold."""
    with FakeLLM([{"error": {"status": 500, "message": "upstream exploded"}}]) as llm:
        (cli.cwd / "aidp.toml").write_text(profile(
            "llm", llm.base_url,
            breaker={"failure_threshold": 3, "cooldown": 600, "on_open": "fail"}))
        plan = tmp_path / "plan.yaml"
        plan.write_text(plan_text("llm", count=8))
        env = {**cli.env(), "OPENAI_API_KEY": "sk-test-not-a-secret"}
        import subprocess
        procs = [subprocess.Popen(cli.popen_argv("run", str(plan), "--json", "-p", "2"),
                                  cwd=cli.cwd, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, start_new_session=True)
                 for _ in range(2)]
        outs = [proc.communicate(timeout=120) for proc in procs]
        requests = len(llm.requests)
    assert [p.returncode for p in procs] == [1, 1], outs
    assert all(out.strip().startswith("{") for out, _ in outs), outs
    classes: list[str] = []
    for out, _ in outs:
        status = json.loads(cli("status", json.loads(out)["run_id"], "--json",
                                check=True).stdout)
        classes += [s["outcome"] for w in status["workstreams"] for s in w["steps"]]
    assert requests <= 3, requests
    assert classes.count("circuit_open") >= 16 - 3
    listed = json.loads(cli("breakers", "list", "--json", check=True).stdout)
    states = {item["key"]: item["state"] for item in
              (listed if isinstance(listed, list) else listed.get("breakers", []))}
    assert states.get("profile:llm") == "open"
    assert os.environ.get("OPENAI_API_KEY") != "x"  # the test set its key only for the children


CAPABILITY_PLAN = """version: 1
workstreams:
  - id: w
    scope: ["notes/**"]
    steps:
      - {{id: s, capability: {capability}, prompt: Write notes/a.md.}}
"""


def test_capability_waits_while_every_match_is_behind_an_open_breaker(
        repo: Path, db_url: str, tmp_path: Path) -> None:
    """D16: a capability step whose matching profiles all have open breakers waits in
    circuit_open until the earliest reopen time, then runs (like a step naming a profile)."""
    with FakeLLM([{"reply": EDIT}]) as llm:
        (repo / "aidp.toml").write_text(
            profile("a", llm.base_url, capabilities=["write"],
                    breaker={"failure_threshold": 1, "cooldown": 60, "on_open": "wait"})
            + profile("b", llm.base_url, capabilities=["write"],
                      breaker={"failure_threshold": 1, "cooldown": 120, "on_open": "wait"}))
        settings = load_settings(repo)
        store = Store(db_url)
        book = BreakerBook(store)
        reopen: dict[str, float] = {}
        for name in ("a", "b"):
            policy = BreakerPolicy.from_profile(settings.tools[name])
            admission = book.admit(profile_key(name), policy)
            snap = book.record(profile_key(name), policy, admission, success=False,
                               transient=True)
            assert snap.reopen_at is not None
            reopen[name] = snap.reopen_at
        store.close()
        plan = tmp_path / "plan.yaml"
        plan.write_text(CAPABILITY_PLAN.format(capability="write"))
        summary, clock, store, run_id = drive(repo, db_url, plan)
        requests = len(llm.requests)
    try:
        assert summary.ok
        waits = [json.loads(e.data) for e in store.events(run_id)
                 if e.kind == "step.circuit_open"]
        assert waits and waits[0]["next_attempt_at"] == pytest.approx(min(reopen.values()))
        assert "waiting for a breaker to close" in waits[0]["reason"]
        assert clock.jumps and sum(clock.jumps) >= 50
        (attempt,) = store.attempts(run_id)
        assert attempt.profile == "a" and attempt.outcome == "succeeded"
        assert requests == 1
    finally:
        store.close()


def test_capability_nobody_offers_fails_at_once(repo: Path, db_url: str,
                                                tmp_path: Path) -> None:
    """D16: a capability no profile offers (any more: the profile lost it after the run was
    created, which validation refuses up front) fails at once, with nothing to wait for."""
    with FakeLLM([{"reply": EDIT}]) as llm:
        (repo / "aidp.toml").write_text(profile("a", llm.base_url, capabilities=["review"]))
        plan = tmp_path / "plan.yaml"
        plan.write_text(CAPABILITY_PLAN.format(capability="review"))
        store = Store(db_url)
        run_id = create_run(store, repo, load_plan([plan]), parallel=2,
                            settings=load_settings(repo))
        (repo / "aidp.toml").write_text(profile("a", llm.base_url, capabilities=["write"]))
        clock = AutojumpClock()
        summary = drive_run(store, repo, run_id, load_settings(repo), clock=clock)
    try:
        assert not summary.ok
        (step,) = store.steps(run_id)
        assert step.status == "failed" and step.failure_class == "permanent"
        assert "no tool profile offers review" in step.reason
        assert store.attempts(run_id) == [] and clock.jumps == []
        assert not [e for e in store.events(run_id) if e.kind == "step.circuit_open"]
    finally:
        store.close()
