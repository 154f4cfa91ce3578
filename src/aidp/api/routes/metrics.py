"""``GET /metrics`` (and ``/api/v1/metrics``): the service's metrics for Prometheus.

Scope ``read``, like every other read (Prometheus sends the token with ``authorization:
{credentials_file: ...}``). The answer is the Prometheus text format 0.0.4, not JSON, so the
route stays out of the OpenAPI schema: the schema describes the JSON API that clients and
schemathesis drive; a scraper needs no schema, and its format is Prometheus' own. The route
is served twice: under ``/api/v1`` with the other routes, and at ``/metrics``, the path a
scrape config assumes (the server mounts this router at the root as well; errors there are
problem+json like the API's). What is measured is :mod:`aidp.app.metrics`.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from aidp.api.auth import read
from aidp.app.metrics import ServiceGauges, exposition
from aidp.app.prometheus import CONTENT_TYPE

__all__ = ["router"]

router = APIRouter(tags=["meta"])


@router.get("/metrics", summary="Metrics in the Prometheus text format",
            include_in_schema=False, dependencies=[Depends(read)])
def metrics(request: Request) -> Response:
    # A plain def: FastAPI answers it in a worker thread, so that the aggregate queries of a
    # changed database never hold up the event loop (a scrape every 15 s costs nothing there).
    state = request.app.state
    supervisor = getattr(state, "supervisor", None)
    ctx = state.ctx
    service = ServiceGauges(
        started_at=state.started_at, max_workers=ctx.settings.serve.max_workers,
        workers=None if supervisor is None else supervisor.worker_count(),
        waiting=None if supervisor is None else supervisor.waiting)
    return Response(exposition(ctx, service), media_type=CONTENT_TYPE)
