"""Provider errors (openai SDK, litellm, Aider, Codex) and Aider's own failure reports.

Neither the openai package, Aider nor Codex is installed in aidp's environment on this branch,
so most inputs here are CAPTURED TEXT: one-line SDK messages in the tables below follow the
openai SDK's exception ``str()`` (``Error code: <status> - <body dict>``, "Connection error.",
"Request timed out."), and the files in tests/errors/fixtures/ each say where they come from.
The urllib tests run a real client against a real server on 127.0.0.1.
"""

from __future__ import annotations

import http.server
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aidp.errors import FailureClass, classify, default_manager, retry_after
from aidp.errors.detectors import aider_output, codex_events, provider_http

from .conftest import attempt, fixture_text, run_check

P, T, U = FailureClass.PERMANENT, FailureClass.TRANSIENT, FailureClass.UNKNOWN

# CAPTURED TEXT: the openai SDK's str(exc) for each status, as a traceback's last line prints it.
SDK_LINES = [
    pytest.param(
        "openai.RateLimitError: Error code: 429 - {'error': {'message': 'Rate limit reached for "
        "gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Used 29000, "
        "Requested 1500. Please try again in 1.5s.', 'type': 'tokens', 'param': None, "
        "'code': 'rate_limit_exceeded'}}", "rate_limit", T, 1.5, id="sdk-429-try-again-in"),
    pytest.param(
        "openai.RateLimitError: Error code: 429 - {'error': {'message': 'You exceeded your "
        "current quota, please check your plan and billing details.', 'type': "
        "'insufficient_quota', 'param': None, 'code': 'insufficient_quota'}}",
        "insufficient_quota", P, None, id="sdk-429-insufficient-quota"),
    pytest.param(
        "openai.InternalServerError: Error code: 500 - {'error': {'message': 'The server had an "
        "error while processing your request.', 'type': 'server_error'}}",
        "server_error", T, None, id="sdk-500"),
    pytest.param("openai.InternalServerError: Error code: 503 - {'error': {'message': "
                 "'Service Unavailable'}}", "server_error", T, None, id="sdk-503"),
    pytest.param("openai.APIConnectionError: Connection error.", "connection_error", T, None,
                 id="sdk-connection-error"),
    pytest.param("openai.APITimeoutError: Request timed out.", "timeout", T, None,
                 id="sdk-timeout"),
    pytest.param(
        "openai.AuthenticationError: Error code: 401 - {'error': {'message': 'Incorrect API key "
        "provided: sk-****.', 'type': 'invalid_request_error', 'param': None, 'code': "
        "'invalid_api_key'}}", "authentication", P, None, id="sdk-401"),
    pytest.param(
        "openai.NotFoundError: Error code: 404 - {'error': {'message': 'The model `gpt-9` does "
        "not exist or you do not have access to it.', 'type': 'invalid_request_error', "
        "'param': None, 'code': 'model_not_found'}}", "model_not_found", P, None, id="sdk-404"),
    pytest.param(
        "openai.BadRequestError: Error code: 400 - {'error': {'message': \"This model's maximum "
        "context length is 8192 tokens.\", 'type': 'invalid_request_error', 'code': "
        "'context_length_exceeded'}}", "context_length", P, None, id="sdk-400-context"),
    pytest.param("openai.PermissionDeniedError: Error code: 403 - {'error': {'message': "
                 "'Project does not have access'}}", "permission_denied", P, None, id="sdk-403"),
    # CAPTURED TEXT: litellm's exception strings (as Aider prints them)
    pytest.param("litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit "
                 "exceeded. Please retry after 20 seconds.", "rate_limit", T, 20.0,
                 id="litellm-429-retry-after-seconds"),
    pytest.param("litellm.ServiceUnavailableError: ServiceUnavailableError: OpenAIException - "
                 "overloaded", "server_error", T, None, id="litellm-503"),
    pytest.param("litellm.BadRequestError: LLM Provider NOT provided. Pass in the LLM provider "
                 "you are trying to call. You passed model=fake", "model_not_found", P, None,
                 id="litellm-unknown-provider"),
    pytest.param("litellm.RateLimitError: ... headers: {'retry-after': '7'}", "rate_limit", T,
                 7.0, id="litellm-retry-after-header"),
    pytest.param("HTTP/1.1 429 Too Many Requests\nRetry-After: 30", "rate_limit", T, 30.0,
                 id="raw-429-retry-after"),
    pytest.param("Error code: 429 - please try again in 1m30s", "rate_limit", T, 90.0,
                 id="try-again-in-minutes"),
    pytest.param("Error code: 429 - please try again in 250ms", "rate_limit", T, 0.25,
                 id="try-again-in-ms"),
]


