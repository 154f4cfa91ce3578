"""Observability of ``aidp serve``: ``GET /metrics`` in the Prometheus text format, scraped
from the real service during and after a run and parsed by prometheus_client's parser plus a
stricter reading of our own; its token; label escaping; the webhook backlog; and the JSON log
lines of the service and of its run workers."""

from __future__ import annotations

import io
import json
import logging
import math
import re
import socket
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from aidp import __version__
from aidp.app.context import AppContext
from aidp.app.logs import JsonFormatter
from aidp.app.metrics import DURATION_BUCKETS_S, METRICS, ServiceGauges, exposition
from aidp.app.prometheus import CONTENT_TYPE, Family, render
from aidp.exceptions import ConfigError
from tests.api.conftest import Served, start_served
from tests.api.test_service_runs import _finished, _kill_workers, _plan, _start, _wait
from tests.conftest import Cli, commit_files

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
_SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
_ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")


def parse(text: str) -> Samples:
    """Every sample of an exposition, by (name, sorted labels). Fails on anything malformed:
    prometheus_client's parser, plus what it lets pass -- a sample outside the family its
    ``# TYPE`` line announced, a family without HELP or TYPE, a family twice, a duplicate
    series, a missing final newline."""
    assert text.endswith("\n")
    families = list(text_string_to_metric_families(text))
    samples: Samples = {}
    for family in families:
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = sample.value
    current: str | None = None
    seen: dict[str, set[str]] = defaultdict(set)
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            kind, name = line.split(" ", 3)[1:3]
            assert kind not in seen[name], f"{kind} twice for {name}"
            seen[name].add(kind)
            current = name
            continue
        assert not line.startswith("#") and line, f"unexpected line {line!r}"
        name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
        assert name is not None and current is not None, line
        suffixes = ("", "_bucket", "_sum", "_count")
        assert any(name.group() == current + s for s in suffixes), (current, line)
    assert all(kinds == {"HELP", "TYPE"} for kinds in seen.values()), seen
    assert set(seen) == {f.name + ("_total" if f.type == "counter" else "") for f in families}
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of every series of ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items()
               if n == name and set(labels.items()) <= set(ls))


def scrape(served: Served, path: str = "/metrics", scope: str | None = "read") -> Samples:
    with served.client(scope) as client:
        answer = client.get(served.url.removesuffix("/api/v1") + path)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == CONTENT_TYPE
    return parse(answer.text)


def wait_for(served: Served, until: Callable[[Samples], bool], timeout: float = 60,
             what: str = "") -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(served)
        if until(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"metrics never showed {what}: "
                                 f"{ {k: v for k, v in samples.items() if v} }")
        time.sleep(0.1)


def check_histograms(samples: Samples, name: str) -> None:
    """Per label set: buckets ascend in ``le`` and never decrease, ``+Inf`` equals
    ``_count``."""
    by_labels: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = defaultdict(list)
    for (n, labels), v in samples.items():
        if n == f"{name}_bucket":
            rest = tuple(x for x in labels if x[0] != "le")
            by_labels[rest].append((float(dict(labels)["le"]), v))
    assert by_labels, f"no {name} series"
    for labels, buckets in by_labels.items():
        buckets.sort()
        assert [b for b, _ in buckets] == [*DURATION_BUCKETS_S, math.inf]
        counts = [c for _, c in buckets]
        assert counts == sorted(counts), (labels, counts)
        assert counts[-1] == samples[(f"{name}_count", labels)], labels


