"""The candle archive's file format: one gzip CSV per market and calendar month, written byte for byte
the same every time for the same candles (numpy and the standard library only).

Layout (Hive-style, so the Glue table `candles` projects its partitions):

    candles/exchange={exchange}/symbol={BASE_QUOTE}/timeframe={tf}/month={YYYY-MM}/candles.csv.gz

Why gzip CSV and not Parquet: the archive function runs beside the predict path, whose layer is numpy +
ccxt (no pandas, no pyarrow: pyarrow alone is ~120 MB unzipped of Lambda's 250 MB); a month of 15m candles
is ~2,900 rows (~100 KB of CSV, ~40 KB gzipped), far below where a columnar format pays off; the format
is the bundled candle files' own (`timestamp,open,high,low,close,volume`), so `load_candles_csv`, `--data`
and the trainer read an archive object as they read those; and a deterministic writer is easy: floats
printed with Python's shortest round-trip repr, gzip with mtime 0 and no file name in its header.
"""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np

from traderai.contracts import Candles
from traderai.market import BadCandlesError
from traderai.settings import normalize_symbol

HEADER = "timestamp,open,high,low,close,volume"
OBJECT_NAME = "candles.csv.gz"
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def symbol_dir(symbol: str) -> str:
    """`BTC/USDT` -> `BTC_USDT` (a perpetual's `:USDT` settle suffix joins with `_` too)."""
    return normalize_symbol(symbol).replace("/", "_").replace(":", "_")


def market_prefix(prefix: str, exchange: str, symbol: str, timeframe: str) -> str:
    """`candles/exchange=binance/symbol=BTC_USDT/timeframe=15m/` (always ends with a slash)."""
    return f"{prefix.strip('/')}/exchange={exchange}/symbol={symbol_dir(symbol)}/timeframe={timeframe}/"


def month_key(prefix: str, exchange: str, symbol: str, timeframe: str, month: str) -> str:
    if not _MONTH.match(month):
        raise ValueError(f"month {month!r} is not YYYY-MM")
    return f"{market_prefix(prefix, exchange, symbol, timeframe)}month={month}/{OBJECT_NAME}"


def month_of_key(key: str) -> str | None:
    """The `YYYY-MM` of an archive object key, or None for any other key."""
    match = re.search(r"/month=(\d{4}-\d{2})/" + re.escape(OBJECT_NAME) + "$", key)
    return match[1] if match else None


def month_of_ms(open_time_ms: int) -> str:
    return datetime.fromtimestamp(open_time_ms / 1000, tz=UTC).strftime("%Y-%m")


def month_start_ms(month: str) -> int:
    year, number = (int(part) for part in month.split("-"))
    return int(datetime(year, number, 1, tzinfo=UTC).timestamp() * 1000)


def split_by_month(candles: Candles) -> Iterator[tuple[str, Candles]]:
    """(YYYY-MM, that month's candles) in time order."""
    if len(candles) == 0:
        return
    months = np.array([month_of_ms(int(t)) for t in candles.open_time_ms])
    boundaries = np.flatnonzero(months[1:] != months[:-1]) + 1
    starts = [0, *boundaries.tolist()]
    stops = [*boundaries.tolist(), len(candles)]
    for start, stop in zip(starts, stops, strict=True):
        yield str(months[start]), candles.slice(start, stop)


def encode(candles: Candles) -> bytes:
    """Deterministic gzip CSV: the same candles always give the same bytes."""
    lines = [HEADER]
    for row in zip(candles.open_time_ms.tolist(), candles.open.tolist(), candles.high.tolist(),
                   candles.low.tolist(), candles.close.tolist(), candles.volume.tolist(), strict=True):
        lines.append(f"{int(row[0])}," + ",".join(repr(float(v)) for v in row[1:]))
    raw = ("\n".join(lines) + "\n").encode()
    buffer = io.BytesIO()
    # mtime=0 and no file name: the gzip header carries nothing that changes between runs.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as stream:
        stream.write(raw)
    return buffer.getvalue()


def decode(data: bytes, symbol: str, timeframe: str, where: str) -> Candles:
    """Read an archive object back; anything malformed is BadCandlesError naming `where`."""
    try:
        text = gzip.decompress(data).decode()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise BadCandlesError(f"{where}: not a gzip CSV ({exc})") from exc
    header, _, body = text.partition("\n")
    if header.strip() != HEADER:
        raise BadCandlesError(f"{where}: header {header.strip()!r} is not {HEADER}")
    if not body.strip():
        return empty(symbol, timeframe)
    try:
        table = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2)
        times = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.int64, usecols=0, ndmin=1)
    except ValueError as exc:
        raise BadCandlesError(f"{where}: unreadable row ({exc})") from exc
    if table.shape[1] != 6:
        raise BadCandlesError(f"{where}: expected 6 columns, got {table.shape[1]}")
    columns = (np.ascontiguousarray(table[:, j]) for j in range(1, 6))
    return Candles(normalize_symbol(symbol), timeframe, times, *columns)


def empty(symbol: str, timeframe: str) -> Candles:
    nothing = np.empty(0, dtype=np.float64)
    return Candles(normalize_symbol(symbol), timeframe, np.empty(0, dtype=np.int64), nothing, nothing.copy(),
                   nothing.copy(), nothing.copy(), nothing.copy())


def concat(parts: list[Candles]) -> Candles:
    if not parts:
        raise ValueError("nothing to concatenate")
    first = parts[0]
    return Candles(first.symbol, first.timeframe,
                   *(np.concatenate([getattr(p, name) for p in parts])
                     for name in ("open_time_ms", "open", "high", "low", "close", "volume")))


class ArchiveConflictError(BadCandlesError):
    """A candle already archived came back from the exchange with different values."""

    reason = "archive_conflict"


def merge(existing: Candles, new: Candles) -> Candles:
    """The union of two runs of closed candles of one market, sorted by time.

    A candle present in both must be identical (a closed candle never changes): a difference is an
    ArchiveConflictError naming the candle, never a silent overwrite.
    """
    if len(existing) == 0:
        return new
    if len(new) == 0:
        return existing
    both = concat([existing, new])
    order = np.argsort(both.open_time_ms, kind="stable")
    times = both.open_time_ms[order]
    columns = [getattr(both, name)[order] for name in ("open", "high", "low", "close", "volume")]
    duplicate = np.flatnonzero(np.diff(times) == 0)
    for index in duplicate:
        if any(column[index] != column[index + 1] for column in columns):
            stamp = np.datetime_as_string(np.datetime64(int(times[index]), "ms"), unit="s")
            raise ArchiveConflictError(f"{existing.symbol}: the candle at {stamp}Z is archived with other values")
    keep = np.ones(times.shape[0], dtype=bool)
    keep[duplicate + 1] = False
    return Candles(existing.symbol, existing.timeframe, times[keep], *(column[keep] for column in columns))
