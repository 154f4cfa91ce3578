"""The engine's clock: the wall clock in production, a jumping one in tests.

The orchestrator asks the clock for the time when it schedules retries and, when nothing is
running and the next thing to do is a retry due later, lets the clock pass the idle time.
:class:`SystemClock` waits for real; :class:`AutojumpClock` jumps straight to the due time and
records every jump, so tests check backoff and ``Retry-After`` waits without sleeping.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["POLL_S", "AutojumpClock", "Clock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def idle(self, seconds: float, wake: threading.Event) -> None:
        """Let up to ``seconds`` pass while nothing runs; return early when ``wake`` is set
        (a real clock also returns after :data:`POLL_S`, so that the caller polls for a
        cancellation)."""
        ...


POLL_S = 0.5


class SystemClock:
    def now(self) -> float:
        return time.time()

    def idle(self, seconds: float, wake: threading.Event) -> None:
        wake.wait(min(max(0.0, seconds), POLL_S))


class AutojumpClock:
    """Real time plus an offset that grows by every idle wait (``jumps`` lists them)."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.jumps: list[float] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return time.time() + self.offset

    def idle(self, seconds: float, wake: threading.Event) -> None:
        if seconds > 0 and not wake.is_set():
            with self._lock:
                self.offset += seconds
                self.jumps.append(seconds)
