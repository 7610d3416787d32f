"""The ccxt adapter against a fake exchange: error translation, bounded retries, closed candles, settings."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import ccxt
import ccxt.async_support
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from traderai.contracts import SettingsError
from traderai.market import (
    BadCandlesError,
    MarketDataError,
    PermanentMarketError,
    RateLimitedError,
    StaleFeedError,
    TemporaryMarketError,
)
from traderai.market.exchange import (
    CcxtSource,
    RetryPolicy,
    call_with_retry,
    steps_from_market,
    translate_ccxt_error,
)
from traderai.market.validation import candles_from_klines, candles_from_rows, closed_only
from traderai.settings import Settings
from traderai.testing.fake_exchange import FakeExchange, synthetic_candles

START = datetime(2025, 1, 1, tzinfo=UTC)
SYMBOLS = ("BTC/USDT", "ETH/USDT")
CANDLES = {s: synthetic_candles(s, start=START, count=400, seed=i) for i, s in enumerate(SYMBOLS)}
# 5 minutes into the 301st candle: 300 closed candles and one forming.
NOW = START + timedelta(minutes=15 * 300 + 5)
SETTINGS = Settings(markets=SYMBOLS)


class Sleeps:
    """Records the backoff delays instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def source_with(
    fake: FakeExchange, *, attempts: int = 4, settings: Settings = SETTINGS
) -> tuple[CcxtSource, Sleeps]:
    sleeps = Sleeps()
    policy = RetryPolicy(attempts=attempts, base_delay_s=0.5, max_delay_s=8.0)
    return CcxtSource(settings, exchange=fake, retry=policy, sleep=sleeps, rand=lambda: 1.0), sleeps


def fake(**kwargs: object) -> FakeExchange:
    return FakeExchange(CANDLES, now=NOW, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ccxt_error", "expected", "reason"),
    [
        (ccxt.RequestTimeout, TemporaryMarketError, "exchange_unavailable"),
        (ccxt.NetworkError, TemporaryMarketError, "exchange_unavailable"),
        (ccxt.ExchangeNotAvailable, TemporaryMarketError, "exchange_unavailable"),
        (ccxt.OnMaintenance, TemporaryMarketError, "exchange_unavailable"),
        (ccxt.DDoSProtection, RateLimitedError, "rate_limited"),
        (ccxt.RateLimitExceeded, RateLimitedError, "rate_limited"),
        (ccxt.BadSymbol, PermanentMarketError, "exchange_rejected"),
        (ccxt.BadRequest, PermanentMarketError, "exchange_rejected"),
        (ccxt.AuthenticationError, PermanentMarketError, "exchange_rejected"),
        (ccxt.PermissionDenied, PermanentMarketError, "exchange_rejected"),
        (ccxt.ExchangeError, PermanentMarketError, "exchange_rejected"),
        (ccxt.NotSupported, PermanentMarketError, "exchange_rejected"),
        (ccxt.BadResponse, TemporaryMarketError, "exchange_unavailable"),
        (TimeoutError, TemporaryMarketError, "exchange_unavailable"),
    ],
)
def test_ccxt_errors_map_to_the_project_hierarchy(
    ccxt_error: type[Exception], expected: type[MarketDataError], reason: str
) -> None:
    translated = translate_ccxt_error(ccxt_error("boom"), "binance fetch_ohlcv BTC/USDT")
    assert type(translated) is expected
    assert translated.reason == reason
    assert "binance fetch_ohlcv BTC/USDT" in str(translated) and ccxt_error.__name__ in str(translated)


def test_temporary_errors_are_retried_with_growing_backoff_then_succeed() -> None:
    exchange = fake()
    exchange.fail_next("fetch_ohlcv", ccxt.RequestTimeout("t1"), ccxt.ExchangeNotAvailable("503"))
    source, sleeps = source_with(exchange)
    candles = asyncio.run(source.fetch_candles("BTC/USDT", "15m", 100, NOW))
    assert len(candles) == 100
    assert exchange.count("fetch_ohlcv") == 3
    assert sleeps.delays == [0.5, 1.0]


