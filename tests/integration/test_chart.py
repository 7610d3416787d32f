"""GET /signals/{signal_id}/candles through the real ChartFunction handler under moto: a signal played out
by the one outcome rule on the bundled real candles, charted from the replay (and from a ccxt exchange)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from traderai import wiring
from traderai.adapters.signal_store import SignalStore
from traderai.contracts import Signal, Strategy, iso_utc
from traderai.core.outcome import resolve
from traderai.market.csv import load_candles_csv
from traderai.market.replay import bundled_candles_dir, candles_file_name
from traderai.services import chart, track
from traderai.testing.handlers import FakeLambdaContext, load_event, load_handler
from traderai.testing.serving import ServingTables

SIGNAL_ID = "signal_BTC_USDT_0a1b2c3d4e5f"  # the id of events/api_get_signal_candles.json
CANDLE = datetime(2025, 4, 6, 17, 45, tzinfo=UTC)  # the signal candle (its open time)
STEP = timedelta(minutes=15)


def btc_candles() -> Any:
    return load_candles_csv(bundled_candles_dir() / candles_file_name("BTC/USDT"), "BTC/USDT", "15m")


def played_out(side: str, stop_atr: float, now: datetime) -> Signal:
    """A signal on the real candle of CANDLE, with the outcome the tracker's rule gives it by `now`."""
    candles = btc_candles()
    index = int((CANDLE.timestamp() * 1000 - candles.open_time_ms[0]) // (15 * 60 * 1000))
    entry, atr = float(candles.close[index]), 400.0
    direction = 1 if side == "LONG" else -1
    created = CANDLE + STEP + timedelta(seconds=5)
    base = Signal(
        signal_id=SIGNAL_ID, symbol="BTC/USDT", side=side, entry_price=entry,
        tp1_price=round(entry + direction * 1.0 * atr, 2), tp2_price=round(entry + direction * 2.0 * atr, 2),
        tp3_price=round(entry + direction * 3.0 * atr, 2), sl_price=round(entry - direction * stop_atr * atr, 2),
        leverage=20, position_size_usd=1000.0, quantity=0.01, gross_profit_pct=1.0, costs_pct=0.32,
        expected_net_profit_pct=0.68, net_risk_reward_ratio=1.0, confidence=0.7, probability=0.7,
        risk_reward_ratio=1.5, status="ACTIVE", created_at=iso_utc(created),
        expires_at=iso_utc(created + timedelta(hours=24)), model_id="m", batch_id="b", exchange="binance",
        timeframe="15m", atr=atr, candle_time=iso_utc(CANDLE), tp_weights=(1 / 3, 1 / 3, 1 / 3))
    setup = track.setup_of(base, Strategy())
    state = resolve(setup, track.bars_of(candles), as_of_ms=int(now.timestamp() * 1000))
    changes = {k: v for k, v in track.changes_of(base, state, now).items() if v is not None}
    return Signal(**(base.to_dict() | changes))


@pytest.fixture
def call(serving: ServingTables, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., dict[str, Any]]]:
    for name, value in serving.environment("ChartFunction", MarketSource="replay").items():
        monkeypatch.setenv(name, value)
    wiring.clear()
    handler = load_handler("chart").handler

    def invoke(signal_id: str = SIGNAL_ID) -> dict[str, Any]:
        event = load_event("api_get_signal_candles.json")
        event["rawPath"] = event["requestContext"]["http"]["path"] = f"/signals/{signal_id}/candles"
        event["pathParameters"] = {"signal_id": signal_id}
        reply = handler(event, FakeLambdaContext())
        return reply | {"json": json.loads(reply["body"])}

    yield invoke
    wiring.clear()


