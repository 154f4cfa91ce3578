"""Live events: ``GET /api/v1/events`` (server-sent events), ``GET /runs/{id}/events`` and
``aidp events``, against the real ``aidp serve`` and runs made by the real CLI."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aidp.resilience.breaker import BreakerPolicy
from aidp.state.breakers import BreakerBook
from aidp.state.store import Store
from tests.api.conftest import Served

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def plan(tmp_path: Path, steps: int = 4, pause: float = 0.3) -> Path:
    """Two workstreams of ``steps`` steps, each pausing ``pause`` s and writing a file."""
    lines = ["version: 1", "workstreams:"]
    for ws in ("a", "b"):
        lines.append(f"  - id: {ws}\n    scope: ['{ws}*.txt']\n    steps:")
        lines += [f"      - {{id: s{i}, run: 'sleep {pause}; echo {i} > {ws}{i}.txt'}}"
                  for i in range(steps)]
    path = tmp_path / "plan.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Each server-sent event as {"id", "event", "data"} (data decoded), each comment as
    {"comment": text}."""
    fields: dict[str, Any] = {}
    for line in lines:
        if not line:
            if "data" in fields:
                fields["data"] = json.loads(fields["data"])
                yield fields
            fields = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def start_run(served: Served, tmp_path: Path, **kw: Any) -> tuple[subprocess.Popen[str], str]:
    """``aidp run`` in the background; returns it and its run id (once the run exists)."""
    with served.client("read") as client:
        known = {r["run_id"] for r in client.get("/runs").json()["items"]}
        proc = served.cli.popen("run", "--json", str(plan(tmp_path, **kw)))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listed = client.get("/runs").json()["items"]
            new = [r["run_id"] for r in listed if r["run_id"] not in known]
            if new:
                return proc, str(new[0])
            if proc.poll() is not None and proc.returncode != 0:
                break
            time.sleep(0.05)
    proc.kill()
    out, err = proc.communicate()
    raise AssertionError(f"the run did not appear: {out}{err}")


def finish(proc: subprocess.Popen[str]) -> None:
    """Wait for a background ``aidp run`` (closing its pipes); it must succeed."""
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err


def journal(served: Served, run_id: str) -> list[dict[str, Any]]:
    """The run's events through the polling route, page by page."""
    docs: list[dict[str, Any]] = []
    with served.client("read") as client:
        while True:
            after = int(docs[-1]["id"]) if docs else 0
            page = client.get(f"/runs/{run_id}/events", params={"after": after, "limit": 7})
            assert page.status_code == 200, page.text
            if not page.json():
                return docs
            docs += page.json()


def read_until(served: Served, stop: Any, *, headers: dict[str, str] | None = None,
               params: Any = None, limit: int | None = None) -> tuple[list[dict[str, Any]],
                                                                     int]:
    """Events of ``/events`` until ``stop(event)`` (or ``limit`` events); and the comments."""
    got: list[dict[str, Any]] = []
    comments = 0
    with served.client("read", headers=headers or {}) as client, \
            client.stream("GET", "/events", params=params) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for item in sse(response.iter_lines()):
            if "comment" in item:
                comments += 1
                if stop(None):
                    break
                continue
            got.append(item)
            if stop(item) or (limit is not None and len(got) >= limit):
                break
    return got, comments


def finished(run_id: str) -> Any:
    return lambda e: e is not None and e["event"] == "dev.aidp.run.finished" and \
        e["data"].get("aidprun") == run_id


