"""The SSRF guard: a webhook URL may reach only public addresses unless its subscription allows
private ones.

Checked at delivery time on the *resolved* addresses, and :mod:`aidp.notify.http` connects to
the very address checked here (the Host header and TLS SNI keep the name), so a name that
resolves to a public address for the check and to 127.0.0.1 for the connection (DNS
rebinding) gets nowhere.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Blocked", "Target", "check_url", "forbidden_reason", "resolve"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class Blocked(Exception):
    """The URL may not be called (the message says why; it never holds a secret)."""


@dataclass(frozen=True)
class Target:
    """A URL taken apart: ``host`` as written (for Host and SNI), the port, the path+query."""

    scheme: str
    host: str
    port: int
    path: str

    @property
    def host_header(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return shown if self.port == default else f"{shown}:{self.port}"


def check_url(url: str) -> Target:
    """Take ``url`` apart, refusing what no webhook may be: other schemes, credentials in the
    URL, no host, a bad port.

    Raises:
        Blocked: the URL is refused.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise Blocked(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise Blocked(f"scheme {parts.scheme or '(none)'!r} refused: http or https only")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise Blocked("credentials in the URL are refused (the signature authenticates)")
    host = parts.hostname
    if not host:
        raise Blocked("the URL has no host")
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    if not 0 < port < 65536:
        raise Blocked(f"port {port} is out of range")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.scheme, host, port, path)


def forbidden_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not public (``loopback``, ``private`` ...), or None if it is."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            inner = forbidden_reason(mapped)
            return f"{inner} (embedded in {address})" if inner else None
    checks = (("unspecified", address.is_unspecified), ("loopback", address.is_loopback),
              ("link-local (cloud metadata lives there)", address.is_link_local),
              ("multicast", address.is_multicast),
              ("CGNAT", isinstance(address, ipaddress.IPv4Address) and address in _CGNAT),
              ("private", address.is_private), ("reserved", address.is_reserved))
    for name, hit in checks:
        if hit:
            return name
    return None if address.is_global else "not globally routable"


def resolve(target: Target, *, allow_private: bool) -> list[IPAddress]:
    """The addresses ``target`` resolves to, every one checked (one bad address refuses the
    URL: the resolver may hand out any of them later).

    Raises:
        Blocked: the name does not resolve, or resolves to a refused address.
    """
    literal = _literal(target.host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise Blocked(f"cannot resolve {target.host!r}: {exc}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
                                       for info in infos))
    if not addresses:
        raise Blocked(f"{target.host!r} resolves to no address")
    if not allow_private:
        for address in addresses:
            reason = forbidden_reason(address)
            if reason is not None:
                raise Blocked(f"{target.host} resolves to {address}, a {reason} address: "
                              "refused (add the subscription with --allow-private to allow it)")
    return addresses


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
