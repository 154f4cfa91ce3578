"""aidp against a plain-Python floor, scenario by scenario: ``.venv/bin/python bench/run.py``.

Options: ``--quick`` (one repetition, smaller sizes: a smoke run), ``--only NAME`` (repeatable:
fanout, chain, layered, large, empty, pool, resolve), ``--reps N``, ``--out PATH``. Writes
JSON to ``bench/results/latest.json`` and prints a table. See ``bench/README.md`` for what each
scenario measures and how the floor (``bench/floor.py``) is built; ``pool`` and ``resolve`` run
one micro-benchmark script each (``bench_worktree_pool.py``, ``bench_specs_resolve.py``).

Every measurement runs ``aidp run PLAN --parallel N --json`` as a subprocess in a fresh copy of a
generated repository, and ``bench/floor.py`` on another fresh copy, alternately; each is repeated
``--reps`` times (default 3) and the median kept. Wall time is measured around the subprocess;
the orchestration time is aidp's own ``duration_s`` (from its JSON summary: lease to summary,
without Python start-up, imports, validation or ``create_run``) and the floor's own timer. Peak
RSS is ``ru_maxrss`` from ``wait4`` of the process (its largest waited-for descendant included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
CACHE = RESULTS / "cache"
PYTHON = Path(sys.executable)
AIDP = PYTHON.parent / "aidp"
FLOOR = BENCH / "floor.py"
# --pythonpath: run aidp from another source tree (an older commit's `src`, for a before/after
# comparison under the same load), with this environment's dependencies.
AIDP_ENV: dict[str, str] = {}
# Commits in generated repositories must not depend on the user's git configuration.
GIT_ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


# -- processes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    """One finished subprocess: wall time, exit code, output, peak RSS."""

    wall_s: float
    returncode: int
    stdout: str
    stderr: str
    maxrss_mb: float


def measure(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Proc:
    """Run ``argv`` and time it; ``wait4`` gives this process's own rusage (peak RSS)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Proc(wall, proc.returncode, out.read().decode(errors="replace"),
                    err.read().decode(errors="replace"), usage.ru_maxrss / 1024)


def git(args: list[str], cwd: Path, **kwargs: Any) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, check=True, env={**os.environ, **GIT_ENV}, **kwargs)
    return str(proc.stdout)


# -- repositories ------------------------------------------------------------------------------


def _init(repo: Path) -> None:
    repo.mkdir(parents=True)
    git(["init", "-q", "-b", "main"], repo)
    git(["config", "user.name", "Bench"], repo)
    git(["config", "user.email", "bench@example.com"], repo)


def small_repo(repo: Path) -> None:
    """A ten-file repository with one commit."""
    _init(repo)
    for i in range(10):
        (repo / f"file{i}.txt").write_text(f"content {i}\n")
    git(["add", "-A"], repo)
    git(["commit", "-q", "-m", "initial"], repo)


