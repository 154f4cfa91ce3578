"""Reads against ``aidp serve`` while a run executes: latency, errors, and what the load does to
the run's makespan.

Run: ``.venv/bin/python bench/bench_api.py [--clients 50] [--reads 200] [--workstreams 5]
[--steps 10] [--rounds 1] [--step-sleep 0.2] [--reader-nice 5]``; prints a table and JSON
(``--out FILE`` to keep it).

On a generated repository, ``aidp serve --port 0`` drives a plan of ``workstreams`` x ``steps``
chained shell steps (each waits ``step-sleep`` seconds, as a tool waits for its model, then
appends a line to its workstream's file: a one-file checkpoint per step). Per round, in the
same invocation, the same plan is run twice through ``POST /runs``:

* **quiet**: nothing else reads;
* **loaded**: ``clients`` concurrent clients (asyncio, one keep-alive connection each) each do
  ``reads`` GETs, round-robin over ``/runs``, ``/runs/{id}``, ``/runs/{id}/workstreams``, a
  step, ``/runs/{id}/events``, ``/runs/{id}/findings`` and ``/usage?run=``, all on the run
  being driven, starting with it.

The makespan is the run's ``finished_at - created_at`` in the database (server side: from the
``POST`` to the end of its last step, the worker's start-up included), so the clients' own
slowness does not enter it. Latency is per request, measured by the client (its event loop
shares the two cores, so it is an upper bound); this process runs at ``reader-nice``, as readers
on other machines would take no CPU from the run. Targets (issue 19): p99 < 200 ms, 0 errors,
loaded makespan <= 1.10 x quiet. Reported as ratios, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import serving

ROOT = Path(__file__).resolve().parent.parent
AIDP = str(Path(sys.executable).with_name("aidp"))
GIT_ENV = {"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
           "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, **GIT_ENV})


def _repository(root: Path, workstreams: int, steps: int, sleep_s: float = 0.0) -> Path:
    """A repository with one commit holding the plan ``workstreams/bench.json``; each step
    sleeps ``sleep_s`` first (a tool waiting for its model), then appends its line."""
    repo = root / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    items = []
    wait = f"sleep {sleep_s} && " if sleep_s else ""
    for w in range(workstreams):
        chain = [{"id": f"s{j}", "run": f"{wait}mkdir -p w{w} && echo step-{j} >> w{w}/log.txt",
                  **({"depends_on": [f"s{j - 1}"]} if j else {})} for j in range(steps)]
        items.append({"id": f"w{w}", "scope": [f"w{w}/**"], "steps": chain})
    (repo / "workstreams").mkdir()
    (repo / "workstreams" / "bench.json").write_text(
        json.dumps({"version": 1, "workstreams": items}, indent=1))
    (repo / "README.md").write_text("bench\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "bench plan")
    return repo


class Service:
    """``aidp serve --port 0`` on ``repo`` with a read and an operate token."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        env = {**os.environ, **GIT_ENV}
        env.pop("AIDP_DATABASE_URL", None)
        env["PYTHONPATH"] = str(ROOT / "src")  # this checkout's aidp, whatever .venv points at
        self.env = env
        self.tokens = {scope: self._token(scope) for scope in ("read", "operate")}
        self.log = repo.parent / "serve.log"
        self.proc, self.url = serving.start([AIDP, "serve", "--port", "0"], repo, env,
                                            self.log)

    def _token(self, scope: str) -> str:
        out = subprocess.run([AIDP, "tokens", "create", f"bench-{scope}", "--scope", scope,
                              "--json"], cwd=self.repo, env=self.env, check=True,
                             capture_output=True, text=True).stdout
        return str(json.loads(out)["token"])

    def headers(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[scope]}"}

    def stop(self) -> None:
        serving.stop(self.proc)

    def times(self, run_id: str) -> tuple[float, float, float]:
        """``created_at``, ``started_at``, ``finished_at`` of the run, from the database."""
        with sqlite3.connect(self.repo / ".aidp" / "aidp.db") as conn:
            row = conn.execute("SELECT created_at, started_at, finished_at FROM runs "
                               "WHERE id = ?", (run_id,)).fetchone()
        return float(row[0]), float(row[1]), float(row[2])


async def _start(client: httpx.AsyncClient, service: Service) -> str:
    answer = await client.post("/runs", json={"files": ["workstreams/bench.json"]},
                               headers=service.headers("operate"))
    answer.raise_for_status()
    return str(answer.json()["run_id"])


async def _wait_done(client: httpx.AsyncClient, service: Service, run_id: str,
                     errors: list[str]) -> str:
    """Poll the run until it ends; a failed poll is recorded in ``errors`` and retried."""
    while True:
        try:
            view = (await client.get(f"/runs/{run_id}",
                                     headers=service.headers("read"))).json()
        except httpx.HTTPError as exc:
            errors.append(f"poll: {type(exc).__name__}")
            continue
        if view["status"] in ("completed", "failed", "cancelled") and not view["live"]:
            return str(view["status"])
        await asyncio.sleep(0.2)


def _routes(run_id: str) -> list[str]:
    return ["/runs", f"/runs/{run_id}", f"/runs/{run_id}/workstreams",
            f"/runs/{run_id}/steps/w0/s0", f"/runs/{run_id}/events?limit=100",
            f"/runs/{run_id}/findings", f"/usage?run={run_id}"]


