"""Webhook subscriptions and their deliveries: add, list, remove, rotate the secret, list and
redeliver deliveries. The sender's steps live in :mod:`aidp.app.webhook_sender`.

A subscription names the environment variable holding its secret (``secret_env``), never the
secret: the database, the journal, the API and the CLI only ever show the variable's name.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aidp.app.events import CATALOGUE, matches
from aidp.app.views import iso_ts
from aidp.exceptions import InputError, NotFoundError

if TYPE_CHECKING:
    from aidp.app.context import AppContext

__all__ = [
    "DELIVERY_STATES",
    "DeliveryView",
    "Verification",
    "WebhookView",
    "add_webhook",
    "get_delivery",
    "get_webhook",
    "list_deliveries",
    "list_webhooks",
    "parse_duration",
    "redeliver",
    "remove_webhook",
    "rotate_secret",
    "verify_signature",
]

DELIVERY_STATES = ("pending", "delivered", "dead")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class WebhookView:
    """A subscription as shown: the secret's variable name, never its value."""

    id: str
    url: str
    events: list[str]
    run_id: str | None
    secret_env: str
    previous_secret_env: str | None
    previous_until: float | None
    allow_private: bool
    enabled: bool
    cursor: int
    created_at: float
    created_by: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "events": self.events, "run_id": self.run_id,
                "secret_env": self.secret_env, "previous_secret_env": self.previous_secret_env,
                "previous_until": iso_ts(self.previous_until),
                "allow_private": self.allow_private, "enabled": self.enabled,
                "cursor": self.cursor, "created_at": iso_ts(self.created_at),
                "created_by": self.created_by}


@dataclass(frozen=True)
class DeliveryView:
    """One event's delivery to one subscription."""

    id: int
    webhook_id: str
    event_id: int
    kind: str
    run_id: str | None
    status: str
    attempts: int
    next_attempt_at: float | None
    last_status: int | None
    last_error: str | None
    delivered_at: float | None
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "webhook_id": self.webhook_id, "event_id": self.event_id,
                "kind": self.kind, "run_id": self.run_id, "status": self.status,
                "attempts": self.attempts,
                "next_attempt_at": iso_ts(self.next_attempt_at),
                "last_status": self.last_status, "last_error": self.last_error,
                "delivered_at": iso_ts(self.delivered_at), "created_at": iso_ts(self.created_at)}


def webhook_view(row: Any) -> WebhookView:
    import json

    return WebhookView(str(row.id), str(row.url), list(json.loads(row.event_types)),
                       row.run_id, str(row.secret_env), row.previous_secret_env,
                       row.previous_until, bool(row.allow_private), bool(row.enabled),
                       int(row.cursor), float(row.created_at), row.created_by)


def delivery_view(row: Any) -> DeliveryView:
    return DeliveryView(int(row.id), str(row.webhook_id), int(row.event_id), str(row.kind),
                        row.run_id or None, str(row.status), int(row.attempts),
                        float(row.next_attempt_at) if row.status == "pending" else None,
                        row.last_status, row.last_error, row.delivered_at,
                        float(row.created_at))


def parse_duration(text: str) -> float:
    """Seconds of ``30s``, ``15m``, ``24h``, ``7d`` or a bare number of seconds.

    Raises:
        InputError: not a duration.
    """
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise InputError(f"invalid duration {text!r} (e.g. 90s, 15m, 24h, 7d)")
    return float(match.group(1)) * _UNIT[match.group(2)]


