"""The detector hook specifications (pluggy project ``aidp``) and the marker plugins use.

A detector is any module or object with one or both of these functions marked by
:data:`hookimpl`; a third-party package exposes it under the entry-point group
``aidp.detectors`` (see :mod:`aidp.errors.manager`)::

    # mypkg/detector.py
    from aidp.errors import AttemptEvidence, FailureClass, Finding, hookimpl

    @hookimpl
    def aidp_detect_attempt(evidence: AttemptEvidence) -> list[Finding]:
        if "quota exhausted" in evidence.output:
            return [Finding("mypkg", "quota exhausted", FailureClass.PERMANENT)]
        return []

    # pyproject.toml
    [project.entry-points."aidp.detectors"]
    mypkg = "mypkg.detector"

Rules for implementations: return ``[]`` when nothing is recognised (never a finding of class
unknown just to say "I looked"); never raise on odd input (a raising detector is reported and
skipped, its findings lost); do no network I/O; read files only below ``evidence.worktree``.
"""

from __future__ import annotations

import pluggy

from aidp.errors.finding import AttemptEvidence, CheckEvidence, Finding

__all__ = ["PROJECT", "aidp_detect_attempt", "aidp_detect_check", "hookimpl", "hookspec"]

PROJECT = "aidp"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def aidp_detect_attempt(evidence: AttemptEvidence) -> list[Finding]:  # type: ignore[empty-body]
    """Findings in what a tool left after one attempt (its output, its events, its exit).

    Args:
        evidence: the attempt's output log text, parsed tool events, exit code, signal and
            whether the wall-clock timeout killed it.

    Returns:
        The findings this detector recognises, ``[]`` if none.
    """


@hookspec
def aidp_detect_check(evidence: CheckEvidence) -> list[Finding]:  # type: ignore[empty-body]
    """Findings in the output of one failed acceptance check.

    Args:
        evidence: the check's command, its merged output, exit code, signal, timeout flag and
            the worktree it ran in (for report files such as pytest's ``--junitxml``).

    Returns:
        The findings this detector recognises, ``[]`` if none.
    """
