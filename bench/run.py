"""aidp against a plain-Python floor, scenario by scenario: ``.venv/bin/python bench/run.py``.

Options: ``--quick`` (one repetition, smaller sizes: a smoke run), ``--only NAME`` (repeatable:
fanout, chain, chainlong, layered, fanin, large, empty, pool, resolve), ``--reps N``, ``--out
PATH``. Writes JSON to ``bench/results/latest.json`` and prints a table. See ``bench/README.md``
for what each scenario measures and how the floors (``bench/floor.py``) are built; ``pool`` and
``resolve`` run one micro-benchmark script each (``bench_worktree_pool.py``,
``bench_specs_resolve.py``).

Every measurement runs ``aidp run PLAN --parallel N --json`` as a subprocess in a fresh copy of a
generated repository, ``bench/floor.py`` (the git floor: the same git work) and ``bench/floor.py
--no-git`` (no isolation at all: the price of aidp's isolation) on other fresh copies,
alternately; each is repeated ``--reps`` times (default 3) and the median kept. The fan-in and
chain scenarios run aidp once more with a counting ``git`` first on ``PATH``
(``bench/gitcount.py``) and report its git processes per workstream and per step. Wall time is
measured around the subprocess; the orchestration time is aidp's own ``duration_s`` (from its
JSON summary: lease to summary, without Python start-up, imports, validation or
``create_run``) and the floors' own timers. Peak RSS is ``ru_maxrss`` from ``wait4`` of the
process (its largest waited-for descendant included).
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

from gitcount import count_git

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
CACHE = RESULTS / "cache"
PYTHON = Path(sys.executable)
AIDP = PYTHON.parent / "aidp"
FLOOR = BENCH / "floor.py"
# The programs compared, in the order they run and their columns appear.
KINDS = ("aidp", "floor", "floor_nogit")
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


def fanin_plan(layers: int, width: int, sleep_s: float, fan_in: int = 3) -> dict[str, Any]:
    """Layers of one-step workstreams; workstream i of layer k depends on i..i+fan_in-1 (mod
    width) of layer k-1."""
    return {"version": 1, "workstreams": [
        ws(f"l{k:02d}w{i:02d}", [f"sleep {sleep_s}"],
           depends_on=[f"l{k - 1:02d}w{(i + j) % width:02d}" for j in range(fan_in)]
           if k else None)
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


def _argv(kind: str, plan_path: Path, repo: Path, parallel: int) -> list[str]:
    if kind == "aidp":
        return [str(AIDP), "run", str(plan_path), "--repo", str(repo), "--parallel",
                str(parallel), "--json"]
    argv = [str(PYTHON), str(FLOOR), str(plan_path), "--repo", str(repo), "--parallel",
            str(parallel)]
    return [*argv, "--no-git"] if kind == "floor_nogit" else argv


def compare(name: str, plan: dict[str, Any], parallel: int, make_repo: Callable[[Path], None],
            reps: int, work: Path, *, count_git_processes: bool = False) -> dict[str, Any]:
    """Run aidp and both floors ``reps`` times each, alternately, on fresh repositories.

    With ``count_git_processes``, aidp runs once more (not timed) with a counting ``git`` first
    on ``PATH``.
    """
    plan_path = work / f"{name}.json"
    plan_path.write_text(json.dumps(plan), encoding="utf-8")
    steps = sum(len(w["steps"]) for w in plan["workstreams"])
    samples: dict[str, list[Any]] = {kind: [] for kind in KINDS}
    failures: list[dict[str, Any]] = []
    for rep in range(reps):
        for kind in KINDS:
            # A failed aidp run (a workstream failed) is recorded and measured again, up to
            # twice: its timing would not be comparable, and the failure is itself a finding.
            for attempt in range(3):
                repo = work / f"{name}-{kind}-{rep}-{attempt}"
                make_repo(repo)
                proc = measure(_argv(kind, plan_path, repo, parallel), cwd=repo,
                               env=AIDP_ENV if kind == "aidp" else None)
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
    a, f, n = result["aidp"], result["floor"], result["floor_nogit"]
    per = max(steps, 1)  # an empty plan: the whole difference
    per_ws = max(len(plan["workstreams"]), 1)
    # Against the git floor (the old keys, unsuffixed) and against the no-git floor.
    for suffix, floor in (("", f), ("_vs_nogit", n)):
        for key, field in (("wall", "wall_s"), ("orchestration", "orchestration_s")):
            diff = a[field] - floor[field]
            result[f"overhead_ms_per_step_{key}{suffix}"] = round(diff / per * 1000, 3)
            result[f"overhead_ms_per_workstream_{key}{suffix}"] = round(diff / per_ws * 1000, 3)
            result[f"ratio_{key}{suffix}"] = round(a[field] / floor[field], 3)
    # What the git work costs the floor itself: the cheapest price of isolation.
    result["floor_git_over_nogit_ms_per_step_wall"] = round(
        (f["wall_s"] - n["wall_s"]) / per * 1000, 3)
    if count_git_processes:
        repo = work / f"{name}-gitcount"
        make_repo(repo)
        counted = count_git(_argv("aidp", plan_path, repo, parallel), repo, AIDP_ENV)
        shutil.rmtree(repo, ignore_errors=True)
        summary = _summary(Proc(0.0, counted["returncode"], counted["stdout"],
                                counted["stderr"], 0.0))
        result["git_processes"] = counted["git_processes"]
        result["git_processes_per_workstream"] = round(counted["git_processes"] / per_ws, 3)
        result["git_processes_per_step"] = round(counted["git_processes"] / per, 3)
        result["git_by_subcommand"] = counted["by_subcommand"]
        result["git_count_run_status"] = summary.get("status") if summary else (
            f"exit {counted['returncode']}")
    return result


# -- scenarios ---------------------------------------------------------------------------------


def scenario_fanout(quick: bool, reps: int, work: Path) -> list[dict[str, Any]]:
    count = 50 if quick else 500
    row = compare("fanout", fanout_plan(count), 2, small_repo, reps, work)
    row["what"] = f"{count} one-step workstreams (`true`), --parallel 2"
    row["target"] = {"overhead_ms_per_step_wall": 2.0,
                     "overhead_ms_per_workstream_wall_vs_nogit": 4.0}
    return [row]


def scenario_chain(quick: bool, reps: int, work: Path) -> list[dict[str, Any]]:
    length = 50 if quick else 200
    rows = []
    # `true` makes an empty checkpoint commit per step; the append changes one file per step.
    for label, command in (("chain", "true"), ("chain-append", "echo x >> chain/log.txt")):
        plan = chain_plan(length, command if label == "chain" else "mkdir -p chain && " + command)
        row = compare(label, plan, 2, small_repo, reps, work, count_git_processes=True)
        row["what"] = f"{length}-step chain in one workstream, step `{command}`"
        row["target"] = {"overhead_ms_per_step_wall": 2.0}
        if label == "chain":
            row["target"]["overhead_ms_per_step_wall_vs_nogit"] = 2.5
        rows.append(row)
        if quick:
            break
    return rows


def scenario_chainlong(quick: bool, reps: int, work: Path) -> list[dict[str, Any]]:
    """A long chain of `true`: does a step cost more as the run grows? (See ``_chain_scaling``.)"""
    length = 500 if quick else 2_000
    row = compare("chainlong", chain_plan(length, "true"), 2, small_repo, reps, work,
                  count_git_processes=True)
    row["what"] = f"{length}-step chain in one workstream, step `true`"
    row["target"] = {"overhead_ms_per_step_wall_vs_nogit": 2.5,
                     "per_step_ratio_vs_chain": 1.1, "git_processes_per_extra_step": 0.0}
    _per_step_costs(row)
    return [row]


def _per_step_costs(row: dict[str, Any]) -> None:
    steps = max(row["steps"], 1)
    row["aidp_ms_per_step_wall"] = round(row["aidp"]["wall_s"] / steps * 1000, 3)
    row["aidp_ms_per_step_orchestration"] = round(
        row["aidp"]["orchestration_s"] / steps * 1000, 3)


def _chain_scaling(rows: list[dict[str, Any]]) -> None:
    """``chainlong``'s per-step cost over ``chain``'s, when both ran in this invocation.

    The ratio of orchestration times per step is the one judged (the wall's includes start-up,
    spread over ten times more steps in the long chain, which flatters it).
    """
    by_name = {row["name"]: row for row in rows}
    short, long = by_name.get("chain"), by_name.get("chainlong")
    if short is None or long is None or "floor_nogit" not in short:  # (an older --merge file)
        return
    _per_step_costs(short)
    for key in ("wall", "orchestration"):
        long[f"per_step_ratio_vs_chain_{key}"] = round(
            long[f"aidp_ms_per_step_{key}"] / short[f"aidp_ms_per_step_{key}"], 3)
    long["per_step_ratio_vs_chain"] = long["per_step_ratio_vs_chain_orchestration"]
    # The same ratio for the no-git floor: a control. On a shared machine the load moves between
    # the two runs; the floor's ratio says by how much, and aidp's over it is what is left.
    nogit = (long["floor_nogit"]["orchestration_s"] / long["steps"]) / (
        short["floor_nogit"]["orchestration_s"] / short["steps"])
    long["floor_nogit_per_step_ratio_vs_chain"] = round(nogit, 3)
    long["per_step_ratio_vs_chain_over_floor_nogit"] = round(
        long["per_step_ratio_vs_chain"] / nogit, 3)
    # The marginal cost: what each step past the short chain's added (fixed costs cancel out).
    long["aidp_ms_per_extra_step_orchestration"] = round(
        (long["aidp"]["orchestration_s"] - short["aidp"]["orchestration_s"])
        / max(long["steps"] - short["steps"], 1) * 1000, 3)
    long["chain_steps"] = short["steps"]
    if "git_processes" in short and "git_processes" in long:
        long["git_processes_per_extra_step"] = round(
            (long["git_processes"] - short["git_processes"])
            / max(long["steps"] - short["steps"], 1), 3)


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


def scenario_fanin(quick: bool, reps: int, work: Path) -> list[dict[str, Any]]:
    """Layers with 3-way fan-in: each workstream depends on 3 of the previous layer."""
    layers, width, sleep_s = (4, 6, 0.05) if quick else (10, 30, 0.05)
    rows = []
    for parallel, limit in ((2, 1.15), (8, 1.5)):
        row = compare(f"fanin-p{parallel}", fanin_plan(layers, width, sleep_s), parallel,
                      small_repo, reps, work, count_git_processes=True)
        ideal = max(layers * sleep_s, layers * width * sleep_s / parallel)
        row["what"] = (f"{layers} layers x {width} workstreams, one `sleep {sleep_s}` step each, "
                       "each depending on 3 of the previous layer")
        row["ideal_s"] = round(ideal, 3)
        for kind in KINDS:
            prefix = "" if kind == "aidp" else f"{kind}_"
            row[f"{prefix}makespan_ratio_vs_ideal"] = round(
                row[kind]["orchestration_s"] / ideal, 3)
            row[f"{prefix}wall_ratio_vs_ideal"] = round(row[kind]["wall_s"] / ideal, 3)
        row["target"] = {"makespan_ratio_vs_ideal": limit, "git_processes_per_workstream": 2.0}
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
    "chainlong": scenario_chainlong,
    "layered": scenario_layered,
    "fanin": scenario_fanin,
    "large": scenario_large,
    "pool": scenario_pool,
    "resolve": scenario_resolve,
    "empty": scenario_empty,
}


# -- report ------------------------------------------------------------------------------------


def aidp_source_root() -> Path:
    """The directory holding the ``aidp`` package that the measured ``aidp`` imports."""
    proc = subprocess.run([str(PYTHON), "-c", "import aidp; print(aidp.__file__)"],
                          capture_output=True, text=True, check=True,
                          env={**os.environ, **AIDP_ENV})
    return Path(proc.stdout.strip()).parent.parent


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
        "aidp_source": str(aidp_source_root()),
    }


def _verdict(value: float, limit: float) -> str:
    return "ok" if value <= limit else "MISS"


def _targets(row: dict[str, Any]) -> str:
    """The row's targets with their verdicts, and what else says most about it."""
    target = row.get("target", {})
    parts = []
    if "makespan_ratio_vs_ideal" in target:
        limit = target["makespan_ratio_vs_ideal"]
        ratio = row["makespan_ratio_vs_ideal"]
        parts.append(f"makespan x{ratio:.3f} ideal {row['ideal_s']}s <= {limit} "
                     f"{_verdict(ratio, limit)} (wall x{row['wall_ratio_vs_ideal']:.3f}; "
                     f"floors x{row['floor_makespan_ratio_vs_ideal']:.3f} "
                     f"x{row['floor_nogit_makespan_ratio_vs_ideal']:.3f})")
    if "makespan_ratio_vs_floor" in row:
        ratio = row["makespan_ratio_vs_floor"]
        parts.append(f"makespan x{ratio:.3f} git floor (wall "
                     f"x{row['makespan_ratio_vs_floor_wall']:.3f}) <= 1.05 "
                     f"{_verdict(ratio, 1.05)}; sleep bound {row['sleep_lower_bound_s']}s")
    if "overhead_ms_per_workstream_wall_vs_nogit" in target:
        value = row["overhead_ms_per_workstream_wall_vs_nogit"]
        limit = target["overhead_ms_per_workstream_wall_vs_nogit"]
        parts.append(f"{value:.2f} ms/ws vs no-git <= {limit:g} {_verdict(value, limit)}")
    if "overhead_ms_per_step_wall_vs_nogit" in target:
        value = row["overhead_ms_per_step_wall_vs_nogit"]
        limit = target["overhead_ms_per_step_wall_vs_nogit"]
        parts.append(f"vs no-git <= {limit:g} ms/step {_verdict(value, limit)}")
    if "per_step_ratio_vs_chain" in target:
        if "per_step_ratio_vs_chain" in row:
            ratio = row["per_step_ratio_vs_chain"]
            parts.append(f"per step x{ratio:.3f} the {row['chain_steps']}-step chain's "
                         f"(wall x{row['per_step_ratio_vs_chain_wall']:.3f}) <= 1.1 "
                         f"{_verdict(ratio, 1.1)}; the no-git floor's "
                         f"x{row['floor_nogit_per_step_ratio_vs_chain']:.3f}")
        else:
            parts.append(f"{row['aidp_ms_per_step_orchestration']:.2f} ms/step orch "
                         "(no chain row to compare)")
    if "overhead_ms_per_step_wall" in target:
        value = row["overhead_ms_per_step_wall"]
        parts.append(f"vs git <= 2 ms/step {_verdict(value, 2.0)} (orch "
                     f"{_verdict(row['overhead_ms_per_step_orchestration'], 2.0)})")
    if "aidp_wall_s" in target:
        parts.append(f"wall <= 0.3 s {_verdict(row['aidp']['wall_s'], 0.3)}")
    if not parts:
        parts.append(f"wall x{row['ratio_wall']:.2f} git floor, "
                     f"x{row.get('ratio_wall_vs_nogit', float('nan')):.2f} no-git")
    if row.get("aidp_failed_runs"):
        parts.append(f"aidp runs FAILED {len(row['aidp_failed_runs'])}x (see JSON)")
    return "; ".join(parts)


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as text: each timed scenario with aidp, the git floor and the no-git floor."""
    group = f"{'':<12}{'':>6}{'':>3}"
    head1 = (f"{group}{'--- wall s (aidp/git/no-git) ---':>30}{'--- orch s ---':>27}"
             f"{'ms/step wall':>16}{'ms/step orch':>16}{'RSS MB':>14}")
    head = (f"{'scenario':<12}{'steps':>6}{'P':>3}{'aidp':>10}{'git':>10}{'no-git':>10}"
            f"{'aidp':>9}{'git':>9}{'no-git':>9}{'vs git':>8}{'no-git':>8}{'vs git':>8}"
            f"{'no-git':>8}{'aidp':>5}{'git':>4}{'ng':>4}  target")
    lines = [head1, head, "-" * len(head)]
    for row in rows:
        if row["name"] == "pool":
            r = row["result"]
            lines.append(f"{'pool':<12}{'':>6}{'':>3}{'fresh ' + str(r['fresh_median_s']):>20}"
                         f"{'pooled ' + str(r['pooled_median_s']):>20}  "
                         f"ratio {row['ratio_pooled_over_fresh']:.3f} <= 0.2 "
                         f"{_verdict(row['ratio_pooled_over_fresh'], 0.2)}")
            continue
        if row["name"] == "resolve":
            r = row["result"]
            lines.append(f"{'resolve':<12}{r['uris']:>6}{'':>3}{r['total_s']:>10.3f}"
                         f"{r['floor_total_s']:>10.3f}  "
                         f"{r['us_per_uri']} us/URI, x{r['ratio_vs_floor']} floor")
            continue
        a, f = row["aidp"], row["floor"]
        n = row.get("floor_nogit", {"wall_s": float("nan"), "orchestration_s": float("nan"),
                                    "peak_rss_mb": float("nan")})
        lines.append(
            f"{row['name']:<12}{row['steps']:>6}{row['parallel']:>3}{a['wall_s']:>10.3f}"
            f"{f['wall_s']:>10.3f}{n['wall_s']:>10.3f}{a['orchestration_s']:>9.3f}"
            f"{f['orchestration_s']:>9.3f}{n['orchestration_s']:>9.3f}"
            f"{row['overhead_ms_per_step_wall']:>8.2f}"
            f"{row.get('overhead_ms_per_step_wall_vs_nogit', float('nan')):>8.2f}"
            f"{row['overhead_ms_per_step_orchestration']:>8.2f}"
            f"{row.get('overhead_ms_per_step_orchestration_vs_nogit', float('nan')):>8.2f}"
            f"{a['peak_rss_mb']:>5.0f}{f['peak_rss_mb']:>4.0f}{n['peak_rss_mb']:>4.0f}  "
            f"{_targets(row)}"
        )
        if "git_processes" in row:
            subs = ", ".join(f"{k} {v}" for k, v in row["git_by_subcommand"].items())
            per_ws = row["git_processes_per_workstream"]
            limits = row.get("target", {})
            if "git_processes_per_workstream" in limits:
                per_ws_text = (f"{per_ws}/ws <= {limits['git_processes_per_workstream']:g} "
                               f"{_verdict(per_ws, limits['git_processes_per_workstream'])}")
            else:
                per_ws_text = f"{per_ws}/ws"
            extra = ""
            if "git_processes_per_extra_step" in row:
                extra = (f", {row['git_processes_per_extra_step']} per extra step <= 0 "
                         f"{_verdict(row['git_processes_per_extra_step'], 0.0)}")
            lines.append(f"{'':<12}git processes (aidp): {row['git_processes']}, {per_ws_text}, "
                         f"{row['git_processes_per_step']}/step{extra} ({subs})")
        if "startup" in row:
            parts = ", ".join(f"{k} {v['wall_s']:.3f}s" for k, v in row["startup"].items())
            lines.append(f"{'':<12}start-up: {parts}")
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
    # The tree is the one the measured aidp imports (the venv's editable install may point at
    # another checkout than this one).
    subprocess.run([str(PYTHON), "-m", "compileall", "-q", str(aidp_source_root())],
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
            _chain_scaling(rows)
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
