"""``aidp serve``: the REST API, live events, webhooks and the runs started through them."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import click

from aidp.cli.common import Context, executor_options, repo_options
from aidp.exceptions import InputError

__all__ = ["serve"]


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # uvicorn leaves Nagle on for sockets it is handed; accepted connections inherit this, so
    # a response written in two parts (headers, body) is not held ~40 ms for the client's
    # delayed ACK (every request of a keep-alive client took 45 ms instead of 1-2)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror}",
                         hint="pick another --port (0: any free port)") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@click.command()
@repo_options
@executor_options
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1; "
              "[serve] host).")
@click.option("--port", type=int, default=None, help="Port (default 8765; 0: any free port; "
              "[serve] port).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
              help="Log lines on stderr, and in the run workers' logs: text, or json (one "
              "object per line; [serve] log_format, AIDP_LOG_FORMAT).")
def serve(repo: Path | None, config_path: Path | None, host: str | None,
          port: int | None, log_format: str | None) -> None:
    """Serve the REST API under /api/v1 and the web dashboard at / until Ctrl-C or SIGTERM.

    Runs started through the API run in worker processes of the service ([serve] max_workers
    at once); stopping the service stops them resumably, starting it again resumes them.

    Every route but /api/v1/health/live needs a bearer token (`aidp tokens create NAME`).
    The schema is at /api/v1/openapi.json, a docs page at /api/v1/docs, Prometheus metrics at
    /metrics (a read token). The dashboard signs in with a token too ([serve] dashboard =
    false turns it off).
    """
    try:
        import uvicorn
        from uvicorn.config import LOGGING_CONFIG

        from aidp.api.server import create_app
    except ImportError as exc:
        raise InputError(f"aidp serve needs the web stack ({exc.name} is missing)",
                         hint="install aidp with the serve extra: pip install 'aidp[serve]'"
                         ) from exc
    ctx = Context(repo, config_path)
    if log_format is not None:  # the workers read it from here (service_runs.start_worker)
        ctx.app.settings = ctx.settings.model_copy(update={
            "serve": ctx.settings.serve.model_copy(update={"log_format": log_format})})
    settings = ctx.app.settings.serve
    from aidp.app.logs import configure_logging

    configure_logging(settings.log_format)
    ctx.ensure_aidp_dir()
    ctx.app.store(create=True)
    host = host or settings.host
    sock = _listen(host, settings.port if port is None else port)
    bound = sock.getsockname()[1]
    from aidp.api.supervisor import lower_priority_hook, supervisor_hook
    from aidp.app.webhook_sender import lifespan as webhook_sender

    hook = supervisor_hook(config_path.resolve() if config_path is not None else None)
    app = create_app(ctx.app, listen_host=host,
                     lifespan_hooks=[hook, webhook_sender(ctx.app),
                                     lower_priority_hook(settings.request_nice)])
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"aidp serve: http://{shown}:{bound}/api/v1 (repository {ctx.repo})")
    sys.stdout.flush()
    # json: uvicorn's records go to the handler configure_logging installed (log_config None)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=10,
                            log_config=None if settings.log_format == "json" else LOGGING_CONFIG)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        ctx.close()