@pytest.mark.parametrize("text, code, failure_class, wait", SDK_LINES)
def test_provider_rules(text: str, code: str, failure_class: FailureClass,
                        wait: float | None) -> None:
    """Each provider failure maps to its code and class, with the wait it names."""
    found = provider_http.aidp_detect_attempt(attempt(text, "openai", exit_code=1))
    assert [(f.code, f.failure_class) for f in found] == [(code, failure_class)]
    assert found[0].retry_after == wait


AIDER_FIXTURES = [
    pytest.param("aider_rate_limited.txt", "http", {("rate_limit", T)}, 20.0, id="429"),
    pytest.param("aider_server_down.txt", "http", {("connection_error", T)}, None,
                 id="server-down"),
    pytest.param("aider_timeout.txt", "http", {("timeout", T)}, None, id="timeout"),
    pytest.param("aider_bad_key.txt", "http", {("authentication", P)}, None, id="bad-key"),
    pytest.param("aider_unknown_model.txt", "http", {("model_not_found", P)}, None,
                 id="unknown-model"),
    pytest.param("aider_token_limit.txt", "http", {("context_length", P)}, None,
                 id="token-limit"),
    pytest.param("aider_reflections.txt", "aider", {("reflections-exhausted", P),
                                                    ("edit-format", P),
                                                    ("search-replace-no-match", P)}, None,
                 id="reflections"),
]


@pytest.mark.parametrize("name, detector, expected, wait", AIDER_FIXTURES)
def test_aider_outputs(name: str, detector: str, expected: set[tuple[str, FailureClass]],
                       wait: float | None) -> None:
    """Aider exits 0 on every failure; its log says what happened (captured fixtures)."""
    ev = attempt(fixture_text(name), "aider", exit_code=0)
    detection = default_manager().detect_attempt(ev)
    assert detection.failures == ()
    assert {(f.code, f.failure_class) for f in detection.findings} == expected
    assert {f.detector for f in detection.findings} == {detector}
    assert retry_after(detection.findings) == wait
    assert classify(detection.findings) == next(iter(expected))[1]


def test_aider_reflections_name_the_file(tmp_path: Path) -> None:
    """The SEARCH block that did not match names its file, relative to the worktree."""
    found = aider_output.aidp_detect_attempt(attempt(fixture_text("aider_reflections.txt"),
                                                     worktree=tmp_path))
    no_match = [f for f in found if f.code == "search-replace-no-match"]
    assert [(f.file, f.message) for f in no_match] == [
        ("app.py", "a SEARCH block did not match the lines of app.py")]


def test_aider_no_match_then_applied_is_no_finding(tmp_path: Path) -> None:
    """A no-match for a file is dropped when a later "Applied edit to" that file follows it."""
    found = aider_output.aidp_detect_attempt(attempt(fixture_text("aider_repaired.txt"),
                                                     worktree=tmp_path))
    assert found == []
    assert default_manager().detect_attempt(attempt(fixture_text("aider_repaired.txt"))
                                            ).findings == ()


def test_aider_no_match_with_nothing_applied_is_kept(tmp_path: Path) -> None:
    """A no-match stays when no edit was applied after it (one applied before is no repair)."""
    text = "Applied edit to app.py\n" + fixture_text("aider_reflections.txt").replace(
        "Only 3 reflections allowed, stopping.\n", "")
    found = aider_output.aidp_detect_attempt(attempt(text, worktree=tmp_path))
    assert {(f.code, f.file) for f in found} == {("edit-format", None),
                                                 ("search-replace-no-match", "app.py")}


def test_aider_only_the_repaired_file_is_dropped(tmp_path: Path) -> None:
    """Of two files whose SEARCH blocks failed, only the one applied afterwards is dropped."""
    found = aider_output.aidp_detect_attempt(
        attempt(fixture_text("aider_one_of_two_repaired.txt"), worktree=tmp_path))
    assert [(f.code, f.file) for f in found] == [("search-replace-no-match", "lib.py")]


def test_aider_failed_count_is_dropped_once_an_edit_applies() -> None:
    """The file-less "N blocks failed" finding is dropped when an applied edit follows it."""
    failed = "# 1 SEARCH/REPLACE block failed to match!\n"
    assert [f.code for f in aider_output.detect(failed, None)] == ["search-replace-failed"]
    assert aider_output.detect(failed + "Applied edit to app.py\n", None) == []


def test_aider_reflection_limit_stays_after_an_applied_edit() -> None:
    """The reflection-limit finding is kept even when an edit was applied before the limit."""
    text = "Applied edit to app.py\nOnly 3 reflections allowed, stopping.\n"
    assert [f.code for f in aider_output.detect(text, None)] == ["reflections-exhausted"]


