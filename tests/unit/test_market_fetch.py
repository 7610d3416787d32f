"""All markets fetched at once, each on its own: latency overlaps, one failure never blocks the others."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import ccxt
import pytest

from traderai.contracts import SettingsError
from traderai.core.shards import shard_weight
from traderai.market import PermanentMarketError, TemporaryMarketError
from traderai.market.exchange import CcxtSource, RetryPolicy
from traderai.market.fetch import UnexpectedMarketError, fetch_markets, make_source
from traderai.market.replay import ReplaySource
from traderai.settings import Settings
from traderai.testing.fake_exchange import FakeExchange, synthetic_candles

START = datetime(2025, 1, 1, tzinfo=UTC)
SYMBOLS = tuple(f"C{i:02d}/USDT" for i in range(8))
CANDLES = {s: synthetic_candles(s, start=START, count=400, seed=i) for i, s in enumerate(SYMBOLS)}
NOW = START + timedelta(minutes=15 * 300 + 5)


async def no_sleep(_: float) -> None:
    return None


def ccxt_source(fake: FakeExchange, attempts: int = 2) -> CcxtSource:
    settings = Settings(markets=SYMBOLS)
    return CcxtSource(settings, exchange=fake, retry=RetryPolicy(attempts=attempts), sleep=no_sleep)


def test_markets_are_fetched_concurrently() -> None:
    # Given 8 markets on an exchange answering every call in 100 ms, markets already loaded
    fake = FakeExchange(CANDLES, now=NOW, latency_s=0.1)
    source = ccxt_source(fake)

    async def tick() -> tuple[dict, dict]:
        await source.check_settings()
        return await fetch_markets(source, SYMBOLS, "15m", 200, NOW)

    # When all are fetched
    snapshots, failures = asyncio.run(tick())
    # Then they overlap: every request was in flight at once (the fake counts them; no clock is read, so a
    # loaded machine cannot fail this), where one after another would have had one in flight at a time
    assert failures == {}
    assert set(snapshots) == set(SYMBOLS)
    assert fake.peak_in_flight == 9  # 8 candle requests and the one request for the 8 tickers
    assert fake.ticker_requests == [list(SYMBOLS)] and fake.count("fetch_ticker") == 0


def test_the_semaphore_bounds_markets_in_flight() -> None:
    fake = FakeExchange(CANDLES, now=NOW, latency_s=0.01)
    snapshots, _ = asyncio.run(fetch_markets(ccxt_source(fake), SYMBOLS, "15m", 200, NOW, concurrency=2))
    assert len(snapshots) == 8
    assert fake.peak_in_flight <= 3  # 2 markets' candles + the one ticker request beside them
    fake = FakeExchange(CANDLES, now=NOW, latency_s=0.01)
    fake.has["fetchTickers"] = False
    snapshots, _ = asyncio.run(fetch_markets(ccxt_source(fake), SYMBOLS, "15m", 200, NOW, concurrency=2))
    assert len(snapshots) == 8
    assert fake.peak_in_flight <= 4  # 2 markets × (candles + ticker)


def test_one_market_failing_leaves_the_others_alone(caplog: pytest.LogCaptureFixture) -> None:
    # Given one delisted market, one whose requests keep timing out and one returning garbage, on an exchange
    # that serves no batched tickers (ccxt's `has["fetchTickers"]` false): each market's ticker asked alone
    fake = FakeExchange(CANDLES, now=NOW, latency_s=0.01)
    fake.has["fetchTickers"] = False
    fake.fail_always(
        "fetch_ohlcv", ccxt.BadSymbol("binance does not have market symbol C01/USDT"), symbol="C01/USDT"
    )
    fake.fail_always("fetch_ticker", ccxt.RequestTimeout("timed out"), symbol="C02/USDT")
    fake.mangle("C03/USDT", lambda rows: [*rows[:-3], rows[-3][:4], *rows[-2:]])
    # When all are fetched
    snapshots, failures = asyncio.run(fetch_markets(ccxt_source(fake), SYMBOLS, "15m", 200, NOW))
    # Then the healthy ones arrive, each sick one is reported with its own reason and logged
    assert set(snapshots) == set(SYMBOLS) - {"C01/USDT", "C02/USDT", "C03/USDT"}
    assert isinstance(failures["C01/USDT"], PermanentMarketError)
    assert isinstance(failures["C02/USDT"], TemporaryMarketError)
    assert {s: f.reason for s, f in failures.items()} == {
        "C01/USDT": "exchange_rejected",
        "C02/USDT": "exchange_unavailable",
        "C03/USDT": "bad_candles",
    }
    logged = {r.symbol: r.reason for r in caplog.records if r.getMessage() == "market data failed"}  # type: ignore[attr-defined]
    assert logged == {s: f.reason for s, f in failures.items()}
    assert fake.count("fetch_ticker", "C02/USDT") == 2  # retried once, then given up
    assert fake.count("fetch_tickers") == 0 and fake.count("fetch_ticker") == 9


def test_a_snapshot_pairs_candles_with_market_info() -> None:
    fake = FakeExchange(CANDLES, now=NOW)
    snapshots, _ = asyncio.run(fetch_markets(ccxt_source(fake), SYMBOLS[:1], "15m", 200, NOW))
    candles, info = snapshots["C00/USDT"]
    assert len(candles) == 200 and info.symbol == "C00/USDT" and info.quote_volume_24h


def test_an_unexpected_exception_is_contained_to_its_market() -> None:
    fake = FakeExchange(CANDLES, now=NOW)
    fake.has["fetchTickers"] = False
    fake.fail_always("fetch_ticker", KeyError("a parsing bug"), symbol="C05/USDT")
    snapshots, failures = asyncio.run(fetch_markets(ccxt_source(fake), SYMBOLS, "15m", 200, NOW))
    assert len(snapshots) == 7
    assert isinstance(failures["C05/USDT"], UnexpectedMarketError)
    assert failures["C05/USDT"].reason == "unexpected_error"


# -- batched tickers: a shard's spot tickers in requests of 20 (Binance weighs 1-20 symbols 2) ----------------

MANY = tuple(f"M{i:02d}/USDT" for i in range(45))
MANY_CANDLES = {s: synthetic_candles(s, start=START, count=400, seed=i) for i, s in enumerate(MANY)}


def test_a_shards_tickers_are_asked_in_batches_of_20_and_weighed_in_its_budget() -> None:
    # Given 45 markets and the shard's share of the exchange budget
    fake = FakeExchange(MANY_CANDLES, now=NOW, latency_s=0.01)
    source = ccxt_source(fake)
    source.share_budget(480)
    # When the shard fetches them
    snapshots, failures = asyncio.run(fetch_markets(source, MANY, "15m", 200, NOW))
    # Then every market arrives, its tickers from 3 requests (20, 20, 5 symbols), none asked alone
    assert failures == {} and set(snapshots) == set(MANY)
    assert fake.ticker_requests == [list(MANY[0:20]), list(MANY[20:40]), list(MANY[40:45])]
    assert fake.count("fetch_ticker") == 0 and fake.count("fetch_ohlcv") == 45
    # the same facts a ticker asked alone gives
    alone = FakeExchange(MANY_CANDLES, now=NOW)
    for symbol in (MANY[0], MANY[44]):
        assert snapshots[symbol].info == asyncio.run(ccxt_source(alone).market_info(symbol, NOW))
    # and the shard's budget counted what was sent: load_markets (20, a cold start's), then 45 klines x 2 and
    # 3 ticker requests x 2, as the plan counts the shard
    assert shard_weight(MANY) == 96
    assert source._budget is not None and source._budget.used(time.monotonic()) == 20 + 96


def test_a_sandboxs_next_shard_starts_with_its_own_empty_window() -> None:
    """A tick with more shards than run at once: a sandbox's second shard of the tick follows its first within
    seconds. Counted against its own share alone, it sends at once; in the first shard's window it waited for
    that shard's requests to leave (up to a minute)."""
    share = shard_weight(MANY)  # a share the shard's tick fills exactly
    fake = FakeExchange(MANY_CANDLES, now=NOW)
    source = ccxt_source(fake)
    source.share_budget(share + 20)  # and load_markets, a cold start's
    asyncio.run(fetch_markets(source, MANY, "15m", 200, NOW))
    assert source._budget is not None and source._budget.used(time.monotonic()) == share + 20  # the window is full
    source.share_budget(share + 20)  # the next shard, the same share
    assert source._budget.used(time.monotonic()) == 0 and source._budget.delay(share, time.monotonic()) == 0
    started = time.monotonic()
    snapshots, failures = asyncio.run(fetch_markets(source, MANY, "15m", 200, NOW))
    assert failures == {} and len(snapshots) == len(MANY) and time.monotonic() - started < 5


