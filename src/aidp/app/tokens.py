"""API tokens of ``aidp serve``: created (the secret shown once), listed, revoked, checked.

A token reads ``aidp_<id>_<secret>``: ``id`` (12 hex digits) is public and names the row,
``secret`` (43 URL-safe characters, 256 bits) is known only to its holder -- the database keeps
its SHA-256, compared in constant time. Scopes nest: ``read`` < ``operate`` (act on runs, gates,
breakers, proposals) < ``admin`` (tokens, webhooks).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aidp.app.views import iso_ts
from aidp.exceptions import InputError, NotFoundError

if TYPE_CHECKING:
    from aidp.app.context import AppContext

__all__ = [
    "SCOPES", "NewToken", "TokenView", "authenticate", "create_token", "list_tokens",
    "revoke_token", "scope_allows",
]

SCOPES = ("read", "operate", "admin")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TOKEN = re.compile(r"aidp_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_TOUCH_EVERY_S = 60.0  # last_used_at is a hint, not a log: one write a minute per token at most


def scope_allows(have: str, need: str) -> bool:
    """Whether a token of scope ``have`` may do what needs ``need``."""
    return SCOPES.index(have) >= SCOPES.index(need)


@dataclass(frozen=True)
class TokenView:
    """A token as listed: never its secret."""

    id: str
    name: str
    scope: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "scope": self.scope,
                "created_at": iso_ts(self.created_at), "last_used_at": iso_ts(self.last_used_at),
                "revoked_at": iso_ts(self.revoked_at), "active": self.active}


@dataclass(frozen=True)
class NewToken:
    """A token just created: ``token`` is the only time its secret is shown."""

    view: TokenView
    token: str


def _view(row: Any) -> TokenView:
    return TokenView(str(row.id), str(row.name), str(row.scope), float(row.created_at),
                     row.last_used_at, row.revoked_at)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(app: AppContext, name: str, scope: str, *, by: str | None = None) -> NewToken:
    """Create a token named ``name`` (journaled as ``token.created`` of no run, naming ``by``
    when given; never the secret).

    Raises:
        InputError: a bad name or scope, or the name is taken (revoked names stay taken: the
            journal names tokens, and a name must keep meaning one holder).
    """
    from aidp.state import service

    if not _NAME.fullmatch(name):
        raise InputError(f"invalid token name {name!r}: 1-64 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    if scope not in SCOPES:
        raise InputError(f"invalid scope {scope!r} (expected one of: {', '.join(SCOPES)})")
    store = app.store(create=True)
    if any(row.name == name for row in service.tokens(store)):
        raise InputError(f"a token named {name!r} exists already",
                         hint="pick another name (or `aidp tokens list`)")
    token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    with store.write() as tx:
        service.insert_token(tx, token_id, name, scope, _digest(secret))
        if by is not None:
            from aidp.state.tx import NO_RUN

            tx.event(NO_RUN, "token.created", token=name, id=token_id, scope=scope, by=by)
    row = service.token_by_id(store, token_id)
    return NewToken(_view(row), f"aidp_{token_id}_{secret}")


def list_tokens(app: AppContext) -> list[TokenView]:
    from aidp.state import service

    if not app.has_database():
        return []
    return [_view(row) for row in service.tokens(app.store())]


def revoke_token(app: AppContext, ref: str, *, by: str | None = None) -> TokenView:
    """Revoke the token named (or with the id) ``ref``; revoking twice is harmless. With
    ``by``, a revocation is journaled as ``token.revoked`` of no run, naming ``by``.

    Raises:
        NotFoundError: no such token.
    """
    from aidp.state import service

    for view in list_tokens(app):
        if ref in (view.name, view.id):
            with app.store().write() as tx:
                service.revoke_token(tx, view.id)
                if by is not None and view.active:
                    from aidp.state.tx import NO_RUN

                    tx.event(NO_RUN, "token.revoked", token=view.name, id=view.id, by=by)
            return _view(service.token_by_id(app.store(), view.id))
    raise NotFoundError(f"no token named {ref!r}", hint="`aidp tokens list` shows them")


def authenticate(app: AppContext, presented: str) -> TokenView | None:
    """The active token ``presented`` is (the whole ``aidp_<id>_<secret>`` string), or None."""
    from aidp.state import service

    match = _TOKEN.fullmatch(presented.strip())
    if match is None:
        return None
    row = service.token_by_id(app.store(), match.group(1))
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(str(row.secret_sha256), _digest(match.group(2))):
        return None
    view = _view(row)
    if view.last_used_at is None or time.time() - view.last_used_at > _TOUCH_EVERY_S:
        with app.store().write() as tx:
            service.touch_token(tx, view.id)
    return view
