"""What the model gateway reads from the OpenAI API's wire: usage (JSON bodies and server-sent
events), prices, ``Retry-After``, and the :class:`~aidp.errors.finding.Finding` for a provider's
error (detector ``gateway``; the codes of ``docs/gateway.md``). Pure functions, no I/O."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import httpcore

from aidp.errors.finding import FailureClass, Finding
from aidp.tools.adapter import Usage

__all__ = ["GATEWAY_DETECTOR", "MAX_RESPONSE_BYTES", "PRICES", "UPSTREAM_ERRORS", "Price",
           "SSEReader", "TooLarge",
           "bearer_token", "cut_finding", "error_body", "error_finding", "gateway_finding",
           "price_of", "priced", "retry_after_s", "usage_of"]

#: The detector name of the gateway's findings.
GATEWAY_DETECTOR = "gateway"
#: Largest answer passed back (the stream is cut, with a finding, past it).
MAX_RESPONSE_BYTES = 64 * 2**20


class TooLarge(Exception):
    """An answer over :data:`MAX_RESPONSE_BYTES`."""


#: What talking to the provider may raise (httpcore's errors; a timeout is one of them).
UPSTREAM_ERRORS: tuple[type[Exception], ...] = (
    httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError,
    httpcore.UnsupportedProtocol, httpcore.ProxyError, OSError)


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input: float
    output: float
    cached_input: float | None = None

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached_tokens, usage.input_tokens)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        return ((usage.input_tokens - cached) * self.input + cached * cached_rate
                + usage.output_tokens * self.output) / 1e6


#: List prices of known models (USD per million tokens: input, output, cached input), as
#: published by OpenAI in 2025; a profile's ``prices`` overrides them. A model not listed
#: (and not priced by its profile) costs 0.0.
PRICES: dict[str, Price] = {
    "gpt-5": Price(1.25, 10.0, 0.125),
    "gpt-5-mini": Price(0.25, 2.0, 0.025),
    "gpt-5-nano": Price(0.05, 0.40, 0.005),
    "gpt-4.1": Price(2.0, 8.0, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "gpt-4o": Price(2.50, 10.0, 1.25),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "o3": Price(2.0, 8.0, 0.50),
    "o4-mini": Price(1.10, 4.40, 0.275),
}


def price_of(model: str | None, override: Price | None = None) -> Price | None:
    """The price of ``model``: the override, else the table's (``openai/gpt-4o`` and dated
    snapshots such as ``gpt-4o-2024-08-06`` find ``gpt-4o``), else None."""
    if override is not None:
        return override
    if not model:
        return None
    name = model.rsplit("/", 1)[-1]
    best = ""
    for known in PRICES:
        if (name == known or name.startswith(known + "-")) and len(known) > len(best):
            best = known
    return PRICES.get(best)


def usage_of(obj: Any) -> Usage | None:
    """The usage an OpenAI answer reports (chat: ``prompt_tokens``; Responses:
    ``input_tokens``), or None."""
    if not isinstance(obj, dict):
        return None
    raw = obj.get("usage")
    if not isinstance(raw, dict):
        return None
    chat = "prompt_tokens" in raw
    details = raw.get("prompt_tokens_details" if chat else "input_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    return Usage(input_tokens=_int(raw.get("prompt_tokens" if chat else "input_tokens")),
                 output_tokens=_int(raw.get("completion_tokens" if chat else "output_tokens")),
                 cached_tokens=_int(cached))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0



def gateway_finding(code: str, failure: FailureClass, message: str,
             retry_after: float | None = None) -> Finding:
    return Finding(detector=GATEWAY_DETECTOR, message=message, failure_class=failure, code=code,
                   retry_after=retry_after)


#: (body code or type) -> (finding code, class): the provider's own words win over the status.
_BODY_CODES: dict[str, tuple[str, FailureClass]] = {
    "insufficient_quota": ("insufficient_quota", FailureClass.PERMANENT),
    "context_length_exceeded": ("context_length", FailureClass.PERMANENT),
    "model_not_found": ("model_not_found", FailureClass.PERMANENT),
    "invalid_api_key": ("authentication", FailureClass.PERMANENT),
    "rate_limit_exceeded": ("rate_limit", FailureClass.TRANSIENT),
}


def _status_code(status: int) -> tuple[str, FailureClass]:
    if status == 401:
        return "authentication", FailureClass.PERMANENT
    if status == 403:
        return "permission_denied", FailureClass.PERMANENT
    if status == 404:
        return "not_found", FailureClass.PERMANENT
    if status == 408:
        return "timeout", FailureClass.TRANSIENT
    if status == 429:
        return "rate_limit", FailureClass.TRANSIENT
    if status >= 500:
        return "server_error", FailureClass.TRANSIENT
    return "bad_request", FailureClass.PERMANENT


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the provider asked to wait: ``retry-after-ms``, else ``Retry-After`` (seconds or
    an HTTP date; a date without a zone is UTC). None when neither says."""
    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = lower.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            if scale != 1.0:
                continue
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                continue
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = when.timestamp() - time.time()
        return max(0.0, seconds) if seconds == seconds else None  # NaN says nothing
    return None


