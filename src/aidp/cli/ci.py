"""``aidp ci``: run a plan in batch mode, as ``aidp run`` does, and write its test reports.

No live view and no prompts: plain progress lines (on stderr with ``--json``), then a JUnit XML
file and a Markdown summary (also appended to ``$GITHUB_STEP_SUMMARY`` when it is set), built by
:mod:`aidp.app.reports`. The exit code is a test runner's: 0 when every step passed, 1 when one
failed, timed out or was skipped, 2 for bad input (nothing run, nothing written); aidp's other
error codes for the rest, and 128+signal when stopped (the reports of what ran are written
first). ``--report-only RUN`` writes the reports of an existing run and runs nothing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from aidp.cli.common import Context, echo_json, repo_options

if TYPE_CHECKING:
    from aidp.app.reports import RunReport

__all__ = ["ci"]

#: Where ``aidp ci`` also appends its Markdown summary, when this variable names a file.
STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


@click.command()
@click.argument("files", nargs=-1, required=False, type=click.Path(path_type=Path))
@repo_options
@click.option("--parallel", "-p", type=click.IntRange(1, 256), help="Steps running at once.")
@click.option("--junit", "junit_path", type=click.Path(path_type=Path, dir_okay=False),
              default=Path("aidp-junit.xml"), show_default=True,
              help="Where to write the JUnit XML report.")
@click.option("--summary", "summary_path", type=click.Path(path_type=Path, dir_okay=False),
              default=Path("aidp-summary.md"), show_default=True,
              help=f"Where to write the Markdown summary (also appended to ${STEP_SUMMARY_ENV} "
              "when set).")
@click.option("--report-only", "report_run", metavar="RUN",
              help="Write the reports of RUN (an id or unique prefix) without running anything.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON result on stdout (progress lines go to stderr).")
def ci(files: tuple[Path, ...], repo: Path | None, config_path: Path | None,
       parallel: int | None, junit_path: Path, summary_path: Path, report_run: str | None,
       as_json: bool) -> int:
    """Run FILES like `aidp run` without a live view or prompts, then write a JUnit XML report
    and a Markdown summary.

    Exit code 0 when every step completed; 1 when a step failed, timed out or was skipped; 2
    for bad input (nothing is run or written); 128+signal when stopped (the run is left
    resumable, its reports written).
    """
    from aidp.exceptions import InputError

    if bool(files) == bool(report_run):
        raise InputError("give workstream FILES or --report-only RUN (one of the two)")
    if report_run is not None:
        if parallel is not None:
            raise InputError("--parallel runs nothing with --report-only")
        ctx = Context(repo, config_path)
        try:
            from aidp.app import resolve_run

            return _report(ctx, resolve_run(ctx.app, report_run), junit_path, summary_path,
                           as_json)
        finally:
            ctx.close()
    return _run(files, repo, config_path, parallel, junit_path, summary_path, as_json)


def _run(files: tuple[Path, ...], repo: Path | None, config_path: Path | None,
         parallel: int | None, junit_path: Path, summary_path: Path, as_json: bool) -> int:
    """Validate, create and drive the run as ``aidp run`` does, then write the reports."""
    from aidp.app import create_run, drive_run, uncommitted_changes
    from aidp.app.commands import describe_paths
    from aidp.cli.common import actor
    from aidp.cli.plan import exit_with_problems, load_or_exit
    from aidp.cli.progress import PlainReporter
    from aidp.cli.stopping import GuardedReporter, Interrupted, stop_on_signals
    from aidp.exceptions import ValidationError

    ctx = Context(repo, config_path)
    try:
        plan = load_or_exit(files, ctx.repo, as_json)
        parallel = parallel or ctx.settings.run.parallel
        dirty = uncommitted_changes(ctx.app)  # before anything is written
        if dirty:
            many = len(dirty) != 1
            click.echo(f"warning: {len(dirty)} uncommitted change{'s' if many else ''} "
                       f"{'are' if many else 'is'} not part of the run (it starts from HEAD): "
                       f"{describe_paths(dirty)}", err=True)
        try:  # refuses what `aidp validate` reports, before anything is written
            run_id = create_run(ctx.app, plan, parallel=parallel, by=actor())
        except ValidationError as exc:
            exit_with_problems(exc.problems, as_json)
        progress = sys.stderr if as_json else sys.stdout
        click.echo(f"run {run_id}: {len(plan.workstreams)} workstreams, {plan.step_count} "
                   f"steps, parallel {parallel}", file=progress)
        reporter = GuardedReporter(PlainReporter(progress))
        try:
            with stop_on_signals():  # SIGTERM (a CI job's timeout), SIGHUP, a closed stdout
                drive_run(ctx.app, run_id, reporter=reporter, parallel=parallel,
                          on_note=lambda line: click.echo(line, err=True))
        except KeyboardInterrupt as exc:
            signum = exc.signum if isinstance(exc, Interrupted) else 2
            _write_quietly(ctx, run_id, junit_path, summary_path)
            click.echo(f"\nrun {run_id} interrupted; the tools were stopped. Resume it with: "
                       f"aidp resume {run_id}", err=True)
            raise Interrupted(signum, reported=True) from None
        return _report(ctx, run_id, junit_path, summary_path, as_json)
    finally:
        ctx.close()


def _report(ctx: Context, run_id: str, junit_path: Path, summary_path: Path,
            as_json: bool) -> int:
    """Write the reports of ``run_id``, print the result, return the exit code."""
    from aidp.app.reports import Verdict

    report = _write(ctx, run_id, junit_path, summary_path)
    if as_json:
        echo_json({**report.to_dict(), "junit": str(junit_path), "summary": str(summary_path)})
    else:
        for step in report.steps:
            if step.verdict is not Verdict.PASSED:
                click.echo(f"  {step.verdict.value:<7} {step.ws_id}/{step.step_id}: "
                           f"{step.message}")
        click.echo(f"run {run_id} {report.status}: {report.count(Verdict.PASSED)} passed, "
                   f"{report.count(Verdict.FAILED)} failed, {report.count(Verdict.SKIPPED)} "
                   f"skipped in {report.duration_s:.2f}s; wrote {junit_path} and {summary_path}")
    return 0 if report.ok else 1


def _write(ctx: Context, run_id: str, junit_path: Path, summary_path: Path) -> RunReport:
    """Build the reports of ``run_id`` and write them (and append the summary to
    ``$GITHUB_STEP_SUMMARY``)."""
    from aidp.app.reports import collect_report, junit_xml, markdown_summary
    from aidp.exceptions import InputError

    report = collect_report(ctx.app, run_id)
    summary = markdown_summary(report)
    targets: list[tuple[Path, str, str]] = [(junit_path, junit_xml(report), "w"),
                                             (summary_path, summary, "w")]
    step_summary = os.environ.get(STEP_SUMMARY_ENV)
    if step_summary:
        targets.append((Path(step_summary), summary, "a"))
    for path, text, mode in targets:
        try:
            if path.parent != Path():
                path.parent.mkdir(parents=True, exist_ok=True)
            with path.open(mode, encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise InputError(f"{path}: cannot write the report: {exc.strerror or exc}") from exc
    return report


def _write_quietly(ctx: Context, run_id: str, junit_path: Path, summary_path: Path) -> Any:
    """:func:`_write` for a stopped run: a report that cannot be written is not worth a
    second error on the way out."""
    from aidp.exceptions import AidpError

    try:
        return _write(ctx, run_id, junit_path, summary_path)
    except (AidpError, OSError):
        return None
