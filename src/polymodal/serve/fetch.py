"""Fetching image URLs without becoming a proxy into the server's network.

Nothing is fetched unless the host is on ``url_allowlist``. Each hop of a fetch resolves the host, refuses
private, loopback, link-local, multicast and other non-global addresses (unless ``url_allow_private``),
connects to the address it checked (so a second DNS answer cannot swap it), never follows a redirect
automatically (each ``Location`` is checked like the first URL), and reads at most ``max_bytes``.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from polymodal.serve.errors import ServeError

REDIRECTS = (301, 302, 303, 307, 308)
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class FetchPolicy:
    """What may be fetched."""

    allowlist: tuple[str, ...] = ()  # hosts, or "*.domain" for its subdomains
    allow_private: bool = False  # accept addresses that are not globally routable
    max_bytes: int = 20 * 1024 * 1024  # largest body read
    timeout_s: float = 5.0  # connect and read timeout
    max_redirects: int = 3  # redirects followed (each one checked)


def is_forbidden_address(address: str) -> bool:
    """True for addresses a public fetch must never reach: private, loopback, link-local, multicast,
    reserved, unspecified, shared (CGNAT) ... anything not globally routable, IPv4-mapped IPv6 included."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_multicast or not ip.is_global


def host_allowed(host: str, allowlist: tuple[str, ...]) -> bool:
    """Whether ``host`` is on the allowlist (exact match, or a subdomain of a "*.domain" entry)."""
    host = host.lower().rstrip(".")
    for entry in (e.lower().rstrip(".") for e in allowlist):
        if entry.startswith("*.") and host.endswith(entry[1:]) and host != entry[2:]:
            return True
        if host == entry:
            return True
    return False


def _refuse(message: str, code: str = "url_refused") -> ServeError:
    return ServeError(400, message, code, "image_url")


def _checked_address(host: str, port: int, policy: FetchPolicy) -> str:
    """The address to connect to, after refusing hosts that resolve anywhere forbidden."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise _refuse(f"cannot resolve the image URL's host {host!r}") from None
    addresses = [info[4][0] for info in infos]
    if not policy.allow_private and any(is_forbidden_address(a) for a in addresses):
        raise _refuse(f"the image URL's host {host!r} resolves to a private or local address; refused")
    return addresses[0]


def _open(scheme: str, host: str, address: str, port: int, path: str, timeout: float):
    """GET ``path`` from ``address`` while speaking to ``host`` (Host header, TLS name checks)."""
    if scheme == "https":
        context = ssl.create_default_context()
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=context
        )

        def connect() -> None:
            raw = socket.create_connection((address, port), timeout)
            conn.sock = context.wrap_socket(raw, server_hostname=host)

    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)

        def connect() -> None:
            conn.sock = socket.create_connection((address, port), timeout)

    conn.connect = connect  # type: ignore[method-assign]  # pin the checked address
    conn.request("GET", path, headers={"User-Agent": "polymodal-serve", "Accept": "image/*"})
    return conn, conn.getresponse()


def _read_capped(response, max_bytes: int) -> bytes:
    declared = response.getheader("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ServeError(
            413, f"the image at the URL is larger than {max_bytes} bytes", "url_too_large", "image_url"
        )
    body = response.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise ServeError(
            413, f"the image at the URL is larger than {max_bytes} bytes", "url_too_large", "image_url"
        )
    return body


def fetch_url(url: str, policy: FetchPolicy) -> bytes:
    """The body of ``url`` (a blocking call: run it in a thread), under ``policy``.

    Raises:
        ServeError: 400 for refused or failing URLs, 413 for bodies over ``policy.max_bytes``.
    """
    if not policy.allowlist:
        raise _refuse("remote image URLs are not fetched by this server; send the image as a data URI")
    for _ in range(policy.max_redirects + 1):
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise _refuse("image URLs must be http(s)://host/... or data URIs")
        if parts.username or parts.password:
            raise _refuse("image URLs may not carry credentials")
        if not host_allowed(parts.hostname, policy.allowlist):
            raise _refuse(f"the image URL's host {parts.hostname!r} is not on this server's url_allowlist")
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError:
            raise _refuse("the image URL has an invalid port") from None
        address = _checked_address(parts.hostname, port, policy)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn, response = _open(parts.scheme, parts.hostname, address, port, path, policy.timeout_s)
            try:
                if response.status in REDIRECTS and response.getheader("Location"):
                    url = urljoin(url, response.getheader("Location"))
                    continue
                if response.status != 200:
                    raise _refuse(f"fetching the image URL failed with HTTP {response.status}", "url_failed")
                return _read_capped(response, policy.max_bytes)
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as e:
            raise _refuse(f"fetching the image URL failed ({type(e).__name__})", "url_failed") from None
    raise _refuse(f"the image URL redirected more than {policy.max_redirects} times")
