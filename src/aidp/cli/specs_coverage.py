"""``aidp specs coverage``: every scenario of the specs, the tests that prove it, their status.

Registered on the ``aidp specs`` group at the end of :mod:`aidp.cli.specs`. This module does not
import that one at import time (it is imported from it), so it declares its own ``--repo``.
Exit codes: 0 every scenario passed (without results: every scenario has a proving test);
1 some scenario failed or is untested; 2 bad input (a tag naming no known scenario, a malformed
JUnit file), each problem reported as ``file:line: message``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

__all__ = ["coverage"]


@click.command(name="coverage")
@click.option("--junit", "junit_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Read test results from this JUnit XML file (pytest --junitxml).")
@click.option("--run", "run_tests", is_flag=True,
              help="Run the tagged tests ([specs] test_command) and use their results.")
@click.option("--tests", "test_paths", multiple=True, metavar="PATH",
              help="Where tagged tests live (repeatable; default: [specs] test_paths, 'tests').")
@click.option("--change", "change_id", metavar="ID",
              help="Cover the specs as archiving active change ID would leave them.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=600.0,
              show_default=True, help="Seconds --run may take; then its process group is killed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--repo", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Directory holding openspec/ (default: the nearest one above the current "
              "directory).")
def coverage(junit_file: Path | None, run_tests: bool, test_paths: tuple[str, ...],
             change_id: str | None, timeout_s: float, as_json: bool, repo: Path | None) -> None:
    """List every scenario with the tests that prove it (@pytest.mark.spec("spec://cap/req#
    scenario"), or the URI in the test's docstring) and their status: passed, failed or
    untested. Exit 1 when a scenario lacks a passing test, 2 on bad input."""
    from aidp.config import load_settings
    from aidp.exceptions import InputError, ValidationError
    from aidp.specs.coverage import (
        collect_tests,
        coverage_of,
        map_tests,
        read_junit,
        scenario_uri,
    )
    from aidp.specs.coverage import (
        run_tests as run_tagged,
    )
    from aidp.specs.project import find_root, load_project

    if junit_file is not None and run_tests:
        raise InputError("give --junit FILE or --run, not both")
    root = find_root(repo if repo is not None else Path.cwd())
    settings = load_settings(root)
    project = load_project(root)
    try:
        mapping = map_tests(project, collect_tests(root, test_paths or settings.specs.test_paths))
    except ValidationError as exc:
        for problem in exc.problems:
            click.echo(problem.render(), err=True)
        sys.exit(2)
    results = None
    if junit_file is not None:
        results = read_junit(junit_file)
    elif run_tests:
        nodeids = sorted({t.nodeid for tests in mapping.values() for t in tests})
        results = run_tagged(root, nodeids, settings.specs.test_command, timeout_s=timeout_s)
    report = coverage_of(project, mapping, results, change_id or "current")
    if as_json:
        from aidp.cli.common import echo_json

        document: dict[str, Any] = {
            "ok": report.complete, "version": report.version, "results": results is not None,
            "counts": report.counts(),
            "scenarios": [{
                "uri": scenario_uri(s.key), "capability": s.key.capability,
                "requirement": s.key.requirement, "scenario": s.key.scenario,
                "file": s.file, "line": s.line, "status": s.status.value,
                "tests": [{"nodeid": t.nodeid, "file": t.file, "line": t.line,
                           "status": t.status.value} for t in s.tests]}
                for s in report.scenarios]}
        echo_json(document)
    else:
        colours = {"passed": "green", "failed": "red", "untested": "yellow", "tagged": "cyan"}
        for row in report.scenarios:
            click.echo(f"{row.key}  ", nl=False)
            click.secho(row.status.value, fg=colours[row.status.value], nl=False)
            click.echo(f"  ({row.file}:{row.line})")
            for test in row.tests:
                click.echo(f"    {test.nodeid}  {test.status.value}")
        counts = ", ".join(f"{n} {name}" for name, n in report.counts().items() if n)
        click.echo(f"{len(report.scenarios)} scenarios: {counts or 'none'}")
    sys.exit(0 if report.complete else 1)