def test_retries_are_bounded_and_the_last_temporary_error_surfaces() -> None:
    exchange = fake()
    exchange.fail_always("fetch_ohlcv", ccxt.RequestTimeout("timed out"))
    source, sleeps = source_with(exchange, attempts=3)
    with pytest.raises(TemporaryMarketError, match="RequestTimeout") as error:
        asyncio.run(source.fetch_candles("BTC/USDT", "15m", 100, NOW))
    assert exchange.count("fetch_ohlcv") == 3
    assert len(sleeps.delays) == 2
    assert "gave up after 3 attempt(s)" in error.value.__notes__


@pytest.mark.parametrize(
    "error",
    [
        ccxt.BadSymbol("nope"),
        ccxt.AuthenticationError("key"),
        ccxt.BadRequest("bad"),
        ccxt.ExchangeError("x"),
    ],
)
def test_permanent_errors_are_not_retried(error: Exception) -> None:
    exchange = fake()
    exchange.fail_always("fetch_ohlcv", error)
    source, sleeps = source_with(exchange)
    with pytest.raises(PermanentMarketError):
        asyncio.run(source.fetch_candles("BTC/USDT", "15m", 100, NOW))
    assert exchange.count("fetch_ohlcv") == 1
    assert sleeps.delays == []


def test_rate_limits_are_retried_but_wait_longer() -> None:
    exchange = fake()
    exchange.fail_next("fetch_ticker", ccxt.RateLimitExceeded("429"), symbol="BTC/USDT")
    source, sleeps = source_with(exchange)
    asyncio.run(source.market_info("BTC/USDT", NOW))
    assert sleeps.delays == [2.0]  # 0.5 s base × 4 for a rate limit


def test_every_retry_is_logged_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    exchange = fake()
    exchange.fail_next("fetch_ohlcv", ccxt.RequestTimeout("slow"))
    source, _ = source_with(exchange)
    asyncio.run(source.fetch_candles("BTC/USDT", "15m", 100, NOW))
    retry = next(r for r in caplog.records if r.getMessage() == "market call failed; retrying")
    assert retry.reason == "exchange_unavailable"  # type: ignore[attr-defined]
    assert retry.attempt == 1  # type: ignore[attr-defined]
    assert retry.call == "binance fetch_ohlcv BTC/USDT 15m"  # type: ignore[attr-defined]


@given(
    retry=st.integers(min_value=0, max_value=40),
    jitter=st.floats(min_value=0, max_value=1, exclude_max=True),
    limited=st.booleans(),
)
def test_backoff_never_exceeds_the_cap(retry: int, jitter: float, limited: bool) -> None:
    policy = RetryPolicy()
    error = RateLimitedError("x") if limited else TemporaryMarketError("x")
    assert 0 <= policy.delay_s(retry, error, jitter) <= policy.max_delay_s


def test_call_with_retry_leaves_foreign_exceptions_alone() -> None:
    async def broken() -> None:
        raise KeyError("a bug, not an outage")

    with pytest.raises(KeyError):
        asyncio.run(call_with_retry(broken, what="x", policy=RetryPolicy(), sleep=Sleeps()))


def test_candles_are_closed_only_and_limit_plus_one_is_asked() -> None:
    # Given an exchange at 5 minutes into a candle
    exchange = fake()
    source, _ = source_with(exchange)
    # When 100 candles are fetched
    candles = asyncio.run(source.fetch_candles("BTC/USDT", "15m", 100, NOW))
    # Then 101 were asked for, the forming one was dropped and 100 closed candles remain
    assert exchange.ohlcv_requests[-1]["limit"] == 101
    assert len(candles) == 100
    assert candles.open_time_ms[-1] == CANDLES["BTC/USDT"].open_time_ms[299]
    assert candles.close[-1] == CANDLES["BTC/USDT"].close[299]


def test_malformed_candles_from_the_exchange_are_bad_candles() -> None:
    exchange = fake()
    exchange.mangle("BTC/USDT", lambda rows: [*rows[:-5], [rows[-5][0], None, 1, 1, 1, 1], *rows[-4:]])
    source, _ = source_with(exchange)
    with pytest.raises(BadCandlesError, match="not a number"):
        asyncio.run(source.fetch_candles("BTC/USDT", "15m", 100, NOW))


def test_out_of_order_candles_from_the_exchange_are_bad_candles() -> None:
    exchange = fake()
    exchange.mangle("BTC/USDT", lambda rows: list(reversed(rows)))
    source, _ = source_with(exchange)
    with pytest.raises(BadCandlesError, match="out of order"):
        asyncio.run(source.fetch_candles("BTC/USDT", "15m", 100, NOW))


