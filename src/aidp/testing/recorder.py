"""Record a fake LLM script from a real provider: a forwarding proxy on 127.0.0.1.

:class:`Recorder` listens like :class:`~aidp.testing.fake_llm.FakeLLM` and forwards every request
under ``/v1`` to an upstream OpenAI-compatible base URL (``https://api.openai.com/v1``, another
fake, ...). The client's headers go upstream as they are (its own ``Authorization`` included,
only hop-by-hop headers dropped and ``Accept-Encoding`` narrowed to gzip/deflate so the answer
stays readable); the answer comes back as it is: status, headers, body, streamed chunk by chunk.

Every model request (``POST /v1/chat/completions`` and ``POST /v1/responses``, plain or
``"stream": true``) adds one step to the script file, which ``aidp fake-llm --script FILE`` (or
``FakeLLM(FILE)``) serves to reproduce the same answer:

- a success: ``reply`` (the text), ``tool_calls`` (name and arguments, the arguments string kept
  verbatim) and ``usage`` (input, output and cached tokens, when the upstream reported them),
  read from the JSON body or from the SSE events;
- an HTTP error (400-599): ``error: {status, message, type, code, retry_after}``, with
  ``retry_after`` from ``retry-after-ms`` or ``Retry-After``.

Steps are kept in the order the requests arrived. The file is rewritten whole (a temporary file
renamed over it) after each step, so it is a valid script at every moment: JSON for a ``.json``
name, YAML otherwise. Headers are never written. Other requests (``GET /v1/models``, ...) are
forwarded but not recorded; a request that got no complete answer (the upstream unreachable or
hanging up, the client going away) records nothing and is reported through
:attr:`Recorder.on_problem`.
"""

from __future__ import annotations

import json
import os
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlsplit

import httpx
import pydantic

from aidp.exceptions import InputError
from aidp.testing.fake_llm import server_url
from aidp.testing.recorded import dump_script, step_from_answer, write_atomic
from aidp.testing.script import Step
from aidp.testing.served import Connections, LoopbackServer, TrackedHandler

__all__ = ["MAX_ANSWER_BYTES", "Recorder"]

#: Request bodies larger than this are refused with 413 (as by the fake).
MAX_BODY_BYTES = 64 * 2**20
#: Answers larger than this (decoded) are passed back but not recorded.
MAX_ANSWER_BYTES = 64 * 2**20

# Headers that belong to one connection, never forwarded in either direction (Content-Length is
# set again for the body actually sent).
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length",
})
_READABLE_ENCODINGS = frozenset({"gzip", "x-gzip", "deflate", "identity"})
_MODEL_ROUTES = ("/chat/completions", "/responses")


class _Dropped(Exception):
    """The answer did not complete (upstream or client gone): nothing to record."""


# -- the proxy --------------------------------------------------------------------------------


def _read_body(handler: TrackedHandler) -> bytes:
    headers, rfile = handler.headers, handler.rfile
    if headers.get("Transfer-Encoding", "").lower() == "chunked":
        parts: list[bytes] = []
        total = 0
        while True:
            try:
                size = int(rfile.readline(1024).split(b";")[0].strip(), 16)
            except ValueError as exc:
                raise ValueError("malformed chunked request body") from exc
            if size == 0:
                while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_BODY_BYTES:
                raise OverflowError
            parts.append(rfile.read(size))
            rfile.readline(1024)
    try:
        count = int(headers.get("Content-Length") or 0)
    except ValueError as exc:
        raise ValueError("malformed Content-Length") from exc
    if count > MAX_BODY_BYTES:
        raise OverflowError
    return rfile.read(count) if count > 0 else b""


def _accept_encoding(value: str | None) -> str:
    """The client's Accept-Encoding without codings the recorder cannot read."""
    if value is None:
        return "identity"
    kept = [part.strip() for part in value.split(",")
            if part.split(";")[0].strip().lower() in _READABLE_ENCODINGS]
    return ", ".join(kept) or "identity"


class _Server(LoopbackServer):
    def __init__(self, address: tuple[str, int], recorder: Recorder) -> None:
        self.recorder = recorder
        super().__init__(address, _Handler, recorder._connections)


