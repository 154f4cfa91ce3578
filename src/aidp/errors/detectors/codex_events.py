"""Codex CLI's JSONL events (``codex exec --json``): the turn's failure and error items.

Reads the JSON lines in the attempt's output and the adapter's parsed ``evidence.events``:

* ``{"type": "turn.failed", "error": {"message": ...}}``: the turn failed. The message is
  classified with the provider rules of :mod:`.provider_http` (``exceeded retry limit, last
  status: 429 Too Many Requests`` -> ``rate_limit``, transient); unmatched: class unknown,
  code ``turn-failed``.
* ``{"type": "item.completed", "item": {"type": "error", "message": ...}}`` and top-level
  ``{"type": "error", "message": ...}``: classified the same way; unmatched ones are
  advisories or retry notices and become warnings of class unknown (code ``error-item``).
  The harmless "Model metadata for `x` not found" item, which Codex emits for every model it
  has no metadata for, is ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from aidp.errors.detectors._common import make_finding
from aidp.errors.detectors.provider_http import classify_line, retry_after_s
from aidp.errors.finding import AttemptEvidence, FailureClass, Finding, Severity
from aidp.errors.hookspecs import hookimpl

NAME = "codex"
HARMLESS_PREFIXES = ("Model metadata for ",)


def _jsonl(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith('{"'):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value


def _errors(events: Iterable[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    """(kind, message) for each failure event: kind is ``turn.failed`` or ``error``."""
    for event in events:
        kind = event.get("type")
        message: Any = None
        if kind == "turn.failed":
            error = event.get("error")
            message = error.get("message") if isinstance(error, dict) else error
            if not isinstance(message, str) or not message.strip():
                message = "turn failed"
        elif kind == "error":
            message = event.get("message")
            kind = "error"
        elif kind == "item.completed":
            item = event.get("item")
            if isinstance(item, dict) and item.get("type") == "error":
                message, kind = item.get("message"), "error"
        if not isinstance(message, str) or not message.strip():
            continue
        if kind == "error" and message.startswith(HARMLESS_PREFIXES):
            continue
        yield str(kind), message.strip()


def detect(output: str, events: Iterable[dict[str, Any]],
           worktree: Path | None) -> list[Finding]:
    """Findings for Codex's failure events in ``events`` and in the JSONL of ``output``."""
    source: list[dict[str, Any]] = [e for e in events if isinstance(e, dict)]
    if '"type"' in output:
        source.extend(_jsonl(output))
    findings: list[Finding] = []
    for kind, message in _errors(source):
        recognised = classify_line(message)
        if recognised is not None:
            wait = retry_after_s(message) if recognised.code in ("rate_limit",
                                                                "server_error") else None
            findings.append(make_finding(NAME, message, recognised.failure_class,
                                         worktree=worktree, code=recognised.code,
                                         retry_after=wait))
        elif kind == "turn.failed":
            findings.append(make_finding(NAME, message, FailureClass.UNKNOWN, worktree=worktree,
                                         code="turn-failed"))
        else:
            findings.append(make_finding(NAME, message, FailureClass.UNKNOWN, worktree=worktree,
                                         code="error-item", severity=Severity.WARNING))
    return findings


@hookimpl
def aidp_detect_attempt(evidence: AttemptEvidence) -> list[Finding]:
    return detect(evidence.output, evidence.events, evidence.worktree)
