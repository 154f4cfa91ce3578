"""The Dask executor against a real cluster started from the command line: a ``dask scheduler``
and ``aidp worker``s in their own clones of a shared bare repository (and, where this machine
allows it, each in its own network namespace: several hosts on one machine).

Proves: a plan's attempts run on the workers and its branches end with exactly the trees a local
run gives; profile resources steer attempts to the workers that offer them; ``kill -9`` of a
worker mid-run loses and duplicates nothing; a checkpoint a worker pushed before dying is
adopted, not redone.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.distributed.cluster import Cluster, Network, can_make_namespaces, cluster, network
from tests.helpers import Cli, commit_files, git

pytest.importorskip("distributed")


def _plan(workstreams: int, *, sleep: float = 0.0, width: int = 0, fan_in: int = 3,
          profile: str | None = None, markers: Path | None = None) -> str:
    """``workstreams`` one-step workstreams writing their own file; with ``width``, in layers
    of that many, each depending on ``fan_in`` of the layer before and copying the first line
    of their files into its own (so merges of dependencies are part of the result). With
    ``markers``, each attempt first writes its working directory to ``markers/WS``: where it
    runs."""
    items = []
    for i in range(workstreams):
        ws = f"w{i:02d}"
        run = f"sleep {sleep}; mkdir -p {ws} && echo {ws} > {ws}/out.txt"
        if markers is not None:
            run = f"echo $PWD >> {markers}/{ws}; {run}"
        item: dict[str, object] = {"id": ws, "scope": [f"{ws}/**"]}
        layer, position = divmod(i, width) if width else (0, i)
        if layer:
            deps = sorted({f"w{(layer - 1) * width + (position + d) % width:02d}"
                           for d in range(fan_in)})
            item["depends_on"] = deps
            run += "".join(f" && head -n1 {d}/out.txt >> {ws}/out.txt" for d in deps)
        step: dict[str, object] = {"id": "s", "run": run}
        if profile:
            step["tool"] = profile
        item["steps"] = [step]
        items.append(item)
    return json.dumps({"version": 1, "workstreams": items}, indent=1)


def _publish(made: Cluster, files: dict[str, str]) -> None:
    commit_files(made.clone, files, "plan")
    git(made.clone, "push", "-q", "origin", "HEAD:main")


def _trees(repo: Path, run_id: str) -> dict[str, str]:
    """Each workstream branch's tree of run ``run_id``."""
    out = git(repo, "for-each-ref", "--format=%(refname:lstrip=4) %(objectname)",
              f"refs/heads/aidp/{run_id}/")
    return {ws: git(repo, "rev-parse", f"{sha}^{{tree}}").strip()
            for ws, sha in (line.split() for line in out.splitlines())}


def _run_id(cli: Cli) -> str:
    return str(json.loads(cli("runs", "--json", check=True).stdout)[0]["run_id"])


def _steps_once(repo: Path, run_id: str) -> None:
    """Every workstream branch holds exactly one checkpoint of its one step."""
    out = git(repo, "for-each-ref", "--format=%(refname)", f"refs/heads/aidp/{run_id}/")
    for ref in out.split():
        ws = ref.rsplit("/", 1)[1]
        lines = git(repo, "log", "--format=%(trailers:key=Aidp-Workstream,valueonly,separator=)"
                    "%x09%(trailers:key=Aidp-Step,valueonly,separator=)", ref, "^main", "--")
        own = [line.split("\t")[1] for line in lines.splitlines()
               if line.split("\t")[0] == ws and line.split("\t")[1]]
        assert own == ["s"], (ref, lines)


def _local_trees(tmp_path: Path, files: dict[str, str], plan: str) -> dict[str, str]:
    """The trees the same plan leaves when run by the local executor."""
    from tests.helpers import init_repo

    repo = init_repo(tmp_path / "local", files)
    cli = Cli(repo)
    cli("run", plan, "-p", "4", check=True, timeout=300)
    return _trees(repo, _run_id(cli))


def _workers_used(made: Cluster, run_id: str) -> set[str]:
    return {name for name, clone in made.clones.items()
            if (clone / ".aidp" / "runs" / run_id / "logs").exists()}


