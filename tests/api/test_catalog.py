"""Workstream files (validate, plan), OpenSpec changes and proposals, usage and breakers
through the real ``aidp serve``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import Served, start_served
from tests.conftest import Cli, git

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "openspec" / "openspec"
CHANGE = "add-two-factor"
GOOD = """\
version: 1
workstreams:
  - id: a
    steps:
      - {id: one, run: "echo one"}
  - id: b
    depends_on: [a]
    steps:
      - {id: two, run: "echo two"}
"""
BAD = """\
version: 1
workstreams:
  - id: a
    steps:
      - {id: one, run: "echo one"}
      - {id: one, run: "echo again"}
"""


@pytest.fixture
def spec_served(cli: Cli) -> Iterator[Served]:
    """``aidp serve`` on a repository with the example OpenSpec tree, a shell tool profile and
    a committed workstream file ``plans/good.yaml``."""
    shutil.copytree(EXAMPLE, cli.cwd / "openspec")
    (cli.cwd / "aidp.toml").write_text(
        '[tools.impl]\nadapter = "shell"\n'
        'command = "mkdir -p impl && echo \\"$AIDP_STEP\\" >> impl/log.txt"\n')
    (cli.cwd / "plans").mkdir()
    (cli.cwd / "plans" / "good.yaml").write_text(GOOD)
    git(cli.cwd, "add", "-A")
    git(cli.cwd, "commit", "-qm", "specs")
    server = start_served(cli)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_validate_and_plan_answer_as_the_cli(spec_served: Served) -> None:
    cli = spec_served.cli
    with spec_served.client("read") as client:
        ok = client.post("/plans/validate", json={"files": ["plans/good.yaml"]})
        assert ok.status_code == 200
        assert ok.json() == json.loads(cli("validate", "plans/good.yaml", "--json").stdout)
        assert ok.json() == {"ok": True, "workstreams": 2, "steps": 2}
        planned = client.post("/plans/plan", json={"files": ["plans"]}).json()
        assert planned == json.loads(cli("plan", "plans", "--json").stdout)
        assert planned["waves"] == [["a"], ["b"]]

        bad = client.post("/plans/validate", json={"yaml": BAD, "name": "mine.yaml"})
        assert bad.status_code == 200 and bad.json()["ok"] is False
        problem = bad.json()["problems"][0]
        assert problem["file"] == "mine.yaml" and problem["line"] == 6
        assert "one" in problem["message"]
        (cli.cwd / "mine.yaml").write_text(BAD)
        by_cli = json.loads(cli("validate", "mine.yaml", "--json").stdout)
        assert by_cli["problems"] == bad.json()["problems"]
        assert client.post("/plans/plan", json={"yaml": BAD}).json()["ok"] is False
        inline = client.post("/plans/plan", json={"yaml": GOOD}).json()
        assert inline["critical_path"] == ["a", "b"]

        outside = client.post("/plans/validate", json={"files": ["../x.yaml"]}).json()
        assert outside["ok"] is False and outside["problems"]
        for body in ({}, {"files": ["a.yaml"], "yaml": GOOD}):
            refused = client.post("/plans/validate", json=body)
            assert refused.status_code == 422 and refused.json()["code"] == "invalid_request"
        named = client.post("/plans/validate", json={"yaml": GOOD, "name": "../x.yaml"})
        assert named.status_code == 422 and named.json()["code"] == "invalid_request"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_proposals_walk_to_a_run_of_the_change(spec_served: Served) -> None:
    cli = spec_served.cli
    with spec_served.client("operate") as client:
        compiled = client.post(f"/changes/{CHANGE}/plan")
        assert compiled.status_code == 200, compiled.text
        assert compiled.json()["step_orders"][CHANGE] == json.loads(
            cli("plan", "--change", CHANGE, "--json").stdout)["step_orders"][CHANGE]
        assert "workstreams:" in compiled.json()["yaml"]
        assert not (cli.cwd / ".aidp" / "changes").exists()  # compiling wrote nothing
        assert client.post("/changes/nope/plan").status_code == 404

        listed = client.get("/proposals").json()
        assert [(p["change"], p["state"]) for p in listed] == [(CHANGE, "draft")]
        early = client.post(f"/proposals/{CHANGE}/approve")  # never submitted: unrecorded
        assert early.status_code == 404 and "proposals submit" in early.json()["hint"]
        submitted = client.post(f"/proposals/{CHANGE}/submit", json={"comment": "ready"},
                                headers={"Idempotency-Key": "sub-1"})
        assert submitted.status_code == 200, submitted.text
        replayed = client.post(f"/proposals/{CHANGE}/submit", json={"comment": "ready"},
                               headers={"Idempotency-Key": "sub-1"})
        assert replayed.json() == submitted.json()
        illegal = client.post(f"/proposals/{CHANGE}/start")  # under review, not approved
        assert illegal.status_code == 409 and illegal.json()["code"] == "wrong_state"
        assert client.post(f"/proposals/{CHANGE}/approve").status_code == 200
        assert client.post(f"/proposals/{CHANGE}/dance").status_code == 422
        assert client.post("/proposals/nope/submit").status_code == 404
        shown = client.get(f"/proposals/{CHANGE}").json()
        assert shown["state"] == "approved"
        assert [(h["action"], h["by"], h["comment"]) for h in shown["history"]][1:] == [
            ("submit", "api:t-operate", "ready"), ("approve", "api:t-operate", None)]
        assert client.get("/proposals/nope").status_code == 404

        done = cli("run", "--change", CHANGE, "--tool", "impl", "--json", timeout=120)
        assert done.returncode == 0, done.stderr
        run_id = json.loads(done.stdout)["run_id"]
        cli("run", "plans/good.yaml", check=True, timeout=120)
        of_change = client.get("/runs", params={"change": CHANGE}).json()["items"]
        assert [r["run_id"] for r in of_change] == [run_id]
        assert len(client.get("/runs").json()["items"]) == 2


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_usage_and_breakers(spec_served: Served) -> None:
    cli = spec_served.cli
    with spec_served.client("operate") as client:
        assert client.get("/usage").json()["total"] == {}
        assert client.get("/breakers").json() == []
        assert client.post("/breakers/profile:impl/reset").status_code == 404  # no database
        run = json.loads(cli("run", "plans/good.yaml", "--json", timeout=120).stdout)["run_id"]
        usage = client.get("/usage", params={"run": run}).json()
        assert usage == json.loads(cli("usage", run, "--json").stdout)
        assert usage["total"]["attempts"] == 2
        stats = client.get("/tools/stats").json()
        assert stats == json.loads(cli("tools", "stats", "--json").stdout)
        assert sum(row["finished"] for row in stats) == 2
        assert client.get("/usage", params={"run": "NOPE"}).status_code == 404
        unknown = client.post("/breakers/profile:impl/reset",
                              headers={"Idempotency-Key": "r-1"})
        assert unknown.status_code == 404 and "no breaker" in unknown.json()["detail"]
        assert client.post("/breakers/profile:impl/reset", headers={"Idempotency-Key": "r-1"}
                           ).headers["idempotent-replayed"] == "true"  # a 404 is kept too
        endpoint = client.post("/breakers/endpoint:http://127.0.0.1:9/v1/reset")
        assert endpoint.status_code == 404 and "endpoint:http://127.0.0.1:9/v1" in \
            endpoint.json()["detail"]  # a key with slashes reaches the route
        assert client.get("/breakers").json() == json.loads(
            cli("breakers", "--json").stdout)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_tools_and_specs_answer_as_the_cli(spec_served: Served) -> None:
    cli = spec_served.cli
    with spec_served.client("operate") as client:
        listed = client.get("/tools").json()
        assert listed == json.loads(cli("tools", "list", "--json").stdout)
        assert "impl" in [t["name"] for t in listed] and listed[0]["last_check"] is None
        checked = client.post("/tools/check", params={"offline": "true", "profile": "impl"},
                              headers={"Idempotency-Key": "c-1"})
        assert checked.status_code == 200, checked.text
        assert [(c["profile"], c["ok"]) for c in checked.json()] == [("impl", True)]
        stored = {t["name"]: t["last_check"] for t in client.get("/tools").json()}
        assert stored["impl"]["ok"] is True  # kept for `aidp tools list`
        assert client.post("/tools/check", params={"profile": "nope"}).status_code == 404
        assert client.get("/tools/stats").json() == json.loads(
            cli("tools", "stats", "--json").stdout)

        specs = client.get("/specs").json()
        assert specs == json.loads(cli("specs", "list", "--specs", "--json").stdout)
        capability = specs["specs"][0]["id"]
        shown = client.get(f"/specs/{capability}").json()
        assert shown == json.loads(cli("specs", "show", capability, "--json").stdout)
        assert shown["requirements"] and shown["requirements"][0]["line"]
        change = client.get(f"/specs/{CHANGE}", params={"type": "change"}).json()
        assert change["type"] == "change" and change["tasks"]["total"] == 4
        assert client.get("/specs/nope").status_code == 404
        assert client.get("/specs", params={"type": "change"}).json()["changes"]
        valid = client.post("/specs/validate", json={}).json()
        assert valid == json.loads(cli("specs", "validate", "--json").stdout)
        assert valid["ok"] is True and len(valid["items"]) >= 2
        one = client.post("/specs/validate", json={"id": CHANGE, "type": "change"}).json()
        assert [i["id"] for i in one["items"]] == [CHANGE]
        (cli.cwd / "openspec" / "changes" / "broken").mkdir()
        (cli.cwd / "openspec" / "changes" / "broken" / "proposal.md").write_text("# nothing\n")
        broken = client.post("/specs/validate", json={"id": "broken"}).json()
        assert broken["ok"] is False and broken["items"][0]["issues"][0]["file"]
        assert client.post("/specs/validate", json={"id": "nope"}).status_code == 404
