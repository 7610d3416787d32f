"""Pure checks on candles: keep only closed ones, refuse broken ones, report (not refuse) gaps.

No clock, no network: `now` is always passed in. Gaps are real (exchange halts, maintenance), so
they are counted in a `CandleReport` for the caller to log; features deal with them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import Any, cast, overload

import numpy as np

from traderai.contracts import Candles
from traderai.market import BadCandlesError, StaleFeedError

Row = Sequence[object]
"""One ccxt OHLCV row: [open_time_ms, open, high, low, close, volume]."""

STALE_AFTER_INTERVALS = 2


@dataclass(frozen=True, slots=True)
class CandleReport:
    """What validation saw: how many candles, and the gaps (missing candles) between them."""

    symbol: str
    count: int
    first_open_ms: int
    last_open_ms: int
    gaps: int  # number of holes in the grid
    missing_candles: int  # candles absent inside those holes
    largest_gap_candles: int
    zero_volume_candles: int

    @property
    def has_gaps(self) -> bool:
        return self.gaps > 0


def now_ms(now: datetime) -> int:
    """`now` as UTC epoch milliseconds; a naive datetime is refused rather than guessed."""
    if now.tzinfo is None:
        raise ValueError("now: naive datetime; every time in TraderAI is UTC-aware")
    return int(now.timestamp() * 1000)


@overload
def closed_only(rows: Candles, timeframe_seconds: int, now: datetime) -> Candles: ...
@overload
def closed_only(rows: Sequence[Row], timeframe_seconds: int, now: datetime) -> list[Row]: ...
def closed_only(rows: Candles | Sequence[Row], timeframe_seconds: int, now: datetime) -> Candles | list[Row]:
    """Drop candles still forming at `now` (open_time + timeframe > now): a forming candle's close moves.

    Accepts ccxt rows or `Candles`. A row whose time is not a number is kept so validation names it.
    """
    cutoff_ms = now_ms(now) - timeframe_seconds * 1000
    if isinstance(rows, Candles):
        keep = np.flatnonzero(rows.open_time_ms <= cutoff_ms)
        return _take(rows, keep)
    kept: list[Row] = []
    for row in rows:
        # ccxt's rows are lists with an int time: checked by exact type first (the ABC check is the slow part)
        if type(row) is list and row:
            open_time = row[0]
        else:
            open_time = row[0] if isinstance(row, Sequence) and len(row) > 0 else None
        if ((type(open_time) in _NUMBER_TYPE_SET
             or (isinstance(open_time, (int, float)) and not isinstance(open_time, bool)))
                and open_time > cutoff_ms):
            continue
        kept.append(row)
    return kept


def candles_from_rows(symbol: str, timeframe: str, rows: Sequence[Row]) -> Candles:
    """Turn ccxt OHLCV rows into `Candles`; a misshapen or non-numeric row is BadCandlesError."""
    fast = _fast_candles(symbol, timeframe, rows)
    if fast is not None:
        return fast
    return _row_by_row(symbol, timeframe, rows, decimal_strings=False)


def candles_from_klines(symbol: str, timeframe: str, rows: object) -> Candles:
    """Binance's klines reply as JSON decodes it into `Candles`, in one numpy conversion.

    A row is `[open_time_ms, "open", "high", "low", "close", "volume", close_time_ms, ...]` with the prices and
    volume as decimal strings (numbers are taken too). This is what ccxt's `fetch_ohlcv` turns into rows of
    floats first, one cell at a time; here the strings go to float64 in C. A reply that is not a list, a short
    row, a cell that is not a number (a bool, None, a non-numeric string) is BadCandlesError naming it, as
    `candles_from_rows` names a bad ccxt row."""
    if not isinstance(rows, list):
        raise BadCandlesError(f"{symbol}: the klines reply is {type(rows).__name__}, not a list of candles")
    fast = _fast_klines(symbol, timeframe, rows)
    if fast is not None:
        return fast
    return _row_by_row(symbol, timeframe, rows, decimal_strings=True)


def _row_by_row(symbol: str, timeframe: str, rows: Sequence[Row], *, decimal_strings: bool) -> Candles:
    """The slow path of both conversions: row by row, naming the first bad row or cell (BadCandlesError).
    `decimal_strings`: a price or volume may be a decimal string (Binance's wire format), never the time."""
    n = len(rows)
    times = np.empty(n, dtype=np.int64)
    values = np.empty((n, 5), dtype=np.float64)
    for i, row in enumerate(rows):
        if not isinstance(row, Sequence) or isinstance(row, (str, bytes)) or len(row) < 6:
            raise BadCandlesError(
                f"{symbol}: candle #{i} is not [time, open, high, low, close, volume]: {row!r}"
            )
        for j, cell in enumerate(row[:6]):
            if isinstance(cell, str) and decimal_strings and j > 0:
                try:
                    values[i, j - 1] = float(cell)
                except ValueError:
                    raise BadCandlesError(
                        f"{symbol}: candle #{i} field {_FIELDS[j]} is not a number: {cell!r}") from None
                continue
            if isinstance(cell, bool) or not isinstance(cell, (int, float)):
                raise BadCandlesError(f"{symbol}: candle #{i} field {_FIELDS[j]} is not a number: {cell!r}")
            if j > 0:
                values[i, j - 1] = cell
        open_time = cast(float, row[0])
        if not math.isfinite(open_time) or open_time != int(open_time):
            raise BadCandlesError(f"{symbol}: candle #{i} open time {open_time!r} is not whole milliseconds")
        times[i] = int(open_time)
    return Candles(
        symbol,
        timeframe,
        times,
        values[:, 0].copy(),
        values[:, 1].copy(),
        values[:, 2].copy(),
        values[:, 3].copy(),
        values[:, 4].copy(),
    )


def validate_candles(candles: Candles, now: datetime, timeframe_seconds: int, *,
                     check_stale: bool = True) -> CandleReport:
    """Refuse candles the core must not compute on (BadCandlesError, StaleFeedError); report gaps.

    Checks: at least one candle, strictly increasing open times on the timeframe grid, none still
    forming, finite positive prices with low <= open, close <= high, finite non-negative volume, and
    (unless `check_stale` is off: history, such as an archive backfill) the newest close no older than
    two intervals before `now`.
    """
    symbol = candles.symbol
    if len(candles) == 0:
        raise BadCandlesError(f"{symbol}: no closed candles")
    step_ms = timeframe_seconds * 1000
    times = candles.open_time_ms.astype(np.int64, copy=False)
    deltas = np.diff(times)
    _refuse(
        symbol,
        candles,
        deltas <= 0,
        "open time not after the previous candle (duplicate or out of order)",
        offset=1,
    )
    _refuse(symbol, candles, times % step_ms != 0, f"open time off the {timeframe_seconds}s grid")
    cutoff_ms = now_ms(now) - step_ms
    _refuse(symbol, candles, times > cutoff_ms, "candle still forming at now (not closed)")

    prices = np.vstack([candles.open, candles.high, candles.low, candles.close])
    _refuse(symbol, candles, ~np.isfinite(prices).all(axis=0), "price is NaN or infinite")
    _refuse(symbol, candles, (prices <= 0).any(axis=0), "price is not positive")
    _refuse(symbol, candles, candles.high < candles.low, "high below low")
    _refuse(
        symbol,
        candles,
        (candles.high < np.maximum(candles.open, candles.close))
        | (candles.low > np.minimum(candles.open, candles.close)),
        "open/close outside [low, high]",
    )
    _refuse(symbol, candles, ~np.isfinite(candles.volume), "volume is NaN or infinite")
    _refuse(symbol, candles, candles.volume < 0, "volume is negative")

    newest_close_ms = int(times[-1]) + step_ms
    if check_stale and newest_close_ms < now_ms(now) - STALE_AFTER_INTERVALS * step_ms:
        age_s = (now_ms(now) - newest_close_ms) / 1000
        raise StaleFeedError(
            f"{symbol}: newest closed candle closed at {_iso(newest_close_ms)}, {age_s:.0f}s "
            f"before now ({STALE_AFTER_INTERVALS} intervals allowed)"
        )

    missing_per_gap = deltas // step_ms - 1
    holes = missing_per_gap[missing_per_gap > 0]
    return CandleReport(
        symbol=symbol,
        count=len(candles),
        first_open_ms=int(times[0]),
        last_open_ms=int(times[-1]),
        gaps=int(holes.size),
        missing_candles=int(holes.sum()),
        largest_gap_candles=int(holes.max()) if holes.size else 0,
        zero_volume_candles=int(np.count_nonzero(candles.volume == 0)),
    )


_FIELDS = ("open_time", "open", "high", "low", "close", "volume")


def _refuse(symbol: str, candles: Candles, bad: np.ndarray, what: str, *, offset: int = 0) -> None:
    hits = np.flatnonzero(bad)
    if hits.size:
        index = int(hits[0]) + offset
        raise BadCandlesError(
            f"{symbol}: {what} at candle #{index} ({_iso(int(candles.open_time_ms[index]))}); "
            f"{hits.size} candle(s) affected"
        )


def _take(candles: Candles, index: np.ndarray) -> Candles:
    return Candles(
        candles.symbol,
        candles.timeframe,
        candles.open_time_ms[index],
        candles.open[index],
        candles.high[index],
        candles.low[index],
        candles.close[index],
        candles.volume[index],
    )


def _iso(ms: int) -> str:
    return np.datetime_as_string(np.datetime64(ms, "ms"), unit="s") + "Z"


_NUMBER_TYPES = (int, float)
_NUMBER_TYPE_SET = frozenset(_NUMBER_TYPES)  # exact types: a bool (a subclass of int) is not a number here


def _fast_candles(symbol: str, timeframe: str, rows: Sequence[Row]) -> Candles | None:
    """The common case in one numpy conversion: a list of lists of exactly int/float cells (what ccxt
    returns), whole-millisecond finite times. Anything else returns None, and the row-by-row path above
    names the first bad cell (a bool, a numeric string, a ragged row...)."""
    if not isinstance(rows, list) or not rows or not all(type(row) is list and len(row) >= 6 for row in rows):
        return None
    head = [row[:6] for row in rows]
    if not set(map(type, chain.from_iterable(head))) <= _NUMBER_TYPE_SET:  # every cell's type, counted in C
        return None
    try:
        table = np.array(head, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return None
    times = table[:, 0]
    exact = np.abs(times).max() < 2**53  # whole milliseconds are exact in float64 below 2**53
    if not np.all(np.isfinite(times)) or not np.all(times == np.floor(times)) or not exact:
        return None
    return Candles(symbol, timeframe, times.astype(np.int64), table[:, 1].copy(), table[:, 2].copy(),
                   table[:, 3].copy(), table[:, 4].copy(), table[:, 5].copy())


_KLINE_CELL_TYPES = frozenset((str, int, float))


def _fast_klines(symbol: str, timeframe: str, rows: list[Any]) -> Candles | None:
    """The common case of a klines reply: lists of at least 6 cells, whole-int times, decimal strings (or
    numbers) for the rest, converted by numpy in C. Anything else returns None for the row-by-row path."""
    if not rows or not all(type(row) is list and len(row) >= 6 for row in rows):
        return None
    times = [row[0] for row in rows]
    values = [row[1:6] for row in rows]
    if set(map(type, times)) != {int} or not set(map(type, chain.from_iterable(values))) <= _KLINE_CELL_TYPES:
        return None
    try:
        table = np.array(values, dtype=np.float64)
        open_time_ms = np.array(times, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        return None
    return Candles(symbol, timeframe, open_time_ms, table[:, 0].copy(), table[:, 1].copy(), table[:, 2].copy(),
                   table[:, 3].copy(), table[:, 4].copy())
