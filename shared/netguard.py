"""Where kamwatch may post to: registry webhook URLs are untrusted input (issue 11 Medium #3).

A Slack webhook in the registry made kamwatch POST account data to any address, loopback,
link-local (cloud metadata at 169.254.169.254) and private networks included. Such addresses are
refused in every profile: by literal address when the URL is stored, and after DNS resolution
right before each post. The operator can trust specific `host:port` pairs (the local Slack
receiver `kamwatch run` starts on 127.0.0.1) with KAMWATCH_TRUSTED_WEBHOOK_HOSTS.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def slack_url_allowed(url: str, allowed_hosts: list[str]) -> bool:
    """An https URL whose host is on the allow-list (no credentials, no odd port): stops a
    registry entry from making kamwatch post alerts (account data) to any server it names."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    hosts = {h.strip().lower() for h in allowed_hosts if h.strip()}
    return parts.scheme == "https" and host in hosts and not parts.username and port in (None, 443)


def _endpoint(url: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.scheme not in ("http", "https") or not host:
        return None
    return host, port


def _forbidden_ip(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def _trusted(host: str, port: int, trusted: Iterable[str]) -> bool:
    return f"{host}:{port}" in {t.strip().lower() for t in trusted}


def stored_url_problem(url: str, trusted: Iterable[str] = ()) -> str | None:
    """Why this webhook URL must not be stored (literal addresses and local names), or None."""
    endpoint = _endpoint(url)
    if endpoint is None:
        return "must be an http(s) URL with a host"
    host, port = endpoint
    if _trusted(host, port, trusted):
        return None
    if host in LOCAL_NAMES or host.endswith(".localhost"):
        return f"points at this machine ({host}); use the Slack webhook URL of your workspace"
    address = _literal_address(host.strip("[]"))
    if address is not None and _forbidden_ip(address):
        return f"points at a loopback, private, link-local or reserved address ({host})"
    return None  # a public address, or a name: checked after resolution when posting


def _literal_address(host: str) -> str | None:
    """The address a literal host means, including the shorthand forms the resolver accepts
    (127.1, 2130706433, 0x7f.0.0.1), or None for a name."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


def send_url_problem(url: str, trusted: Iterable[str] = ()) -> str | None:
    """Why kamwatch must not post to this URL now (every resolved address is checked), or None."""
    problem = stored_url_problem(url, trusted)
    endpoint = _endpoint(url)
    if problem or endpoint is None:
        return problem
    host, port = endpoint
    if _trusted(host, port, trusted):
        return None
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, proto=socket.IPPROTO_TCP)
    except OSError:
        return None  # unresolvable: the post fails as unreachable and is retried
    bad = sorted({str(info[4][0]) for info in infos if _forbidden_ip(str(info[4][0]))})
    if bad:
        return f"{host} resolves to a loopback, private, link-local or reserved address ({bad[0]})"
    return None
