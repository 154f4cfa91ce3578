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
a check exits 127 (the shell's "command  permanent   ``command-   a typo or a tool not
not found"), saying just that or nothing             not-found``  installed
=======================================  ==========  ===========  =====================
"""

from __future__ import annotations

import re
import shlex
import signal as signals

from aidp.errors.detectors._common import make_finding
from aidp.errors.finding import AttemptEvidence, CheckEvidence, FailureClass, Finding
from aidp.errors.hookspecs import hookimpl

NAME = "process"
_SHELL_SIGNAL_BASE = 128
_NOT_FOUND_EXIT = 127
# dash "sh: 1: NAME: not found", bash "bash: line 1: NAME: command not found", zsh, busybox
_NOT_FOUND = re.compile(r"^(?:\S*sh|\S+): (?:line )?(?:\d+: )?(?P<name>[^:\n]+): "
                        r"(?:command )?not found\s*$", re.M)


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


def command_not_found(evidence: CheckEvidence) -> list[Finding]:
    """A check that exited 127 saying only that its command was not found (or nothing): one
    finding ``command not found: NAME`` (NAME as the shell reported it, else the first word of
    the check's command)."""
    if evidence.exit_code != _NOT_FOUND_EXIT or evidence.signal or evidence.timed_out:
        return []
    output = evidence.output.strip()
    match = _NOT_FOUND.search(output)
    if output and (match is None or len(output.splitlines()) > 3):
        return []  # the command ran and chose 127, or said more than "not found"
    name = match.group("name").strip() if match else _first_word(evidence.command)
    if not name:
        return []
    return [make_finding(NAME, f"command not found: {name}", FailureClass.PERMANENT,
                         code="command-not-found")]


def _first_word(command: str) -> str:
    """The program a shell command line runs: its first word after ``NAME=value`` settings."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    return next((w for w in words if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w)), "")


@hookimpl
def aidp_detect_check(evidence: CheckEvidence) -> list[Finding]:
    return detect(evidence, "check") or command_not_found(evidence)
