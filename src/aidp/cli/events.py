"""``aidp events [--follow] [--run RUN] [--type T ...] [--url URL] [--json]``: the journal as
CloudEvents, one line each.

Without ``--url`` it reads the repository's database through the application layer (``--follow``
polls it). With ``--url`` it is a client of ``aidp serve``'s ``GET /api/v1/events`` stream: it
parses the server-sent events and, when the connection drops, reconnects with ``Last-Event-ID``
so that no event is missed or printed twice. httpx (the ``serve`` extra) is imported only then.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from aidp.cli.common import Context, repo_options
from aidp.exceptions import AidpError, InputError, NotFoundError

__all__ = ["events"]

POLL_S = 0.25
#: Consecutive failed connections before ``--url`` gives up.
MAX_RETRIES = 20


@click.command()
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events as they happen "
              "(with --run: until the run finishes).")
@click.option("--run", "run_ref", help="Only this run's events (id or unique prefix).")
@click.option("--type", "types", multiple=True, help="Only these kinds: a kind (step.failed), "
              "a glob (step.*) or a category (gate, breaker, ...). Repeatable.")
@click.option("--after", type=click.IntRange(min=0), help="Start after this event id "
              "(default: the beginning; with --follow and no --run: now).")
@click.option("--url", help="Follow an `aidp serve` at this URL (http://HOST:PORT) instead "
              "of the local database.")
@click.option("--token-env", default="AIDP_TOKEN", show_default=True,
              help="Environment variable holding the API token (with --url).")
@click.option("--heartbeat", type=click.FloatRange(min=0.1), default=15.0, hidden=True)
@click.option("--json", "as_json", is_flag=True, help="Print CloudEvents JSON, one per line.")
@repo_options
def events(follow: bool, run_ref: str | None, types: tuple[str, ...], after: int | None,
           url: str | None, token_env: str, heartbeat: float, as_json: bool,
           repo: Path | None, config_path: Path | None) -> None:
    """Print the journal's events (run, workstream, step, attempt, gate, breaker, budget,
    proposal, webhook), or follow them live."""
    from aidp.app.events import check_patterns, summary_line

    check_patterns(types)
    wanted = list(types)
    if follow and run_ref and types:
        wanted.append("run.finished")  # to know when to stop; not printed unless asked for

    def show(doc: dict[str, Any]) -> bool:
        """Print ``doc`` if asked for; True when following a run that just finished."""
        from aidp.app.events import matches

        kind = str(doc.get("type", "")).removeprefix("dev.aidp.")
        if matches(kind, types):
            click.echo(json.dumps(doc, sort_keys=True) if as_json else summary_line(doc))
            sys.stdout.flush()
        return bool(follow and run_ref and kind == "run.finished")

    if url:
        _remote(url, token_env, run_ref, wanted, after, follow, heartbeat, show)
    else:
        _local(repo, config_path, run_ref, wanted, after, follow, show)


def _local(repo: Path | None, config_path: Path | None, run_ref: str | None,
           types: list[str], after: int | None, follow: bool,
           show: Callable[[dict[str, Any]], bool]) -> None:
    from aidp.app import queries
    from aidp.app.events import cloud_event, events_after, latest_event_id

    ctx = Context(repo, config_path)
    try:
        run_id = queries.resolve_run(ctx.app, run_ref) if run_ref else None
        cursor = after if after is not None else (
            latest_event_id(ctx.app) if follow and run_id is None else 0)
        while True:
            page = events_after(ctx.app, cursor, run_id=run_id, types=types)
            for event in page.events:
                if show(cloud_event(event)):
                    return
            if page.cursor == cursor and not page.events:
                if not follow:
                    return
                time.sleep(POLL_S)
            cursor = page.cursor
    finally:
        ctx.close()


def _remote(url: str, token_env: str, run_ref: str | None, types: list[str],
            after: int | None, follow: bool, heartbeat: float,
            show: Callable[[dict[str, Any]], bool]) -> None:
    """Follow ``url``'s event stream; reconnect (with Last-Event-ID) whenever it drops. Without
    --follow, stop at the first heartbeat: the stream has caught up."""
    import httpx

    token = os.environ.get(token_env, "")
    if not token:
        raise InputError(f"no API token in ${token_env}",
                         hint="`aidp tokens create NAME` makes one; pass --token-env NAME")
    base = url.rstrip("/")
    if not base.endswith("/api/v1"):
        base += "/api/v1"
    # without --follow, the first heartbeat says "caught up": ask for it soon
    params: list[tuple[str, str | int | float | bool | None]] = [
        ("heartbeat", heartbeat if follow else min(heartbeat, 0.5))]
    params += [("type", t) for t in types]
    if run_ref:
        params.append(("run", run_ref))
    last = after if after is not None else (None if follow and not run_ref else 0)
    failures = 0
    timeout = httpx.Timeout(10.0, read=max(3 * heartbeat, 5.0))
    with httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {token}"}) as client:
        while True:
            headers = {} if last is None else {"Last-Event-ID": str(last)}
            try:
                with client.stream("GET", f"{base}/events", params=params,
                                   headers=headers) as response:
                    if response.status_code != 200:
                        response.read()
                        raise _refusal(response.status_code, response.text, base)
                    failures = 0
                    for kind, value in _sse(response.iter_lines()):
                        if kind == "comment":
                            if not follow:
                                return
                            continue
                        doc = json.loads(value)
                        last = int(doc["id"])
                        if show(doc):
                            return
            except httpx.TransportError as exc:
                failures += 1
                if failures > MAX_RETRIES:
                    raise InputError(f"cannot reach {base}: {exc}",
                                     hint="is `aidp serve` running there?") from exc
                time.sleep(min(0.2 * 2 ** min(failures, 5), 5.0))


def _sse(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """("event", data) for each server-sent event, ("comment", text) for each comment line."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "event", "\n".join(data)
            data = []
        elif line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


def _refusal(status: int, body: str, base: str) -> AidpError:
    try:
        detail = str(json.loads(body).get("detail") or body)
    except (ValueError, AttributeError):
        detail = body[:200]
    if status == 404:
        return NotFoundError(detail)
    return InputError(f"{base}/events answered {status}: {detail}")
