"""Per-step bookkeeping cost: aidp's :class:`Store` transactions vs raw ``sqlite3``.

Run: ``.venv/bin/python bench/bench_store.py [--steps 300]``; prints JSON.

For every step of a one-workstream plan it replays what the executor writes for one successful
attempt -- transaction 1: insert the attempt, step ``running``, event; transaction 2: finish the
attempt, step ``completed``, insert the checkpoint, workstream head, event -- both fenced by the
run's lease, exactly through ``Store.write``. The floor does the same two state changes with the
``sqlite3`` module (WAL, ``synchronous=NORMAL``, ``BEGIN IMMEDIATE``), one UPDATE each.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, insert, select, update

from aidp.cli.plan import load_or_exit as load_plan
from aidp.engine.run import create_run
from aidp.state.db import sqlite_url
from aidp.state.lease import acquire_lease
from aidp.state.store import Store
from aidp.state.tables import attempts, checkpoints, events, leases, steps, workstreams


def _prebuilt() -> dict[str, Any]:
    """The same statements built once with bind parameters (the suggested fix)."""
    step_key = (steps.c.run_id == bindparam("k_run"), steps.c.ws_id == bindparam("k_ws"),
                steps.c.step_id == bindparam("k_step"))
    return {
        "fence": select(leases.c.token, leases.c.released).where(
            leases.c.run_id == bindparam("k_run")),
        "insert_attempt": insert(attempts),
        "insert_event": insert(events),
        "insert_checkpoint": insert(checkpoints),
        "step_running": update(steps).where(*step_key).values(
            status=bindparam("status"), reason=bindparam("reason"),
            next_attempt_at=bindparam("next_attempt_at"), started_at=bindparam("started_at")),
        "step_done": update(steps).where(*step_key).values(
            status=bindparam("status"), attempts=bindparam("attempts"),
            reason=bindparam("reason"), next_attempt_at=bindparam("next_attempt_at"),
            checkpoint_sha=bindparam("checkpoint_sha"), finished_at=bindparam("finished_at")),
        "attempt_done": update(attempts).where(attempts.c.id == bindparam("k_id")).values(
            outcome=bindparam("outcome"), finished_at=bindparam("finished_at"),
            exit_code=bindparam("exit_code"), output_bytes=bindparam("output_bytes")),
        "ws_head": update(workstreams).where(
            workstreams.c.run_id == bindparam("k_run"), workstreams.c.ws_id == bindparam("k_ws")
        ).values(head_sha=bindparam("head_sha")),
    }


def _ms(samples: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(samples) * 1000, 3),
            "mean_ms": round(statistics.fmean(samples) * 1000, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        for cmd in (["init", "-q", "-b", "main"], ["-c", "user.name=B", "-c",
                    "user.email=b@x", "commit", "-q", "--allow-empty", "-m", "init"]):
            subprocess.run(["git", *cmd], cwd=repo, check=True)
        plan_file = Path(tmp) / "plan.json"
        plan_file.write_text(json.dumps({"version": 1, "workstreams": [{
            "id": "w", "steps": [{"id": f"s{i}", "run": "true"} for i in range(args.steps)]}]}))
        plan = load_plan((plan_file,), repo, True)
        start = time.perf_counter()
        store = Store(sqlite_url(Path(tmp) / "aidp.db"))
        run_id = create_run(store, repo, plan, parallel=1)
        setup_s = time.perf_counter() - start
        fence = acquire_lease(store, run_id)
        aidp_s: list[float] = []
        cpu0 = time.process_time()
        for i in range(args.steps):
            step_id = f"s{i}"
            t0 = time.perf_counter()
            with store.write(fence) as tx:
                attempt = tx.insert_attempt(run_id=run_id, ws_id="w", step_id=step_id, number=1,
                                            host="h", token="t" * 32, log_path="/tmp/x.log")
                tx.update_step(run_id, "w", step_id, status="running", reason=None,
                               next_attempt_at=None, started_at=tx.now)
                tx.event(run_id, "step.started", "w", step_id, attempt=1)
            with store.write(fence) as tx:
                tx.update_attempt(attempt, outcome="succeeded", finished_at=tx.now, exit_code=0,
                                  signal=None, output_bytes=0, error=None, changed_files=None)
                tx.update_step(run_id, "w", step_id, status="completed", attempts=1,
                               reason=None, next_attempt_at=None, checkpoint_sha="0" * 40,
                               finished_at=tx.now)
                tx.insert_checkpoint(run_id=run_id, ws_id="w", step_id=step_id, attempt=1,
                                     sha="0" * 40)
                tx.update_ws(run_id, "w", head_sha="0" * 40)
                tx.event(run_id, "step.completed", "w", step_id, attempt=1, outcome="succeeded",
                         reason=None, sha="0" * 40, next_attempt_at=None)
            aidp_s.append(time.perf_counter() - t0)
        aidp_cpu_ms = (time.process_time() - cpu0) / args.steps * 1000

        # The same work with statements built once (what a fix of Tx would do).
        stmts = _prebuilt()
        run2 = create_run(store, repo, plan, parallel=1)
        key = {"k_run": run2, "k_ws": "w"}
        cached_s: list[float] = []
        for i in range(args.steps):
            step_id = f"s{i}"
            t0 = time.perf_counter()
            with store.engine.begin() as conn:
                conn.execute(stmts["fence"], {"k_run": run_id}).first()
                now = time.time()
                attempt_key = conn.execute(stmts["insert_attempt"], {
                    "run_id": run2, "ws_id": "w", "step_id": step_id, "number": 1,
                    "host": "h", "token": "t" * 32, "log_path": "/tmp/x.log",
                    "started_at": now}).inserted_primary_key
                assert attempt_key is not None
                conn.execute(stmts["step_running"], {**key, "k_step": step_id,
                             "status": "running", "reason": None, "next_attempt_at": None,
                             "started_at": now})
                conn.execute(stmts["insert_event"], {"run_id": run2, "ts": now,
                             "kind": "step.started", "ws_id": "w", "step_id": step_id,
                             "data": json.dumps({"attempt": 1})})
            with store.engine.begin() as conn:
                conn.execute(stmts["fence"], {"k_run": run_id}).first()
                now = time.time()
                conn.execute(stmts["attempt_done"], {"k_id": attempt_key[0], "outcome": "succeeded",
                             "finished_at": now, "exit_code": 0, "output_bytes": 0})
                conn.execute(stmts["step_done"], {**key, "k_step": step_id,
                             "status": "completed", "attempts": 1, "reason": None,
                             "next_attempt_at": None, "checkpoint_sha": "0" * 40,
                             "finished_at": now})
                conn.execute(stmts["insert_checkpoint"], {"run_id": run2, "ws_id": "w",
                             "step_id": step_id, "attempt": 1, "sha": "0" * 40,
                             "created_at": now})
                conn.execute(stmts["ws_head"], {**key, "head_sha": "0" * 40})
                conn.execute(stmts["insert_event"], {"run_id": run2, "ts": now,
                             "kind": "step.completed", "ws_id": "w", "step_id": step_id,
                             "data": json.dumps({"attempt": 1, "sha": "0" * 40})})
            cached_s.append(time.perf_counter() - t0)
        store.close()

        raw = sqlite3.connect(Path(tmp) / "floor.db", isolation_level=None)
        raw.execute("PRAGMA journal_mode = WAL")
        raw.execute("PRAGMA synchronous = NORMAL")
        raw.execute("CREATE TABLE steps (ws TEXT, step TEXT, status TEXT, sha TEXT, "
                     "PRIMARY KEY (ws, step))")
        raw.executemany("INSERT INTO steps VALUES ('w', ?, 'pending', NULL)",
                         [(f"s{i}",) for i in range(args.steps)])
        floor_s: list[float] = []
        for i in range(args.steps):
            t0 = time.perf_counter()
            for status in ("running", "completed"):
                raw.execute("BEGIN IMMEDIATE")
                raw.execute("UPDATE steps SET status = ?, sha = ? WHERE ws = 'w' AND step = ?",
                             (status, None, f"s{i}"))
                raw.execute("COMMIT")
            floor_s.append(time.perf_counter() - t0)
        raw.close()
    aidp = _ms(aidp_s)
    floor = _ms(floor_s)
    json.dump({"benchmark": "store", "steps": args.steps,
               "store_open_migrate_create_run_s": round(setup_s, 3),
               "aidp_store_two_transactions_per_step": aidp,
               "aidp_cpu_ms_per_step": round(aidp_cpu_ms, 3),
               "prebuilt_statements_same_engine_per_step": _ms(cached_s),
               "sqlite3_two_transactions_per_step": floor,
               "overhead_median_ms_per_step": round(aidp["median_ms"] - floor["median_ms"], 3)},
              sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
