"""Bearer tokens with scopes on every route but liveness.

A route states what it needs with ``Depends(read)``, ``Depends(operate)`` or ``Depends(admin)``;
the dependency answers 401 (no or unknown token, with ``WWW-Authenticate``) or 403 (too small a
scope) as problem+json. ``tests/api`` walks the route table so that no route slips through
unprotected. The token itself is never logged: the journal and the log name the token's name.
"""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from aidp.api.problems import Problem
from aidp.app.tokens import TokenView, authenticate, needs_note, note_use, scope_allows

__all__ = ["PUBLIC_PATHS", "actor", "admin", "operate", "read"]

#: Paths answered without a token (liveness only: a load balancer probes it).
PUBLIC_PATHS = frozenset({"/api/v1/health/live"})


async def _require(request: Request, scope: str) -> TokenView:
    # On the event loop, not in a worker thread: while the database is unchanged the check is
    # a lookup in memory (AppContext.cached), and a thread hop per request would cost more
    # than the check. The once-a-minute write of last_used_at goes to a thread.
    header = request.headers.get("authorization", "")
    kind, _, value = header.partition(" ")
    if kind.lower() != "bearer" or not value.strip():
        raise Problem(401, "unauthorized", "a bearer token is required "
                      "(Authorization: Bearer aidp_...; `aidp tokens create NAME`)",
                      headers={"WWW-Authenticate": 'Bearer realm="aidp"'})
    ctx = request.app.state.ctx
    token = authenticate(ctx, value, touch=False)
    if token is None:
        raise Problem(401, "unauthorized", "unknown or revoked token",
                      headers={"WWW-Authenticate": 'Bearer realm="aidp", error="invalid_token"'})
    if not scope_allows(token.scope, scope):
        raise Problem(403, "forbidden", f"this needs a token of scope {scope!r}; "
                      f"token {token.name!r} has {token.scope!r}",
                      headers={"WWW-Authenticate":
                               f'Bearer realm="aidp", error="insufficient_scope", scope="{scope}"'})
    if needs_note(token):
        await run_in_threadpool(note_use, ctx, token)
    request.state.token = token
    return token


async def read(request: Request) -> TokenView:
    """Dependency: any valid token."""
    return await _require(request, "read")


async def operate(request: Request) -> TokenView:
    """Dependency: a token that may act on runs, gates, breakers and proposals."""
    return await _require(request, "operate")


async def admin(request: Request) -> TokenView:
    """Dependency: a token that may manage tokens and webhooks."""
    return await _require(request, "admin")


def actor(token: TokenView) -> str:
    """How the journal names who acted through the API."""
    return f"api:{token.name}"