def test_a_frozen_feed_is_stale() -> None:
    exchange = fake()
    exchange.freeze("ETH/USDT", NOW - timedelta(hours=2))
    source, _ = source_with(exchange)
    with pytest.raises(StaleFeedError):
        asyncio.run(source.fetch_candles("ETH/USDT", "15m", 100, NOW))


def test_a_short_answer_gives_fewer_candles_not_an_error() -> None:
    exchange = fake(max_limit=50)
    source, _ = source_with(exchange)
    assert len(asyncio.run(source.fetch_candles("BTC/USDT", "15m", 100, NOW))) == 49


@pytest.mark.parametrize(
    ("mode", "precision", "expected"),
    [
        (ccxt.TICK_SIZE, {"amount": 0.00001, "price": 0.01}, (0.00001, 0.01)),
        (ccxt.DECIMAL_PLACES, {"amount": 5, "price": 2}, (0.00001, 0.01)),
        (ccxt.SIGNIFICANT_DIGITS, {"amount": 5, "price": 2}, (None, None)),
        (ccxt.TICK_SIZE, {"amount": None, "price": None}, (0.001, 0.1)),
    ],
)
def test_steps_follow_the_precision_mode(mode: int, precision: dict[str, float], expected: tuple) -> None:
    market = {"precision": precision, "limits": {"amount": {"min": 0.001}, "price": {"min": 0.1}}}
    amount_step, price_step = steps_from_market(market, mode)
    assert amount_step == pytest.approx(expected[0]) if expected[0] else amount_step is None
    assert price_step == pytest.approx(expected[1]) if expected[1] else price_step is None


@pytest.mark.parametrize("mode", [ccxt.TICK_SIZE, ccxt.DECIMAL_PLACES])
def test_market_info_has_steps_and_24h_quote_volume(mode: int) -> None:
    exchange = fake(precision_mode=mode, steps={"BTC/USDT": (0.00001, 0.01)})
    source, _ = source_with(exchange)
    info = asyncio.run(source.market_info("BTC/USDT", NOW))
    assert info.amount_step == pytest.approx(0.00001)
    assert info.price_step == pytest.approx(0.01)
    day = CANDLES["BTC/USDT"].slice(
        204, 300
    )  # the 96 candles closed in the last 24h (+ ⅓ of the forming one)
    assert info.quote_volume_24h == pytest.approx(float((day.close * day.volume).sum()), rel=0.01)


def test_an_unknown_exchange_id_names_the_setting() -> None:
    with pytest.raises(SettingsError, match=r"^EXCHANGE_ID: 'notanexchange'"):
        CcxtSource(Settings(exchange_id="notanexchange"))


def test_a_real_ccxt_exchange_is_built_without_touching_the_network() -> None:
    source = CcxtSource(Settings(exchange_id="kraken"))
    assert source.exchange_id == "kraken"


def test_an_unknown_market_names_the_setting_and_the_symbol() -> None:
    source, _ = source_with(fake(), settings=Settings(markets=("BTC/USDT", "DOGE/USDT")))
    with pytest.raises(SettingsError, match=r"^MARKETS: DOGE/USDT not a market on binance"):
        asyncio.run(source.check_settings())


def test_known_markets_pass_the_startup_check() -> None:
    source, _ = source_with(fake())
    asyncio.run(source.check_settings())


def test_an_unsupported_timeframe_names_the_setting() -> None:
    with pytest.raises(SettingsError, match=r"^TIMEFRAME: '15m' is not offered by binance"):
        CcxtSource(SETTINGS, exchange=fake(timeframes={"1h": "60", "1d": "1D"}))


def test_an_exchange_without_candles_is_refused() -> None:
    exchange = fake()
    exchange.has["fetchOHLCV"] = False
    with pytest.raises(SettingsError, match=r"^TIMEFRAME: binance serves no OHLCV"):
        CcxtSource(SETTINGS, exchange=exchange)


def test_a_symbol_not_listed_is_a_permanent_error_at_fetch_time() -> None:
    source, sleeps = source_with(fake())
    with pytest.raises(PermanentMarketError, match="BadSymbol"):
        asyncio.run(source.fetch_candles("DOGE/USDT", "15m", 100, NOW))
    assert sleeps.delays == []