def test_a_plan_runs_on_the_workers_with_the_trees_of_a_local_run(tmp_path: Path) -> None:
    """A fan-in plan on two workers: every attempt ran on a worker (both were used), each step
    has one checkpoint, and every branch's tree equals the local executor's."""
    files = {"README.md": "x\n", "plan.yaml": _plan(8, width=4, fan_in=2)}
    with cluster(tmp_path / "c", files) as made:
        made.add_worker("w1")
        made.add_worker("w2")
        made.wait_for_workers(2)
        cli = Cli(made.clone)
        done = cli("run", "plan.yaml", "-p", "4", "--executor", "dask", "--scheduler",
                   made.address, timeout=300)
        assert done.returncode == 0, done.stderr + made.log("w1") + made.log("w2")
        run_id = _run_id(cli)
        assert _workers_used(made, run_id) == {"w1", "w2"}
        _steps_once(made.clone, run_id)
        remote_trees = _trees(made.remote, run_id)
        trees = _trees(made.clone, run_id)
    assert trees == _local_trees(tmp_path, files, "plan.yaml")
    assert remote_trees == trees  # the remote holds every checkpoint the run recorded


def test_profile_resources_steer_attempts_to_the_workers_that_offer_them(
        tmp_path: Path) -> None:
    """Steps of a profile that takes {codex = 1} run only on the worker started with
    --resources codex=1."""
    settings = ('[tools.codex-like]\nadapter = "shell"\nresources = {codex = 1}\n')
    files = {"README.md": "x\n", "aidp.toml": settings,
             "plan.yaml": _plan(4, profile="codex-like")}
    with cluster(tmp_path / "c", files) as made:
        made.add_worker("plain")
        made.add_worker("gpu", "--resources", "codex=1")
        made.wait_for_workers(2)
        cli = Cli(made.clone)
        done = cli("run", "plan.yaml", "-p", "4", "--executor", "dask", "--scheduler",
                   made.address, timeout=300)
        assert done.returncode == 0, done.stderr
        assert _workers_used(made, _run_id(cli)) == {"gpu"}


def test_no_scheduler_is_one_clear_error(tmp_path: Path) -> None:
    """--executor dask with nobody at the address: one line naming it, exit 2, no traceback,
    and nothing written (no run, not even a database)."""
    from tests.helpers import init_repo

    repo = init_repo(tmp_path / "r", {"plan.yaml": _plan(1)})
    done = Cli(repo)("run", "plan.yaml", "--executor", "dask", "--scheduler",
                     "tcp://127.0.0.1:9", "--config", str(_quick_connect(tmp_path)),
                     timeout=120)
    assert done.returncode == 2, done
    assert "no Dask scheduler answers at tcp://127.0.0.1:9" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (repo / ".aidp" / "aidp.db").exists()


def _quick_connect(tmp_path: Path) -> Path:
    path = tmp_path / "aidp.toml"
    path.write_text("[executor]\nconnect_timeout = 2\n")
    return path


def _kill_one_worker_mid_run(made: Cluster, cli: Cli, parallel: int, markers: Path
                             ) -> tuple[str, list[str]]:
    """Start the plan, ``kill -9`` a worker while one of its attempts runs, let the run finish.
    Returns the run and the workstreams whose attempt the killed worker was running."""
    result: dict[str, Any] = {}

    def drive() -> None:
        result["done"] = cli("run", "plan.yaml", "-p", str(parallel), "--executor", "dask",
                             "--scheduler", made.address, timeout=600)

    markers.mkdir(exist_ok=True)
    runner = threading.Thread(target=drive)
    runner.start()
    victim = sorted(made.workers)[0]
    inside = str(made.clones[victim]) + "/"
    deadline = time.monotonic() + 120
    while not (running := [m.name for m in markers.iterdir() if inside in m.read_text()]):
        assert time.monotonic() < deadline and runner.is_alive(), made.log(victim)
        time.sleep(0.02)
    made.kill(victim)
    runner.join(timeout=600)
    done = result["done"]
    assert done.returncode == 0, (done.stderr, {n: made.log(n) for n in made.workers})
    run_id = _run_id(cli)
    for ws in running:  # its attempt was run again on a live worker, which recorded it
        log = (made.clone / ".aidp" / "runs" / run_id / "logs" / ws / "s.1.log").read_text()
        assert "[aidp] ran on worker" in log and f"worker {victim}" not in log, log
    return run_id, running


