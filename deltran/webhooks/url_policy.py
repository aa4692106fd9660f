"""Which webhook URLs DelTran will call: a bank must not be able to point its webhook at our
own services or anything else inside the network (SSRF).

Two checks. `check_url_form` is syntax only and runs when the URL is registered: it also
refuses IP literals that are not public, and numeric hosts that some clients read as IPv4
(`2130706433`, `0x7f.1`). `resolve_checked` resolves the name and refuses it if any address
is not public; it runs at registration and again before every delivery, since DNS can
change. The caller should connect to the addresses it returns (not resolve again) and not
follow redirects, or a rebinding name or a 3xx reopens the hole.

`allow_private` is for development and tests (a receiver on localhost): it permits `http`,
`localhost` and non-public addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from typing import NamedTuple
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

URL_LENGTH_MAX = 2000
RESOLVE_TIMEOUT_S = 5.0
_DEFAULT_PORTS = {"https": 443, "http": 80}

# RFC 3986's unreserved and reserved characters plus '%'. Anything else (spaces, control
# characters, backslashes, non-ASCII) must be percent-encoded: parsers disagree about them,
# and a disagreement between our check and the HTTP client is an SSRF.
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# A last label that WHATWG URL parsers and inet_aton read as a number turns the whole host
# into an IPv4 address (`127.1`, `0x7f.1`, `2130706433`); no real TLD looks like this.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")

# Ranges that ipaddress (3.11) counts as global but that are not somewhere to deliver to.
_NOT_PUBLIC = tuple(
    ipaddress.ip_network(n)
    for n in (
        "192.0.0.0/24",  # IETF protocol assignments
        "192.88.99.0/24",  # 6to4 relay anycast, deprecated
        "64:ff9b:1::/48",  # NAT64 for local use (RFC 8215)
        "3fff::/20",  # documentation (RFC 9637)
        "5f00::/16",  # SRv6 SIDs (RFC 9602)
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


class UrlRefused(ValueError):
    """The webhook URL may not be used; the message says why, for the bank to read."""


class _Target(NamedTuple):
    scheme: str
    host: str  # lower case, no brackets, no trailing dot
    ip: IPAddress | None  # set when the host is an IP literal
    port: int | None  # as written; None when absent
    path_and_query: str


def is_public_address(ip: IPAddress) -> bool:
    """True only for a unicast address on the public internet. Addresses that embed an IPv4
    address (mapped, 6to4, Teredo, NAT64) are judged by it too, since that is where the
    packets end up."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return False
        if ip.ipv4_mapped is not None:  # a socket connects to the IPv4 address itself
            return is_public_address(ip.ipv4_mapped)
        # ::a.b.c.d (deprecated, RFC 4291), :: and ::1: never a real destination.
        if ip in _IPV4_COMPATIBLE:
            return False
        # NAT64 (DNS64 synthesises these for IPv4-only hosts): the IPv4 address decides,
        # and ipaddress counts the whole range as reserved.
        if ip in _NAT64:
            return is_public_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None and not is_public_address(ip.sixtofour):
            return False
        if ip.teredo is not None and not all(is_public_address(v4) for v4 in ip.teredo):
            return False
        if ip.is_site_local:
            return False
    # is_global alone misses multicast (224.0.0.0/4, ff00::/8) in 3.11; the rest are
    # belt and braces against a future change in its tables.
    return (
        ip.is_global
        and not ip.is_private
        and not ip.is_multicast
        and not ip.is_loopback
        and not ip.is_link_local
        and not ip.is_reserved
        and not ip.is_unspecified
        and not any(ip in net for net in _NOT_PUBLIC)
    )


def check_url_form(url: str, *, allow_private: bool) -> str:
    """Check the URL's syntax (no DNS) and return it normalised: scheme and host in lower
    case, a default port dropped, an empty path as '/'. Raises UrlRefused."""
    target = _parse(url, allow_private=allow_private)
    return _normalised(target)


async def resolve_checked(url: str, *, allow_private: bool, timeout_s: float = RESOLVE_TIMEOUT_S) -> list[str]:
    """Check the URL's form, resolve its host and return the addresses (an IP literal is
    returned as is, without DNS). Raises UrlRefused if the name does not resolve or, unless
    allow_private, if any address is not public: one private answer among public ones is
    enough to refuse, since the client may pick it."""
    target = _parse(url, allow_private=allow_private)
    if target.ip is not None:
        return [str(target.ip)]
    port = target.port or _DEFAULT_PORTS[target.scheme]
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            infos = await loop.getaddrinfo(target.host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError, TimeoutError) as exc:
        raise UrlRefused(f"webhook host {target.host!r} does not resolve") from exc
    addresses: list[str] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        ip = ipaddress.ip_address(sockaddr[0])
        if not allow_private and not is_public_address(ip):
            # Which address is not said: the answer would map DelTran's internal DNS for a caller.
            raise UrlRefused(f"webhook host {target.host!r} resolves to an address that is not public")
        if str(ip) not in addresses:
            addresses.append(str(ip))
    if not addresses:
        raise UrlRefused(f"webhook host {target.host!r} does not resolve")
    return addresses