def test_a_market_missing_from_the_batch_or_with_a_bad_quote_volume_fails_alone(
        caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeExchange(CANDLES, now=NOW)
    fake.mangle_ticker("C01/USDT", lambda ticker: None)  # left out of the reply
    fake.mangle_ticker("C02/USDT", lambda ticker: {**ticker, "quoteVolume": float("nan")})
    fake.mangle_ticker("C03/USDT", lambda ticker: {**ticker, "quoteVolume": -5.0})
    fake.mangle_ticker("C04/USDT", lambda ticker: {**ticker, "quoteVolume": "lots"})
    fake.mangle_ticker("C05/USDT", lambda ticker: ["not", "a", "ticker"])
    fake.mangle_ticker("C06/USDT", lambda ticker: {**ticker, "quoteVolume": None, "baseVolume": None})
    snapshots, failures = asyncio.run(fetch_markets(ccxt_source(fake), SYMBOLS, "15m", 200, NOW))
    assert {s: f.reason for s, f in failures.items()} == {
        "C01/USDT": "ticker_missing", "C02/USDT": "bad_ticker", "C03/USDT": "bad_ticker",
        "C04/USDT": "bad_ticker", "C05/USDT": "bad_ticker"}
    assert "C01/USDT: not in the binance fetch_tickers reply for 8 symbols" in str(failures["C01/USDT"])
    assert "nan" in str(failures["C02/USDT"]) and "-5.0" in str(failures["C03/USDT"])
    assert set(snapshots) == {"C00/USDT", "C06/USDT", "C07/USDT"}
    assert snapshots["C06/USDT"].info.quote_volume_24h is None  # no volume given: the liquidity filter decides
    assert fake.count("fetch_tickers") == 1 and fake.count("fetch_ticker") == 0  # nothing asked twice
    logged = {r.symbol: r.reason for r in caplog.records if r.getMessage() == "market data failed"}  # type: ignore[attr-defined]
    assert logged == {s: f.reason for s, f in failures.items()}


@pytest.mark.parametrize(("error", "reason"), [(ccxt.RequestTimeout("timed out"), "exchange_unavailable"),
                                               (ccxt.RateLimitExceeded("429"), "rate_limited")])
def test_a_batch_failing_after_its_retries_fails_each_of_its_markets_with_the_reason(
        error: Exception, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeExchange(CANDLES, now=NOW)
    fake.fail_always("fetch_tickers", error)
    snapshots, failures = asyncio.run(fetch_markets(ccxt_source(fake, attempts=3), SYMBOLS, "15m", 200, NOW))
    assert snapshots == {} and {s: f.reason for s, f in failures.items()} == dict.fromkeys(SYMBOLS, reason)
    assert fake.count("fetch_tickers") == 3 and fake.count("fetch_ticker") == 0  # retried, then given up
    assert all(str(failures[s]).startswith(f"{s}: binance fetch_tickers 8 symbols") for s in SYMBOLS)
    logged = {r.symbol: r.reason for r in caplog.records if r.getMessage() == "market data failed"}  # type: ignore[attr-defined]
    assert logged == dict.fromkeys(SYMBOLS, reason)  # never silent: each market logged with its reason


def test_a_batch_failing_once_is_retried_and_every_market_arrives() -> None:
    fake = FakeExchange(CANDLES, now=NOW)
    fake.fail_next("fetch_tickers", ccxt.RateLimitExceeded("429"))
    snapshots, failures = asyncio.run(fetch_markets(ccxt_source(fake), SYMBOLS, "15m", 200, NOW))
    assert failures == {} and len(snapshots) == 8 and fake.count("fetch_tickers") == 2


def test_a_batch_the_exchange_rejects_is_asked_market_by_market_so_only_the_bad_one_fails() -> None:
    # Binance rejects a whole `symbols` list for one symbol it no longer serves (-1121 Invalid symbol)
    fake = FakeExchange(CANDLES, now=NOW)
    fake.fail_next("fetch_tickers", ccxt.BadSymbol('binance {"code":-1121,"msg":"Invalid symbol."}'))
    fake.fail_always("fetch_ticker", ccxt.BadSymbol("binance does not have market symbol C02/USDT"),
                     symbol="C02/USDT")
    snapshots, failures = asyncio.run(fetch_markets(ccxt_source(fake), SYMBOLS, "15m", 200, NOW))
    assert {s: f.reason for s, f in failures.items()} == {"C02/USDT": "exchange_rejected"}
    assert len(snapshots) == 7 and fake.count("fetch_tickers") == 1 and fake.count("fetch_ticker") == 8


def test_a_bug_in_a_batch_fails_its_markets_as_unexpected_each_reported() -> None:
    fake = FakeExchange(CANDLES, now=NOW)
    fake.fail_always("fetch_tickers", KeyError("a parsing bug"))
    snapshots, failures = asyncio.run(fetch_markets(ccxt_source(fake), SYMBOLS, "15m", 200, NOW))
    assert snapshots == {} and {f.reason for f in failures.values()} == {"unexpected_error"} and len(failures) == 8
    assert all(isinstance(f.__cause__, KeyError) for f in failures.values())


def test_derivative_markets_tickers_are_asked_alone_beside_the_spot_batch() -> None:
    # ccxt's binance asks futures tickers with no symbols list (every ticker of the futures exchange)
    symbols = ("A/USDT", "B/USDT", "C/USDT:USDT", "D/USDT", "E/USDT:USDT")
    fake = FakeExchange({s: synthetic_candles(s, start=START, count=400, seed=i) for i, s in enumerate(symbols)},
                        now=NOW)
    snapshots, failures = asyncio.run(fetch_markets(ccxt_source(fake), symbols, "15m", 200, NOW))
    assert failures == {} and len(snapshots) == 5
    assert fake.ticker_requests == [["A/USDT", "B/USDT", "D/USDT"]]
    assert fake.count("fetch_ticker") == 2 and fake.count("fetch_ticker", "C/USDT:USDT") == 1


def test_markets_failing_to_load_fail_each_market_with_the_reason() -> None:
    fake = FakeExchange(CANDLES, now=NOW)
    fake.fail_always("load_markets", ccxt.ExchangeNotAvailable("maintenance"))
    snapshots, failures = asyncio.run(fetch_markets(ccxt_source(fake), SYMBOLS, "15m", 200, NOW))
    assert snapshots == {} and {s: f.reason for s, f in failures.items()} == dict.fromkeys(
        SYMBOLS, "exchange_unavailable")
    assert fake.count("fetch_tickers") == 0


def test_a_replay_source_works_the_same_way() -> None:
    settings = Settings(markets=("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT"), market_source="replay")
    now = datetime(2025, 2, 1, 9, 3, tzinfo=UTC)
    snapshots, failures = asyncio.run(fetch_markets(make_source(settings), settings.markets, "15m", 300, now))
    assert failures == {} and len(snapshots) == 4


def test_make_source_follows_market_source() -> None:
    assert isinstance(make_source(Settings(market_source="replay")), ReplaySource)
    assert isinstance(make_source(Settings(market_source="ccxt")), CcxtSource)


def test_make_source_refuses_an_unknown_source() -> None:
    with pytest.raises(SettingsError, match=r"^MARKET_SOURCE"):
        make_source(Settings(market_source="carrier-pigeon"))


def test_shards_on_one_ip_within_their_plan_shares_never_draw_a_429() -> None:
    # Given one exchange IP that answers 429 past 388 weight a minute, and 100 markets planned in 5 shards of 20
    from traderai.core.shards import plan_shards

    markets = tuple(f"M{i:03d}/USDT" for i in range(100))
    candles = {s: synthetic_candles(s, start=START, count=300, seed=i) for i, s in enumerate(markets)}
    fake = FakeExchange(candles, now=NOW, latency_s=0.01, weight_per_minute=388)
    plan = plan_shards(markets, 20, 388)
    assert {shard.weight_per_minute for shard in plan} == {62}  # 388 x 0.8 / 5: 20 klines x 2 + 2 + load_markets' 20

    async def tick() -> list[tuple[dict, dict]]:
        sources = []
        for _ in plan:
            source = ccxt_source(fake)
            source.share_budget(62)
            sources.append(source)
        return await asyncio.gather(*(fetch_markets(source, shard.markets, "15m", 200, NOW)
                                      for source, shard in zip(sources, plan, strict=True)))

    # When the shards run at once, each loading the markets (a cold start) and fetching its own
    results = asyncio.run(tick())
    # Then every market arrives, the IP saw what the plan counted, and nothing was refused
    assert all(failures == {} for _, failures in results) and sum(len(s) for s, _ in results) == 100
    loads = fake.count("load_markets")  # each shard's cold start, unless another's already filled the markets
    assert 1 <= loads <= 5 and fake.weight_used == 20 * loads + 5 * 42 <= 310
    assert fake.count("fetch_tickers") == 5 and fake.count("fetch_ticker") == 0
    # and the same IP answers 429 past its minute, as Binance does: every ticker at once weighs 80, and at most
    # one such request fits in what the tick left (388 - 230 at the most)
    with pytest.raises(ccxt.RateLimitExceeded, match="429"):
        asyncio.run(fake.fetch_tickers(None))
        asyncio.run(fake.fetch_tickers(None))
