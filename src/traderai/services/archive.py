"""The archive step: append every market's closed candles to the S3 archive, backfilling history first.

Resumable by construction: where a market resumes is derived from what is archived (the newest archived
candle), never from a separate cursor that could disagree with the data. A backfill writes each month as
soon as it is complete, so a failure in the middle loses at most the month in progress, and the next run
continues from the last written month. Every page is validated like live candles (market/validation.py):
a bad candle refuses the market with its reason and nothing of that page is written; gaps are counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from traderai.contracts import TIMEFRAME_SECONDS, Candles
from traderai.market import BadCandlesError, MarketDataError, PermanentMarketError
from traderai.market import archive as fmt
from traderai.market.csv import load_candles_csv
from traderai.market.replay import bundled_candles_dir, candles_file_name
from traderai.market.validation import Row, candles_from_rows, closed_only, now_ms, validate_candles
from traderai.observability import logger, metrics
from traderai.ports import Archive, HistorySource
from traderai.services.retraining import days_to_expiry, emit_expiry_metric, run_time

DEFAULT_BACKFILL_DAYS = 365
PAGE_LIMIT = 1000  # Binance serves at most 1,000 klines per request (weight 2 at this size)


@dataclass
class MarketArchiveResult:
    """What one market's archive run did; `status` is archived, up_to_date, incomplete or refused."""

    symbol: str
    status: str = "up_to_date"
    candles: int = 0  # new closed candles fetched and written
    months_written: list[str] = field(default_factory=list)
    pages: int = 0
    resumed_from: str | None = None  # ISO open time the run started at
    archived_until: str | None = None  # ISO open time of the newest archived candle after the run
    gaps: int = 0
    missing_candles: int = 0
    reason: str | None = None
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def archive_market(archive: Archive, source: HistorySource, symbol: str, timeframe: str, now: datetime, *,
                         backfill_days: int = DEFAULT_BACKFILL_DAYS,
                         out_of_time: Callable[[], bool] = lambda: False) -> MarketArchiveResult:
    """Fetch `symbol`'s closed candles after the newest archived one (or `backfill_days` back) and archive them."""
    result = MarketArchiveResult(symbol)
    step_ms = TIMEFRAME_SECONDS[timeframe] * 1000
    cutoff_ms = now_ms(now) - step_ms  # the newest open time of a closed candle
    last = archive.last_open_ms(symbol, timeframe)
    if last is None:
        start = now_ms(now - timedelta(days=backfill_days))
        since = start - start % step_ms
    else:
        since = last + step_ms
    result.resumed_from = _iso(since)
    pending: list[Candles] = []  # fetched, validated, not yet written (the month in progress)
    previous = last

    def flush(up_to_month: str | None) -> None:
        """Write the pending months before `up_to_month` (all of them when None)."""
        nonlocal pending
        if not pending:
            return
        merged = fmt.concat(pending)
        keep: list[Candles] = []
        for month, candles in fmt.split_by_month(merged):
            if up_to_month is not None and month >= up_to_month:
                keep.append(candles)
                continue
            archive.write_month(symbol, timeframe, month, candles)
            result.months_written.append(month)
        pending = keep

    try:
        while since <= cutoff_ms:
            if out_of_time():
                result.status, result.reason = "incomplete", "out_of_time"
                break
            rows = await source.fetch_page(symbol, timeframe, since, PAGE_LIMIT)
            result.pages += 1
            rows = [r for r in closed_only(rows, TIMEFRAME_SECONDS[timeframe], now)
                    if not (isinstance(r[0], (int, float)) and r[0] < since)]
            if not rows:
                break
            candles = candles_from_rows(symbol, timeframe, rows)
            report = validate_candles(candles, now, TIMEFRAME_SECONDS[timeframe], check_stale=False)
            result.gaps += report.gaps
            result.missing_candles += report.missing_candles
            if previous is not None and report.first_open_ms - previous > step_ms:
                result.gaps += 1
                result.missing_candles += (report.first_open_ms - previous) // step_ms - 1
            pending.append(candles)
            result.candles += len(candles)
            previous = report.last_open_ms
            since = report.last_open_ms + step_ms
            flush(fmt.month_of_ms(report.last_open_ms))  # every completed month is written at once
        flush(None)
    except MarketDataError as exc:
        result.status, result.reason, result.error = "refused", exc.reason, str(exc)
        logger.warning("candles not archived", extra={"symbol": symbol, "reason": exc.reason, "error": str(exc),
                                                     "months_written": result.months_written})
        # what was validated before the failure is kept only if whole months were written; the rest is
        # fetched again by the next run (it resumes after the newest archived candle)
    if result.status == "up_to_date" and result.candles:
        result.status = "archived"
    newest = archive.last_open_ms(symbol, timeframe) if result.months_written else last
    result.archived_until = _iso(newest) if newest is not None else None
    if result.gaps:
        logger.info("candle gaps archived", extra={"symbol": symbol, "gaps": result.gaps,
                                                   "missing_candles": result.missing_candles})
    return result