def test_reconnecting_follower_sees_every_event_once_in_order(served: Served,
                                                              tmp_path: Path) -> None:
    """A program follows /events, a run starts, the program disconnects mid-run and reconnects
    with Last-Event-ID: it sees every event of the run exactly once, in order."""
    with served.client("read") as client, client.stream("GET", "/events") as response:
        assert response.status_code == 200
        proc, run_id = start_run(served, tmp_path)
        first: list[dict[str, Any]] = []
        for item in sse(response.iter_lines()):
            if "id" in item:
                first.append(item)
            if len([e for e in first if e["data"].get("aidprun") == run_id]) >= 6:
                break  # disconnect mid-run
    time.sleep(0.5)  # the run goes on meanwhile
    rest, _ = read_until(served, finished(run_id),
                         headers={"Last-Event-ID": first[-1]["id"]})
    finish(proc)
    seen = [e for e in first + rest if e["data"].get("aidprun") == run_id]
    assert [e for e in rest if e["data"].get("aidprun") == run_id], "disconnected too late"
    expected = journal(served, run_id)
    assert [e["id"] for e in seen] == [d["id"] for d in expected]
    assert [e["data"] for e in seen] == expected
    assert all(e["event"] == e["data"]["type"] for e in seen)
    kinds = [d["type"] for d in expected]
    assert kinds[0] == "dev.aidp.run.created" and kinds[-1] == "dev.aidp.run.finished"
    assert kinds.count("dev.aidp.step.completed") == 8
    ids = [int(d["id"]) for d in expected]
    assert ids == sorted(set(ids))
    doc = next(d for d in expected if d["type"] == "dev.aidp.step.completed")
    assert doc["specversion"] == "1.0" and doc["source"] == f"/aidp/runs/{run_id}"
    assert doc["subject"] in {f"{w}/s{i}" for w in "ab" for i in range(4)}


@SQLITE
def test_filters_by_run_and_type(served: Served, tmp_path: Path) -> None:
    proc, run_id = start_run(served, tmp_path, steps=1, pause=0)
    finish(proc)
    proc, other = start_run(served, tmp_path, steps=1, pause=0)
    finish(proc)
    caught_up = lambda e: e is None  # noqa: E731 -- the first heartbeat: nothing is left
    got, _ = read_until(served, caught_up, params={
        "after": 0, "run": run_id, "type": ["step.completed", "run"], "heartbeat": 0.5})
    assert {e["data"]["aidprun"] for e in got} == {run_id}
    kinds = [e["event"].removeprefix("dev.aidp.") for e in got]
    assert kinds == ["run.created", "run.started", "step.completed", "step.completed",
                     "run.finished"]
    got, _ = read_until(served, caught_up, params={"after": 0, "type": "dev.aidp.run.finished",
                                                   "heartbeat": 0.5})
    assert [e["data"]["aidprun"] for e in got] == [run_id, other]
    with served.client("read") as client:
        resumed = client.get("/events", headers={"Last-Event-ID": "x1"})
        assert resumed.status_code == 400 and "Last-Event-ID" in resumed.json()["detail"]
        typo = client.get("/events", params={"type": "stpe.failed"})
        assert typo.status_code == 400 and "stpe.failed" in typo.json()["detail"]
        assert client.get("/events", params={"run": "NOPE"}).status_code == 404
        assert client.get("/runs/NOPE/events").status_code == 404
        assert client.get(f"/runs/{run_id}/events", params={"limit": 0}).status_code == 422


@SQLITE
def test_heartbeats_and_auth(served: Served) -> None:
    """An idle stream gets a comment every `heartbeat` seconds; no token: 401."""
    beats: list[float] = []

    def third_beat(event: Any) -> bool:
        beats.append(time.monotonic())
        return event is None and len(beats) >= 3

    got, comments = read_until(served, third_beat, params={"heartbeat": 0.3})
    assert got == [] and comments == 3
    assert beats[2] - beats[0] >= 0.5  # every 0.3 s, not as fast as it can
    with served.client(None) as anon:
        answer = anon.get("/events")
        assert answer.status_code == 401
        assert answer.headers["content-type"] == "application/problem+json"
        assert anon.get("/runs/x/events").status_code == 401


