"""Protections (core/protections.py): a replayed sequence of closed signals locks a market and releases it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from traderai.contracts import ProtectionSettings, SettingsError, Signal, Strategy
from traderai.core.protections import Close, close_of, market_locks

T0 = datetime(2025, 5, 1, tzinfo=UTC)
GUARD_ONLY = ProtectionSettings(3, 24.0, 12.0, 0, -0.5, 168.0, 24.0)
LOW_ONLY = ProtectionSettings(0, 24.0, 12.0, 4, -0.5, 168.0, 24.0)


def stop(hours: float, net: float = -1.32, name: str | None = None) -> Close:
    return Close(name or f"s{hours}", T0 + timedelta(hours=hours), True, net)


def win(hours: float, net: float = 1.5) -> Close:
    return Close(f"w{hours}", T0 + timedelta(hours=hours), False, net)


def locked(closes: list[Close], hours: float, settings: ProtectionSettings) -> list[str]:
    return [lock.protection for lock in market_locks("BTC/USDT", closes, T0 + timedelta(hours=hours), settings)]


def test_stoploss_guard_engages_on_the_nth_stop_in_the_window_and_releases_after_the_cooldown() -> None:
    # stops at 0 h, 5 h, 20 h (3 within 24 h), a winner at 21 h, then silence
    replay = [stop(0), stop(5), stop(20), win(21)]
    timeline = {hour: locked(replay, hour, GUARD_ONLY) for hour in (4, 19.9, 20, 25, 31.9, 32, 40)}
    assert timeline == {4: [], 19.9: [], 20: ["protection_stoploss_guard"], 25: ["protection_stoploss_guard"],
                        31.9: ["protection_stoploss_guard"], 32: [], 40: []}  # 12 h cool-down from 20 h
    lock = market_locks("BTC/USDT", replay, T0 + timedelta(hours=25), GUARD_ONLY)[0]
    assert (lock.engaged_at, lock.until) == ("2025-05-01T20:00:00Z", "2025-05-02T08:00:00Z")
    assert lock.message.startswith("stoploss_guard: 3 stops within 24 h (limit 3); locked 12 h until 2025-05-02T08")


def test_stops_spread_wider_than_the_window_never_lock() -> None:
    replay = [stop(0), stop(13), stop(26), stop(39)]  # never 3 within 24 h
    assert all(locked(replay, hour, GUARD_ONLY) == [] for hour in range(0, 60))


def test_a_later_stop_extends_the_lock() -> None:
    replay = [stop(0), stop(1), stop(2), stop(10)]
    assert locked(replay, 21, GUARD_ONLY) == ["protection_stoploss_guard"]  # 10 h + 12 h
    assert locked(replay, 22, GUARD_ONLY) == []


def test_a_close_known_only_later_does_not_lock_the_past() -> None:
    replay = [stop(0), stop(1), stop(2)]
    assert locked(replay, 1.5, GUARD_ONLY) == []  # at 1.5 h the third stop has not happened


def test_low_profit_locks_when_the_last_m_closes_average_below_the_threshold_and_releases() -> None:
    # four closes averaging (-1.3 -1.3 +1.5 -1.3) / 4 = -0.6 < -0.5 at 30 h; a winner at 40 h lifts the
    # mean of the last four to (-1.3 + 1.5 - 1.3 + 2.0) / 4 = +0.225: no new lock, the old one runs out at 54 h
    replay = [stop(0, -1.3), stop(10, -1.3), win(20, 1.5), stop(30, -1.3), win(40, 2.0)]
    timeline = {hour: locked(replay, hour, LOW_ONLY) for hour in (25, 30, 45, 53.9, 54)}
    assert timeline == {25: [], 30: ["protection_low_profit"], 45: ["protection_low_profit"],
                        53.9: ["protection_low_profit"], 54: []}
    lock = market_locks("BTC/USDT", replay, T0 + timedelta(hours=31), LOW_ONLY)[0]
    assert "mean realised net -0.60% over the last 4 closed signals < -0.50%" in lock.message


def test_low_profit_needs_m_closes_within_its_lookback() -> None:
    few = [stop(0, -3.0), stop(1, -3.0), stop(2, -3.0)]
    assert locked(few, 3, LOW_ONLY) == []
    old = [stop(0, -3.0), stop(1, -3.0), stop(2, -3.0), stop(200, -3.0)]  # the first three left the 168 h lookback
    assert locked(old, 201, LOW_ONLY) == []


def test_both_guards_can_hold_at_once_and_zero_disables_them() -> None:
    replay = [stop(0), stop(1), stop(2), stop(3)]
    both = ProtectionSettings(3, 24.0, 12.0, 4, -0.5, 168.0, 24.0)
    assert locked(replay, 4, both) == ["protection_stoploss_guard", "protection_low_profit"]
    assert locked(replay, 4, ProtectionSettings(0, 24.0, 12.0, 0, -0.5, 168.0, 24.0)) == []


def _signal(**changes: object) -> Signal:
    base: dict = dict(signal_id="x", symbol="BTC/USDT", side="LONG", entry_price=100.0, tp1_price=102.0,
                      tp2_price=103.5, tp3_price=106.0, sl_price=99.0, leverage=20, position_size_usd=1000.0,
                      quantity=10.0, gross_profit_pct=3.8, costs_pct=0.32, expected_net_profit_pct=3.5,
                      net_risk_reward_ratio=2.6, confidence=0.6, probability=0.6, risk_reward_ratio=3.8,
                      status="STOPPED", created_at="2025-05-01T00:00:05Z", expires_at="2025-05-02T00:00:05Z",
                      model_id="m", batch_id="b", exchange="binance", timeframe="15m", atr=1.0,
                      candle_time="2025-05-01T00:00:00Z", closed_at="2025-05-01T03:00:00Z", closed_reason="stop",
                      realised_net_pct=-1.32)
    base.update(changes)
    return Signal(**base)


def test_a_stored_signal_becomes_a_close_only_once_priced_and_final() -> None:
    assert close_of(_signal()) == Close("x", datetime(2025, 5, 1, 3, tzinfo=UTC), True, -1.32)
    assert close_of(_signal(status="ACTIVE", closed_at=None, closed_reason=None, realised_net_pct=None)) is None
    assert close_of(_signal(status="EXPIRED", closed_reason="no_market_data", realised_net_pct=0.0)) is None
    # a stop after TP1 that still made money is not a loss the guard counts
    assert close_of(_signal(closed_reason="stop", realised_net_pct=0.2)).stopped_at_loss is False
    all_targets = close_of(_signal(status="TP3_HIT", closed_reason="all_targets", realised_net_pct=3.5))
    assert all_targets is not None and all_targets.stopped_at_loss is False


@pytest.mark.parametrize(("changes", "name"), [
    ({"stoploss_guard_stops": -1}, "STOPLOSS_GUARD_STOPS"),
    ({"stoploss_guard_window_hours": 0.0}, "STOPLOSS_GUARD_WINDOW_HOURS"),
    ({"stoploss_guard_cooldown_hours": 10_000.0}, "STOPLOSS_GUARD_COOLDOWN_HOURS"),
    ({"low_profit_signals": 501}, "LOW_PROFIT_SIGNALS"),
    ({"low_profit_min_net_pct": float("nan")}, "LOW_PROFIT_MIN_NET_PCT"),
    ({"low_profit_lookback_hours": -1.0}, "LOW_PROFIT_LOOKBACK_HOURS"),
    ({"low_profit_cooldown_hours": 0.0}, "LOW_PROFIT_COOLDOWN_HOURS"),
    ({"min_expected_value_pct": -0.1}, "MIN_EXPECTED_VALUE_PCT"),
    ({"edge_gate": "maybe"}, "EDGE_GATE"),
])
def test_gate_and_protection_settings_out_of_range_name_the_variable(changes: dict, name: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name}:"):
        Strategy(**changes)


def test_gate_and_protection_settings_parse_from_the_environment() -> None:
    from traderai.settings import Settings

    strategy = Settings.from_env({"EDGE_GATE": " Warn ", "MIN_EXPECTED_VALUE_PCT": "0.1", "STOPLOSS_GUARD_STOPS": "0",
                                  "LOW_PROFIT_MIN_NET_PCT": "-1"}).strategy
    assert (strategy.edge_gate, strategy.min_expected_value_pct) == ("warn", 0.1)
    assert strategy.protections.stoploss_guard_stops == 0 and strategy.protections.low_profit_min_net_pct == -1.0
    with pytest.raises(SettingsError, match=r"^LOW_PROFIT_SIGNALS:"):
        Settings.from_env({"LOW_PROFIT_SIGNALS": "twenty"})