def _kill_trial(tmp_path: Path, workstreams: int, *, sleep: float, width: int,
                net: Network | None = None) -> dict[str, str]:
    """Three workers (on ``net``'s hosts, else the loopback) run the plan while one is killed
    mid-attempt; every step has one checkpoint. Returns the branches' trees."""
    markers = tmp_path / "markers"
    files = {"README.md": "x\n",
             "plan.yaml": _plan(workstreams, sleep=sleep, width=width, markers=markers)}
    with cluster(tmp_path / "c", files, net=net) as made:
        for name in ("h1", "h2", "h3"):
            made.add_worker(name)
        made.wait_for_workers(3)
        cli = Cli(made.clone)
        run_id, interrupted = _kill_one_worker_mid_run(made, cli, 6, markers)
        assert interrupted
        _steps_once(made.clone, run_id)
        trees = _trees(made.clone, run_id)
        assert len(trees) == workstreams
    assert trees == _local_trees(tmp_path, files, "plan.yaml")
    return trees


def test_kill_9_of_a_worker_mid_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """Three workers on the loopback; one is killed with kill -9 while it runs attempts: the
    run completes, every step has exactly one checkpoint, the trees equal a local run's."""
    _kill_trial(tmp_path, 12, sleep=0.5, width=4)


_NO_NAMESPACES = can_make_namespaces()


@pytest.mark.skipif(_NO_NAMESPACES is not None, reason=str(_NO_NAMESPACES))
def test_three_hosts_run_sixty_workstreams_and_survive_a_kill_9(tmp_path: Path) -> None:
    """The must-show: a scheduler and 3 workers, each worker in its own network namespace with
    its own clone, run a 60-workstream plan (6 layers of 10, each workstream merging 3 of
    the layer before); kill -9 of one worker mid-run loses and
    duplicates nothing; the branches' trees equal a local run's."""
    with network() as net:
        _kill_trial(tmp_path, 60, sleep=0.2, width=10, net=net)


def test_a_workers_output_reaches_the_orchestrators_log_while_the_step_runs(
        tmp_path: Path) -> None:
    """A step on a worker prints, then waits: its line is in the orchestrator's log of the
    attempt (what `aidp logs --follow` reads) before the step ends."""
    release = tmp_path / "release"
    plan = json.dumps({"version": 1, "workstreams": [{"id": "a", "scope": ["a/**"], "steps": [
        {"id": "s", "run": f"echo hello-live-output; until [ -e {release} ]; do sleep 0.1; "
                           "done; mkdir -p a && echo x > a/f"}]}]})
    with cluster(tmp_path / "c", {"README.md": "x\n", "plan.yaml": plan}) as made:
        made.add_worker("w1")
        made.wait_for_workers(1)
        cli = Cli(made.clone)
        result: dict[str, Any] = {}
        runner = threading.Thread(target=lambda: result.update(done=cli(
            "run", "plan.yaml", "--executor", "dask", "--scheduler", made.address,
            timeout=300)))
        runner.start()
        try:
            deadline = time.monotonic() + 60
            while not [p for p in (made.clone / ".aidp" / "runs").glob("*/logs/a/s.1.log")
                       if b"hello-live-output" in p.read_bytes()]:
                assert time.monotonic() < deadline and runner.is_alive(), result
                time.sleep(0.05)
        finally:
            release.touch()
            runner.join(timeout=300)
        assert result["done"].returncode == 0, result["done"].stderr
        log = next((made.clone / ".aidp" / "runs").glob("*/logs/a/s.1.log")).read_text()
        assert log.startswith("[aidp] ran on worker w1\n") and "hello-live-output" in log


def test_runs_started_through_the_service_run_on_the_cluster(tmp_path: Path) -> None:
    """`aidp serve --executor dask --scheduler ADDR`: a run started with POST /runs completes
    with its attempts on the cluster's worker."""
    from tests.api.conftest import start_served
    from tests.api.test_service_runs import _start, _wait

    files = {"README.md": "x\n", "plan.yaml": _plan(3)}
    with cluster(tmp_path / "c", files) as made:
        made.add_worker("w1")
        made.wait_for_workers(1)
        served = start_served(Cli(made.clone), "--executor", "dask", "--scheduler",
                              made.address)
        try:
            run_id = _start(served, {"files": ["plan.yaml"]})
            view = _wait(served, run_id, lambda v: v["status"] in ("completed", "failed")
                         and not v["live"])
        finally:
            served.stop()
        assert view["status"] == "completed", view
        logs = sorted((made.clone / ".aidp" / "runs" / run_id / "logs").glob("*/s.1.log"))
        assert len(logs) == 3
        assert all(p.read_text().startswith("[aidp] ran on worker w1\n") for p in logs)


