"""SQLAlchemy Core tables: runs, workstreams, steps, attempts, checkpoints, events, leases,
breakers, proposals and their transitions; and the service's (``aidp serve``): API tokens,
idempotency keys, webhook subscriptions and deliveries, the runs the service drives.

Times are UNIX epoch seconds (float). Enum columns hold the ``value`` of the enums in
:mod:`aidp.core.states`. The event journal is append-only: rows are inserted, never updated.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    true,
)

from aidp.core.states import (
    AttemptKind,
    AttemptOutcome,
    FailureClass,
    ProposalState,
    RunState,
    StepState,
    WorkstreamState,
)
from aidp.errors.finding import Severity
from aidp.resilience.breaker import BreakerState

__all__ = [
    "ALLOWED",
    "api_tokens",
    "attempts",
    "breakers",
    "checkpoints",
    "compensations",
    "events",
    "findings",
    "idempotency_keys",
    "leases",
    "metadata",
    "proposal_transitions",
    "proposals",
    "rate_buckets",
    "runs",
    "service_runs",
    "steps",
    "webhook_deliveries",
    "webhooks",
    "workstreams",
]

metadata = MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)


def values_of(enum: type[Enum]) -> tuple[str, ...]:
    """The values an enum column may hold."""
    return tuple(str(member.value) for member in enum)


#: The values of every constrained column: (table, column) -> allowed values. A CHECK constraint
#: ``ck_<table>_<column>`` (``column IN (...)``; NULL passes) holds each column to its list.
ALLOWED: dict[tuple[str, str], tuple[str, ...]] = {
    ("runs", "status"): values_of(RunState),
    ("workstreams", "status"): values_of(WorkstreamState),
    ("steps", "status"): values_of(StepState),
    ("steps", "outcome"): values_of(AttemptOutcome),
    ("steps", "failure_class"): values_of(FailureClass),
    ("attempts", "outcome"): values_of(AttemptOutcome),
    ("attempts", "failure_class"): values_of(FailureClass),
    ("attempts", "kind"): values_of(AttemptKind),
    ("attempts", "verdict"): ("won", "lost", "failed"),
    ("findings", "severity"): values_of(Severity),
    ("findings", "failure_class"): values_of(FailureClass),
    ("compensations", "status"): ("succeeded", "failed"),
    ("breakers", "state"): values_of(BreakerState),
    ("proposals", "state"): values_of(ProposalState),
    ("proposal_transitions", "from_state"): values_of(ProposalState),
    ("proposal_transitions", "to_state"): values_of(ProposalState),
    ("api_tokens", "scope"): ("read", "operate", "admin"),
    ("webhook_deliveries", "status"): ("pending", "delivered", "dead"),
    ("service_runs", "state"): ("active", "done"),
}


def one_of(column: str, values: Iterable[str]) -> str:
    """The SQL condition ``column IN ('a', 'b', ...)``."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _checks(table: str) -> list[CheckConstraint]:
    return [CheckConstraint(one_of(column, values), name=column)
            for (owner, column), values in ALLOWED.items() if owner == table]

# BIGINT on PostgreSQL, INTEGER on SQLite (so that it is an alias of the rowid).
BigId = BigInteger().with_variant(Integer(), "sqlite")

runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("repo", Text, nullable=False),
    Column("plan_json", Text, nullable=False),
    Column("options_json", Text, nullable=False, server_default="{}"),
    Column("sources", Text, nullable=False),
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
    Column("reason", Text),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("updated_at", Float, nullable=False),
    *_checks("runs"),
)

