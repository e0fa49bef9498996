"""Which ``Host`` headers a server answers, and which peers are on this machine.

A browser will send a request to ``127.0.0.1`` on behalf of any web page, and after a DNS
rebinding a page's own name can point there too. What gives such a request away is its
``Host`` header (the attacker's name, not the address the server listens on), so a server
that answers only the names it is reached by cannot be driven through someone else's
domain. :class:`AllowedHosts` is that list: the address the server is bound to (with the
loopback names when it is bound to loopback or to every interface), plus the names an
operator adds (``REFLUXO_ALLOWED_HOSTS``). Anything else is answered 421 (Misdirected
Request) by :class:`refluxo.api.http.HttpApi`.

Nothing here imports a web framework: the settings validate addresses with it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
"""The names a client on this machine reaches a loopback-bound server by."""

WILDCARD_ADDRESSES = frozenset({"0.0.0.0", "::", "[::]", ""})
"""Bind addresses that mean every interface."""

_HOST = re.compile(r"(?P<name>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>[0-9]{1,5}))?")
"""A ``Host`` header: a name, an IPv4 address or a bracketed IPv6 one, and an optional port
(ASCII digits only)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or a name) can only be reached from this machine."""
    name = host.strip().lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _bracketed(name: str) -> str:
    """An IPv6 address as a ``Host`` header writes it (``[::1]``); other names unchanged."""
    if ":" in name and not name.startswith("["):
        return f"[{name}]"
    return name


def split_host(header: str) -> tuple[str, int | None] | None:
    """``(name, port)`` of a ``Host`` header (name lowercased), or None if malformed."""
    match = _HOST.fullmatch(header.strip())
    if match is None:
        return None
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        return None
    return match.group("name").lower(), (int(port) if port is not None else None)


@dataclass(frozen=True, slots=True)
class AllowedHosts:
    """The ``Host`` headers a server answers.

    Attributes:
        local: names of the address the server is bound to; they match on :attr:`port`
            only, once it is known (:meth:`on_port`), and on any port before.
        port: the port the server listens on (None: not known here, any port matches).
        extra: configured entries, ``(name, port)``; a None port matches any port.
        any_host: every ``Host`` is answered (the operator configured ``*``).
    """

    local: frozenset[str] = frozenset()
    port: int | None = None
    extra: frozenset[tuple[str, int | None]] = frozenset()
    any_host: bool = False

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowedHosts:
        """The configured entries (``name``, ``name:port``, ``[v6]:port`` or ``*``).

        Raises:
            ValueError: an entry is not a host name with an optional port.
        """
        extra: set[tuple[str, int | None]] = set()
        any_host = False
        for entry in entries:
            entry = entry.strip()
            if not entry:
                continue
            if entry == "*":
                any_host = True
                continue
            parsed = split_host(_bracketed(entry) if entry.count(":") > 1 else entry)
            if parsed is None:
                raise ValueError(f"{entry!r} is not a host name with an optional :port")
            extra.add(parsed)
        return cls(extra=frozenset(extra), any_host=any_host)

    @classmethod
    def bound_to(cls, host: str, extra: Iterable[str] = ()) -> AllowedHosts:
        """The names of bind address ``host`` (with the loopback names when it is loopback
        or every interface), plus the configured ``extra`` entries."""
        configured = cls.parse(extra)
        name = host.strip().lower()
        local = set()
        if name not in WILDCARD_ADDRESSES:
            local.add(_bracketed(name))
        if name in WILDCARD_ADDRESSES or is_loopback(name):
            local.update(LOOPBACK_NAMES)
        return replace(configured, local=frozenset(local))

    def on_port(self, port: int) -> AllowedHosts:
        """The same names, the bound address's only on ``port`` (the server's real port)."""
        return replace(self, port=port)

    def allows(self, header: str | None, *, default_port: int = 80) -> bool:
        """Whether a request with this ``Host`` header is for this server.

        A header without a port means ``default_port`` (80 for http).
        """
        if self.any_host:
            return True
        if header is None:
            return False
        parsed = split_host(header)
        if parsed is None:
            return False
        name, port = parsed
        if name in self.local and (self.port is None or (port or default_port) == self.port):
            return True
        return any(
            name == allowed and (allowed_port is None or (port or default_port) == allowed_port)
            for allowed, allowed_port in self.extra
        )

    def describe(self) -> str:
        """The accepted hosts, for a banner or an error message."""
        if self.any_host:
            return "any Host"
        suffix = f":{self.port}" if self.port is not None else ""
        names = [f"{name}{suffix}" for name in sorted(self.local)]
        names += [
            name if port is None else f"{name}:{port}" for name, port in sorted(self.extra, key=str)
        ]
        return ", ".join(names) or "no Host"
