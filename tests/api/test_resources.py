"""Runs, workstreams, steps, attempts, logs, findings, diagnostics, diffs and the run actions
(rollback, approve, reject) through the real ``aidp serve``, on runs made by the real CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Served

PLAN = """\
version: 1
workstreams:
  - id: a
    scope: ["out/**"]
    steps:
      - {id: one, run: "mkdir -p out && echo hello > out/one.txt && echo line-one && echo line-two"}
      - {id: two, depends_on: [one], run: "python3 -c \\"raise ValueError(42)\\""}
"""
OK_PLAN = """\
version: 1
workstreams:
  - id: w
    steps:
      - {id: s, run: "echo fine"}
"""
TWO_PLAN = """\
version: 1
workstreams:
  - id: a
    scope: ["out/**"]
    steps:
      - {id: one, run: "mkdir -p out && echo 1 > out/one.txt"}
      - {id: two, depends_on: [one], run: "mkdir -p out && echo 2 > out/two.txt"}
"""
GATE_PLAN = """\
version: 1
workstreams:
  - id: docs
    scope: ["docs/**"]
    steps:
      - id: review
        tool: manual
        prompt: Write docs/notes.md by hand.
        checks: ["test -s docs/notes.md"]
"""


def _run(served: Served, tmp_path: Path, text: str, name: str = "plan.yaml") -> str:
    plan = tmp_path / name
    plan.write_text(text)
    done = served.cli("run", str(plan), "--json", timeout=120)
    return str(json.loads(done.stdout)["run_id"])


def _steps(run_id: str) -> str:
    return f"/runs/{run_id}/steps"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_pages_walk_every_run_once_and_filters_apply(served: Served, tmp_path: Path) -> None:
    made = [_run(served, tmp_path, OK_PLAN, f"ok{i}.yaml") for i in range(4)]
    failed = _run(served, tmp_path, PLAN)
    with served.client("read") as client:
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = client.get("/runs", params=params).json()
            seen += [item["run_id"] for item in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted([*made, failed]) and len(seen) == 5
        assert seen[0] == failed  # newest first
        assert pages == 3
        only_failed = client.get("/runs", params={"status": "failed"}).json()
        assert [i["run_id"] for i in only_failed["items"]] == [failed]
        future = client.get("/runs", params={"since": "2999-01-01T00:00:00Z"}).json()
        assert future == {"items": [], "next_cursor": None}
        assert len(client.get("/runs", params={"since": "0"}).json()["items"]) == 5
        assert client.get("/runs", params={"change": "nope"}).json()["items"] == []
        for bad in ({"cursor": "!!!"}, {"status": "sleepy"}, {"since": "yesterday"}):
            answer = client.get("/runs", params=bad)  # the schema states what is valid
            assert answer.status_code == 422, bad
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["exit_code"] == 2


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_parts_of_a_run_logs_findings_diagnostics_and_diffs(served: Served,
                                                            tmp_path: Path) -> None:
    run_id = _run(served, tmp_path, PLAN)
    steps = _steps(run_id)
    with served.client("read") as client:
        run = client.get(f"/runs/{run_id[:10].lower()}").json()
        assert run["run_id"] == run_id and run["status"] == "failed"
        assert [w["id"] for w in client.get(f"/runs/{run_id}/workstreams").json()] == ["a"]
        ws = client.get(f"/runs/{run_id}/workstreams/a").json()
        assert [s["status"] for s in ws["steps"]] == ["completed", "failed"]
        one = client.get(f"{steps}/a/one").json()
        assert one["status"] == "completed" and one["checkpoint"]
        attempts = client.get(f"{steps}/a/one/attempts").json()
        assert [a["number"] for a in attempts] == [1]
        assert client.get(f"{steps}/a/one/attempts/1").json()["number"] == 1

        log = client.get(f"{steps}/a/one/attempts/1/log")
        assert log.status_code == 200 and log.headers["accept-ranges"] == "bytes"
        assert "line-one\nline-two\n" in log.text
        size = len(log.content)
        start = log.content.index(b"line-two")
        part = client.get(f"{steps}/a/one/attempts/1/log",
                          headers={"Range": f"bytes={start}-{start + 3}"})
        assert part.status_code == 206 and part.content == b"line"
        assert part.headers["content-range"] == f"bytes {start}-{start + 3}/{size}"
        tail = client.get(f"{steps}/a/one/attempts/1/log", headers={"Range": "bytes=-9"})
        assert tail.status_code == 206 and tail.content == b"line-two\n"
        past = client.get(f"{steps}/a/one/attempts/1/log",
                          headers={"Range": f"bytes={size}-"})
        assert past.status_code == 416
        assert past.headers["content-range"] == f"bytes */{size}"
        assert past.json()["code"] == "range_not_satisfiable"
        followed = client.get(f"{steps}/a/one/attempts/1/log", params={"follow": "true"},
                              headers={"Range": f"bytes={start}-"})
        assert followed.content == b"line-two\n"  # the attempt ended: the stream ends too

        diff = client.get(f"{steps}/a/one/attempts/1/diff").json()
        assert diff["kind"] == "checkpoint" and diff["checkpoint"] == one["checkpoint"]
        assert "+hello" in diff["diff"] and "out/one.txt" in diff["diff"]

        findings = client.get(f"/runs/{run_id}/findings").json()["findings"]
        assert [(f["step"], f["code"]) for f in findings] == [("two", "ValueError")]
        assert client.get(f"{steps}/a/two/findings").json()["findings"] == findings
        assert client.get(f"{steps}/a/two/attempts/1/findings").json()["findings"] == findings
        assert client.get(f"{steps}/a/one/findings").json()["findings"] == []
        bundle = client.get(f"{steps}/a/two/attempts/1/diagnostics").json()
        assert bundle["attempt"] == 1 and bundle["findings"][0]["code"] == "ValueError"
        failed_diff = client.get(f"{steps}/a/two/attempts/1/diff").json()
        assert failed_diff["kind"] == "diagnostics"

        for url in ("/runs/NOPE/workstreams", f"/runs/{run_id}/workstreams/zz",
                    f"{steps}/a/zz", f"{steps}/a/one/attempts/7",
                    f"{steps}/a/one/attempts/7/log", f"{steps}/a/one/attempts/7/diff",
                    f"{steps}/a/one/attempts/1/diagnostics", "/runs/NOPE/findings"):
            missing = client.get(url)
            assert missing.status_code == 404, url
            assert missing.json()["code"] == "not_found" and missing.json()["exit_code"] == 3


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_rollback_is_idempotent_and_refuses_a_reused_key(served: Served, tmp_path: Path) -> None:
    run_id = _run(served, tmp_path, TWO_PLAN)
    with served.client("operate") as client:
        url = f"/runs/{run_id}/rollback"
        key = {"Idempotency-Key": "rb-1"}
        first = client.post(url, json={"to": "a/one"}, headers=key)
        assert first.status_code == 200, first.text
        assert first.json()["reopened"] == ["two"]
        again = client.post(url, json={"to": "a/one"}, headers=key)
        assert again.status_code == 200 and again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        other = client.post(url, json={"to": "a/two"}, headers=key)
        assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
        assert client.post(url, json={"to": "a/zz"}).status_code == 404
        assert client.post("/runs/NOPE/rollback", json={"to": "a/one"}).status_code == 404
        assert client.post(url, json={}).status_code == 422
        status = client.get(f"/runs/{run_id}/workstreams/a").json()
        assert [s["status"] for s in status["steps"]] == ["completed", "pending"]
        journal = client.get(f"/runs/{run_id}/events", params={"limit": 1000}).json()
        rolled = [e["data"] for e in journal if e["type"] == "dev.aidp.workstream.rolled_back"]
        assert [d["by"] for d in rolled] == ["api:t-operate"]  # the journal names the token


def _wait_for_gate(client: httpx.Client, deadline_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        page = client.get("/runs").json()["items"]
        if page:
            step = client.get(f"/runs/{page[0]['run_id']}/steps/docs/review")
            if step.status_code == 200 and step.json()["status"] == "awaiting_approval":
                return {"run_id": page[0]["run_id"], **step.json()}
        time.sleep(0.2)
    raise AssertionError("the step never reached its gate")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_gate_is_decided_through_the_api_as_the_tokens_name(
        served: Served, tmp_path: Path, decision: str) -> None:
    plan = tmp_path / "gate.yaml"
    plan.write_text(GATE_PLAN)
    proc = served.cli.popen("run", str(plan), "--json")
    try:
        with served.client("operate") as client:
            gate = _wait_for_gate(client)
            run_id = gate["run_id"]
            url = f"/runs/{run_id}/steps/docs/review/{decision}"
            assert client.post(f"/runs/{run_id}/steps/docs/zz/{decision}",
                               json={"comment": "x"}).status_code == 404
            if decision == "reject":
                assert client.post(url, json={}).json()["code"] == "invalid_request"
            else:
                worktree = Path(gate["gate"]["worktree"])
                (worktree / "docs").mkdir(exist_ok=True)
                (worktree / "docs" / "notes.md").write_text("by hand\n")
            decided = client.post(url, json={"comment": "checked by CI"},
                                  headers={"Idempotency-Key": "gate-1"})
            assert decided.status_code == 200, decided.text
            assert decided.json()["by"] == "api:t-operate"
            out, err = proc.communicate(timeout=60)
            late = client.post(url, json={"comment": "again"})
            assert late.status_code == 409 and late.json()["code"] == "wrong_state"
            replay = client.post(url, json={"comment": "checked by CI"},
                                 headers={"Idempotency-Key": "gate-1"})
            assert replay.status_code == 200 and replay.json() == decided.json()
            step = client.get(f"/runs/{run_id}/steps/docs/review").json()
    finally:
        proc.kill()
    summary = json.loads(out)
    if decision == "approve":
        assert summary["status"] == "completed", err
        assert step["status"] == "completed"
    else:
        assert summary["status"] == "failed"
        assert step["status"] == "failed"
        assert "api:t-operate" in step["reason"] and "checked by CI" in step["reason"]


FOLLOW_PLAN = """\
version: 1
workstreams:
  - id: w
    steps:
      - {id: slow, run: "echo first; sleep 2; echo second"}
