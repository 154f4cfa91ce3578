"""The model gateway against the fake provider, over real loopback HTTP, with the openai SDK as
the tool: usage, the key swap, provider errors, Retry-After, budgets, streaming, recording."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import APIStatusError, AuthenticationError, OpenAI, RateLimitError

from aidp.config import RateLimit
from aidp.errors.finding import FailureClass
from aidp.testing.fake_llm import FakeLLM
from aidp.tools.adapter import Usage
from aidp.tools.gateway import Gateway, Grant, Price
from aidp.tools.model_wire import price_of, retry_after_s
from aidp.tools.ratelimit import reset_limiters

KEY = "sk-canary-5f0e4c2a9b7d4e1f8a6c3b2d"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def gateway() -> Any:
    with Gateway() as gw:
        yield gw


_CLIENTS: list[OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Every client a test made is closed when it ends (an unclosed one's socket would warn,
    at garbage collection, inside whichever test runs then)."""
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def client(ticket: Any) -> OpenAI:
    made = OpenAI(base_url=ticket.base_url, api_key=ticket.token, max_retries=0, timeout=30)
    _CLIENTS.append(made)
    return made


def test_usage_is_exact_for_plain_streamed_and_responses_requests(gateway: Gateway) -> None:
    script = [{"reply": "one", "usage": {"input_tokens": 11, "output_tokens": 3}},
              {"reply": "two two", "usage": {"input_tokens": 20, "output_tokens": 5,
                                             "cached_tokens": 8}},
              {"reply": "three", "usage": {"input_tokens": 7, "output_tokens": 2}}]
    with FakeLLM(script, api_key=KEY) as llm:
        ticket = gateway.open(Grant(upstream=llm.base_url, key=KEY, profile="p",
                                    price=Price(2.0, 8.0, 0.5)))
        tool = client(ticket)
        plain = tool.chat.completions.create(model=llm.model, messages=HI)  # type: ignore[arg-type]
        chunks = list(tool.chat.completions.create(model=llm.model, messages=HI,  # type: ignore[arg-type]
                                                   stream=True))
        events = list(tool.responses.create(model=llm.model, input="hi", stream=True))
        traffic = gateway.close(ticket)
    assert plain.choices[0].message.content == "one"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "two two"
    assert events[-1].type == "response.completed"
    assert traffic.usage == Usage(input_tokens=38, output_tokens=10, cached_tokens=8,
                                  requests=3, cost_usd=pytest.approx(
                                      (30 * 2.0 + 8 * 0.5 + 10 * 8.0) / 1e6))
    assert traffic.findings == [] and traffic.refused is None
    # a streamed chat request is asked for its usage (the provider sends none otherwise)
    assert llm.requests[1]["body"]["stream_options"] == {"include_usage": True}


def test_the_tool_holds_a_token_and_only_the_gateway_the_key(gateway: Gateway) -> None:
    with FakeLLM(["ok"], api_key=KEY) as llm:
        ticket = gateway.open(Grant(upstream=llm.base_url, key=KEY, profile="p"))
        assert KEY not in ticket.token and ticket.base_url.startswith("http://127.0.0.1:")
        client(ticket).chat.completions.create(model=llm.model, messages=HI)  # type: ignore[arg-type]
        assert len(llm.requests) == 1  # the provider took the real key (else: 401)
        gateway.close(ticket)
        # a closed attempt's token, and any other, is refused and never forwarded
        with pytest.raises(AuthenticationError):
            client(ticket).chat.completions.create(model=llm.model, messages=HI)  # type: ignore[arg-type]
        with pytest.raises(AuthenticationError):
            OpenAI(base_url=ticket.base_url, api_key=KEY, max_retries=0).models.list()
        assert len(llm.requests) == 1


def test_a_refused_key_is_a_permanent_authentication_finding(gateway: Gateway) -> None:
    with FakeLLM(["ok"], api_key=KEY) as llm:
        ticket = gateway.open(Grant(upstream=llm.base_url, key="sk-wrong", profile="p"))
        with pytest.raises(AuthenticationError):
            client(ticket).chat.completions.create(model=llm.model, messages=HI)  # type: ignore[arg-type]
        traffic = gateway.close(ticket)
    [finding] = traffic.findings
    assert (finding.code, finding.failure_class, finding.detector) == (
        "authentication", FailureClass.PERMANENT, "gateway")
    assert "401" in finding.message and "sk-wrong" not in finding.message


