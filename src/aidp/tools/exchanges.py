"""The recording of an attempt's model exchanges (``docs/gateway.md``): where it is, reading it
back (replay), and the short form diagnostics, the API and the dashboard show. Stdlib only: the
HTTP stack is not imported for reading a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aidp.exceptions import InputError, NotFoundError

__all__ = ["load_exchanges", "recording_path", "summaries"]

#: Characters of a request or an answer kept in a summary.
SUMMARY_CHARS = 2000


def recording_path(repo: Path, run_id: str, ws_id: str, step_id: str, attempt: int) -> Path:
    """``.aidp/runs/RUN/exchanges/WS/STEP.N.jsonl``."""
    return repo / ".aidp" / "runs" / run_id / "exchanges" / ws_id / f"{step_id}.{attempt}.jsonl"


def load_exchanges(path: Path) -> list[dict[str, Any]]:
    """The exchanges of a recording, in order.

    Raises:
        NotFoundError: no recording at ``path``.
        InputError: a line is not a JSON object (names the file and line).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFoundError(
            f"no recorded model exchanges at {path}",
            hint="only attempts whose tool went through the model gateway are recorded "
            "(not gateway = false, nor attempts before the gateway existed)") from None
    exchanges = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            raise InputError(f"{path}:{number}: not a JSON object (a recorded exchange)")
        exchanges.append(entry)
    return exchanges


def summaries(path: Path, *, last: int | None = None) -> list[dict[str, Any]]:
    """The exchanges of a recording (the ``last`` ones), each as method, path, model, status,
    latency, finding and the start of the request and of the answer; [] when there is none
    (a broken line is skipped)."""
    out: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines[-last:] if last else lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        request = entry.get("request")
        finding = entry.get("finding")
        sent = request if isinstance(request, str) else json.dumps(request, indent=1)
        out.append({
            "method": entry.get("method"), "path": entry.get("path"),
            "model": request.get("model") if isinstance(request, dict) else None,
            "status": entry.get("status"), "latency_ms": entry.get("latency_ms"),
            "finding": (f"{finding.get('code')}: {finding.get('message')}"
                        if isinstance(finding, dict) else None),
            "request": sent[:SUMMARY_CHARS],
            "response": str(entry.get("response") or "")[:SUMMARY_CHARS],
        })
    return out
