"""The SSRF guard: internal addresses, by literal, by name or embedded, are refused."""

from __future__ import annotations

import ipaddress

import pytest

from aidp.notify.guard import Blocked, check_url, forbidden_reason, resolve

INTERNAL = [
    "http://127.0.0.1/", "http://127.1:8080/", "http://2130706433/", "http://localhost/",
    "http://10.1.2.3/", "http://172.16.0.1/", "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "http://[::1]/",
    "http://0.0.0.0/", "http://[::]/", "http://100.64.0.1/", "http://224.0.0.1/",
    "http://[fe80::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:169.254.169.254]/",
    "http://[2002:7f00:1::]/", "http://240.0.0.1/", "http://255.255.255.255/",
]


@pytest.mark.parametrize("url", INTERNAL)
def test_internal_addresses_are_refused_unless_allowed(url: str) -> None:
    target = check_url(url)
    with pytest.raises(Blocked, match="refused"):
        resolve(target, allow_private=False)
    assert resolve(target, allow_private=True)


@pytest.mark.parametrize("url, why", [
    ("ftp://example.com/", "scheme"), ("file:///etc/passwd", "scheme"),
    ("gopher://127.0.0.1:25/", "scheme"), ("http://user:pw@example.com/", "credentials"),
    ("http://user@example.com/", "credentials"), ("http:///x", "no host"),
    ("http://example.com:99999/", "(?i)port"),
])
def test_bad_urls_are_refused_before_any_lookup(url: str, why: str) -> None:
    with pytest.raises(Blocked, match=why):
        check_url(url)


def test_public_addresses_pass() -> None:
    for text in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"):
        assert forbidden_reason(ipaddress.ip_address(text)) is None
    assert resolve(check_url("https://8.8.8.8/hook"), allow_private=False)


def test_metadata_address_is_named_link_local() -> None:
    assert "link-local" in (forbidden_reason(ipaddress.ip_address("169.254.169.254")) or "")


def test_host_header_keeps_the_name_and_port() -> None:
    assert check_url("https://hooks.example.com/x?y=1").host_header == "hooks.example.com"
    assert check_url("http://[::1]:81/").host_header == "[::1]:81"
    assert check_url("http://a.example:8080/p?q").path == "/p?q"
