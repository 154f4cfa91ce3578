"""``aidp fake-llm``: serve a scripted OpenAI-compatible endpoint (and a proxy sink) locally, or
record such a script from a real provider.

``--script FILE`` serves the script; ``--record UPSTREAM --script-out FILE`` forwards every
request to the upstream base URL and writes one script step per model answer. Either way it
prints the base URL (``http://127.0.0.1:PORT/v1``) as the only line on stdout, then serves until
Ctrl-C or SIGTERM and exits 0. Bad input (a bad script, both or neither mode, a bad URL) exits 2
with one line naming the problem. Refused outbound connections (the proxy sink) and answers the
recorder could not record are reported on stderr as they happen.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Protocol

import click

__all__ = ["fake_llm"]


class _Served(Protocol):
    @property
    def base_url(self) -> str: ...

    def start(self) -> object: ...

    def stop(self) -> None: ...


@click.command("fake-llm")
@click.option("--script", "script_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Serve this YAML or JSON list of steps (replies, tool calls, errors, ...).")
@click.option("--record", "upstream", metavar="UPSTREAM_URL",
              help="Instead, forward to this OpenAI base URL (e.g. https://api.openai.com/v1) "
                   "and record its answers as a script (needs --script-out).")
@click.option("--script-out", "script_out", type=click.Path(path_type=Path, dir_okay=False),
              help="With --record: the script file to write (JSON for .json, else YAML).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=0, type=click.IntRange(0, 65535), show_default=True,
              help="Port to bind; 0 picks a free one.")
@click.option("--model", default="fake-model", show_default=True,
              help="Model id to list (with --script).")
@click.option("--log-requests", "log_path", type=click.Path(path_type=Path, dir_okay=False),
              help="With --script: append every request (credentials masked) to this JSONL "
                   "file.")
def fake_llm(script_path: Path | None, upstream: str | None, script_out: Path | None, host: str,
             port: int, model: str, log_path: Path | None) -> None:
    """Serve a scripted OpenAI-compatible API for tools and tests, without spending tokens;
    or record such a script from a real provider.

    Point clients at the printed base URL; set HTTPS_PROXY/HTTP_PROXY to the same host and port
    (with NO_PROXY=127.0.0.1,localhost) to catch any stray outbound connection (--script).
    """
    from aidp.exceptions import InputError

    if script_path is not None and upstream is not None:
        raise InputError("--script (serve a script) and --record (record one) are mutually "
                         "exclusive; give one")
    if script_path is None and upstream is None:
        raise InputError("give --script FILE to serve a script, or --record UPSTREAM_URL "
                         "--script-out FILE to record one")
    server: _Served
    if upstream is not None:
        if script_out is None:
            raise InputError("--record needs --script-out FILE: where to write the script")
        if log_path is not None:
            raise InputError("--log-requests goes with --script; the recorder writes no "
                             "request log")
        from aidp.testing.recorder import Recorder

        recorder = Recorder(upstream, script_out, host=host, port=port)
        recorder.on_problem = lambda message: click.echo(f"fake-llm: {message}", err=True)
        server = recorder
        banner = (f"fake-llm: recording {recorder.upstream} into {script_out}; "
                  "Ctrl-C to stop")
    else:
        assert script_path is not None
        if script_out is not None:
            raise InputError("--script-out goes with --record; --script only reads its file")
        from aidp.testing.fake_llm import FakeLLM
        from aidp.testing.script import load_script

        script = load_script(script_path)
        fake = FakeLLM(script, host=host, port=port, model=model, record_path=log_path)
        fake.on_stray = lambda target: click.echo(
            f"fake-llm: refused outbound connection to {target}", err=True)
        server = fake
        steps = len(script.steps)
        banner = (f"fake-llm: {steps} step{'s' if steps != 1 else ''} from {script_path}; "
                  f"proxy sink at {fake.proxy_url}; Ctrl-C to stop")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        server.start()
    except OSError as exc:
        signal.signal(signal.SIGTERM, previous)
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    try:
        click.echo(server.base_url)
        click.echo(banner, err=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