def test_a_run_is_counted_while_it_runs_and_after_it_ends(served: Served) -> None:
    """A run started through the API shows as running (run, steps, a worker) while it runs;
    after, the completed counts match the plan and the attempt histogram counts every attempt."""
    shape = {"w0": 3, "w1": 3, "w2": 2}
    path = _plan(served.cli.cwd, "metrics", shape, sleep=0.5)
    before = scrape(served)
    assert value(before, "aidp_runs", status="running") == 0
    assert value(before, "aidp_build_info", version=__version__) == 1
    run_id = _start(served, {"files": [path]})
    try:
        during = wait_for(served, lambda s: value(s, "aidp_runs", status="running") == 1
                          and value(s, "aidp_steps", state="running") >= 1, 60, "a running step")
        assert value(during, "aidp_open_steps", state="running") >= 1
        assert value(during, "aidp_workstreams", state="running") >= 1
        assert value(during, "aidp_service_runs", state="active") == 1
        assert value(during, "aidp_service_workers") == 1
        assert value(during, "aidp_service_runs_waiting") == 0
        view = _wait(served, run_id, _finished)
        assert view["status"] == "completed"
        after = wait_for(served, lambda s: value(s, "aidp_service_workers") == 0
                         and value(s, "aidp_service_runs", state="done") == 1, 30,
                         "the worker gone")
    finally:
        _kill_workers([run_id])
    steps = sum(shape.values())
    attempts = sum(s["attempts_total"] for w in view["workstreams"] for s in w["steps"])
    assert attempts >= steps
    assert value(after, "aidp_runs", status="completed") == 1
    assert value(after, "aidp_runs", status="running") == 0
    assert value(after, "aidp_workstreams", state="completed") == len(shape)
    assert value(after, "aidp_steps", state="completed") == steps
    assert total(after, "aidp_open_steps") == 0
    check_histograms(after, "aidp_attempt_duration_seconds")
    count = total(after, "aidp_attempt_duration_seconds_count")
    assert count == attempts
    assert value(after, "aidp_attempt_duration_seconds_count", profile="shell",
                 outcome="succeeded") == steps
    # each step slept 0.5 s: none is in the 0.1 s bucket, the sum is at least that
    assert total(after, "aidp_attempt_duration_seconds_bucket", le="0.1") == 0
    assert total(after, "aidp_attempt_duration_seconds_sum") >= 0.5 * steps
    # nothing called a model: no usage series; the alias answers the same families
    assert total(after, "aidp_model_requests_total") == 0
    again = scrape(served, "/api/v1/metrics")
    assert {n for n, _ in again} == {n for n, _ in after}


