"""The exchange adapter: closed candles and market facts over `ccxt.async_support`.

ccxt's exceptions never leave this module: they are translated into the project's hierarchy
(`traderai.market`), and only temporary failures are retried, with bounded exponential backoff and
jitter. Use one `CcxtSource` per event loop (per invocation) and `close()` it: ccxt binds its HTTP
session to the loop. Loaded markets are cached per exchange id across warm invocations.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import ccxt.async_support as ccxt

from traderai.contracts import Candles, MarketInfo, SettingsError
from traderai.core.shards import (
    KLINES_WEIGHT,
    LOAD_MARKETS_WEIGHT,
    TICKER_BATCH_SIZE,
    TICKER_WEIGHT,
    ticker_batch_weight,
)
from traderai.market import (
    BadCandlesError,
    BadTickerError,
    MarketDataError,
    MissingTickerError,
    PermanentMarketError,
    RateLimitedError,
    TemporaryMarketError,
)
from traderai.market.budget import WeightBudget
from traderai.market.validation import candles_from_klines, candles_from_rows, closed_only, validate_candles
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
# symbol: 2, with a `symbols` list: core.shards.ticker_batch_weight; /api/v3/exchangeInfo: 20), counted against a
# shard's share of the minute (market.budget), which core.shards never plans below the largest of them.
REQUEST_WEIGHTS = {"fetch_ohlcv": KLINES_WEIGHT, "fetch_ticker": TICKER_WEIGHT, "load_markets": LOAD_MARKETS_WEIGHT}
# Exchanges whose fetch_tickers(symbols) sends the symbols to the exchange, at a weight we count: ccxt's binance
# does for spot markets (GET /api/v3/ticker/24hr?symbols=[...]); for futures it asks every ticker (fapi/dapi,
# no symbols), so a derivative market's ticker is asked alone. Elsewhere each market's ticker is asked alone.
TICKER_BATCH_EXCHANGES = frozenset({"binance"})
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
        self._loading: asyncio.Task[dict[str, Any]] | None = None  # the load_markets callers share
        _check_timeframe(self._exchange, settings.timeframe)

    def share_budget(self, weight_per_minute: int | None) -> None:
        """This shard's share of the exchange's weight per minute (None: no budget to share), in a limiter of its
        own. Each shard is counted against its own share alone (the shares add up to at most the budget:
        core.shards), so a warm sandbox that ran another shard of the same tick seconds ago starts this one
        with an empty window: inheriting the other shard's requests, it would wait up to a minute for them to
        leave (a tick with more shards than ShardConcurrency runs them in waves, on the first wave's sandboxes)."""
        if weight_per_minute is None or self.exchange_id not in PER_MINUTE_WEIGHT_EXCHANGES:
            self._budget = None
        else:
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
        klines = await self._spot_klines(symbol)
        if klines is not None:
            market_id, get_klines = klines
            interval = self._exchange.timeframes.get(timeframe, timeframe)  # as fetch_ohlcv maps it
            request = {"symbol": market_id, "interval": interval, "limit": limit + 1}
            reply = await self._call(f"fetch_ohlcv {symbol} {timeframe}", "fetch_ohlcv",
                                     lambda: get_klines(request))
            candles = closed_only(candles_from_klines(symbol, timeframe, reply), timeframe_seconds, now).tail(limit)
        else:
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
        ticker = await self._call(f"fetch_ticker {symbol}", "fetch_ticker",
                                  lambda: self._exchange.fetch_ticker(symbol))
        return self._info(symbol, market, ticker)

    async def market_infos(self, symbols: Sequence[str], now: datetime) -> dict[str, MarketInfo | Exception]:
        """`market_info` of the symbols whose tickers the exchange gives in a list (TICKER_BATCH_EXCHANGES, spot
        markets), TICKER_BATCH_SIZE a request, each symbol its info or the error that fails it alone; the other
        symbols are left out (the caller asks `market_info` for them). A market missing from a reply or with a
        bad quote volume fails alone; a batch that fails after its retries fails each of its markets with that
        reason; one the exchange rejects outright (an unknown symbol rejects the whole list) is asked again
        market by market, so only the bad market fails. Markets that cannot be loaded fail every symbol."""
        wanted = list(dict.fromkeys(symbols))
        if not (self.exchange_id in TICKER_BATCH_EXCHANGES
                and (getattr(self._exchange, "has", None) or {}).get("fetchTickers")):
            return {}
        try:
            markets = await self._markets()
        except MarketDataError as exc:
            return {symbol: _for_market(symbol, exc) for symbol in wanted}
        batched = [symbol for symbol in wanted if (markets.get(symbol) or {}).get("spot") is True]
        batches = [batched[start:start + TICKER_BATCH_SIZE] for start in range(0, len(batched), TICKER_BATCH_SIZE)]
        results: dict[str, MarketInfo | Exception] = {}
        for outcome in await asyncio.gather(*(self._ticker_batch(batch, markets, now) for batch in batches)):
            results.update(outcome)
        return results

    async def _one_info(self, symbol: str, now: datetime) -> dict[str, MarketInfo | Exception]:
        try:
            return {symbol: await self.market_info(symbol, now)}
        except Exception as exc:  # noqa: BLE001 - this market's failure, whatever it is (fetch_markets reports it)
            return {symbol: exc}

    async def _ticker_batch(self, batch: list[str], markets: Mapping[str, Any],
                            now: datetime) -> dict[str, MarketInfo | Exception]:
        try:
            tickers = await self._call(
                f"fetch_tickers {len(batch)} symbols ({batch[0]} .. {batch[-1]})", "fetch_tickers",
                lambda: self._exchange.fetch_tickers(batch), weight=ticker_batch_weight(len(batch)))
        except PermanentMarketError as exc:
            if len(batch) == 1:
                return {batch[0]: exc}
            logger.warning("ticker batch rejected; asking its markets one by one",
                           extra={"reason": exc.reason, "markets": len(batch), "error": str(exc)[:300]})
            alone = await asyncio.gather(*(self._one_info(symbol, now) for symbol in batch))
            return {symbol: info for outcome in alone for symbol, info in outcome.items()}
        except MarketDataError as exc:  # temporary, and retried: every market of the batch fails with its reason
            return {symbol: _for_market(symbol, exc) for symbol in batch}
        except Exception as exc:  # noqa: BLE001 - a bug (in ccxt's parsing or here): fails the batch's markets, each reported
            return dict.fromkeys(batch, exc)
        if not isinstance(tickers, Mapping):
            return {symbol: BadTickerError(f"{symbol}: fetch_tickers returned {type(tickers).__name__}, not tickers "
                                           "by symbol") for symbol in batch}
        results: dict[str, MarketInfo | Exception] = {}
        for symbol in batch:
            ticker = tickers.get(symbol)
            if ticker is None:
                results[symbol] = MissingTickerError(
                    f"{symbol}: not in the {self.exchange_id} fetch_tickers reply for {len(batch)} symbols")
                continue
            try:
                results[symbol] = self._info(symbol, markets[symbol], ticker)
            except MarketDataError as exc:
                results[symbol] = exc
        return results

    def _info(self, symbol: str, market: Mapping[str, Any], ticker: Any) -> MarketInfo:
        amount_step, price_step = steps_from_market(market, getattr(self._exchange, "precisionMode", 0))
        return MarketInfo(symbol, amount_step, price_step, _quote_volume(symbol, ticker))

    async def _spot_klines(self, symbol: str) -> tuple[str, Callable[[dict[str, Any]], Awaitable[Any]]] | None:
        """Binance's klines endpoint for a spot market (its market id and ccxt's `publicGetKlines`), else None.

        For a Binance spot market, `fetch_ohlcv` is this same request (GET /api/v3/klines with the market id,
        interval and limit: the same weight, ccxt's same limiter and error handling) followed by ccxt's decoding
        of every cell in Python, 1.1 ms of CPU per 501-candle reply; `candles_from_klines` turns the decoded
        JSON into `Candles` in 0.4 ms (the JSON itself is 0.3 ms either way). Other markets and exchanges go
        through `fetch_ohlcv`."""
        if self.exchange_id != "binance":
            return None
        get_klines = getattr(self._exchange, "publicGetKlines", None)
        if get_klines is None:
            return None
        market = (await self._markets()).get(symbol)
        if market is None or market.get("spot") is not True or not market.get("id"):
            return None  # an unknown symbol: fetch_ohlcv raises ccxt's BadSymbol for it
        return str(market["id"]), get_klines

    async def close(self) -> None:
        """Release the exchange's HTTP session (only an exchange this source created)."""
        if self._owned:
            await self._exchange.close()

    async def _markets(self) -> dict[str, Any]:
        """The exchange's markets, loaded once: concurrent callers (a shard's markets, each asking for its klines
        and its ticker batch) share one load_markets request and its outcome, as ccxt's own load_markets does."""
        if self._exchange.markets:
            return self._exchange.markets
        loop = asyncio.get_running_loop()
        loading = self._loading
        failed = loading is not None and loading.done() and (loading.cancelled() or loading.exception() is not None)
        if loading is None or loading.get_loop() is not loop or failed:
            loading = self._loading = loop.create_task(self._load_markets())
        return await asyncio.shield(loading)

    async def _load_markets(self) -> dict[str, Any]:
        exchange = self._exchange
        cached = _MARKETS_CACHE.get(self.exchange_id) if self._owned else None
        if cached and time.monotonic() - cached[0] < _MARKETS_TTL_S:
            exchange.set_markets(cached[1])
            return exchange.markets
        markets = await self._call("load_markets", "load_markets", exchange.load_markets)
        if self._owned:
            _MARKETS_CACHE[self.exchange_id] = (time.monotonic(), markets)
        return markets

    async def _call[T](self, what: str, method: str, call: Callable[[], Awaitable[T]], *,
                       weight: int | None = None) -> T:
        budget = self._budget
        weight = REQUEST_WEIGHTS.get(method, 1) if weight is None else weight

        async def counted() -> T:  # every attempt, retries included, is weighed against the shard's share
            if budget is not None:
                await budget.acquire(weight)
            return await call()

        return await call_with_retry(
            counted, what=f"{self.exchange_id} {what}", policy=self._retry, sleep=self._sleep, rand=self._rand
        )


class _Binance(ccxt.binance):
    """ccxt's binance, its own limiter charging a ticker request with a `symbols` list what Binance weighs it.

    ccxt 4.5 charges every GET /api/v3/ticker/24hr without a single `symbol` its no-symbol cost (16 units: 80
    weight), so a shard's batches of 20 (weight 2 each) would count 40 times their weight in ccxt's rolling
    window: a 1,000-market shard (SHARD_SIZE's largest) would fill the window with its first tick and wait a
    minute for the rest. The cost unit is ccxt's own (a one-symbol ticker's cost for weight 2)."""

    def calculate_rate_limiter_cost(self, api: Any, method: Any, path: Any, params: Any,
                                    config: dict[str, Any] | None = None) -> Any:
        config = {} if config is None else config
        if (path == "ticker/24hr" and isinstance(params, dict) and "symbol" not in params
                and isinstance(params.get("symbols"), str) and "cost" in config):
            try:
                count = len(json.loads(params["symbols"]))
            except (TypeError, ValueError):
                count = 0
            if count:
                return float(config["cost"]) / TICKER_WEIGHT * ticker_batch_weight(count)
        return super().calculate_rate_limiter_cost(api, method, path, params, config)


def new_exchange(exchange_id: str) -> Any:
    """A ccxt async exchange configured as the predict path uses it (rate limiter, timeout); close() it."""
    return _new_exchange(exchange_id)


def _new_exchange(exchange_id: str) -> Any:
    if exchange_id not in ccxt.exchanges:
        raise SettingsError(f"EXCHANGE_ID: {exchange_id!r} is not an exchange ccxt {ccxt.__version__} knows")
    limiter = RATE_LIMITER if exchange_id in PER_MINUTE_WEIGHT_EXCHANGES else {}
    exchange_class = _Binance if exchange_id == "binance" else getattr(ccxt, exchange_id)
    return exchange_class({"enableRateLimit": True, "timeout": 10_000, **limiter})


def _check_timeframe(exchange: Any, timeframe: str) -> None:
    if not (getattr(exchange, "has", None) or {}).get("fetchOHLCV"):
        raise SettingsError(f"TIMEFRAME: {exchange.id} serves no OHLCV candles")
    timeframes = getattr(exchange, "timeframes", None) or {}
    if timeframe not in timeframes:
        raise SettingsError(
            f"TIMEFRAME: {timeframe!r} is not offered by {exchange.id} (offers {', '.join(timeframes)})"
        )


def _quote_volume(symbol: str, ticker: Any) -> float | None:
    """The ticker's 24h quote volume (base volume x price without one); None if it gives neither. BadTickerError
    if it is no ticker or the volume is not a finite amount >= 0."""
    if not isinstance(ticker, Mapping):
        raise BadTickerError(f"{symbol}: the ticker is {type(ticker).__name__}, not a ticker")
    try:
        quote_volume = ticker.get("quoteVolume")
        if quote_volume is not None:
            value = float(quote_volume)
        else:
            base_volume, price = ticker.get("baseVolume"), ticker.get("vwap") or ticker.get("last")
            if base_volume is None or price is None:
                return None
            value = float(base_volume) * float(price)
    except (TypeError, ValueError) as exc:
        raise BadTickerError(f"{symbol}: 24h quote volume is not a number: {exc}") from None
    if not math.isfinite(value) or value < 0:
        raise BadTickerError(f"{symbol}: 24h quote volume {value!r} is not a finite amount >= 0")
    return value


def _for_market(symbol: str, error: MarketDataError) -> MarketDataError:
    """A failure shared by many markets (a batch, load_markets), as this market's own error: same type and
    reason, the symbol in front, the shared error as its cause."""
    try:
        own = type(error)(f"{symbol}: {error}")
    except TypeError:  # an error class with another constructor: the shared one, as it is
        return error
    own.__cause__ = error
    own.__notes__ = list(getattr(error, "__notes__", []))
    return own
