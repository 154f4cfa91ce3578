"""Webhook subscriptions and deliveries (scope ``admin``): the same operations as
``aidp webhooks``, through :mod:`aidp.app.webhooks`. The secret is never sent or shown: a
subscription names the service's environment variable that holds it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from aidp.api.auth import actor, admin
from aidp.api.deps import DB_INT_MAX
from aidp.api.idempotency import Idempotency, idempotency
from aidp.api.schema import NAMED_URL_PATTERN, URL_PATTERN, event_items
from aidp.app import webhooks
from aidp.app.tokens import TokenView

router = APIRouter(tags=["webhooks"], dependencies=[Depends(admin)])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "bad input (URL refused, bad pattern or variable name)", **_PROBLEM},
    404: {"description": "no such webhook, delivery or run", **_PROBLEM},
}
_IDEMPOTENT: dict[int | str, dict[str, Any]] = {
    409: {"description": "a request with this Idempotency-Key is still being answered",
          **_PROBLEM},
    422: {"description": "invalid body, or the Idempotency-Key was used for another request",
          **_PROBLEM},
}


class WebhookIn(BaseModel):
    """A new subscription. The schema states what the service accepts (the URL's form, the
    event selections, the variable's name); the service checks the same and answers 400,
    naming what it refused."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        # an IP literal as host is accepted only with allow_private (internal ones refused)
        "if": {"not": {"properties": {"allow_private": {"const": True}},
                       "required": ["allow_private"]}},
        "then": {"properties": {"url": {"pattern": NAMED_URL_PATTERN}}}})

    url: str = Field(max_length=2048, description="http(s) URL; internal addresses refused "
                     "unless allow_private", pattern=URL_PATTERN)
    events: list[str] = Field(min_length=1, max_length=100,
                              description="kinds, globs, categories or CloudEvents types",
                              json_schema_extra={"items": event_items()})
    secret_env: str = Field(max_length=128, description="the service's environment variable "
                            "holding the signing secret (never the secret)",
                            json_schema_extra={"pattern": r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"})
    run: str | None = Field(None, min_length=1, max_length=64,
                            description="only this run's events")
    allow_private: StrictBool = False


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    run_id: str | None
    secret_env: str
    previous_secret_env: str | None
    previous_until: str | None
    allow_private: bool
    enabled: bool
    cursor: int
    created_at: str | None
    created_by: str | None


class DeliveryOut(BaseModel):
    id: int
    webhook_id: str
    event_id: int
    kind: str
    run_id: str | None
    status: Literal["pending", "delivered", "dead"]
    attempts: int
    next_attempt_at: str | None
    last_status: int | None
    last_error: str | None
    delivered_at: str | None
    created_at: str | None


@router.get("/webhooks", summary="Webhook subscriptions", response_model=list[WebhookOut])
def list_webhooks(request: Request) -> list[dict[str, Any]]:
    return [v.to_dict() for v in webhooks.list_webhooks(request.app.state.ctx)]


@router.post("/webhooks", summary="Subscribe a URL to events", status_code=201,
             response_model=WebhookOut, responses={**_ERRORS, **_IDEMPOTENT})
def create_webhook(request: Request, body: WebhookIn, token: Annotated[TokenView, Depends(admin)],
                   idem: Annotated[Idempotency, Depends(idempotency)]) -> Response:
    ctx = request.app.state.ctx
    return idem.run(token, lambda: (201, webhooks.add_webhook(
        ctx, body.url, body.events, body.secret_env, run=body.run,
        allow_private=body.allow_private, by=actor(token)).to_dict()))


@router.get("/webhooks/deliveries", summary="Deliveries, newest first",
            response_model=list[DeliveryOut], responses=_ERRORS)
def list_deliveries(request: Request, webhook_id: str | None = Query(None, max_length=64),
                    status: Literal["pending", "delivered", "dead"] | None = None,
                    limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
    return [v.to_dict() for v in webhooks.list_deliveries(request.app.state.ctx, webhook_id,
                                                          status, limit)]


@router.post("/webhooks/deliveries/{delivery_id}/redeliver", summary="Send a delivery again",
             response_model=DeliveryOut, responses={**_ERRORS, **_IDEMPOTENT})
def redeliver(request: Request, delivery_id: Annotated[int, Path(ge=1, le=DB_INT_MAX)],
              token: Annotated[TokenView, Depends(admin)],
              idem: Annotated[Idempotency, Depends(idempotency)]) -> Response:
    ctx = request.app.state.ctx
    return idem.run(token, lambda: (200, webhooks.redeliver(ctx, delivery_id).to_dict()))


@router.get("/webhooks/{webhook_id}", summary="One subscription", response_model=WebhookOut,
            responses=_ERRORS)
def get_webhook(request: Request, webhook_id: str) -> dict[str, Any]:
    return webhooks.get_webhook(request.app.state.ctx, webhook_id).to_dict()


@router.delete("/webhooks/{webhook_id}", summary="Delete a subscription and its deliveries",
               status_code=204, responses=_ERRORS)
def delete_webhook(request: Request, webhook_id: str) -> Response:
    webhooks.remove_webhook(request.app.state.ctx, webhook_id)
    return Response(status_code=204)
