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

Permanent because the same prompt to the same model tends to fail the same way: the fix loop
(findings fed back) or the escalation chain is the next move, not a plain retry. Whether the
attempt changed anything at all is for the engine to read from git: an edit-format failure
that a reflection then repaired still left these lines in the log. Provider errors in Aider's
output (rate limits, timeouts) are the http detector's.
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
    if (match := _EDIT_FORMAT.search(text)) is not None:
        findings.append(make_finding(NAME, match.group(0), FailureClass.PERMANENT,
                                     code="edit-format"))
    files = [m.group("file") for m in _NO_MATCH.finditer(text)]
    for file in dict.fromkeys(files):
        findings.append(make_finding(
            NAME, f"a SEARCH block did not match the lines of {file}", FailureClass.PERMANENT,
            worktree=worktree, file=file, code="search-replace-no-match"))
    if not files and (match := _FAILED.search(text)) is not None:
        findings.append(make_finding(NAME, match.group(0).lstrip("# "), FailureClass.PERMANENT,
                                     code="search-replace-failed"))
    return findings


@hookimpl
def aidp_detect_attempt(evidence: AttemptEvidence) -> list[Finding]:
    return detect(evidence.output, evidence.worktree)
