"""``aidp fake-llm``: serve a scripted OpenAI-compatible endpoint (and a proxy sink) locally.

Prints the base URL (``http://127.0.0.1:PORT/v1``) as the only line on stdout, then serves until
Ctrl-C or SIGTERM and exits 0. A bad script exits 2 naming the file, the line and the step.
Refused outbound connections (the proxy sink) are reported on stderr as they happen.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click

__all__ = ["fake_llm"]


@click.command("fake-llm")
@click.option("--script", "script_path", required=True,
              type=click.Path(path_type=Path, dir_okay=False),
              help="YAML or JSON list of steps (replies, tool calls, errors, hangs, ...).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=0, type=click.IntRange(0, 65535), show_default=True,
              help="Port to bind; 0 picks a free one.")
@click.option("--model", default="fake-model", show_default=True, help="Model id to list.")
@click.option("--record", "record_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Append every request (credentials masked) to this JSONL file.")
def fake_llm(script_path: Path, host: str, port: int, model: str,
             record_path: Path | None) -> None:
    """Serve a scripted OpenAI-compatible API for tools and tests, without spending tokens.

    Point clients at the printed base URL; set HTTPS_PROXY/HTTP_PROXY to the same host and port
    (with NO_PROXY=127.0.0.1,localhost) to catch any stray outbound connection.
    """
    from aidp.testing.fake_llm import FakeLLM
    from aidp.testing.script import load_script

    script = load_script(script_path)
    server = FakeLLM(script, host=host, port=port, model=model, record_path=record_path)
    server.on_stray = lambda target: click.echo(
        f"fake-llm: refused outbound connection to {target}", err=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        server.start()
    except OSError as exc:
        from aidp.exceptions import InputError

        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    try:
        click.echo(server.base_url)
        steps = len(script.steps)
        click.echo(f"fake-llm: {steps} step{'s' if steps != 1 else ''} from {script_path}; "
                   f"proxy sink at {server.proxy_url}; Ctrl-C to stop", err=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