def error_finding(status: int, body: Any, headers: Mapping[str, str],
                  mask: Sequence[str] = ()) -> Finding:
    """The finding on a provider's error answer: its body's code wins over the status; the
    ``mask`` values never appear in the message."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    message = str(error.get("message") or "").strip()
    words = [str(error.get(k)) for k in ("code", "type") if error.get(k)]
    code, failure = next((_BODY_CODES[w] for w in words if w in _BODY_CODES),
                         _status_code(status))
    if code == "not_found" and "model" in message.lower():
        code = "model_not_found"
    wait = retry_after_s(headers) if code in ("rate_limit", "server_error") else None
    text = f"HTTP {status} from the provider" + (f": {message[:500]}" if message else "")
    for secret in mask:  # providers quote the key they refused
        if secret:
            text = text.replace(secret, "***")
    return gateway_finding(code, failure, text, retry_after=wait)


def priced(usage: Usage, price: Price | None) -> Usage:
    return replace(usage, cost_usd=price.cost(usage) if price is not None else 0.0)


def cut_finding(exc: BaseException) -> Finding:
    """The finding on an answer that did not arrive whole."""
    if isinstance(exc, TooLarge):
        return gateway_finding("server_error", FailureClass.TRANSIENT,
                        f"the answer passed {MAX_RESPONSE_BYTES} bytes: cut")
    if isinstance(exc, httpcore.TimeoutException):
        return gateway_finding("timeout", FailureClass.TRANSIENT,
                        "the endpoint stalled mid-answer: stream disconnected")
    return gateway_finding("connection_error", FailureClass.TRANSIENT,
                    f"the endpoint dropped the answer: {type(exc).__name__}")


class SSEReader:
    """Reads server-sent events as they pass: the last usage, a streamed error."""

    def __init__(self) -> None:
        self._buffer = b""
        self.usage: Usage | None = None
        self.error: dict[str, Any] | None = None

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if not data or data == b"[DONE]":
                continue
            try:
                event = json.loads(data)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            kind = event.get("type")
            if kind in ("response.completed", "response.incomplete", "response.failed"):
                usage = usage_of(event.get("response"))
                if usage is not None:
                    self.usage = usage
                if kind == "response.failed":
                    response = event.get("response")
                    err = response.get("error") if isinstance(response, dict) else None
                    self.error = {"error": err if isinstance(err, dict) else {}}
            elif kind == "error" or (kind is None and isinstance(event.get("error"), dict)):
                self.error = event if "error" in event else {"error": event}
            else:
                usage = usage_of(event)
                if usage is not None:
                    self.usage = usage


def bearer_token(headers: Sequence[tuple[str, str]]) -> str | None:
    """The credential a client sent (``Authorization: Bearer``, ``api-key``, ``x-api-key``)."""
    for name, value in headers:
        if name == "authorization":
            scheme, _, rest = value.partition(" ")
            if scheme.lower() == "bearer":
                return rest.strip()
        elif name in ("api-key", "x-api-key"):
            return value.strip()
    return None


def error_body(message: str, kind: str, code: str | None = None) -> bytes:
    """An OpenAI-shaped error body."""
    return json.dumps({"error": {"message": message, "type": kind, "param": None,
                                 "code": code or kind}}).encode()