@pytest.mark.parametrize(("exchange_id", "algorithm"), [("binance", "rollingWindow"), ("kraken", "leakyBucket")])
def test_a_per_minute_weight_exchange_gets_a_rolling_window_limiter(exchange_id: str, algorithm: str) -> None:
    # Given Binance's 6,000 weight per minute, ccxt's leaky bucket would space every request 20 ms apart
    source = CcxtSource(Settings(exchange_id=exchange_id, markets=("BTC/USDT",), timeframe="15m"))
    # Then a tick's burst passes within the same per-minute budget; other exchanges keep ccxt's default
    bucket = source._exchange.tokenBucket
    assert bucket["algorithm"] == algorithm
    if algorithm == "rollingWindow":
        assert bucket["windowSize"] / bucket["rateLimit"] == 1200  # cost units a minute = 6,000 weight
    asyncio.run(source.close())


def test_ccxts_binance_asks_a_spot_batch_of_tickers_in_one_request_listing_the_symbols() -> None:
    # The real ccxt binance class (the version installed), its HTTP layer replaced: what would go on the wire
    source = CcxtSource(Settings(exchange_id="binance", markets=("BTC/USDT", "ETH/USDT"), timeframe="15m"))
    exchange = source._exchange
    sent: list[str] = []
    costs: list[float] = []

    async def fetch(url: str, method: str = "GET", headers: object = None, body: object = None) -> object:
        sent.append(url)  # Binance's reply: quote volumes as strings
        return [{"symbol": "BTCUSDT", "quoteVolume": "1234.5", "volume": "1", "lastPrice": "100", "closeTime": 1},
                {"symbol": "ETHUSDT", "quoteVolume": "7", "volume": "1", "lastPrice": "10", "closeTime": 1}]

    async def throttle(cost: float | None = None) -> None:
        costs.append(cost or 0.0)

    def market(base: str) -> dict[str, object]:
        return {"id": f"{base}USDT", "symbol": f"{base}/USDT", "base": base, "quote": "USDT", "baseId": base,
                "quoteId": "USDT", "type": "spot", "spot": True, "margin": False, "swap": False, "future": False,
                "option": False, "contract": False, "active": True, "precision": {"amount": 0.001, "price": 0.01},
                "limits": {}, "info": {}}

    exchange.fetch, exchange.throttle = fetch, throttle
    exchange.set_markets([market("BTC"), market("ETH")])
    infos = asyncio.run(source.market_infos(["BTC/USDT", "ETH/USDT"], NOW))
    asyncio.run(source.close())
    assert sent == ["https://api.binance.com/api/v3/ticker/24hr?symbols=%5B%22BTCUSDT%22%2C%22ETHUSDT%22%5D"]
    assert {s: i.quote_volume_24h for s, i in infos.items()} == {"BTC/USDT": 1234.5, "ETH/USDT": 7.0}  # type: ignore[union-attr]
    # ccxt's own limiter charges it what Binance weighs it (2 weight: 0.4 units), not ccxt 4.5's no-symbol cost
    # (16 units, 80 weight), which the plain class charges
    assert costs == [0.4]
    plain = ccxt.async_support.binance()
    config = plain.describe()["api"]["public"]["get"]["ticker/24hr"]
    for count, weight in ((1, 2), (20, 2), (21, 40), (100, 40), (101, 80)):
        params = {"symbols": json.dumps([f"S{i}USDT" for i in range(count)])}
        assert exchange.calculate_rate_limiter_cost(["public"], "GET", "ticker/24hr", params, config) == weight * 0.2
        assert plain.calculate_rate_limiter_cost(["public"], "GET", "ticker/24hr", params, config) == 16
    assert exchange.calculate_rate_limiter_cost(["public"], "GET", "ticker/24hr", {}, config) == 16  # every ticker
    assert exchange.calculate_rate_limiter_cost(["public"], "GET", "ticker/24hr", {"symbol": "BTCUSDT"}, config) == 0.4
    asyncio.run(plain.close())


def test_a_non_binance_exchange_asks_every_ticker_alone() -> None:
    fake = FakeExchange(CANDLES, now=NOW, exchange_id="kraken")
    source = CcxtSource(Settings(exchange_id="kraken", markets=SYMBOLS, timeframe="15m"), exchange=fake)
    assert asyncio.run(source.market_infos(SYMBOLS, NOW)) == {}  # fetch_markets then asks market_info
    assert fake.count("fetch_tickers") == 0


