"""Signed webhooks from the real ``aidp serve``: every event of a run reaches a loopback
receiver with a valid Standard Webhooks signature, also across a receiver outage; internal
and redirecting URLs get nothing; dead letters and redelivery; the secret never leaks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Served, start_served
from tests.conftest import Cli

SECRET = "whsec_" + base64.b64encode(b"canary-webhook-secret-0123456789").decode()
NEW_SECRET = "canary-rotated-secret-raw"
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


class Receiver:
    """A loopback HTTP receiver: records what it got (after answering), answers ``status``
    (or redirects to ``redirect``); can be stopped and started again on the same port."""

    def __init__(self, port: int = 0) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.status = 204
        self.redirect: str | None = None
        self.extra: dict[str, str] = {}
        self.lock = threading.Lock()
        self.port = port
        self.server: ThreadingHTTPServer | None = None
        self.start()

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if outer.redirect:
                    self.send_response(302)
                    self.send_header("Location", outer.redirect)
                else:
                    self.send_response(outer.status)
                for k, v in outer.extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.wfile.flush()
                with outer.lock:
                    outer.got.append(({k.lower(): v for k, v in self.headers.items()}, body))

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def ids(self) -> list[int]:
        with self.lock:
            return [int(h["webhook-id"]) for h, _ in self.got]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def _fast_sender(monkeypatch: pytest.MonkeyPatch, max_attempts: int = 60) -> None:
    monkeypatch.setenv("WH_SECRET", SECRET)
    monkeypatch.setenv("AIDP_WEBHOOKS__POLL_INTERVAL_S", "0.2")
    monkeypatch.setenv("AIDP_WEBHOOKS__BACKOFF_INITIAL_S", "0.2")
    monkeypatch.setenv("AIDP_WEBHOOKS__BACKOFF_MAX_S", "1")
    monkeypatch.setenv("AIDP_WEBHOOKS__MAX_ATTEMPTS", str(max_attempts))


def _reference_verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Standard Webhooks, written here independently of aidp."""
    key = base64.b64decode(secret[len("whsec_"):]) if secret.startswith("whsec_") \
        else secret.encode()
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = [s.split(",", 1)[1] for s in headers["webhook-signature"].split(" ")]
    return any(hmac.compare_digest(expected, g) for g in given)


def _db(cli: Cli) -> Path:
    assert cli.db_url is not None
    return Path(cli.db_url.split("///", 1)[1])


def _event_ids(cli: Cli, after: int) -> list[int]:
    with sqlite3.connect(_db(cli)) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM events WHERE id > ? AND kind != "
                                           "'webhook.dead' ORDER BY id", (after,))]


