"""Market data: closed candles and market facts, from a live exchange (ccxt) or a recorded replay.

The values both sources return, `Candles` and `MarketInfo`, are contracts (`traderai.contracts`): the
core consumes them without importing this package. Both implement `traderai.ports.MarketDataSource` (and
`CandleHistory`), so which one a deployment uses is a setting (MARKET_SOURCE).
"""

from __future__ import annotations


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



class BadTickerError(PermanentMarketError):
    """A 24h ticker came back unusable: its quote volume is not a finite amount >= 0, or it is no ticker."""

    reason = "bad_ticker"


class MissingTickerError(PermanentMarketError):
    """A batched ticker request was answered without this market's ticker."""

    reason = "ticker_missing"
