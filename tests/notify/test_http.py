"""One delivery against a real loopback server: Host kept, redirects not followed,
Retry-After read, big bodies cut, refused addresses never connected to."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from aidp.notify.http import post

_seen: list[dict[str, str]] = []


_ANSWERS: dict[str, tuple[int, dict[str, str], bytes]] = {
    "/ok": (200, {}, b"thanks"),
    "/moved": (302, {"Location": "http://10.0.0.1/"}, b""),
    "/busy": (429, {"Retry-After": "7"}, b""),
    "/big": (500, {}, b"x" * (1 << 20)),
}


class _Handler(BaseHTTPRequestHandler):

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        _seen.append({k.lower(): v for k, v in self.headers.items()} | {"path": self.path})
        status, headers, body = _ANSWERS[self.path]
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _seen.clear()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_name_is_connected_by_its_checked_address_with_its_host_header(port: int) -> None:
    result = post(f"http://localhost:{port}/ok", b"{}", {"webhook-id": "1"},
                  allow_private=True)
    assert result.delivered and result.status == 200
    assert _seen[0]["host"] == f"localhost:{port}" and _seen[0]["webhook-id"] == "1"


def test_refused_without_allow_private_and_nothing_is_sent(port: int) -> None:
    result = post(f"http://localhost:{port}/ok", b"{}", {}, allow_private=False)
    assert not result.delivered and result.status is None
    assert "refused" in (result.error or "") and _seen == []


def test_redirect_is_a_failure_not_followed(port: int) -> None:
    result = post(f"http://127.0.0.1:{port}/moved", b"{}", {}, allow_private=True)
    assert result.status == 302 and not result.delivered
    assert "not followed" in (result.error or "")
    assert [s["path"] for s in _seen] == ["/moved"]


def test_retry_after_and_capped_body(port: int) -> None:
    busy = post(f"http://127.0.0.1:{port}/busy", b"{}", {}, allow_private=True)
    assert busy.status == 429 and busy.retry_after == 7.0
    big = post(f"http://127.0.0.1:{port}/big", b"{}", {}, allow_private=True,
               max_response_bytes=1024)
    assert big.status == 500 and big.retry_after is None


def test_connection_refused_is_an_error_not_an_exception() -> None:
    result = post("http://127.0.0.1:1/", b"{}", {}, allow_private=True, timeout_s=2)
    assert result.status is None and "Connect" in (result.error or "")