def test_retry_after_is_a_finding_and_holds_the_next_request(gateway: Gateway) -> None:
    script = [{"error": {"status": 429, "message": "Rate limit reached", "retry_after": 1.5}},
              "fine"]
    with FakeLLM(script) as llm:
        ticket = gateway.open(Grant(upstream=llm.base_url, key=KEY, profile="p"))
        tool = client(ticket)
        with pytest.raises(RateLimitError):
            tool.chat.completions.create(model=llm.model, messages=HI)  # type: ignore[arg-type]
        refused_at = time.monotonic()
        tool.chat.completions.create(model=llm.model, messages=HI)  # type: ignore[arg-type]
        waited = time.monotonic() - refused_at
        traffic = gateway.close(ticket)
    [finding] = traffic.findings
    assert (finding.code, finding.retry_after, finding.failure_class) == (
        "rate_limit", 1.5, FailureClass.TRANSIENT)
    assert waited >= 1.4  # the tool retried at once; the gateway made it wait
    assert traffic.usage.requests == 2


@pytest.mark.parametrize(("status", "code", "expected", "failure"), [
    (429, "insufficient_quota", "insufficient_quota", FailureClass.PERMANENT),
    (400, "context_length_exceeded", "context_length", FailureClass.PERMANENT),
    (404, "model_not_found", "model_not_found", FailureClass.PERMANENT),
    (503, None, "server_error", FailureClass.TRANSIENT),
])
def test_provider_errors_become_findings_by_their_code(
        gateway: Gateway, status: int, code: str | None, expected: str,
        failure: FailureClass) -> None:
    with FakeLLM([{"error": {"status": status, "code": code, "message": "no"}}]) as llm:
        ticket = gateway.open(Grant(upstream=llm.base_url, key=KEY, profile="p"))
        with pytest.raises(APIStatusError):
            client(ticket).chat.completions.create(model=llm.model, messages=HI)  # type: ignore[arg-type]
        [finding] = gateway.close(ticket).findings
    assert (finding.code, finding.failure_class) == (expected, failure)


def test_an_unreachable_endpoint_is_a_transient_connection_error(gateway: Gateway) -> None:
    with FakeLLM(["x"]) as llm:
        dead = llm.base_url
    ticket = gateway.open(Grant(upstream=dead, key=KEY, profile="p"))
    with pytest.raises(APIStatusError) as raised:
        client(ticket).chat.completions.create(model="m", messages=HI)  # type: ignore[arg-type]
    assert raised.value.status_code == 502
    [finding] = gateway.close(ticket).findings
    assert (finding.code, finding.failure_class) == ("connection_error", FailureClass.TRANSIENT)


def test_a_spent_budget_refuses_the_next_request_before_the_provider(gateway: Gateway) -> None:
    refusals: list[str] = []

    def budget(used: Usage, others: object) -> str | None:
        return f"the step budget of 10 tokens is spent ({used.total_tokens})" \
            if used.total_tokens >= 10 else None

    script = [{"reply": "a", "usage": {"input_tokens": 9, "output_tokens": 3}}]
    with FakeLLM(script) as llm:
        ticket = gateway.open(Grant(upstream=llm.base_url, key=KEY, profile="p",
                                    budget=budget, on_refused=refusals.append))
        tool = client(ticket)
        tool.chat.completions.create(model=llm.model, messages=HI)  # type: ignore[arg-type]
        for _ in range(2):
            with pytest.raises(RateLimitError) as raised:
                tool.chat.completions.create(model=llm.model, messages=HI)  # type: ignore[arg-type]
        traffic = gateway.close(ticket)
    assert len(llm.requests) == 1  # the refused requests never reached the provider
    body = raised.value.body
    assert isinstance(body, dict) and body["code"] == "budget_exceeded"
    assert "aidp" in body["message"] and "budget of 10 tokens" in body["message"]
    assert refusals == ["the step budget of 10 tokens is spent (12)"]  # told once
    assert traffic.refused == refusals[0]


