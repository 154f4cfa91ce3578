"""What ``aidp serve`` tells Prometheus (``GET /metrics``): the run database's counts, attempt
durations, model usage, breakers and the webhook backlog, plus what only the service process
knows (its workers, its start).

This module owns *what* is measured and where it comes from; :mod:`aidp.app.prometheus` owns
the text format. Everything stored is read with a few aggregate SQL queries (the same on
SQLite and PostgreSQL) and rendered once per version of the database: while nobody commits,
a scrape is answered from memory (:meth:`~aidp.app.context.AppContext.cached`, SQLite's
``data_version``; on PostgreSQL the queries run on every scrape). What depends on the clock --
a breaker whose cooldown ran out is half-open, the age of the oldest pending delivery -- is
applied to the cached rows at each scrape, never cached itself.

The catalogue of metrics, with their meaning, is ``docs/operations.md``; :data:`METRICS` lists
their names (a test checks that the two agree).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aidp import __version__
from aidp.app.prometheus import Family, render
from aidp.core.states import RunState, StepState, WorkstreamState

if TYPE_CHECKING:
    from aidp.app.context import AppContext

__all__ = ["DURATION_BUCKETS_S", "METRICS", "ServiceGauges", "exposition"]

#: Upper bounds (seconds) of the attempt-duration histogram's buckets.
DURATION_BUCKETS_S = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)

#: Every metric family :func:`exposition` writes, in order.
METRICS = (
    "aidp_runs", "aidp_workstreams", "aidp_steps", "aidp_open_steps",
    "aidp_attempt_duration_seconds",
    "aidp_model_requests_total", "aidp_model_tokens_total", "aidp_model_cost_usd_total",
    "aidp_model_latency_seconds_total",
    "aidp_webhook_deliveries", "aidp_service_runs", "aidp_service_worker_restarts_total",
    # computed at each scrape
    "aidp_breaker_state", "aidp_breaker_failures", "aidp_breaker_opened_total",
    "aidp_breaker_calls_total", "aidp_webhook_oldest_pending_age_seconds",
    "aidp_service_workers", "aidp_service_max_workers", "aidp_service_runs_waiting",
    "aidp_build_info", "aidp_service_start_time_seconds",
)

#: Run states whose steps are still to be driven.
_UNENDED_RUNS = (RunState.PENDING.value, RunState.RUNNING.value)
_ENDED_RUNS = frozenset(s.value for s in RunState if s.terminal)
#: A step, workstream or profile never recorded is labelled so (as ``aidp usage`` does).
_UNKNOWN = "?"
_BREAKER_CALLS = ("admitted", "rejected", "successes", "transient_failures",
                  "permanent_failures", "expired", "released")


@dataclass(frozen=True)
class ServiceGauges:
    """What the service process knows and the database does not.

    Args:
        started_at: when the service started (epoch seconds).
        max_workers: ``[serve] max_workers``.
        workers: run workers alive now (None: no supervisor, as in an app built for tests).
        waiting: active service runs without a worker (waiting for a slot or a restart's
            backoff); None without a supervisor.
    """

    started_at: float
    max_workers: int
    workers: int | None = None
    waiting: int | None = None


@dataclass(frozen=True)
class _Stored:
    """What one version of the database gives: the rendered families that depend on it
    alone, and the rows the clock-dependent ones are computed from."""

    text: str
    breakers: tuple[Any, ...]
    oldest_pending: float | None


def exposition(app: AppContext, service: ServiceGauges, now: float | None = None) -> str:
    """The metrics of ``app``'s repository and service in the Prometheus text format 0.0.4
    (see :data:`aidp.app.prometheus.CONTENT_TYPE`). ``now``: epoch seconds (default: the
    clock), for the breakers' cooldowns and the backlog's age.

    Raises:
        sqlalchemy / driver errors when the database cannot be read (the API answers 500).
    """
    app.store(create=True)  # a service opens it at start; an app built for tests may not
    stored = app.cached(("metrics",), lambda: _read(app))
    now = time.time() if now is None else now
    return stored.text + render(_live(stored, service, now))


def _read(app: AppContext) -> _Stored:
    from aidp.state.breakers import BreakerBook

    store = app.store(create=True)
    read = store.read
    families: list[Family] = []

    def counts(name: str, label: str, help_text: str, sql: str, known: tuple[str, ...],
               params: dict[str, Any] | None = None) -> None:
        family = Family(name, "gauge", help_text)
        for value in known:  # every state, 0 included: a series never vanishes
            family.add(0, **{label: value})
        for row in read(sql, params):
            family.add(int(row.n), **{label: str(row.state)})
        families.append(family)

    counts("aidp_runs", "status", "Runs in the database, by status.",
           "SELECT status AS state, count(*) AS n FROM runs GROUP BY status",
           tuple(s.value for s in RunState))
    counts("aidp_workstreams", "state", "Workstreams of every run, by state.",
           "SELECT status AS state, count(*) AS n FROM workstreams GROUP BY status",
           tuple(s.value for s in WorkstreamState))
    counts("aidp_steps", "state", "Steps of every run, by state.",
           "SELECT status AS state, count(*) AS n FROM steps GROUP BY status",
           tuple(s.value for s in StepState))
    open_states = tuple(s.value for s in StepState if not s.terminal)
    counts("aidp_open_steps", "state",
           "Steps not yet ended of the runs not yet ended, by state: pending (waiting for its "
           "dependencies or a free slot), running, validating, retrying (waiting for its next "
           "attempt), circuit_open, awaiting_approval.",
           "SELECT s.status AS state, count(*) AS n FROM steps s JOIN runs r ON r.id = s.run_id "
           "WHERE r.status IN (:pending, :running) AND s.status IN ("
           + ", ".join(f":s{i}" for i in range(len(open_states))) + ") GROUP BY s.status",
           open_states, {"pending": _UNENDED_RUNS[0], "running": _UNENDED_RUNS[1],
                         **{f"s{i}": state for i, state in enumerate(open_states)}})
    families.append(_durations(read))
    families.extend(_model_usage(read))
    counts("aidp_webhook_deliveries", "status",
           "Webhook deliveries, by status (pending: queued or being retried; dead: gave up "
           "until redelivered).",
           "SELECT status AS state, count(*) AS n FROM webhook_deliveries GROUP BY status",
           ("pending", "delivered", "dead"))
    oldest = read("SELECT min(created_at) AS oldest FROM webhook_deliveries "
                  "WHERE status = 'pending'")[0].oldest
    families.extend(_service_runs(read))
    breakers = tuple(BreakerBook(store).list())
    return _Stored(render(families), breakers, None if oldest is None else float(oldest))


def _durations(read: Any) -> Family:
    family = Family("aidp_attempt_duration_seconds", "histogram",
                    "Wall-clock time of the attempts that ended, by tool profile and outcome.",
                    bounds=DURATION_BUCKETS_S)
    duration = "(finished_at - started_at)"
    # cumulative counts (d <= bound) in one pass; turned into per-bucket counts below
    buckets = ", ".join(f"sum(CASE WHEN {duration} <= {bound!r} THEN 1 ELSE 0 END) AS b{i}"
                        for i, bound in enumerate(DURATION_BUCKETS_S))
    rows = read(f"SELECT profile, outcome, count(*) AS n, sum({duration}) AS total, {buckets} "
                "FROM attempts WHERE finished_at IS NOT NULL GROUP BY profile, outcome")
    for row in rows:
        cumulative = [int(getattr(row, f"b{i}") or 0) for i in range(len(DURATION_BUCKETS_S))]
        per_bucket = [c - p for c, p in zip(cumulative, [0, *cumulative[:-1]], strict=True)]
        family.observe_many(per_bucket, float(row.total or 0.0), int(row.n),
                            profile=row.profile or _UNKNOWN, outcome=row.outcome or _UNKNOWN)
    return family


def _model_usage(read: Any) -> list[Family]:
    requests = Family("aidp_model_requests_total", "counter",
                      "Requests to model providers, by tool profile.")
    tokens = Family("aidp_model_tokens_total", "counter",
                    "Model tokens, by tool profile and kind (input, output; cached: the input "
                    "tokens the provider served from its cache, also counted in input).")
    cost = Family("aidp_model_cost_usd_total", "counter",
                  "Model cost in US dollars (the profiles' prices), by tool profile.")
    latency = Family("aidp_model_latency_seconds_total", "counter",
                     "Time spent waiting for model providers, by tool profile (divide by "
                     "aidp_model_requests_total for the mean latency).")
    rows = read("SELECT profile, sum(requests) AS requests, sum(input_tokens) AS input_tokens, "
                "sum(output_tokens) AS output_tokens, sum(cached_tokens) AS cached_tokens, "
                "sum(cost_usd) AS cost_usd, sum(latency_ms) AS latency_ms FROM attempts "
                "GROUP BY profile")
    for row in rows:
        used = (row.requests, row.input_tokens, row.output_tokens, row.cost_usd)
        if not any(used):  # a profile that never called a model (shell, manual)
            continue
        profile = row.profile or _UNKNOWN
        requests.add(int(row.requests or 0), profile=profile)
        for kind in ("input", "output", "cached"):
            tokens.add(int(getattr(row, f"{kind}_tokens") or 0), profile=profile, kind=kind)
        cost.add(float(row.cost_usd or 0.0), profile=profile)
        latency.add(int(row.latency_ms or 0) / 1000, profile=profile)
    return [requests, tokens, cost, latency]


def _service_runs(read: Any) -> list[Family]:
    runs = Family("aidp_service_runs", "gauge",
                  "Runs started through the service, by state: active (the service drives "
                  "them), given_up (their workers kept dying; resumable), done.")
    for state in ("active", "given_up", "done"):
        runs.add(0, state=state)
    restarts = Family("aidp_service_worker_restarts_total", "counter",
                      "Times a run worker of the service died and was started again.")
    total = 0
    for row in read("SELECT sr.state AS state, r.status AS status, count(*) AS n, "
                    "sum(sr.restarts) AS restarts FROM service_runs sr "
                    "LEFT JOIN runs r ON r.id = sr.run_id GROUP BY sr.state, r.status"):
        state = str(row.state)
        if state == "done" and row.status is not None and row.status not in _ENDED_RUNS:
            state = "given_up"
        runs.add(int(row.n), state=state)
        total += int(row.restarts or 0)
    restarts.add(total)
    return [runs, restarts]


def _live(stored: _Stored, service: ServiceGauges, now: float) -> list[Family]:
    """The families computed at each scrape (the clock, the service process)."""
    state = Family("aidp_breaker_state", "gauge",
                   "Circuit breakers: 1 for the state each key is in now (closed, open, "
                   "half_open), 0 for the others.")
    failures = Family("aidp_breaker_failures", "gauge",
                      "Transient failures in each closed breaker's window (it opens at its "
                      "failure_threshold).")
    opened = Family("aidp_breaker_opened_total", "counter", "Times each breaker opened.")
    calls = Family("aidp_breaker_calls_total", "counter",
                   "Calls through each breaker, by result: admitted, rejected (refused while "
                   "open), successes, transient_failures, permanent_failures, expired "
                   "(admitted, never reported), released (admitted, never ran).")
    for row in stored.breakers:
        snapshot = row.view(now)
        for value in ("closed", "open", "half_open"):
            state.add(1 if snapshot.state.value == value else 0, key=row.key, state=value)
        failures.add(len(snapshot.failures), key=row.key)
        counters = snapshot.counters.to_dict()
        opened.add(counters["opened"], key=row.key)
        for result in _BREAKER_CALLS:
            calls.add(counters[result], key=row.key, result=result)
    age = Family("aidp_webhook_oldest_pending_age_seconds", "gauge",
                 "Age of the oldest pending webhook delivery (0: none pending).")
    age.add(0.0 if stored.oldest_pending is None else max(0.0, now - stored.oldest_pending))
    workers = Family("aidp_service_workers", "gauge",
                     "Run workers (aidp resume processes) the service has alive now.")
    max_workers = Family("aidp_service_max_workers", "gauge",
                         "Run workers the service may have at once ([serve] max_workers).")
    waiting = Family("aidp_service_runs_waiting", "gauge",
                     "Active service runs without a worker: waiting for a free slot or for "
                     "the backoff before a dead worker's restart.")
    max_workers.add(service.max_workers)
    if service.workers is not None:
        workers.add(service.workers)
    if service.waiting is not None:
        waiting.add(service.waiting)
    build = Family("aidp_build_info", "gauge", "Always 1; the aidp version is a label.")
    build.add(1, version=__version__)
    started = Family("aidp_service_start_time_seconds", "gauge",
                     "When this aidp serve started (UNIX epoch seconds).")
    started.add(service.started_at)
    return [state, failures, opened, calls, age, workers, max_workers, waiting, build,
            started]
