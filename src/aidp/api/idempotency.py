"""``Idempotency-Key`` on state-changing requests: stored, replayed, conflicts detected.

The key is scoped to the token that sent it. The first request with a key runs and its answer
is stored (anything below 500; a server error forgets the key, so a retry runs again); the same
key with the same request (method, path, query and body) replays the stored answer with
``Idempotent-Replayed: true``; with another request it is refused (422); while the first is
still being answered, 409.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from aidp.api.problems import PROBLEM_JSON, Problem, aidp_error_response
from aidp.app import service
from aidp.app.tokens import TokenView
from aidp.exceptions import AidpError

__all__ = ["Idempotency", "idempotency"]

_MAX_KEY = 255


class Idempotency:
    """The request's key and fingerprint (from the :func:`idempotency` dependency)."""

    def __init__(self, request: Request, key: str | None, fingerprint: str) -> None:
        self.request, self.key, self.fingerprint = request, key, fingerprint

    def run(self, token: TokenView, action: Callable[[], tuple[int, Any]]) -> Response:
        """Answer with ``action()`` -- (status, JSON body) -- once per key."""
        if self.key is None:
            return _answer(action)
        ctx = self.request.app.state.ctx
        row = service.claim_idempotency_key(ctx, token.id, self.key, self.fingerprint)
        if row is not None:
            if row.fingerprint != self.fingerprint:
                raise Problem(422, "idempotency_key_reused", "this Idempotency-Key was used for "
                              "another request", exit_code=2)
            if row.status is None or row.body is None:
                raise Problem(409, "idempotency_key_in_flight", "a request with this "
                              "Idempotency-Key is still being answered; retry later",
                              headers={"Retry-After": "1"})
            status = row.status
            return JSONResponse(json.loads(row.body), status_code=status,
                                headers={"Idempotent-Replayed": "true"},
                                media_type=PROBLEM_JSON if status >= 400 else None)
        response: Response | None = None
        try:
            response = _answer(action)
        finally:
            stored = response is not None and response.status_code < 500
            service.finish_idempotency_key(
                ctx, token.id, self.key,
                response.status_code if stored and response is not None else None,
                bytes(response.body).decode() if stored and response is not None else None)
        return response


def _answer(action: Callable[[], tuple[int, Any]]) -> Response:
    try:
        status, body = action()
    except AidpError as exc:
        return aidp_error_response(exc)
    return JSONResponse(body, status_code=status)


async def idempotency(request: Request) -> Idempotency:
    """Dependency of state-changing routes: read the key and fingerprint the request."""
    key = request.headers.get("idempotency-key")
    if key is not None:
        key = key.strip()
        if not key or len(key) > _MAX_KEY or not key.isprintable():
            raise Problem(400, "bad_idempotency_key",
                          f"Idempotency-Key must be 1-{_MAX_KEY} printable characters",
                          exit_code=2)
    body = await request.body()
    digest = hashlib.sha256()
    for part in (request.method, request.url.path, request.url.query):
        digest.update(part.encode() + b"\0")
    digest.update(body)
    return Idempotency(request, key, digest.hexdigest())
