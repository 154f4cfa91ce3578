"""Several ``aidp serve`` processes on one shared database, each on its own "host": a UTS and PID
namespace with its own hostname, so that a lease names another host and no service can see
another's processes (the way separate machines would). They share the database and the
repository path (a shared filesystem).

Proves: services racing over the same runs drive each run once and every step completes exactly
once; a dead host's runs (its service and workers killed together) are taken over by the others
within the lease's lifetime plus one renewal; a worker paused past its lease cannot write after
the takeover (its fencing token is stale), and nothing is done twice.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Served, start_served
from tests.api.test_service_runs import _assert_each_step_once, _plan, _start
from tests.conftest import Cli

pytestmark = pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0,
                                reason="needs unshare(1) and root for UTS/PID namespaces")

TTL_S = 3.0  # the run leases' lifetime in these tests (renewed every second)


def _host(cli: Cli, host: str, ttl_s: float = TTL_S) -> Served:
    """``aidp serve`` as pid 1 of its own PID and UTS namespace, hostname ``host``, run leases
    of ``ttl_s``."""
    argv = ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "sh", "-c",
            'hostname "$0" && exec "$@"', host]

    class OnHost(Cli):
        def popen(self, *args: str) -> subprocess.Popen[str]:
            env = {**self.env(), "AIDP_RUN__LEASE_TTL": str(ttl_s)}
            return subprocess.Popen([*argv, *self.popen_argv(*args)], cwd=self.cwd,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True)

    return start_served(OnHost(cli.cwd, cli.db_url))


def _hosts(cli: Cli, count: int, ttl_s: float = TTL_S) -> list[Served]:
    """``count`` services, h0, h1, ..., sharing one set of tokens."""
    hosts = [_host(cli, f"h{i}", ttl_s) for i in range(count)]
    for served in hosts[1:]:
        served.tokens = hosts[0].tokens
    return hosts


def _inner_pid(served: Served) -> int:
    """The pid (outside) of the namespace's pid 1: the service itself."""
    children = Path(f"/proc/{served.proc.pid}/task/{served.proc.pid}/children").read_text()
    return int(children.split()[0])


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (started by any of its threads)."""
    return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()]


def _kill_host(served: Served) -> None:
    """``kill -9`` of the service: as pid 1 of its namespace, its workers and tools die with
    it -- the host is gone."""
    os.kill(_inner_pid(served), signal.SIGKILL)
    served.proc.wait(timeout=10)


def _query(cli: Cli, sql: str, **params: Any) -> list[Any]:
    from sqlalchemy import create_engine, text

    assert cli.db_url is not None
    engine = create_engine(cli.db_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), params))
    finally:
        engine.dispose()


def _wait_runs(cli: Cli, run_ids: list[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _query(cli, "SELECT id, status FROM runs")
        status = {r.id: r.status for r in rows}
        leases = {r.run_id: r.released for r in _query(cli, "SELECT run_id, released FROM leases")}
        if all(status.get(r) == "completed" and leases.get(r) for r in run_ids):
            return
        time.sleep(0.2)
    raise AssertionError(f"runs never completed: {status}")


def _completions(cli: Cli, run_id: str) -> Counter[str]:
    """How often each step was recorded as completed in the journal."""
    rows = _query(cli, "SELECT ws_id, step_id FROM events WHERE run_id = :run "
                  "AND kind = 'step.completed'", run=run_id)
    return Counter(f"{row.ws_id}/{row.step_id}" for row in rows)


def _holders(cli: Cli, run_id: str) -> list[str]:
    rows = _query(cli, "SELECT data FROM events WHERE run_id = :run AND kind = 'lease.acquired' "
                  "ORDER BY id", run=run_id)
    return [json.loads(r.data)["holder"] for r in rows]


def test_four_services_race_over_eight_runs_and_every_step_completes_once(cli: Cli) -> None:
    """Four services on one database drive eight runs together: each run completes, every step
    has one completion event and one checkpoint commit, and each run had one holder."""
    shape = {"a": 3, "b": 3}
    path = _plan(cli.cwd, "fleet", shape, sleep=0.2)
    # leases long enough that no holder on this loaded machine misses its renewals
    hosts = _hosts(cli, 4, ttl_s=30.0)
    try:
        runs = [_start(hosts[i % 4], {"files": [path], "parallel": 2}) for i in range(8)]
        _wait_runs(cli, runs)
        drivers = set()
        for run_id in runs:
            assert _completions(cli, run_id) == Counter(
                {f"{ws}/s{j}": 1 for ws, n in shape.items() for j in range(n)}), run_id
            _assert_each_step_once(cli.cwd, run_id, shape)
            holders = _holders(cli, run_id)
            assert len(holders) == 1, holders  # nobody took a run over from a live holder
            drivers.add(holders[0].rsplit(" on ", 1)[1])
        assert len(drivers) >= 2, drivers  # the runs were shared out
    finally:
        for served in hosts:
            served.stop()


def _drivers(cli: Cli) -> dict[str, tuple[str, float]]:
    """Run id -> (host, expires_at) of every live, unreleased lease."""
    rows = _query(cli, "SELECT run_id, host, expires_at, released FROM leases")
    return {r.run_id: (r.host, r.expires_at) for r in rows if not r.released}


def _completed(cli: Cli, run_id: str) -> int:
    return sum(_completions(cli, run_id).values())


def _acquired_after(cli: Cli, run_id: str, since: float) -> list[tuple[float, str]]:
    rows = _query(cli, "SELECT ts, data FROM events WHERE run_id = :run "
                  "AND kind = 'lease.acquired' AND ts > :since ORDER BY id",
                  run=run_id, since=since)
    return [(r.ts, json.loads(r.data)["holder"]) for r in rows]


def _until(what: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := what():
            return found
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_a_dead_hosts_runs_are_taken_over_within_the_lease_lifetime(cli: Cli) -> None:
    """kill -9 of a service and its workers (its host is gone): the other services take each of
    its runs over once the lease expires -- within the lease's lifetime plus one renewal of the
    kill -- and finish them without redoing a completed step."""
    shape = {"a": 4, "b": 4}
    path = _plan(cli.cwd, "takeover", shape, sleep=0.5)
    hosts = _hosts(cli, 3)
    try:
        runs = [_start(hosts[i % 3], {"files": [path], "parallel": 2}) for i in range(4)]
        _until(lambda: len(_drivers(cli)) == 4 and all(_completed(cli, r) for r in runs))
        drivers = _drivers(cli)
        victim_host = Counter(host for host, _ in drivers.values()).most_common(1)[0][0]
        victim = hosts[int(victim_host[1:])]
        orphaned = [r for r, (host, _) in drivers.items() if host == victim_host]
        _kill_host(victim)
        killed_at = time.time()
        _wait_runs(cli, runs)
        for run_id in orphaned:
            taken = _acquired_after(cli, run_id, killed_at)
            assert taken and victim_host not in taken[0][1], taken
            delay = taken[0][0] - killed_at
            # the lease expires at most TTL after the kill; a renewal period for noticing and
            # starting the new worker (Python, loaded 2-core machine: margin of 2 s)
            assert delay <= TTL_S + TTL_S / 3 + 2.0, delay
            print(f"run {run_id}: taken over {delay:.2f} s after the kill ({taken[0][1]})")
        for run_id in runs:
            assert _completions(cli, run_id) == Counter(
                {f"{ws}/s{j}": 1 for ws, n in shape.items() for j in range(n)}), run_id
            _assert_each_step_once(cli.cwd, run_id, shape)
    finally:
        for served in hosts:
            served.stop()


def test_a_paused_worker_is_fenced_off_after_another_service_takes_its_run_over(
        cli: Cli) -> None:
    """SIGSTOP the worker driving a run until its lease expires: another service takes the run
    over and finishes it; SIGCONT: the stale worker's writes are refused (its fencing token is
    old), it exits naming the lost lease, and no step is done twice."""
    shape = {"a": 6}
    path = _plan(cli.cwd, "fenced", shape, sleep=0.4)
    hosts = _hosts(cli, 2)
    paused: int | None = None
    try:
        run_id = _start(hosts[0], {"files": [path]})
        _until(lambda: _completed(cli, run_id) >= 1)
        host = _drivers(cli)[run_id][0]
        service = hosts[int(host[1:])]
        inner = _inner_pid(service)
        paused = _children(inner)[0]  # the run's worker: the service drives nothing else
        os.kill(paused, signal.SIGSTOP)
        stopped_at = time.time()
        taken = _until(lambda: _acquired_after(cli, run_id, stopped_at), timeout=TTL_S + 30)
        assert host not in taken[0][1], taken
        _until(lambda: _completed(cli, run_id) == 6, timeout=60)
        os.kill(paused, signal.SIGCONT)
        _wait_runs(cli, [run_id])
        _until(lambda: "fencing token 1 is stale" in _worker_log_text(cli.cwd, run_id), timeout=30)
        assert _completions(cli, run_id) == Counter({f"a/s{j}": 1 for j in range(6)})
        _assert_each_step_once(cli.cwd, run_id, shape)
        tokens = [json.loads(r.data)["token"] for r in _query(
            cli, "SELECT data FROM events WHERE run_id = :run AND kind = 'lease.acquired' "
            "ORDER BY id", run=run_id)]
        assert tokens == [1, 2], tokens
    finally:
        if paused is not None:
            try:
                os.kill(paused, signal.SIGCONT)
            except ProcessLookupError:
                pass
        for served in hosts:
            served.stop()


def _worker_log_text(repo: Path, run_id: str) -> str:
    log = repo / ".aidp" / "serve" / f"{run_id}.log"
    return log.read_text(errors="replace") if log.exists() else ""
