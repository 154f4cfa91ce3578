"""TypeScript's compiler: one finding per ``error TSnnnn``, **permanent**, with file, line,
column and the code (``TS2322``).

Shapes: ``file(line,col): error TS2322: message`` (plain), ``file:line:col - error TS2322:
message`` (``--pretty``, colours stripped), ``error TS5058: message`` (no file).
"""

from __future__ import annotations

import re
from pathlib import Path

from aidp.errors.detectors._common import code_tool_output, make_finding
from aidp.errors.finding import AttemptEvidence, CheckEvidence, FailureClass, Finding, Severity
from aidp.errors.hookspecs import hookimpl

NAME = "tsc"
_PLAIN = re.compile(
    r"^(?P<file>[^\s(][^(\n]*)\((?P<line>\d+),(?P<col>\d+)\): (?P<severity>error|warning) "
    r"(?P<code>TS\d+): (?P<message>.+)$", re.M)
_PRETTY = re.compile(
    r"^(?P<file>[^\s:][^:\n]*):(?P<line>\d+):(?P<col>\d+) - (?P<severity>error|warning) "
    r"(?P<code>TS\d+): (?P<message>.+)$", re.M)
_GLOBAL = re.compile(r"^(?P<severity>error|warning) (?P<code>TS\d+): (?P<message>.+)$", re.M)


def detect(text: str, worktree: Path | None) -> list[Finding]:
    """Findings for every tsc diagnostic in ``text``."""
    if " TS" not in text:
        return []
    findings: list[Finding] = []
    for pattern in (_PLAIN, _PRETTY, _GLOBAL):
        for m in pattern.finditer(text):
            has_file = "file" in m.groupdict()
            findings.append(make_finding(
                NAME, m.group("message"), FailureClass.PERMANENT, worktree=worktree,
                file=m.group("file") if has_file else None,
                line=int(m.group("line")) if has_file else None,
                column=int(m.group("col")) if has_file else None, code=m.group("code"),
                severity=Severity.WARNING if m.group("severity") == "warning" else Severity.ERROR))
    return findings


@hookimpl
def aidp_detect_attempt(evidence: AttemptEvidence) -> list[Finding]:
    text = code_tool_output(evidence)
    return detect(text, evidence.worktree) if text else []


@hookimpl
def aidp_detect_check(evidence: CheckEvidence) -> list[Finding]:
    text = code_tool_output(evidence)
    return detect(text, evidence.worktree) if text else []
