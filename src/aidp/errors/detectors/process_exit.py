"""How the process ended: killed by the wall-clock timeout, by SIGKILL, or by another signal.

=======================================  ==========  ===========  =====================
situation                                class       code         why
=======================================  ==========  ===========  =====================
our timeout killed it (``timed_out``)    transient   ``timeout``  a hang or a slow
                                                                  provider; may pass
SIGKILL not from our timeout, or exit    transient   ``SIGKILL``  most likely the OOM
137 (a shell's 128 + 9)                                           killer: memory is
                                                                  shared, try again
another signal (or exit 128 + N)         unknown     ``SIG...``   a crash we cannot
                                                                  judge from here
=======================================  ==========  ===========  =====================
"""

from __future__ import annotations

import signal as signals

from aidp.errors.detectors._common import make_finding
from aidp.errors.finding import AttemptEvidence, CheckEvidence, FailureClass, Finding
from aidp.errors.hookspecs import hookimpl

NAME = "process"
_SHELL_SIGNAL_BASE = 128


def _signal_name(number: int) -> str:
    try:
        return signals.Signals(number).name
    except ValueError:
        return f"signal {number}"


def detect(evidence: AttemptEvidence | CheckEvidence, what: str) -> list[Finding]:
    """Findings from the exit status of a tool (``what`` = "tool") or check."""
    if evidence.timed_out:
        return [make_finding(NAME, f"the {what} was killed by the wall-clock timeout",
                             FailureClass.TRANSIENT, code="timeout")]
    number = evidence.signal
    via_shell = False
    code = evidence.exit_code
    if number is None and code is not None and _SHELL_SIGNAL_BASE < code < _SHELL_SIGNAL_BASE + 65:
        number, via_shell = code - _SHELL_SIGNAL_BASE, True
    if number is None or number <= 0:
        return []
    if via_shell and number != signals.SIGKILL and _signal_name(number).startswith("signal"):
        return []  # an ordinary exit status above 128 that names no signal
    name = _signal_name(number)
    how = f"exit status {code}" if via_shell else name
    if number == signals.SIGKILL:
        return [make_finding(
            NAME, f"the {what} was killed by SIGKILL ({how}), not by the timeout: possibly the "
            "OOM killer", FailureClass.TRANSIENT, code="SIGKILL")]
    return [make_finding(NAME, f"the {what} was killed by {name} ({how})",
                         FailureClass.UNKNOWN, code=name)]


@hookimpl
def aidp_detect_attempt(evidence: AttemptEvidence) -> list[Finding]:
    return detect(evidence, "tool")


@hookimpl
def aidp_detect_check(evidence: CheckEvidence) -> list[Finding]:
    return detect(evidence, "check")