"""


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_follow_streams_a_running_attempt_until_it_ends(served: Served, tmp_path: Path) -> None:
    plan = tmp_path / "slow.yaml"
    plan.write_text(FOLLOW_PLAN)
    proc = served.cli.popen("run", str(plan))
    try:
        with served.client("read") as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                items = client.get("/runs").json()["items"]
                url = items and f"/runs/{items[0]['run_id']}/steps/w/slow/attempts/1/log"
                if url and client.get(url).status_code == 200:
                    break
                time.sleep(0.1)
            chunks: list[bytes] = []
            with client.stream("GET", url, params={"follow": "true"}) as answer:
                assert answer.status_code == 200
                for chunk in answer.iter_bytes():
                    chunks.append(chunk)
            attempt = client.get(url.removesuffix("/log")).json()
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    text = b"".join(chunks).decode()
    assert "first\n" in text and "second\n" in text  # written after the stream began
    assert attempt["outcome"] == "succeeded"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_hostile_input_is_a_client_error_never_a_server_error(served: Served) -> None:
    with served.client("operate") as client:
        answers = [
            client.get("/runs", params={"since": "nan"}),
            client.get("/runs", params={"cursor": "WzEsMl0"}),
            client.get("/runs", params={"cursor": "nan~X"}),
            client.post("/plans/validate", json={"yaml": "a: [", "name": "x\x00.yaml"}),
            client.post("/plans/validate", json={"files": [], "yaml": ""}),
            client.post("/runs/X/steps/a/b/reject", json={"comment": "  "}),
            client.post("/runs/X/rollback", content=b"{not json",
                        headers={"Content-Type": "application/json"}),
            client.post("/changes/../plan"),
            client.post("/changes/..%2F..%2Fetc/plan"),
            client.get("/specs/..", params={"type": "change"}),
            client.get("/usage", params={"run": "%_"}),
            client.get("/runs/%25/steps/a/b/attempts/99999999999999999999"),
        ]
        problems = [  # an invalid plan: 200, ok=false and the located problems
            client.post("/plans/validate", json={"files": ["a\x00.yaml"]}),
            client.post("/plans/validate", json={"files": ["x" * 5000 + ".yaml"]}),
            client.post("/plans/validate", json={"yaml": "\x00\x01", "name": "a.yaml"}),
        ]
    for answer in answers:
        assert 400 <= answer.status_code < 500, (answer.request.url, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    for answer in problems:
        assert answer.status_code == 200 and answer.json()["ok"] is False
        assert ".yaml" in answer.json()["problems"][0]["file"]
