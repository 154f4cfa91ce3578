"""Runs whose model tool (the ``openai`` adapter, in process) goes through the model gateway:
exact usage and cost per attempt, the exchanges recorded with the attempt, the key only in the
gateway's upstream requests, ``gateway = false`` as the escape hatch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aidp.testing import FakeLLM
from tests.engine.test_honest_outcomes import drive, plan
from tests.engine.test_providers import profile

KEY = "sk-canary-gw-7d1e0a9c4b2f4e6a8c0d2e4f"
EDIT = "notes/a.md\n```\nhello from the model\n```\n"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIDP_TEST_GW_KEY", KEY)


def test_usage_cost_and_exchanges_come_from_the_gateway(repo: Path, db_url: str,
                                                        tmp_path: Path) -> None:
    script = [{"reply": EDIT, "usage": {"input_tokens": 1200, "output_tokens": 300,
                                        "cached_tokens": 200}}]
    toml = profile("llm", "BASE", api_key_env="AIDP_TEST_GW_KEY",
                   prices={"input": 2.0, "output": 10.0, "cached_input": 0.5},
                   rate_limit={"requests_per_minute": 100, "tokens_per_minute": 6000})
    with FakeLLM(script, api_key=KEY) as llm:
        summary, store, run_id = drive(repo, db_url, tmp_path,
                                       toml.replace("BASE", llm.base_url), plan("llm"))
        requests = list(llm.requests)
    try:
        assert summary.ok
        (attempt,) = store.attempts(run_id)
        assert (attempt.input_tokens, attempt.output_tokens, attempt.cached_tokens,
                attempt.requests) == (1200, 300, 200, 1)
        assert attempt.cost_usd == pytest.approx((1000 * 2.0 + 200 * 0.5 + 300 * 10.0) / 1e6)
        # the profile's rate limit is a bucket in the store (shared by every process on it):
        # one request taken, and the tokens the answer really cost
        buckets = {r.kind: r.level for r in store.read("SELECT * FROM rate_buckets")}
        # (refilled since: 100 tokens and 1.7 requests a second)
        assert 99 <= buckets["requests"] < 100
        assert 6000 - 1500 <= buckets["tokens"] <= 6000 - 1500 + 500
    finally:
        store.close()
    # the provider took the real key (it answers 401 to anything else) ...
    assert len(requests) == 1
    # ... and the exchange is kept with the attempt, the key nowhere under .aidp/
    [record] = (repo / ".aidp" / "runs" / run_id / "exchanges" / "w").glob("s.1.jsonl")
    assert "hello from the model" in record.read_text()
    for path in (repo / ".aidp").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_a_budget_spent_inside_the_attempt_is_budget_exceeded(repo: Path, db_url: str,
                                                              tmp_path: Path) -> None:
    """The openai adapter makes one request per attempt: the budget is spent by the first, so
    the fix attempt's request is refused by the gateway before the provider sees it... or the
    attempt is not started at all. Either way the step ends budget_exceeded, one request."""
    script = [{"reply": EDIT, "usage": {"input_tokens": 900, "output_tokens": 200}}]
    toml = profile("llm", "BASE", api_key_env="AIDP_TEST_GW_KEY")
    with FakeLLM(script, api_key=KEY) as llm:
        summary, store, run_id = drive(
            repo, db_url, tmp_path, toml.replace("BASE", llm.base_url),
            plan("llm", extra="\n        checks: [\"false\"]\n        budget: {tokens: 1000}"
                 "\n        fix: {max: 3}"))
        requests = len(llm.requests)
    try:
        assert not summary.ok
        (step,) = store.steps(run_id)
        assert step.outcome == "budget_exceeded"
        assert "budget of 1000 tokens is spent (1100)" in (step.reason or "")
    finally:
        store.close()
    assert requests == 1


def test_gateway_false_talks_to_the_provider_directly(repo: Path, db_url: str,
                                                       tmp_path: Path) -> None:
    toml = profile("llm", "BASE", api_key_env="AIDP_TEST_GW_KEY", gateway=False)
    with FakeLLM([{"reply": EDIT}], api_key=KEY) as llm:
        summary, store, run_id = drive(repo, db_url, tmp_path,
                                       toml.replace("BASE", llm.base_url), plan("llm"))
        requests = len(llm.requests)
    store.close()
    # the tool itself held the key (the provider answers 401 to anything else); nothing
    # went through the gateway
    assert summary.ok and requests == 1
    assert not (repo / ".aidp" / "runs" / run_id / "exchanges").exists()


def test_diagnostics_show_the_failed_attempts_model_exchanges(repo: Path, db_url: str,
                                                              tmp_path: Path) -> None:
    script = [{"error": {"status": 429, "message": "slow down", "retry_after": 2}}]
    toml = profile("llm", "BASE", api_key_env="AIDP_TEST_GW_KEY")
    with FakeLLM(script, api_key=KEY) as llm:
        summary, store, run_id = drive(repo, db_url, tmp_path,
                                       toml.replace("BASE", llm.base_url), plan("llm"))
    store.close()
    assert not summary.ok
    bundle = json.loads((repo / ".aidp" / "runs" / run_id / "diagnostics" / "w" / "s.1.json"
                         ).read_text())
    [exchange] = bundle["exchanges"]
    assert (exchange["method"], exchange["path"], exchange["model"], exchange["status"]) == (
        "POST", "/chat/completions", "fake-model", 429)
    assert exchange["finding"].startswith("rate_limit: HTTP 429 from the provider: slow down")
    assert "slow down" in exchange["response"]
