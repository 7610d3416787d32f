"""All markets fetched at once, each on its own: latency overlaps, one failure never blocks the others."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import ccxt
import pytest

from traderai.contracts import SettingsError
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

    async def tick() -> tuple[float, dict, dict]:
        await source.check_settings()
        started = time.perf_counter()
        snapshots, failures = await fetch_markets(source, SYMBOLS, "15m", 200, NOW)
        return time.perf_counter() - started, snapshots, failures

    # When all are fetched
    elapsed, snapshots, failures = asyncio.run(tick())
    # Then they overlap: about one latency, not 8 × 2 of them
    assert failures == {}
    assert set(snapshots) == set(SYMBOLS)
    assert 0.1 <= elapsed < 0.5  # sequential would take 8 × 2 × 100 ms
    assert fake.peak_in_flight == 16


def test_the_semaphore_bounds_markets_in_flight() -> None:
    fake = FakeExchange(CANDLES, now=NOW, latency_s=0.01)
    snapshots, _ = asyncio.run(fetch_markets(ccxt_source(fake), SYMBOLS, "15m", 200, NOW, concurrency=2))
    assert len(snapshots) == 8
    assert fake.peak_in_flight <= 4  # 2 markets × (candles + ticker)


def test_one_market_failing_leaves_the_others_alone(caplog: pytest.LogCaptureFixture) -> None:
    # Given one delisted market, one whose requests keep timing out and one returning garbage
    fake = FakeExchange(CANDLES, now=NOW, latency_s=0.01)
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


def test_a_snapshot_pairs_candles_with_market_info() -> None:
    fake = FakeExchange(CANDLES, now=NOW)
    snapshots, _ = asyncio.run(fetch_markets(ccxt_source(fake), SYMBOLS[:1], "15m", 200, NOW))
    candles, info = snapshots["C00/USDT"]
    assert len(candles) == 200 and info.symbol == "C00/USDT" and info.quote_volume_24h


def test_an_unexpected_exception_is_contained_to_its_market() -> None:
    fake = FakeExchange(CANDLES, now=NOW)
    fake.fail_always("fetch_ticker", KeyError("a parsing bug"), symbol="C05/USDT")
    snapshots, failures = asyncio.run(fetch_markets(ccxt_source(fake), SYMBOLS, "15m", 200, NOW))
    assert len(snapshots) == 7
    assert isinstance(failures["C05/USDT"], UnexpectedMarketError)
    assert failures["C05/USDT"].reason == "unexpected_error"


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
