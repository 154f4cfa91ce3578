"""Who is looking at the dashboard: sign-in with an API token, the session cookie, CSRF.

A visitor signs in by pasting an API token (``aidp tokens create NAME --scope ...``) into the
``/login`` form; the token becomes the value of the ``aidp_session`` cookie (HttpOnly: no
script reads it; SameSite=Strict: no other site's page sends it; Secure over https). Every
request checks it again with :func:`aidp.app.tokens.authenticate`, so a revoked token ends its
sessions at once and nothing about sessions is kept in memory.

Dependencies for page routes:

* :func:`viewer` -- anyone who may read: a signed-in token of any scope, or (with ``[serve]
  dashboard_read_only = true``) the anonymous reader, who may read and never act. Without
  either, a page answers 303 to ``/login?next=PATH``.
* :func:`operator` (scope ``operate``) and :func:`administrator` (scope ``admin``) -- for
  state-changing POSTs: a signed-in token of that scope, a CSRF token (form field ``csrf`` or
  header ``X-CSRF-Token``: an HMAC of the session under the service's secret) and, when the
  browser sends one, an ``Origin`` (else ``Referer``) of the dashboard's own origin. A forged
  cross-site POST is refused with 403 before anything changes.

The journal names who acted ``api:TOKENNAME``, as the REST API does (:attr:`Viewer.actor`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from fastapi import Request

from aidp.app.tokens import authenticate, scope_allows

__all__ = [
    "ANONYMOUS", "COOKIE", "CSRF_FIELD", "CSRF_HEADER", "Forbidden", "LoginRequired",
    "Viewer", "administrator", "check_origin", "clear_session", "csrf_token", "form",
    "form_pairs", "load_secret", "operator", "safe_next", "set_session", "sign_in", "viewer",
]

COOKIE = "aidp_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
#: Largest form body the dashboard reads (the service's own limit applies first).
_FORM_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Viewer:
    """Who looks: a token's ``name`` and ``scope``, or the anonymous reader."""

    name: str
    scope: str
    read_only: bool

    @property
    def actor(self) -> str:
        """How the journal names this viewer's actions (as :func:`aidp.api.auth.actor`)."""
        return f"api:{self.name}"

    def may(self, scope: str) -> bool:
        """Whether this viewer may do what needs ``scope``."""
        return not self.read_only and scope_allows(self.scope, scope)


ANONYMOUS = Viewer(name="anonymous", scope="read", read_only=True)


class LoginRequired(Exception):
    """No valid session: the page answers 303 to ``/login?next=...``."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class Forbidden(Exception):
    """A state-changing request refused (403): too small a scope, no or a wrong CSRF token,
    a foreign origin. ``detail`` says which."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def load_secret(aidp_dir: Path) -> bytes:
    """The service's CSRF key: ``aidp_dir/serve/web_secret`` (made, mode 0600, when missing or
    unreadable; a fresh key only signs out nobody -- it invalidates open forms)."""
    path = aidp_dir / "serve" / "web_secret"
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
        if len(key) >= 32:
            return key
    except (OSError, ValueError):
        pass
    key = secrets.token_bytes(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(key.hex())
    except OSError:
        pass  # a read-only repository: the key lives as long as the service
    return key


def _key(request: Request) -> bytes:
    key: bytes = request.app.state.web_secret
    return key


def csrf_token(request: Request) -> str:
    """The CSRF token of the request's session ("" without one)."""
    session = request.cookies.get(COOKIE, "")
    if not session:
        return ""
    return hmac.new(_key(request), b"csrf:" + session.encode(), hashlib.sha256).hexdigest()


def _session_viewer(request: Request) -> Viewer | None:
    session = request.cookies.get(COOKIE, "")
    if not session:
        return None
    token = authenticate(request.app.state.ctx, session)
    if token is None:
        return None
    return Viewer(name=token.name, scope=token.scope, read_only=False)


def sign_in(request: Request, presented: str) -> Viewer | None:
    """The viewer the token ``presented`` makes, or None when it is no active token."""
    token = authenticate(request.app.state.ctx, presented)
    return None if token is None else Viewer(token.name, token.scope, read_only=False)


def set_session(request: Request, response: object, token: str) -> None:
    """Put ``token`` into the session cookie of ``response`` (a Starlette response)."""
    from starlette.responses import Response

    assert isinstance(response, Response)
    response.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")


def clear_session(request: Request, response: object) -> None:
    """Remove the session cookie."""
    from starlette.responses import Response

    assert isinstance(response, Response)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")


def safe_next(value: str | None) -> str:
    """A local path to go to after sign-in (anything else -- another host, ``//evil``,
    a scheme, control characters -- becomes ``/runs``)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value \
            or any(ord(c) < 32 or ord(c) == 127 for c in value) or len(value) > 2000:
        return "/runs"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/runs"
    return value


def viewer(request: Request) -> Viewer:
    """Dependency of every page: the signed-in viewer, or the anonymous reader when
    ``[serve] dashboard_read_only`` is on.

    Raises:
        LoginRequired: neither (the page answers 303 to the sign-in form).
    """
    found = _session_viewer(request)
    if found is None:
        if request.app.state.ctx.settings.serve.dashboard_read_only:
            found = ANONYMOUS
        else:
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise LoginRequired(path)
    request.state.viewer = found
    return found


async def form(request: Request) -> dict[str, str]:
    """The request's url-encoded form fields (the last value of a repeated field wins; use
    :func:`form_list` for repeated ones). A body that is no such form gives ``{}``."""
    return dict(await form_pairs(request))


async def form_pairs(request: Request) -> list[tuple[str, str]]:
    """Every (field, value) of the request's url-encoded form, in order."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return []
    body = await request.body()
    if len(body) > _FORM_LIMIT:
        raise Forbidden(f"form over {_FORM_LIMIT} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return []
    return parse_qsl(text, keep_blank_values=True, max_num_fields=1000)


def _own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', '')}".lower()


def check_origin(request: Request) -> None:
    """Refuse (:class:`Forbidden`) a request whose ``Origin`` -- or, without one, ``Referer``
    -- names another origin than the dashboard's own."""
    origin = request.headers.get("origin")
    if origin is not None:
        if origin.lower().rstrip("/") != _own_origin(request):
            raise Forbidden(f"cross-site request refused (Origin {origin[:100]!r})")
        return
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        if f"{parts.scheme}://{parts.netloc}".lower() != _own_origin(request):
            raise Forbidden("cross-site request refused (Referer of another origin)")


async def _acting(request: Request, scope: str) -> Viewer:
    check_origin(request)
    found = _session_viewer(request)
    if found is None:
        raise Forbidden("sign in with a token to act (this session is not signed in, or its "
                        "token was revoked)")
    if not found.may(scope):
        raise Forbidden(f"this needs a token of scope {scope!r}; token {found.name!r} has "
                        f"{found.scope!r}")
    presented = request.headers.get(CSRF_HEADER) or (await form(request)).get(CSRF_FIELD, "")
    expected = csrf_token(request)
    if not presented or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Forbidden("missing or wrong CSRF token: reload the page and try again")
    request.state.viewer = found
    return found


async def operator(request: Request) -> Viewer:
    """Dependency of a state-changing POST that needs scope ``operate`` (runs, gates,
    breakers, proposals).

    Raises:
        Forbidden: no session, too small a scope, a missing or wrong CSRF token, a foreign
            Origin or Referer.
    """
    return await _acting(request, "operate")


async def administrator(request: Request) -> Viewer:
    """As :func:`operator`, for scope ``admin`` (tokens, webhooks, settings)."""
    return await _acting(request, "admin")
