"""The exchange adapter: closed candles and market facts over `ccxt.async_support`.

ccxt's exceptions never leave this module: they are translated into the project's hierarchy
(`traderai.market`), and only temporary failures are retried, with bounded exponential backoff and
jitter. Use one `CcxtSource` per event loop (per invocation) and `close()` it: ccxt binds its HTTP
session to the loop. Loaded markets are cached per exchange id across warm invocations.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import ccxt.async_support as ccxt

from traderai.contracts import Candles, MarketInfo, SettingsError
from traderai.market import (
    BadCandlesError,
    MarketDataError,
    PermanentMarketError,
    RateLimitedError,
    TemporaryMarketError,
)
from traderai.market.budget import WeightBudget
from traderai.market.validation import candles_from_rows, closed_only, validate_candles
from traderai.observability import logger
from traderai.settings import Settings

Sleep = Callable[[float], Awaitable[None]]

# First match wins: ccxt's classes nest (RateLimitExceeded and DDoSProtection are NetworkErrors,
# BadSymbol is a BadRequest is an ExchangeError), so the specific ones come first.
_TRANSLATION: tuple[tuple[type[BaseException], type[MarketDataError]], ...] = (
    (ccxt.RateLimitExceeded, RateLimitedError),
    (ccxt.DDoSProtection, RateLimitedError),
    (ccxt.RequestTimeout, TemporaryMarketError),
    (ccxt.ExchangeNotAvailable, TemporaryMarketError),  # includes OnMaintenance
    (ccxt.NetworkError, TemporaryMarketError),  # includes InvalidNonce
    (ccxt.BadSymbol, PermanentMarketError),
    (ccxt.BadRequest, PermanentMarketError),
    (ccxt.AuthenticationError, PermanentMarketError),
    (ccxt.ExchangeError, PermanentMarketError),  # NotSupported, ArgumentsRequired, ...
    (ccxt.OperationFailed, TemporaryMarketError),  # BadResponse/NullResponse: a garbled reply, try again
    (ccxt.BaseError, PermanentMarketError),
    (TimeoutError, TemporaryMarketError),
    (OSError, TemporaryMarketError),
)
_CAUGHT = tuple(source for source, _ in _TRANSLATION)

# Binance counts request weight per IP per minute (spot: 6,000; a klines or one-symbol ticker call weighs
# 2). ccxt's default leaky bucket (capacity 1) spaces EVERY request by cost × rateLimit (0.4 × 50 ms), so
# a tick of 100 markets (200 requests) takes >= 4 s however concurrent the fetch. A rolling 60 s window
# keeps the same per-minute budget (windowSize / rateLimit cost units = the exchange's weight limit) and
# lets one tick's burst through (bench/tick_scale.py). Only for exchanges that count per minute: one
# with per-second limits would take a minute's budget in a second.
PER_MINUTE_WEIGHT_EXCHANGES = frozenset({"binance", "binanceusdm", "binancecoinm"})
# Binance spot request weights (GET /api/v3/klines: 2 at any limit up to 1000; /api/v3/ticker/24hr with one
# symbol: 2; /api/v3/exchangeInfo: 20), counted against a shard's share of the minute (market.budget).
REQUEST_WEIGHTS = {"fetch_ohlcv": 2, "fetch_ticker": 2, "load_markets": 20}
RATE_LIMITER = {"rateLimiterAlgorithm": "rollingWindow", "rollingWindowSize": 60_000.0}

_MARKETS_TTL_S = 3600.0
_MARKETS_CACHE: dict[str, tuple[float, dict[str, Any]]] = {}


def translate_ccxt_error(error: BaseException, context: str) -> MarketDataError:
    """Map a ccxt (or socket) exception to the project's hierarchy; `context` says which call failed."""
    if isinstance(error, MarketDataError):
        return error
    for source, target in _TRANSLATION:
        if isinstance(error, source):
            return target(f"{context}: {type(error).__name__}: {error}")
    return PermanentMarketError(f"{context}: {type(error).__name__}: {error}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter; a rate-limited reply waits longer than a timeout."""

    attempts: int = 4  # total tries, the first included
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    rate_limited_factor: float = 4.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError(f"RetryPolicy: invalid {self!r}")

    def delay_s(self, retry: int, error: MarketDataError, jitter: float) -> float:
        """Wait before retry number `retry` (0-based); `jitter` in [0, 1) picks [½, 1)× the ceiling."""
        factor = self.rate_limited_factor if isinstance(error, RateLimitedError) else 1.0
        ceiling = min(self.max_delay_s, self.base_delay_s * factor * 2**retry)
        return ceiling * (0.5 + 0.5 * jitter)


async def call_with_retry[T](
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    policy: RetryPolicy,
    sleep: Sleep = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> T:
    """Await `call()` with errors translated; retry only TemporaryMarketError, `policy.attempts` at most."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except _CAUGHT as exc:
            error = translate_ccxt_error(exc, what)
            if not isinstance(error, TemporaryMarketError) or attempt >= policy.attempts:
                if attempt > 1:
                    error.add_note(f"gave up after {attempt} attempt(s)")
                raise error from exc
            delay = policy.delay_s(attempt - 1, error, rand())
            logger.warning(
                "market call failed; retrying",
                extra={
                    "call": what,
                    "reason": error.reason,
                    "attempt": attempt,
                    "max_attempts": policy.attempts,
                    "delay_s": round(delay, 3),
                    "error": str(exc)[:300],
                },
            )
            await sleep(delay)


def steps_from_market(market: Mapping[str, Any], precision_mode: int) -> tuple[float | None, float | None]:
    """(amount_step, price_step) of a ccxt market, whatever the exchange's precision mode.

    TICK_SIZE gives the step itself, DECIMAL_PLACES a digit count (step = 10**-digits);
    SIGNIFICANT_DIGITS has no fixed step. Without precision, the minimum amount/price limit stands in.
    """
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}

    def step(kind: str) -> float | None:
        value = precision.get(kind)
        if value is not None:
            if precision_mode == ccxt.TICK_SIZE:
                return float(value)
            if precision_mode == ccxt.DECIMAL_PLACES:
                return 10.0 ** -int(value)
            return None
        minimum = (limits.get(kind) or {}).get("min")
        return float(minimum) if minimum else None

    return step("amount"), step("price")


class CcxtSource:
    """`MarketDataSource` over a ccxt async exchange; pass `exchange` to use a fake in tests."""

    def __init__(
        self,
        settings: Settings,
        *,
        exchange: Any | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.exchange_id = settings.exchange_id
        self._settings = settings
        self._owned = exchange is None
        self._exchange = _new_exchange(settings.exchange_id) if exchange is None else exchange
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rand = rand
        self._budget: WeightBudget | None = None
        _check_timeframe(self._exchange, settings.timeframe)

    def share_budget(self, weight_per_minute: int | None) -> None:
        """This shard's share of the exchange's weight per minute (None: no budget to share). A warm
        container keeps its window: its previous tick's requests are long out of it."""
        if weight_per_minute is None or self.exchange_id not in PER_MINUTE_WEIGHT_EXCHANGES:
            self._budget = None
        elif self._budget is None or self._budget.limit != weight_per_minute:
            self._budget = WeightBudget(weight_per_minute)

    async def check_settings(
        self, symbols: Iterable[str] | None = None, timeframe: str | None = None
    ) -> None:
        """Fail at cold start with the setting's name if a market or the timeframe is not on the exchange."""
        _check_timeframe(self._exchange, timeframe or self._settings.timeframe)
        markets = await self._markets()
        wanted = tuple(symbols) if symbols is not None else self._settings.markets
        unknown = [symbol for symbol in wanted if symbol not in markets]
        if unknown:
            raise SettingsError(
                f"MARKETS: {', '.join(unknown)} not a market on {self.exchange_id} "
                f"(e.g. {', '.join(sorted(markets)[:3])})"
            )
        for symbol in wanted:
            if markets[symbol].get("active") is False:
                logger.warning("market is not active on the exchange", extra={"symbol": symbol})

    async def fetch_candles(self, symbol: str, timeframe: str, limit: int, now: datetime) -> Candles:
        """The newest `limit` closed candles at `now`, validated (asks limit+1: the last one is forming)."""
        timeframe_seconds = ccxt.Exchange.parse_timeframe(timeframe)
        rows = await self._call(
            f"fetch_ohlcv {symbol} {timeframe}", "fetch_ohlcv",
            lambda: self._exchange.fetch_ohlcv(symbol, timeframe, limit=limit + 1),
        )
        if not isinstance(rows, list):
            raise BadCandlesError(
                f"{symbol}: fetch_ohlcv returned {type(rows).__name__}, not a list of candles"
            )
        candles = candles_from_rows(symbol, timeframe, closed_only(rows, timeframe_seconds, now)).tail(limit)
        report = validate_candles(candles, now, timeframe_seconds)
        if report.has_gaps:
            logger.info(
                "candle gaps",
                extra={
                    "symbol": symbol,
                    "gaps": report.gaps,
                    "missing_candles": report.missing_candles,
                    "largest_gap_candles": report.largest_gap_candles,
                },
            )
        return candles

    async def fetch_candles_between(self, symbol: str, timeframe: str, start_ms: int, end_ms: int,
                                    now: datetime) -> Candles:
        """Closed candles opened in [start_ms, end_ms) (one request from `start_ms`, at most 1,000 candles)."""
        timeframe_seconds = ccxt.Exchange.parse_timeframe(timeframe)
        wanted = max(1, min(1000, -(-(end_ms - start_ms) // (timeframe_seconds * 1000))))
        rows = await self._call(
            f"fetch_ohlcv {symbol} {timeframe} since {start_ms}", "fetch_ohlcv",
            lambda: self._exchange.fetch_ohlcv(symbol, timeframe, since=start_ms, limit=wanted),
        )
        if not isinstance(rows, list):
            raise BadCandlesError(
                f"{symbol}: fetch_ohlcv returned {type(rows).__name__}, not a list of candles"
            )
        inside = [row for row in closed_only(rows, timeframe_seconds, now)
                  if isinstance(row, (list, tuple)) and row and isinstance(row[0], (int, float))
                  and start_ms <= row[0] < end_ms]
        return candles_from_rows(symbol, timeframe, inside)

    async def market_info(self, symbol: str, now: datetime) -> MarketInfo:
        """Amount/price steps from the loaded market, 24h quote volume from the ticker."""
        markets = await self._markets()
        market = markets.get(symbol)
        if market is None:
            raise PermanentMarketError(f"{symbol}: not a market on {self.exchange_id}")
        amount_step, price_step = steps_from_market(market, getattr(self._exchange, "precisionMode", 0))
        ticker = await self._call(f"fetch_ticker {symbol}", "fetch_ticker",
                                  lambda: self._exchange.fetch_ticker(symbol))
        return MarketInfo(symbol, amount_step, price_step, _quote_volume(ticker))

    async def close(self) -> None:
        """Release the exchange's HTTP session (only an exchange this source created)."""
        if self._owned:
            await self._exchange.close()

    async def _markets(self) -> dict[str, Any]:
        exchange = self._exchange
        if exchange.markets:
            return exchange.markets
        cached = _MARKETS_CACHE.get(self.exchange_id) if self._owned else None
        if cached and time.monotonic() - cached[0] < _MARKETS_TTL_S:
            exchange.set_markets(cached[1])
            return exchange.markets
        markets = await self._call("load_markets", "load_markets", exchange.load_markets)
        if self._owned:
            _MARKETS_CACHE[self.exchange_id] = (time.monotonic(), markets)
        return markets

    async def _call[T](self, what: str, method: str, call: Callable[[], Awaitable[T]]) -> T:
        budget = self._budget

        async def counted() -> T:  # every attempt, retries included, is weighed against the shard's share
            if budget is not None:
                await budget.acquire(REQUEST_WEIGHTS.get(method, 1))
            return await call()

        return await call_with_retry(
            counted, what=f"{self.exchange_id} {what}", policy=self._retry, sleep=self._sleep, rand=self._rand
        )


def new_exchange(exchange_id: str) -> Any:
    """A ccxt async exchange configured as the predict path uses it (rate limiter, timeout); close() it."""
    return _new_exchange(exchange_id)


def _new_exchange(exchange_id: str) -> Any:
    if exchange_id not in ccxt.exchanges:
        raise SettingsError(f"EXCHANGE_ID: {exchange_id!r} is not an exchange ccxt {ccxt.__version__} knows")
    limiter = RATE_LIMITER if exchange_id in PER_MINUTE_WEIGHT_EXCHANGES else {}
    return getattr(ccxt, exchange_id)({"enableRateLimit": True, "timeout": 10_000, **limiter})


def _check_timeframe(exchange: Any, timeframe: str) -> None:
    if not (getattr(exchange, "has", None) or {}).get("fetchOHLCV"):
        raise SettingsError(f"TIMEFRAME: {exchange.id} serves no OHLCV candles")
    timeframes = getattr(exchange, "timeframes", None) or {}
    if timeframe not in timeframes:
        raise SettingsError(
            f"TIMEFRAME: {timeframe!r} is not offered by {exchange.id} (offers {', '.join(timeframes)})"
        )


def _quote_volume(ticker: Mapping[str, Any]) -> float | None:
    quote_volume = ticker.get("quoteVolume")
    if quote_volume is not None:
        return float(quote_volume)
    base_volume, price = ticker.get("baseVolume"), ticker.get("vwap") or ticker.get("last")
    return float(base_volume) * float(price) if base_volume is not None and price is not None else None