@_SQLITE
def test_metrics_need_a_read_token_and_stay_out_of_the_schema(served: Served) -> None:
    """/metrics and /api/v1/metrics answer 401 problem+json without a valid token, 200 to a
    read token, 400 to a foreign Host; neither is in the OpenAPI schema."""
    root = served.url.removesuffix("/api/v1")
    for path in ("/metrics", "/api/v1/metrics"):
        with served.client(None) as anon:
            refused = anon.get(root + path)
            forged = anon.get(root + path, headers={
                "Authorization": "Bearer aidp_000000000000_" + "x" * 43})
            rebound = anon.get(root + path, headers={"Host": "evil.example"})
        for answer in (refused, forged):
            assert answer.status_code == 401, (path, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.headers["www-authenticate"].startswith("Bearer")
        assert rebound.status_code == 400
        assert scrape(served, path, "read")
    with served.client("read") as client:
        schema = client.get("/openapi.json").json()
    assert not [p for p in schema["paths"] if "metrics" in p]


def test_every_listed_metric_is_written_and_documented(repo: Path) -> None:
    """The exposition writes exactly the families METRICS lists, each documented in
    docs/operations.md."""
    with AppContext.open(repo) as app:
        text = exposition(app, ServiceGauges(started_at=1.0, max_workers=2, workers=0,
                                             waiting=0))
    names = re.findall(r"^# TYPE (\S+) ", text, re.M)
    assert tuple(names) == METRICS
    parse(text)
    docs = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    assert [n for n in METRICS if f"`{n}`" not in docs] == []


WEIRD = 'we"ird\\name\nx'


@_SQLITE
def test_label_values_with_quotes_backslashes_and_newlines_survive(cli: Cli) -> None:
    """A tool profile (and so a breaker key) named with a quote, a backslash and a newline is
    escaped in its labels and parses back to the same name."""
    commit_files(cli.cwd, {
        "aidp.toml": '[tools."we\\"ird\\\\name\\nx"]\nadapter = "shell"\n'
                     "breaker = { enabled = true }\n",
        "weird.json": json.dumps({"version": 1, "workstreams": [
            {"id": "a", "steps": [{"id": "s", "tool": WEIRD, "run": "echo hi > f.txt"}]}]}),
    }, "a weird profile")
    cli("run", "weird.json", check=True)
    served = start_served(cli)
    try:
        samples = scrape(served)
    finally:
        served.stop()
    assert value(samples, "aidp_attempt_duration_seconds_count", profile=WEIRD,
                 outcome="succeeded") == 1
    key = f"profile:{WEIRD}"
    assert value(samples, "aidp_breaker_state", key=key, state="closed") == 1
    assert value(samples, "aidp_breaker_state", key=key, state="open") == 0
    assert value(samples, "aidp_breaker_calls_total", key=key, result="successes") == 1


@settings(max_examples=200, deadline=None)
@given(st.text(), st.text().map(str.strip))  # parsers trim a help text's ends
def test_any_label_value_and_help_round_trip(label: str, help_text: str) -> None:
    """Whatever a label value or help text holds, the parser reads back the same value."""
    family = Family("aidp_x", "gauge", help_text).add(1.5, key=label)
    parsed = list(text_string_to_metric_families(render([family])))
    assert [(s.labels, s.value) for s in parsed[0].samples] == [({"key": label}, 1.5)]
    assert parsed[0].documentation == help_text


def test_bad_names_and_buckets_are_refused() -> None:
    """A metric or label name outside the format, or buckets out of order, is a ValueError."""
    for bad in (lambda: Family("aidp-x", "gauge", ""),
                lambda: Family("aidp_x", "gauge", "").add(1, **{"bad-label": "v"}),
                lambda: Family("aidp_x", "gauge", "").add(1, __reserved="v"),
                lambda: Family("aidp_x", "histogram", "", bounds=(1.0, 0.5)),
                lambda: render([Family("aidp_x", "gauge", ""), Family("aidp_x", "gauge", "")])):
        with pytest.raises(ValueError):
            bad()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@_SQLITE
def test_the_webhook_backlog_counts_a_dead_delivery(cli: Cli,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A delivery that used its last attempt counts as dead; the API lists as many."""
    monkeypatch.setenv("AIDP_WEBHOOKS__POLL_INTERVAL_S", "0.2")
    monkeypatch.setenv("AIDP_WEBHOOKS__MAX_ATTEMPTS", "1")
    monkeypatch.setenv("WH_METRICS_SECRET", "metrics-secret")
    served = start_served(cli)
    try:
        with served.client("admin") as client:
            made = client.post("/webhooks", json={
                "url": f"http://127.0.0.1:{_closed_port()}/hook", "events": ["run.*"],
                "secret_env": "WH_METRICS_SECRET", "allow_private": True})
            assert made.status_code == 201, made.text
        commit_files(cli.cwd, {"one.yaml": "version: 1\nworkstreams:\n  - id: a\n    steps:\n"
                               "      - id: s\n        run: 'true'\n"}, "one step")
        cli("run", "one.yaml", check=True)
        # every run.* event of the run is queued and has died once the API lists as many dead
        # deliveries as the scrape before it counted, with none pending
        deadline = time.monotonic() + 60
        while True:
            samples = wait_for(served, lambda s: value(s, "aidp_webhook_deliveries",
                                                       status="dead") >= 1
                               and value(s, "aidp_webhook_deliveries", status="pending") == 0,
                               60, "a dead delivery")
            with served.client("admin") as client:
                dead = client.get("/webhooks/deliveries", params={"status": "dead"}).json()
            if value(samples, "aidp_webhook_deliveries", status="dead") == len(dead):
                break
            assert time.monotonic() < deadline, (samples, dead)
            time.sleep(0.3)
    finally:
        served.stop()
    assert value(samples, "aidp_webhook_deliveries", status="dead") == len(dead)
    assert value(samples, "aidp_webhook_deliveries", status="delivered") == 0
    assert value(samples, "aidp_webhook_oldest_pending_age_seconds") == 0


def test_the_oldest_pending_delivery_has_an_age(cli_inproc: Cli) -> None:
    """A queued delivery not yet sent makes the backlog's age the time since it was queued."""
    from aidp.app.webhook_sender import enqueue
    from aidp.app.webhooks import add_webhook

    repo = cli_inproc.cwd
    commit_files(repo, {"one.yaml": "version: 1\nworkstreams:\n  - id: a\n    steps:\n"
                        "      - id: s\n        run: 'true'\n"}, "one step")
    with AppContext.open(repo) as app:
        app.store(create=True)
        add_webhook(app, "http://127.0.0.1:9/hook", ["run.*"], "WH_NONE", allow_private=True)
    cli_inproc("run", "one.yaml", check=True)
    with AppContext.open(repo) as app:
        queued_at = time.time()
        assert enqueue(app, app.settings.webhooks) >= 1
        gauges = ServiceGauges(started_at=queued_at, max_workers=1)
        samples = parse(exposition(app, gauges, now=queued_at + 42))
        later = parse(exposition(app, gauges, now=queued_at + 50))  # cached rows, new clock
    assert value(samples, "aidp_webhook_deliveries", status="pending") >= 1
    assert 41 <= value(samples, "aidp_webhook_oldest_pending_age_seconds") <= 43
    assert 49 <= value(later, "aidp_webhook_oldest_pending_age_seconds") <= 51


def _json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` as a JSON log object with the fixed fields (fails otherwise)."""
    objects = []
    for line in text.splitlines():
        record = json.loads(line)
        assert isinstance(record, dict), line
        assert {"ts", "level", "logger", "msg"} <= set(record), line
        assert _ISO_UTC.match(record["ts"]), line
        objects.append(record)
    return objects


def test_serve_and_its_workers_log_json_lines(cli: Cli) -> None:
    """`aidp serve --log-format json`: every stderr line of the service and every line of a
    run worker's log is one JSON object; the lines about a run carry its id (and the
    worker's its workstream, step and attempt); no token appears."""
    shape = {"w0": 2, "w1": 1}
    path = _plan(cli.cwd, "logs", shape, sleep=0.1)
    served = start_served(cli, "--log-format", "json")
    try:
        run_id = _start(served, {"files": [path]})
        _wait(served, run_id, _finished)
        wait_for(served, lambda s: value(s, "aidp_service_workers") == 0, 30, "worker gone")
    finally:
        served.stop()
        _kill_workers([run_id])
    output = "".join(served.output)  # what the service wrote to stdout and stderr
    service = _json_lines("\n".join(line for line in output.splitlines()
                                    if not line.startswith("aidp serve: http://")))
    about = [r for r in service if r.get("run") == run_id]
    assert {r["logger"] for r in about} >= {"aidp.serve.supervisor"}, service
    assert any("worker" in r["msg"] and "pid" in r for r in about)
    worker = _json_lines((cli.cwd / ".aidp" / "serve" / f"{run_id}.log").read_text())
    assert worker and all(r["run"] == run_id for r in worker if "run" in r)
    steps = [r for r in worker if r.get("event") == "step.completed"]
    assert len(steps) == sum(shape.values())
    assert all({"workstream", "step", "attempt"} <= set(r) for r in steps)
    assert any(r.get("status") == "completed" for r in worker)
    for token in served.tokens.values():
        assert token not in output


def test_a_json_record_keeps_an_exception_on_its_line() -> None:
    """An exception is the `exc` field of its one line; a newline in a message stays escaped."""
    logger = logging.getLogger("aidp.test_metrics")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise RuntimeError("boom\nsecond line")
        except RuntimeError:
            logger.exception("it failed\non two lines", extra={"run": "R1", "step": "s"})
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    record = _json_lines(lines[0])[0]
    assert (record["level"], record["msg"], record["run"], record["step"]) == (
        "error", "it failed\non two lines", "R1", "s")
    assert "RuntimeError: boom" in record["exc"] and "Traceback" in record["exc"]


def test_the_log_format_comes_from_the_file_the_environment_or_is_refused(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """[serve] log_format and AIDP_LOG_FORMAT choose the format; another value is a
    ConfigError naming the setting (never a traceback)."""
    monkeypatch.delenv("AIDP_LOG_FORMAT", raising=False)
    assert AppContext.open(repo).settings.serve.log_format == "text"
    (repo / "aidp.toml").write_text('[serve]\nlog_format = "json"\n')
    assert AppContext.open(repo).settings.serve.log_format == "json"
    (repo / "aidp.toml").unlink()
    monkeypatch.setenv("AIDP_LOG_FORMAT", "JSON")
    assert AppContext.open(repo).settings.serve.log_format == "json"
    monkeypatch.setenv("AIDP_LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match=r"serve\.log_format"):
        AppContext.open(repo)


@_SQLITE
def test_a_bad_log_format_option_is_a_usage_error(cli: Cli) -> None:
    """`aidp serve --log-format xml` exits 2 with a message, no traceback."""
    done = cli("serve", "--log-format", "xml", "--port", "0", timeout=30)
    assert done.returncode == 2 and "log-format" in done.stderr
    assert "Traceback" not in done.stderr
