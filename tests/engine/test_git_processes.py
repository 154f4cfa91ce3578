"""How many git processes a run starts, counted by a ``git`` shim first on ``PATH``.

Git work on a workstream's start runs in-process (merges of its dependencies, the checkout and
clean of its pooled worktree), and a step's checkpoint always did: a fan-in DAG costs at most two
git processes per workstream on average, and a chain's steps none at all.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
from pathlib import Path

import pytest

from aidp.workspace.native import CLI_ENV
from tests.conftest import Cli


def _fan_in(layers: int, width: int) -> str:
    """``layers`` x ``width`` one-step workstreams, each depending on 3 of the layer before."""
    workstreams = []
    for k in range(layers):
        for i in range(width):
            ws: dict[str, object] = {"id": f"l{k}w{i}", "scope": [f"l{k}w{i}/**"],
                                     "steps": [{"id": "s", "run": f"mkdir -p l{k}w{i} && "
                                                f"echo {k} > l{k}w{i}/out"}]}
            if k:
                ws["depends_on"] = [f"l{k - 1}w{(i + j) % width}" for j in range(3)]
            workstreams.append(ws)
    return json.dumps({"version": 1, "workstreams": workstreams})


def _chain(steps: int) -> str:
    return json.dumps({"version": 1, "workstreams": [{"id": "chain", "steps": [
        {"id": f"s{i}", "run": "true", **({"depends_on": [f"s{i - 1}"]} if i else {})}
        for i in range(steps)]}]})


def _counted_run(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plan: str,
                 name: str) -> collections.Counter[str]:
    """Run ``plan`` with a counting ``git`` first on PATH; git subcommands -> processes."""
    real = shutil.which("git")
    assert real is not None
    shim_dir = tmp_path / f"shim-{name}"
    shim_dir.mkdir()
    log = tmp_path / f"git-{name}.log"
    shim = shim_dir / "git"
    shim.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{log}'\nexec '{real}' \"$@\"\n")
    shim.chmod(0o755)
    plan_path = tmp_path / f"{name}.json"
    plan_path.write_text(plan, encoding="utf-8")
    path = os.environ["PATH"].split(":")
    monkeypatch.setenv("PATH", ":".join([str(shim_dir), *(p for p in path if "shim-" not in p)]))
    result = cli("run", str(plan_path), "--parallel", "4", "--json", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["status"] == "completed"
    return collections.Counter(log.read_text().split()) if log.exists() else collections.Counter()


def test_a_fan_in_dag_starts_at_most_two_git_processes_per_workstream(
        cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """3 layers x 4 workstreams, 3 dependencies each: merges, checkouts and cleans are
    in-process; the CLI path (AIDP_GIT=cli) is what the shim sees otherwise."""
    monkeypatch.delenv(CLI_ENV, raising=False)
    counts = _counted_run(cli, tmp_path, monkeypatch, _fan_in(3, 4), "native")
    assert sum(counts.values()) <= 2 * 12, counts
    assert not {"merge", "merge-base", "checkout", "clean"} & set(counts), counts
    monkeypatch.setenv(CLI_ENV, "cli")
    with_cli = _counted_run(cli, tmp_path, monkeypatch, _fan_in(3, 4), "cli")
    assert with_cli["merge"] == 8 * 2 and with_cli["checkout"] >= 12, with_cli


def test_a_chains_steps_start_no_git_process(cli: Cli, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A chain of 12 steps starts as many git processes as a chain of 2: none per step."""
    monkeypatch.delenv(CLI_ENV, raising=False)
    _counted_run(cli, tmp_path, monkeypatch, _chain(1), "first")  # makes the pooled worktree
    short = _counted_run(cli, tmp_path, monkeypatch, _chain(2), "short")
    long = _counted_run(cli, tmp_path, monkeypatch, _chain(12), "long")
    assert sum(long.values()) == sum(short.values()), (short, long)
