"""A fake ccxt async exchange: the same methods, attributes and exceptions, over recorded candles.

It serves candles as a real exchange would at a clock you set, the still-forming last candle
included, and 24h tickers one at a time (`fetch_ticker`) or many in one request (`fetch_tickers`, as ccxt's
binance asks spot tickers: one latency, one error for the whole request), and lets a test add latency, queue
ccxt errors, mangle candles or tickers, freeze a feed, or give the IP Binance's weight limit (`weight_per_minute`:
every request weighed as Binance weighs it, 429 past the minute's limit). Inject it
into `CcxtSource(settings, exchange=FakeExchange(...))`; nothing in ccxt is patched.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import ccxt
import numpy as np

from traderai.contracts import TIMEFRAME_SECONDS, Candles
from traderai.core.shards import KLINES_WEIGHT, LOAD_MARKETS_WEIGHT, TICKER_WEIGHT, ticker_batch_weight
from traderai.market.csv import load_candles_csv
from traderai.market.replay import candles_file_name
from traderai.market.validation import now_ms

Row = list[float]
BINANCE_TIMEFRAMES = {
    tf: tf
    for tf in (
        "1s",
        "1m",
        "3m",
        "5m",
        "15m",
        "30m",
        "1h",
        "2h",
        "4h",
        "6h",
        "8h",
        "12h",
        "1d",
        "3d",
        "1w",
        "1M",
    )
}
_DEFAULT_STEP = (0.001, 0.01)


def synthetic_candles(
    symbol: str,
    *,
    start: datetime,
    count: int,
    timeframe: str = "15m",
    price: float = 30_000.0,
    seed: int = 7,
) -> Candles:
    """Deterministic random-walk candles on the timeframe grid: valid, gap-free, no files needed."""
    step_ms = TIMEFRAME_SECONDS[timeframe] * 1000
    first_ms = -(-int(start.timestamp() * 1000) // step_ms) * step_ms
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(0, 0.002, count)))
    open_ = np.concatenate([[price], close[:-1]])
    spread = np.abs(rng.normal(0, 0.001, count)) * close
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread
    volume = rng.uniform(50, 500, count)
    times = first_ms + step_ms * np.arange(count, dtype=np.int64)
    return Candles(symbol, timeframe, times, open_, high, low, close, volume)


class FakeExchange:
    """ccxt-like async exchange serving `candles` at the clock `now` (a datetime or a callable)."""

    def __init__(
        self,
        candles: Mapping[str, Candles],
        *,
        now: datetime | Callable[[], datetime],
        exchange_id: str = "binance",
        latency_s: float = 0.0,
        precision_mode: int = ccxt.TICK_SIZE,
        timeframes: Mapping[str, str] | None = None,
        steps: Mapping[str, tuple[float, float]] | None = None,
        max_limit: int = 1000,
        weight_per_minute: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.id = exchange_id
        self.precisionMode = precision_mode
        self.timeframes = dict(BINANCE_TIMEFRAMES if timeframes is None else timeframes)
        self.has = {"fetchOHLCV": True, "fetchTicker": True, "fetchTickers": True, "fetchMarkets": True}
        self.markets: dict[str, dict[str, Any]] | None = None
        self.symbols: list[str] | None = None
        self.latency_s = latency_s
        self.max_limit = max_limit
        self.calls: list[tuple[str, str | None]] = []
        self.ohlcv_requests: list[dict[str, Any]] = []  # the arguments of every fetch_ohlcv call
        self.ticker_requests: list[list[str] | None] = []  # the symbols of every fetch_tickers call (None: all)
        self.in_flight = 0
        self.peak_in_flight = 0
        # Binance's request weight per IP: every request is weighed as Binance weighs it (`weight_used`); past
        # `weight_per_minute` in a rolling minute of `clock`, a request is answered 429 (RateLimitExceeded)
        self.weight_per_minute = weight_per_minute
        self.weight_used = 0
        self._clock = clock
        self._weighed: deque[tuple[float, int]] = deque()
        self.closed = False
        self._candles = dict(candles)
        self._steps = dict(steps or {})
        self._now = now
        self._queued: dict[tuple[str, str | None], deque[BaseException]] = defaultdict(deque)
        self._always: dict[tuple[str, str | None], BaseException] = {}
        self._mangle: dict[str, Callable[[list[Row]], list[Any]]] = {}
        self._mangle_ticker: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self._frozen_ms: dict[str, int] = {}
        self._ids: dict[str, str] = {}  # market id (BTCUSDT) -> symbol, with the markets
        self._kline_cells: dict[bytes, tuple[tuple[str, ...], tuple[Any, ...]]] = {}  # a candle's values -> cells

    @classmethod
    def from_csv_dir(cls, data_dir: str | Path, symbols: Iterable[str], **kwargs: Any) -> FakeExchange:
        """Serve the recorded `<BASE>_<QUOTE>-15m.csv.gz` files of `data_dir` (real candles, real gaps)."""
        return cls(
            {s: load_candles_csv(Path(data_dir) / candles_file_name(s), s, "15m") for s in symbols}, **kwargs
        )

    # -- test controls ---------------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        return self._now() if callable(self._now) else self._now

    def set_now(self, now: datetime) -> None:
        """Move the exchange's clock."""
        self._now = now

    def fail_next(self, method: str, *errors: BaseException, symbol: str | None = None) -> None:
        """The next calls of `method` (for `symbol`, or any symbol if None) raise `errors`, in order."""
        self._queued[(method, symbol)].extend(errors)

    def fail_always(self, method: str, error: BaseException, symbol: str | None = None) -> None:
        """Every call of `method` (for `symbol`, or any) raises `error` until `heal()`."""
        self._always[(method, symbol)] = error

    def heal(self) -> None:
        """Forget every injected failure, mangling and frozen feed."""
        self._queued.clear()
        self._always.clear()
        self._mangle.clear()
        self._mangle_ticker.clear()
        self._frozen_ms.clear()

    def mangle(self, symbol: str, transform: Callable[[list[Row]], list[Any]]) -> None:
        """Pass `symbol`'s OHLCV rows through `transform` before they are returned (malformed candles)."""
        self._mangle[symbol] = transform

    def mangle_ticker(self, symbol: str, transform: Callable[[dict[str, Any]], Any]) -> None:
        """Pass `symbol`'s ticker through `transform` before it is returned; a transform returning None leaves
        the symbol out of `fetch_tickers`' reply (a reply missing a market)."""
        self._mangle_ticker[symbol] = transform

    def freeze(self, symbol: str, at: datetime) -> None:
        """`symbol`'s feed stops at `at`: no candle opening later is served (a stale feed)."""
        self._frozen_ms[symbol] = int(at.timestamp() * 1000)

    def prepare_klines(self, candles: Iterable[Candles]) -> None:
        """Write now the cells `publicGetKlines` serves for every candle of `candles` (a market's, or the series
        clones of it share values with), which it otherwise writes at a candle's first request: a benchmark calls
        it before it starts its clock (writing them is this fake's CPU, not the tick's)."""
        for series in candles:
            self._cells(series, 0, len(series.open_time_ms))

    def count(self, method: str, symbol: str | None = None) -> int:
        """How many calls of `method` (for `symbol`, or for any symbol) were made."""
        return sum(1 for m, s in self.calls if m == method and (symbol is None or s == symbol))

    # -- the ccxt surface --------------------------------------------------------------------------------

    async def load_markets(
        self, reload: bool = False, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        async with self._call("load_markets", None, weight=LOAD_MARKETS_WEIGHT):
            if self.markets is None or reload:
                self.set_markets([self._market(symbol) for symbol in self._candles])
            assert self.markets is not None
            return self.markets

    def set_markets(self, markets: Iterable[dict[str, Any]] | Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        values = list(markets.values()) if isinstance(markets, Mapping) else list(markets)
        self.markets = {m["symbol"]: m for m in values}
        self._ids = {m["id"]: m["symbol"] for m in values}
        self.symbols = sorted(self.markets)
        return self.markets

    def market(self, symbol: str) -> dict[str, Any]:
        if self.markets is None:
            raise ccxt.ExchangeError(f"{self.id} markets not loaded")
        if symbol not in self.markets:
            raise ccxt.BadSymbol(f"{self.id} does not have market symbol {symbol}")
        return self.markets[symbol]

    async def fetch_ohlcv(
        self,
        symbol: str,
        timeframe: str = "1m",
        since: int | None = None,
        limit: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> list[Any]:
        self.ohlcv_requests.append({"symbol": symbol, "timeframe": timeframe, "since": since, "limit": limit})
        async with self._call("fetch_ohlcv", symbol, weight=KLINES_WEIGHT):
            candles = self._served(symbol, timeframe if timeframe in self.timeframes else None)
            count = min(limit or 500, self.max_limit)
            rows = self._rows_at(symbol, candles, since=since, count=count)
            transform = self._mangle.get(symbol)
            return transform(rows) if transform else rows

    async def publicGetKlines(self, params: Mapping[str, Any]) -> Any:  # ccxt's name for GET /api/v3/klines
        """GET /api/v3/klines as ccxt's implicit API returns it, the reply as JSON decodes it: each row
        `[open_time, "open", "high", "low", "close", "volume", close_time, "quote_volume", trades, "taker_base",
        "taker_quote", "0"]`, times as integers and decimal strings, as Binance sends them. For a spot market ccxt's
        `fetch_ohlcv` is this request, so it is counted, failed, mangled and weighed as `fetch_ohlcv` (an unknown
        market id is Binance's -1121, ccxt's BadSymbol). Not served: the JSON text (decoding it is ccxt's HTTP
        layer's, the same for every reply)."""
        symbol = self._symbol_of(str(params.get("symbol")))
        interval, limit = params.get("interval"), params.get("limit")
        self.ohlcv_requests.append({"symbol": symbol, "timeframe": interval, "since": None, "limit": limit})
        async with self._call("fetch_ohlcv", symbol, weight=KLINES_WEIGHT):
            timeframe = next((unified for unified, name in self.timeframes.items() if name == interval), None)
            candles = self._served(symbol, timeframe)
            rows = self._klines_at(symbol, candles, count=min(int(limit or 500), self.max_limit))
            transform = self._mangle.get(symbol)
            return transform(rows) if transform else rows

    async def fetch_ticker(self, symbol: str, params: Mapping[str, Any] | None = None) -> Any:
        async with self._call("fetch_ticker", symbol, weight=TICKER_WEIGHT):
            return self._ticker(symbol)

    async def fetch_tickers(self, symbols: list[str] | None = None,
                            params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One request for the tickers of `symbols` (None: every market), keyed by symbol, as ccxt's binance asks
        GET /api/v3/ticker/24hr?symbols=[...] for spot markets: one latency, and an injected error
        (`fail_next("fetch_tickers", ...)`) fails the whole request; a symbol the exchange does not have rejects
        the whole request (BadSymbol, as Binance answers -1121 Invalid symbol)."""
        self.ticker_requests.append(None if symbols is None else list(symbols))
        async with self._call("fetch_tickers", None, weight=80 if not symbols else ticker_batch_weight(len(symbols))):
            wanted = list(self._candles) if symbols is None else list(symbols)
            for symbol in wanted:
                self._known(symbol)
            tickers = {symbol: self._ticker(symbol) for symbol in wanted}
            return {symbol: ticker for symbol, ticker in tickers.items() if ticker is not None}

    async def close(self) -> None:
        self.closed = True

    # -- internals ------------------------------------------------------------------------------------------

    def _ticker(self, symbol: str) -> Any:
        """`symbol`'s 24h ticker at `now`, from its candles (volumes summed over the last 24 hours)."""
        candles = self._known(symbol)
        step_ms = TIMEFRAME_SECONDS[candles.timeframe] * 1000
        at_ms = now_ms(self.now)
        start, opened = self._window(symbol, candles, since=None, count=200)
        # the candles that closed within the last 24 hours or are forming, on the arrays (no rows built: this
        # fake's own CPU would otherwise be counted as the tick's in the benchmarks)
        day = max(start, int(np.searchsorted(candles.open_time_ms, at_ms - 86_400_000 - step_ms, side="right")))
        close, volume = candles.close[day:opened].copy(), candles.volume[day:opened].copy()
        last = float(candles.close[opened - 1]) if opened > start else None
        if opened > start and int(candles.open_time_ms[opened - 1]) + step_ms > at_ms:  # forming, as _rows_at
            forming = self._rows_at(symbol, candles, since=None, count=1)[-1]
            close[-1], volume[-1], last = forming[4], forming[5], forming[4]
        base_volume = float(volume.sum())
        quote_volume = float((close * volume).sum())
        ticker = {
            "symbol": symbol,
            "timestamp": at_ms,
            "datetime": self.now.isoformat(),
            "last": last,
            "close": last,
            "baseVolume": base_volume,
            "quoteVolume": quote_volume,
            "vwap": quote_volume / base_volume if base_volume else None,
            "info": {},
        }
        transform = self._mangle_ticker.get(symbol)
        return transform(ticker) if transform else ticker

    def _known(self, symbol: str) -> Candles:
        if symbol not in self._candles:
            raise ccxt.BadSymbol(f"{self.id} does not have market symbol {symbol}")
        if self.markets is None:
            self.set_markets([self._market(s) for s in self._candles])
        return self._candles[symbol]

    def _served(self, symbol: str, timeframe: str | None) -> Candles:
        """`symbol`'s candles if served in `timeframe` (ccxt's name; None: one the exchange does not offer, which
        Binance refuses as -1120)."""
        candles = self._known(symbol)
        if timeframe is None:
            raise ccxt.BadRequest(f'{self.id} {{"code":-1120,"msg":"Invalid interval."}}')
        if timeframe != candles.timeframe:
            raise ccxt.NotSupported(f"{self.id} fake serves {candles.timeframe} candles only")
        return candles

    def _values(self, candles: Candles, start: int, stop: int) -> np.ndarray:
        """Candles [start, stop) as rows of open, high, low, close, volume."""
        return np.column_stack([candles.open[start:stop], candles.high[start:stop], candles.low[start:stop],
                                candles.close[start:stop], candles.volume[start:stop]])

    def _symbol_of(self, market_id: str) -> str:
        if self.markets is None and self._candles:
            self._known(next(iter(self._candles)))
        symbol = self._ids.get(market_id)
        if symbol is None:
            raise ccxt.BadSymbol(f'{self.id} {{"code":-1121,"msg":"Invalid symbol."}}')
        return symbol

    def _window(self, symbol: str, candles: Candles, *, since: int | None, count: int) -> tuple[int, int]:
        """The candles an exchange shows at `now` (from `since`, else the newest `count`), as [start, opened)."""
        at_ms = now_ms(self.now)
        horizon_ms = min(at_ms, self._frozen_ms.get(symbol, at_ms))
        opened = int(np.searchsorted(candles.open_time_ms, horizon_ms, side="right"))
        if since is None:
            return max(0, opened - count), opened
        start = int(np.searchsorted(candles.open_time_ms, since, side="left"))
        return start, min(opened, start + count)

    def _klines_at(self, symbol: str, candles: Candles, *, count: int) -> list[list[Any]]:
        """The newest `count` klines at `now` as a JSON reply decodes, the last one forming. The cells of a candle's
        values are written once per distinct values (clones of a market, rotated, share them) and kept: this fake's
        own CPU would otherwise be counted as the tick's in the benchmarks."""
        start, opened = self._window(symbol, candles, since=None, count=count)
        step_ms = TIMEFRAME_SECONDS[candles.timeframe] * 1000
        cells = self._cells(candles, start, opened)
        last = step_ms - 1
        rows = [[time_ms, *head, time_ms + last, *tail]
                for time_ms, (head, tail) in zip(candles.open_time_ms[start:opened].tolist(), cells, strict=True)]
        if rows and rows[-1][0] + step_ms > now_ms(self.now):
            forming = self._rows_at(symbol, candles, since=None, count=1)[-1]  # as the exchange shows it now
            head, tail = _kline_cells(forming[1:])
            rows[-1] = [forming[0], *head, int(forming[0]) + last, *tail]
        return rows

    def _cells(self, candles: Candles, start: int, stop: int) -> list[tuple[tuple[str, ...], tuple[Any, ...]]]:
        """The kline cells of candles [start, stop), each written once per distinct values (a row's 40 bytes)."""
        values = self._values(candles, start, stop)
        keys = cast(list[bytes], values.view(np.dtype((np.void, values.itemsize * 5))).ravel().tolist())
        known = self._kline_cells
        found = [known.get(key) for key in keys]
        return [these if these is not None else known.setdefault(key, _kline_cells(values[index].tolist()))
                for index, (key, these) in enumerate(zip(keys, found, strict=True))]

    def _rows_at(self, symbol: str, candles: Candles, *, since: int | None, count: int) -> list[Row]:
        """Rows an exchange shows at `now`: candles opened by then (from `since`, else the newest
        `count`), the last one still forming."""
        step_ms = TIMEFRAME_SECONDS[candles.timeframe] * 1000
        at_ms = now_ms(self.now)
        start, opened = self._window(symbol, candles, since=since, count=count)
        # ints for the times, floats for the rest, as ccxt gives them (converted in bulk: this fake's own CPU
        # would otherwise be counted as the tick's in the benchmarks)
        values = self._values(candles, start, opened).tolist()
        rows = [[time, *row] for time, row in zip(candles.open_time_ms[start:opened].tolist(), values, strict=True)]
        if rows and rows[-1][0] + step_ms > at_ms:  # forming: only part of the candle has happened
            open_time, open_, high, low, close, volume = rows[-1]
            done = (at_ms - open_time) / step_ms
            price = open_ + (close - open_) * done
            rows[-1] = [
                open_time,
                open_,
                max(open_, price, min(high, price * 1.0005)),
                min(open_, price, max(low, price * 0.9995)),
                price,
                volume * done,
            ]
        return rows

    def _market(self, symbol: str) -> dict[str, Any]:
        base, quote = symbol.split(":", 1)[0].split("/")
        amount_step, price_step = self._steps.get(symbol, _DEFAULT_STEP)
        if self.precisionMode == ccxt.DECIMAL_PLACES:
            precision: dict[str, float | int] = {
                "amount": round(-math.log10(amount_step)),
                "price": round(-math.log10(price_step)),
            }
        else:
            precision = {"amount": amount_step, "price": price_step}
        return {
            "id": base + quote,
            "symbol": symbol,
            "base": base,
            "quote": quote,
            "type": "swap" if ":" in symbol else "spot",  # BTC/USDT:USDT is a perpetual, as ccxt names it
            "spot": ":" not in symbol,
            "swap": ":" in symbol,
            "active": True,
            "precision": precision,
            "limits": {
                "amount": {"min": amount_step, "max": None},
                "price": {"min": price_step, "max": None},
                "cost": {"min": 5.0, "max": None},
            },
            "info": {},
        }

    def _call(self, method: str, symbol: str | None, *, weight: int) -> _InFlight:
        self.calls.append((method, symbol))
        self._weigh(weight)
        return _InFlight(self, method, symbol)

    def _weigh(self, weight: int) -> None:
        """Count a request's weight as Binance does on arrival; past the minute's limit, answer 429."""
        self.weight_used += weight
        if self.weight_per_minute is None:
            return
        now = self._clock()
        while self._weighed and self._weighed[0][0] <= now - 60.0:
            self._weighed.popleft()
        self._weighed.append((now, weight))
        used = sum(w for _, w in self._weighed)
        if used > self.weight_per_minute:
            raise ccxt.RateLimitExceeded(f'{self.id} 429 {{"code":-1003,"msg":"Too much request weight used; '
                                         f'{used} of {self.weight_per_minute} in the last minute"}}')

    def _injected_error(self, method: str, symbol: str | None) -> BaseException | None:
        for key in ((method, symbol), (method, None)):
            if self._queued.get(key):
                return self._queued[key].popleft()
        for key in ((method, symbol), (method, None)):
            if key in self._always:
                return self._always[key]
        return None


class _InFlight:
    """Latency, concurrency accounting and injected failures around one fake call."""

    def __init__(self, exchange: FakeExchange, method: str, symbol: str | None) -> None:
        self._exchange, self._method, self._symbol = exchange, method, symbol

    async def __aenter__(self) -> None:
        exchange = self._exchange
        exchange.in_flight += 1
        exchange.peak_in_flight = max(exchange.peak_in_flight, exchange.in_flight)
        try:
            if exchange.latency_s:
                await asyncio.sleep(exchange.latency_s)
            error = exchange._injected_error(self._method, self._symbol)
            if error is not None:
                raise error
        except BaseException:
            exchange.in_flight -= 1
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._exchange.in_flight -= 1


def _kline_cells(values: list[float]) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """A kline's cells as Binance writes them, before and after its close time: open, high, low, close and volume
    as decimal strings (repr: the shortest text that reads back as the same float); then the quote volume, a trade
    count, the taker volumes (derived from them) and the ignored field."""
    open_, high, low, close, volume = values
    quote = close * volume
    return ((repr(open_), repr(high), repr(low), repr(close), repr(volume)),
            (repr(quote), int(volume) + 1, repr(volume / 2), repr(quote / 2), "0"))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """A UTC-aware datetime, shorthand for tests."""
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
