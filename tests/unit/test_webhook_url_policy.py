"""Webhook URL policy: a bank's webhook must not reach our own services (SSRF). Nothing
here needs the internet: names are only resolved for localhost."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest

from deltran.webhooks.url_policy import (
    UrlRefused,
    check_url_form,
    is_public_address,
    pinned,
    resolve_checked,
)

REFUSED = [
    # scheme
    "http://example.com/hook",
    "ftp://example.com/hook",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "gopher://example.com/",
    "//example.com/hook",
    "example.com/hook",
    "https:/example.com/hook",
    "https:example.com",
    # credentials, host, fragment
    "https://user:pass@example.com/hook",
    "https://user@example.com/hook",
    "https://@example.com/hook",
    "https://example.com@169.254.169.254/",
    "https:///hook",
    "https://",
    "https://example.com/hook#frag",
    "https://example.com/hook#",
    # port
    "https://example.com:0/",
    "https://example.com:65536/",
    "https://example.com:99999999/",
    "https://example.com:-1/",
    "https://example.com:+443/",
    "https://example.com:https/",
    "https://example.com:443:443/",
    # characters parsers disagree about
    "https://example.com\\@169.254.169.254/",
    "https://exa mple.com/",
    "https://example.com/\nhook",
    "https://example.com\t/",
    "https://ex\u00e4mple.com/",
    "https://%31%32%37.0.0.1/",
    "https://exa_mple.com/",
    "https://-example.com/",
    "https://example..com/",
    # length
    "https://example.com/" + "a" * 2000,
    # localhost and single labels
    "https://localhost/",
    "https://LOCALHOST./",
    "https://api.localhost/",
    "https://postgres/",
    # IPv4 literals that are not public
    "https://127.0.0.1/",
    "https://10.0.0.1/",
    "https://172.16.5.4/",
    "https://192.168.1.1/",
    "https://169.254.169.254/latest/meta-data/",
    "https://0.0.0.0/",
    "https://0.1.2.3/",
    "https://100.64.1.1/",
    "https://192.0.2.1/",
    "https://198.51.100.7/",
    "https://203.0.113.9/",
    "https://198.18.0.1/",
    "https://224.0.0.1/",
    "https://240.0.0.1/",
    "https://255.255.255.255/",
    # numeric hosts that clients read as IPv4 (127.0.0.1 in disguise)
    "http://2130706433/",
    "https://2130706433/",
    "https://0x7f.1/",
    "https://0x7f000001/",
    "https://127.1/",
    "https://0177.0.0.1/",
    "https://127.0.0.01/",
    "https://1.2.3.4.5/",
    "https://0/",
    # IPv6 literals that are not public, or malformed
    "https://[::1]/",
    "https://[::]/",
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:7f00:1]/",
    "https://[::ffff:169.254.169.254]/",
    "https://[::127.0.0.1]/",
    "https://[fe80::1]/",
    "https://[fe80::1%25eth0]/",
    "https://[fc00::1]/",
    "https://[fd12:3456::1]/",
    "https://[fec0::1]/",
    "https://[ff02::1]/",
    "https://[2001:db8::1]/",
    "https://[64:ff9b::a00:1]/",
    "https://[64:ff9b::7f00:1]/",
    "https://[2002:7f00:1::1]/",
    "https://[2002:a00:1::1]/",
    "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
    "https://::1/",
    "https://[::1/",
    "https://[127.0.0.1]/",
    "https://[example.com]/",
    "https://[]/",
    "https://[2001:4860:4860::8888]x/",
]


@pytest.mark.parametrize("url", REFUSED)
def test_refused(url):
    with pytest.raises(UrlRefused):
        check_url_form(url, allow_private=False)


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("https://example.com/hook", "https://example.com/hook"),
        ("HTTPS://Hooks.Example.COM/In?bank=X&v=1", "https://hooks.example.com/In?bank=X&v=1"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com:443/hook", "https://example.com/hook"),
        ("https://example.com:8443/hook", "https://example.com:8443/hook"),
        ("https://example.com:/hook", "https://example.com/hook"),
        ("https://example.com./hook", "https://example.com/hook"),
        ("https://xn--exmple-cua.com/hook", "https://xn--exmple-cua.com/hook"),
        ("https://8.8.8.8/hook", "https://8.8.8.8/hook"),
        ("https://[2001:4860:4860:0:0:0:0:8888]:8443/h", "https://[2001:4860:4860::8888]:8443/h"),
        ("https://[::ffff:8.8.8.8]/h", "https://[::ffff:808:808]/h"),
        ("https://0x7f.example.com/hook", "https://0x7f.example.com/hook"),
        ("https://example.com/" + "a" * 1980, "https://example.com/" + "a" * 1980),
    ],
)
def test_accepted_and_normalised(url, normalised):
    assert check_url_form(url, allow_private=False) == normalised


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hook",
        "http://localhost:9000/hook",
        "http://receiver/hook",
        "https://[::1]:9000/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/",
    ],
)
def test_allow_private_accepts_local_receivers(url):
    assert check_url_form(url, allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/",
        "http://user:pw@127.0.0.1/",
        "http://127.0.0.1/#x",
        "http://127.0.0.1:0/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://127.1/",
    ],
)
def test_allow_private_still_checks_the_form(url):
    with pytest.raises(UrlRefused):
        check_url_form(url, allow_private=True)


def test_refusal_reads_as_a_message():
    with pytest.raises(UrlRefused, match="user name or password"):
        check_url_form("https://a:b@example.com/", allow_private=False)
    with pytest.raises(UrlRefused, match="169.254.169.254 is not a public address"):
        check_url_form("https://169.254.169.254/", allow_private=False)
    assert issubclass(UrlRefused, ValueError)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("1.1.1.1", True),
        ("2001:4860:4860::8888", True),
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::808:808", True),
        ("2002:808:808::1", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.31.255.255", False),
        ("192.168.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("100.127.255.254", False),
        ("0.0.0.0", False),
        ("0.255.255.255", False),
        ("192.0.0.9", False),
        ("192.0.2.1", False),
        ("192.88.99.1", False),
        ("224.0.0.251", False),
        ("239.255.255.250", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::", False),
        ("::1", False),
        ("::8.8.8.8", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:100.64.0.1", False),
        ("fe80::1", False),
        ("fe80::1%eth0", False),
        ("fec0::1", False),
        ("fc00::1", False),
        ("fd00::1", False),
        ("ff02::1", False),
        ("ff0e::1", False),
        ("2001:db8::1", False),
        ("3fff::1", False),
        ("100::1", False),
        ("64:ff9b::7f00:1", False),
        ("64:ff9b::a9fe:a9fe", False),
        ("64:ff9b:1::808:808", False),
        ("2002:7f00:1::1", False),
        ("2002:c0a8:101::1", False),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", False),
    ],
)
def test_is_public_address(address, public):
    assert is_public_address(ipaddress.ip_address(address)) is public


async def test_localhost_is_refused_before_any_dns():
    with pytest.raises(UrlRefused, match="localhost"):
        await resolve_checked("https://localhost/hook", allow_private=False)


async def test_localhost_resolves_when_private_is_allowed():
    addresses = await resolve_checked("http://localhost:9000/hook", allow_private=True)
    assert addresses
    assert all(ipaddress.ip_address(a).is_loopback for a in addresses)


async def test_ip_literal_needs_no_dns():
    assert await resolve_checked("https://8.8.8.8/hook", allow_private=False) == ["8.8.8.8"]
    assert await resolve_checked("https://[2001:4860:4860::8888]/h", allow_private=False) == ["2001:4860:4860::8888"]
    assert await resolve_checked("http://127.0.0.1:9000/hook", allow_private=True) == ["127.0.0.1"]
    with pytest.raises(UrlRefused):
        await resolve_checked("https://[::ffff:127.0.0.1]/", allow_private=False)


async def test_a_private_answer_among_public_ones_is_refused(monkeypatch):
    # A stub resolver: a name that resolves to a public and a private address.
    async def getaddrinfo(host, port, **kwargs):
        return [(2, 1, 6, "", ("93.184.215.14", port)), (2, 1, 6, "", ("10.0.0.7", port))]

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    with pytest.raises(UrlRefused, match="not public"):
        await resolve_checked("https://hooks.example.com/", allow_private=False)
    assert await resolve_checked("https://hooks.example.com/", allow_private=True) == ["93.184.215.14", "10.0.0.7"]


async def test_a_name_that_does_not_resolve_is_refused(monkeypatch):
    async def getaddrinfo(host, port, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    with pytest.raises(UrlRefused, match="does not resolve"):
        await resolve_checked("https://nowhere.example/", allow_private=False)


@pytest.mark.parametrize(
    ("url", "address", "expected"),
    [
        (
            "https://hooks.bank.example/deltran?x=1",
            "203.0.113.7",
            ("https://203.0.113.7/deltran?x=1", "hooks.bank.example", {"sni_hostname": "hooks.bank.example"}),
        ),
        (
            "https://hooks.bank.example:8443/d",
            "2001:db8::7",
            ("https://[2001:db8::7]:8443/d", "hooks.bank.example:8443", {"sni_hostname": "hooks.bank.example"}),
        ),
        ("http://localhost:9000/hook", "127.0.0.1", ("http://127.0.0.1:9000/hook", "localhost:9000", {})),
    ],
)
def test_a_delivery_goes_to_the_checked_address_under_the_bank_s_name(url, address, expected):
    assert tuple(pinned(url, address)) == expected
