"""The one way aidp runs an external process: tools, acceptance checks, git, gh, test runs.

Nothing else in aidp calls :mod:`subprocess` or ``os.killpg`` (``tests/test_architecture.py``
checks it). Two modes:

* :func:`run_process` -- a long-running tool or acceptance check. The process runs in its own
  session and process group, with stdin closed, its output (stdout and stderr merged) drained
  concurrently into a :class:`~aidp.process.capped_log.CappedLog` with secrets masked, and a
  wall-clock timeout that kills the whole group. Each process carries a random token in its
  environment (``AIDP_PROCESS_TOKEN``), so descendants that escaped the group with ``setsid`` can
  still be found in ``/proc/*/environ`` and killed -- after a timeout, a cancel, an output pipe
  held open after exit, or an orchestrator crash (:func:`kill_by_token`).

  The normal path costs one ``pidfd`` and one ``poll`` loop over a bare ``subprocess.run``: no
  threads, no extra processes, no ``/proc`` scan. Process exit is watched through a pidfd, which
  does not reap the child, so the group is killed while the leader's pid cannot yet be reused.

* :func:`run_captured` -- a short command whose output the caller parses (git, gh, a pytest run).
  Own session, stdin closed or fed from ``input``, stdout and stderr captured as text; at the
  timeout the whole process group is killed and :class:`subprocess.TimeoutExpired` raised. It
  costs exactly one ``Popen`` and one ``communicate``: git runs on every step.

Liveness reads the state letter in ``/proc/PID/stat``: this sandbox reaps orphans late, so a
killed process can linger as a zombie that ``kill(pid, 0)`` would call alive.
"""

from __future__ import annotations

import math
import os
import re
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aidp.exceptions import ToolError
from aidp.process.capped_log import CARRY_LIMIT, MIN_SECRET_LEN, CappedLog, SecretMasker
from aidp.process.procfs import is_alive, is_user_process, process_start_time

__all__ = [
    "CARRY_LIMIT",
    "MIN_SECRET_LEN",
    "STOP_MARKER",
    "TOKEN_ENV",
    "CappedLog",
    "ProcessResult",
    "SecretMasker",
    "build_env",
    "is_alive",
    "kill_by_token",
    "new_token",
    "process_start_time",
    "run_captured",
    "run_process",
    "signal_group",
    "spawn",
]

#: Environment variable carrying the per-process token into the child and its descendants.
TOKEN_ENV = "AIDP_PROCESS_TOKEN"
#: The start of the log note written when a timeout or cancel stops a process.
STOP_MARKER = "[aidp] stopping the tool: sending"
#: Bytes per read from the output pipe.
READ_CHUNK = 64 * 2**10
#: How often a ``cancel`` event is checked, in seconds.
CANCEL_POLL_S = 0.1
#: After a normal exit, how long the output pipe may stay open before descendants are hunted.
PIPE_LINGER_S = 0.2
#: After everything was killed, how long to keep reading before giving up on the pipe.
FINAL_DRAIN_S = 1.0
#: Rounds of /proc scanning when killing by token (a dying process may still fork).
KILL_ROUNDS = 5
#: Seconds kill_by_token waits for the processes it killed to be gone.
KILL_SETTLE_S = 2.0
ENVIRON_SETTLE_READS = 10  # x 5 ms: a leader caught inside execve shows an empty environment

_ENV_KEEP = frozenset({"PATH", "HOME", "LANG", "TERM", "TMPDIR", "USER", "LOGNAME", "SHELL", "TZ"})
_TOKEN_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


@dataclass(frozen=True)
class ProcessResult:
    """How a process ended.

    ``exit_code`` is None and ``signal`` set when the process was killed by a signal.
    ``output_bytes`` counts the raw bytes read (before masking and capping); ``duration_s`` is
    wall-clock seconds from start to reaping.
    """

    pid: int
    exit_code: int | None
    signal: int | None
    timed_out: bool
    cancelled: bool
    duration_s: float
    output_bytes: int
    token: str = ""


# -- environment ---------------------------------------------------------------------------------


def build_env(
    base: Mapping[str, str], passthrough_names: Iterable[str], extra: Mapping[str, str]
) -> dict[str, str]:
    """Build a minimal child environment.

    Keeps from ``base`` only PATH, HOME, LANG, LC_*, TERM, TMPDIR, USER, LOGNAME, SHELL and TZ,
    plus the explicitly named variables (a step's declared secrets; absent names are skipped --
    the caller checks them first), then applies ``extra``.
    """
    env = {k: v for k, v in base.items() if k in _ENV_KEEP or k.startswith("LC_")}
    for name in passthrough_names:
        if name in base:
            env[name] = base[name]
    env.update(extra)
    return env


