"""Notifications, the pure part: who wants a signal change, what is sent, how a reply is read, what is valid.

No network, no clock, no env: times come in as arguments. The service (`services.notify`) does the I/O.

- A `Subscriber` is a Telegram chat (Bot API `sendMessage`, the signal-channel text of `core.text_format`)
  or a webhook (a JSON POST signed with HMAC-SHA256 over `"<timestamp>.<body>"`, so a receiver can verify
  it and refuse a replay older than its tolerance). Its secret (the bot token, the webhook's signing key)
  lives in Secrets Manager, never here.
- Filters: symbols, side, tradeable only, a minimum expected value (a signal that carries none does not
  pass a minimum: unknown is not >= anything), and which events (a new signal, a status change).
- A reply is DELIVERED (2xx), RETRY (429, with Telegram's `retry_after` when given; 5xx; a timeout or a
  connection error) or REJECTED (any other 4xx: the receiver refuses this request and would refuse it again).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from traderai.contracts import Signal
from traderai.core.text_format import signal_text

SIGNATURE_HEADER = "X-TraderAI-Signature"  # "v1=<hex HMAC-SHA256(secret, '<timestamp>.<body>')>"
TIMESTAMP_HEADER = "X-TraderAI-Timestamp"  # unix seconds when the request was signed
DELIVERY_HEADER = "X-TraderAI-Delivery"  # the same on every attempt of one delivery: de-duplicate on it
EVENTS = ("new", "status")  # a new signal (stream INSERT), a status change (MODIFY of `status`)
KINDS = ("telegram", "webhook")
_CHAT_ID = re.compile(r"^(-?[1-9][0-9]{0,15}|@[A-Za-z][A-Za-z0-9_]{4,31})$")
_BOT_TOKEN = re.compile(r"^[0-9]{3,12}:[A-Za-z0-9_-]{30,64}$")
_SUBSCRIBER_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{2,63}$")
TELEGRAM_TEXT_LIMIT = 4096


class InvalidSubscriber(ValueError):
    """A subscriber that cannot be added: the message says which field and why."""


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"  # worth another attempt (429, 5xx, timeout, connection error)
    REJECTED = "rejected"  # 4xx other than 429: the receiver refuses it


@dataclass(frozen=True, slots=True)
class Reply:
    """What one attempt got back: the HTTP status (None: no reply, `error` says why) and the body."""

    status: int | None
    body: bytes = b""
    error: str | None = None
    retry_after_header: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    reason: str  # a stable code for logs, metrics and the dead-letter record: http_503, timeout, ...
    retry_after_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Filters:
    symbols: tuple[str, ...] = ()  # empty: every market
    sides: tuple[str, ...] = ()  # empty: both
    tradeable_only: bool = False
    min_expected_value_pct: float | None = None
    events: tuple[str, ...] = EVENTS

    def to_dict(self) -> dict[str, Any]:
        return {"symbols": list(self.symbols), "sides": list(self.sides), "tradeable_only": self.tradeable_only,
                "min_expected_value_pct": self.min_expected_value_pct, "events": list(self.events)}


@dataclass(frozen=True, slots=True)
class Subscriber:
    """Where notifications go and which ones; the secret is in Secrets Manager under `secret_name`."""

    subscriber_id: str
    kind: str  # telegram | webhook
    target: str  # the Telegram chat id, or the webhook URL
    secret_name: str
    filters: Filters = field(default_factory=Filters)
    enabled: bool = True
    failures: int = 0  # consecutive rejected (4xx) deliveries; reset by a delivery
    disabled_reason: str | None = None
    created_at: str = ""
    label: str = ""

    def public(self) -> dict[str, Any]:
        """What `notify list` shows: never the secret, and a webhook URL without its query string."""
        target = self.target.split("?", 1)[0] if self.kind == "webhook" else self.target
        return {"subscriber_id": self.subscriber_id, "kind": self.kind, "target": target, "label": self.label,
                "filters": self.filters.to_dict(), "enabled": self.enabled, "failures": self.failures,
                "disabled_reason": self.disabled_reason, "created_at": self.created_at}


def event_of(event_name: str, changed: tuple[str, ...]) -> str | None:
    """`new` for an INSERT, `status` for a MODIFY that changed the status; None for anything else."""
    if event_name == "INSERT":
        return "new"
    if event_name == "MODIFY" and "status" in changed:
        return "status"
    return None


def wants(subscriber: Subscriber, signal: Signal, event: str) -> bool:
    """Whether this enabled subscriber's filters let this signal change through."""
    f = subscriber.filters
    if not subscriber.enabled or event not in f.events:
        return False
    if f.symbols and signal.symbol not in f.symbols:
        return False
    if f.sides and signal.side not in f.sides:
        return False
    if f.tradeable_only and not signal.is_tradeable:
        return False
    if f.min_expected_value_pct is not None:
        return signal.expected_value_pct is not None and signal.expected_value_pct >= f.min_expected_value_pct
    return True


# ---------------------------------------------------------------- what is sent

def message_text(signal: Signal, event: str) -> str:
    """The Telegram text: the signal-channel post (its expected value, PAPER with its reasons for a paper signal,
    the levels, and its status line once it moved on), as `GET /signals/{id}?format=text` serves it."""
    return signal_text(signal)[:TELEGRAM_TEXT_LIMIT]


def telegram_payload(chat_id: str, signal: Signal, event: str) -> bytes:
    """Bot API `sendMessage` body: plain text (no parse mode: nothing in a signal needs escaping)."""
    chat: int | str = int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id
    return json.dumps({"chat_id": chat, "text": message_text(signal, event),
                       "disable_web_page_preview": True}).encode()