async def archive_markets(archive: Archive, source: HistorySource, symbols: Sequence[str], timeframe: str,
                          now: datetime, *, backfill_days: int = DEFAULT_BACKFILL_DAYS,
                          out_of_time: Callable[[], bool] = lambda: False,
                          concurrency: int = 4) -> list[MarketArchiveResult]:
    """Every market, a few at a time; one market's failure never stops the others."""
    gate = asyncio.Semaphore(concurrency)

    async def one(symbol: str) -> MarketArchiveResult:
        async with gate:
            return await archive_market(archive, source, symbol, timeframe, now, backfill_days=backfill_days,
                                        out_of_time=out_of_time)

    return list(await asyncio.gather(*(one(s) for s in dict.fromkeys(symbols))))


class CcxtHistory:
    """`HistorySource` over a ccxt async exchange: fetch_ohlcv with `since`, errors translated and
    temporary ones retried (market/exchange.py). Pacing is ccxt's own rate limiter (enableRateLimit, and
    for Binance the per-minute weight window the predict path uses), so pages never exceed the exchange's
    request-weight budget however many markets run at once."""

    def __init__(self, exchange: Any, *, retry: Any = None, sleep: Any = asyncio.sleep) -> None:
        from traderai.market.exchange import RetryPolicy  # imports ccxt (0.8 s): the live source only

        self.exchange = exchange
        self.exchange_id = exchange.id
        self._retry = retry or RetryPolicy()
        self._sleep = sleep

    async def fetch_page(self, symbol: str, timeframe: str, since_ms: int, limit: int) -> list[Row]:
        from traderai.market.exchange import call_with_retry  # imports ccxt: the live source only

        rows = await call_with_retry(lambda: self.exchange.fetch_ohlcv(symbol, timeframe, since=since_ms, limit=limit),
                                     what=f"{self.exchange_id} fetch_ohlcv {symbol} {timeframe} since {since_ms}",
                                     policy=self._retry, sleep=self._sleep)
        if not isinstance(rows, list):
            raise BadCandlesError(f"{symbol}: fetch_ohlcv returned {type(rows).__name__}, not a list of candles")
        return rows

    async def close(self) -> None:
        await self.exchange.close()


class RecordedHistory:
    """`HistorySource` over recorded candles (the bundled files or `--data`): the local archive's source."""

    def __init__(self, candles: dict[str, Candles], exchange_id: str = "binance") -> None:
        self._candles, self.exchange_id = candles, exchange_id

    async def fetch_page(self, symbol: str, timeframe: str, since_ms: int, limit: int) -> list[Row]:
        candles = self._candles.get(symbol)
        if candles is None or candles.timeframe != timeframe:
            raise PermanentMarketError(f"{symbol} {timeframe}: no recorded candles")
        start = int(candles.open_time_ms.searchsorted(since_ms, side="left"))
        stop = min(len(candles), start + limit)
        return [[int(candles.open_time_ms[i]), float(candles.open[i]), float(candles.high[i]),
                 float(candles.low[i]), float(candles.close[i]), float(candles.volume[i])] for i in range(start, stop)]

    async def close(self) -> None:
        return None


def history_source(settings: Any) -> Any:
    """MARKET_SOURCE=ccxt: the live exchange through ccxt; replay: the recorded candles (bundled or REPLAY_DATA_DIR)."""
    if settings.market_source == "replay":
        directory = settings.replay_data_dir or str(bundled_candles_dir())
        return RecordedHistory({s: load_candles_csv(Path(directory) / candles_file_name(s, settings.timeframe), s,
                                                    settings.timeframe) for s in settings.markets},
                               settings.exchange_id)
    from traderai.market.exchange import new_exchange  # imports ccxt (0.8 s): never for the replay source

    return CcxtHistory(new_exchange(settings.exchange_id))


def run_archive(runtime: Any, event: Any, *, out_of_time: Callable[[], bool] = lambda: False,
                source: Any = None) -> dict[str, Any]:
    """One archive run at the event's mark (replay) or the wall clock (live exchange), then the expiry metric."""
    settings = runtime.settings
    now = run_time(event) if settings.market_source == "replay" else runtime.clock()
    source = source or history_source(settings)
    loop = asyncio.new_event_loop()
    try:
        results = loop.run_until_complete(archive_markets(runtime.archive, source, settings.markets,
                                                          settings.timeframe, now, out_of_time=out_of_time,
                                                          backfill_days=runtime.retrain.backfill_days))
        loop.run_until_complete(source.close())
    finally:
        loop.close()
    refused = [r for r in results if r.status == "refused"]
    metrics.add_metric(name="CandlesArchived", unit=MetricUnit.Count, value=sum(r.candles for r in results))
    metrics.add_metric(name="ArchiveMarketsRefused", unit=MetricUnit.Count, value=len(refused))
    expiry = days_to_expiry(settings, runtime.s3, now)
    emit_expiry_metric(expiry, runtime.retrain.expiry_warning_days)
    return {"now": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "markets": [r.summary() for r in results],
            "refused": [r.symbol for r in refused], "champion_days_to_expiry": expiry}
