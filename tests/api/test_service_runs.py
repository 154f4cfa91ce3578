"""Runs inside the service: started through the API, driven by supervised worker processes of
``aidp serve``, stopped resumably with the service, resumed when it starts again, restarted
when a worker dies -- and never a step twice (counted by the ``Aidp-Step`` checkpoint commits
on each branch and by the lines each step appends)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Served, start_served
from tests.conftest import Cli, commit_files, git

ENDED = ("completed", "failed", "cancelled")


def _plan(repo: Path, name: str, workstreams: dict[str, int], sleep: float = 0.4,
          hold: Path | None = None) -> str:
    """Commit a plan of shell steps (each sleeps, then appends its name to ``WS/log.txt``);
    with ``hold``, step s2 of each workstream first waits until that file exists."""
    items = []
    for ws_id, count in workstreams.items():
        steps: list[dict[str, Any]] = []
        for j in range(count):
            wait = f"until [ -e {hold} ]; do sleep 0.1; done; " if hold and j == 2 else ""
            step: dict[str, Any] = {"id": f"s{j}", "run": f"{wait}sleep {sleep}; mkdir -p "
                                    f"{ws_id} && echo step-{j} >> {ws_id}/log.txt"}
            if j:
                step["depends_on"] = [f"s{j - 1}"]
            steps.append(step)
        items.append({"id": ws_id, "scope": [f"{ws_id}/**"], "steps": steps})
    path = f"workstreams/{name}.yaml"
    commit_files(repo, {path: json.dumps({"version": 1, "workstreams": items}, indent=1)},
                 f"plan {name}")
    return path


def _start(served: Served, body: dict[str, Any], key: str | None = None) -> str:
    headers = {"Idempotency-Key": key} if key else {}
    with served.client("operate") as client:
        answer = client.post("/runs", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    run_id = answer.json()["run_id"]
    assert answer.headers["location"] == f"/api/v1/runs/{run_id}"
    return str(run_id)


def _run(served: Served, run_id: str) -> dict[str, Any]:
    with served.client("read") as client:
        answer = client.get(f"/runs/{run_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _wait(served: Served, run_id: str, until: Any, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = _run(served, run_id)
        if until(view):
            return view
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} never got there: {json.dumps(view)[:2000]}\n"
                         f"{_worker_log(served.cli.cwd, run_id)}")


def _finished(view: dict[str, Any]) -> bool:
    return view["status"] in ENDED and not view["live"]


def _completed_steps(view: dict[str, Any]) -> int:
    return sum(s["status"] == "completed" for w in view["workstreams"] for s in w["steps"])


def _worker_log(repo: Path, run_id: str) -> str:
    log = repo / ".aidp" / "serve" / f"{run_id}.log"
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no worker log)"


def _assert_each_step_once(repo: Path, run_id: str, workstreams: dict[str, int]) -> None:
    """Every step has exactly one checkpoint commit and appended its line exactly once."""
    for ws_id, count in workstreams.items():
        branch = f"refs/heads/aidp/{run_id}/{ws_id}"
        trailers = git(repo, "log", "--reverse", "--format=%(trailers:key=Aidp-Step,valueonly)",
                       branch, "^main", "--").split()
        expected = [f"s{j}" for j in range(count)]
        assert trailers == expected, (ws_id, trailers)
        lines = git(repo, "show", f"{branch}:{ws_id}/log.txt").split()
        assert lines == [f"step-{j}" for j in range(count)], (ws_id, lines)


def _service_run(cli: Cli, run_id: str, state: str = "done") -> Any:
    """The run's service_runs row, once it is in ``state``."""
    from aidp.state.store import Store

    store = Store(cli.db_url or f"sqlite+pysqlite:///{cli.cwd / '.aidp' / 'aidp.db'}")
    try:
        deadline = time.monotonic() + 10
        while True:
            row = store.read("SELECT * FROM service_runs WHERE run_id = :r", {"r": run_id})[0]
            if row.state == state or time.monotonic() > deadline:
                return row
            time.sleep(0.1)
    finally:
        store.close()


def _holder_pid(view: dict[str, Any]) -> int:
    """The pid of the orchestrator holding the run's lease ("pid N on HOST")."""
    return int(view["holder"].split()[1])


def _restart(old: Served) -> Served:
    new = start_served(old.cli)
    new.tokens = old.tokens
    return new


