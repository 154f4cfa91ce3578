"""Shorthands for route signatures: the token of an ``operate`` action and the request's
``Idempotency-Key``, as annotated dependencies."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path

from aidp.api.auth import operate
from aidp.api.idempotency import Idempotency, idempotency
from aidp.app.tokens import TokenView

__all__ = ["DB_INT_MAX", "AttemptNumber", "Idem", "Operator", "Responses"]

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
