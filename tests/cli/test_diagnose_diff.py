"""``aidp diagnose`` text shows the failed attempt's diff (capped, with a note when cut)."""

from __future__ import annotations

import json
from pathlib import Path

from aidp.cli.diagnose import DIFF_LINES
from tests.conftest import Cli


def _failed_run(cli: Cli, tmp_path: Path, command: str) -> str:
    plan = tmp_path / "p.yaml"
    plan.write_text("version: 1\nworkstreams: [{id: a, steps: [{id: s, run: "
                    f"{json.dumps(command)}, checks: ['false']}}]}}]\n")
    result = cli("run", "--json", str(plan))
    assert result.returncode == 1, result.stderr
    return str(json.loads(result.stdout)["run_id"])


def test_diagnose_prints_the_diff_of_changed_and_new_files(cli_inproc: Cli,
                                                           tmp_path: Path) -> None:
    run_id = _failed_run(cli_inproc, tmp_path,
                         "echo 'a changed line' >> README.md && echo 'brand new' > new.txt")
    out = cli_inproc("diagnose", run_id, "a/s", check=True).stdout
    assert "\ndiff (" in out
    assert "  +a changed line" in out.splitlines()
    assert "  +brand new" in out.splitlines()  # an untracked file is part of the diff too
    assert "more lines cut" not in out


def test_diagnose_cuts_a_long_diff_and_says_so(cli_inproc: Cli, tmp_path: Path) -> None:
    run_id = _failed_run(cli_inproc, tmp_path, "seq 1 500 >> README.md")
    out = cli_inproc("diagnose", run_id, "a/s", check=True).stdout
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("diff ("))
    total = int(lines[start].removeprefix("diff (").split()[0])
    assert total > DIFF_LINES
    assert lines[start + DIFF_LINES + 1] == (
        f"  ... {total - DIFF_LINES} more lines cut; `aidp diagnose --json` has the whole "
        "diff the bundle kept")
    bundle = json.loads(cli_inproc("diagnose", run_id, "a/s", "--json", check=True).stdout)
    assert "+500" in bundle["git"]["diff"].splitlines()