def webhook_body(signal: Signal, event: str, delivery_id: str, changed: tuple[str, ...], sent_at: str) -> bytes:
    """The webhook's JSON: the event, the signal as the API serves it, the text, and the delivery id."""
    return json.dumps({"type": "signal" if event == "new" else "signal_update", "event": event,
                       "delivery_id": delivery_id, "sent_at": sent_at, "changed": list(changed),
                       "data": signal.to_dict(), "text": signal_text(signal)}, separators=(",", ":")).encode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`v1=` + hex HMAC-SHA256 of `"<timestamp>.<body>"` under the subscriber's secret."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def webhook_headers(secret: str, timestamp: int, body: bytes, delivery_id: str) -> dict[str, str]:
    return {"Content-Type": "application/json", TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature(secret, timestamp, body), DELIVERY_HEADER: delivery_id,
            "User-Agent": "TraderAI-Notify/1"}


# ---------------------------------------------------------------- how a reply is read

def verdict(reply: Reply) -> Verdict:
    """DELIVERED, RETRY (with Telegram's `retry_after` or a Retry-After header when given) or REJECTED."""
    if reply.status is None:
        return Verdict(Outcome.RETRY, reply.error or "no_reply")
    if 200 <= reply.status < 300:
        return Verdict(Outcome.DELIVERED, f"http_{reply.status}")
    if reply.status == 429:
        return Verdict(Outcome.RETRY, "http_429", _retry_after(reply))
    if reply.status >= 500 or reply.status == 408:
        return Verdict(Outcome.RETRY, f"http_{reply.status}")
    return Verdict(Outcome.REJECTED, f"http_{reply.status}")


def _retry_after(reply: Reply) -> float | None:
    try:  # Telegram: {"ok": false, "error_code": 429, "parameters": {"retry_after": 3}}
        parameters = json.loads(reply.body or b"{}").get("parameters") or {}
        value = parameters.get("retry_after")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return float(value)
    except (ValueError, AttributeError):
        pass
    if reply.retry_after_header and reply.retry_after_header.strip().isdigit():
        return float(reply.retry_after_header.strip())
    return None


# ---------------------------------------------------------------- what is valid (checked at `notify add`)

def validate_subscriber_id(subscriber_id: str) -> str:
    if not _SUBSCRIBER_ID.fullmatch(subscriber_id):
        raise InvalidSubscriber(f"id: {subscriber_id!r} is not 3-64 of a-z, 0-9, _ and -, starting with a letter "
                                "or digit")
    return subscriber_id


def validate_chat_id(chat_id: str) -> str:
    """A Telegram chat id: an integer (negative for groups and channels, e.g. -1001234567890) or @channelname."""
    chat_id = chat_id.strip()
    if not _CHAT_ID.fullmatch(chat_id):
        raise InvalidSubscriber(f"chat id: {chat_id!r} is not a Telegram chat id (an integer such as 123456789 "
                                "or -1001234567890, or @channelname)")
    return chat_id


def validate_bot_token(token: str) -> str:
    if not _BOT_TOKEN.fullmatch(token.strip()):
        raise InvalidSubscriber("bot token: not a Telegram bot token (<digits>:<35 characters>, from @BotFather)")
    return token.strip()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def validate_webhook_url(url: str, *, allow_loopback_http: bool = False) -> str:
    """An https URL with a host (http only to a loopback host, and only where allowed: the local stack)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise InvalidSubscriber(f"webhook URL: {exc}") from None
    host = parts.hostname or ""
    if not host:
        raise InvalidSubscriber(f"webhook URL: {url!r} has no host")
    if parts.username or parts.password:
        raise InvalidSubscriber("webhook URL: credentials in the URL are refused (the request is signed instead)")
    if parts.scheme == "https":
        return url.strip()
    if parts.scheme == "http" and is_loopback(host):
        if allow_loopback_http:
            return url.strip()
        raise InvalidSubscriber("webhook URL: http to a loopback host is only for the local stack; use https")
    if parts.scheme == "http":
        raise InvalidSubscriber(f"webhook URL: {parts.scheme}://{host}{f':{port}' if port else ''} is not https "
                                "(signals travel signed but in clear over http)")
    raise InvalidSubscriber(f"webhook URL: scheme {parts.scheme!r} is not https")


def validate_filters(symbols: tuple[str, ...], markets: tuple[str, ...], sides: tuple[str, ...],
                     events: tuple[str, ...], min_expected_value_pct: float | None) -> None:
    unknown = [s for s in symbols if s not in markets]
    if unknown:
        raise InvalidSubscriber(f"symbols: {', '.join(unknown)} not among the markets traded "
                                f"({', '.join(markets)})")
    bad_sides = [s for s in sides if s not in ("LONG", "SHORT")]
    if bad_sides:
        raise InvalidSubscriber(f"side: {', '.join(bad_sides)} is not LONG or SHORT")
    bad_events = [e for e in events if e not in EVENTS]
    if bad_events or not events:
        raise InvalidSubscriber(f"events: {', '.join(bad_events) or 'none'}; choose from {', '.join(EVENTS)}")
    if min_expected_value_pct is not None and not -100 < min_expected_value_pct < 100:
        raise InvalidSubscriber("min expected value: a percentage of notional between -100 and 100")


def filters_from_item(item: Mapping[str, Any]) -> Filters:
    minimum = item.get("min_expected_value_pct")
    return Filters(symbols=tuple(item.get("symbols") or ()), sides=tuple(item.get("sides") or ()),
                   tradeable_only=bool(item.get("tradeable_only")),
                   min_expected_value_pct=float(minimum) if minimum is not None else None,
                   events=tuple(item.get("events") or EVENTS))
