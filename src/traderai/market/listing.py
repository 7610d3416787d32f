"""The market list of a tick in S3, parsed and checked: the object the Plan state reads each tick
(MARKET_LIST_KEY) and `traderai markets put` before it uploads one end up as the same tuple of canonical
symbols, or fail naming what is wrong and where. (The MARKETS variable of a small deployment is parsed by
settings.py with the same symbol rules; core.shards refuses an empty or duplicated list either way.)

Two formats, told apart by the first character:

- text or CSV: one market per line (`BTC/USDT`, `btc_usdt`, `ETH-USDT` are all read as BASE/QUOTE); blank
  lines and lines starting with `#` are skipped; an optional first line `symbol` (or `market`) is a CSV
  header, and on every line only the first comma-separated field is the market (further columns are notes);
- JSON: an array of symbol strings, or an object `{"markets": [...]}`.

A list is all or nothing: one bad line refuses the whole list (never a tick over part of it), and so does an
empty list, a market listed twice, or more than MAX_MARKETS markets.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from traderai.contracts import SettingsError
from traderai.settings import normalize_symbol

MAX_MARKETS = 100_000
MAX_BYTES = 4 * 1024 * 1024  # 100,000 markets of up to 33 characters, with room for notes
_HEADERS = frozenset({"symbol", "market", "symbols", "markets"})


class MarketListError(SettingsError):
    """The market list cannot be used; the message names the list and the bad line (or item)."""

    reason = "market_list_invalid"


def parse_market_list(data: bytes, source: str) -> tuple[str, ...]:
    """The canonical symbols of a list (`source` names it in every error: `s3://bucket/key`, a path)."""
    if len(data) > MAX_BYTES:
        raise MarketListError(f"{source}: {len(data):,} bytes, more than the {MAX_BYTES:,} a market list may have")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MarketListError(f"{source}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    stripped = text.lstrip()
    entries = _json_entries(stripped, source) if stripped[:1] in ("[", "{") else _text_entries(text)
    markets: list[str] = []
    first_seen: dict[str, str] = {}
    for where, value in entries:
        if not isinstance(value, str):
            raise MarketListError(f"{source} {where}: {value!r} is not a symbol string (e.g. \"BTC/USDT\")")
        try:
            symbol = normalize_symbol(value)
        except SettingsError:
            raise MarketListError(f"{source} {where}: {value.strip()!r} is not BASE/QUOTE (e.g. BTC/USDT)") from None
        if symbol in first_seen:
            raise MarketListError(f"{source} {where}: {symbol} is listed twice (first on {first_seen[symbol]})")
        first_seen[symbol] = where
        markets.append(symbol)
        if len(markets) > MAX_MARKETS:
            raise MarketListError(f"{source}: more than {MAX_MARKETS:,} markets")
    if not markets:
        raise MarketListError(f"{source}: no market listed (a tick over an empty list is refused)")
    return tuple(markets)


def format_market_list(markets: Iterable[str]) -> bytes:
    """The canonical text form `traderai markets put` uploads: a header line, then one symbol per line."""
    return ("symbol\n" + "".join(f"{symbol}\n" for symbol in markets)).encode()


def _text_entries(text: str) -> list[tuple[str, object]]:
    entries: list[tuple[str, object]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        field = line.split(",", 1)[0].strip()
        if not field or field.startswith("#"):
            continue
        if not entries and field.lower() in _HEADERS:
            continue  # a CSV header
        entries.append((f"line {number}", field))
    return entries


def _json_entries(text: str, source: str) -> list[tuple[str, object]]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MarketListError(f"{source} line {exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
    if isinstance(value, dict):
        if set(value) != {"markets"} or not isinstance(value["markets"], list):
            raise MarketListError(f"{source}: a JSON object must be {{\"markets\": [...]}}, got keys "
                                  f"{sorted(value)}")
        value = value["markets"]
    if not isinstance(value, list):
        raise MarketListError(f"{source}: JSON must be an array of symbols or {{\"markets\": [...]}}")
    return [(f"item {index}", item) for index, item in enumerate(value, start=1)]
