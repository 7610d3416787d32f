"""Market data: closed candles and market facts, from a live exchange (ccxt) or a recorded replay.

`Candles` and `MarketInfo` are the values the core consumes; `MarketDataSource` is the one
interface both sources implement, so which one a deployment uses is a setting (MARKET_SOURCE).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np


class MarketDataError(Exception):
    """Base of the project's market-data errors; `reason` is a stable code for logs and metrics."""

    reason = "market_data_error"


class TemporaryMarketError(MarketDataError):
    """Worth retrying with backoff: timeouts, 5xx, network trouble."""

    reason = "exchange_unavailable"


class RateLimitedError(TemporaryMarketError):
    """The exchange asked us to slow down (429/418)."""

    reason = "rate_limited"


class PermanentMarketError(MarketDataError):
    """Retrying will not help: unknown symbol, bad request, authentication."""

    reason = "exchange_rejected"


class BadCandlesError(PermanentMarketError):
    """Candles came back but are not usable (gaps, non-monotonic, NaN or non-positive prices)."""

    reason = "bad_candles"


class StaleFeedError(PermanentMarketError):
    """The newest closed candle is older than two intervals: the feed has stopped."""

    reason = "stale_feed"


@dataclass(frozen=True, slots=True, eq=False)
class Candles:
    """Closed OHLCV candles of one market, oldest first; `open_time_ms` is the candle's OPEN time (UTC ms)."""

    symbol: str
    timeframe: str
    open_time_ms: np.ndarray  # int64
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray  # base-asset units

    def __len__(self) -> int:
        return int(self.open_time_ms.shape[0])

    def tail(self, n: int) -> Candles:
        return self.slice(max(0, len(self) - n), len(self))

    def slice(self, start: int, stop: int) -> Candles:
        return Candles(self.symbol, self.timeframe, self.open_time_ms[start:stop], self.open[start:stop],
                       self.high[start:stop], self.low[start:stop], self.close[start:stop],
                       self.volume[start:stop])


@dataclass(frozen=True, slots=True)
class MarketInfo:
    """What the signal filters need to know about a market besides its candles."""

    symbol: str
    amount_step: float | None
    price_step: float | None
    quote_volume_24h: float | None


class MarketDataSource(Protocol):
    """Closed candles and market facts for one exchange; implementations must be safe to call concurrently."""

    exchange_id: str

    async def fetch_candles(self, symbol: str, timeframe: str, limit: int, now: datetime) -> Candles:
        """The newest `limit` CLOSED candles at `now` (the forming one dropped), validated."""
        ...

    async def market_info(self, symbol: str, now: datetime) -> MarketInfo: ...

    async def check_settings(self, symbols: Iterable[str] | None = None, timeframe: str | None = None) -> None:
        """Fail at cold start, naming the setting, if a market or the timeframe does not exist here."""
        ...

    async def close(self) -> None: ...


class CandleHistory(Protocol):
    """Candles of a past stretch (a signal's chart). Both market sources implement it; a candle archive that
    stores what the exchange served can too, and then takes their place for the charts."""

    async def fetch_candles_between(self, symbol: str, timeframe: str, start_ms: int, end_ms: int,
                                    now: datetime) -> Candles:
        """Closed candles opened in [start_ms, end_ms), oldest first; none that closed after `now`."""
        ...