def _kill_workers(run_ids: list[str]) -> None:
    """End what a failed test left: workers (``resume RUN``) and their tools."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            environ = Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        if any(r.encode() in cmdline or f"AIDP_RUN_ID={r}".encode() in environ
               for r in run_ids):
            try:
                os.kill(int(name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_run_started_by_post_completes_and_the_cli_sees_it(served: Served) -> None:
    shape = {"docs": 3, "code": 2}
    path = _plan(served.cli.cwd, "small", shape, sleep=0.1)
    run_id = _start(served, {"files": [path]}, key="first")
    try:
        with served.client("operate") as client:  # the same key: the same run, not a second
            again = client.post("/runs", json={"files": [path]},
                                headers={"Idempotency-Key": "first"})
        assert again.status_code == 201 and again.json()["run_id"] == run_id
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["location"] == f"/api/v1/runs/{run_id}"
        view = _wait(served, run_id, _finished)
        assert view["status"] == "completed", _worker_log(served.cli.cwd, run_id)
        status = json.loads(served.cli("status", run_id, "--json", check=True).stdout)
        assert status["status"] == "completed"
        with served.client("read") as client:
            assert [r["run_id"] for r in client.get("/runs").json()["items"]] == [run_id]
        _assert_each_step_once(served.cli.cwd, run_id, shape)
        row = _service_run(served.cli, run_id)
        assert (row.state, row.started_by, row.restarts) == ("done", "api:t-operate", 0)
    finally:
        _kill_workers([run_id])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_bad_files_are_a_400_naming_file_and_line_and_nothing_is_created(
        served: Served) -> None:
    repo = served.cli.cwd
    commit_files(repo, {"workstreams/bad.yaml": "version: 1\nworkstreams:\n  - id: a\n"
                        "    steps:\n      - id: s\n        run: 'true'\n      - id: s\n"
                        "        run: 'true'\n"}, "bad plan")
    with served.client("operate") as client:
        bad = client.post("/runs", json={"files": ["workstreams/bad.yaml"]})
        assert bad.status_code == 400, bad.text
        assert bad.headers["content-type"] == "application/problem+json"
        problem = bad.json()
        assert problem["detail"].startswith("workstreams/bad.yaml:7: [a/s] duplicate step id")
        assert problem["problems"][0]["file"] == "workstreams/bad.yaml"
        assert problem["problems"][0]["line"] == 7
        assert bad.json()["exit_code"] == 2
        outside = client.post("/runs", json={"files": ["../../etc/passwd"]})
        assert outside.status_code == 400 and "outside" in outside.json()["detail"]
        missing = client.post("/runs", json={"files": ["workstreams/none.yaml"]})
        assert missing.status_code == 400, missing.text
        both = client.post("/runs", json={"files": ["workstreams/bad.yaml"], "epic": "x"})
        assert both.status_code == 422  # the schema says: exactly one of them
        assert client.post("/runs", json={"files": "x", "zzz": 1}).status_code == 422
        for body in ({"change": "nope"}, {"epic": "nope"}, {"epic": "../x"},
                     {"change": "a/b"}, {"files": []}, {"files": ["."]}, {"files": [""]}):
            answer = client.post("/runs", json=body)
            assert answer.status_code in (400, 404, 422), (body, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
        assert client.get("/runs").json()["items"] == []
    with served.client("read") as low:
        assert low.post("/runs", json={"files": ["workstreams/bad.yaml"]}).status_code == 403


@pytest.mark.timeout(300)
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sigterm_of_serve_leaves_the_run_resumable_and_a_restart_finishes_it(
        served: Served) -> None:
    shape = {"one": 6}
    path = _plan(served.cli.cwd, "slow", shape, sleep=0.5)
    run_id = _start(served, {"files": [path]})
    try:
        _wait(served, run_id, lambda v: _completed_steps(v) >= 2)
        stopped = time.monotonic()
        served.stop(signal.SIGTERM)
        print(f"serve stopped (SIGTERM) in {time.monotonic() - stopped:.2f}s")
        status = json.loads(served.cli("status", run_id, "--json", check=True).stdout)
        assert status["status"] == "interrupted" and status["resumable"], status
        assert not status["live"]
        assert _completed_steps(status) < 6
        restarted = _restart(served)
        try:
            view = _wait(restarted, run_id, _finished)
            assert view["status"] == "completed", _worker_log(served.cli.cwd, run_id)
        finally:
            restarted.stop()
        _assert_each_step_once(served.cli.cwd, run_id, shape)
    finally:
        _kill_workers([run_id])


@pytest.mark.timeout(300)
def test_kill_9_of_serve_during_two_runs_then_restart_finishes_both_once(
        served: Served) -> None:
    """The workers outlive a killed service (own sessions, output in files): the restarted
    service watches the orphan holding a lease, and takes the run over when it dies."""
    repo = served.cli.cwd
    shapes = {"a": {"a1": 5, "a2": 3}, "b": {"b1": 6}}
    hold = repo.parent / "release-a"  # run a's orphan waits at a1/s2 until the test is ready
    runs = {name: _start(served, {"files": [_plan(repo, name, shape, sleep=0.5,
                                                  hold=hold if name == "a" else None)]})
            for name, shape in shapes.items()}
    try:
        for run_id in runs.values():
            _wait(served, run_id, lambda v: _completed_steps(v) >= 1 and v["live"])
        os.kill(served.proc.pid, signal.SIGKILL)  # the service only, not its workers
        served.proc.communicate(timeout=30)
        orphan = _holder_pid(_run_cli(served.cli, runs["a"]))
        restarted = _restart(served)
        try:
            view = _run(restarted, runs["a"])
            assert view["live"] and _holder_pid(view) == orphan, view  # left alone, watched
            time.sleep(1.0)  # a few supervisor turns: still the orphan's
            assert _holder_pid(_run(restarted, runs["a"])) == orphan
            os.kill(orphan, signal.SIGKILL)  # now it dies too: the service takes over
            taken = time.monotonic()
            _wait(restarted, runs["a"], lambda v: v["live"] and _holder_pid(v) != orphan)
            takeover_s = time.monotonic() - taken
            hold.write_text("")
            for name, run_id in runs.items():
                view = _wait(restarted, run_id, _finished)
                assert view["status"] == "completed", _worker_log(repo, run_id)
                _assert_each_step_once(repo, run_id, shapes[name])
            print(f"takeover after the orphan's death: {takeover_s:.2f}s")
        finally:
            restarted.stop()
    finally:
        _kill_workers(list(runs.values()))


def _run_cli(cli: Cli, run_id: str) -> dict[str, Any]:
    return dict(json.loads(cli("status", run_id, "--json", check=True).stdout))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_worker_killed_with_kill_9_is_restarted_and_the_run_finishes(
        served: Served) -> None:
    shape = {"w": 6}
    run_id = _start(served, {"files": [_plan(served.cli.cwd, "w", shape)]})
    try:
        view = _wait(served, run_id, lambda v: _completed_steps(v) >= 2 and v["live"])
        worker = _holder_pid(view)
        os.kill(worker, signal.SIGKILL)
        killed = time.monotonic()
        _wait(served, run_id, lambda v: v["live"] and _holder_pid(v) != worker)
        print(f"worker restart latency: {time.monotonic() - killed:.2f}s")
        view = _wait(served, run_id, _finished)
        assert view["status"] == "completed", _worker_log(served.cli.cwd, run_id)
        _assert_each_step_once(served.cli.cwd, run_id, shape)
        assert _service_run(served.cli, run_id).restarts == 1
    finally:
        _kill_workers([run_id])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cancel_resume_and_retry_through_the_api(served: Served) -> None:
    repo = served.cli.cwd
    flag = repo / "flag"
    commit_files(repo, {"workstreams/f.yaml": json.dumps({"version": 1, "workstreams": [
        {"id": "f", "scope": ["f/**"], "steps": [
            {"id": "gate", "run": f"test -e {flag} && mkdir -p f && echo ok > f/ok",
             "retry": {"max_attempts": 1}}]}]})}, "flaky plan")
    run_id = _start(served, {"files": ["workstreams/f.yaml"]})
    try:
        view = _wait(served, run_id, _finished)
        assert view["status"] == "failed"
        with served.client("operate") as client:
            assert client.post(f"/runs/{run_id}/steps/f/nope/retry").status_code == 404
            flag.write_text("")
            retried = client.post(f"/runs/{run_id}/steps/f/gate/retry",
                                  headers={"Idempotency-Key": "r1"})
            assert retried.status_code == 202, retried.text
            view = _wait(served, run_id, lambda v: v["status"] == "completed" and not v["live"])
            again = client.post(f"/runs/{run_id}/resume")
            assert again.status_code == 409, again.text  # completed: nothing to resume
        long = _start(served, {"files": [_plan(repo, "long", {"l": 8}, sleep=0.5)]})
        _wait(served, long, lambda v: v["live"])
        with served.client("operate") as client:
            assert client.post(f"/runs/{long}/resume").status_code == 409  # live
            cancelled = client.post(f"/runs/{long}/cancel")
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["status"] == "cancelled"
            journal = client.get(f"/runs/{long}/events", params={"limit": 1000}).json()
            asked = [e["data"]["by"] for e in journal
                     if e["type"] in ("dev.aidp.run.cancel_requested", "dev.aidp.run.finished")
                     and "by" in e["data"]]
            assert asked and set(asked) == {"api:t-operate"}  # the journal names the token
        _wait(served, long, lambda v: not v["live"])
        by_cli = _start(served, {"files": ["workstreams/long.yaml"]})
        _wait(served, by_cli, lambda v: v["live"])
        served.cli("cancel", by_cli, check=True)  # the CLI reaches the service's worker
        view = _wait(served, by_cli, _finished)
        assert view["status"] == "cancelled"
    finally:
        _kill_workers([run_id])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_runs_beyond_max_workers_wait_their_turn(cli: Cli) -> None:
    commit_files(cli.cwd, {"aidp.toml": "[serve]\nmax_workers = 1\n"}, "one worker")
    served = start_served(cli)
    run_ids: list[str] = []
    try:
        shape = {"q": 3}
        run_ids = [_start(served, {"files": [_plan(cli.cwd, f"q{i}", shape, sleep=0.3)]})
                   for i in range(2)]
        overlap = False
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            views = [_run(served, r) for r in run_ids]
            overlap |= all(v["live"] for v in views)
            if all(_finished(v) for v in views):
                break
            time.sleep(0.05)
        assert not overlap
        assert [v["status"] for v in views] == ["completed", "completed"]
        assert views[1]["started_at"] >= views[0]["finished_at"]  # queued, oldest first
        with served.client("read") as client:
            assert client.get("/health/ready").json()["checks"]["workers"] == "ok"
        for run_id in run_ids:
            _assert_each_step_once(cli.cwd, run_id, shape)
    finally:
        served.stop()
        _kill_workers(run_ids)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_crash_loop_ends_and_readiness_names_the_run(cli: Cli, monkeypatch: pytest.MonkeyPatch
                                                      ) -> None:
    """A run whose worker cannot start (here: aidp.toml broken mid-run) is started again
    [serve] worker_restarts times, then given up: readiness names it and stays ok; once the
    cause is fixed, a resume drives it to the end, each step once."""
    repo = cli.cwd
    go = repo / "go"
    path = _plan(repo, "wait", {"w": 3}, sleep=0.1, hold=go)
    monkeypatch.setenv("AIDP_SERVE__WORKER_RESTARTS", "2")
    served = start_served(cli)
    run_id = ""
    try:
        run_id = _start(served, {"files": [path]})
        view = _wait(served, run_id, lambda v: _completed_steps(v) >= 2 and v["live"])
        (repo / "aidp.toml").write_text("[run\nbroken = \n")
        os.kill(_holder_pid(view), signal.SIGKILL)
        row = _service_run(cli, run_id, "done")
        assert (row.state, row.restarts) == ("done", 2), _worker_log(repo, run_id)
        assert _worker_log(repo, run_id).count("aidp.toml: Expected") == 2  # each restart: why
        with served.client("read") as client:
            ready = client.get("/health/ready")
        assert ready.status_code == 200 and ready.json()["given_up"] == [run_id]
        assert _run(served, run_id)["resumable"]
        (repo / "aidp.toml").unlink()
        go.write_text("")
        with served.client("operate") as client:
            assert client.post(f"/runs/{run_id}/resume").status_code == 202
            view = _wait(served, run_id, _finished)
            assert view["status"] == "completed"
            assert client.get("/health/ready").json()["given_up"] == []
        _assert_each_step_once(repo, run_id, {"w": 3})
    finally:
        served.stop()
        _kill_workers([run_id])