workstreams = Table(
    "workstreams",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("ws_id", String(64), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("branch", String(255), nullable=False),
    Column("base_ref", String(255), nullable=False),
    Column("base_sha", String(64)),
    Column("worktree", Text),
    Column("head_sha", String(64)),
    Column("merged_sha", String(64)),
    Column("reason", Text),
    Column("started_at", Float),
    Column("finished_at", Float),
    ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
    *_checks("workstreams"),
)

steps = Table(
    "steps",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("ws_id", String(64), primary_key=True),
    Column("step_id", String(64), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("status", String(24), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("reason", Text),
    Column("next_attempt_at", Float),
    Column("checkpoint_sha", String(64)),
    Column("started_at", Float),
    Column("finished_at", Float),
    # recovery (migration 0002): the attempt history the recovery decision continues from,
    # the class of the final failure, and the profile the next attempt uses
    Column("history_json", Text),
    Column("failure_class", String(16)),
    Column("profile", String(64)),
    # migration 0005: the outcome that ended a failed step (crashed, circuit_open, ...)
    Column("outcome", String(24)),
    ForeignKeyConstraint(
        ["run_id", "ws_id"], ["workstreams.run_id", "workstreams.ws_id"], ondelete="CASCADE"
    ),
    *_checks("steps"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(32), nullable=False),
    Column("ws_id", String(64), nullable=False),
    Column("step_id", String(64), nullable=False),
    Column("number", Integer, nullable=False),
    Column("outcome", String(24)),
    Column("interrupted", Boolean, nullable=False, server_default=false()),
    Column("host", String(255)),
    Column("pid", Integer),
    Column("token", String(64)),
    Column("exit_code", Integer),
    Column("signal", Integer),
    Column("log_path", Text),
    Column("output_bytes", BigInteger),
    Column("changed_files", Text),
    Column("error", Text),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    # recovery and tools (migration 0002)
    Column("kind", String(16), nullable=False, server_default="first"),
    Column("profile", String(64)),
    Column("adapter", String(32)),
    Column("failure_class", String(16)),
    Column("choice_reason", Text),
    Column("tool_version", String(128)),
    Column("input_tokens", Integer, nullable=False, server_default="0"),
    Column("output_tokens", Integer, nullable=False, server_default="0"),
    Column("cost_usd", Float, nullable=False, server_default="0"),
    Column("requests", Integer, nullable=False, server_default="0"),
    Column("diagnostics_path", Text),
    # the model gateway (migration 0008): cached input tokens, time waiting for the provider
    Column("cached_tokens", Integer, nullable=False, server_default="0"),
    Column("latency_ms", Integer, nullable=False, server_default="0"),
    # routing and best-of-N (migration 0010): what the step asked for; as one of N candidates,
    # its round (the number of the round's first attempt), its place, verdict and diff
    Column("capability", String(64)),
    Column("language", String(64)),
    Column("round", Integer),
    Column("candidate", Integer),
    Column("verdict", String(16)),
    Column("verdict_reason", Text),
    Column("candidate_sha", String(64)),
    Column("diff_files", Integer),
    Column("diff_lines", Integer),
    UniqueConstraint("run_id", "ws_id", "step_id", "number"),
    ForeignKeyConstraint(
        ["run_id", "ws_id", "step_id"],
        ["steps.run_id", "steps.ws_id", "steps.step_id"],
        ondelete="CASCADE",
    ),
    *_checks("attempts"),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("ws_id", String(64), primary_key=True),
    Column("step_id", String(64), primary_key=True),
    Column("attempt", Integer, nullable=False),
    Column("sha", String(64), nullable=False),
    Column("adopted", Boolean, nullable=False, server_default=false()),
    Column("created_at", Float, nullable=False),
    ForeignKeyConstraint(
        ["run_id", "ws_id", "step_id"],
        ["steps.run_id", "steps.ws_id", "steps.step_id"],
        ondelete="CASCADE",
    ),
)

events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(32), nullable=False),
    Column("ts", Float, nullable=False),
    Column("kind", String(48), nullable=False),
    Column("ws_id", String(64)),
    Column("step_id", String(64)),
    Column("data", Text, nullable=False, server_default="{}"),
)
Index("ix_events_run_id_id", events.c.run_id, events.c.id)

findings = Table(
    "findings",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(32), nullable=False),
    Column("ws_id", String(64), nullable=False),
    Column("step_id", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("source", String(255), nullable=False),  # "tool" or the check's name
    Column("detector", String(64), nullable=False),
    Column("file", Text),
    Column("line", Integer),
    Column("col", Integer),
    Column("code", String(128)),
    Column("message", Text, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("failure_class", String(16), nullable=False),
    Column("fingerprint", String(32), nullable=False),
    Column("retry_after", Float),
    Column("created_at", Float, nullable=False),
    *_checks("findings"),
)
Index("ix_findings_run_id_ws_id", findings.c.run_id, findings.c.ws_id, findings.c.step_id)

compensations = Table(
    "compensations",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("ws_id", String(64), primary_key=True),
    Column("step_id", String(64), primary_key=True),  # "" for a workstream's compensations
    Column("position", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),  # succeeded | failed
    Column("detail", Text),
    Column("created_at", Float, nullable=False),
    *_checks("compensations"),
)

leases = Table(
    "leases",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("pid_start", BigInteger),
    Column("token", BigInteger, nullable=False),
    Column("acquired_at", Float, nullable=False),
    Column("renewed_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("released", Boolean, nullable=False, server_default=false()),
)

# One circuit breaker per key (``profile:NAME``, ``endpoint:URL``): the snapshot of
# aidp.resilience.breaker as JSON, plus its state and reopen time as columns for queries, and the
# policy it was last used with (so that views can apply the passing of time).
breakers = Table(
    "breakers",
    metadata,
    Column("key", Text, primary_key=True),
    Column("state", String(16), nullable=False),
    Column("reopen_at", Float),
    Column("snapshot", Text, nullable=False),
    Column("policy", Text),
    Column("updated_at", Float, nullable=False),
    *_checks("breakers"),
)

# Token buckets of the profiles' rate limits (migration 0008): shared by every process on the
# store. ``kind`` is requests or tokens.
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("key", Text, primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("level", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    *_checks("rate_buckets"),
)

# A change proposal's review state (aidp.specs.lifecycle.ProposalState); keyed by change id.
proposals = Table(
    "proposals",
    metadata,
    Column("change_id", String(128), primary_key=True),
    Column("state", String(24), nullable=False),
    Column("title", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    *_checks("proposals"),
)

# Append-only history: who moved which proposal from where to where, when, and why.
proposal_transitions = Table(
    "proposal_transitions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("change_id", String(128), nullable=False),
    Column("from_state", String(24)),
    Column("to_state", String(24), nullable=False),
    Column("action", String(24), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("comment", Text),
    Column("ts", Float, nullable=False),
    *_checks("proposal_transitions"),
)
Index("ix_proposal_transitions_change_id_id", proposal_transitions.c.change_id,
      proposal_transitions.c.id)

# -- the service (aidp serve) ------------------------------------------------------------------

# Bearer tokens: only the SHA-256 of the secret is stored; ``id`` is the public prefix of the
# token (``aidp_<id>_<secret>``), so a lookup is by key, never by comparing hashes in SQL.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_used_at", Float),
    Column("revoked_at", Float),
    UniqueConstraint("name"),
    *_checks("api_tokens"),
)

# A state-changing request's Idempotency-Key: the same key (per token) replays the stored
# response; the same key with another request (method, path, body hash) is a conflict.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_sha256", String(64), nullable=False),
    Column("status_code", Integer),  # None while the first request is still being answered
    Column("response", Text),
    Column("created_at", Float, nullable=False),
)

# Webhook subscriptions. The secret itself is never stored: ``secret_env`` names the
# environment variable of the service that holds it (and ``previous_secret_env`` the one still
# signing, beside it, until ``previous_until`` -- rotation with an overlap). ``cursor`` is the
# last journal event (events.id) turned into deliveries: the journal is the outbox.
webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("url", Text, nullable=False),
    Column("event_types", Text, nullable=False),  # JSON list of type patterns
    Column("run_id", String(32)),  # only this run's events, if given
    Column("secret_env", String(128), nullable=False),
    Column("previous_secret_env", String(128)),
    Column("previous_until", Float),
    Column("allow_private", Boolean, nullable=False, server_default=false()),
    Column("enabled", Boolean, nullable=False, server_default=true()),
    Column("cursor", BigInteger, nullable=False, server_default="0"),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(128)),
)

# One delivery of one journal event to one subscription: retried with backoff until delivered
# or dead (then redelivered by hand).
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("webhook_id", String(32), nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Float, nullable=False),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("delivered_at", Float),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("webhook_id", "event_id"),
    *_checks("webhook_deliveries"),
)
Index("ix_webhook_deliveries_status_next_attempt_at", webhook_deliveries.c.status,
      webhook_deliveries.c.next_attempt_at)

# Runs started through the API: the service drives them in its workers, and resumes the
# ``active`` ones it finds without a live lease holder when it starts again. Several services
# on one database claim a run before starting its worker (migration 0009): ``owner`` names the
# service, ``owner_until`` ends the claim (the worker holds the run's lease by then).
service_runs = Table(
    "service_runs",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("started_by", String(128)),
    Column("restarts", Integer, nullable=False, server_default="0"),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("owner", String(160)),
    Column("owner_until", Float),
    *_checks("service_runs"),
)