def _parse(url: str, *, allow_private: bool) -> _Target:
    if len(url) > URL_LENGTH_MAX:
        raise UrlRefused(f"webhook URL is longer than {URL_LENGTH_MAX} characters")
    if not _URL_CHARS.fullmatch(url):
        raise UrlRefused("webhook URL contains spaces, backslashes or other characters that must be percent-encoded")
    if "#" in url:
        raise UrlRefused("webhook URL must not have a fragment ('#...')")
    try:
        parts = urlsplit(url)
    except ValueError:  # it checks [brackets] itself
        raise UrlRefused("webhook URL has a malformed [IPv6] host") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or (scheme == "http" and not allow_private):
        raise UrlRefused("webhook URL must be an absolute https:// URL")
    if not url[len(scheme) + 1 :].startswith("//") or not parts.netloc:
        raise UrlRefused("webhook URL must be an absolute https:// URL with a host")
    if "@" in parts.netloc:
        raise UrlRefused("webhook URL must not contain a user name or password")
    host, port = _split_host_port(parts.netloc)
    ip = _host_ip(host, allow_private=allow_private)
    if ip is None:
        host = _check_dns_name(host, allow_private=allow_private)
    path_and_query = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(scheme, host, ip, port, path_and_query)


def _split_host_port(netloc: str) -> tuple[str, int | None]:
    if netloc.startswith("["):
        host, bracket, rest = netloc[1:].partition("]")
        # Brackets hold an IPv6 address and nothing else (not a name, not an IPv4 address).
        if not bracket or ":" not in host or (rest and not rest.startswith(":")):
            raise UrlRefused("webhook URL has a malformed [IPv6] host")
        port_text = rest[1:] if rest else None
    else:
        if netloc.count(":") > 1:
            raise UrlRefused("webhook URL has more than one ':' in its host (an IPv6 address must be in brackets)")
        host, colon, port_text_or_empty = netloc.partition(":")
        port_text = port_text_or_empty if colon else None
        if "[" in host or "]" in host:
            raise UrlRefused("webhook URL has a malformed host")
    if not host:
        raise UrlRefused("webhook URL must have a host")
    if not port_text:  # absent, or "host:" with nothing after it
        return host.lower(), None
    if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5 or not 1 <= int(port_text) <= 65535:
        raise UrlRefused("webhook URL's port must be a number from 1 to 65535")
    return host.lower(), int(port_text)


def _host_ip(host: str, *, allow_private: bool) -> IPAddress | None:
    """The host as an IP address when it is an IPv6 literal (it came in brackets) or a
    dotted quad; None for a name."""
    ip: IPAddress
    if ":" in host:
        if "%" in host:
            raise UrlRefused("webhook URL must not use an IPv6 zone (link-local) address")
        try:
            ip = ipaddress.IPv6Address(host)
        except ValueError:
            raise UrlRefused("webhook URL has a malformed IPv6 address") from None
    else:
        try:
            ip = ipaddress.IPv4Address(host)
        except ValueError:
            return None
    if not allow_private and not is_public_address(ip):
        raise UrlRefused(f"webhook URL's address {ip} is not a public address")
    return ip


def _check_dns_name(host: str, *, allow_private: bool) -> str:
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise UrlRefused(f"webhook host {host!r} is not a valid DNS name (use punycode for international names)")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        raise UrlRefused(f"webhook host {host!r} looks numeric; write an IPv4 address as four decimal numbers")
    if not allow_private:
        if labels[-1] == "localhost":
            raise UrlRefused("webhook URL must not point at localhost")
        # A single label is completed from the resolver's search domains: an internal name.
        if len(labels) == 1:
            raise UrlRefused(f"webhook host {host!r} must be a fully qualified domain name")
    return name


def _normalised(target: _Target) -> str:
    if isinstance(target.ip, ipaddress.IPv6Address):
        host = f"[{target.ip.compressed}]"
    elif target.ip is not None:
        host = str(target.ip)
    else:
        host = target.host
    port = "" if target.port in (None, _DEFAULT_PORTS[target.scheme]) else f":{target.port}"
    return f"{target.scheme}://{host}{port}{target.path_and_query}"


class Pinned(NamedTuple):
    """A request to `url` sent to one checked address: what the client connects to is
    what was checked, whatever the name resolves to a moment later (DNS rebinding)."""

    url: str  # the URL with the address in place of the name
    host: str  # the Host header: the name (and port) as the bank gave them
    extensions: dict[str, str]  # httpx: TLS is verified against the name, not the address


def pinned(url: str, address: str) -> Pinned:
    parts = urlsplit(url)
    assert parts.hostname is not None
    ip = ipaddress.ip_address(address)
    literal = f"[{ip}]" if ip.version == 6 else str(ip)
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    host = parts.netloc.rpartition("@")[2]  # (a registered URL has no credentials)
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    return Pinned(parts._replace(netloc=netloc).geturl(), host, extensions)
