"""The gateway's HTTP server: one asyncio loop on a daemon thread, h11 towards the tools, a
pooled httpcore client (httpx's transport) towards the provider (see
:mod:`aidp.tools.gateway`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import h11
import httpcore

from aidp.errors.finding import FailureClass, Finding
from aidp.tools.adapter import Usage
from aidp.tools.gateway.grant import Grant, Live, Ticket, Traffic
from aidp.tools.gateway.replay import MODEL_PATHS, replayed
from aidp.tools.model_wire import (
    MAX_RESPONSE_BYTES,
    UPSTREAM_ERRORS,
    Price,
    SSEReader,
    TooLarge,
    bearer_token,
    cut_finding,
    error_body,
    error_finding,
    gateway_finding,
    price_of,
    priced,
    usage_of,
)
from aidp.tools.ratelimit import limiter_for

__all__ = ["MAX_REQUEST_BYTES", "Gateway", "shared_gateway"]

#: What ends an answer midway: too large, or the provider's side failing.
_CUT: tuple[type[Exception], ...] = (TooLarge, *UPSTREAM_ERRORS)

#: Largest request body forwarded (a bigger one gets 413).
MAX_REQUEST_BYTES = 32 * 2**20
#: Bytes of a request or answer kept per exchange in a recording.
RECORD_CAP_BYTES = 2 * 2**20
CONNECT_TIMEOUT_S = 10.0
#: Seconds :meth:`Gateway.close` waits for the attempt's requests still being handled (their
#: answers are accounted before the tool gets the last byte: this is for the recording); then
#: they are dropped.
CLOSE_SETTLE_S = 0.5
_TOKEN_PREFIX = "aidp-gw-"
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length", "authorization", "api-key",
    "x-api-key", "openai-api-key", "accept-encoding", "expect"})


@dataclass
class _Open:
    grant: Grant
    traffic: Traffic = field(default_factory=Traffic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    served: int = 0  # recorded answers replayed
    inflight: int = 0  # requests being handled (close() waits for them to be accounted)
    settled: threading.Condition = field(default_factory=threading.Condition)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class Gateway:
    """The loopback model gateway of one process (see the module docstring); thread-safe.

    :meth:`start` it once (or use it as a context manager); :meth:`open` / :meth:`close` per
    attempt from any thread.
    """

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._open: dict[str, _Open] = {}
        self._lock = threading.Lock()
        self._not_before: dict[str, float] = {}  # upstream -> monotonic time (Retry-After)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._client: httpcore.AsyncConnectionPool | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> Gateway:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._main, name="aidp-gateway", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None or not self.port:
            raise RuntimeError(f"the model gateway did not start: {self._error}")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
        thread.join(10)
        self._thread = self._loop = None

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def open(self, grant: Grant) -> Ticket:
        """Admit one attempt; its token works until :meth:`close`."""
        token = _TOKEN_PREFIX + secrets.token_urlsafe(24)
        with self._lock:
            self._open[token] = _Open(grant)
        return Ticket(self.base_url, token)

    def close(self, ticket: Ticket, *, settle_s: float = CLOSE_SETTLE_S) -> Traffic:
        """End the attempt's admission; what its requests did. Requests still being handled
        (the tool has exited; their answers end) are waited for up to ``settle_s`` so that
        their usage and recording are complete."""
        with self._lock:
            entry = self._open.pop(ticket.token, None)
        if entry is None:
            return Traffic()
        with entry.settled:
            done = entry.settled.wait_for(lambda: entry.inflight == 0, timeout=settle_s)
            hung = [] if done else list(entry.tasks)
        loop = self._loop
        if hung and loop is not None:  # a request nobody will read the answer of: dropped
            for task in hung:
                loop.call_soon_threadsafe(task.cancel)
        with entry.lock:
            return entry.traffic

    def _others(self, entry: _Open) -> list[Live]:
        """The tags and live usage of every other open attempt (for run-wide budgets)."""
        with self._lock:
            others = [e for e in self._open.values() if e is not entry]
        out: list[Live] = []
        for other in others:
            with other.lock:
                out.append((other.grant.tags, other.traffic.usage))
        return out

    # -- the loop --------------------------------------------------------------------------

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._begin())
        except BaseException as exc:  # noqa: BLE001 -- reported by start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _begin(self) -> None:
        # httpcore: no redirects followed, no environment proxies, no cookies -- and a third of
        # httpx's CPU per request (its client layer cost ~1 ms of the gateway's ~2.7 here)
        self._client = httpcore.AsyncConnectionPool(
            ssl_context=_ssl_context(), max_connections=200, max_keepalive_connections=50)
        self._server = await asyncio.start_server(self._connection, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
        asyncio.get_running_loop().call_soon(asyncio.get_running_loop().stop)

    # -- one client connection -------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:  # answers go out at once, not after the client's delayed ACK
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                request, body = await self._read_request(conn, reader, writer)
                if request is None:
                    break
                await self._handle(conn, writer, request, body)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    break
                try:
                    conn.start_next_cycle()
                except h11.LocalProtocolError:
                    break
        except (ConnectionError, h11.ProtocolError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:  # the gateway stops
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _read_request(self, conn: h11.Connection, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_REQUEST_BYTES:
                    await self._send(conn, writer, 413, error_body(
                        "aidp gateway: request body too large", "invalid_request_error"))
                    return None, b""
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            else:  # ConnectionClosed, PAUSED
                return None, b""

    async def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter, status: int,
                    body: bytes, headers: Sequence[tuple[str, str]] = ()) -> None:
        all_headers = [("content-type", "application/json"),
                       ("content-length", str(len(body))), *headers]
        await self._whole(conn, writer, status, all_headers, body)

    @staticmethod
    async def _whole(conn: h11.Connection, writer: asyncio.StreamWriter, status: int,
                     headers: Sequence[tuple[str, str]], body: bytes) -> None:
        """A whole answer in one write (one segment for a small one, not three)."""
        writer.write(b"".join((conn.send(h11.Response(status_code=status, headers=list(headers)))
                               or b"", conn.send(h11.Data(data=body)) or b"",
                               conn.send(h11.EndOfMessage()) or b"")))
        await writer.drain()

    async def _handle(self, conn: h11.Connection, writer: asyncio.StreamWriter,
                      request: h11.Request, body: bytes) -> None:
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1"))
                   for k, v in request.headers]
        token = bearer_token(headers)
        with self._lock:
            entry = self._open.get(token or "")
        if entry is None:
            await self._send(conn, writer, 401, error_body(
                "aidp gateway: unknown or expired attempt token", "invalid_request_error",
                "invalid_api_key"))
            return
        task = asyncio.current_task()
        with entry.settled:
            entry.inflight += 1
            if task is not None:
                entry.tasks.add(task)
        try:
            await self._admitted(conn, writer, request, body, headers, entry)
        except (asyncio.CancelledError, ConnectionError, h11.ProtocolError):
            raise
        except Exception as exc:  # noqa: BLE001 -- a bug or a hook's (a budget check, a store): the tool gets a 502, the attempt a finding; never a traceback
            finding = gateway_finding("server_error", FailureClass.TRANSIENT,
                                      f"aidp gateway failed: {type(exc).__name__}: {exc}")
            self._account(entry, finding=finding)
            if conn.our_state is h11.SEND_RESPONSE:
                await self._send(conn, writer, 502, error_body(finding.message, "server_error",
                                                               "gateway_error"))
            else:
                writer.close()
        finally:
            with entry.settled:
                entry.inflight -= 1
                entry.tasks.discard(task)
                entry.settled.notify_all()

    async def _admitted(self, conn: h11.Connection, writer: asyncio.StreamWriter,
                        request: h11.Request, body: bytes, headers: list[tuple[str, str]],
                        entry: _Open) -> None:
        grant = entry.grant
        target = request.target.decode("latin-1")
        if not (target == "/v1" or target.startswith(("/v1/", "/v1?"))):
            await self._send(conn, writer, 404, error_body(
                f"aidp gateway: no route {target!r} (the API is under /v1)",
                "invalid_request_error", "not_found"))
            return
        method = request.method.decode("ascii")
        payload: Any = None
        if body and method == "POST":
            with contextlib.suppress(ValueError):
                payload = json.loads(body)
        model_call = method == "POST" and target.split("?")[0].endswith(MODEL_PATHS)
        if model_call and grant.budget is not None:
            with entry.lock:
                so_far = entry.traffic.usage
            loop = asyncio.get_running_loop()
            reason = await loop.run_in_executor(None, grant.budget, so_far, self._others(entry))
            if reason is not None:
                first = False
                with entry.lock:
                    if entry.traffic.refused is None:
                        entry.traffic.refused, first = reason, True
                if first and grant.on_refused is not None:
                    await loop.run_in_executor(None, grant.on_refused, reason)
                await self._send(conn, writer, 429, error_body(
                    f"aidp: {reason}; request refused", "budget_exceeded", "budget_exceeded"))
                return
        if (model_call and isinstance(payload, dict) and payload.get("stream") is True
                and target.split("?")[0].endswith("/chat/completions")
                and "stream_options" not in payload):
            payload["stream_options"] = {"include_usage": True}
            body = json.dumps(payload).encode()
        if grant.replay is not None:
            await self._replay(conn, writer, entry, method, target, model_call)
            return
        limiter, estimate = (await self._wait_for_limits(grant, payload) if model_call
                             else (None, 0))
        spent = entry.traffic.usage.total_tokens
        upstream = grant.upstream.rstrip("/") + target[len("/v1"):]
        out_headers = [(k, v) for k, v in headers if k not in _HOP_BY_HOP]
        out_headers.append(("accept-encoding", "identity"))
        if grant.key:
            out_headers.append(("authorization", f"Bearer {grant.key}"))
        started = time.monotonic()
        await self._forward(conn, writer, entry, method, upstream, out_headers, body, payload,
                            started, model_call)
        if limiter is not None:  # the bucket learns what the request really cost
            used = entry.traffic.usage.total_tokens - spent
            await asyncio.get_running_loop().run_in_executor(None, limiter.settle,
                                                             used - estimate)

    async def _replay(self, conn: h11.Connection, writer: asyncio.StreamWriter, entry: _Open,
                      method: str, target: str, model_call: bool) -> None:
        """Answer from the recording (see :attr:`Grant.replay`)."""
        path = target[len("/v1"):].split("?")[0]
        assert entry.grant.replay is not None
        if model_call:
            with entry.lock:
                index, entry.served = entry.served, entry.served + 1
            self._account(entry, requests=1, exchanges=1)
        else:
            index = -1
        answer = replayed(entry.grant.replay, index, method, path, entry.grant.mask)
        if answer.usage is not None or answer.finding is not None:
            self._account(entry, usage=answer.usage, finding=answer.finding)
        await self._whole(conn, writer, answer.status, answer.headers, answer.body)

    async def _wait_for_limits(self, grant: Grant, payload: Any) -> tuple[Any, int]:
        """Wait for any ``Retry-After`` of the endpoint, then for the profile's rate limit;
        the limiter that admitted the request and the tokens it took (an estimate)."""
        loop = asyncio.get_running_loop()
        estimate = len(json.dumps(payload)) // 4 if payload is not None else 0
        while True:
            with self._lock:
                until = self._not_before.get(grant.upstream, 0.0)
            delay = until - time.monotonic()
            if delay <= 0 and grant.holds is not None:  # another process's 429
                delay = await loop.run_in_executor(None, grant.holds.wait_s, grant.upstream)
            if delay > 0:
                await asyncio.sleep(min(delay, 5.0))
                continue
            limiter: Any = grant.limiter
            if limiter is None:
                if grant.rate_limit is None:
                    return None, 0
                limiter = limiter_for(grant.profile, grant.rate_limit)
                if limiter.unlimited:
                    return None, 0
            delay = await loop.run_in_executor(None, limiter.try_acquire, estimate)
            if delay <= 0:
                return limiter, estimate
            await asyncio.sleep(min(delay, 5.0))  # a shared bucket may refill sooner

    async def _forward(self, conn: h11.Connection, writer: asyncio.StreamWriter, entry: _Open,
                       method: str, url: str, headers: list[tuple[str, str]], body: bytes,
                       payload: Any, started: float, model_call: bool) -> None:
        """Send the request upstream and the answer back. What the tool is told is accounted
        first: a tool that exits on the answer's last byte finds its usage already counted."""
        grant = entry.grant
        assert self._client is not None
        model = payload.get("model") if isinstance(payload, dict) else None
        price = price_of(model, grant.price)
        timeout = {"connect": CONNECT_TIMEOUT_S, "read": grant.read_timeout_s,
                   "write": CONNECT_TIMEOUT_S, "pool": CONNECT_TIMEOUT_S}
        self._account(entry, requests=1 if model_call else 0, exchanges=1)
        answer = bytearray()
        status = 0
        finding: Finding | None = None
        try:
            sent = [(b"host", urlsplit(url).netloc.encode("idna")),
                    *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers)]
            if body or method in ("POST", "PUT", "PATCH"):
                sent.append((b"content-length", str(len(body)).encode()))
            response = await self._client.handle_async_request(httpcore.Request(
                method, url, headers=sent, content=body, extensions={"timeout": timeout}))
        except httpcore.TimeoutException as exc:
            finding = gateway_finding("timeout", FailureClass.TRANSIENT,
                               f"the endpoint did not answer in time ({type(exc).__name__})")
            self._account(entry, finding=finding)
            await self._send(conn, writer, 504, error_body(
                f"aidp gateway: {finding.message}", "timeout", "timeout"))
        except UPSTREAM_ERRORS as exc:
            finding = gateway_finding("connection_error", FailureClass.TRANSIENT,
                               f"cannot reach the endpoint: {type(exc).__name__}: {exc}")
            self._account(entry, finding=finding)
            await self._send(conn, writer, 502, error_body(
                f"aidp gateway: {finding.message}", "connection_error", "connection_error"))
        else:
            status = response.status
            received = {k.decode("latin-1").lower(): v.decode("latin-1")
                        for k, v in response.headers}
            out = [(k, v) for k, v in received.items()
                   if k not in _HOP_BY_HOP and k != "content-encoding"]
            try:
                if "text/event-stream" in received.get("content-type", ""):
                    finding = await self._pass_stream(conn, writer, entry, response, received,
                                                      out, answer, price)
                else:
                    finding = await self._pass_body(conn, writer, entry, response, received,
                                                    out, answer, price)
            finally:
                await response.aclose()
        self._account(entry, latency_s=time.monotonic() - started)
        if grant.record is not None:
            self._record(grant, method, url, payload, body, status, bytes(answer),
                         time.monotonic() - started, finding)

    async def _pass_body(self, conn: h11.Connection, writer: asyncio.StreamWriter,
                         entry: _Open, response: httpcore.Response, received: dict[str, str],
                         out: list[tuple[str, str]], answer: bytearray, price: Price | None
                         ) -> Finding | None:
        """A whole (JSON) answer: read, accounted, then passed on."""
        status = response.status
        finding: Finding | None = None
        try:
            async for chunk in response.aiter_stream():
                if len(answer) + len(chunk) > MAX_RESPONSE_BYTES:
                    raise TooLarge
                answer += chunk
        except _CUT as exc:
            finding = cut_finding(exc)
            self._account(entry, finding=finding)
            await self._send(conn, writer, 502, error_body(
                f"aidp gateway: {finding.message}", "server_error", finding.code))
            return finding
        parsed: Any = None
        with contextlib.suppress(ValueError):
            parsed = json.loads(answer)
        if status < 400:
            usage = usage_of(parsed)
            if usage is not None:
                self._account(entry, usage=priced(usage, price))
        else:
            finding = error_finding(status, parsed, received, entry.grant.mask)
            self._account(entry, finding=finding)
            if finding.retry_after:
                upstream = entry.grant.upstream
                with self._lock:
                    self._not_before[upstream] = max(self._not_before.get(upstream, 0.0),
                                                     time.monotonic() + finding.retry_after)
                if entry.grant.holds is not None:  # every process on the store waits too
                    await asyncio.get_running_loop().run_in_executor(
                        None, entry.grant.holds.hold, upstream, finding.retry_after)
        head = [(k, v) for k, v in out if k.lower() != "content-length"]
        head.append(("content-length", str(len(answer))))
        await self._whole(conn, writer, status, head, bytes(answer))
        return finding

    async def _pass_stream(self, conn: h11.Connection, writer: asyncio.StreamWriter,
                           entry: _Open, response: httpcore.Response, received: dict[str, str],
                           out: list[tuple[str, str]], answer: bytearray, price: Price | None
                           ) -> Finding | None:
        """Server-sent events, passed on chunk by chunk; usage and errors are accounted as
        they are read, before the chunk holding them goes to the tool."""
        reader = SSEReader()
        counted_usage = counted_error = False
        finding: Finding | None = None
        head = [(k, v) for k, v in out if k.lower() != "content-length"]
        writer.write(conn.send(h11.Response(status_code=response.status, headers=head)) or b"")
        await writer.drain()
        try:
            async for chunk in response.aiter_stream():
                if len(answer) + len(chunk) > MAX_RESPONSE_BYTES:
                    raise TooLarge
                answer += chunk
                reader.feed(chunk)
                if reader.usage is not None and not counted_usage:
                    counted_usage = True
                    self._account(entry, usage=priced(reader.usage, price))
                if reader.error is not None and not counted_error:
                    counted_error = True
                    finding = error_finding(response.status or 500, reader.error, received,
                                            entry.grant.mask)
                    self._account(entry, finding=finding)
                writer.write(conn.send(h11.Data(data=chunk)) or b"")
                await writer.drain()
        except _CUT as exc:
            finding = cut_finding(exc)
            self._account(entry, finding=finding)
            with contextlib.suppress(Exception):
                writer.close()  # cut mid-answer: the tool sees the drop, as it happened
            return finding
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()
        return finding

    @staticmethod
    def _account(entry: _Open, *, usage: Usage | None = None, finding: Finding | None = None,
                 requests: int = 0, exchanges: int = 0, latency_s: float = 0.0) -> None:
        with entry.lock:
            t = entry.traffic
            t.exchanges += exchanges
            t.latency_s += latency_s
            if usage is not None or requests:
                t.usage += (usage or Usage()) + Usage(requests=requests)
            if finding is not None:
                t.findings.append(finding)

    def _record(self, grant: Grant, method: str, url: str, payload: Any, body: bytes,
                status: int, answer: bytes, elapsed: float, finding: Finding | None) -> None:
        entry = {"time": time.time(), "method": method, "path": url[len(grant.upstream.rstrip(
            "/")):], "request": payload if payload is not None else _text(body),
            "status": status, "response": _text(answer), "latency_ms": round(elapsed * 1000, 1),
            "finding": finding.to_dict() if finding is not None else None}
        line = json.dumps(entry)
        for value in grant.mask:
            if value:
                line = line.replace(value, "***")
        assert grant.record is not None
        with contextlib.suppress(OSError):
            grant.record.parent.mkdir(parents=True, exist_ok=True)
            with open(grant.record, "a", encoding="utf-8") as out:
                out.write(line + "\n")


def _ssl_context() -> ssl.SSLContext:
    """The certificates the provider's must chain to: ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when
    set (a company's own CA; the tools' own HTTP clients honour them too), else certifi's."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile or None, capath=capath or None)
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


_shared: Gateway | None = None
_shared_lock = threading.Lock()


def shared_gateway() -> Gateway:
    """The process's gateway, started on first use (a daemon thread: it ends with the
    process)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Gateway().start()
        return _shared


def _text(data: bytes) -> str:
    return data[:RECORD_CAP_BYTES].decode("utf-8", "replace")