def test_ccxts_binance_asks_a_spot_markets_klines_as_fetch_ohlcv_does_and_decodes_them_in_one_conversion() -> None:
    # The real ccxt binance class, its HTTP layer replaced: the same reply served to our klines path (spot) and to
    # ccxt's fetch_ohlcv (a perpetual, which stays on fetch_ohlcv)
    from urllib.parse import parse_qs, urlsplit

    source = CcxtSource(Settings(exchange_id="binance", markets=("BTC/USDT", "BTC/USDT:USDT"), timeframe="15m"))
    exchange = source._exchange
    sent: list[tuple[str, dict[str, list[str]]]] = []
    costs: list[float] = []
    closed = [[int(t), f"{o:.2f}", f"{h:.2f}", f"{lo:.2f}", f"{c:.2f}", f"{v:.8f}", int(t) + 899_999, "1.0", 5, "0.5",
               "0.5", "0"] for t, o, h, lo, c, v in zip(CANDLES["BTC/USDT"].open_time_ms[200:300],
                                                        *(getattr(CANDLES["BTC/USDT"], name)[200:300]
                                                          for name in ("open", "high", "low", "close", "volume")),
                                                        strict=True)]
    reply = [*closed, [int(CANDLES["BTC/USDT"].open_time_ms[300]), "1.0", "1.0", "1.0", "1.0", "0.1", 0, "0", 1,
                       "0", "0", "0"]]  # the forming candle

    async def fetch(url: str, method: str = "GET", headers: object = None, body: object = None) -> object:
        parts = urlsplit(url)
        sent.append((f"{parts.netloc}{parts.path}", parse_qs(parts.query)))
        return json.loads(json.dumps(reply))  # as ccxt's fetch decodes the body

    async def throttle(cost: float | None = None) -> None:
        costs.append(cost or 0.0)

    def market(symbol: str, spot: bool) -> dict[str, object]:
        return {"id": "BTCUSDT", "symbol": symbol, "base": "BTC", "quote": "USDT", "settle": None if spot else "USDT",
                "baseId": "BTC", "quoteId": "USDT", "type": "spot" if spot else "swap", "spot": spot, "margin": False,
                "swap": not spot, "future": False, "option": False, "contract": not spot, "linear": None if spot
                else True, "inverse": None if spot else False, "active": True,
                "precision": {"amount": 0.001, "price": 0.01}, "limits": {}, "info": {}}

    decoded: list[str] = []  # the markets whose reply ccxt decoded cell by cell (parse_ohlcvs)
    parse_ohlcvs = exchange.parse_ohlcvs

    def counted_parse(ohlcvs: object, market: dict[str, object], *args: object) -> object:
        decoded.append(str(market["symbol"]))
        return parse_ohlcvs(ohlcvs, market, *args)

    exchange.fetch, exchange.throttle, exchange.parse_ohlcvs = fetch, throttle, counted_parse
    exchange.set_markets([market("BTC/USDT", True), market("BTC/USDT:USDT", False)])
    spot = asyncio.run(source.fetch_candles("BTC/USDT", "15m", 100, NOW))
    assert decoded == []  # the spot market's reply went to candles_from_klines, not through ccxt's decoding
    rows = asyncio.run(exchange.fetch_ohlcv("BTC/USDT", "15m", limit=101))  # ccxt's own way, for comparison
    perpetual = asyncio.run(source.fetch_candles("BTC/USDT:USDT", "15m", 100, NOW))
    asyncio.run(source.close())
    # Then the spot market made the request fetch_ohlcv makes for it (GET /api/v3/klines, market id, interval, the
    # limit with the forming candle), charged by ccxt's limiter as fetch_ohlcv's; the perpetual went through
    # fetch_ohlcv (USD-M futures: fapi)
    klines = ("api.binance.com/api/v3/klines", {"symbol": ["BTCUSDT"], "interval": ["15m"], "limit": ["101"]})
    assert sent == [klines, klines,
                    ("fapi.binance.com/fapi/v1/klines", {"symbol": ["BTCUSDT"], "interval": ["15m"], "limit": ["101"]})]
    assert len(costs) == 3 and costs[0] == costs[1]
    assert decoded == ["BTC/USDT", "BTC/USDT:USDT"]
    # and the same 100 closed candles as ccxt's decoding gives, bit for bit, in one numpy conversion
    ccxt_way = closed_only(candles_from_rows("BTC/USDT", "15m", rows), 900, NOW)
    assert len(spot) == 100 == len(ccxt_way) and spot.open_time_ms[-1] == CANDLES["BTC/USDT"].open_time_ms[299]
    for name in ("open_time_ms", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(spot, name), getattr(ccxt_way, name))
        np.testing.assert_array_equal(getattr(spot, name), getattr(perpetual, name))