def test_a_stream_passes_chunk_by_chunk(gateway: Gateway) -> None:
    with FakeLLM([{"reply": "slow answer here", "stall": 1.5}]) as llm:
        ticket = gateway.open(Grant(upstream=llm.base_url, key=KEY, profile="p"))
        started = time.monotonic()
        stream = client(ticket).chat.completions.create(
            model=llm.model, messages=HI, stream=True)  # type: ignore[arg-type]
        first = next(iter(stream))
        first_at = time.monotonic() - started
        rest = list(stream)
        total = time.monotonic() - started
        gateway.close(ticket)
    assert first.choices and rest
    assert first_at < 1.0 <= total  # the first chunk did not wait for the stall


def test_rate_limit_is_one_bucket_for_every_attempt_of_a_profile(gateway: Gateway) -> None:
    reset_limiters()
    limit = RateLimit(requests_per_minute=60)  # one a second after the first minute's burst
    with FakeLLM(["ok"]) as llm:
        tickets = [gateway.open(Grant(upstream=llm.base_url, key=KEY, profile="shared",
                                      rate_limit=limit)) for _ in range(2)]
        started = time.monotonic()
        done: list[float] = []

        def burst(ticket: Any) -> None:
            for _ in range(31):
                client(ticket).models.list()  # not a model call: never limited
                client(ticket).chat.completions.create(model=llm.model, messages=HI)  # type: ignore[arg-type]
            done.append(time.monotonic() - started)

        threads = [threading.Thread(target=burst, args=(t,)) for t in tickets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        for ticket in tickets:
            gateway.close(ticket)
    reset_limiters()
    # 62 model requests against a 60-per-minute bucket: the last two waited for it to refill
    assert len(done) == 2 and max(done) >= 1.5


def test_exchanges_are_recorded_with_secrets_masked(gateway: Gateway, tmp_path: Path) -> None:
    record = tmp_path / "ex" / "s.1.jsonl"
    with FakeLLM([f"the key is {KEY}"]) as llm:
        ticket = gateway.open(Grant(upstream=llm.base_url, key=KEY, profile="p",
                                    record=record, mask=(KEY,)))
        client(ticket).chat.completions.create(
            model=llm.model, messages=[{"role": "user", "content": f"say {KEY}"}])
        gateway.close(ticket)
    text = record.read_text()
    assert KEY not in text
    [entry] = [json.loads(line) for line in text.splitlines()]
    assert entry["path"] == "/chat/completions" and entry["status"] == 200
    assert entry["request"]["messages"][0]["content"] == "say ***"
    assert "the key is ***" in entry["response"]


def test_only_the_api_is_routed(gateway: Gateway) -> None:
    with FakeLLM(["ok"]) as llm:
        ticket = gateway.open(Grant(upstream=llm.base_url, key=KEY, profile="p"))
        answer = httpx.get(ticket.base_url.removesuffix("/v1") + "/admin",
                           headers={"Authorization": f"Bearer {ticket.token}"})
        gateway.close(ticket)
    assert answer.status_code == 404 and llm.requests == []


def test_prices_and_retry_after_parsing() -> None:
    assert price_of("openai/gpt-4o-2024-08-06") == price_of("gpt-4o")
    assert price_of("gpt-4o-mini") != price_of("gpt-4o")
    assert price_of("fake-model") is None
    assert price_of("fake-model", Price(1, 2)) == Price(1, 2)
    assert retry_after_s({"Retry-After": "4"}) == 4.0
    assert retry_after_s({"retry-after-ms": "1500", "Retry-After": "2"}) == 1.5
    assert retry_after_s({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after_s({}) is None


def test_a_budget_sees_the_other_open_attempts_usage(gateway: Gateway) -> None:
    """A run-wide budget counts what the attempts running beside this one have spent so far:
    the second attempt's first request is refused once the first attempt spent the budget."""
    seen: list[list[tuple[tuple[str, ...], int]]] = []

    def run_budget(own: Usage, others: Any) -> str | None:
        seen.append([(tags, used.total_tokens) for tags, used in others])
        spent = own.total_tokens + sum(used.total_tokens for tags, used in others
                                       if tags[:1] == ("run-1",))
        return f"the run budget of 10 tokens is spent ({spent})" if spent >= 10 else None

    script = [{"reply": "a", "usage": {"input_tokens": 9, "output_tokens": 3}}]
    with FakeLLM(script) as llm:
        first = gateway.open(Grant(upstream=llm.base_url, key=KEY, profile="p",
                                   budget=run_budget, tags=("run-1", "a", "s", "p")))
        second = gateway.open(Grant(upstream=llm.base_url, key=KEY, profile="p",
                                    budget=run_budget, tags=("run-1", "b", "s", "p")))
        client(first).chat.completions.create(model=llm.model, messages=HI)  # type: ignore[arg-type]
        with pytest.raises(RateLimitError):
            client(second).chat.completions.create(model=llm.model, messages=HI)  # type: ignore[arg-type]
        refused = gateway.close(second).refused
        gateway.close(first)
    assert len(llm.requests) == 1
    assert refused == "the run budget of 10 tokens is spent (12)"
    assert seen[-1] == [(("run-1", "a", "s", "p"), 12)]


def test_a_dropped_connection_is_a_transient_finding(gateway: Gateway) -> None:
    """The provider hangs up without answering: the tool sees the failure, the attempt a
    transient ``connection_error`` from the gateway."""
    with FakeLLM([{"drop": True}]) as llm:
        ticket = gateway.open(Grant(upstream=llm.base_url, key=KEY, profile="p"))
        with pytest.raises(APIStatusError) as raised:
            client(ticket).chat.completions.create(model=llm.model, messages=HI)  # type: ignore[arg-type]
        [finding] = gateway.close(ticket).findings
    assert raised.value.status_code == 502
    assert (finding.code, finding.failure_class) == ("connection_error", FailureClass.TRANSIENT)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by itself (openssl), and its key."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                   timeout=60)
    return cert, key


def test_an_https_provider_is_verified_against_ssl_cert_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Upstream over HTTPS: a provider whose certificate chains to ``SSL_CERT_FILE`` (a company's
    own CA) is reached; without it the certificate is refused: a connection error, nothing
    sent."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = _self_signed(tmp_path)
    with FakeLLM(["over tls"], api_key=KEY, tls=(cert, key)) as llm:
        assert llm.base_url.startswith("https://127.0.0.1:")
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        with Gateway() as trusting:
            ticket = trusting.open(Grant(upstream=llm.base_url, key=KEY, profile="p"))
            answer = client(ticket).chat.completions.create(model=llm.model, messages=HI)  # type: ignore[arg-type]
            trusting.close(ticket)
        monkeypatch.delenv("SSL_CERT_FILE")
        with Gateway() as default:
            ticket = default.open(Grant(upstream=llm.base_url, key=KEY, profile="p"))
            with pytest.raises(APIStatusError) as raised:
                client(ticket).chat.completions.create(model=llm.model, messages=HI)  # type: ignore[arg-type]
            [finding] = default.close(ticket).findings
        served = len(llm.requests)
    assert answer.choices[0].message.content == "over tls"
    assert raised.value.status_code == 502 and finding.code == "connection_error"
    assert "CERTIFICATE_VERIFY_FAILED" in finding.message
    assert served == 1


def test_a_failing_budget_check_is_a_502_and_a_finding_not_a_traceback(
        gateway: Gateway, capfd: pytest.CaptureFixture[str]) -> None:
    def broken(own: Usage, others: Any) -> str | None:
        raise RuntimeError("the store is gone")

    with FakeLLM(["never"]) as llm:
        ticket = gateway.open(Grant(upstream=llm.base_url, key=KEY, profile="p", budget=broken))
        with pytest.raises(APIStatusError) as raised:
            client(ticket).chat.completions.create(model=llm.model, messages=HI)  # type: ignore[arg-type]
        [finding] = gateway.close(ticket).findings
        served = len(llm.requests)
    assert raised.value.status_code == 502 and served == 0
    assert finding.message == "aidp gateway failed: RuntimeError: the store is gone"
    assert "Traceback" not in capfd.readouterr().err
