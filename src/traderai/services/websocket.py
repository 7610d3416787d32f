"""The WebSocket API's logic: connect with a symbol filter, change it, ping, and polite errors.

`?tradeable=true` on connect, or `"tradeable_only": true` in a subscribe message, leaves out paper signals
(`"tradeable_only": false` takes them again; a subscribe carrying only `tradeable_only` keeps the symbols).

Client -> server messages are JSON objects routed on `action` (`subscribe`, `unsubscribe`, `ping`);
anything else reaches `$default` and is answered with an error message while the connection stays
open. Replies are posted back over `@connections`, since API Gateway returns a route's Lambda
result to the client only when a route response is configured.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from traderai.adapters.connections import ConnectionStore
from traderai.contracts import SettingsError, iso_utc
from traderai.settings import normalize_symbol

MAX_SYMBOLS = 50
MAX_MESSAGE_BYTES = 8192
ACTIONS = ("subscribe", "unsubscribe", "ping")


class BadMessage(ValueError):
    """A client message or connect request we refuse; `code` is a stable machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class WebSocketRequest:
    """The parts of an API Gateway WebSocket event the function uses."""

    route_key: str
    connection_id: str
    body: str | None
    query: Mapping[str, str]

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> WebSocketRequest:
        context = event["requestContext"]
        return cls(route_key=context["routeKey"], connection_id=context["connectionId"],
                   body=event.get("body"), query=event.get("queryStringParameters") or {})


def parse_symbols(value: Any, where: str = "symbols") -> frozenset[str]:
    """A list of symbols in any accepted spelling (BTC/USDT, BTC_USDT, btc-usdt) -> normalised set."""
    items = value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise BadMessage("bad_request", f"{where}: expected a list of symbols such as [\"BTC/USDT\"]")
    items = [item for item in items if item.strip()]
    if not items:
        raise BadMessage("bad_request", f"{where}: no symbol given")
    if len(items) > MAX_SYMBOLS:
        raise BadMessage("bad_request", f"{where}: at most {MAX_SYMBOLS} symbols, got {len(items)}")
    try:
        return frozenset(normalize_symbol(item) for item in items)
    except SettingsError as exc:
        raise BadMessage("bad_request", f"{where}: {exc}") from exc


def parse_tradeable(value: Any, where: str) -> bool:
    """`true`/`false` (JSON booleans, or the words in a query string) -> bool; anything else is refused."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise BadMessage("bad_request", f"{where}: expected true or false, got {str(value)[:40]!r}")


def connect(store: ConnectionStore, request: WebSocketRequest, now: datetime) -> None:
    """Register the connection; `?symbols=BTC/USDT,ETH/USDT` narrows it (absent: every symbol),
    `?tradeable=true` leaves out paper signals."""
    unknown = sorted(set(request.query) - {"symbols", "tradeable", "api_key"})  # api_key: the $connect authorizer's
    if unknown:
        raise BadMessage("bad_request", f"unknown query parameter(s) {', '.join(unknown)}; "
                                        "known: symbols, tradeable, api_key")
    symbols = parse_symbols(request.query["symbols"].split(",")) if "symbols" in request.query else None
    tradeable = parse_tradeable(request.query["tradeable"], "tradeable") if "tradeable" in request.query else False
    store.add(request.connection_id, symbols, now, tradeable_only=tradeable)


def disconnect(store: ConnectionStore, request: WebSocketRequest) -> None:
    store.remove(request.connection_id)


def reply_to(store: ConnectionStore, request: WebSocketRequest, now: datetime) -> dict[str, Any]:
    """The message to post back for a client message: an acknowledgement, a pong, or an error."""
    try:
        message = parse_message(request.body)
    except BadMessage as exc:
        return error_message(exc)
    request_id = message.get("id") if isinstance(message.get("id"), (str, int)) else None
    try:
        reply = _answer(store, request.connection_id, message, now)
    except BadMessage as exc:
        reply = error_message(exc)
    return reply | ({"id": request_id} if request_id is not None else {})


def parse_message(body: str | None) -> dict[str, Any]:
    if body is None or not body.strip():
        raise BadMessage("malformed_json", "empty message; send a JSON object with an \"action\"")
    if len(body.encode()) > MAX_MESSAGE_BYTES:
        raise BadMessage("message_too_large", f"messages are at most {MAX_MESSAGE_BYTES} bytes")
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise BadMessage("malformed_json", f"not JSON: {exc}") from None
    except RecursionError:  # well under MAX_MESSAGE_BYTES, "[" * 8000 is deeper than json.loads goes
        raise BadMessage("malformed_json", "not JSON: nested too deeply") from None
    if not isinstance(message, dict):
        raise BadMessage("malformed_json", "expected a JSON object with an \"action\"")
    return message


def error_message(error: BadMessage) -> dict[str, Any]:
    return {"type": "error", "error": error.code, "message": str(error)}


def _answer(store: ConnectionStore, connection_id: str, message: dict[str, Any], now: datetime
            ) -> dict[str, Any]:
    action = message.get("action")
    if action == "ping":
        return {"type": "pong", "time": iso_utc(now)}
    if action not in ("subscribe", "unsubscribe"):
        raise BadMessage("unknown_action", f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    current = store.get(connection_id)
    current_symbols = current.symbols if current is not None else None
    requested = parse_symbols(message["symbols"]) if "symbols" in message else None
    tradeable_only = (parse_tradeable(message["tradeable_only"], "tradeable_only") if "tradeable_only" in message
                      else None)
    if tradeable_only is not None and action != "subscribe":
        raise BadMessage("bad_request", "tradeable_only: set it with subscribe")
    if action == "subscribe" and tradeable_only is not None and requested is None:  # only the flag changes
        new = current_symbols
    elif action == "subscribe":  # no symbols: everything; else add to an explicit list (narrowing "all")
        new = None if requested is None else (current_symbols or frozenset()) | requested
    elif requested is None:  # unsubscribe from everything
        new = frozenset()
    elif current_symbols is None:
        raise BadMessage("bad_request", "subscribed to every symbol, so there is no list to remove from: "
                                        "subscribe to the symbols you want, or unsubscribe without symbols")
    else:
        new = current_symbols - requested
    if new is not None and len(new) > MAX_SYMBOLS:  # the limit is per connection, not per message
        raise BadMessage("bad_request", f"symbols: a connection follows at most {MAX_SYMBOLS} symbols, this would "
                                        f"make {len(new)}; unsubscribe from some first")
    connection = store.set_symbols(connection_id, new, now, tradeable_only=tradeable_only, current=current)
    return {"type": "subscribed" if action == "subscribe" else "unsubscribed",
            "all_symbols": connection.symbols is None, "symbols": sorted(connection.symbols or ()),
            "tradeable_only": connection.tradeable_only}