class _Connection:
    """One keep-alive HTTP/1.1 connection that sends GETs and reads whole answers.

    The readers use this instead of httpx: 50 httpx clients in one event loop cost as much CPU
    per request as the service does, and on two cores that CPU is taken from the service being
    measured. A request's latency is from its first byte sent to its last byte read.
    """

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parsed = httpx.URL(url)
        self.host, self.port, self.prefix = parsed.host, parsed.port or 80, parsed.path
        self.head = "".join(f"{k}: {v}\r\n" for k, v in
                            {"Host": f"{self.host}:{self.port}", **headers}.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> int:
        """The status of ``GET path`` (the body is read and dropped)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {self.prefix}{path} HTTP/1.1\r\n{self.head}\r\n".encode())
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed")
        length, chunked, close = 0, False, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                close = True
        if chunked:
            while (size := int((await self.reader.readline()).split(b";")[0], 16)):
                await self.reader.readexactly(size + 2)
            await self.reader.readline()
        else:
            await self.reader.readexactly(length)
        if close:
            self.close()
        return int(status_line.split()[1])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = self.reader = None


async def _reader(url: str, headers: dict[str, str], routes: list[str], reads: int, offset: int,
                  latencies: list[float], errors: list[str]) -> None:
    connection = _Connection(url, headers)
    try:
        for n in range(reads):
            path = routes[(n + offset) % len(routes)]
            began = time.perf_counter()
            try:
                status = await connection.get(path)
                latencies.append(time.perf_counter() - began)
                if status != 200:
                    errors.append(f"{status} {path}")
            except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
                latencies.append(time.perf_counter() - began)
                errors.append(f"{type(exc).__name__} {path}")
                connection.close()
    finally:
        connection.close()


async def _one_run(service: Service, clients: int, reads: int) -> dict[str, Any]:
    """One run of the plan, with ``clients`` readers (0: none) started with it."""
    latencies: list[float] = []
    errors: list[str] = []
    async with httpx.AsyncClient(base_url=service.url, timeout=60) as control:
        run_id = await _start(control, service)
        began = time.perf_counter()
        readers = [asyncio.create_task(_reader(service.url, service.headers("read"),
                                               _routes(run_id), reads, i, latencies, errors))
                   for i in range(clients)]
        poll_errors: list[str] = []
        status = await _wait_done(control, service, run_id, poll_errors)
        run_done = time.perf_counter() - began
        await asyncio.gather(*readers)
        load_s = time.perf_counter() - began
    created, started, finished = service.times(run_id)
    result: dict[str, Any] = {"run_id": run_id, "status": status,
                              "makespan_s": finished - created,
                              "driven_s": finished - started, "observed_s": run_done,
                              "poll_errors": poll_errors}
    if clients:
        ordered = sorted(latencies)

        def pct(p: float) -> float:
            return 1000 * ordered[min(len(ordered) - 1, int(p * len(ordered)))]

        result.update({"requests": len(latencies), "errors": len(errors),
                       "error_samples": errors[:5], "load_s": load_s,
                       "rps": len(latencies) / load_s, "p50_ms": pct(0.50),
                       "p95_ms": pct(0.95), "p99_ms": pct(0.99), "max_ms": 1000 * ordered[-1],
                       "mean_ms": 1000 * statistics.fmean(ordered)})
    return result


def _round(service: Service, clients: int, reads: int) -> dict[str, Any]:
    quiet = asyncio.run(_one_run(service, 0, 0))
    loaded = asyncio.run(_one_run(service, clients, reads))
    ratio = loaded["makespan_s"] / quiet["makespan_s"]
    return {"quiet": quiet, "loaded": loaded, "makespan_ratio": ratio,
            "p99_vs_target": loaded["p99_ms"] / 200.0,
            "met": {"p99": loaded["p99_ms"] < 200, "errors": loaded["errors"] == 0,
                    "makespan": ratio <= 1.10,
                    "runs_completed": quiet["status"] == loaded["status"] == "completed"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--workstreams", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--step-sleep", type=float, default=0.2,
                        help="seconds each step waits before its edit (0: none)")
    parser.add_argument("--reader-nice", type=int, default=5,
                        help="nice increment of this process (the readers), as the service "
                             "lowers its request handling: readers on other machines take no "
                             "CPU from the run; here they share its two cores (0: compete)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="aidp-bench-api-") as tmp:
        repo = _repository(Path(tmp), args.workstreams, args.steps, args.step_sleep)
        service = Service(repo)  # started before the nice: its workers must not inherit it
        os.nice(args.reader_nice)
        try:
            for n in range(args.rounds):
                load = os.getloadavg()[0]
                result = _round(service, args.clients, args.reads)
                result["loadavg_before"] = load
                rounds.append(result)
                q, lo = result["quiet"], result["loaded"]
                print(f"round {n + 1}: quiet {q['makespan_s']:.2f} s, loaded "
                      f"{lo['makespan_s']:.2f} s (x{result['makespan_ratio']:.3f}); "
                      f"{lo['requests']} reads, {lo['errors']} errors, {lo['rps']:.0f}/s, "
                      f"p50 {lo['p50_ms']:.0f} ms, p95 {lo['p95_ms']:.0f}, "
                      f"p99 {lo['p99_ms']:.0f} (x{result['p99_vs_target']:.2f} of 200), "
                      f"max {lo['max_ms']:.0f}; poll errors {len(q['poll_errors'])}+"
                      f"{len(lo['poll_errors'])}; load avg {load:.1f}; met {result['met']}",
                      flush=True)
        except BaseException:
            print(f"aidp serve's output:\n{service.log.read_text()[-5000:]}", file=sys.stderr)
            raise
        finally:
            service.stop()
    report = {"clients": args.clients, "reads": args.reads, "reader_nice": args.reader_nice,
              "steps": args.workstreams * args.steps, "step_sleep_s": args.step_sleep,
              "rounds": rounds}
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