def _check_env_name(name: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise InputError(f"invalid environment variable name {name!r} (letters, digits and "
                         "'_', not starting with a digit)",
                         hint="--secret-env takes the variable's NAME, not the secret")
    return name


def _check_events(patterns: list[str]) -> list[str]:
    cleaned = [p.strip() for p in patterns if p.strip()]
    if not cleaned:
        raise InputError("no event pattern given", hint="e.g. --events 'run.*' --events gate")
    for pattern in cleaned:
        if not any(matches(kind, [pattern]) for kind in CATALOGUE):
            raise InputError(f"event pattern {pattern!r} selects no event",
                             hint="a kind (step.failed), a glob (step.*, *), a category (gate) "
                             "or a type (dev.aidp.run.*)")
    return cleaned


def _check_url(url: str, allow_private: bool) -> str:
    from aidp.notify.guard import Blocked, check_url, forbidden_reason, resolve

    try:
        target = check_url(url)
        literal = target.host.strip("[]")
        import ipaddress

        try:
            address = ipaddress.ip_address(literal)
        except ValueError:
            address = None
        if address is not None and not allow_private and forbidden_reason(address):
            resolve(target, allow_private=False)  # raises with the reason
    except Blocked as exc:
        raise InputError(f"webhook URL refused: {exc}") from None
    return url.strip()


def add_webhook(app: AppContext, url: str, events: list[str], secret_env: str, *,
                run: str | None = None, allow_private: bool = False,
                by: str | None = None) -> WebhookView:
    """Subscribe ``url`` to the events ``events`` select, from now on.

    Raises:
        InputError: a bad URL (scheme, credentials, a literal internal address without
            ``allow_private``), variable name or event pattern.
        NotFoundError: ``run`` names no run.
    """
    import json

    from aidp.state import webhooks as state

    url = _check_url(url, allow_private)
    patterns = _check_events(events)
    _check_env_name(secret_env)
    store = app.store(create=True)
    run_id = store.resolve_run(run) if run else None
    webhook_id = "wh_" + secrets.token_hex(6)
    with store.write() as tx:
        state.insert_webhook(tx, id=webhook_id, url=url, event_types=json.dumps(patterns),
                             run_id=run_id, secret_env=secret_env,
                             allow_private=allow_private, enabled=True, created_by=by)
    return get_webhook(app, webhook_id)


def list_webhooks(app: AppContext) -> list[WebhookView]:
    from aidp.state import webhooks as state

    if not app.has_database():
        return []
    return [webhook_view(row) for row in state.webhooks(app.store())]


def get_webhook(app: AppContext, webhook_id: str) -> WebhookView:
    """Raises NotFoundError: no such subscription."""
    from aidp.state import webhooks as state

    row = state.webhook_by_id(app.store(), webhook_id) if app.has_database() else None
    if row is None:
        raise NotFoundError(f"no webhook {webhook_id!r}", hint="`aidp webhooks list` shows them")
    return webhook_view(row)


def remove_webhook(app: AppContext, webhook_id: str) -> WebhookView:
    """Delete the subscription and its deliveries (pending ones are not sent)."""
    from aidp.state import webhooks as state

    view = get_webhook(app, webhook_id)
    with app.store().write() as tx:
        state.delete_webhook(tx, view.id)
    return view


def rotate_secret(app: AppContext, webhook_id: str, secret_env: str,
                  overlap_s: float = 86400.0) -> WebhookView:
    """Sign with the secret in ``secret_env`` from now on, and also with the old one (two
    signatures) for ``overlap_s`` seconds, so receivers can switch without a gap."""
    from aidp.state import webhooks as state

    _check_env_name(secret_env)
    if overlap_s < 0:
        raise InputError("the overlap cannot be negative")
    view = get_webhook(app, webhook_id)
    if secret_env == view.secret_env:
        raise InputError(f"the webhook already signs with {secret_env}",
                         hint="put the new secret in another variable")
    with app.store().write() as tx:
        until = tx.now + overlap_s if overlap_s > 0 else None
        state.update_secret(tx, view.id, secret_env, view.secret_env if until else None, until)
    return get_webhook(app, view.id)


def list_deliveries(app: AppContext, webhook_id: str | None = None, status: str | None = None,
                    limit: int = 100) -> list[DeliveryView]:
    """Deliveries, newest first (of one subscription, in one state)."""
    from aidp.state import webhooks as state

    if status is not None and status not in DELIVERY_STATES:
        raise InputError(f"invalid status {status!r} (expected one of: "
                         f"{', '.join(DELIVERY_STATES)})")
    if webhook_id is not None:
        get_webhook(app, webhook_id)
    if not app.has_database():
        return []
    return [delivery_view(row)
            for row in state.deliveries(app.store(), webhook_id, status, limit)]


def get_delivery(app: AppContext, delivery_id: int) -> DeliveryView:
    from aidp.state import webhooks as state

    row = state.delivery_by_id(app.store(), delivery_id) if app.has_database() else None
    if row is None:
        raise NotFoundError(f"no webhook delivery {delivery_id}",
                            hint="`aidp webhooks deliveries` lists them")
    return delivery_view(row)


def redeliver(app: AppContext, delivery_id: int) -> DeliveryView:
    """Send a delivery again (a dead one, or any): pending now, attempts counted anew. The
    receiver sees the same ``webhook-id``."""
    from aidp.state import webhooks as state

    get_delivery(app, delivery_id)
    with app.store().write() as tx:
        state.redeliver(tx, delivery_id)
    return get_delivery(app, delivery_id)


@dataclass(frozen=True)
class Verification:
    """``aidp webhooks verify``'s answer (``ok``: a signature matches, the time is fresh)."""

    ok: bool
    signature_valid: bool
    timestamp_fresh: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "signature_valid": self.signature_valid,
                "timestamp_fresh": self.timestamp_fresh, "reason": self.reason}


def verify_signature(secret_env: str, headers: dict[str, str], body: bytes, *,
                     tolerance_s: int = 300, environ: dict[str, str] | None = None
                     ) -> Verification:
    """Check a received delivery the way a receiver should, with the secret in the variable
    ``secret_env``: helps a receiver test its side.

    Raises:
        InputError: the variable is not set or holds a malformed ``whsec_`` secret.
    """
    import os

    from aidp.notify.signing import secret_key, verify

    _check_env_name(secret_env)
    value = (os.environ if environ is None else environ).get(secret_env)
    if not value:
        raise InputError(f"environment variable {secret_env} is not set",
                         hint="export the webhook's secret in it")
    try:
        key = secret_key(value)
    except ValueError as exc:
        raise InputError(f"environment variable {secret_env}: {exc}") from None
    verdict = verify(key, headers, body, tolerance_s=tolerance_s)
    return Verification(verdict.ok, verdict.signature_valid, verdict.timestamp_fresh,
                        verdict.reason)
