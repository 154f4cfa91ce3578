"""mypy: one finding per ``error:`` line, **permanent**, with file, line, column (with
``--show-column-numbers``) and the error code in brackets (``assignment``; ``error`` when mypy
prints none). ``note:`` lines are context, not findings.

Shapes: ``file:line: error: message  [code]``, ``file:line:col: error: ...``,
``file:line:col:endline:endcol: error: ...`` (``--show-error-end``), ``file: error: ...``.
"""

from __future__ import annotations

import re
from pathlib import Path

from aidp.errors.detectors._common import code_tool_output, make_finding
from aidp.errors.finding import AttemptEvidence, CheckEvidence, FailureClass, Finding
from aidp.errors.hookspecs import hookimpl

NAME = "mypy"
_LINE = re.compile(
    r"^(?P<file>[^\s:][^:\n]*?\.pyi?)(?::(?P<line>\d+)(?::(?P<col>\d+)(?::\d+:\d+)?)?)?: "
    r"error: (?P<message>.*?)(?:  \[(?P<code>[a-z0-9-]+)\])?[ \t]*$",
    re.M,
)


def detect(text: str, worktree: Path | None) -> list[Finding]:
    """Findings for every mypy error line in ``text``."""
    if ": error: " not in text:
        return []
    return [
        make_finding(NAME, m.group("message"), FailureClass.PERMANENT, worktree=worktree,
                     file=m.group("file"), line=int(m.group("line")) if m.group("line") else None,
                     column=int(m.group("col")) if m.group("col") else None,
                     code=m.group("code") or "error")
        for m in _LINE.finditer(text)
    ]


@hookimpl
def aidp_detect_attempt(evidence: AttemptEvidence) -> list[Finding]:
    text = code_tool_output(evidence)
    return detect(text, evidence.worktree) if text else []


@hookimpl
def aidp_detect_check(evidence: CheckEvidence) -> list[Finding]:
    text = code_tool_output(evidence)
    return detect(text, evidence.worktree) if text else []
