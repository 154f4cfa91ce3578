"""Standard Webhooks signatures, checked against an independent implementation of the spec."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from aidp.notify.signing import secret_key, sign, signature_header, verify

_RAW = b"0123456789abcdef0123456789abcdef"
_WHSEC = "whsec_" + base64.b64encode(_RAW).decode()


def _reference(secret: str, msg_id: str, ts: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def test_signature_matches_the_standard() -> None:
    body = b'{"id":"7","type":"dev.aidp.run.created"}'
    assert sign(secret_key(_WHSEC), "7", 1700000000, body) == \
        _reference(_WHSEC, "7", 1700000000, body)


def test_the_standards_published_example() -> None:
    """The example of the Standard Webhooks specification."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret_key(secret), "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_raw_secret_is_used_as_bytes_and_a_bad_whsec_is_refused() -> None:
    assert secret_key("plain") == b"plain"
    with pytest.raises(ValueError, match="base64") as info:
        secret_key("whsec_!!notbase64!!")
    assert "notbase64" not in str(info.value)


def test_rotation_sends_two_signatures_and_either_verifies() -> None:
    old, new = secret_key(_WHSEC), secret_key("new-secret")
    header = signature_header([new, old], "9", 1000, b"{}")
    assert len(header.split(" ")) == 2
    for key in (old, new):
        assert verify(key, {"webhook-id": "9", "webhook-timestamp": "1000",
                            "webhook-signature": header}, b"{}", now=1000).ok


def test_verify_says_what_is_wrong() -> None:
    key = secret_key(_WHSEC)
    good = {"webhook-id": "1", "webhook-timestamp": "1000",
            "webhook-signature": sign(key, "1", 1000, b"x")}
    assert verify(key, good, b"x", now=1100).ok
    tampered = verify(key, good, b"y", now=1100)
    assert not tampered.signature_valid and "no signature matches" in tampered.reason
    stale = verify(key, good, b"x", now=1000 + 301)
    assert stale.signature_valid and not stale.timestamp_fresh and "old" in stale.reason
    assert not verify(secret_key("other"), good, b"x", now=1000).ok
    missing = verify(key, {"webhook-id": "1"}, b"x", now=1000)
    assert "webhook-timestamp" in missing.reason
