"""What reaches an attempt's log: a size-capped, append-only file, and secret masking.

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

:class:`SecretMasker` replaces secret values by ``***`` in the output stream before it reaches the
log (or any other consumer), including values split across reads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["CARRY_LIMIT", "MIN_SECRET_LEN", "CappedLog", "SecretMasker"]

#: An unfinished output line longer than this is passed on without waiting for its newline.
CARRY_LIMIT = 64 * 2**10
#: Secrets shorter than this are not masked (they would mask ordinary text).
MIN_SECRET_LEN = 4
_MASK = b"***"

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

    def sync(self) -> None:
        """Past the cap, write the kept tail now (as :meth:`note` does, without a line of its
        own), so that a reader of the file sees the output so far -- the detectors, before the
        checks run."""
        with self._lock:
            self._check_open()
            if self._truncated and self._sections_flushed < MAX_TAIL_SECTIONS:
                self._sections_flushed += 1
                self._flush_tail()

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


# -- masking: what reaches the log -----------------------------------------------------------------


class SecretMasker:
    """Replace secret values by ``***`` in a byte stream cut into arbitrary chunks.

    Output is passed on line by line: :meth:`feed` returns the masked complete lines and keeps the
    unfinished one; once that exceeds ``CARRY_LIMIT`` it is passed on too, except its last
    ``len(longest secret) - 1`` bytes, so a secret spanning any chunk boundary is still caught.
    Overlapping occurrences of different secrets are masked as their union.
    """

    def __init__(self, secrets: Sequence[str]) -> None:
        values = {s.encode() for s in secrets if len(s) >= MIN_SECRET_LEN}
        self._secrets = sorted(values, key=len, reverse=True)
        self._holdback = max((len(s) for s in self._secrets), default=1) - 1
        self._multiline = any(b"\n" in s for s in self._secrets)
        self._carry = b""

    def feed(self, data: bytes) -> bytes:
        """Take the next chunk; return what can be passed on, masked (possibly ``b""``)."""
        buf = self._carry + data if self._carry else data
        cut = buf.rfind(b"\n") + 1
        if self._multiline:
            cut = max(0, min(cut, len(buf) - self._holdback))
        if len(buf) - cut > CARRY_LIMIT:
            cut = len(buf) - min(self._holdback, CARRY_LIMIT)
        out, self._carry = self._mask(buf, cut)
        return out

    def flush(self) -> bytes:
        """Return whatever is held back, masked (at the end of the stream)."""
        out, _ = self._mask(self._carry, len(self._carry))
        self._carry = b""
        return out

    def _mask(self, buf: bytes, cut: int) -> tuple[bytes, bytes]:
        """Split ``buf`` at ``cut`` (moved past any secret spanning it); mask the first part."""
        if not self._secrets:
            return buf[:cut], buf[cut:]
        spans: list[tuple[int, int]] = []
        for secret in self._secrets:
            at = buf.find(secret)
            while at >= 0:
                spans.append((at, at + len(secret)))
                at = buf.find(secret, at + 1)
        if not spans:
            return buf[:cut], buf[cut:]
        spans.sort()
        pieces: list[bytes] = []
        pos = 0
        start, end = spans[0]
        for s, e in [*spans[1:], (len(buf) + 1, len(buf) + 1)]:
            if s < end:  # overlapping occurrences merge; adjacent ones stay apart
                end = max(end, e)
                continue
            if start >= cut:
                break
            pieces += (buf[pos:start], _MASK)
            pos = end
            cut = max(cut, end)
            start, end = s, e
        pieces.append(buf[pos:cut])
        return b"".join(pieces), buf[cut:]