def test_a_stopped_signal_is_charted_with_its_levels_and_its_marks_on_the_candles_that_showed_them(
        call: Callable[..., dict[str, Any]], serving: ServingTables) -> None:
    # Given a LONG signal with a tight stop, played out by the outcome rule two days later
    now = CANDLE + timedelta(days=2)
    signal = played_out("LONG", 0.5, now)
    assert signal.status == "STOPPED"
    SignalStore(serving.signals_table).put_new(signal)
    wiring.use_clock(lambda: now)
    # When its chart is asked
    reply = call()
    assert reply["statusCode"] == 200
    chart_ = reply["json"]
    # Then the levels are the signal's prices, the candles the recorded ones around it
    assert chart_["levels"] == {"entry": signal.entry_price, "tp1": signal.tp1_price, "tp2": signal.tp2_price,
                                "tp3": signal.tp3_price, "stop": signal.sl_price}
    times = [c["time"] for c in chart_["candles"]]
    assert times == sorted(times) and times[0] == int((CANDLE - chart.BEFORE_CANDLES * STEP).timestamp())
    by_time = {c["time"]: c for c in chart_["candles"]}
    marks = {m["kind"]: m for m in chart_["marks"]}
    assert by_time[marks["entry"]["candle_time"]]["close"] == signal.entry_price
    # the stop mark sits on a candle that reached the stop, after the entry
    stop = marks["stop"]
    assert stop["price"] == signal.sl_price and by_time[stop["candle_time"]]["low"] <= signal.sl_price
    assert stop["candle_time"] > marks["entry"]["candle_time"] and stop["at"] == signal.closed_at
    assert (chart_["status"], chart_["realised_net_pct"], chart_["source"]) == (
        "STOPPED", signal.realised_net_pct, "replay")
    # and the chart ends AFTER_CANDLES past the close
    assert times[-1] == stop["candle_time"] + chart.AFTER_CANDLES * 15 * 60


def test_an_open_signal_shows_no_candle_from_the_replays_future(call: Callable[..., dict[str, Any]],
                                                                 serving: ServingTables) -> None:
    # Given an open signal and the functions' clock two hours after it
    now = CANDLE + STEP + timedelta(hours=2, minutes=3)
    signal = played_out("LONG", 20.0, now)
    assert signal.status in ("ACTIVE", "TP1_HIT", "TP2_HIT")
    SignalStore(serving.signals_table).put_new(signal)
    wiring.use_clock(lambda: now)
    candles = call()["json"]["candles"]
    # Then the newest candle is the last one closed by then
    assert candles[-1]["time"] + 15 * 60 <= now.timestamp() < candles[-1]["time"] + 30 * 60


def test_an_unknown_signal_is_404_and_a_malformed_id_400(call: Callable[..., dict[str, Any]]) -> None:
    assert call("signal_nope")["statusCode"] == 404
    reply = call("a b")
    assert reply["statusCode"] == 400 and "signal_id" in reply["json"]["message"]


def test_a_market_without_candles_is_a_502_with_its_reason(call: Callable[..., dict[str, Any]],
                                                            serving: ServingTables) -> None:
    signal = Signal(**(played_out("LONG", 0.5, CANDLE + timedelta(days=2)).to_dict() | {"symbol": "XRP/USDT"}))
    SignalStore(serving.signals_table).put_new(signal)
    wiring.use_clock(lambda: CANDLE + timedelta(days=2))
    reply = call()
    assert reply["statusCode"] == 502
    assert reply["json"]["error"] == "market_data_unavailable" and "exchange_rejected" in reply["json"]["message"]


def test_the_exchange_is_asked_from_the_start_of_the_chart_and_its_forming_candle_dropped() -> None:
    # Given a ccxt source over a fake exchange serving the real candles at `now`
    from traderai.market.exchange import CcxtSource
    from traderai.settings import Settings
    from traderai.testing.fake_exchange import FakeExchange

    now = CANDLE + timedelta(hours=3, minutes=7)
    exchange = FakeExchange({"BTC/USDT": btc_candles()}, now=now)
    source = CcxtSource(Settings(), exchange=exchange)
    start_ms = int((CANDLE - 4 * STEP).timestamp() * 1000)
    end_ms = int((CANDLE + timedelta(days=1)).timestamp() * 1000)
    candles = asyncio.run(source.fetch_candles_between("BTC/USDT", "15m", start_ms, end_ms, now))
    (request,) = exchange.ohlcv_requests
    assert request["since"] == start_ms
    assert int(candles.open_time_ms[0]) == start_ms
    # the candle opened at 20:45 is still forming at 20:52: not served
    assert int(candles.open_time_ms[-1]) == int((now - timedelta(minutes=7) - STEP).timestamp() * 1000)
