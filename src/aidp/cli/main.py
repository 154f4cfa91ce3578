"""The ``aidp`` command: a click group whose subcommands are imported only when invoked.

Keeping imports lazy keeps ``aidp --help`` fast: it must not import SQLAlchemy, pygit2 or the web
stack (a test pins the imported modules). Every :class:`~aidp.exceptions.AidpError` is turned
into one readable line plus a hint and its exit code, never a traceback.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from typing import Any

import click

from aidp import __version__
from aidp.exceptions import AidpError

__all__ = ["cli", "main"]

# command name -> (module, attribute, one-line help shown by `aidp --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "init": ("aidp.cli.init", "init", "Write a commented aidp.toml and an example workstream."),
    "validate": ("aidp.cli.plan", "validate", "Check workstream files; exit 2 on any problem."),
    "plan": ("aidp.cli.plan", "plan", "Show waves, critical path and useful parallelism."),
    "run": ("aidp.cli.run", "run", "Run workstreams in worktrees, checkpointing every step."),
    "resume": ("aidp.cli.run", "resume", "Finish an interrupted run without redoing steps."),
    "ci": ("aidp.cli.ci", "ci", "Run workstreams in batch mode; write JUnit XML and a summary."),
    "status": ("aidp.cli.inspect", "status", "Show a run's workstreams and steps."),
    "runs": ("aidp.cli.inspect", "runs", "List runs."),
    "logs": ("aidp.cli.inspect", "logs", "Print (or follow) the log of a step's attempt."),
    "cancel": ("aidp.cli.control", "cancel", "Cancel a run."),
    "rollback": ("aidp.cli.control", "rollback", "Move a workstream back to a checkpoint."),
    "worktrees": ("aidp.cli.worktrees", "worktrees", "List or prune pooled worktrees."),
    "approve": ("aidp.cli.control", "approve", "Approve a step waiting at a human gate."),
    "reject": ("aidp.cli.control", "reject", "Reject a step waiting at a human gate."),
    "usage": ("aidp.cli.usage", "usage", "Show tokens and cost per step, workstream, profile."),
    "findings": ("aidp.cli.diagnose", "findings", "List the findings: why attempts failed."),
    "diagnose": ("aidp.cli.diagnose", "diagnose", "Print a failed attempt's diagnostics."),
    "replay": ("aidp.cli.replay", "replay", "Run a recorded step again offline (or on another "
               "profile); compare the tree."),
    "breakers": ("aidp.cli.breakers", "breakers", "List or reset circuit breakers."),
    "fake-llm": ("aidp.cli.fake_llm", "fake_llm", "Serve a scripted OpenAI-compatible API."),
    "specs": ("aidp.cli.specs", "specs", "Validate, index and resolve OpenSpec specs and changes."),
    "proposals": ("aidp.cli.proposals", "proposals", "Review and approve OpenSpec changes."),
    "tools": ("aidp.cli.tools", "tools", "List tool profiles; check that their tools can run."),
    "serve": ("aidp.cli.serve", "serve", "Serve the REST API, the dashboard, live events and "
              "webhooks."),
    "tokens": ("aidp.cli.tokens", "tokens", "Create, list and revoke API tokens."),
    "webhooks": ("aidp.cli.webhooks", "webhooks", "Subscribe URLs to signed webhooks; verify."),
    "events": ("aidp.cli.events", "events", "Print or follow the journal's events (CloudEvents)."),
    "worker": ("aidp.cli.worker", "worker", "Join a Dask cluster and run attempts (the "
               "distributed extra)."),
    "db": ("aidp.cli.db", "db", "Show or upgrade the database schema (shared: only with --yes)."),
}


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, attr, _ = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        """As click's, but a mistyped command names the closest one ("Did you mean")."""
        name = args[0] if args else ""
        if name and name not in COMMANDS and not name.startswith("-"):
            close = difflib.get_close_matches(name, list(COMMANDS), n=1)
            if close:
                ctx.fail(f"No such command {name!r}. Did you mean {close[0]!r}?")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aidp")
def cli() -> None:
    """aidp, the AI Development Pipeline: run workstreams of AI coding steps in git worktrees,
    with acceptance checks, checkpoints and resume."""


def _interrupted(exc: BaseException) -> None:
    """Exit 128+signal after Ctrl-C (130) -- or, in run and resume, SIGTERM (143), SIGHUP (129)
    or a closed stdout (SIGPIPE, 141): :class:`aidp.cli.stopping.Interrupted` knows its signal
    and whether the run's resume hint was printed."""
    signum = getattr(exc, "signum", 2)
    if signum == 13:  # SIGPIPE: stdout's reader is gone; nothing more may go there
        _mute_stdout()
    if not getattr(exc, "reported", False):
        try:
            click.echo("interrupted; `aidp resume` continues an interrupted run", err=True)
        except OSError:
            pass
    sys.exit(128 + signum)


def _mute_stdout() -> None:
    """Point stdout at /dev/null, so flushing it at exit does not fail on a closed pipe."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real stdout (in-process tests)
        pass


def logging_json() -> bool:
    """Whether this process logs JSON lines: ``AIDP_LOG_FORMAT=json`` and the logging was set
    up so (by ``aidp run`` / ``resume`` / ``serve``; see :mod:`aidp.app.logs`)."""
    if "aidp.app.logs" not in sys.modules:  # never imported: nothing was set up
        return False
    import logging

    from aidp.app.logs import JsonFormatter

    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


def main(argv: list[str] | None = None) -> Any:
    """Entry point: run the CLI, turning aidp errors into one line and an exit code."""
    try:
        result = cli.main(args=argv, prog_name="aidp", standalone_mode=False)
    except AidpError as exc:
        if logging_json():  # a run worker of `aidp serve --log-format json`: one JSON line
            import logging

            logging.getLogger("aidp.cli").error(exc.message, extra={
                "hint": exc.hint, "error": type(exc).__name__, "exit_code": exc.exit_code})
            sys.exit(exc.exit_code)
        click.secho(f"error: {exc.message}", fg="red", err=True)
        if exc.hint:
            click.echo(f"hint: {exc.hint}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:  # click's form of Ctrl-C (and of EOF at a prompt)
        _interrupted(exc.__cause__ if isinstance(exc.__cause__, KeyboardInterrupt) else exc)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:
        _interrupted(exc)
    if isinstance(result, int):
        sys.exit(result)
    return result
