"""Shorthands for route signatures: the token of an ``operate`` action and the request's
``Idempotency-Key``, as annotated dependencies."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends

from aidp.api.auth import operate
from aidp.api.idempotency import Idempotency, idempotency
from aidp.app.tokens import TokenView

__all__ = ["Idem", "Operator", "Responses"]

#: The token of a route that needs the ``operate`` scope.
Operator = Annotated[TokenView, Depends(operate)]
#: The request's Idempotency-Key and fingerprint.
Idem = Annotated[Idempotency, Depends(idempotency)]
#: The ``responses=`` of a route.
Responses = dict[int | str, dict[str, Any]]
