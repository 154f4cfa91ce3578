"""``aidp run`` and ``aidp resume``: create and drive runs through the application layer's
commands (:mod:`aidp.app`), showing progress as they go."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import click

from aidp.cli.common import Context, echo_json, executor_options, repo_options

__all__ = ["resume", "run"]


def _json_logs() -> bool:
    """Whether this process logs JSON lines (``AIDP_LOG_FORMAT=json``: a run worker of
    ``aidp serve --log-format json``); then every line it would print is a log record."""
    from aidp.app.logs import configure_logging, format_from_environment

    if format_from_environment() != "json":
        return False
    configure_logging("json")
    return True


def _say(text: str, run_id: str | None = None, *, err: bool = False,
         warning: bool = False) -> None:
    """A line of ``run`` / ``resume``: printed, or logged under ``AIDP_LOG_FORMAT=json``."""
    if _json_logs():
        import logging

        logging.getLogger("aidp.run").log(logging.WARNING if warning else logging.INFO, "%s",
                                          text, extra={"run": run_id})
    else:
        click.echo(text, err=err)


def _reporter(ctx: Context, run_id: str, workstreams: list[tuple[str, int]],
              as_json: bool) -> Any:
    from aidp.cli.progress import LiveReporter, LogReporter, PlainReporter

    if _json_logs():
        return LogReporter(run_id)
    if as_json:
        return PlainReporter(sys.stderr)
    if sys.stdout.isatty():
        from rich.console import Console

        return LiveReporter(Console(), workstreams)
    return PlainReporter(sys.stdout)


_ANSWERS = {"r": "retry", "retry": "retry", "s": "skip", "skip": "skip",
            "a": "abort", "abort": "abort"}


def _answer(value: str) -> str:
    """An answer to the --interactive question: a word or its first letter, any case."""
    choice = _ANSWERS.get(value.strip().lower())
    if choice is None:
        raise click.UsageError(f"{value!r}: answer retry (r), skip (s) or abort (a)")
    return choice


def _ask(sr: Any, report: Any) -> str:
    """--interactive: ask what to do about a failed step."""
    click.echo(f"\nstep {sr.key} {report.state.value}: {report.reason}", err=True)
    return str(click.prompt(
        "retry, skip or abort? (r/s/a; end of input stops the run as Ctrl-C does, "
        "resumable)", value_proc=_answer, default="abort", err=True))


def _drive(ctx: Context, run_id: str, *, parallel: int | None, as_json: bool,
           interactive: bool) -> int:
    from aidp.app import drive_run, run_plan
    from aidp.cli.progress import render_summary
    from aidp.cli.stopping import GuardedReporter, Interrupted, stop_on_signals

    plan = run_plan(ctx.app, run_id)
    reporter = GuardedReporter(
        _reporter(ctx, run_id, [(ws.id, len(ws.steps)) for ws in plan.workstreams], as_json))
    try:
        with stop_on_signals():  # SIGTERM, SIGHUP, a closed stdout: stop as Ctrl-C does
            summary = drive_run(ctx.app, run_id, reporter=reporter,
                                decide=_ask if interactive else None, parallel=parallel,
                                on_note=lambda line: _say(line, run_id, err=True))
    except (KeyboardInterrupt, click.exceptions.Abort) as exc:  # Abort: EOF at --interactive
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        try:
            _say(f"{'' if _json_logs() else chr(10)}run {run_id} interrupted "
                 f"({signal.Signals(signum).name}); the tools were stopped. Resume it with: "
                 f"aidp resume {run_id}", run_id, err=True, warning=True)
        except OSError:  # stderr gone too (a closed terminal)
            pass
        raise Interrupted(signum, reported=True) from None
    if as_json:
        echo_json(summary.to_dict())
    elif _json_logs():
        import logging

        data = summary.to_dict()
        logging.getLogger("aidp.run").log(
            logging.INFO if summary.ok else logging.WARNING, "run %s %s", run_id,
            data.get("status"), extra={"run": run_id, "status": data.get("status"),
                                       "duration_s": data.get("duration_s"),
                                       "workstreams": {w["id"]: w["status"]
                                                       for w in data.get("workstreams", ())}})
    else:
        render_summary(summary.to_dict(), sys.stdout)
    return 0 if summary.ok else 1


@click.command()
@click.argument("files", nargs=-1, required=False, type=click.Path(path_type=Path))
@repo_options
@executor_options
@click.option("--parallel", "-p", type=click.IntRange(1, 256), help="Steps running at once.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("--interactive", is_flag=True,
              help="Ask whether to retry, skip or abort a failed step.")
@click.option("--change", "change_id", metavar="ID",
              help="Run an approved OpenSpec change (openspec/changes/ID) instead of FILES.")
@click.option("--tool", "change_tool", metavar="PROFILE",
              help="With --change: the tool profile of its steps (default: [specs] tool).")
@click.option("--split", type=click.Choice(["change", "sections"]), default=None,
              help="With --change: one workstream for the change, or one per numbered tasks.md "
              "section, chained (default: [specs] split).")
@click.option("--refuse-dirty", is_flag=True,
              help="Refuse (exit 2) when the repository has uncommitted changes: the run "
              "starts from HEAD (default: [run] dirty, warn).")
def run(files: tuple[Path, ...], repo: Path | None, config_path: Path | None,
        parallel: int | None, as_json: bool, interactive: bool, change_id: str | None,
        change_tool: str | None, split: str | None, refuse_dirty: bool) -> int:
    """Validate FILES (or compile --change ID), then run every workstream in its own worktree
    and branch.

    Exit code 0 only when every workstream completed; 1 when one failed; 2 for bad input;
    128+signal when stopped (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP, 141 stdout closed), the run
    left resumable.
    """
    from aidp.app import create_run, uncommitted_changes
    from aidp.app.commands import describe_paths
    from aidp.cli.common import actor
    from aidp.cli.plan import exit_with_problems, load_or_exit
    from aidp.exceptions import InputError, ValidationError

    ctx = Context(repo, config_path)
    if bool(files) == bool(change_id):
        raise InputError("give workstream FILES or --change ID (one of the two)")
    if split is not None and change_id is None:
        raise InputError("--split needs --change ID")
    if change_id is not None:
        from aidp.app.changes import compile_change

        files = (compile_change(ctx.repo, ctx.settings, change_id, change_tool, split=split),)
    plan = load_or_exit(files, ctx.repo, as_json)
    parallel = parallel or ctx.settings.run.parallel
    try:
        dirty = uncommitted_changes(ctx.app, refuse=refuse_dirty)  # before anything is written
        if dirty:
            click.echo(f"warning: {len(dirty)} uncommitted change{'s' if len(dirty) != 1 else ''}"
                       f" {'are' if len(dirty) != 1 else 'is'} not part of the run (it starts "
                       f"from HEAD): {describe_paths(dirty)}", err=True)
        try:  # refuses what `aidp validate` reports, before anything is written
            run_id = create_run(ctx.app, plan, parallel=parallel, change_id=change_id,
                                by=actor())
        except ValidationError as exc:
            exit_with_problems(exc.problems, as_json)
        if not as_json:
            from aidp.core.dag import analyze

            shape = analyze(plan)
            _say(f"run {run_id}: {len(plan.workstreams)} workstreams, {plan.step_count} "
                 f"steps, parallel {parallel}", run_id)
            _say(f"plan: {len(shape.waves)} waves; critical path "
                 f"{' -> '.join(shape.critical_path) or '-'} ({shape.critical_steps} "
                 f"steps); up to {shape.max_parallelism} workstreams at once", run_id)
        code = _drive(ctx, run_id, parallel=parallel, as_json=as_json,
                      interactive=interactive)
        if code == 0 and change_id is not None:
            from aidp.app import finish_change

            finish_change(ctx.app, change_id, by=actor())
        return code
    finally:
        ctx.close()


@click.command()
@click.argument("run_ref", metavar="[RUN]", required=False)
@repo_options
@executor_options
@click.option("--parallel", "-p", type=click.IntRange(1, 256), help="Steps running at once.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("--interactive", is_flag=True,
              help="Ask whether to retry, skip or abort a failed step.")
def resume(run_ref: str | None, repo: Path | None, config_path: Path | None,
           parallel: int | None, as_json: bool, interactive: bool) -> int:
    """Finish RUN (default: the newest) without redoing completed steps.

    Steps whose checkpoint commit exists in git but not in the database are adopted; failed
    steps are tried again; a live run (its orchestrator still holds the lease) is refused.
    """
    from aidp.app import resolve_run

    ctx = Context(repo, config_path)
    try:
        run_id = resolve_run(ctx.app, run_ref)
        if not as_json:
            _say(f"resuming run {run_id}", run_id)
        return _drive(ctx, run_id, parallel=parallel, as_json=as_json, interactive=interactive)
    finally:
        ctx.close()
