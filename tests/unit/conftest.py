"""Unit tests never touch the network: connections and DNS lookups beyond loopback fail loudly."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

_LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "", None}


class NetworkBlockedError(RuntimeError):
    """A unit test tried to reach the network."""


def _host_of(address: Any) -> Any:
    return address[0] if isinstance(address, tuple) else None


def _guard_connect(original: Callable[..., Any]) -> Callable[..., Any]:
    def connect(self: socket.socket, address: Any, *args: Any) -> Any:
        if self.family != socket.AF_UNIX and _host_of(address) not in _LOOPBACK:
            raise NetworkBlockedError(f"unit tests must not use the network (connect to {address!r})")
        return original(self, address, *args)

    return connect


def _guard_lookup(original: Callable[..., Any]) -> Callable[..., Any]:
    def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        if (host.decode() if isinstance(host, bytes) else host) not in _LOOPBACK:
            raise NetworkBlockedError(f"unit tests must not use the network (lookup of {host!r})")
        return original(host, *args, **kwargs)

    return lookup


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Block connect and name resolution except to loopback; asyncio's internal socketpair still works."""
    monkeypatch.setattr(socket.socket, "connect", _guard_connect(socket.socket.connect))
    monkeypatch.setattr(socket.socket, "connect_ex", _guard_connect(socket.socket.connect_ex))
    monkeypatch.setattr(socket, "getaddrinfo", _guard_lookup(socket.getaddrinfo))
