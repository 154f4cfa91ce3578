"""Stopping ``aidp run`` / ``aidp resume`` the way Ctrl-C does, whatever stops it.

SIGINT raises :class:`KeyboardInterrupt` in the main thread; the orchestrator answers it by
stopping the tools (their process groups) and releasing its lease, leaving the run resumable.
:func:`stop_on_signals` gives SIGTERM (``kill``, ``timeout``), SIGHUP (the terminal closed) and
SIGPIPE (stdout's reader went away: ``aidp run X | head -3``) the same path, by raising
:class:`Interrupted` -- a KeyboardInterrupt that remembers its signal, so ``aidp`` exits with
128+signal (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP, 141 for SIGPIPE).
:class:`GuardedReporter` keeps a closed stdout from turning into a traceback.
"""

from __future__ import annotations

import _thread
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["STOP_SIGNALS", "GuardedReporter", "Interrupted", "stop_on_signals"]

#: The signals that stop a run like Ctrl-C (besides SIGINT itself).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by ``signum``; ``reported``: its resume hint is already printed."""

    def __init__(self, signum: int = signal.SIGINT, *, reported: bool = False) -> None:
        super().__init__(signum)
        self.signum = signum
        self.reported = reported


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside, SIGTERM, SIGHUP and SIGPIPE raise :class:`Interrupted` in the main thread
    (once: a second signal during the clean-up is ignored); the previous handlers come back
    after. Outside the main thread (where handlers cannot be set) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if not fired:
            fired.append(signum)
            raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


class GuardedReporter:
    """A reporter whose output may go away: a closed pipe (EPIPE) stops the run as SIGPIPE
    would (see :func:`stop_on_signals`), any write error mutes it -- never a traceback."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.muted = False

    def _call(self, name: str, *args: Any) -> None:
        if self.muted:
            return
        try:
            getattr(self.inner, name)(*args)
        except OSError as exc:
            self.muted = True
            if isinstance(exc, BrokenPipeError):
                _thread.interrupt_main(signal.SIGPIPE)

    def event(self, kind: str, ws_id: str | None, step_id: str | None,
              data: dict[str, Any]) -> None:
        self._call("event", kind, ws_id, step_id, data)

    def output(self, ws_id: str, step_id: str, data: bytes) -> None:
        self._call("output", ws_id, step_id, data)

    def __getattr__(self, name: str) -> Any:  # close(), stop() ... of the wrapped reporter
        return getattr(self.inner, name)