def new_token() -> str:
    """A fresh random process token (record it before starting, for crash recovery)."""
    from secrets import token_hex  # here: git imports this module, and secrets costs ~3 ms

    return token_hex(16)


# -- /proc ---------------------------------------------------------------------------------------


def _carries_token(pid: int, needle: bytes, *, settle: bool = False) -> bool:
    """True if ``pid``'s initial environment holds ``needle``. With ``settle``, an empty read (a
    process in the middle of ``execve`` briefly shows no environment) is retried for ~50 ms."""
    for _ in range(ENVIRON_SETTLE_READS if settle else 1):
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                environ = fh.read()
        except OSError:  # gone, or not ours
            return False
        if environ:
            return needle in b"\0" + environ
        time.sleep(0.005)
    return False


def _pids_with_token(token: str) -> set[int]:
    """Live processes whose initial environment carries ``token`` (zombies have none). A user
    process showing an empty environment may be inside ``execve`` (a child that has just been
    started): it is read again for a moment before it is passed over."""
    needle = f"\0{TOKEN_ENV}={token}\0".encode()
    me = os.getpid()
    found: set[int] = set()
    empty: list[int] = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                environ = fh.read()
        except OSError:  # gone, or not ours
            continue
        if environ:
            if needle in b"\0" + environ:
                found.add(pid)
        elif is_user_process(pid):
            empty.append(pid)
    found.update(pid for pid in empty if _carries_token(pid, needle, settle=True))
    return found


def _signal(pid: int, sig: int, *, group: bool = False) -> bool:
    """Send ``sig`` to ``pid`` (or, with ``group``, to its process group); False if there was no
    such process (or it is not ours). The only place aidp calls ``os.killpg``."""
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def kill_by_token(token: str, *, pid_hint: int | None = None) -> int:
    """SIGKILL every live process carrying ``token``; return how many there were.

    With ``pid_hint`` (the recorded leader), its whole process group is killed too if that pid
    still carries the token -- this also catches group members that cleared their environment.
    Used after an orchestrator crash to kill a dead attempt's leftovers. A descendant that both
    left the group and cleared its environment cannot be found.
    """
    _check_token(token)
    needle = f"\0{TOKEN_ENV}={token}\0".encode()
    killed: set[int] = set()
    if pid_hint is not None and _carries_token(pid_hint, needle, settle=True):
        killed.add(pid_hint)
        _signal(pid_hint, signal.SIGKILL, group=True)
    for _ in range(KILL_ROUNDS):
        found = _pids_with_token(token)
        for pid in found:
            _signal(pid, signal.SIGKILL)
        if found <= killed:
            break
        killed |= found
    # Until they are gone (or zombies): a caller cleaning up after them (a resume removing
    # stale git locks) must not still see them working in the worktree.
    deadline = time.monotonic() + KILL_SETTLE_S
    while any(is_alive(pid) for pid in killed) and time.monotonic() < deadline:
        time.sleep(0.005)
    return len(killed)


def _check_token(token: str) -> None:
    if not _TOKEN_RE.fullmatch(token):
        raise ValueError(f"invalid process token {token!r}")


# -- running -------------------------------------------------------------------------------------


