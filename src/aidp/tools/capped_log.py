"""A size-capped, append-only log file shared by one attempt.

One attempt writes everything into one file: the tool's output, then a header and the output of
each acceptance check. The file keeps the *beginning* of the output up to ``cap_bytes``; past the
cap, bytes are counted and only a rolling tail of ``tail_bytes`` is kept in memory, so memory stays
flat however much a tool prints. The tail is written when the log is closed, and also before each
:meth:`CappedLog.note` once the cap is hit, so every section (the tool, each check) keeps its end,
which is where tools print their summaries.

A truncated file looks like::

    <first cap_bytes bytes of output>
    --- [aidp] output truncated: 1073676288 bytes omitted ---
    <last tail_bytes bytes of output>
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["CappedLog"]

#: A note is one line; longer texts are cut to this many characters.
MAX_NOTE_CHARS = 1000
#: How many times the tail is written out before a note once past the cap; later sections share
#: one rolling tail written at close. Bounds the file at cap + (this + 1) * (tail + a marker).
MAX_TAIL_SECTIONS = 16


class CappedLog:
    """Append-only log writer with a size cap and a rolling in-memory tail.

    Args:
        path: the log file; created if missing, appended to if present (its current size counts
            against the cap).
        cap_bytes: how many bytes of output the file keeps from the beginning.
        tail_bytes: how many bytes of the end of the output are kept past the cap.

    One writer at a time is expected; a lock makes concurrent calls safe, not interleaved nicely.
    """

    def __init__(self, path: Path, cap_bytes: int = 10 * 2**20, tail_bytes: int = 64 * 2**10):
        if cap_bytes < 0 or tail_bytes < 0:
            raise ValueError("cap_bytes and tail_bytes must be >= 0")
        self.path = path
        self._cap = cap_bytes
        self._tail_cap = tail_bytes
        self._lock = threading.Lock()
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 -- closed by close()
        self._written = os.fstat(self._file.fileno()).st_size
        self._at_line_start = True
        self._seen = 0
        self._truncated = False
        self._omitted = 0
        self._tail = bytearray()
        self._tail_seen = 0  # bytes routed to the tail since it was last written out
        self._sections_flushed = 0
        self._closed = False

    # -- properties ---------------------------------------------------------------------------

    @property
    def bytes_written(self) -> int:
        """Size of the file in bytes (everything written so far, notes and markers included)."""
        return self._written

    @property
    def bytes_seen(self) -> int:
        """Bytes of output passed to :meth:`write` (notes excluded)."""
        return self._seen

    @property
    def bytes_omitted(self) -> int:
        """Bytes of output that are neither in the file nor in the pending tail."""
        return self._omitted + max(0, self._tail_seen - len(self._tail))

    @property
    def truncated(self) -> bool:
        """True once some output went past the cap."""
        return self._truncated

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    # -- writing ------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Append output: to the file while under the cap, to the rolling tail beyond it."""
        if not data:
            return
        with self._lock:
            self._check_open()
            self._seen += len(data)
            if not self._truncated:
                room = self._cap - self._written
                if len(data) <= room:
                    self._emit(data)
                    return
                if room > 0:
                    self._emit(data[:room])
                    data = data[room:]
                self._truncated = True
            self._keep_tail(data)

    def note(self, text: str) -> None:
        """Write a marker line ``--- text ---``; always written, even past the cap.

        The text is cut to ``MAX_NOTE_CHARS`` and kept on one line. Past the cap, the pending
        tail of the previous section is written first, so the note stays in order.
        """
        line = " ".join(text.split())
        if len(line) > MAX_NOTE_CHARS:
            line = line[: MAX_NOTE_CHARS - 3] + "..."
        with self._lock:
            self._check_open()
            if self._truncated and self._sections_flushed < MAX_TAIL_SECTIONS:
                self._sections_flushed += 1
                self._flush_tail()
            self._emit_line(f"--- {line} ---")

    def close(self) -> None:
        """Write the truncation marker and the kept tail (if truncated), then close the file."""
        with self._lock:
            if self._closed:
                return
            try:
                if self._truncated:
                    self._flush_tail()
            finally:
                self._closed = True
                self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals (called with the lock held) ------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"log {self.path} is closed")

    def _emit(self, data: bytes | bytearray) -> None:
        if data:
            self._file.write(data)
            self._written += len(data)
            self._at_line_start = data[-1:] == b"\n"

    def _emit_line(self, line: str) -> None:
        prefix = "" if self._at_line_start else "\n"
        self._emit(f"{prefix}{line}\n".encode("utf-8", "replace"))

    def _keep_tail(self, data: bytes) -> None:
        self._tail_seen += len(data)
        if self._tail_cap == 0:
            return
        if len(data) >= self._tail_cap:
            self._tail = bytearray(data[-self._tail_cap :])
            return
        self._tail += data
        excess = len(self._tail) - self._tail_cap
        if excess > 0:
            del self._tail[:excess]

    def _flush_tail(self) -> None:
        omitted = self._tail_seen - len(self._tail)
        if omitted > 0:
            self._omitted += omitted
            self._emit_line(f"--- [aidp] output truncated: {omitted} bytes omitted ---")
        self._emit(self._tail)
        self._tail = bytearray()
        self._tail_seen = 0