def _wait(what: Callable[[], bool], timeout: float = 60, message: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {message}")
        time.sleep(0.1)


def _add(cli: Cli, url: str, *extra: str) -> dict[str, Any]:
    out = cli("webhooks", "add", url, "--events", "*", "--secret-env", "WH_SECRET", "--json",
              *extra, check=True)
    return dict(json.loads(out.stdout))


def _plan(tmp_path: Path, sleep: float = 0.0, width: int = 3) -> Path:
    step = f"sleep {sleep}" if sleep else "true"
    plan = tmp_path / "plan.yaml"
    items = ", ".join(f"{{id: w{i}, depends_on: [{f'w{i - 1}' if i else ''}], steps: "
                      f"[{{id: a, run: '{step}'}}, {{id: b, run: '{step}'}}]}}"
                      for i in range(width))
    plan.write_text(f"version: 1\nworkstreams: [{items}]\n")
    return plan


@pytest.mark.parametrize("outage_s", [
    4, pytest.param(30, marks=[pytest.mark.slow, pytest.mark.timeout(300)])])
def test_every_event_arrives_signed_once_even_across_an_outage(
        cli: Cli, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch,
        outage_s: float) -> None:
    """A receiver down for ``outage_s`` mid-run still gets every event of the run afterwards,
    each once by id, each validly signed (Standard Webhooks, checked independently)."""
    _fast_sender(monkeypatch)
    served = start_served(cli)
    try:
        hook = _add(cli, receiver.url, "--allow-private")
        start = int(hook["cursor"])
        # six chained steps, each sleeping half the outage: the run outlasts it
        run = cli.popen("run", str(_plan(tmp_path, sleep=outage_s / 2, width=3)))
        _wait(lambda: len(receiver.got) >= 3, 60, "first events")
        receiver.stop()                         # the receiver goes away mid-run ...
        before = receiver.ids()
        time.sleep(outage_s)
        down_events = _event_ids(cli, start)
        receiver.start()                        # ... and comes back on the same port
        out, err = run.communicate(timeout=240)
        assert run.returncode == 0, out + err
        expected = _event_ids(cli, start)
        assert len(expected) > len(down_events) > len(before) >= 3  # events during the outage
        _wait(lambda: set(receiver.ids()) >= set(expected), 60,
              f"missing {sorted(set(expected) - set(receiver.ids()))}")
        time.sleep(1)
        ids = receiver.ids()
        assert len(ids) == len(set(ids)), "an event was delivered twice"
        assert sorted(ids) == expected
        for headers, body in receiver.got:
            assert _reference_verify(SECRET, headers, body)
            event = json.loads(body)
            assert event["specversion"] == "1.0" and event["id"] == headers["webhook-id"]
            assert abs(int(headers["webhook-timestamp"]) - time.time()) < 300
        with served.client("admin") as client:
            listed = client.get("/webhooks").text + client.get("/webhooks/deliveries").text
            assert client.get("/webhooks/deliveries", params={"status": "delivered"}).json()
        cli_out = cli("webhooks", "list").stdout + cli("webhooks", "deliveries").stdout
    finally:
        served.stop()
    secret_bytes = SECRET.encode()
    assert secret_bytes not in _db(cli).read_bytes()
    assert SECRET not in "".join(served.output) + listed + cli_out
    assert "WH_SECRET" in listed


def test_internal_and_redirecting_urls_get_nothing(
        cli: Cli, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    _fast_sender(monkeypatch, max_attempts=2)
    for url in ("http://127.0.0.1:1/", "http://10.0.0.1/", "http://169.254.169.254/latest/",
                "http://[::1]/", "http://0.0.0.0/", "http://[fd00:ec2::254]/",
                "ftp://example.com/", "http://user:pw@example.com/"):
        refused = cli("webhooks", "add", url, "--events", "*", "--secret-env", "WH_SECRET")
        assert refused.returncode == 2, (url, refused.stderr)
        assert "refused" in refused.stderr and "Traceback" not in refused.stderr
    # names are checked when the delivery is made, on the resolved address
    by_name = _add(cli, f"http://localhost:{receiver.port}/hook")
    elsewhere = Receiver()
    try:
        receiver.redirect = elsewhere.url
        redirected = _add(cli, receiver.url, "--allow-private")
        served = start_served(cli)
        try:
            cli("run", str(_plan(tmp_path, width=1)), check=True)
            _wait(lambda: all(d["status"] == "dead" for d in json.loads(
                cli("webhooks", "deliveries", "--json").stdout)), 60, "dead letters")
        finally:
            served.stop()
        deliveries = json.loads(cli("webhooks", "deliveries", "--json").stdout)
        mine = [d for d in deliveries if d["webhook_id"] == by_name["id"]]
        assert mine and all("resolves to 127.0.0.1" in d["last_error"] and
                            "refused" in d["last_error"] for d in mine)
        bounced = [d for d in deliveries if d["webhook_id"] == redirected["id"]]
        assert bounced and all(d["last_status"] == 302 for d in bounced)
        assert elsewhere.got == []              # the redirect was not followed
        assert all(h["host"] == f"127.0.0.1:{receiver.port}" for h, _ in receiver.got)
        assert not any(h.get("host", "").startswith("localhost") for h, _ in receiver.got)
    finally:
        elsewhere.stop()


def test_dead_letter_then_redeliver_with_a_rotated_secret(
        cli: Cli, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    _fast_sender(monkeypatch, max_attempts=2)
    monkeypatch.setenv("WH_NEW", NEW_SECRET)
    receiver.status = 500
    hook = _add(cli, receiver.url, "--allow-private")
    served = start_served(cli)
    try:
        cli("run", str(_plan(tmp_path, width=1)), check=True)
        expected = _event_ids(cli, int(hook["cursor"]))

        def dead() -> list[dict[str, Any]]:
            with served.client("admin") as client:
                answer = client.get("/webhooks/deliveries", params={"status": "dead"})
                assert answer.status_code == 200
                return list(answer.json())

        _wait(lambda: len(dead()) == len(expected), 60, "every delivery dead")
        assert all(d["attempts"] == 2 and d["last_status"] == 500 for d in dead())
        with sqlite3.connect(_db(cli)) as conn:
            journal = conn.execute("SELECT count(*) FROM events WHERE kind = 'webhook.dead'"
                                   ).fetchone()[0]
        assert journal == len(expected)
        assert len(receiver.got) == 2 * len(expected)
        # rotate: both secrets sign during the overlap
        rotated = cli("webhooks", "rotate", hook["id"], "--secret-env", "WH_NEW",
                      "--overlap", "1h", check=True)
        assert "WH_SECRET" in rotated.stdout
        receiver.status = 200
        receiver.got.clear()
        first, *rest = dead()
        cli("webhooks", "redeliver", str(first["id"]), check=True)
        with served.client("admin") as client:
            for d in rest:
                again = client.post(f"/webhooks/deliveries/{d['id']}/redeliver",
                                    headers={"Idempotency-Key": f"re-{d['id']}"})
                assert again.status_code == 200 and again.json()["status"] == "pending"
            assert client.post("/webhooks/deliveries/999999/redeliver").status_code == 404
        _wait(lambda: sorted(receiver.ids()) == expected, 60, "redelivered")
        for headers, body in receiver.got:
            assert len(headers["webhook-signature"].split(" ")) == 2
            assert _reference_verify(SECRET, headers, body)
            assert _reference_verify(NEW_SECRET, headers, body)
        # a receiver checks its side with aidp webhooks verify
        headers, body = receiver.got[0]
        (tmp_path / "body").write_bytes(body)
        args = ["webhooks", "verify", "--secret-env", "WH_NEW", "--body-file",
                str(tmp_path / "body"), *[x for k in ("webhook-id", "webhook-timestamp",
                                                      "webhook-signature")
                                          for x in ("-H", f"{k}: {headers[k]}")]]
        ok = cli(*args)
        assert ok.returncode == 0 and ok.stdout.startswith("valid"), ok.stderr
        (tmp_path / "body").write_bytes(body + b" ")
        bad = cli(*args)
        assert bad.returncode == 1 and "INVALID" in bad.stdout
        assert all(d["status"] == "delivered" for d in json.loads(
            cli("webhooks", "deliveries", hook["id"], "--json").stdout))
    finally:
        served.stop()
    assert NEW_SECRET not in "".join(served.output)
    assert NEW_SECRET.encode() not in _db(cli).read_bytes()


def test_api_manages_subscriptions(cli: Cli, served: Served) -> None:
    with served.client("admin") as client:
        made = client.post("/webhooks", json={"url": "https://hooks.example.com/x",
                                              "events": ["run.*", "gate"],
                                              "secret_env": "SOME_VAR"})
        assert made.status_code == 201, made.text
        hook = made.json()
        assert hook["secret_env"] == "SOME_VAR" and hook["events"] == ["run.*", "gate"]
        assert client.get(f"/webhooks/{hook['id']}").json() == hook
        bad = client.post("/webhooks", json={"url": "http://169.254.169.254/", "events": ["*"],
                                             "secret_env": "X"})
        assert bad.status_code == 400 and "link-local" in bad.json()["detail"]
        typo = client.post("/webhooks", json={"url": "https://h.example.com/", "events":
                                              ["stpe.failed"], "secret_env": "X"})
        assert typo.status_code == 400 and "selects no event" in typo.json()["detail"]
        assert client.delete(f"/webhooks/{hook['id']}").status_code == 204
        assert client.get(f"/webhooks/{hook['id']}").status_code == 404
    with served.client("operate") as low:
        assert low.get("/webhooks").status_code == 403