def test_a_shards_markets_share_one_load_markets_and_its_failure() -> None:
    # Given 2 markets on a cold exchange (markets not loaded) whose first load_markets fails
    exchange = fake()
    exchange.fail_next("load_markets", ccxt.ExchangeNotAvailable("binance 503"))
    source, _ = source_with(exchange, attempts=1)

    async def both() -> list[object]:
        return await asyncio.gather(*(source.fetch_candles(s, "15m", 100, NOW) for s in SYMBOLS),
                                    return_exceptions=True)

    # When both fetch their candles at once: one request, its failure each market's
    first = asyncio.run(both())
    assert exchange.count("load_markets") == 1
    assert all(isinstance(outcome, TemporaryMarketError) for outcome in first)
    # Then the next tick loads them again (a failure is not kept), once, and both markets get their candles
    second = asyncio.run(both())
    assert exchange.count("load_markets") == 2
    assert [len(candles) for candles in second] == [100, 100]  # type: ignore[arg-type]


def test_the_fakes_klines_are_its_fetch_ohlcv_rows_as_binances_reply_decodes() -> None:
    # Given the fake at 5 minutes into a forming candle
    exchange = fake()
    rows = asyncio.run(exchange.fetch_ohlcv("BTC/USDT", "15m", limit=301))
    reply = asyncio.run(exchange.publicGetKlines({"symbol": "BTCUSDT", "interval": "15m", "limit": 301}))
    # Then its klines reply is Binance's as JSON decodes it (times as integers, decimal strings, 12 fields) of the
    # same candles, the forming one included, bit for bit
    assert all(len(row) == 12 and type(row[0]) is int and type(row[4]) is str for row in reply)
    klines, ccxt_rows = candles_from_klines("BTC/USDT", "15m", reply), candles_from_rows("BTC/USDT", "15m", rows)
    assert len(klines) == 301 and klines.volume[-1] < CANDLES["BTC/USDT"].volume[300]  # forming: part of it
    for name in ("open_time_ms", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(klines, name), getattr(ccxt_rows, name))
    # and a fake that wrote its cells ahead (prepare_klines, before a benchmark's clock) serves the same reply
    ahead = fake()
    ahead.prepare_klines([CANDLES["BTC/USDT"]])
    written = len(ahead._kline_cells)
    assert asyncio.run(ahead.publicGetKlines({"symbol": "BTCUSDT", "interval": "15m", "limit": 301})) == reply
    assert written == 400 and len(ahead._kline_cells) == 400  # the closed candles' cells were all there
    # and it is counted, failed and refused as fetch_ohlcv (for a spot market ccxt's fetch_ohlcv is this request)
    exchange.fail_next("fetch_ohlcv", ccxt.RequestTimeout("timed out"), symbol="BTC/USDT")
    with pytest.raises(ccxt.RequestTimeout):
        asyncio.run(exchange.publicGetKlines({"symbol": "BTCUSDT", "interval": "15m", "limit": 10}))
    with pytest.raises(ccxt.BadSymbol, match="-1121"):
        asyncio.run(exchange.publicGetKlines({"symbol": "NOPEUSDT", "interval": "15m", "limit": 10}))
    assert exchange.count("fetch_ohlcv", "BTC/USDT") == 3


def test_a_timeframe_the_exchange_does_not_offer_is_its_refusal_not_a_key_error() -> None:
    # ccxt's fetch_ohlcv sends an unknown timeframe as given and Binance refuses it (-1120): the klines path too
    source, _ = source_with(fake())
    with pytest.raises(PermanentMarketError, match="Invalid interval"):
        asyncio.run(source.fetch_candles("BTC/USDT", "7m", 100, NOW))