class _Run:
    """State of one running process: the poll loop over its output pipe and its exit."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        log: CappedLog,
        masker: SecretMasker,
        on_output: Callable[[bytes], None] | None,
    ) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.log = log
        self.masker = masker
        self.on_output = on_output
        self.output_bytes = 0
        self.out_fd: int | None = proc.stdout.fileno()
        os.set_blocking(self.out_fd, False)
        self.poller = select.poll()
        self.poller.register(self.out_fd, select.POLLIN)
        self.exited = False
        self.exit_fd, self._waiter = _exit_notifier(proc.pid)
        self.poller.register(self.exit_fd, select.POLLIN)

    def step(self, wait_s: float | None) -> None:
        """Wait up to ``wait_s`` (None: forever) for output or exit and handle what came."""
        timeout_ms = None if wait_s is None else max(0, math.ceil(wait_s * 1000))
        for fd, _ in self.poller.poll(timeout_ms):
            if fd == self.out_fd:
                self._drain()
            elif fd == self.exit_fd and not self.exited:
                self.exited = True
                self.poller.unregister(self.exit_fd)

    def pump(self, until_s: float, *, need_exit: bool, need_eof: bool) -> None:
        """Keep reading until the wanted events happened or the monotonic time ``until_s``."""
        while (need_exit and not self.exited) or (need_eof and self.out_fd is not None):
            remaining = until_s - time.monotonic()
            if remaining <= 0:
                return
            self.step(remaining)

    def _drain(self) -> None:
        assert self.out_fd is not None
        for _ in range(16):  # bounded, so deadlines are still checked under a flood of output
            try:
                data = os.read(self.out_fd, READ_CHUNK)
            except BlockingIOError:
                return
            if not data:
                self.poller.unregister(self.out_fd)
                self.out_fd = None
                return
            self.output_bytes += len(data)
            self._emit(self.masker.feed(data))
            if len(data) < READ_CHUNK:
                return

    def _emit(self, data: bytes) -> None:
        if data:
            self.log.write(data)
            if self.on_output is not None:
                self.on_output(data)

    def finish(self) -> int:
        """Flush held-back output, release the pipe and the exit notifier, reap; return code."""
        self._emit(self.masker.flush())
        return self.close()

    def close(self) -> int:
        """Release the pipe and the exit notifier (once), reap the leader; return its code."""
        if self.out_fd is not None:
            self.poller.unregister(self.out_fd)
            self.out_fd = None
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        if self.exit_fd >= 0:
            os.close(self.exit_fd)
            self.exit_fd = -1
        if self._waiter is not None:
            self._waiter.join()
        return self.proc.wait()


def _exit_notifier(pid: int) -> tuple[int, threading.Thread | None]:
    """An fd that becomes readable when ``pid`` exits, without reaping it.

    A pidfd where the kernel has them; otherwise a thread in ``waitid(WNOWAIT)`` writing to a pipe.
    """
    try:
        return os.pidfd_open(pid), None
    except (AttributeError, OSError):
        pass
    read_fd, write_fd = os.pipe()

    def wait() -> None:
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        finally:
            os.write(write_fd, b"x")
            os.close(write_fd)

    thread = threading.Thread(target=wait, name=f"aidp-wait-{pid}", daemon=True)
    thread.start()
    return read_fd, thread


def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float,
    log: CappedLog,
    grace_s: float = 2.0,
    mask: Sequence[str] = (),
    on_start: Callable[[int], None] | None = None,
    on_output: Callable[[bytes], None] | None = None,
    cancel: threading.Event | None = None,
    token: str | None = None,
    interrupt_signal: int = signal.SIGTERM,
) -> ProcessResult:
    """Run ``argv`` to completion in its own session, output into ``log``, and kill what it left.

    Args:
        argv: the command; ``argv[0]`` is looked up on ``env["PATH"]``.
        cwd: working directory.
        env: the child's whole environment (see :func:`build_env`); ``AIDP_PROCESS_TOKEN`` is
            added.
        timeout_s: wall-clock seconds; then ``interrupt_signal`` to the group, ``grace_s``
            seconds later SIGKILL to the group and to every process carrying the token.
        log: receives stdout and stderr merged, masked; it is not closed here.
        mask: secret values replaced by ``***`` in the log and in ``on_output`` (values under 4
            characters are ignored).
        on_start: called with the pid right after the start (record pid and token before waiting).
        on_output: called with each masked piece of output (whole lines unless a line is huge).
        cancel: when set (checked every 0.1 s), the process is killed like at a timeout.
        token: the process token; a random one if None (it is returned in the result).
        interrupt_signal: the first signal at a timeout or cancel (SIGINT for tools that save
            their state on Ctrl-C, such as Aider).

    Returns:
        a :class:`ProcessResult`. After it returns, nothing of the process group is left running,
        nor any descendant still holding the output pipe (except one that both left the group and
        cleared its environment; its pipe is then abandoned after a second).

    Raises:
        ToolError: the command or the working directory does not exist or cannot be executed.
    """
    if not argv:
        raise ToolError("empty command")
    token = new_token() if token is None else token
    _check_token(token)
    masker = SecretMasker(mask)
    child_env = dict(env)
    child_env[TOKEN_ENV] = token
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        if exc.filename is not None and os.fspath(exc.filename) == os.fspath(cwd):
            raise ToolError(f"working directory not found: {cwd}") from exc
        raise ToolError(f"command not found: {argv[0]}") from exc
    except OSError as exc:  # permission denied, not a directory, exec format error ...
        raise ToolError(f"command not executable: {argv[0]} ({exc.strerror})") from exc

    pid = proc.pid
    timed_out = cancelled = False
    try:
        run = _Run(proc, log, masker, on_output)
    except BaseException:
        _signal(pid, signal.SIGKILL, group=True)
        proc.wait()
        raise
    try:
        if on_start is not None:
            on_start(pid)
        deadline = started + timeout_s
        while not run.exited:
            now = time.monotonic()
            if now >= deadline:
                timed_out = True
                break
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            run.step(min(deadline - now, CANCEL_POLL_S) if cancel is not None else deadline - now)

        if timed_out or cancelled:
            # The marker the detectors stop reading at: what follows is the tool's reaction to
            # being stopped (a KeyboardInterrupt traceback), not evidence of its failure.
            log.note(f"{STOP_MARKER} {signal.Signals(interrupt_signal).name} "
                     f"({'timeout' if timed_out else 'cancelled'})")
            _signal(pid, interrupt_signal, group=True)
            run.pump(time.monotonic() + grace_s, need_exit=True, need_eof=True)
            _signal(pid, signal.SIGKILL, group=True)
            kill_by_token(token)
        else:
            # The leader is a zombie until reaped below, so its pid (= the group id) is not reused.
            _signal(pid, signal.SIGKILL, group=True)
            run.pump(time.monotonic() + PIPE_LINGER_S, need_exit=False, need_eof=True)
            if run.out_fd is not None:  # an escaped descendant still holds the pipe
                kill_by_token(token)
        run.pump(time.monotonic() + FINAL_DRAIN_S, need_exit=True, need_eof=True)
        returncode = run.finish()
    except BaseException:
        # Whatever went wrong (a callback raised, KeyboardInterrupt), leave nothing running.
        _signal(pid, signal.SIGKILL, group=True)
        kill_by_token(token)
        run.close()
        raise
    return ProcessResult(
        pid=pid,
        exit_code=returncode if returncode >= 0 else None,
        signal=-returncode if returncode < 0 else None,
        timed_out=timed_out,
        cancelled=cancelled,
        duration_s=time.monotonic() - started,
        output_bytes=run.output_bytes,
        token=token,
    )


def run_captured(
    argv: Sequence[str],
    *,
    cwd: Path | None,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    merge_stderr: bool = False,
    errors: str = "surrogateescape",
) -> subprocess.CompletedProcess[str]:
    """Run a short command in its own session and return its exit code and captured output.

    The cheap mode for commands whose output is parsed (git runs on every step): one ``Popen`` and
    one ``communicate``, no threads, no ``/proc`` scan, no process token.

    Args:
        argv: the command; ``argv[0]`` is looked up on the ``PATH`` of ``env``.
        cwd: working directory (None: aidp's own).
        timeout_s: wall-clock seconds until the whole process group is killed with SIGKILL.
        env: the child's whole environment (None: aidp's own).
        input: text fed to stdin (UTF-8); without it stdin is ``/dev/null``.
        merge_stderr: send stderr into stdout (the result's ``stderr`` is then ``""``).
        errors: how undecodable UTF-8 output is decoded (``surrogateescape`` keeps the bytes,
            ``replace`` is for text shown to people).

    Returns:
        a :class:`subprocess.CompletedProcess` with ``argv`` as a list, ``returncode`` (negative:
        killed by that signal), ``stdout`` and ``stderr`` as text. A non-zero exit is a result,
        not an error.

    Raises:
        OSError: the command or the working directory does not exist or cannot be executed
            (``FileNotFoundError`` for a missing one).
        subprocess.TimeoutExpired: the command ran longer than ``timeout_s``; its process group
            was killed and the leader reaped before this is raised (``output`` and ``stderr``
            carry what was read). A descendant that left the group with ``setsid`` is not
            hunted; its pipes are abandoned after a second.
    """
    args = list(argv)
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors=errors,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(input, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stdout, stderr = _kill_group_and_reap(proc)
        raise subprocess.TimeoutExpired(args, timeout_s, output=stdout, stderr=stderr) from None
    except BaseException:  # KeyboardInterrupt and the like: leave nothing running
        _kill_group_and_reap(proc)
        raise
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr or "")


def _kill_group_and_reap(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGKILL the process group of ``proc``, reap the leader and return the rest of its output.

    Reading stops after :data:`FINAL_DRAIN_S` seconds when a descendant outside the group still
    holds a pipe.
    """
    _signal(proc.pid, signal.SIGKILL, group=True)
    try:
        stdout, stderr = proc.communicate(timeout=FINAL_DRAIN_S)
    except subprocess.TimeoutExpired:
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.wait()
        return "", ""
    return stdout or "", stderr or ""


def spawn(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str],
          output: Path) -> subprocess.Popen[bytes]:
    """Start a long-lived child (a run worker of ``aidp serve``) in its own session and process
    group, stdin closed, stdout and stderr appended to the file ``output``, and return it
    without waiting: the caller watches it with ``poll()``.

    Its output goes to a file, not a pipe, so the child outlives its parent's death (``kill -9``
    of the service) without a broken pipe stopping it.

    Raises:
        OSError: the command or the working directory cannot be executed.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "ab") as sink:
        return subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)


def signal_group(pid: int, sig: int) -> bool:
    """Send ``sig`` to the process group led by ``pid`` (a child from :func:`spawn`); False if
    there is none left."""
    return _signal(pid, sig, group=True)
