"""Secret canaries end to end: a provider key (a tool profile's ``api_key_env``, really sent to
aidp's fake LLM, which echoes it back in an error) and a declared step secret (echoed by shell
steps to stdout, stderr and into a file) never appear in any API response, event, webhook body
or header, the service's output, anything aidp writes under ``.aidp/`` or git -- except the one
file the user's own step chose to write the secret into (its content is the user's; aidp
commits what the step wrote, but masks it wherever aidp shows it: diffs, logs, diagnostics)."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from aidp.testing import FakeLLM
from tests.api.conftest import Served, start_served
from tests.api.test_webhooks import Receiver
from tests.conftest import Cli, commit_files, git

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
ENDED = ("completed", "failed", "cancelled")
WH_SECRET = "whsec_" + base64.b64encode(b"canary-test-webhook-secret-012345").decode()


def _plan() -> dict[str, Any]:
    """A model workstream (one step answered, one failing on a provider error that quotes the
    key) and a shell workstream (one step printing and writing the secret, one failing after
    printing it)."""
    echo = ('echo "stdout has $CANARY_STEP_SECRET"; echo "stderr has $CANARY_STEP_SECRET" >&2; '
            'mkdir -p out && echo "file has $CANARY_STEP_SECRET" > out/written.txt')
    return {"version": 1, "workstreams": [
        {"id": "model", "scope": ["notes/**"], "steps": [
            {"id": "m1", "tool": "llm", "prompt": "Write notes/a.md.", "retry":
             {"max_attempts": 1}},
            {"id": "m2", "tool": "llm", "prompt": "Write notes/b.md.", "depends_on": ["m1"],
             "retry": {"max_attempts": 1}}]},
        {"id": "shell", "scope": ["out/**"], "env": ["CANARY_STEP_SECRET"], "steps": [
            {"id": "s1", "run": echo, "checks": ['echo "check sees $CANARY_STEP_SECRET"']},
            {"id": "s2", "run": 'echo "failing with $CANARY_STEP_SECRET"; exit 3',
             "depends_on": ["s1"], "retry": {"max_attempts": 1}}]}]}


class Follower:
    """A client of ``GET /events`` (server-sent events) collecting every byte it reads."""

    def __init__(self, served: Served) -> None:
        self.raw = bytearray()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, args=(served,), daemon=True)
        self.thread.start()

    def _follow(self, served: Served) -> None:
        headers = {"Authorization": f"Bearer {served.tokens['read']}", "Last-Event-ID": "0"}
        with httpx.Client(base_url=served.url, headers=headers, timeout=10) as client:
            while not self.stop.is_set():
                try:
                    with client.stream("GET", "/events", params={"heartbeat": 1}) as answer:
                        for chunk in answer.iter_bytes():
                            self.raw.extend(chunk)
                            if self.stop.is_set():
                                return
                except httpx.HTTPError:
                    continue


def _get_all(client: httpx.Client, run_id: str) -> list[httpx.Response]:
    """Every GET route reachable for the run: the run, its workstreams, steps, attempts,
    logs (whole and ranges), findings, diagnostics, diffs, events; usage, tools, breakers,
    webhooks and deliveries."""
    got = [client.get(path) for path in (
        "/runs", f"/runs/{run_id}", f"/runs/{run_id}/workstreams", f"/runs/{run_id}/findings",
        f"/runs/{run_id}/events", "/usage", f"/usage?run={run_id}", "/tools", "/tools/stats",
        "/breakers", "/webhooks", "/webhooks/deliveries", "/version", "/health/ready")]
    for ws in got[2].json():
        got.append(client.get(f"/runs/{run_id}/workstreams/{ws['id']}"))
        for step in ws["steps"]:
            base = f"/runs/{run_id}/steps/{ws['id']}/{step['id']}"
            got += [client.get(base), client.get(f"{base}/attempts"),
                    client.get(f"{base}/findings")]
            for attempt in got[-2].json():
                path = f"{base}/attempts/{attempt['number']}"
                got += [client.get(path), client.get(f"{path}/findings"),
                        client.get(f"{path}/diagnostics"), client.get(f"{path}/diff"),
                        client.get(f"{path}/log")]
                for ranged in ("bytes=0-40", "bytes=10-", "bytes=-60"):
                    got.append(client.get(f"{path}/log", headers={"Range": ranged}))
    return got


def test_secret_canaries_never_leak(cli: Cli, monkeypatch: pytest.MonkeyPatch,
                                    tmp_path: Path) -> None:
    key = f"sk-canary-{secrets.token_hex(12)}"
    step_secret = f"canary-step-{secrets.token_hex(12)}"
    canaries = (key, step_secret)
    monkeypatch.setenv("CANARY_LLM_KEY", key)
    monkeypatch.setenv("CANARY_STEP_SECRET", step_secret)
    monkeypatch.setenv("WH_SECRET", WH_SECRET)
    monkeypatch.setenv("AIDP_WEBHOOKS__POLL_INTERVAL_S", "0.2")
    # the model answers the first request (and quotes the key in its text); the second is
    # refused with a provider error quoting the key, as real providers do
    script = [{"reply": f"notes/a.md\n```\nhello\n```\nI was called with {key}.\n"},
              {"error": {"status": 401, "message": f"Incorrect API key provided: {key}"}}]
    receiver = Receiver()
    with FakeLLM(script) as llm:
        (cli.cwd / "aidp.toml").write_text(
            f'[tools.llm]\nadapter = "openai"\nbase_url = "{llm.base_url}"\n'
            'model = "fake-model"\nedit_format = "whole"\napi_key_env = "CANARY_LLM_KEY"\n'
            "timeout = 20\n")
        commit_files(cli.cwd, {"aidp.toml": (cli.cwd / "aidp.toml").read_text(),
                               "workstreams/canary.yaml": json.dumps(_plan(), indent=1)},
                     "canary plan")
        served = start_served(cli)
        follower = Follower(served)
        try:
            cli("webhooks", "add", receiver.url, "--events", "*", "--secret-env", "WH_SECRET",
                "--allow-private", check=True)
            with served.client("operate") as client:
                answer = client.post("/runs", json={"files": ["workstreams/canary.yaml"]})
                assert answer.status_code == 201, answer.text
                run_id = answer.json()["run_id"]
                deadline = time.monotonic() + 120
                while True:
                    view = client.get(f"/runs/{run_id}").json()
                    if view["status"] in ENDED and not view["live"]:
                        break
                    assert time.monotonic() < deadline, view
                    time.sleep(0.2)
                steps = {(w["id"], s["id"]): s["status"] for w in view["workstreams"]
                         for s in w["steps"]}
                assert steps == {("model", "m1"): "completed", ("model", "m2"): "failed",
                                 ("shell", "s1"): "completed", ("shell", "s2"): "failed"}
                assert len(llm.requests) == 2 and all(
                    r["headers"].get("authorization") == "Bearer ***"  # the fake masks it
                    for r in llm.requests), "the provider key was not really used"
                responses = _get_all(client, run_id)
                time.sleep(1.5)  # the webhook sender's last deliveries
            assert all(r.status_code < 500 for r in responses)
            assert any(r.status_code == 200 and "***" in r.text for r in responses
                       if r.url.path.endswith("/log")), "nothing was masked: no secret used"
            diff = next(r.json()["diff"] for r in responses
                        if r.url.path.endswith("/shell/s1/attempts/1/diff"))
            assert "+file has ***" in diff  # the user's file, shown masked
        finally:
            follower.stop.set()
            served.stop()
            receiver.stop()
    swept: dict[str, bytes] = {}
    for r in responses:
        swept[f"GET {r.url}"] = r.content + str(dict(r.headers)).encode()
    swept["SSE /events"] = bytes(follower.raw)
    assert b"run.started" in follower.raw and b"step.failed" in follower.raw
    assert receiver.got, "no webhook arrived"
    for n, (headers, body) in enumerate(receiver.got):
        swept[f"webhook {n}"] = body + json.dumps(headers).encode()
    swept["aidp serve output"] = "".join(served.output).encode()
    aidp_dir = cli.cwd / ".aidp"
    for path in aidp_dir.rglob("*"):
        if path.is_file() and "worktrees" not in path.relative_to(aidp_dir).parts:
            swept[str(path)] = path.read_bytes()
    assert cli.db_url is not None
    db = Path(cli.db_url.split("///", 1)[1])
    for path in db.parent.glob(db.name + "*"):
        swept[str(path)] = path.read_bytes()
    history = git(cli.cwd, "log", "-p", "--all", "--format=%H%n%B")
    # the user's step wrote the secret into out/written.txt: that file is the user's content,
    # committed as written; everything else in git is aidp's and must not hold it
    user_file = f"+file has {step_secret}"
    assert user_file in history
    swept["git log -p --all (but the user's file)"] = history.replace(user_file, "").encode()
    leaks = [(where, canary[:14]) for where, data in swept.items() for canary in canaries
             if canary.encode() in data]
    assert not leaks, leaks
