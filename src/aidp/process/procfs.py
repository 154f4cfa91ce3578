"""Process liveness from /proc. This sandbox reaps orphans late, so a killed process can linger
as a zombie: liveness reads the state letter in ``/proc/PID/stat`` instead of ``kill(pid, 0)``."""

from __future__ import annotations

import os

__all__ = ["is_alive", "is_user_process", "process_start_time", "self_identity"]

#: ``PF_KTHREAD`` in the flags of ``/proc/PID/stat``: a kernel thread.
_PF_KTHREAD = 0x00200000


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    return raw[raw.rfind(")") + 2 :].split()


def is_alive(pid: int, start_time: int | None = None) -> bool:
    """True if ``pid`` runs and is not a zombie; with ``start_time``, also the same process."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X", "x"):
        return False
    return start_time is None or int(fields[19]) == start_time


def is_user_process(pid: int) -> bool:
    """True if ``pid`` is a live process that is not a kernel thread (those show an empty
    environment for good; a user process only while it is in ``execve`` or if it cleared it)."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X", "x"):
        return False
    return not int(fields[6]) & _PF_KTHREAD


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (field 22), to tell reused pids apart."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[19])


def self_identity() -> tuple[int, int | None]:
    """This process's pid and start time."""
    pid = os.getpid()
    return pid, process_start_time(pid)
