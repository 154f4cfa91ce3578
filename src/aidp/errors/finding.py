"""Findings: one normalized error each, as detectors report them, and the evidence they read.

Pure data shared by detectors, adapters and the engine. A detector imports only this module
(and :mod:`aidp.model`, :mod:`aidp.exceptions`), never the engine.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from aidp.core.states import FailureClass  # re-exported: detector authors import it from here

__all__ = [
    "AttemptEvidence",
    "CheckEvidence",
    "FailureClass",
    "Finding",
    "Severity",
    "fingerprint_of",
]


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


_VOLATILE = re.compile(r"0x[0-9a-fA-F]+|\b\d+(?:\.\d+)?(?:ms|s)?\b|/tmp/[^\s:'\"]+")


def fingerprint_of(detector: str, code: str | None, file: str | None, message: str) -> str:
    """The fingerprint a :class:`Finding` gets by default: 16 hex digits of a hash of the
    detector, code, file and message, with numbers, addresses and ``/tmp`` paths in the message
    masked. Detectors that know more (the worktree's path) normalize their inputs first."""
    basis = "\x1f".join(
        [detector, code or "", file or "", _VOLATILE.sub("#", message.strip())[:500]]
    )
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Finding:
    """One normalized error.

    ``fingerprint`` is stable across runs (no paths of temporary directories, no addresses, no
    timings, no line numbers: the same error moved by an edit keeps its fingerprint), so fix
    loops can dedupe and detect oscillation. ``retry_after`` is seconds, when the tool or the
    provider said how long to wait.
    """

    detector: str
    message: str
    failure_class: FailureClass
    severity: Severity = Severity.ERROR
    file: str | None = None
    line: int | None = None
    column: int | None = None
    code: str | None = None
    retry_after: float | None = None
    fingerprint: str = ""

    def __post_init__(self) -> None:
        if not self.fingerprint:
            object.__setattr__(
                self, "fingerprint",
                fingerprint_of(self.detector, self.code, self.file, self.message),
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "code": self.code,
            "message": self.message,
            "severity": self.severity.value,
            "class": self.failure_class.value,
            "fingerprint": self.fingerprint,
            "retry_after": self.retry_after,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(
            detector=data["detector"], message=data["message"],
            failure_class=FailureClass(data["class"]), severity=Severity(data["severity"]),
            file=data.get("file"), line=data.get("line"), column=data.get("column"),
            code=data.get("code"), retry_after=data.get("retry_after"),
            fingerprint=data.get("fingerprint", ""),
        )


@dataclass(frozen=True)
class AttemptEvidence:
    """What a detector may look at after a tool ran.

    ``output`` is the attempt's log text (capped: head and tail, secrets already masked);
    ``events`` are the adapter's parsed tool events (e.g. Codex JSONL items) as dicts.
    """

    tool: str  # the tool profile name
    adapter: str  # shell, aider, codex, openai, manual, ...
    exit_code: int | None
    signal: int | None
    timed_out: bool
    duration_s: float
    output: str
    worktree: Path | None = None
    log_path: Path | None = None
    events: tuple[dict[str, Any], ...] = ()
    changed_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckEvidence:
    """What a detector may look at after an acceptance check failed.

    ``output`` is the check's own output (stdout and stderr merged, masked, capped);
    ``worktree`` is where it ran, so a detector can read a report file the check wrote
    (e.g. pytest's ``--junitxml``).
    """

    name: str
    command: str
    exit_code: int | None
    signal: int | None
    timed_out: bool
    output: str
    worktree: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
