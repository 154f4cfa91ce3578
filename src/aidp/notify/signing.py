"""Signatures per Standard Webhooks (https://www.standardwebhooks.com/).

``webhook-signature`` is ``v1,<base64 HMAC-SHA256 over "{id}.{timestamp}.{body}">``; several
signatures (secret rotation) are separated by spaces. A secret written ``whsec_<base64>`` is the
standard's form: the key is the decoded bytes. Any other value is used as raw UTF-8 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["TOLERANCE_S", "Verdict", "secret_key", "sign", "signature_header", "verify"]

TOLERANCE_S = 300  # the standard's suggestion: a timestamp more than 5 min away is stale
_PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    """The HMAC key of ``secret`` (``whsec_`` + base64, or raw bytes).

    Raises:
        ValueError: a ``whsec_`` secret whose rest is not base64 (the message never carries
            the secret).
    """
    if secret.startswith(_PREFIX):
        try:
            return base64.b64decode(secret[len(_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a whsec_ secret must be base64 after the prefix") from None
    if not secret:
        raise ValueError("the secret is empty")
    return secret.encode()


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(keys: Iterable[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per key, space-separated."""
    return " ".join(sign(key, msg_id, timestamp, body) for key in keys)


@dataclass(frozen=True)
class Verdict:
    """What :func:`verify` found: ``ok`` only when a signature matches and the time is fresh."""

    signature_valid: bool
    timestamp_fresh: bool
    reason: str

    @property
    def ok(self) -> bool:
        return self.signature_valid and self.timestamp_fresh


def verify(key: bytes, headers: Mapping[str, str], body: bytes, *,
           now: float | None = None, tolerance_s: int = TOLERANCE_S) -> Verdict:
    """Check a received webhook as a receiver should (header names are case-insensitive)."""
    lower = {k.lower(): v.strip() for k, v in headers.items()}
    missing = [h for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
               if not lower.get(h)]
    if missing:
        return Verdict(False, False, f"missing header(s): {', '.join(missing)}")
    stamp = lower["webhook-timestamp"]
    if not stamp.isdigit():
        return Verdict(False, False, f"webhook-timestamp {stamp!r} is not unix seconds")
    timestamp = int(stamp)
    expected = sign(key, lower["webhook-id"], timestamp, body)
    valid = any(hmac.compare_digest(expected, given)
                for given in lower["webhook-signature"].split())
    skew = (time.time() if now is None else now) - timestamp
    fresh = abs(skew) <= tolerance_s
    if not valid:
        reason = "no signature matches (wrong secret, or the body/id/timestamp changed)"
    elif not fresh:
        reason = f"timestamp is {abs(skew):.0f} s {'old' if skew > 0 else 'ahead'} " \
                 f"(tolerance {tolerance_s} s)"
    else:
        reason = "valid signature, fresh timestamp"
    return Verdict(valid, fresh, reason)
