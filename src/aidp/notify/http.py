"""One webhook delivery: POST a signed body to the address the guard checked.

Redirects are not followed (a 3xx is a failed attempt: a receiver could otherwise bounce the
request to an internal address), proxies from the environment are ignored (they would make
the connection somewhere else than the checked address), time is bounded and the response
body is read only up to a cap. httpx is imported here only (the ``serve`` extra).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aidp.notify.guard import Blocked, check_url, resolve

if TYPE_CHECKING:
    import httpx

__all__ = ["MAX_RESPONSE_BYTES", "Result", "post"]

MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Result:
    """What one attempt got: an HTTP status (None: no answer), an error to show, the wait a
    429/503 asked for (``Retry-After``)."""

    status: int | None
    error: str | None = None
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def post(url: str, body: bytes, headers: Mapping[str, str], *, allow_private: bool,
         timeout_s: float = 10.0, max_response_bytes: int = MAX_RESPONSE_BYTES) -> Result:
    """POST ``body`` to ``url``; never raises for what the network or the receiver does."""
    import httpx

    try:
        target = check_url(url)
        address = resolve(target, allow_private=allow_private)[0]
    except Blocked as exc:
        return Result(None, f"refused: {exc}")
    shown = f"[{address}]" if address.version == 6 else str(address)
    sent = {**headers, "Host": target.host_header, "Content-Type": "application/json",
            "User-Agent": "aidp-webhooks"}
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        with httpx.Client(follow_redirects=False, trust_env=False,
                          timeout=httpx.Timeout(timeout_s)) as client:
            request = client.build_request(
                "POST", f"{target.scheme}://{shown}:{target.port}{target.path}",
                content=body, headers=sent, extensions=extensions)
            response = client.send(request, stream=True)
            try:
                _drain(response, max_response_bytes)
            finally:
                response.close()
            status = response.status_code
            retry_after = _retry_after(response.headers.get("retry-after")) \
                if status in (429, 503) else None
    except httpx.HTTPError as exc:
        return Result(None, f"{type(exc).__name__}: {exc}"[:500])
    if 200 <= status < 300:
        return Result(status)
    error = f"HTTP {status}"
    if 300 <= status < 400:
        error += " (redirects are not followed)"
    return Result(status, error, retry_after)


def _drain(response: httpx.Response, cap: int) -> None:
    """Read at most ``cap`` bytes of the body (the rest is dropped with the connection)."""
    seen = 0
    for chunk in response.iter_bytes():
        seen += len(chunk)
        if seen >= cap:
            break


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