class _Handler(TrackedHandler):
    server: _Server

    def do_GET(self) -> None:
        self._forward()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_CONNECT = do_GET

    def _send_local(self, status: int, message: str) -> None:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        payload = json.dumps({"error": {"message": message, "type": kind, "param": None,
                                        "code": None}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    def _forward(self) -> None:
        recorder = self.server.recorder
        parts = urlsplit(self.path)
        if self.command == "CONNECT" or not self.path.startswith("/") or not (
                parts.path == "/v1" or parts.path.startswith("/v1/")):
            self.close_connection = True
            self._send_local(404, f"the recorder forwards only /v1/...: no route for "
                                  f"{self.command} {self.path}")
            return
        try:
            raw = _read_body(self)
        except ValueError as exc:
            self.close_connection = True
            self._send_local(400, str(exc))
            return
        except OverflowError:
            self.close_connection = True
            self._send_local(413, f"request body over {MAX_BODY_BYTES} bytes")
            return
        route = unquote(parts.path).rstrip("/").removeprefix("/v1")
        slot = recorder._reserve() if self.command == "POST" and route in _MODEL_ROUTES else None
        what = f"{self.command} {parts.path}"
        try:
            self._relay(parts.path.removeprefix("/v1"), parts.query, raw, route, slot, what)
        except _Dropped as exc:
            self.close_connection = True
            if slot is not None:
                recorder._problem(f"{what}: {exc}; no step recorded")
        except OSError:  # the client went away
            self.close_connection = True

    def _relay(self, path: str, query: str, raw: bytes, route: str, slot: int | None,
               what: str) -> None:
        recorder = self.server.recorder
        client = recorder._client
        if client is None:
            raise _Dropped("the recorder is stopping")
        headers = [(name, value) for name, value in self.headers.items()
                   if name.lower() not in _HOP_BY_HOP and name.lower() != "accept-encoding"]
        headers.append(("Accept-Encoding", _accept_encoding(self.headers.get("Accept-Encoding"))))
        sent = {name.lower() for name, _ in headers}
        url = recorder.upstream + path + (f"?{query}" if query else "")
        request = client.build_request(self.command, url, headers=headers,
                                       content=raw if raw or self.command != "GET" else None)
        for name in ("user-agent", "accept"):  # httpx's defaults, not the client's headers
            if name not in sent and name in request.headers:
                del request.headers[name]
        try:
            response = client.send(request, stream=True)
        except httpx.HTTPError as exc:
            recorder._problem(f"{what}: upstream unreachable: {exc}")
            self.close_connection = True
            self._send_local(502, f"aidp recorder: the upstream is unreachable: {exc}")
            return

        def complete(body: bytes | None, why: str) -> None:
            if slot is None:
                return
            if body is None:
                recorder._problem(f"{what}: {why}; no step recorded")
                return
            step = step_from_answer(route, response.status_code, response.headers, body)
            if step is None:
                recorder._problem(f"{what}: HTTP {response.status_code} is not a model answer; "
                                  "no step recorded")
            else:
                recorder._settle(slot, step, what)

        try:
            self._pass_back(response, slot is not None, complete)
        finally:
            response.close()

    def _pass_back(self, response: httpx.Response, record: bool,
                   complete: Callable[[bytes | None, str], None]) -> None:
        """Send the upstream's answer to the client as it comes. Before its last piece goes
        out, ``complete`` gets the decoded body if ``record`` (None and why if it cannot be
        read), so the step is written before the client has the whole answer."""
        status = response.status_code
        self.send_response_only(status, response.reason_phrase or None)
        for name, value in response.headers.multi_items():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        length = response.headers.get("content-length")
        bodiless = self.command == "HEAD" or status in (204, 304) or status < 200
        chunked = not bodiless and (length is None or "transfer-encoding" in response.headers)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif length is not None:
            self.send_header("Content-Length", length)
        if response.headers.get("connection", "").lower() == "close":
            self.close_connection = True
        self.end_headers()
        self.wfile.flush()
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        decoder = zlib.decompressobj(47) if encoding in ("gzip", "x-gzip", "deflate") else None
        readable = record and encoding in _READABLE_ENCODINGS
        kept: list[bytes] = []
        size = 0
        stopping = self.server.recorder._stopping
        pending = b""

        def send(data: bytes) -> None:
            if chunked and data:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                self.wfile.write(data)
            self.wfile.flush()

        try:
            for data in (() if bodiless else response.iter_raw()):
                if stopping.is_set():
                    raise _Dropped("the recorder is stopping")
                send(pending)
                pending = data
                if readable:
                    piece = decoder.decompress(data) if decoder is not None else data
                    size += len(piece)
                    readable = size <= MAX_ANSWER_BYTES
                    kept.append(piece)
            if readable and decoder is not None:
                kept.append(decoder.flush())
        except (httpx.HTTPError, zlib.error) as exc:
            raise _Dropped(f"the answer broke off: {exc}") from exc
        if record:
            complete(b"".join(kept) if readable else None,
                     f"answer not readable (Content-Encoding {encoding!r}) or over "
                     f"{MAX_ANSWER_BYTES} bytes")
        send(pending)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()




class Recorder:
    """A forwarding proxy to ``upstream`` that writes a fake LLM script of the answers.

    Args:
        upstream: the provider's OpenAI base URL, ending in ``/v1`` as clients are given it
            (``https://api.openai.com/v1``); ``/v1/...`` on the recorder maps to
            ``upstream/...``.
        script_out: the script file to write (JSON for ``.json``, YAML otherwise); replaced
            whole at the first recorded step and after each one.
        host: address to bind; ``127.0.0.1`` by default.
        port: port to bind; 0 picks a free one.

    Raises:
        InputError: ``upstream`` is not an http(s) URL, or ``script_out``'s directory does not
            exist or is not writable (exit code 2).

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Thread-safe.
    """

    def __init__(self, upstream: str, script_out: str | Path, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"upstream {upstream!r} is not an http(s) URL "
                             "(e.g. https://api.openai.com/v1)")
        if parts.query or parts.fragment:
            raise InputError(f"upstream {upstream!r} must be a base URL without query or "
                             "fragment")
        self._upstream = upstream.rstrip("/")
        self._script_out = Path(script_out)
        if self._script_out.is_dir():
            raise InputError(f"script output {self._script_out} is a directory")
        directory = self._script_out.parent
        if not directory.is_dir() or not os.access(directory, os.W_OK | os.X_OK):
            raise InputError(f"script output {self._script_out}: directory {directory} does "
                             "not exist or is not writable")
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._next = 0
        self._done: dict[int, dict[str, Any]] = {}
        self._connections = Connections()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._client: httpx.Client | None = None
        #: Called with a one-line message for each request that recorded no step.
        self.on_problem: Callable[[str], None] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve on a daemon thread; returns self. Idempotent."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._client = httpx.Client(
            follow_redirects=False, trust_env=False,
            timeout=httpx.Timeout(connect=30, read=600, write=60, pool=60),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16))
        try:
            self._server = _Server((self._host, self._port), self)
        except OSError:
            self._client.close()
            self._client = None
            raise
        self._port = self._server.server_address[1]
        self._server.serve_in_background(f"fake-llm-recorder:{self._port}")
        return self

    def stop(self) -> None:
        """Stop serving: close open connections (an answer in flight records nothing), release
        the port. The script file keeps every step recorded so far."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.close()
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- what users read --------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``: the OpenAI base URL to give clients."""
        return server_url(self._host, self._port) + "/v1"

    @property
    def port(self) -> int:
        """The bound port (0 before :meth:`start` when an ephemeral port was asked for)."""
        return self._port

    @property
    def upstream(self) -> str:
        """The upstream base URL, without a trailing slash."""
        return self._upstream

    @property
    def script_out(self) -> Path:
        """The script file being written."""
        return self._script_out

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The steps recorded so far, in the order their requests arrived. A copy."""
        with self._lock:
            return [self._done[i] for i in sorted(self._done)]

    # -- used by the handler ----------------------------------------------------------------

    def _reserve(self) -> int:
        with self._lock:
            self._next += 1
            return self._next

    def _settle(self, slot: int, step: dict[str, Any], what: str) -> None:
        try:
            Step.model_validate(step)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            self._problem(f"{what}: the answer makes no valid step ({first['msg']}); "
                          "no step recorded")
            return
        with self._lock:
            self._done[slot] = step
            text = dump_script([self._done[i] for i in sorted(self._done)], self._script_out)
            try:
                write_atomic(self._script_out, text)
            except OSError as exc:
                message = f"cannot write {self._script_out}: {exc.strerror or exc}"
            else:
                return
        self._problem(message)

    def _problem(self, message: str) -> None:
        if self.on_problem is not None:
            self.on_problem(message)