def test_aider_retry_lines_are_not_the_providers_wait() -> None:
    """Aider's own "Retrying in 0.5 seconds..." is not a provider's Retry-After."""
    found = provider_http.aidp_detect_attempt(attempt(fixture_text("aider_server_down.txt")))
    assert [f.retry_after for f in found] == [None]


def test_codex_turn_failed_429_is_transient() -> None:
    """Codex's turn.failed after a 429 is transient; the model-metadata notice is ignored."""
    ev = attempt(fixture_text("codex_rate_limited.jsonl"), "codex", exit_code=1)
    detection = default_manager().detect_attempt(ev)
    assert [(f.detector, f.code, f.failure_class) for f in detection.findings] == [
        ("codex", "rate_limit", T)]
    assert "metadata" not in " ".join(f.message for f in detection.findings)


def test_codex_events_are_read_too() -> None:
    """The adapter's parsed events count like JSONL in the output."""
    events = ({"type": "turn.failed", "error": {"message": "unexpected status 401 Unauthorized: "
                                                           "invalid api key"}},)
    found = codex_events.aidp_detect_attempt(attempt("", "codex", exit_code=1, events=events))
    assert [(f.code, f.failure_class) for f in found] == [("authentication", P)]


@pytest.mark.parametrize("message, code, failure_class", [
    pytest.param("We're currently experiencing high demand, which may cause temporary errors.",
                 "server_error", T, id="high-demand"),
    pytest.param("stream disconnected before completion: idle timeout waiting for SSE",
                 "timeout", T, id="stream-idle"),
    pytest.param("error sending request for url (http://127.0.0.1:9/v1/responses)",
                 "connection_error", T, id="server-down"),
    pytest.param("exceeded retry limit, last status: 500 Internal Server Error",
                 "server_error", T, id="retry-limit-500"),
    pytest.param("Quota exceeded. Check your plan and billing details.", "insufficient_quota",
                 P, id="quota"),
    pytest.param("the sandbox refused something new", "turn-failed", U, id="unrecognised"),
])
def test_codex_turn_failed_messages(message: str, code: str, failure_class: FailureClass) -> None:
    """turn.failed messages follow the provider rules; unrecognised ones are class unknown."""
    line = json.dumps({"type": "turn.failed", "error": {"message": message}},
                      separators=(",", ":"))
    found = codex_events.aidp_detect_attempt(attempt(line, "codex", exit_code=1))
    assert [(f.code, f.failure_class) for f in found] == [(code, failure_class)]


def test_codex_success_has_no_findings() -> None:
    """A completed Codex turn whose items quote errors (command output, the agent's text)
    gives no finding of any detector."""
    ev = attempt(fixture_text("codex_succeeded.jsonl"), "codex", exit_code=0)
    assert default_manager().detect_attempt(ev).findings == ()


# -- a real client against a real local server -------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    status = 429

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Retry-After", "3")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[http.server.HTTPServer]:
    """An HTTP server on 127.0.0.1 answering every GET with the handler's status."""
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


CLIENT = """
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=10)
except urllib.error.HTTPError as exc:
    print("Retry-After:", exc.headers.get("Retry-After"))
    raise
"""


@pytest.mark.parametrize("status, code, failure_class", [
    pytest.param(429, "rate_limit", T, id="429"),
    pytest.param(503, "server_error", T, id="503"),
    pytest.param(401, "authentication", P, id="401"),
])
def test_real_http_client_crash(tmp_path: Path, server: http.server.HTTPServer, status: int,
                                code: str, failure_class: FailureClass) -> None:
    """A real urllib client crashing on a real HTTP error: the http finding's class and the
    traceback's agree, and a printed Retry-After is read."""
    _Handler.status = status
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/models"
    ev = run_check([sys.executable, "-c", CLIENT, url], tmp_path)
    assert f"HTTP Error {status}" in ev.output
    detection = default_manager().detect_attempt(attempt(ev.output, "shell", exit_code=1))
    http_found = [f for f in detection.findings if f.detector == "http"]
    assert [(f.code, f.failure_class) for f in http_found] == [(code, failure_class)]
    assert classify(detection.findings) is failure_class
    if failure_class is T:
        assert retry_after(detection.findings) == 3.0


@given(st.text(max_size=300))
def test_provider_rules_never_crash(text: str) -> None:
    """The provider rules accept any text."""
    for error in provider_http.provider_errors(text):
        assert error.failure_class in (P, T)
    wait = provider_http.retry_after_s(text)
    assert wait is None or wait >= 0
