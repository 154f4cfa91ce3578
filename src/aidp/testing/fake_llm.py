"""A scripted OpenAI-compatible server on 127.0.0.1, and a proxy sink for stray connections.

:class:`FakeLLM` serves what Aider, Codex and the openai SDK call:

- ``GET /v1/models`` (and ``/v1/models/ID``): the fake model;
- ``POST /v1/chat/completions``: a ``chat.completion``, or with ``"stream": true`` SSE
  ``chat.completion.chunk`` lines (role delta, content deltas, tool-call deltas, a last chunk
  with ``finish_reason`` and ``usage``, then ``data: [DONE]``);
- ``POST /v1/responses``: with ``"stream": true`` the Responses event sequence
  (``response.created``, per item ``output_item.added`` ... ``output_item.done``,
  ``response.completed``); without it the final response object.

Each of the two model endpoints consumes the next step of a :class:`~aidp.testing.script.Script`
(reply, tool calls, error with ``Retry-After``, hang, drop, stall; the last step repeats).
Every request is recorded (method, path, headers with credentials masked, JSON body) in
:attr:`FakeLLM.requests` and optionally appended to a JSONL file.

The same port is a proxy sink: a ``CONNECT host:port`` or an absolute-URL request
(``GET http://host/...``) is answered ``403`` and logged in :attr:`FakeLLM.stray`. Point a tool
at it with ``HTTPS_PROXY=HTTP_PROXY=llm.proxy_url`` and ``NO_PROXY=127.0.0.1,localhost`` (see
:meth:`FakeLLM.proxy_env`) and every outbound call it tries shows up there.

Example::

    with FakeLLM(["Hello!"]) as llm:
        client = OpenAI(base_url=llm.base_url, api_key="x", max_retries=0)
        client.chat.completions.create(model=llm.model, messages=[...])
        assert llm.requests[0]["body"]["messages"] == [...]
        assert llm.stray == []

The server is a stdlib :class:`~http.server.ThreadingHTTPServer` on daemon threads; it keeps no
conversation state (clients send the whole history every turn).
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self
from urllib.parse import unquote, urlsplit

from aidp.testing.script import Script, Step, load_script
from aidp.testing.served import Connections, LoopbackServer, TrackedHandler
from aidp.testing.wire import chat_completion, chat_stream, response_object, responses_stream

__all__ = ["MASKED_HEADERS", "MAX_BODY_BYTES", "FakeLLM", "server_url"]

#: Request headers whose values are never recorded.
MASKED_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "api-key", "x-api-key", "openai-api-key", "cookie"}
)
#: Request bodies larger than this are refused with 413.
MAX_BODY_BYTES = 64 * 2**20


def server_url(host: str, port: int, scheme: str = "http") -> str:
    """``SCHEME://HOST:PORT`` for a server bound to ``host`` (any-address binds are reached on
    127.0.0.1; an IPv6 address in brackets)."""
    host = "127.0.0.1" if host in ("", "0.0.0.0") else host
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def _mask(name: str, value: str) -> str:
    scheme, sep, _ = value.partition(" ")
    if name == "authorization" and sep and scheme.lower() in ("bearer", "basic"):
        return f"{scheme} ***"
    return "***"


def _decompress(data: bytes, encoding: str) -> bytes:
    """Inflate a gzip or deflate request body, refusing more than MAX_BODY_BYTES."""
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    out = inflater.decompress(data, MAX_BODY_BYTES + 1)
    if len(out) > MAX_BODY_BYTES:
        raise OSError("request body too large")
    return out


class _Dropped(Exception):
    """The client went away (or the server is stopping): abandon this response."""


class _Server(LoopbackServer):
    def __init__(self, address: tuple[str, int], fake: FakeLLM) -> None:
        self.fake = fake
        super().__init__(address, _Handler, fake._connections)


class _Handler(TrackedHandler):
    server: _Server
    server_version = "aidp-fake-llm"
    sys_version = ""

    def do_CONNECT(self) -> None:
        self._refuse_stray(self.path)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    # -- routing ----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        fake = self.server.fake
        target = self.path
        if target.startswith(("http://", "https://")):
            parts = urlsplit(target)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            if not (parts.scheme == "http" and port == fake.port
                    and parts.hostname in ("127.0.0.1", "localhost", fake._host)):
                self._refuse_stray(f"{parts.hostname}:{port}")
                return
            # A client sent through the proxy to this very server (NO_PROXY unset): serve it.
            target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            raw = self._read_body()
        except ValueError as exc:
            self._send_error_json(400, str(exc))
            return
        except OverflowError:
            self._send_error_json(413, f"request body over {MAX_BODY_BYTES} bytes")
            return
        encoding = self.headers.get("Content-Encoding", "").strip().lower()
        if raw and encoding in ("gzip", "deflate"):
            try:
                raw = _decompress(raw, encoding)
            except (OSError, zlib.error, EOFError):
                self._send_error_json(400, f"malformed {encoding} request body")
                return
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                body = None
        path = unquote(urlsplit(target).path).rstrip("/")
        route = path.removeprefix("/v1")
        is_model_call = self.command == "POST" and route in ("/chat/completions", "/responses")
        if fake._api_key is not None and self.headers.get(
                "Authorization", "") != f"Bearer {fake._api_key}":
            fake._record(self.command, path, dict(self.headers.items()), body, raw, None)
            self._send_error_json(401, "Incorrect API key provided.", code="invalid_api_key")
            return
        step_index, step = fake._next_step() if is_model_call else (None, None)
        fake._record(self.command, path, dict(self.headers.items()), body, raw, step_index)
        try:
            if step is not None:
                if raw and not isinstance(body, dict):
                    self._send_error_json(400, "the request body is not a JSON object")
                    return
                assert isinstance(body, dict)
                self._serve_step(step, route, body)
            elif self.command in ("GET", "HEAD") and route == "/models":
                self._send_json(200, {"object": "list", "data": [fake._model_object()]})
            elif self.command in ("GET", "HEAD") and route.startswith("/models/"):
                name = route.removeprefix("/models/")
                if name == fake.model:
                    self._send_json(200, fake._model_object())
                else:
                    self._send_error_json(404, f"The model '{name}' does not exist",
                                          code="model_not_found")
            else:
                self._send_error_json(404, f"no route for {self.command} {path}")
        except (_Dropped, OSError):
            self.close_connection = True

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            total = 0
            while True:
                size_line = self.rfile.readline(1024)
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError as exc:
                    raise ValueError("malformed chunked request body") from exc
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                total += size
                if total > MAX_BODY_BYTES:
                    raise OverflowError
                parts.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            count = int(length)
        except ValueError as exc:
            raise ValueError("malformed Content-Length") from exc
        if count > MAX_BODY_BYTES:
            raise OverflowError
        return self.rfile.read(count) if count > 0 else b""

    def _refuse_stray(self, target: str) -> None:
        self.server.fake._record_stray(self.command, target)
        self.close_connection = True
        payload = f"aidp fake-llm proxy sink: outbound connection to {target} refused\n".encode()
        try:
            self.send_response(403)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            pass

    # -- answering --------------------------------------------------------------------------

    def _wait(self, seconds: float) -> None:
        if self.server.fake._stopping.wait(seconds):
            raise _Dropped

    def _serve_step(self, step: Step, route: str, body: dict[str, Any]) -> None:
        fake = self.server.fake
        if step.hang is not None:
            self._wait(step.hang)
            if not step.answers and step.error is None:
                raise _Dropped
        if step.drop:
            raise _Dropped
        if step.error is not None:
            headers: dict[str, str] = {}
            if step.error.retry_after is not None:
                seconds = step.error.retry_after
                headers["Retry-After"] = str(int(seconds)) if seconds == int(seconds) \
                    else f"{seconds:g}"
                headers["retry-after-ms"] = str(int(seconds * 1000))
            self._send_json(step.error.status, step.error.body(), headers)
            return
        stream = body.get("stream") is True
        model = body.get("model") if isinstance(body.get("model"), str) else fake.model
        assert isinstance(model, str)
        number = fake._serial()
        if route == "/chat/completions":
            frames = (chat_stream(step, body, model, number) if stream
                      else [json.dumps(chat_completion(step, body, model, number)).encode()])
        else:
            frames = (responses_stream(step, body, model, number) if stream
                      else [json.dumps(response_object(step, body, model, number)).encode()])
        if stream:
            self._send_stream(frames, step.stall)
        else:
            self._send_stalled_json(frames[0], step.stall)

    def _send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        payload = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    def _send_error_json(self, status: int, message: str, *, code: str | None = None) -> None:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        self._send_json(status, {"error": {"message": message, "type": kind, "param": None,
                                           "code": code}})

    def _send_stalled_json(self, payload: bytes, stall: float | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if stall is None:
            self.wfile.write(payload)
        else:
            half = len(payload) // 2
            self.wfile.write(payload[:half])
            self.wfile.flush()
            self._wait(stall)
            self.wfile.write(payload[half:])
        self.wfile.flush()

    def _send_stream(self, frames: Sequence[bytes], stall: float | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        stall_at = max(1, len(frames) // 2)
        for position, frame in enumerate(frames):
            if stall is not None and position == stall_at:
                self._wait(stall)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


# -- the server -------------------------------------------------------------------------------


class FakeLLM:
    """A scripted OpenAI-compatible server plus a proxy sink, on a background thread.

    Args:
        script: a :class:`Script`, a list of steps (dicts, strings, :class:`Step`), or the path
            of a YAML/JSON script file.
        host: address to bind; ``127.0.0.1`` by default.
        port: port to bind; 0 picks a free one.
        model: the model id listed by ``/v1/models`` (replies echo the requested model).
        record_path: if set, every request is also appended to this JSONL file.
        api_key: if set, a request without ``Authorization: Bearer <api_key>`` gets 401
            ``invalid_api_key``, as from a provider (recorded, consuming no script step).
        tls: ``(certificate file, key file)``: serve HTTPS with them (the proxy sink is then
            not usable).

    Raises:
        ScriptError: the script is invalid (names file, line and step).

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Thread-safe.
    """

    def __init__(self, script: Script | Sequence[Any] | str | Path, *, host: str = "127.0.0.1",
                 port: int = 0, model: str = "fake-model",
                 record_path: str | Path | None = None, api_key: str | None = None,
                 tls: tuple[Path, Path] | None = None) -> None:
        if isinstance(script, str | Path):
            self._script = load_script(script)
        else:
            self._script = Script.of(script)
        self._host = host
        self._port = port
        self._model = model
        self._api_key = api_key
        self._tls = tls
        self._record_path = Path(record_path) if record_path is not None else None
        self._lock = threading.Lock()
        self._position = 0
        self._used = 0
        self._count = 0
        self._requests: list[dict[str, Any]] = []
        self._stray: list[str] = []
        self._connections = Connections()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._record_file: IO[str] | None = None
        #: Called with ``host:port`` of each refused connection (e.g. to print a warning).
        self.on_stray: Callable[[str], None] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve on a daemon thread; returns self. Idempotent."""
        if self._server is not None:
            return self
        self._stopping.clear()
        if self._record_path is not None:
            self._record_file = self._record_path.open("a", encoding="utf-8")
        self._server = _Server((self._host, self._port), self)
        self._port = self._server.server_address[1]
        if self._tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self._tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._server.serve_in_background(f"fake-llm:{self._port}")
        return self

    def stop(self) -> None:
        """Stop serving: end hangs and stalls, close open connections, release the port."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.close()
        with self._lock:
            if self._record_file is not None:
                self._record_file.close()
                self._record_file = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- what users read --------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1`` (``https://`` with ``tls``): the OpenAI base URL to give
        clients."""
        return server_url(self._host, self._port, "https" if self._tls else "http") + "/v1"

    @property
    def proxy_url(self) -> str:
        """``http://HOST:PORT``: the proxy sink, for ``HTTPS_PROXY`` / ``HTTP_PROXY``."""
        return server_url(self._host, self._port)

    @property
    def port(self) -> int:
        """The bound port (0 before :meth:`start` when an ephemeral port was asked for)."""
        return self._port

    @property
    def model(self) -> str:
        """The model id this server lists."""
        return self._model

    @property
    def script(self) -> Script:
        """The script being replayed."""
        return self._script

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request so far, oldest first: ``method``, ``path``, ``headers`` (lower-case
        names, credentials masked), ``body`` (parsed JSON or None), ``step`` (index of the script
        step it consumed, or None), ``time`` (Unix seconds). A copy."""
        with self._lock:
            return list(self._requests)

    @property
    def stray(self) -> list[str]:
        """``host:port`` of every refused outbound connection attempt, oldest first. A copy."""
        with self._lock:
            return list(self._stray)

    def proxy_env(self) -> dict[str, str]:
        """Environment variables that route a client's outbound traffic into the sink while
        leaving 127.0.0.1 direct."""
        no_proxy = "127.0.0.1,localhost,::1"
        return {"HTTPS_PROXY": self.proxy_url, "HTTP_PROXY": self.proxy_url,
                "https_proxy": self.proxy_url, "http_proxy": self.proxy_url,
                "ALL_PROXY": self.proxy_url, "all_proxy": self.proxy_url,
                "NO_PROXY": no_proxy, "no_proxy": no_proxy}

    # -- used by the handler ----------------------------------------------------------------

    def _next_step(self) -> tuple[int, Step]:
        with self._lock:
            index = self._position
            step = self._script.steps[index]
            self._used += 1
            if self._used >= step.times and index < len(self._script.steps) - 1:
                self._position += 1
                self._used = 0
            return index, step

    def _serial(self) -> int:
        with self._lock:
            self._count += 1
            return self._count

    def _model_object(self) -> dict[str, Any]:
        return {"id": self._model, "object": "model", "created": 0, "owned_by": "aidp"}

    def _record(self, method: str, path: str, headers: Mapping[str, str], body: Any, raw: bytes,
                step: int | None) -> None:
        shown = {name.lower(): _mask(name.lower(), value) if name.lower() in MASKED_HEADERS
                 else value for name, value in headers.items()}
        if body is None and raw:
            body = raw.decode("utf-8", "replace")
        entry = {"method": method, "path": path, "headers": shown, "body": body, "step": step,
                 "time": time.time()}
        self._append(entry, self._requests)

    def _record_stray(self, method: str, target: str) -> None:
        self._append({"stray": target, "method": method, "time": time.time()}, None)
        with self._lock:
            self._stray.append(target)
        if self.on_stray is not None:
            self.on_stray(target)

    def _append(self, entry: dict[str, Any], into: list[dict[str, Any]] | None) -> None:
        with self._lock:
            if into is not None:
                into.append(entry)
            if self._record_file is not None:
                self._record_file.write(json.dumps(entry, default=str) + "\n")
                self._record_file.flush()
