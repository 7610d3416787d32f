"""The replay serves the bundled real candles exactly as an exchange would have at a chosen moment."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from traderai.contracts import SettingsError
from traderai.market import PermanentMarketError, StaleFeedError
from traderai.market.csv import bundled_candles_path, load_candles_csv
from traderai.market.exchange import CcxtSource, RetryPolicy
from traderai.market.replay import ReplayRangeError, ReplaySource, default_steps
from traderai.settings import Settings
from traderai.testing.fake_exchange import FakeExchange, synthetic_candles

SETTINGS = Settings(markets=("BTC/USDT", "ETH/USDT"), market_source="replay")
BTC = load_candles_csv(bundled_candles_path("BTC/USDT"), "BTC/USDT")
FIRST_OPEN = datetime(2024, 11, 1, tzinfo=UTC)
LAST_CLOSE = datetime(2025, 4, 30, tzinfo=UTC)  # the last bundled candle opens 2025-04-29 23:45
MIDDAY = datetime(2025, 1, 15, 12, 7, 30, tzinfo=UTC)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def fetch(source: ReplaySource, now: datetime, limit: int = 300, symbol: str = "BTC/USDT"):
    return asyncio.run(source.fetch_candles(symbol, "15m", limit, now))


def test_serves_the_last_candles_closed_by_now() -> None:
    # Given 12:07:30, when the 12:00 candle is still forming
    candles = fetch(ReplaySource(SETTINGS), MIDDAY, limit=300)
    # Then the newest served candle is the one that opened 11:45, and there are 300 of them
    assert len(candles) == 300
    assert candles.open_time_ms[-1] == ms(datetime(2025, 1, 15, 11, 45, tzinfo=UTC))
    assert np.all(np.diff(candles.open_time_ms) == 900_000)


def test_a_candle_is_served_from_the_instant_it_closes() -> None:
    source = ReplaySource(SETTINGS)
    at_close = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
    assert fetch(source, at_close).open_time_ms[-1] == ms(at_close - timedelta(minutes=15))
    assert fetch(source, at_close - timedelta(milliseconds=1)).open_time_ms[-1] == ms(
        at_close - timedelta(minutes=30)
    )


def test_the_clock_moves_the_window() -> None:
    source = ReplaySource(SETTINGS)
    before, after = fetch(source, MIDDAY), fetch(source, MIDDAY + timedelta(hours=1))
    assert after.open_time_ms[-1] - before.open_time_ms[-1] == 4 * 900_000


def test_near_the_start_fewer_candles_are_served() -> None:
    assert len(fetch(ReplaySource(SETTINGS), FIRST_OPEN + timedelta(hours=2))) == 8


def test_before_the_data_starts_is_a_clear_error() -> None:
    with pytest.raises(ReplayRangeError, match="before the recorded data's first closed candle") as error:
        fetch(ReplaySource(SETTINGS), FIRST_OPEN + timedelta(minutes=14))
    assert error.value.reason == "replay_out_of_range"


def test_past_the_end_the_feed_is_honestly_stale() -> None:
    source = ReplaySource(SETTINGS)
    assert len(fetch(source, LAST_CLOSE + timedelta(minutes=30))) == 300
    with pytest.raises(StaleFeedError):
        fetch(source, LAST_CLOSE + timedelta(minutes=30, seconds=1))


def test_only_the_recorded_timeframe_is_served() -> None:
    with pytest.raises(PermanentMarketError, match="15m"):
        asyncio.run(ReplaySource(SETTINGS).fetch_candles("BTC/USDT", "1h", 100, MIDDAY))


def test_quote_volume_is_the_last_24h_of_close_times_volume() -> None:
    info = asyncio.run(ReplaySource(SETTINGS).market_info("BTC/USDT", MIDDAY))
    last = int(np.searchsorted(BTC.open_time_ms, ms(datetime(2025, 1, 15, 11, 45, tzinfo=UTC)))) + 1
    day = BTC.slice(last - 96, last)
    assert info.quote_volume_24h == pytest.approx(float((day.close * day.volume).sum()))
    assert (info.amount_step, info.price_step) == (0.00001, 0.01)


def test_unknown_bases_get_steps_from_their_price() -> None:
    amount_step, price_step = default_steps("PEPE/USDT", 0.0000123)
    assert price_step == pytest.approx(1e-9)  # 5 significant digits of 0.000012300
    assert amount_step == pytest.approx(1000.0)


def test_preloaded_candles_serve_any_symbol() -> None:
    candles = synthetic_candles("XYZ/USDT", start=FIRST_OPEN, count=200, price=2.5)
    source = ReplaySource(Settings(markets=("XYZ/USDT",)), candles={"XYZ/USDT": candles})
    asyncio.run(source.check_settings())
    info = asyncio.run(source.market_info("XYZ/USDT", FIRST_OPEN + timedelta(hours=30)))
    assert info.price_step == pytest.approx(0.0001)


def test_a_market_without_data_names_the_setting() -> None:
    source = ReplaySource(Settings(markets=("BTC/USDT", "DOGE/USDT")))
    with pytest.raises(SettingsError, match=r"^MARKETS: no recorded candles for DOGE/USDT"):
        asyncio.run(source.check_settings())


def test_another_timeframe_names_the_setting() -> None:
    with pytest.raises(SettingsError, match=r"^TIMEFRAME: "):
        asyncio.run(ReplaySource(Settings(timeframe="1h")).check_settings())


def test_replay_and_a_live_exchange_agree_at_the_same_moment() -> None:
    # Given the same recorded candles behind the replay and behind a fake live exchange
    fake = FakeExchange({"BTC/USDT": BTC}, now=MIDDAY)
    live = CcxtSource(SETTINGS, exchange=fake, retry=RetryPolicy(attempts=1))
    # When both are asked at the same moment
    replayed = fetch(ReplaySource(SETTINGS), MIDDAY, limit=200)
    fetched = asyncio.run(live.fetch_candles("BTC/USDT", "15m", 200, MIDDAY))
    # Then they serve the very same closed candles
    for name in ("open_time_ms", "open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(replayed, name), getattr(fetched, name)), name
