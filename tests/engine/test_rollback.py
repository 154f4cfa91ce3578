"""``aidp rollback`` of an upstream workstream reopens everything downstream of it, through the
real ``aidp`` executable, on SQLite and PostgreSQL (the ``cli`` fixture)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import Cli, git
from tests.engine.test_run import SQLITE_ONLY, plan_file, rev, run_json, status, steps_of, wss


def _plan(value: Path, merge: str = "") -> str:
    return f"""
version: 1
workstreams:
  - id: a
    steps:
      - {{id: s1, run: "echo one > a1.txt"}}
      - {{id: s2, depends_on: [s1], run: "cat {value} > a2.txt"}}
  - id: c
    depends_on: [a]
    steps: [{{id: s, run: "cat a2.txt > c.txt"}}]{merge}
  - id: d
    depends_on: [c]
    steps: [{{id: s, run: "cat c.txt > d.txt"}}]
"""


def _is_ancestor(repo: Path, older: str, newer: str) -> bool:
    done = subprocess.run(["git", "merge-base", "--is-ancestor", older, newer], cwd=repo,
                          capture_output=True, check=False)
    return done.returncode == 0


def test_rollback_rebuilds_the_dependants_on_the_new_upstream(cli: Cli, tmp_path: Path) -> None:
    """Rolling back an upstream workstream reopens its dependants (transitively); resume rebuilds
    their branches on the upstream's new head."""
    repo = cli.cwd
    value = tmp_path / "value"
    value.write_text("old\n")
    result, summary = run_json(cli, plan_file(tmp_path, _plan(value)))
    assert result.returncode == 0, result.stderr
    run_id = summary["run_id"]
    back = cli("rollback", run_id, "--to", "a/s1")
    assert back.returncode == 0, back.stderr
    data = status(cli, run_id)
    for ws_id in ("c", "d"):
        assert wss(data)[ws_id]["status"] == "pending", json.dumps(data, indent=1)
        assert steps_of(data, ws_id)["s"]["status"] == "pending"
        assert steps_of(data, ws_id)["s"]["checkpoint"] is None
    value.write_text("new\n")
    resumed = cli("resume", "--json", run_id)
    assert resumed.returncode == 0, resumed.stderr
    data = status(cli, run_id)
    assert data["status"] == "completed"
    a, c, d = (rev(repo, wss(data)[w]["branch"]) for w in ("a", "c", "d"))
    assert git(repo, "show", f"{a}:a2.txt") == "new\n"
    assert _is_ancestor(repo, a, c), "c is not built on a's new head"
    assert _is_ancestor(repo, c, d), "d is not built on c's new head"
    assert git(repo, "show", f"{c}:c.txt") == "new\n"
    assert git(repo, "show", f"{d}:d.txt") == "new\n"
    assert git(repo, "show", f"{d}:a2.txt") == "new\n"


def test_rollback_lists_every_reopened_workstream_and_the_merges_kept(cli: Cli, tmp_path: Path
                                                                       ) -> None:
    """rollback's output (text and --json) names every reopened workstream and step, and the
    target that keeps an earlier merge; resume merges the rebuilt workstream again."""
    repo = cli.cwd
    value = tmp_path / "value"
    value.write_text("same\n")
    text = _plan(value, merge="\n    merge: {into: integration}")
    result, summary = run_json(cli, plan_file(tmp_path, text))
    assert result.returncode == 0, result.stderr
    run_id = summary["run_id"]
    old_merge = rev(repo, "integration")
    assert wss(status(cli, run_id))["c"]["merged"] == old_merge
    back = cli("rollback", "--json", run_id, "--to", "a/s1")
    assert back.returncode == 0, back.stderr
    data = json.loads(back.stdout)
    assert (data["workstream"], data["step"], data["reopened"]) == ("a", "s1", ["s2"])
    assert [(w["id"], w["steps"], w["rebuilt"], w["merged_into"]) for w in
            data["workstreams"]] == [("a", ["s2"], False, None), ("c", ["s"], True, "integration"),
                                     ("d", ["s"], True, None)]
    assert data["workstreams"][1]["merged_sha"] == old_merge
    assert rev(repo, "integration") == old_merge  # kept: nothing reverted
    assert wss(status(cli, run_id))["c"]["merged"] is None
    resumed = cli("resume", "--json", run_id)
    assert resumed.returncode == 0, resumed.stderr
    c = wss(status(cli, run_id))["c"]
    assert c["merged"] == rev(repo, "integration") != old_merge
    assert _is_ancestor(repo, old_merge, "integration")
    assert _is_ancestor(repo, rev(repo, c["branch"]), "integration")


@SQLITE_ONLY
def test_rollback_text_names_the_reopened_dependants(cli: Cli, tmp_path: Path) -> None:
    """rollback's text output names each reopened dependant with its steps and the earlier
    merge its target keeps."""
    value = tmp_path / "value"
    value.write_text("x\n")
    text = _plan(value, merge="\n    merge: {into: integration}")
    result, summary = run_json(cli, plan_file(tmp_path, text))
    assert result.returncode == 0, result.stderr
    back = cli("rollback", summary["run_id"], "--to", "a/s1")
    assert back.returncode == 0, back.stderr
    lines = back.stdout.splitlines()
    assert lines[0] == "a is back at the checkpoint of s1; pending again: s2"
    assert any(line.startswith("c (downstream of a): rebuilt") and line.endswith(": s")
               for line in lines), back.stdout
    assert any(line.startswith("d (downstream of a): rebuilt") for line in lines), back.stdout
    assert any(line.startswith("integration keeps the earlier merge of c") for line in lines)


@SQLITE_ONLY
def test_rollback_to_the_head_keeps_the_dependants(cli: Cli, tmp_path: Path) -> None:
    """A rollback that does not move the workstream's head (to its last step) reopens nothing
    downstream: the dependants stay built on that same head."""
    value = tmp_path / "value"
    value.write_text("x\n")
    result, summary = run_json(cli, plan_file(tmp_path, _plan(value)))
    assert result.returncode == 0, result.stderr
    run_id = summary["run_id"]
    heads = {w: wss(status(cli, run_id))[w]["head"] for w in ("c", "d")}
    back = cli("rollback", "--json", run_id, "--to", "a/s2")
    assert back.returncode == 0, back.stderr
    assert [w["id"] for w in json.loads(back.stdout)["workstreams"]] == ["a"]
    data = status(cli, run_id)
    assert {w: wss(data)[w]["head"] for w in ("c", "d")} == heads
    assert all(wss(data)[w]["status"] == "completed" for w in ("c", "d"))
