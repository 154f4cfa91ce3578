"""The settings page (``/settings``): API tokens and webhook subscriptions.

Anyone who may read sees the lists (never a token's secret); acting needs scope ``admin``, a
CSRF token and, for what cannot be undone, a confirmation:

* tokens -- create (the secret is shown once, on the answer to the form, never again: the
  database keeps only its hash), revoke (the token's sessions end at once);
* webhooks -- create (a subscription names the service's environment variable holding its
  signing secret, never the secret: the page says which variable to set), delete, and the
  recent deliveries with their status, each of which may be sent again.

The same application-layer calls as ``aidp tokens`` / ``aidp webhooks`` and the REST API's
``/webhooks`` (:mod:`aidp.app.tokens`, :mod:`aidp.app.webhooks`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from aidp.app import tokens, webhooks
from aidp.app.context import AppContext
from aidp.exceptions import AidpError, InputError
from aidp.web.errors import act, explain, status_of
from aidp.web.render import render
from aidp.web.session import Viewer, administrator, form, viewer

router = APIRouter()

#: Messages after an action (by code: no text from the query is shown).
FLASHES = {
    "revoked": "Token revoked: its sessions and API calls are refused from now on.",
    "hookdeleted": "Webhook deleted (its pending deliveries will not be sent).",
    "redelivered": "Delivery queued to be sent again.",
}
#: Recent deliveries shown.
DELIVERIES = 50


def _page(request: Request, *, flash: str | None = None, error: str | None = None,
          created_token: tokens.NewToken | None = None,
          created_hook: webhooks.WebhookView | None = None,
          chosen: dict[str, str] | None = None, code: int = 200) -> Response:
    ctx: AppContext = request.app.state.ctx
    response = render(
        request, "settings.html", status_code=code, flash=flash, error=error,
        tokens=tokens.list_tokens(ctx), scopes=tokens.SCOPES,
        hooks=webhooks.list_webhooks(ctx),
        deliveries=webhooks.list_deliveries(ctx, limit=DELIVERIES),
        created_token=created_token, created_hook=created_hook, chosen=chosen or {})
    response.headers["Cache-Control"] = "no-store"  # a secret may be on it
    return response




@router.get("/settings")
def settings_page(request: Request, who: Annotated[Viewer, Depends(viewer)],
                  done: Annotated[str | None, Query(max_length=20)] = None) -> Response:
    return _page(request, flash=FLASHES.get(done or ""))


async def _act(request: Request, action: Callable[[], Any], flash: str,
               chosen: dict[str, str] | None = None) -> Response:
    return await act(action, f"/settings?done={flash}", lambda message, status: _page(
        request, error=message, chosen=chosen, code=status))


@router.post("/settings/tokens")
async def create_token(request: Request,
                       who: Annotated[Viewer, Depends(administrator)]) -> Response:
    ctx: AppContext = request.app.state.ctx
    fields = await form(request)
    name, scope = fields.get("name", "").strip(), fields.get("scope", "read").strip()
    try:
        made = await to_thread.run_sync(
            lambda: tokens.create_token(ctx, name, scope, by=who.actor))
    except AidpError as exc:
        message, status = explain(exc), status_of(exc)
        return await to_thread.run_sync(lambda: _page(
            request, error=message, chosen={"token_name": name, "scope": scope},
            code=status))
    return await to_thread.run_sync(lambda: _page(request, created_token=made, code=201))


@router.post("/settings/tokens/{ref}/revoke")
async def revoke_token(request: Request, ref: str,
                       who: Annotated[Viewer, Depends(administrator)]) -> Response:
    ctx: AppContext = request.app.state.ctx
    return await _act(request, lambda: tokens.revoke_token(ctx, ref, by=who.actor),
                      "revoked")


def _events(text: str) -> list[str]:
    return [e for e in re.split(r"[\s,]+", text.strip()) if e]


@router.post("/settings/webhooks")
async def create_webhook(request: Request,
                         who: Annotated[Viewer, Depends(administrator)]) -> Response:
    ctx: AppContext = request.app.state.ctx
    fields = await form(request)
    url, secret_env = fields.get("url", "").strip(), fields.get("secret_env", "").strip()
    events, run = _events(fields.get("events", "")), fields.get("run", "").strip() or None
    allow_private = fields.get("allow_private", "") in ("1", "on", "true", "yes")
    chosen = {k: fields.get(k, "") for k in ("url", "events", "secret_env", "run")}

    def action() -> webhooks.WebhookView:
        if not url:
            raise InputError("give the URL to send events to")
        if len(url) > 2048:
            raise InputError("the URL is longer than 2048 characters")
        if not events:
            raise InputError("name at least one event (a kind, a glob such as step.*, a "
                             "category, or a CloudEvents type)")
        return webhooks.add_webhook(ctx, url, events, secret_env, run=run,
                                    allow_private=allow_private, by=who.actor)

    try:
        made = await to_thread.run_sync(action)
    except AidpError as exc:
        message, status = explain(exc), status_of(exc)
        return await to_thread.run_sync(lambda: _page(
            request, error=message, chosen=chosen, code=status))
    return await to_thread.run_sync(lambda: _page(request, created_hook=made, code=201))


@router.post("/settings/webhooks/{webhook_id}/delete")
async def delete_webhook(request: Request, webhook_id: str,
                         who: Annotated[Viewer, Depends(administrator)]) -> Response:
    ctx: AppContext = request.app.state.ctx
    return await _act(request, lambda: webhooks.remove_webhook(ctx, webhook_id), "hookdeleted")


@router.post("/settings/deliveries/{delivery_id}/redeliver")
async def redeliver(request: Request, delivery_id: int,
                    who: Annotated[Viewer, Depends(administrator)]) -> Response:
    ctx: AppContext = request.app.state.ctx

    def action() -> None:
        if not 1 <= delivery_id <= 2**63 - 1:
            raise InputError(f"delivery {delivery_id} is not a delivery id")
        webhooks.redeliver(ctx, delivery_id)

    return await _act(request, action, "redelivered")
