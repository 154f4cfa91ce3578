"""Aider's own failure reports (Aider exits 0 after all of them; see notes/ai-tools.md).

=================================================  ==========  ========================
Aider prints (aider/coders/base_coder.py,          class       code
editblock_coder.py, 0.86)
=================================================  ==========  ========================
``Only 3 reflections allowed, stopping.``          permanent   ``reflections-exhausted``
``The LLM did not conform to the edit format.``    permanent   ``edit-format``
``## SearchReplaceNoExactMatch: This SEARCH        permanent   ``search-replace-no-match``
block failed to exactly match lines in PATH``                  (file = PATH)
``# N SEARCH/REPLACE block(s) failed to match!``   permanent   ``search-replace-failed``
(when no PATH line follows)
=================================================  ==========  ========================

A reflection can repair a failed edit: Aider then prints ``Applied edit to PATH``
(base_coder.py apply_updates()). A no-match finding for PATH is dropped when such a line for the
same PATH follows it; the edit-format and failed-count findings (which name no file) are dropped
when any applied edit follows their last occurrence. The reflection-limit finding always stays.

Permanent because the same prompt to the same model tends to fail the same way: the fix loop
(findings fed back) or the escalation chain is the next move, not a plain retry. Each finding
kept here fails the attempt even when Aider exited 0 (engine/outcome.py blocking_findings),
hence the repaired-edit rule above; whether the attempt changed anything at all is for the
engine to read from git. Provider errors in Aider's output (rate limits, timeouts) are the http
detector's.
"""

from __future__ import annotations

import re
from pathlib import Path

from aidp.errors.detectors._common import make_finding, strip_ansi
from aidp.errors.finding import AttemptEvidence, FailureClass, Finding
from aidp.errors.hookspecs import hookimpl

NAME = "aider"
_REFLECTIONS = re.compile(r"Only (?P<count>\d+) reflections allowed, stopping\.")
_EDIT_FORMAT = re.compile(r"The LLM did not conform to the edit format\.")
_NO_MATCH = re.compile(
    r"^## SearchReplaceNoExactMatch: This SEARCH block failed to exactly match lines in "
    r"(?P<file>.+?)\s*$", re.M)
_FAILED = re.compile(r"^# (?P<count>\d+) SEARCH/REPLACE blocks? failed to match!", re.M)
_APPLIED = re.compile(r"^Applied edit to (?P<file>.+?)\s*$", re.M)


def _last(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    """The last match of ``pattern`` in ``text``."""
    matches = list(pattern.finditer(text))
    return matches[-1] if matches else None


def detect(output: str, worktree: Path | None) -> list[Finding]:
    """Findings for Aider's reflection, edit-format and SEARCH/REPLACE failures."""
    if "reflections" not in output and "SEARCH" not in output and "edit format" not in output:
        return []
    text = strip_ansi(output)
    findings: list[Finding] = []
    if (match := _REFLECTIONS.search(text)) is not None:
        findings.append(make_finding(
            NAME, match.group(0) + " (Aider gave up after repeated failed edits or checks)",
            FailureClass.PERMANENT, code="reflections-exhausted"))
    applied = [(m.start(), m.group("file")) for m in _APPLIED.finditer(text)]

    def repaired(position: int, file: str | None = None) -> bool:
        """An edit (to ``file``, or to any file) was applied after ``position``."""
        return any(at > position and (file is None or name == file) for at, name in applied)

    if (match := _last(_EDIT_FORMAT, text)) is not None and not repaired(match.start()):
        findings.append(make_finding(NAME, match.group(0), FailureClass.PERMANENT,
                                     code="edit-format"))
    files = [m.group("file") for m in _NO_MATCH.finditer(text)]
    unrepaired = [m.group("file") for m in _NO_MATCH.finditer(text)
                  if not repaired(m.start(), m.group("file"))]
    for file in dict.fromkeys(unrepaired):
        findings.append(make_finding(
            NAME, f"a SEARCH block did not match the lines of {file}", FailureClass.PERMANENT,
            worktree=worktree, file=file, code="search-replace-no-match"))
    if (not files and (match := _last(_FAILED, text)) is not None
            and not repaired(match.start())):
        findings.append(make_finding(NAME, match.group(0).lstrip("# "), FailureClass.PERMANENT,
                                     code="search-replace-failed"))
    return findings


@hookimpl
def aidp_detect_attempt(evidence: AttemptEvidence) -> list[Finding]:
    return detect(evidence.output, evidence.worktree)
