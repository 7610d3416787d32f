"""Fetch every configured market at once, each on its own: one market's failure never blocks the others.

Also `make_source`, the one place that turns MARKET_SOURCE into a `MarketDataSource`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import NamedTuple

from traderai.contracts import Candles, MarketInfo, SettingsError
from traderai.market import MarketDataError
from traderai.observability import logger
from traderai.ports import MarketDataSource, MarketInfoBatch, MarketSource
from traderai.settings import Settings

# Markets fetched at once: what fits aiohttp's connection pool in ccxt (TCPConnector's default limit, 100
# requests in flight; beyond it requests only queue there). A spot market holds one request, its candles; its
# ticker comes in a batch of 20 beside them (`MarketInfoBatch`, core.shards.TICKER_BATCH_SIZE), so a shard of
# 100 markets is 95 candle requests and 5 ticker batches at once, and the last 5 candle requests a wave later
# (a derivative market, or a source without batches, holds two: half as many at once). The exchange limits
# weight per minute, not concurrency (Binance spot: 6,000/min; 100 markets are 210 per tick,
# core.shards.shard_weight): at 100 ms per request a 100-market shard's fetch is two waves (~0.2 s), where
# 50 at once made three, and 8 thirteen (bench/tick_scale.py).
DEFAULT_CONCURRENCY = 95


class MarketSnapshot(NamedTuple):
    """What the predict step needs of one market at one tick."""

    candles: Candles
    info: MarketInfo


class UnexpectedMarketError(MarketDataError):
    """A bug or an unforeseen exception while fetching one market; logged with its traceback."""

    reason = "unexpected_error"


def make_source(settings: Settings) -> MarketSource:
    """The market data source MARKET_SOURCE names: the live exchange (ccxt) or the recorded replay."""
    if settings.market_source == "ccxt":
        from traderai.market.exchange import CcxtSource  # ccxt takes ~1 s to import: only a live source loads it

        return CcxtSource(settings)
    if settings.market_source == "replay":
        from traderai.market.replay import ReplaySource  # the recorded candles' reader: only the replay loads it

        return ReplaySource(settings)
    raise SettingsError(f"MARKET_SOURCE: {settings.market_source!r} is not 'ccxt' or 'replay'")


async def fetch_markets(
    source: MarketDataSource,
    symbols: Iterable[str],
    timeframe: str,
    limit: int,
    now: datetime,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> tuple[dict[str, MarketSnapshot], dict[str, MarketDataError]]:
    """Candles and market info of every symbol, concurrently (at most `concurrency` markets in flight).

    A source that is a `MarketInfoBatch` is asked the markets' info together, beside the candles (the live
    source asks spot tickers in a few batched requests); the markets it leaves out, market by market.

    Returns (snapshots, failures): every symbol lands in exactly one of them; each failure is logged
    with its reason code.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    gate = asyncio.Semaphore(concurrency)
    ordered = list(dict.fromkeys(symbols))
    infos: asyncio.Task[Mapping[str, MarketInfo | Exception]] | None = None
    if isinstance(source, MarketInfoBatch) and ordered:
        infos = asyncio.create_task(source.market_infos(ordered, now))

    async def info_of(symbol: str) -> MarketInfo:
        if infos is not None:
            outcome = (await asyncio.shield(infos)).get(symbol)  # shielded: one market cancelled cancels no other's
            if isinstance(outcome, Exception):
                raise outcome
            if outcome is not None:
                return outcome
        return await source.market_info(symbol, now)  # a market the source does not ask together

    async def one(symbol: str) -> MarketSnapshot:
        async with gate:
            # Both calls run to completion (no orphaned request); the candle error, if any, is reported.
            candles, info = await asyncio.gather(
                source.fetch_candles(symbol, timeframe, limit, now),
                info_of(symbol),
                return_exceptions=True,
            )
            for outcome in (candles, info):
                if isinstance(outcome, BaseException):
                    raise outcome
            return MarketSnapshot(candles, info)  # type: ignore[arg-type]

    try:
        results = await asyncio.gather(*(one(symbol) for symbol in ordered), return_exceptions=True)
    finally:
        if infos is not None and not infos.done():  # only when this fetch was cancelled: no orphaned request
            infos.cancel()
    snapshots: dict[str, MarketSnapshot] = {}
    failures: dict[str, MarketDataError] = {}
    for symbol, result in zip(ordered, results, strict=True):
        if isinstance(result, MarketSnapshot):
            snapshots[symbol] = result
        elif isinstance(result, MarketDataError):
            failures[symbol] = result
            logger.warning(
                "market data failed",
                extra={
                    "symbol": symbol,
                    "reason": result.reason,
                    "exchange": source.exchange_id,
                    "error": str(result),
                },
            )
        elif isinstance(result, Exception):
            failures[symbol] = UnexpectedMarketError(f"{symbol}: {type(result).__name__}: {result}")
            failures[symbol].__cause__ = result
            logger.error(
                "market data failed unexpectedly",
                exc_info=result,
                extra={
                    "symbol": symbol,
                    "reason": UnexpectedMarketError.reason,
                    "exchange": source.exchange_id,
                },
            )
        else:  # BaseException (cancellation, SystemExit): not ours to swallow
            raise result
    return snapshots, failures
