"""schemathesis against the live schema of the real ``aidp serve``: every check, with an admin
token, a read token (403 on operate/admin routes) and none (401 everywhere but liveness).

The default tier runs a few examples per operation; the slow tier is the issue's must-show
(>= 200 examples per operation, every phase, stateful links). Operations that would leave
127.0.0.1 or never end are pinned by ``schemathesis.toml`` (tools checked offline, the event
stream read ``until_idle``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.api.conftest import Served

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
PHASES = "examples,coverage,fuzzing,stateful"


def schemathesis(served: Served, tmp_path: Path, scope: str | None, *, examples: int,
                 phases: str) -> tuple[int, str, float]:
    """Run schemathesis on ``served`` as a token of ``scope`` (None: no token); its exit
    code, output and time."""
    schema = tmp_path / "openapi.json"
    with served.client("admin") as client:
        schema.write_text(json.dumps(client.get("/openapi.json").json()))
    origin = served.url.removesuffix("/api/v1")
    command = [str(SCHEMATHESIS), "--config-file", str(CONFIG), "run", str(schema),
               "--url", origin, "--checks", "all", "--max-examples", str(examples),
               "--request-timeout", "10", "--workers", "2", "--phases", phases,
               "--seed", "19", "--no-color"]
    if scope is not None:
        command += ["-H", f"Authorization: Bearer {served.tokens[scope]}"]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=3000, cwd=tmp_path)
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


def _summary(output: str) -> str:
    lines = [line for line in output.splitlines() if "generated" in line or "passed" in line]
    return " | ".join(lines[-2:])


@pytest.mark.timeout(300)
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_schemathesis_finds_nothing(served: Served, tmp_path: Path) -> None:
    code, output, took = schemathesis(served, tmp_path, "admin", examples=8,
                                      phases="examples,fuzzing")
    assert code == 0, output[-20000:]
    print(f"schemathesis admin: {_summary(output)} in {took:.0f} s")


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("scope", ["admin", "read", None])
def test_schemathesis_must_show(served: Served, tmp_path: Path, scope: str | None) -> None:
    """Issue 19: all checks, stateful links, >= 200 examples per operation, with and
    without a token: 0 server errors, 0 schema violations."""
    code, output, took = schemathesis(served, tmp_path, scope, examples=200, phases=PHASES)
    assert code == 0, output[-20000:]
    print(f"schemathesis {scope}: {_summary(output)} in {took:.0f} s")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_schema_declares_every_answer_the_service_gives(served: Served) -> None:
    """Errors are problem+json in the schema as on the wire; every protected operation names
    its scope and declares 401 and 403; the Guard's 400 and 413 are declared everywhere."""
    with served.client("admin") as client:
        schema = client.get("/openapi.json").json()
        assert "Problem" in schema["components"]["schemas"]
        assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        for path, operations in schema["paths"].items():
            for method, op in operations.items():
                responses = op["responses"]
                for status, answer in responses.items():
                    if status.startswith("4"):
                        assert list(answer["content"]) == ["application/problem+json"], \
                            (method, path, status)
                assert {"400", "413"} <= set(responses), (method, path)
                if path == "/api/v1/health/live":
                    assert op["security"] == []
                    continue
                [requirement] = op["security"]
                assert requirement["bearer"][0] in ("read", "operate", "admin")
                assert {"401", "403"} <= set(responses), (method, path)
        created = schema["paths"]["/api/v1/webhooks"]["post"]["responses"]["201"]
        assert set(created["links"]) >= {"GetWebhook", "DeleteWebhook"}
        # 405 names the methods of the resource (not just of the first route that matched)
        for path, allow in (("/webhooks/x", "DELETE, GET"), ("/runs", "GET, POST"),
                            ("/specs/validate", "POST")):
            answer = client.request("PUT", path)
            assert answer.status_code == 405 and answer.headers["allow"] == allow, path
        # ids beyond the database's integers and odd event ids are client errors, never 500
        for answer in (client.post("/webhooks/deliveries/99999999999999999999999/redeliver"),
                       client.get("/events", headers={"Last-Event-ID": "\u00b2".encode()}),
                       client.get("/runs", params={"since": "1e+16"}),
                       client.post("/runs", json={"files": ["x" * 5000]}),
                       client.post("/webhooks", json={"url": "http://A*", "events": ["*"],
                                                      "secret_env": "A"})):
            assert 400 <= answer.status_code < 500, answer.text
        caught_up = client.get("/events", params={"after": 0, "until_idle": "true"})
        assert caught_up.status_code == 200  # the stream ended by itself