def test_cli_follows_a_run_to_its_end_over_the_api(served: Served, tmp_path: Path) -> None:
    """`aidp events --follow --url URL --run RUN --json` prints every event of the run, from
    its first, and exits when the run finishes; the local `aidp events` prints the same."""
    proc, run_id = start_run(served, tmp_path, steps=3, pause=0.3)
    follower = subprocess.run(
        served.cli.popen_argv("events", "--follow", "--url", served.url.removesuffix("/api/v1"),
                              "--run", run_id, "--json", "--token-env", "EVENTS_TOKEN"),
        cwd=served.cli.cwd, capture_output=True, text=True, timeout=120,
        env={**served.cli.env(), "EVENTS_TOKEN": served.tokens["read"]}, check=False)
    assert follower.returncode == 0, follower.stderr
    finish(proc)
    printed = [json.loads(line) for line in follower.stdout.splitlines()]
    assert printed == journal(served, run_id)
    local = served.cli("events", "--run", run_id, "--json", check=True)
    assert [json.loads(line) for line in local.stdout.splitlines()] == printed
    human = served.cli("events", "--run", run_id, "--type", "step.completed", check=True)
    lines = human.stdout.splitlines()
    assert len(lines) == 6 and all("step.completed" in line and f"{run_id}/" in line
                                   for line in lines)
    refused = subprocess.run(
        served.cli.popen_argv("events", "--url", served.url, "--token-env", "NO_SUCH_VAR"),
        cwd=served.cli.cwd, capture_output=True, text=True, timeout=60,
        env=served.cli.env(), check=False)
    assert refused.returncode == 2 and "NO_SUCH_VAR" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_breaker_and_proposal_events_are_streamed(served: Served) -> None:
    """A breaker opening, its reset by hand and a proposal's review reach /events (events of
    no run: no aidprun)."""
    assert served.cli.db_url is not None
    store = Store(served.cli.db_url)
    try:
        book = BreakerBook(store)
        policy = BreakerPolicy(failure_threshold=1, window_s=60, cooldown_s=300)
        book.record("profile:p", policy, book.admit("profile:p", policy), success=False,
                    transient=True)
        from aidp.specs.lifecycle import ProposalAction
        from aidp.specs.proposals import ProposalBook

        proposals = ProposalBook(store)
        proposals.ensure("add-x", "Add x", "ann")
        proposals.act("add-x", ProposalAction.SUBMIT, "ann")
    finally:
        store.close()
    served.cli("breakers", "reset", "profile:p", check=True)
    got, _ = read_until(served, lambda e: e is None, params={
        "after": 0, "type": ["breaker", "proposal"], "heartbeat": 0.5})
    assert [e["event"] for e in got] == [
        "dev.aidp.breaker.opened", "dev.aidp.proposal.transitioned",
        "dev.aidp.proposal.transitioned", "dev.aidp.breaker.reset"]
    assert all("aidprun" not in e["data"] for e in got)
    assert got[3]["data"]["data"]["key"] == "profile:p"


@SQLITE
def test_clients_leaving_streams_leave_no_error_and_no_connection(served: Served) -> None:
    """Streams dropped mid-flight end quietly on the server (no traceback in its log), and the
    server goes on answering."""
    assert served.cli.db_url is not None
    store = Store(served.cli.db_url)
    try:
        with store.write() as tx:
            for i in range(200):
                tx.event("r", "step.started", "a", f"s{i}", attempt=1, pad="x" * 2000)
    finally:
        store.close()
    for _ in range(20):
        with served.client("read") as client, client.stream(
                "GET", "/events", params={"heartbeat": 0.05, "after": 0}) as response:
            next(response.iter_lines())
    with served.client("read") as client:
        assert client.get("/runs").status_code == 200
    time.sleep(0.5)
    served.stop()
    assert "Traceback" not in served.output[-1]
    assert "Exception in ASGI application" not in served.output[-1]


@SQLITE
def test_cli_keeps_trying_until_the_service_answers(cli: Any, tmp_path: Path) -> None:
    """`aidp events --follow --url` started before the service retries its connection, then
    follows: a run made afterwards is printed to its end."""
    import socket

    from tests.api.conftest import start_served

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token_cli = subprocess.run(cli.popen_argv("tokens", "create", "follower", "--json"),
                               cwd=cli.cwd, capture_output=True, text=True, timeout=60,
                               env=cli.env(), check=True)
    token = json.loads(token_cli.stdout)["token"]
    follower = subprocess.Popen(
        cli.popen_argv("events", "--follow", "--json", "--url", f"http://127.0.0.1:{port}",
                       "--type", "run.finished", "--after", "0"),
        cwd=cli.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**cli.env(), "AIDP_TOKEN": token}, start_new_session=True)
    try:
        time.sleep(1.0)  # it fails to connect, and retries
        served = start_served(cli, "--port", str(port))
        try:
            proc, run_id = start_run(served, tmp_path, steps=1, pause=0)
            finish(proc)
            assert follower.stdout is not None
            line = follower.stdout.readline()
            assert json.loads(line)["aidprun"] == run_id
        finally:
            served.stop()
    finally:
        follower.kill()
        follower.communicate()
