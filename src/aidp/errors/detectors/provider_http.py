"""Model-provider errors as the openai SDK, litellm, Aider and Codex print them.

The rules, one finding per code (its first line as message, a line with an HTTP status
preferred). Each line is tried against, in this order: the specific phrases and body codes of
the first five rows; then its HTTP status; then exception names; then generic phrases
("rate limited", "timed out", "overloaded", "Connection error"). The first match wins, so a
429 whose body says ``insufficient_quota`` is permanent, not a rate limit.

=========================  ==========  ======================================================
code                       class       recognised by
=========================  ==========  ======================================================
``insufficient_quota``     permanent   body code ``insufficient_quota``, "exceeded your current
                                       quota", "Quota exceeded", "usage limit"
``context_length``         permanent   ``context_length_exceeded``, ``ContextWindowExceeded``,
                                       "maximum context length", Aider's "has hit a token
                                       limit!"
``model_not_found``        permanent   ``model_not_found``, "model ... does not exist", "Unknown
                                       model", "Invalid model name", "LLM Provider NOT
                                       provided", 404 naming a model
``authentication``         permanent   401, ``AuthenticationError``, ``invalid_api_key``,
                                       "Incorrect API key", "invalid api key", Aider's "not
                                       able to authenticate you"
``permission_denied``      permanent   403, ``PermissionDeniedError``
``not_found``              permanent   another 404, ``NotFoundError``
``bad_request``            permanent   400, 422, ``BadRequestError``,
                                       ``UnprocessableEntityError``
``rate_limit``             transient   429, ``RateLimitError``, "rate limited", "Rate limit
                                       reached", "Too Many Requests", ``rate_limit_exceeded``
``server_error``           transient   5xx, ``InternalServerError``, ``ServiceUnavailableError``,
                                       "overloaded", "high demand", Aider's "servers are down"
``timeout``                transient   408, ``APITimeoutError``, ``litellm.Timeout``, "Request
                                       timed out", "timed out", "stream disconnected"
``connection_error``       transient   ``APIConnectionError``, "Connection error", "Connection
                                       refused", "error sending request"
=========================  ==========  ======================================================

``retry_after`` (on ``rate_limit`` and ``server_error``) is the largest wait the text names:
``Retry-After: 20`` (header), ``retry after 20 seconds`` (Azure), ``try again in 1.8s`` /
``20ms`` / ``6m0s`` (OpenAI), ``retry in 37s``. Aider's own "Retrying in 0.5 seconds..." is its
backoff, not the provider's word, and is not read.

Attempt output only: a check's output is the project's own tests, whose HTTP errors say
nothing about the provider. Codex JSONL lines are left to the codex detector.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from aidp.errors.detectors._common import make_finding, parse_duration_s, strip_ansi
from aidp.errors.finding import AttemptEvidence, FailureClass, Finding
from aidp.errors.hookspecs import hookimpl

NAME = "http"
LINE_MAX = 20_000  # characters of one line that are examined

T, P = FailureClass.TRANSIENT, FailureClass.PERMANENT
_I = re.IGNORECASE

# Phrases and body codes, most specific first; each gives (code, class).
_PHRASES: tuple[tuple[re.Pattern[str], str, FailureClass], ...] = (
    (re.compile(r"insufficient_quota|exceeded your current quota|\bQuota exceeded\b"
                r"|hit your usage limit|usage limit reached", _I), "insufficient_quota", P),
    (re.compile(r"context_length_exceeded|ContextWindowExceeded|maximum context length"
                r"|has hit a token limit!|context window (?:exceeded|is full)"
                r"|larger than the context window", _I), "context_length", P),
    (re.compile(r"model_not_found|\bmodel\b[^.\n]{0,80}\bdoes not exist|Unknown model\b"
                r"|Invalid model name|LLM Provider NOT provided|model[^.\n]{0,40} not found"
                r"(?!\. Defaulting)", _I), "model_not_found", P),
    (re.compile(r"invalid_api_key|Incorrect API key|invalid[ _-]api[ _-]key|\bAuthenticationError\b"
                r"|not able to authenticate you|\b401 Unauthorized\b", _I), "authentication", P),
    (re.compile(r"\bPermissionDeniedError\b|\b403 Forbidden\b"), "permission_denied", P),
)
_STATUS = re.compile(
    r"Error code: (?P<a>\d{3})\b|\bstatus(?:[ _]?code)?[\"']?\s*[:=]?\s*(?P<b>\d{3})\b"
    r"|\bHTTP(?:/\d(?:\.\d)?| Error)? (?P<c>\d{3})\b|\blast status: (?P<d>\d{3})\b"
    r"|\bunexpected status (?P<e>\d{3})\b|\b(?P<f>\d{3}) (?:Too Many Requests|Internal Server "
    r"Error|Bad Gateway|Service Unavailable|Gateway Timeout|Unauthorized|Forbidden|Not Found)\b",
    _I,
)
_EXCEPTIONS: tuple[tuple[re.Pattern[str], str, FailureClass], ...] = (
    (re.compile(r"\b(?:RateLimitError|RouterRateLimitError)\b"), "rate_limit", T),
    (re.compile(r"\b(?:InternalServerError|ServiceUnavailableError|APIStatusError: 5)"),
     "server_error", T),
    (re.compile(r"\b(?:APITimeoutError|litellm\.Timeout)\b"), "timeout", T),
    (re.compile(r"\bAPIConnectionError\b"), "connection_error", T),
    (re.compile(r"\bNotFoundError\b"), "not_found", P),
    (re.compile(r"\b(?:BadRequestError|UnprocessableEntityError)\b"), "bad_request", P),
)
_GENERIC: tuple[tuple[re.Pattern[str], str, FailureClass], ...] = (
    (re.compile(r"rate[ -]limited|\brate limit (?:reached|exceeded)|rate_limit_exceeded"
                r"|Too Many Requests", _I), "rate_limit", T),
    (re.compile(r"\btimed out\b|\btimeout waiting\b|stream disconnected|idle timeout", _I),
     "timeout", T),
    (re.compile(r"servers are down|\boverloaded\b|high demand|Service Unavailable|Bad Gateway",
                _I), "server_error", T),
    (re.compile(r"\bConnection error\b|Connection refused|Connection reset|connection failed"
                r"|error sending request|Failed to connect", _I), "connection_error", T),
)
_TRIGGER = re.compile(
    r"error|rate|quota|limit|model|key|401|403|404|429|5\d\d|timed out|timeout|overloaded"
    r"|demand|connection|requests|authenticat|status|forbidden|unauthorized|unavailable"
    r"|gateway|disconnected|denied|provider|context|servers", _I,
)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# Every rule above needs one of these words (lower case) on its line.
_TRIGGER_WORDS = (
    "error", "rate", "quota", "limit", "model", "key", "401", "403", "404", "429", "timed out",
    "timeout", "overload", "demand", "connect", "too many", "status", "unavailable", "gateway",
    "disconnected", "denied", "authenticat", "unauthorized", "forbidden", "provider", "http",
    "context", "servers",
)
_RETRY_AFTER = re.compile(
    r"retry[- _]after[\"']?\s*[:=]?\s*[\"']?(?P<a>\d+(?:\.\d+)?)(?:\s*(?P<au>ms|milliseconds?"
    r"|s\b|secs?\b|seconds?|m\b|mins?\b|minutes?))?"
    r"|try again in (?P<b>(?:\d+(?:\.\d+)?(?:ms|h|m|s))+|\d+(?:\.\d+)?\s*(?:ms|milliseconds?|"
    r"secs?|seconds?|mins?|minutes?|s|m)\b)"
    r"|\bretry in (?P<c>(?:\d+(?:\.\d+)?(?:ms|h|m|s))+|\d+(?:\.\d+)?\s*(?:seconds?|secs?)\b)",
    _I,
)


@dataclass(frozen=True)
class ProviderError:
    """One recognised provider failure: its code, class, the line and the HTTP status."""

    code: str
    failure_class: FailureClass
    line: str
    status: int | None


def _by_status(status: int, line: str) -> tuple[str, FailureClass] | None:
    if status == 429:
        return "rate_limit", T
    if status in (408,):
        return "timeout", T
    if 500 <= status <= 599:
        return "server_error", T
    if status == 401:
        return "authentication", P
    if status == 403:
        return "permission_denied", P
    if status == 404:
        return ("model_not_found", P) if re.search(r"\bmodel\b", line, _I) else ("not_found", P)
    if status in (400, 422):
        return "bad_request", P
    return None


def classify_line(line: str) -> ProviderError | None:
    """The provider failure one line of output reports, if any."""
    if len(line) > LINE_MAX:
        line = line[:LINE_MAX]
    if not _TRIGGER.search(line):
        return None
    status_match = _STATUS.search(line)
    status = None
    if status_match is not None:
        status = int(next(g for g in status_match.groups() if g is not None))
    for pattern, code, failure_class in _PHRASES:
        if pattern.search(line):
            return ProviderError(code, failure_class, line, status)
    if status is not None and (by_status := _by_status(status, line)) is not None:
        return ProviderError(by_status[0], by_status[1], line, status)
    for pattern, code, failure_class in (*_EXCEPTIONS, *_GENERIC):
        if pattern.search(line):
            return ProviderError(code, failure_class, line, status)
    return None


def retry_after_s(text: str) -> float | None:
    """The largest wait, in seconds, that ``text`` asks for (see the module docstring)."""
    waits: list[float] = []
    for match in _RETRY_AFTER.finditer(text):
        if match.group("a") is not None:
            value = parse_duration_s(match.group("a") + (match.group("au") or "s"))
        else:
            value = parse_duration_s(match.group("b") or match.group("c") or "")
        if value is not None:
            waits.append(value)
    return max(waits) if waits else None


def _candidate_lines(text: str) -> list[str]:
    """The lines of ``text`` holding one of the trigger words, in order, each once.

    Plain substring searches over an ASCII-lowered copy (same length, so offsets agree): a
    multi-megabyte log costs a few passes in C instead of a regex per line.
    """
    lowered = text.translate(_ASCII_LOWER)
    starts: set[int] = set()
    for word in _TRIGGER_WORDS:
        pos = lowered.find(word)
        while pos >= 0:
            line_start = text.rfind("\n", 0, pos) + 1
            starts.add(line_start)
            line_end = text.find("\n", pos)
            if line_end < 0:
                break
            pos = lowered.find(word, line_end)
    lines = []
    for line_start in sorted(starts):
        line_end = text.find("\n", line_start)
        line = text[line_start: None if line_end < 0 else line_end].strip()
        if line:
            lines.append(line)
    return lines


def provider_errors(text: str) -> list[ProviderError]:
    """Every provider failure in ``text``, one per code, in order of first appearance; a line
    with an HTTP status is preferred as the example of its code."""
    chosen: dict[str, ProviderError] = {}
    for line in _candidate_lines(strip_ansi(text)):
        if line.startswith('{"type":'):  # Codex JSONL: the codex detector's
            continue
        error = classify_line(line)
        if error is None:
            continue
        known = chosen.get(error.code)
        if known is None or (known.status is None and error.status is not None):
            chosen[error.code] = error
    return list(chosen.values())


def findings_for(detector: str, text: str, worktree: Path | None,
                 errors: list[ProviderError] | None = None) -> list[Finding]:
    """Findings (of ``detector``) for the provider failures in ``text``."""
    errors = provider_errors(text) if errors is None else errors
    if not errors:
        return []
    wait = retry_after_s(text)
    return [
        make_finding(detector, error.line, error.failure_class, worktree=worktree,
                     code=error.code,
                     retry_after=wait if error.code in ("rate_limit", "server_error") else None)
        for error in errors
    ]


@hookimpl
def aidp_detect_attempt(evidence: AttemptEvidence) -> list[Finding]:
    return findings_for(NAME, evidence.output, evidence.worktree)
