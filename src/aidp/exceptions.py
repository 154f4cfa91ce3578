"""The aidp exception tree.

Every error a user can meet derives from :class:`AidpError`; each class knows its CLI exit code
and whether retrying the same operation may help. The CLI has one top-level handler that prints
``error: <message>`` plus an optional hint and exits with ``exit_code`` -- never a traceback.

::

    AidpError                         exit 1
    +-- InputError                    exit 2   bad input, rejected before anything is written
    |   +-- ValidationError           exit 2   workstream files: carries a list of Problems
    |   +-- ConfigError               exit 2   aidp.toml / environment
    |   +-- ApplyError                exit 2   aidp.specs.apply: a change's deltas do not apply
    |   +-- ShowError                 exit 2   aidp.specs.compat: `openspec show` cannot show it
    |   +-- GithubSyncRefused         exit 2   aidp.specs.github: a sync that would lose data
    |   +-- ScriptError               exit 2   aidp.testing.script: a bad fake-LLM script
    +-- NotFoundError                 exit 3   unknown run, step, workstream, checkpoint
    +-- StateError                    exit 4   the operation does not fit the current state
    |   +-- LeaseHeldError            exit 4   another orchestrator drives the run (says who)
    |   +-- LeaseLostError            exit 4   our lease was taken over; stop writing at once
    |   +-- IllegalProposalTransition exit 4   aidp.specs.lifecycle: not from this state
    +-- GitError                      exit 5   a git command failed (command, stderr)
    |   +-- MergeConflictError        exit 5   merging dependency results conflicted (files)
    +-- ToolError                     exit 6   a tool could not be started (missing binary ...)
    |   +-- NoProfileError            exit 6   aidp.tools.registry: no profile for a capability;
    |   |                                      retryable when only open breakers refused it
    |   +-- GhError                   exit 6   aidp.specs.github: the gh CLI failed
    +-- IllegalTransition             exit 70  a state change the transition table forbids (a bug)

``retryable`` says whether the same operation may succeed if tried again unchanged (False unless
a class or an instance says otherwise). Classes defined beside the code that raises them are
drawn here all the same; a test keeps this tree complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "AidpError",
    "ConfigError",
    "GitError",
    "IllegalTransition",
    "InputError",
    "LeaseHeldError",
    "LeaseLostError",
    "MergeConflictError",
    "NotFoundError",
    "Problem",
    "StateError",
    "ToolError",
    "ValidationError",
]


class AidpError(Exception):
    """Base of every aidp error. ``hint`` is one line telling the user what to do next."""

    exit_code: int = 1
    retryable: bool = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InputError(AidpError):
    """Bad input (files, arguments); nothing was written."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One validation problem, located as precisely as the input format allows."""

    file: str
    message: str
    line: int | None = None
    id: str | None = None
    code: str = "invalid"

    def render(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        ident = f" [{self.id}]" if self.id else ""
        return f"{where}:{ident} {self.message}"

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "id": self.id,
            "code": self.code,
            "message": self.message,
        }


class ValidationError(InputError):
    """Workstream files failed validation; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        first = self.problems[0].render() if self.problems else "invalid input"
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(first + more, hint="run `aidp validate FILE...` to see every problem")


class ConfigError(InputError):
    """aidp.toml or the environment is invalid."""

    def __init__(self, message: str, *, path: Path | None = None, hint: str | None = None):
        super().__init__(f"{path}: {message}" if path else message, hint=hint)
        self.path = path


class NotFoundError(AidpError):
    """An unknown run, workstream, step or checkpoint was named."""

    exit_code = 3


class StateError(AidpError):
    """The requested operation does not fit the current state of the run."""

    exit_code = 4


class LeaseHeldError(StateError):
    """Another live orchestrator holds the run's lease."""

    def __init__(self, run_id: str, holder: str, expires_in_s: float) -> None:
        super().__init__(
            f"run {run_id} is being driven by {holder} (lease valid for {expires_in_s:.0f}s more)",
            hint="wait for it to finish, or `aidp cancel` it",
        )
        self.run_id = run_id
        self.holder = holder


class LeaseLostError(StateError):
    """Our lease on the run was taken over by another orchestrator; we must stop."""

    def __init__(self, run_id: str, token: int) -> None:
        super().__init__(f"lost the lease on run {run_id} (fencing token {token} is stale)")
        self.run_id = run_id
        self.token = token


class GitError(AidpError):
    """A git command failed."""

    exit_code = 5

    def __init__(self, argv: list[str], returncode: int, stderr: str, *, cwd: Path | None = None):
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit code {returncode}"
        super().__init__(f"git {' '.join(argv)} failed: {detail}")
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
        self.cwd = cwd


class MergeConflictError(GitError):
    """Merging branches conflicted; ``files`` are the conflicting paths."""

    def __init__(self, into: str, branch: str, files: list[str]) -> None:
        AidpError.__init__(
            self,
            f"merging {branch} into {into} conflicts in: {', '.join(files) or '(unknown files)'}",
            hint="declare the workstreams in conflicts_with or narrow their scopes",
        )
        self.argv = ["merge", branch]
        self.returncode = 1
        self.stderr = ""
        self.cwd = None
        self.into = into
        self.branch = branch
        self.files = files


class ToolError(AidpError):
    """A tool could not be started at all (missing binary, bad command template)."""

    exit_code = 6


class IllegalTransition(AidpError, RuntimeError):
    """A state change that a transition table forbids: a bug in aidp, never a user error."""

    exit_code = 70  # EX_SOFTWARE
