"""The socket ``aidp serve`` listens on."""

from __future__ import annotations

import socket

from aidp.cli.serve import _listen


def test_connections_are_accepted_without_nagle() -> None:
    """Accepted connections inherit TCP_NODELAY from the listening socket: a response that
    uvicorn writes in two parts is sent at once, not held for the client's delayed ACK (which
    made every request of a keep-alive client take ~45 ms; see bench/bench_api.py)."""
    listener = _listen("127.0.0.1", 0)
    try:
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        try:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        finally:
            accepted.close()
            client.close()
    finally:
        listener.close()
