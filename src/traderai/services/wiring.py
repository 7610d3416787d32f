"""Wiring of the API, WebSocket and broadcast functions: adapters built once per container, lazily.

Nothing here runs at import time. The first call reads and validates the settings, so a missing
setting fails that invocation naming its environment variable; warm invocations reuse the objects.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

from traderai.adapters.connections import ConnectionStore
from traderai.adapters.deliveries import DeliveryStore
from traderai.adapters.push import Pusher
from traderai.adapters.signal_store import SignalStore
from traderai.services.api import PageTokens
from traderai.settings import Settings, SettingsError, Strategy


def wall_clock() -> datetime:
    return datetime.now(UTC)


_clock: Callable[[], datetime] = wall_clock


def now() -> datetime:
    """The functions' "now": the wall clock on AWS; the local stack sets its replay clock (`use_clock`)."""
    return _clock()


def use_clock(clock: Callable[[], datetime]) -> None:
    """Make `now()` read this clock (the local stack's replay clock) until `clear()`."""
    global _clock
    _clock = clock


def required_env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise SettingsError(f"{name}: required by this function but not set")
    return value


@lru_cache(maxsize=1)
def signal_store() -> SignalStore:
    settings = Settings.from_env().require("signals_table")
    return SignalStore(settings.signals_table)


@lru_cache(maxsize=1)
def strategy() -> Strategy:
    """The signal rules in force (the protections' settings: GET /performance shows the same locks)."""
    return Settings.from_env().strategy


@lru_cache(maxsize=1)
def connection_store() -> ConnectionStore:
    settings = Settings.from_env().require("connections_table")
    return ConnectionStore(settings.connections_table)


@lru_cache(maxsize=1)
def delivery_ledger() -> DeliveryStore:
    """Which connections already got a signal version (DELIVERIES_TABLE): one push per connection per version."""
    settings = Settings.from_env().require("deliveries_table")
    return DeliveryStore(settings.deliveries_table)  # type: ignore[arg-type]


@lru_cache(maxsize=1)
def page_tokens() -> PageTokens:
    return PageTokens(required_env("TOKEN_SECRET"))


@lru_cache(maxsize=1)
def pusher() -> Pusher:
    """Posts to `WEBSOCKET_ENDPOINT`; `PUSH_TRANSPORT=boto3` switches to boto3's client (default: signed)."""
    return Pusher.for_endpoint(required_env("WEBSOCKET_ENDPOINT"),
                               transport=os.environ.get("PUSH_TRANSPORT", "").strip() or "signed")


def clear() -> None:
    """Forget every built adapter (tests, and the local demo when it changes the environment)."""
    for cached in (signal_store, connection_store, page_tokens, pusher, delivery_ledger, strategy):
        cached.cache_clear()
    use_clock(wall_clock)
