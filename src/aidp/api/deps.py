"""Shorthands for route signatures: the token of an ``operate`` action and the request's
``Idempotency-Key``, as annotated dependencies."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Request
from starlette.concurrency import run_in_threadpool

from aidp.api.auth import operate
from aidp.api.idempotency import Idempotency, idempotency
from aidp.app.tokens import TokenView

__all__ = ["DB_INT_MAX", "AttemptNumber", "Idem", "Operator", "Responses", "read_on_loop"]

T = TypeVar("T")

#: The token of a route that needs the ``operate`` scope.
Operator = Annotated[TokenView, Depends(operate)]
#: The request's Idempotency-Key and fingerprint.
Idem = Annotated[Idempotency, Depends(idempotency)]
#: The ``responses=`` of a route.
Responses = dict[int | str, dict[str, Any]]

#: The largest integer the databases store (SQLite and PostgreSQL BIGINT): a larger id in a
#: path or query is refused as invalid (422), never a server error.
DB_INT_MAX = 2**63 - 1
#: An attempt's number in a path (attempts count from 1).
AttemptNumber = Annotated[int, Path(ge=1, le=DB_INT_MAX)]


def read_on_loop(endpoint: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """A read route answered on the event loop where its database is SQLite, in a worker
    thread elsewhere (FastAPI's way for a plain ``def``).

    On SQLite such a read is answered from memory (:meth:`AppContext.cached`) or by a few
    short local queries, and the hop to a worker thread and back costs more than the read
    (about a sixth of a request's CPU, measured). Another database is a network away: its
    queries must not hold up the loop. Only for reads that never wait (no follow, no lock, no
    file that grows). The endpoint takes ``request``.
    """
    signature = inspect.signature(endpoint, eval_str=True)  # FastAPI reads the wrapper's

    @functools.wraps(endpoint)
    async def answer(*args: Any, **kwargs: Any) -> T:
        request: Request = kwargs["request"]
        if request.app.state.ctx.database_url.startswith("sqlite"):
            return endpoint(*args, **kwargs)
        return await run_in_threadpool(endpoint, *args, **kwargs)

    answer.__signature__ = signature  # type: ignore[attr-defined]
    return answer
