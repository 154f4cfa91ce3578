"""The gateway's answers in replay (``aidp replay``): the recorded exchanges of an attempt served
in order, and a clear refusal of a request the recording does not hold."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aidp.errors.finding import FailureClass, Finding
from aidp.tools.adapter import Usage
from aidp.tools.model_wire import (
    SSEReader,
    error_body,
    error_finding,
    gateway_finding,
    usage_of,
)

__all__ = ["MODEL_PATHS", "Replayed", "replayed"]

#: The paths (under the API's base) whose requests are model calls, recorded and replayed.
MODEL_PATHS = ("/chat/completions", "/responses", "/completions", "/embeddings")


@dataclass(frozen=True)
class Replayed:
    """One answer of a replay: what to send, and what it counts."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    usage: Usage | None = None
    finding: Finding | None = None


def _json(status: int, obj: Any, finding: Finding | None = None) -> Replayed:
    body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return Replayed(status, [("content-type", "application/json"),
                             ("content-length", str(len(body)))], body, finding=finding)


def replayed(recording: Sequence[Mapping[str, Any]], index: int, method: str, path: str,
             mask: Sequence[str] = ()) -> Replayed:
    """The answer to the tool's model request number ``index`` (from 0; -1 for a request that
    is not a model call) from ``recording`` (the exchanges of ``docs/gateway.md``)."""
    if index < 0:
        if method == "GET" and path.startswith("/models"):
            return _json(200, {"object": "list", "data": []})
        return _json(404, error_body(f"aidp replay: {method} {path} is not replayed",
                                     "invalid_request_error", "not_found"))
    recorded = [e for e in recording if e.get("method") == "POST"
                and str(e.get("path", "")).endswith(MODEL_PATHS)]
    if index >= len(recorded) or recorded[index].get("path") != path:
        holds = (f"request {index + 1} of the recording is {recorded[index].get('path')}"
                 if index < len(recorded) else
                 f"the recording holds {len(recorded)} model requests")
        refused = gateway_finding("replay_mismatch", FailureClass.PERMANENT,
                                  f"aidp replay: the tool's request {index + 1} ({method} "
                                  f"{path}) is not in the recording ({holds})")
        return _json(409, error_body(refused.message, "invalid_request_error",
                                     "replay_mismatch"), refused)
    exchange = recorded[index]
    status = int(exchange.get("status") or 502)
    answer = str(exchange.get("response") or "").encode()
    stream = answer.lstrip().startswith((b"data:", b"event:"))
    parsed: Any = None
    if not stream:
        with contextlib.suppress(ValueError):
            parsed = json.loads(answer)
    usage: Usage | None = None
    if stream:
        reader = SSEReader()
        reader.feed(answer + b"\n")
        usage = reader.usage
    elif status < 400:
        usage = usage_of(parsed)
    headers: list[tuple[str, str]] = []
    finding: Finding | None = None
    if status >= 400:
        recorded_finding = exchange.get("finding")
        wait = recorded_finding.get("retry_after") if isinstance(recorded_finding, dict) else None
        if wait:
            headers.append(("retry-after", f"{float(wait):g}"))
        finding = error_finding(status, parsed, dict(headers), mask)
    head = [("content-type", "text/event-stream" if stream else "application/json"),
            ("content-length", str(len(answer))), *headers]
    return Replayed(status, head, answer, usage, finding)
