"""The Dask executor against the local one: the layered 300-step DAG on 1, 2 and 3 local
``aidp worker``s, beside the local executor, in the same invocation.

Run: ``.venv/bin/python bench/bench_dask.py [--layers 10] [--width 30] [--sleep 0.05]
[--threads 2] [--workers 1,2,3] [--reps 1] [--out FILE]``; prints a table and JSON.

The plan is ``bench/run.py``'s layered plan: ``layers x width`` one-step workstreams of
``sleep S``, each depending on the one above it. A run with ``P`` slots has an ideal makespan of
``layers x ceil(width / P) x S``. For each row, a fresh bare remote and clones: the local
executor runs with ``--parallel P`` for P = threads x workers; the Dask rows start a
``dask scheduler`` and N ``aidp worker --nthreads THREADS`` (each in its own clone, all on
127.0.0.1) and run ``aidp run --executor dask --parallel P``. Reported: wall time of the run
(from its own JSON summary), makespan against the ideal, and the overhead per step, ``(wall -
ideal) / steps``. Figures, never asserted.

On a 2-core machine every worker, the scheduler and the orchestrator share the two cores: the
rows show the price of the executor's round trips (publish, submit, fetch, push), not a
speed-up -- that needs more machines.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import AIDP, PYTHON, _init, git, layered_plan

DASK = str(Path(PYTHON).parent / "dask")


def _repos(root: Path, plan: dict[str, Any]) -> Path:
    """A bare remote holding the plan on main; returns the remote."""
    seed = root / "seed"
    _init(seed)
    (seed / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
    (seed / "README.md").write_text("bench\n", encoding="utf-8")
    git(["add", "-A"], seed)
    git(["commit", "-q", "-m", "plan"], seed)
    remote = root / "remote.git"
    git(["clone", "-q", "--bare", str(seed), str(remote)], root)
    return remote


def _clone(remote: Path, dest: Path) -> Path:
    git(["clone", "-q", str(remote), str(dest)], dest.parent)
    return dest


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("AIDP_DATABASE_URL", None)
    env.setdefault("GIT_AUTHOR_NAME", "bench")
    env.setdefault("GIT_AUTHOR_EMAIL", "bench@aidp.invalid")
    env.setdefault("GIT_COMMITTER_NAME", "bench")
    env.setdefault("GIT_COMMITTER_EMAIL", "bench@aidp.invalid")
    return env


def _run(clone: Path, parallel: int, extra: list[str]) -> float:
    done = subprocess.run([str(AIDP), "run", "plan.json", "--parallel", str(parallel), "--json",
                           *extra], cwd=clone, capture_output=True, text=True, env=_env(),
                          timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"aidp run failed ({done.returncode}): {done.stderr[-2000:]}")
    return float(json.loads(done.stdout)["duration_s"])


def _cluster(root: Path, remote: Path, workers: int, threads: int
             ) -> tuple[str, list[subprocess.Popen[str]]]:
    info = root / "scheduler.json"
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(info)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
                              env=_env(), start_new_session=True)]
    deadline = time.monotonic() + 60
    while not info.exists() or not info.read_text().strip():
        if time.monotonic() > deadline:
            raise SystemExit("the scheduler did not start")
        time.sleep(0.1)
    address = json.loads(info.read_text())["address"]
    for i in range(workers):
        clone = _clone(remote, root / f"worker{i}")
        procs.append(subprocess.Popen(
            [str(AIDP), "worker", "--scheduler", address, "--nthreads", str(threads),
             "--name", f"w{i}"], cwd=clone, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, text=True, env=_env(), start_new_session=True))
    from distributed import Client

    with Client(address, timeout=30, set_as_default=False) as client:
        client.wait_for_workers(workers, timeout=60)
    return address, procs


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    plan = layered_plan(args.layers, args.width, args.sleep)
    steps = args.layers * args.width
    rows = []
    for workers in args.workers:
        parallel = workers * args.threads
        ideal = args.layers * math.ceil(args.width / parallel) * args.sleep
        for executor in ("local", "dask"):
            walls = []
            for _ in range(args.reps):
                with tempfile.TemporaryDirectory(prefix="aidp-bench-dask-") as tmp:
                    root = Path(tmp)
                    remote = _repos(root, plan)
                    clone = _clone(remote, root / "orchestrator")
                    if executor == "local":
                        walls.append(_run(clone, parallel, []))
                        continue
                    address, procs = _cluster(root, remote, workers, args.threads)
                    try:
                        walls.append(_run(clone, parallel, ["--executor", "dask",
                                                            "--scheduler", address]))
                    finally:
                        _stop(procs)
            wall = sorted(walls)[len(walls) // 2]
            rows.append({"executor": executor, "workers": workers if executor == "dask"
                         else 0, "parallel": parallel, "steps": steps, "wall_s": round(wall, 2),
                         "ideal_s": round(ideal, 2), "makespan_x": round(wall / ideal, 2),
                         "overhead_ms_per_step": round((wall - ideal) / steps * 1000, 1)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--width", type=int, default=30)
    parser.add_argument("--sleep", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=2, help="threads per worker")
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 2, 3])
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = measure(args)
    print(f"\n{'executor':8} {'workers':>7} {'-p':>3} {'wall s':>7} {'ideal s':>7} "
          f"{'x ideal':>7} {'ms/step over ideal':>18}")
    for r in rows:
        print(f"{r['executor']:8} {r['workers']:>7} {r['parallel']:>3} {r['wall_s']:>7} "
              f"{r['ideal_s']:>7} {r['makespan_x']:>7} {r['overhead_ms_per_step']:>18}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