def test_a_model_step_on_a_worker_with_the_database_uses_its_gateway_fully(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An `openai` step on a worker started with --database-url: the model's edit lands, the
    usage reaches the run's attempt, the exchange is recorded where `aidp diagnose` and replay
    look, the profile's rate limit is a bucket in the shared database, and the key is in no
    file of either clone."""
    from aidp.state.store import Store
    from aidp.testing import FakeLLM
    from tests.engine.test_honest_outcomes import plan
    from tests.engine.test_providers import profile

    key = "sk-canary-dask-3f9a1c7e5b2d4f6a8c0e1a3c"
    monkeypatch.setenv("AIDP_TEST_DASK_KEY", key)  # the workers' environment has it
    edit = "notes/a.md\n```\nhello from the model\n```\n"
    script = [{"reply": edit, "usage": {"input_tokens": 1200, "output_tokens": 300}}]
    db_url = f"sqlite+pysqlite:///{tmp_path / 'runs.db'}"
    with FakeLLM(script, api_key=key) as llm:
        toml = profile("llm", llm.base_url, api_key_env="AIDP_TEST_DASK_KEY",
                       rate_limit={"requests_per_minute": 100, "tokens_per_minute": 6000})
        files = {"README.md": "x\n", "aidp.toml": toml, "plan.yaml": plan("llm")}
        with cluster(tmp_path / "c", files) as made:
            made.add_worker("w1", "--database-url", db_url)
            made.wait_for_workers(1)
            cli = Cli(made.clone, db_url)
            done = cli("run", "plan.yaml", "--executor", "dask", "--scheduler", made.address,
                       timeout=300)
            assert done.returncode == 0, done.stderr + made.log("w1")
            run_id = _run_id(cli)
            store = Store(db_url)
            try:
                (attempt,) = store.attempts(run_id)
                assert (attempt.input_tokens, attempt.output_tokens, attempt.requests) == (
                    1200, 300, 1)
                buckets = {r.kind for r in store.read("SELECT * FROM rate_buckets")}
                assert buckets == {"requests", "tokens"}
            finally:
                store.close()
            assert git(made.clone, "show", f"aidp/{run_id}/w:notes/a.md") == \
                "hello from the model\n"
            [record] = (made.clone / ".aidp" / "runs" / run_id / "exchanges" / "w").glob(
                "s.1.jsonl")
            assert "hello from the model" in record.read_text()
            for root in (made.clone / ".aidp", made.clones["w1"] / ".aidp"):
                for path in root.rglob("*"):
                    if path.is_file():
                        assert key.encode() not in path.read_bytes(), path


def test_best_of_candidates_run_on_the_workers_and_the_winner_is_kept(tmp_path: Path) -> None:
    """A best-of-3 step on two workers: each candidate ran on a worker with its place, the
    smallest passing one won, and the next step (on a worker too) builds on its commit."""
    plan = """version: 1
workstreams:
  - id: w
    steps:
      - id: s
        run: >-
          if [ "$AIDP_CANDIDATE" = 1 ]; then echo bad > out.txt;
          else seq {candidate} > out.txt; fi
        best_of: {n: 3}
        checks: ["! grep -q bad out.txt"]
      - id: after
        depends_on: [s]
        run: "grep -qx 2 out.txt && ! grep -q 3 out.txt && echo built > after.txt"
"""
    with cluster(tmp_path / "c", {"README.md": "x\n", "plan.yaml": plan}) as made:
        made.add_worker("w1")
        made.add_worker("w2")
        made.wait_for_workers(2)
        cli = Cli(made.clone)
        done = cli("run", "plan.yaml", "--executor", "dask", "--scheduler", made.address,
                   timeout=300)
        assert done.returncode == 0, done.stderr + made.log("w1") + made.log("w2")
        run_id = _run_id(cli)
        data = json.loads(cli("status", run_id, "--json", check=True).stdout)
        step, after = data["workstreams"][0]["steps"]
        assert after["status"] == "completed"
        verdicts = [a["candidate"]["verdict"] for a in step["attempt_list"]]
        assert verdicts == ["failed", "won", "lost"]
        branch = f"aidp/{run_id}/w"
        assert git(made.clone, "show", f"{branch}:out.txt") == "1\n2\n"
        assert git(made.clone, "rev-parse", f"{branch}^").strip() == step["checkpoint"]
        assert git(made.clone, "show", f"{branch}:after.txt") == "built\n"
        assert _workers_used(made, run_id) <= {"w1", "w2"} and _workers_used(made, run_id)
