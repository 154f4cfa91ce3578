"""What the fake provider and the recorder share: a threaded HTTP/1.1 server on loopback whose
open connections are tracked (so that stopping it ends hangs and streams at once), answers
sent without waiting for the client's delayed ACK, and no traceback or log line when a client
hangs up."""

from __future__ import annotations

import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Connections", "LoopbackServer", "TrackedHandler"]


class Connections:
    """The open client connections of a server; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()

    def track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._open.add(conn)
            else:
                self._open.discard(conn)

    def shut_all(self) -> None:
        """Shut every open connection down (its handler's next read or write fails)."""
        with self._lock:
            connections = list(self._open)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class LoopbackServer(ThreadingHTTPServer):
    """Daemon handler threads, a port reusable at once, ``connections`` tracked."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    _serving: threading.Thread | None = None

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 connections: Connections) -> None:
        self.connections = connections
        super().__init__(address, handler)

    def serve_in_background(self, name: str) -> None:
        """Serve on a daemon thread named ``name`` until :meth:`close`."""
        self._serving = threading.Thread(target=self.serve_forever,
                                         kwargs={"poll_interval": 0.05}, name=name, daemon=True)
        self._serving.start()

    def close(self) -> None:
        """Stop serving, shut every open connection (ending hangs and streams at once),
        release the port and wait (bounded) for the serving thread."""
        self.shutdown()
        self.connections.shut_all()
        self.server_close()
        if self._serving is not None:
            self._serving.join(timeout=5)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a pooled keep-alive connection closed, a killed tool) is
        # not the server's error: no traceback on stderr.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class TrackedHandler(BaseHTTPRequestHandler):
    """HTTP/1.1, its connection tracked while open, ``TCP_NODELAY``, no log lines."""

    protocol_version = "HTTP/1.1"
    server: LoopbackServer

    def setup(self) -> None:
        super().setup()
        # headers and body are written separately: without this each answer waits for the
        # client's delayed ACK (~40 ms)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.connections.track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: what matters is recorded, not logged."""