def large_repo_cache(files: int) -> Path:
    """A checked-out repository of ``files`` files in 100-file directories, built once.

    Generated with ``git fast-import`` (distinct contents, one commit), then checked out; kept
    in ``bench/results/cache/`` and copied (``cp -a``) for every measurement.
    """
    path = CACHE / f"repo-{files}"
    if (path / ".git" / "bench-complete").exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    _init(path)
    chunks = [(b"commit refs/heads/main\ncommitter Bench <bench@example.com> 0 +0000\n"
               b"data 8\ninitial\n")]
    for i in range(files):
        body = b"".join(b"line %d of file %d, a typical source line\n" % (n, i)
                        for n in range(12))
        chunks.append(b"M 100644 inline src/d%03d/file%05d.py\ndata %d\n%s\n"
                      % (i // 100, i, len(body), body))
    subprocess.run(["git", "fast-import", "--quiet"], cwd=path, input=b"".join(chunks),
                   check=True)
    git(["checkout", "-q", "-f", "main"], path)
    git(["gc", "-q"], path)
    (path / ".git" / "bench-complete").write_text("ok\n")
    return path


def copy_repo(source: Path, dest: Path) -> None:
    subprocess.run(["cp", "-a", str(source), str(dest)], check=True)


# -- plans -------------------------------------------------------------------------------------


def ws(ws_id: str, runs: list[str], *, depends_on: list[str] | None = None,
       scope: str | None = None, chain: bool = True) -> dict[str, Any]:
    """A workstream whose steps run ``runs`` (a chain when ``chain``)."""
    steps = []
    for i, run in enumerate(runs):
        step: dict[str, Any] = {"id": f"s{i}", "run": run}
        if chain and i:
            step["depends_on"] = [f"s{i - 1}"]
        steps.append(step)
    out: dict[str, Any] = {"id": ws_id, "scope": [scope or f"{ws_id}/**"], "steps": steps}
    if depends_on:
        out["depends_on"] = depends_on
    return out


def fanout_plan(count: int) -> dict[str, Any]:
    return {"version": 1, "workstreams": [ws(f"w{i:04d}", ["true"]) for i in range(count)]}


def chain_plan(length: int, command: str) -> dict[str, Any]:
    return {"version": 1, "workstreams": [ws("chain", [command] * length)]}


def layered_plan(layers: int, width: int, sleep_s: float) -> dict[str, Any]:
    return {"version": 1, "workstreams": [
        ws(f"l{k:02d}w{i:02d}", [f"sleep {sleep_s}"],
           depends_on=[f"l{k - 1:02d}w{i:02d}"] if k else None)
        for k in range(layers) for i in range(width)
    ]}


def large_plan(count: int, files: int) -> dict[str, Any]:
    stride = files // count
    out = []
    for i in range(count):
        index = i * stride
        target = f"src/d{index // 100:03d}/file{index:05d}.py"
        out.append(ws(f"w{i:03d}", [f"echo 'changed by w{i:03d}' >> {target}"],
                      scope=target))
    return {"version": 1, "workstreams": out}


# -- one comparison ----------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _summary(proc: Proc) -> dict[str, Any] | None:
    """The JSON summary a run printed (aidp exits 1 when a workstream failed), else None."""
    if proc.returncode not in (0, 1):
        return None
    try:
        summary = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return None
    return summary if isinstance(summary, dict) and "duration_s" in summary else None


def compare(name: str, plan: dict[str, Any], parallel: int, make_repo: Callable[[Path], None],
            reps: int, work: Path) -> dict[str, Any]:
    """Run aidp and the floor ``reps`` times each, alternately, on fresh repositories."""
    plan_path = work / f"{name}.json"
    plan_path.write_text(json.dumps(plan), encoding="utf-8")
    steps = sum(len(w["steps"]) for w in plan["workstreams"])
    samples: dict[str, list[Any]] = {"aidp": [], "floor": []}
    failures: list[dict[str, Any]] = []
    for rep in range(reps):
        for kind in ("aidp", "floor"):
            # A failed aidp run (a workstream failed) is recorded and measured again, up to
            # twice: its timing would not be comparable, and the failure is itself a finding.
            for attempt in range(3):
                repo = work / f"{name}-{kind}-{rep}-{attempt}"
                make_repo(repo)
                if kind == "aidp":
                    argv = [str(AIDP), "run", str(plan_path), "--repo", str(repo),
                            "--parallel", str(parallel), "--json"]
                else:
                    argv = [str(PYTHON), str(FLOOR), str(plan_path), "--repo", str(repo),
                            "--parallel", str(parallel)]
                proc = measure(argv, cwd=repo, env=AIDP_ENV if kind == "aidp" else None)
                shutil.rmtree(repo, ignore_errors=True)
                summary = _summary(proc)
                if summary is None:
                    raise RuntimeError(f"{name}: {kind} exited {proc.returncode}:\n"
                                       f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
                if kind == "aidp" and summary.get("status") != "completed":
                    failures.append({"rep": rep, "attempt": attempt,
                                     "status": summary.get("status"),
                                     "reasons": sorted({str(w.get("reason")) for w in
                                                        summary.get("workstreams", [])
                                                        if w.get("status") == "failed"})})
                    continue
                samples[kind].append((proc.wall_s, float(summary["duration_s"]),
                                      proc.maxrss_mb))
                break
            else:
                raise RuntimeError(f"{name}: aidp failed 3 times in a row: {failures[-3:]}")
    result: dict[str, Any] = {"name": name, "steps": steps,
                              "workstreams": len(plan["workstreams"]), "parallel": parallel,
                              "reps": reps, "aidp_failed_runs": failures}
    for kind, rows in samples.items():
        result[kind] = {
            "wall_s": round(_median([r[0] for r in rows]), 4),
            "orchestration_s": round(_median([r[1] for r in rows]), 4),
            "peak_rss_mb": round(max(r[2] for r in rows), 1),
            "samples_wall_s": [round(r[0], 4) for r in rows],
            "samples_orchestration_s": [round(r[1], 4) for r in rows],
        }
    a, f = result["aidp"], result["floor"]
    per = max(steps, 1)  # an empty plan: the whole difference
    result["overhead_ms_per_step_wall"] = round((a["wall_s"] - f["wall_s"]) / per * 1000, 3)
    result["overhead_ms_per_step_orchestration"] = round(
        (a["orchestration_s"] - f["orchestration_s"]) / per * 1000, 3)
    result["ratio_wall"] = round(a["wall_s"] / f["wall_s"], 3)
    result["ratio_orchestration"] = round(a["orchestration_s"] / f["orchestration_s"], 3)
    return result


# -- scenarios ---------------------------------------------------------------------------------


def scenario_fanout(quick: bool, reps: int, work: Path) -> list[dict[str, Any]]:
    count = 50 if quick else 500
    row = compare("fanout", fanout_plan(count), 2, small_repo, reps, work)
    row["what"] = f"{count} one-step workstreams (`true`), --parallel 2"
    row["target"] = {"overhead_ms_per_step_wall": 2.0}
    return [row]


def scenario_chain(quick: bool, reps: int, work: Path) -> list[dict[str, Any]]:
    length = 50 if quick else 200
    rows = []
    # `true` makes an empty checkpoint commit per step; the append changes one file per step.
    for label, command in (("chain", "true"), ("chain-append", "echo x >> chain/log.txt")):
        plan = chain_plan(length, command if label == "chain" else "mkdir -p chain && " + command)
        row = compare(label, plan, 2, small_repo, reps, work)
        row["what"] = f"{length}-step chain in one workstream, step `{command}`"
        row["target"] = {"overhead_ms_per_step_wall": 2.0}
        rows.append(row)
        if quick:
            break
    return rows


def scenario_layered(quick: bool, reps: int, work: Path) -> list[dict[str, Any]]:
    layers, width, sleep_s = (4, 6, 0.05) if quick else (10, 30, 0.05)
    rows = []
    for parallel in (2, 8):
        row = compare(f"layered-p{parallel}", layered_plan(layers, width, sleep_s), parallel,
                      small_repo, reps, work)
        total = layers * width * sleep_s
        bound = max(layers * sleep_s, total / parallel)
        row["what"] = f"{layers} layers x {width} workstreams, one `sleep {sleep_s}` step each"
        row["sleep_lower_bound_s"] = round(bound, 3)
        row["makespan_ratio_vs_floor"] = row["ratio_orchestration"]
        row["makespan_ratio_vs_floor_wall"] = row["ratio_wall"]
        row["makespan_ratio_vs_sleep_bound"] = round(row["aidp"]["orchestration_s"] / bound, 3)
        row["floor_ratio_vs_sleep_bound"] = round(row["floor"]["orchestration_s"] / bound, 3)
        row["target"] = {"makespan_ratio_vs_floor": 1.05}
        rows.append(row)
    return rows


def scenario_large(quick: bool, reps: int, work: Path) -> list[dict[str, Any]]:
    files, count = (2_000, 10) if quick else (20_000, 50)
    start = time.perf_counter()
    cache = large_repo_cache(files)
    cache_s = time.perf_counter() - start
    row = compare("large", large_plan(count, files), 2,
                  lambda dest: copy_repo(cache, dest), reps, work)
    row["what"] = f"{count} workstreams each changing one file of a {files}-file repo, -p 2"
    row["files"] = files
    row["cache_build_s"] = round(cache_s, 2)
    return [row]


def scenario_pool(quick: bool, reps: int, work: Path) -> list[dict[str, Any]]:
    """``bench/bench_worktree_pool.py``: a pooled re-preparation vs a fresh worktree add."""
    files = 2_000 if quick else 20_000
    proc = measure([str(PYTHON), str(BENCH / "bench_worktree_pool.py"), "--files", str(files),
                    "--rounds", str(reps), "--dir", str(work)], cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_worktree_pool.py exited {proc.returncode}: {proc.stderr}")
    data = json.loads(proc.stdout)
    return [{"name": "pool", "what": f"pooled acquire vs `git worktree add`, {files} files",
             "files": files, "reps": reps, "result": data,
             "ratio_pooled_over_fresh": data["ratio_pooled_over_fresh"],
             "target": {"ratio_pooled_over_fresh": 0.2}}]


def scenario_resolve(quick: bool, reps: int, work: Path) -> list[dict[str, Any]]:
    """``bench/bench_specs_resolve.py``: resolving spec:// URIs vs a plain dict-lookup floor."""
    specs, uris = (200, 2_000) if quick else (1_000, 10_000)
    proc = measure([str(PYTHON), str(BENCH / "bench_specs_resolve.py"), "--specs", str(specs),
                    "--uris", str(uris)], cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_specs_resolve.py exited {proc.returncode}: {proc.stderr}")
    data = json.loads(proc.stdout)
    return [{"name": "resolve", "what": f"resolve {uris} spec:// URIs against {specs} specs",
             "reps": 1, "result": data, "us_per_uri": data["us_per_uri"],
             "ratio_vs_floor": data["ratio_vs_floor"]}]


def scenario_empty(quick: bool, reps: int, work: Path) -> list[dict[str, Any]]:
    """An empty plan (``workstreams: []``): start-up, validation, the run row, nothing else."""
    row = compare("empty", {"version": 1, "workstreams": []}, 2, small_repo, reps, work)
    row["what"] = "an empty plan: start-up, a run row, its lease and journal"
    row["target"] = {"aidp_wall_s": 0.3}
    starts: dict[str, Any] = {}
    probe = work / "startup"
    small_repo(probe)
    plan = work / "startup.json"
    plan.write_text(json.dumps({"version": 1, "workstreams": [ws("only", ["true"])]}))
    for label, argv in (
        ("python_-c_pass", [str(PYTHON), "-c", "pass"]),
        ("aidp_--version", [str(AIDP), "--version"]),
        ("aidp_validate", [str(AIDP), "validate", str(plan), "--repo", str(probe)]),
    ):
        runs = [measure(argv, cwd=probe, env=AIDP_ENV) for _ in range(max(reps, 3))]
        starts[label] = {"wall_s": round(_median([r.wall_s for r in runs]), 4),
                         "peak_rss_mb": round(max(r.maxrss_mb for r in runs), 1),
                         "ok": all(r.returncode == 0 for r in runs)}
    shutil.rmtree(probe)
    row["startup"] = starts
    return [row]


SCENARIOS: dict[str, Callable[[bool, int, Path], list[dict[str, Any]]]] = {
    "fanout": scenario_fanout,
    "chain": scenario_chain,
    "layered": scenario_layered,
    "large": scenario_large,
    "pool": scenario_pool,
    "resolve": scenario_resolve,
    "empty": scenario_empty,
}


# -- report ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    aidp_version = subprocess.run([str(AIDP), "--version"], capture_output=True, text=True,
                                  check=False).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True, check=False).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "git": git(["--version"], ROOT).strip(),
        "platform": platform.platform(),
        "aidp": aidp_version,
        "aidp_commit": commit,
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
        "aidp_pythonpath": AIDP_ENV.get("PYTHONPATH"),
    }


def _verdict(value: float, limit: float) -> str:
    return "ok" if value <= limit else "MISS"


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'scenario':<14}{'steps':>6}{'P':>3}{'aidp wall':>11}{'floor wall':>11}"
            f"{'aidp orch':>11}{'floor orch':>11}{'ms/step wall':>13}{'ms/step orch':>13}"
            f"{'RSS MB':>8}  target")
    lines = [head, "-" * len(head)]
    for row in rows:
        if row["name"] == "pool":
            r = row["result"]
            lines.append(f"{'pool':<14}{'':>6}{'':>3}{'fresh ' + str(r['fresh_median_s']):>22}"
                         f"{'pooled ' + str(r['pooled_median_s']):>22}{'':>26}{'':>8}  "
                         f"ratio {row['ratio_pooled_over_fresh']:.3f} <= 0.2 "
                         f"{_verdict(row['ratio_pooled_over_fresh'], 0.2)}")
            continue
        if row["name"] == "resolve":
            r = row["result"]
            lines.append(f"{'resolve':<14}{r['uris']:>6}{'':>3}{r['total_s']:>11.3f}"
                         f"{r['floor_total_s']:>11.3f}{'':>24}{'':>26}{'':>8}  "
                         f"{r['us_per_uri']} us/URI, x{r['ratio_vs_floor']} floor")
            continue
        a, f = row["aidp"], row["floor"]
        target = ""
        if "makespan_ratio_vs_floor" in row:
            ratio = row["makespan_ratio_vs_floor"]
            target = (f"makespan x{ratio:.3f} (wall x{row['makespan_ratio_vs_floor_wall']:.3f})"
                      f" <= 1.05 {_verdict(ratio, 1.05)}; sleep bound "
                      f"{row['sleep_lower_bound_s']}s")
        elif "overhead_ms_per_step_wall" in row.get("target", {}):
            value = row["overhead_ms_per_step_wall"]
            target = (f"<= 2 ms/step {_verdict(value, 2.0)} (orch "
                      f"{_verdict(row['overhead_ms_per_step_orchestration'], 2.0)})")
        elif "aidp_wall_s" in row.get("target", {}):
            target = f"wall <= 0.3 s {_verdict(a['wall_s'], 0.3)}"
        else:
            target = f"wall x{row['ratio_wall']:.2f}"
        if row.get("aidp_failed_runs"):
            target += f"; aidp runs FAILED {len(row['aidp_failed_runs'])}x (see JSON)"
        lines.append(
            f"{row['name']:<14}{row['steps']:>6}{row['parallel']:>3}{a['wall_s']:>11.3f}"
            f"{f['wall_s']:>11.3f}{a['orchestration_s']:>11.3f}{f['orchestration_s']:>11.3f}"
            f"{row['overhead_ms_per_step_wall']:>13.2f}"
            f"{row['overhead_ms_per_step_orchestration']:>13.2f}{a['peak_rss_mb']:>8.0f}  {target}"
        )
        if "startup" in row:
            parts = ", ".join(f"{k} {v['wall_s']:.3f}s" for k, v in row["startup"].items())
            lines.append(f"{'':<14}start-up: {parts}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 repetition, smaller sizes")
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), default=None)
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3)")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--pythonpath", type=Path, default=None,
                        help="run aidp from this source tree (e.g. an old commit's src/)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other scenarios already in --out (re-run a few)")
    args = parser.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    if args.pythonpath is not None:
        AIDP_ENV["PYTHONPATH"] = str(args.pythonpath.resolve())
    names = args.only or list(SCENARIOS)
    # Byte-compile aidp's sources first: with PYTHONDONTWRITEBYTECODE set (or after an edit), a
    # stale .pyc would make every aidp process compile the changed modules again at start-up.
    subprocess.run([str(PYTHON), "-m", "compileall", "-q",
                    str(args.pythonpath.resolve() if args.pythonpath else ROOT / "src")],
                   check=False, stdout=subprocess.DEVNULL)
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    info = machine()
    if args.merge and args.out.exists():
        previous = json.loads(args.out.read_text(encoding="utf-8"))
        rows = [r for r in previous.get("scenarios", [])
                if r["name"].split("-")[0] not in names]
        info["merged_from"] = previous.get("created")
    work = Path(tempfile.mkdtemp(prefix="aidp-bench-"))
    try:
        for name in names:
            t0 = time.perf_counter()
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            load_before = os.getloadavg()
            try:
                new = SCENARIOS[name](args.quick, reps, work)
            except (RuntimeError, OSError, ValueError, KeyError,
                    subprocess.CalledProcessError) as exc:  # keep the other figures
                print(f"[bench] {name} FAILED: {exc}", file=sys.stderr, flush=True)
                failed.append({"name": name, "error": str(exc)[-4000:]})
                continue
            for row in new:  # a shared machine: say how busy it was
                row["loadavg_before_after"] = [round(load_before[0], 2),
                                               round(os.getloadavg()[0], 2)]
            rows.extend(new)
            print(f"[bench] {name} done in {time.perf_counter() - t0:.1f}s", file=sys.stderr,
                  flush=True)
            _write(args, reps, info, started, rows, failed)  # partial results survive a crash
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = _write(args, reps, info, started, rows, failed)
    print(table(rows))
    for fail in failed:
        print(f"{fail['name']}: FAILED (see the JSON)")
    print(f"\nresults: {args.out} ({result['total_s']} s)")
    return 1 if failed else 0


def _write(args: argparse.Namespace, reps: int, info: dict[str, Any], started: float,
           rows: list[dict[str, Any]], failed: list[dict[str, Any]]) -> dict[str, Any]:
    result = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "quick": args.quick, "reps": reps, "machine": info,
              "total_s": round(time.perf_counter() - started, 1), "scenarios": rows,
              "failed": failed}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    sys.exit(main())
