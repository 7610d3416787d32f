"""Settings fail loudly with their name; events of the wrong shape fail naming what is wrong."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from traderai.contracts import SettingsError
from traderai.events import EventError, parse_handoff, parse_schedule_event, tick_mark
from traderai.settings import Settings, normalize_symbol
from traderai.testing.handlers import load_event

NOW = datetime(2025, 4, 7, 14, 0, 9, tzinfo=UTC)


def test_defaults_are_the_seed_values() -> None:
    strategy = Settings.from_env({}).strategy
    assert strategy.sl_atr_multiplier == 1.0
    assert strategy.tp_atr_multipliers == (2.0, 3.5, 6.0)
    assert strategy.costs_pct == pytest.approx(0.32)
    assert strategy.min_net_profit_pct == 2.0 and strategy.leverage == 20 and strategy.position_size_usd == 1000


def test_settings_from_env_parse_every_kind() -> None:
    settings = Settings.from_env({"MARKETS": "btc_usdt, ETH-USDT", "TP_ATR_MULTIPLIERS": "1.5,2.5,4.0",
                                  "LEVERAGE": "10", "BUCKET_NAME": "b"})
    assert settings.markets == ("BTC/USDT", "ETH/USDT")
    assert settings.strategy.tp_atr_multipliers == (1.5, 2.5, 4.0)
    assert settings.strategy.leverage == 10


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"MARKETS": "BTCUSDT"}, "MARKETS"),
        ({"MARKETS": "BTC/USDT,BTC_USDT"}, "MARKETS"),
        ({"TIMEFRAME": "7m"}, "TIMEFRAME"),
        ({"MARKET_SOURCE": "csv"}, "MARKET_SOURCE"),
        ({"EXCHANGE_ID": "Not An Exchange!"}, "EXCHANGE_ID"),
        ({"LEVERAGE": "twenty"}, "LEVERAGE"),
        ({"LEVERAGE": "0"}, "LEVERAGE"),
        ({"MIN_NET_PROFIT_PCT": "nan"}, "MIN_NET_PROFIT_PCT"),
        ({"TP_ATR_MULTIPLIERS": "2,1,3"}, "TP_ATR_MULTIPLIERS"),
        ({"TP_WEIGHTS": "0.5,0.5,0.5"}, "TP_WEIGHTS"),
        ({"MIN_CONFIDENCE": "0.3"}, "MIN_CONFIDENCE"),
        ({"CANDLE_LIMIT": "10"}, "CANDLE_LIMIT"),
    ],
)
def test_a_wrong_setting_fails_naming_it(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=rf"^{name}:"):
        Settings.from_env(env)


def test_a_missing_resource_name_fails_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"^SIGNALS_TABLE:"):
        Settings.from_env({"BUCKET_NAME": "b"}).require("bucket_name", "signals_table")


@pytest.mark.parametrize("text", ["BTC/USDT", "BTC_USDT", "btc-usdt", " BTC/USDT "])
def test_symbol_spellings_normalise(text: str) -> None:
    assert normalize_symbol(text) == "BTC/USDT"


def test_schedule_event_gives_the_tick_mark() -> None:
    assert parse_schedule_event(load_event("predict_schedule.json"), 300) == datetime(2025, 4, 7, 14, 0, tzinfo=UTC)
    assert tick_mark(datetime(2025, 4, 7, 14, 7, 59, tzinfo=UTC), 300) == datetime(2025, 4, 7, 14, 5, tzinfo=UTC)


@pytest.mark.parametrize("event", [load_event("predict_not_a_schedule.json"), [], "tick", None,
                                   {"detail-type": "Scheduled Event", "time": "yesterday"}])
def test_not_a_schedule_event_is_refused(event: object) -> None:
    with pytest.raises(EventError):
        parse_schedule_event(event, 300)


def test_destination_envelope_and_bare_list_both_parse() -> None:
    handoff = parse_handoff(load_event("signal_destination.json"), NOW)
    assert handoff.tick_time == datetime(2025, 4, 7, 14, 0, tzinfo=UTC)
    assert [p.symbol for p in handoff.predictions] == ["BTC/USDT", "ETH/USDT"]
    bare = parse_handoff(load_event("signal_predictions_list.json"), NOW)
    assert [p.symbol for p in bare.predictions] == ["SOL/USDT", "BNB/USDT"]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (load_event("signal_not_predictions.json"), "expected a Lambda destination envelope"),
        (load_event("signal_destination_failure.json"), "condition 'RetriesExhausted'"),
        ([{"symbol": "BTC/USDT"}], r"predictions\[0\]: prediction: missing field"),
        ([{**load_event("signal_predictions_list.json")[0], "probability": "high"}], "probability: expected a number"),
        ("not json", "expected a Lambda destination envelope"),
    ],
)
def test_wrong_handoff_is_refused_naming_what_is_wrong(event: object, message: str) -> None:
    with pytest.raises(EventError, match=message):
        parse_handoff(event, NOW)
