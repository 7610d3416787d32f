"""The signal math of docs/design.md, pinned by hand-computed examples and hammered by hypothesis."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from traderai.contracts import Prediction, RejectReason, Side, Signal, Strategy
from traderai.core.signals import (
    compute_levels,
    decide,
    liquidation_distance_pct,
    round_down_to_step,
    signal_id_for,
)

NOW = datetime(2025, 4, 29, 12, 0, 5, tzinfo=UTC)
SEED = Strategy()


def prediction(**changes: object) -> Prediction:
    base = dict(batch_id="BTC_USDT_15m_20250101_000000_20250429_120000", model_id="BTC_USDT_15m_20250101_000000",
                exchange="binance", symbol="BTC/USDT", timeframe="15m", candle_time="2025-04-29T11:45:00Z",
                predicted_at="2025-04-29T12:00:04Z", price=62_800.0, atr=700.0, probability=0.65,
                confidence=0.65, side="long", horizon=4, quote_volume_24h=2e9, amount_step=0.00001,
                price_step=0.01)
    base.update(changes)
    if "probability" in changes and "confidence" not in changes:
        p = float(changes["probability"])  # type: ignore[arg-type]
        base["confidence"] = max(p, 1 - p) if math.isfinite(p) else p
    return Prediction(**base)  # type: ignore[arg-type]


def test_long_levels_match_a_hand_computed_example() -> None:
    # Given entry 62,800 and ATR 700 with the seed's new multipliers (SL 1.0, TP 2.0/3.5/6.0)
    levels = compute_levels(Side.LONG, 62_800.0, 700.0, SEED)
    # Then TP1 = 62,800 + 1,400; TP2 = + 2,450; TP3 = + 4,200; SL = 62,800 - 700
    assert levels.take_profits == pytest.approx((64_200.0, 65_250.0, 67_000.0))
    assert levels.stop == pytest.approx(62_100.0)
    # gross = (1400 + 2450 + 4200) / 3 / 62800 * 100 = 4.27283...%
    assert levels.gross_profit_pct == pytest.approx(8050 / 3 / 62_800 * 100)
    assert levels.costs_pct == pytest.approx(0.32)
    assert levels.expected_net_profit_pct == pytest.approx(8050 / 3 / 62_800 * 100 - 0.32)
    # risk/reward = gross / sl_pct = (8050/3) / 700
    assert levels.risk_reward_ratio == pytest.approx(8050 / 3 / 700)


def test_short_levels_are_mirrored() -> None:
    levels = compute_levels(Side.SHORT, 100.0, 2.0, SEED)
    assert levels.take_profits == pytest.approx((96.0, 93.0, 88.0))
    assert levels.stop == pytest.approx(102.0)


def test_seed_rejection_message_reads_like_the_seed() -> None:
    # Given a quiet market: ATR 0.1% of price -> gross 0.383%, net 0.063%
    decision, signal = decide(prediction(atr=62.8), SEED, decided_at=NOW)
    assert signal is None
    assert decision.reason == RejectReason.LOW_NET_PROFIT
    assert decision.message == "Signal rejected for BTC/USDT: Expected net profit 0.06% < minimum 2.0%"


def test_accepted_signal_carries_the_full_contract() -> None:
    decision, signal = decide(prediction(), SEED, decided_at=NOW)
    assert decision.accepted and signal is not None
    assert signal.side == "LONG" and signal.status == "ACTIVE"
    assert signal.leverage == 20 and signal.position_size_usd == 1000.0
    # quantity = 1000 / 62800 = 0.0159235... rounded DOWN to the 0.00001 step
    assert signal.quantity == pytest.approx(0.01592)
    assert signal.signal_id.startswith("signal_BTC_USDT_")
    assert signal.created_at == "2025-04-29T12:00:05Z" and signal.expires_at == "2025-04-30T12:00:05Z"
    assert decision.signal_id == signal.signal_id


def test_a_signal_records_the_exit_weights_and_costs_in_force_when_it_was_built() -> None:
    # Given a strategy whose partial exits are 50/30/20 and whose costs differ from the seed's
    strategy = Strategy(tp_weights=(0.5, 0.3, 0.2), taker_fee_pct=0.04)
    # When a signal is accepted under it
    _, signal = decide(prediction(), strategy, decided_at=NOW)
    # Then the signal carries those weights and costs, so the tracker never has to ask today's settings
    assert signal is not None
    assert signal.tp_weights == (0.5, 0.3, 0.2)
    assert signal.costs_pct == pytest.approx(strategy.costs_pct)
    assert signal.to_dict()["tp_weights"] == [0.5, 0.3, 0.2]  # a JSON list of three numbers


def test_a_signal_stored_before_its_weights_were_recorded_still_loads() -> None:
    _, signal = decide(prediction(), SEED, decided_at=NOW)
    assert signal is not None
    older = {k: v for k, v in signal.to_dict().items() if k != "tp_weights"}
    assert Signal.from_dict(older).tp_weights is None
    assert Signal.from_dict(signal.to_dict()) == signal  # the JSON list reads back as the same signal


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"probability": float("nan")}, RejectReason.INVALID_PREDICTION),
        ({"atr": 0.0}, RejectReason.INVALID_PREDICTION),
        ({"atr": -5.0}, RejectReason.INVALID_PREDICTION),
        ({"atr": float("inf")}, RejectReason.INVALID_PREDICTION),
        ({"price": 0.0}, RejectReason.INVALID_PREDICTION),
        ({"probability": 1.5}, RejectReason.INVALID_PREDICTION),
        ({"probability": 0.52}, RejectReason.LOW_CONFIDENCE),
        ({"atr": 100.0}, RejectReason.LOW_NET_PROFIT),
        ({"quote_volume_24h": 5e6}, RejectReason.LOW_LIQUIDITY),
        ({"quote_volume_24h": None}, RejectReason.LOW_LIQUIDITY),
        ({"atr": 3_000.0}, RejectReason.STOP_BEYOND_LIQUIDATION),  # SL 4.78% >= 5% - 0.5%
    ],
)
def test_each_filter_rejects_with_its_reason_code(changes: dict, reason: RejectReason) -> None:
    decision, signal = decide(prediction(**changes), SEED, decided_at=NOW)
    assert signal is None
    assert not decision.accepted
    assert decision.reason == reason.value
    assert decision.message.startswith("Signal rejected for BTC/USDT: ")


def test_second_active_signal_for_same_symbol_and_side_is_rejected() -> None:
    decision, signal = decide(prediction(), SEED, decided_at=NOW, active=frozenset({("BTC/USDT", "LONG")}))
    assert signal is None and decision.reason == RejectReason.DUPLICATE_ACTIVE
    # the opposite side is not a duplicate
    decision, signal = decide(prediction(), SEED, decided_at=NOW, active=frozenset({("BTC/USDT", "SHORT")}))
    assert signal is not None


def test_drift_gate_only_when_enabled() -> None:
    drifting = prediction(drift_score=0.9)
    assert decide(drifting, SEED, decided_at=NOW)[1] is not None
    decision, signal = decide(drifting, Strategy(max_drift_psi=0.25), decided_at=NOW)
    assert signal is None and decision.reason == RejectReason.DRIFT


def test_all_failing_filters_are_listed() -> None:
    decision, _ = decide(prediction(probability=0.51, atr=62.8, quote_volume_24h=1.0), SEED, decided_at=NOW)
    assert decision.reason == "low_net_profit"
    assert set(decision.reasons) == {"low_net_profit", "low_confidence", "low_liquidity"}


def test_signal_id_is_deterministic_per_model_symbol_and_candle() -> None:
    assert signal_id_for(prediction()) == signal_id_for(prediction(predicted_at="2025-04-29T12:03:00Z"))
    assert signal_id_for(prediction()) != signal_id_for(prediction(candle_time="2025-04-29T12:00:00Z"))


def isolated_liquidation_price(side: Side, entry: float, leverage: int, maintenance_margin_pct: float) -> float:
    """Where margin + PnL falls to the maintenance margin of the position at that price (isolated)."""
    m = maintenance_margin_pct / 100
    if side is Side.LONG:  # E/L + (P - E) = m P
        return entry * (1 - 1 / leverage) / (1 - m)
    return entry * (1 + 1 / leverage) / (1 + m)  # E/L + (E - P) = m P


@pytest.mark.parametrize("side", list(Side))
def test_liquidation_distance_at_20x_is_where_the_isolated_position_is_liquidated(side: Side) -> None:
    liquidation = isolated_liquidation_price(side, 100.0, 20, 0.5)
    assert liquidation_distance_pct(20, 0.5, side) == pytest.approx(abs(liquidation - 100.0))
    # 4.52% below a LONG's entry, 4.48% above a SHORT's: not the same distance
    assert liquidation_distance_pct(20, 0.5, side) == pytest.approx(4.5226 if side is Side.LONG else 4.4776, abs=1e-4)


@pytest.mark.parametrize(("side", "probability"), [(Side.LONG, 0.7), (Side.SHORT, 0.3)])
def test_a_stop_beyond_the_sides_liquidation_price_is_rejected(side: Side, probability: float) -> None:
    # Given a stop 1 ATR = 4.49% from entry: past the SHORT's liquidation (4.4776%), inside the LONG's (4.5226%)
    decision, _ = decide(prediction(price=100.0, atr=4.49, probability=probability), SEED, decided_at=NOW)
    # Then only the SHORT is refused for it
    assert (RejectReason.STOP_BEYOND_LIQUIDATION.value in decision.reasons) is (side is Side.SHORT)


prices = st.floats(min_value=1e-4, max_value=1e6, allow_nan=False, allow_infinity=False)
atr_fraction = st.floats(min_value=1e-5, max_value=0.2, allow_nan=False)
probabilities = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
strategies = st.builds(
    Strategy,
    sl_atr_multiplier=st.floats(0.2, 3.0),
    tp_atr_multipliers=st.tuples(st.floats(0.5, 2), st.floats(2, 4), st.floats(4, 10)),
    taker_fee_pct=st.floats(0, 0.2), slippage_pct=st.floats(0, 0.2), funding_pct=st.floats(0, 0.2),
    min_net_profit_pct=st.floats(-1, 5), min_confidence=st.floats(0.5, 0.8),
)


@given(price=prices, fraction=atr_fraction, strategy=strategies, side=st.sampled_from(list(Side)))
def test_levels_sit_on_the_right_side_and_net_is_gross_minus_costs(
    price: float, fraction: float, strategy: Strategy, side: Side
) -> None:
    levels = compute_levels(side, price, price * fraction, strategy)
    sign = 1 if side is Side.LONG else -1
    assert all(sign * (tp - price) > 0 for tp in levels.take_profits)
    assert sign * (levels.stop - price) < 0
    # TPs are ordered away from entry
    assert sign * levels.take_profits[0] <= sign * levels.take_profits[1] <= sign * levels.take_profits[2]
    assert levels.expected_net_profit_pct == pytest.approx(levels.gross_profit_pct - levels.costs_pct)
    assert levels.costs_pct == pytest.approx(2 * strategy.taker_fee_pct + 2 * strategy.slippage_pct
                                             + strategy.funding_pct)


@given(price=prices, fraction=atr_fraction, p=probabilities, strategy=strategies,
       volume=st.one_of(st.none(), st.floats(0, 1e10)))
def test_a_rejected_candidate_never_yields_a_signal_and_an_accepted_one_passes_every_filter(
    price: float, fraction: float, p: float, strategy: Strategy, volume: float | None
) -> None:
    decision, signal = decide(prediction(price=price, atr=price * fraction, probability=p,
                                         quote_volume_24h=volume), strategy, decided_at=NOW)
    if not decision.accepted:
        assert signal is None and decision.reason in decision.reasons
        return
    assert signal is not None
    assert signal.expected_net_profit_pct >= strategy.min_net_profit_pct - 1e-9
    assert signal.confidence >= strategy.min_confidence
    assert signal.side == ("LONG" if p >= 0.5 else "SHORT")
    assert signal.quantity * signal.entry_price <= strategy.position_size_usd * (1 + 1e-9) + 0.01 * price


@pytest.mark.parametrize("step", [float("nan"), float("inf"), -0.01])
def test_a_non_finite_or_negative_market_step_leaves_the_numbers_unrounded_never_nan(step: float) -> None:
    # Given a prediction whose market steps arrived broken (JSON NaN/Infinity in a hand-off)
    decision, signal = decide(prediction(amount_step=step, price_step=step), SEED, decided_at=NOW)
    # Then the signal is still a storable one: every number finite (DynamoDB refuses NaN), nothing raised
    assert decision.accepted and signal is not None
    assert all(math.isfinite(v) for v in signal.to_dict().values() if isinstance(v, float))
    assert signal.quantity == pytest.approx(1000 / 62_800)


@given(value=st.floats(1e-6, 1e6), step=st.sampled_from([1.0, 0.1, 0.01, 0.001, 0.00001]))
def test_quantity_rounds_down_to_the_step(value: float, step: float) -> None:
    rounded = round_down_to_step(value, step)
    assert rounded <= value * (1 + 1e-12) + 1e-12
    assert value - rounded < step * (1 + 1e-6)
    assert Decimal(repr(rounded)) % Decimal(repr(step)) == 0


def test_a_prediction_decided_long_after_its_candle_closed_is_stale() -> None:
    # Given the candle 11:45-12:00 and a decision 16 minutes after its close (retried hops add up)
    late = datetime(2025, 4, 29, 12, 16, 0, tzinfo=UTC)
    decision, signal = decide(prediction(), SEED, decided_at=late)
    assert signal is None and decision.reason == RejectReason.STALE_PREDICTION
    assert "960 s past its candle's close > maximum 900 s" in decision.message
    # ... while 14 minutes after the close still trades, and 0 switches the gate off
    assert decide(prediction(), SEED, decided_at=datetime(2025, 4, 29, 12, 14, tzinfo=UTC))[1] is not None
    assert decide(prediction(), Strategy(max_signal_delay_seconds=0), decided_at=late)[1] is not None
