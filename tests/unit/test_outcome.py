"""The outcome rule (core/outcome.py): real cases pinned from the bundled candles, constructed edge
cases, and properties over any candle path (bounded profit, statuses only move forward, incremental
runs reach the same state as one run over everything)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traderai.contracts import SignalStatus
from traderai.core.outcome import (
    FINAL_STATUSES,
    NO_DATA_GRACE_CANDLES,
    Bar,
    ClosedReason,
    TradeSetup,
    TradeState,
    advance,
    expire_unpriced,
    realised,
    resolve,
    status_rank,
)
from traderai.market.csv import load_candles_csv
from traderai.market.replay import bundled_candles_dir, candles_file_name

M15 = 900_000
DAY = 24 * 3600 * 1000
THIRDS = (1 / 3, 1 / 3, 1 / 3)
COSTS = 0.32


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def iso(value: int | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@cache
def btc_bars() -> tuple[Bar, ...]:
    candles = load_candles_csv(bundled_candles_dir() / candles_file_name("BTC/USDT"), "BTC/USDT", "15m")
    return tuple(Bar(int(t), float(h), float(lo), float(c)) for t, h, lo, c in zip(
        candles.open_time_ms.tolist(), candles.high.tolist(), candles.low.tolist(), candles.close.tolist(),
        strict=True))


def real_setup(side: str, entry: float, tps: tuple[float, float, float], stop: float, created: str) -> TradeSetup:
    """A 24 h signal on the bundled BTC/USDT 15m candles, levels as the signal step placed them
    (entry = the close of the candle that just closed, TP/SL at 2.0/3.5/6.0 and 1.0 x ATR(14))."""
    return TradeSetup(side, entry, tps, stop, THIRDS, COSTS, ms(created), ms(created) + DAY, M15)


def replay(setup: TradeSetup, as_of: int | None = None) -> TradeState:
    return resolve(setup, btc_bars(), as_of_ms=setup.expires_at_ms if as_of is None else as_of)


# ---------------------------------------------------------------- real cases (bundled BTC/USDT 15m)

def test_tp1_then_stop_keeps_the_tp1_exit_and_stops_the_rest() -> None:
    # Given a SHORT at 68454.55 (ATR 299.04) created 2024-11-03 16:15:05
    setup = real_setup("SHORT", 68454.55, (67856.47, 67407.91, 66660.31), 68753.59, "2024-11-03T16:15:05Z")
    # When the candles play out
    state = replay(setup)
    # Then TP1 is hit by the 18:45 candle, the stop by the 20:00 candle
    assert state.status is SignalStatus.STOPPED
    assert [iso(t) for t in state.tp_hit_ms] == ["2024-11-03T19:00:00Z", None, None]
    assert iso(state.closed_at_ms) == "2024-11-03T20:15:00Z" and state.exit_price == 68753.59
    # 1/3 at TP1 (+2 ATR) and 2/3 at the stop (-1 ATR) cancel out: net = -costs
    assert state.realised_net_pct == pytest.approx(-COSTS, abs=1e-4)


def test_all_targets_hit_closes_at_tp3_with_the_average_tp_profit_net_of_costs() -> None:
    setup = real_setup("SHORT", 68686.0, (68358.26, 68112.46, 67702.78), 68849.87, "2024-11-03T02:15:05Z")
    state = replay(setup)
    assert state.status is SignalStatus.TP3_HIT
    # TP1 in the trade's first candle (02:15, low 68186.03), TP2 in the next, TP3 twelve hours later
    assert [iso(t) for t in state.tp_hit_ms] == ["2024-11-03T02:30:00Z", "2024-11-03T02:45:00Z",
                                                  "2024-11-03T14:30:00Z"]
    assert iso(state.closed_at_ms) == "2024-11-03T14:30:00Z" and state.exit_price is None
    gross = sum((68686.0 - tp) / 68686.0 * 100 for tp in (68358.26, 68112.46, 67702.78)) / 3
    assert state.realised_net_pct == pytest.approx(gross - COSTS)
    assert state.realised_net_pct == pytest.approx(0.594548, abs=1e-6)


def test_a_signal_that_hits_nothing_expires_closed_at_the_last_close_of_its_life() -> None:
    setup = real_setup("SHORT", 94710.59, (93219.95, 92101.97, 90238.67), 95455.91, "2025-01-10T18:45:05Z")
    assert replay(setup, as_of=setup.expires_at_ms - 1).status is SignalStatus.ACTIVE
    state = replay(setup)
    assert state.status is SignalStatus.EXPIRED
    assert state.tp_hit_ms == (None, None, None)
    assert iso(state.closed_at_ms) == "2025-01-11T18:45:05Z"
    assert state.exit_price == 94191.82  # close of the 18:15 candle, the last one wholly inside the life
    assert state.realised_net_pct == pytest.approx((94710.59 - 94191.82) / 94710.59 * 100 - COSTS)


def test_stop_and_targets_inside_one_candle_resolve_as_stop_first() -> None:
    # The 2024-11-14 14:30 candle (high 91790, low 89400) crosses the stop AND TP1 and TP2
    setup = real_setup("SHORT", 91243.17, (90306.51, 89604.01, 88433.19), 91711.5, "2024-11-14T13:00:05Z")
    state = replay(setup)
    assert state.status is SignalStatus.STOPPED
    assert state.tp_hit_ms == (None, None, None)
    assert iso(state.closed_at_ms) == "2024-11-14T14:45:00Z"
    assert state.realised_net_pct == pytest.approx(-(91711.5 - 91243.17) / 91243.17 * 100 - COSTS)


def test_tp1_then_expiry_books_tp1_and_the_rest_at_market() -> None:
    setup = real_setup("LONG", 89375.99, (90914.35, 92068.12, 93991.07), 88606.81, "2024-11-15T17:00:05Z")
    state = replay(setup)
    assert (state.status, iso(state.tp_hit_ms[0])) == (SignalStatus.EXPIRED, "2024-11-15T20:15:00Z")
    assert state.exit_price == 90612.65
    assert state.realised_net_pct == pytest.approx(1.176181, abs=1e-6)


# ---------------------------------------------------------------- constructed edge cases

def long_setup(**changes: object) -> TradeSetup:
    values: dict[str, object] = {"side": "LONG", "entry": 100.0, "take_profits": (102.0, 103.5, 106.0),
                                 "stop": 99.0, "weights": THIRDS, "costs_pct": COSTS,
                                 "created_at_ms": 10 * M15 + 5000, "expires_at_ms": 10 * M15 + 5000 + DAY,
                                 "candle_ms": M15}
    return TradeSetup(**(values | changes))  # type: ignore[arg-type]


def bar(index: int, high: float, low: float, close: float = 100.0) -> Bar:
    return Bar(index * M15, high, low, close)


def test_the_signal_candle_itself_does_not_count() -> None:
    setup = long_setup()  # created 5 s after candle 9 (the signal candle, entry = its close) closed
    state = resolve(setup, [bar(9, 107.0, 95.0), bar(10, 100.5, 99.5)], as_of_ms=11 * M15)
    assert state == TradeState()


def test_the_candle_forming_when_the_signal_is_created_counts() -> None:
    # Given a LONG entered at the close of candle 9 and created 5 s later, while candle 10 forms
    setup = long_setup()
    # When candle 10 reaches the stop and candle 11 every target
    state = resolve(setup, [bar(10, 100.5, 98.9), bar(11, 107.0, 100.0)], as_of_ms=12 * M15)
    # Then the trade was stopped in candle 10: it was open for all of it but 5 s (as the backtest plays it)
    assert (state.status, iso(state.closed_at_ms)) == (SignalStatus.STOPPED, iso(11 * M15))


def test_a_candle_that_closes_after_expiry_does_not_count() -> None:
    setup = long_setup(expires_at_ms=13 * M15)
    state = resolve(setup, [bar(11, 100.5, 99.5, 100.2), bar(12, 100.5, 99.5, 100.4), bar(13, 107.0, 100.0)],
                    as_of_ms=14 * M15)
    assert (state.status, state.exit_price) == (SignalStatus.EXPIRED, 100.4)


def test_partial_exits_charge_costs_by_the_weight_exited() -> None:
    setup = long_setup(weights=(0.5, 0.3, 0.2))
    state = resolve(setup, [bar(11, 103.6, 100.0)], as_of_ms=12 * M15)
    assert state.status is SignalStatus.TP2_HIT
    assert state.exited_weight == pytest.approx(0.8)
    assert state.realised_net_pct == pytest.approx(0.5 * 2.0 + 0.3 * 3.5 - 0.8 * COSTS)


def test_the_stop_is_not_moved_after_a_target() -> None:
    setup = long_setup()
    state = resolve(setup, [bar(11, 102.5, 100.0), bar(12, 100.0, 98.9)], as_of_ms=13 * M15)
    assert state.status is SignalStatus.STOPPED and state.exit_price == 99.0
    assert state.realised_net_pct == pytest.approx(2.0 / 3 - 2 / 3 * 1.0 - COSTS)


def test_short_same_candle_stop_and_tp_is_stop_first() -> None:
    setup = long_setup(side="SHORT", take_profits=(98.0, 96.5, 94.0), stop=101.0)
    state = resolve(setup, [bar(11, 101.2, 97.0)], as_of_ms=12 * M15)
    assert (state.status, state.targets_hit) == (SignalStatus.STOPPED, 0)


def test_a_run_fed_the_same_candles_again_changes_nothing() -> None:
    setup = long_setup()
    candles = [bar(11, 102.5, 100.0), bar(12, 101.0, 99.5)]
    once = resolve(setup, candles, as_of_ms=13 * M15)
    assert advance(setup, once, candles, as_of_ms=13 * M15) is once


def test_final_states_never_change() -> None:
    setup = long_setup()
    stopped = resolve(setup, [bar(11, 100.0, 98.0)], as_of_ms=12 * M15)
    assert advance(setup, stopped, [bar(12, 110.0, 100.0)], as_of_ms=13 * M15) is stopped


def test_a_market_without_candles_is_left_alone_until_expiry_plus_the_grace() -> None:
    # Given a LONG whose TP1 was hit, then its market stopped serving candles
    setup = long_setup()
    tp1 = resolve(setup, [bar(11, 102.5, 100.0)], as_of_ms=12 * M15)
    grace_over = setup.expires_at_ms + NO_DATA_GRACE_CANDLES * setup.candle_ms
    # When the tracker has no candles before the life and its grace are over, nothing changes
    assert expire_unpriced(setup, tp1, as_of_ms=setup.expires_at_ms) is tp1
    assert expire_unpriced(setup, tp1, as_of_ms=grace_over - 1) is tp1


def test_past_the_grace_it_expires_with_no_exit_price_keeping_the_exits_taken() -> None:
    setup = long_setup()
    tp1 = resolve(setup, [bar(11, 102.5, 100.0)], as_of_ms=12 * M15)
    grace_over = setup.expires_at_ms + NO_DATA_GRACE_CANDLES * setup.candle_ms
    state = expire_unpriced(setup, tp1, as_of_ms=grace_over)
    # Then it is EXPIRED at its expiry, the rest has no price, and only the TP1 exit is realised
    assert (state.status, state.closed_at_ms, state.exit_price) == (SignalStatus.EXPIRED, setup.expires_at_ms, None)
    assert state.closed_reason == ClosedReason.NO_MARKET_DATA
    assert state.tp_hit_ms == tp1.tp_hit_ms
    assert state.exited_weight == pytest.approx(1 / 3)
    assert state.realised_net_pct == pytest.approx((2.0 - COSTS) / 3)


def test_an_untouched_signal_expired_without_candles_has_realised_nothing() -> None:
    setup = long_setup()
    state = expire_unpriced(setup, TradeState(), as_of_ms=setup.expires_at_ms + NO_DATA_GRACE_CANDLES * M15)
    assert (state.status, state.exit_price, state.exited_weight, state.realised_net_pct) == (
        SignalStatus.EXPIRED, None, 0.0, 0.0)


def test_a_final_state_is_never_expired_again() -> None:
    setup = long_setup()
    stopped = resolve(setup, [bar(11, 100.0, 98.0)], as_of_ms=12 * M15)
    assert expire_unpriced(setup, stopped, as_of_ms=setup.expires_at_ms * 2) is stopped


def test_expiry_with_no_candle_of_the_life_known_invents_no_price() -> None:
    # Given candles that all closed before the signal existed (none of its life was served)
    setup = long_setup()
    state = resolve(setup, [bar(8, 101.0, 99.5), bar(9, 100.5, 99.8)], as_of_ms=setup.expires_at_ms)
    # Then it expires unpriced rather than at an invented exit (the entry, or the last target)
    assert (state.status, state.exit_price, state.closed_reason) == (
        SignalStatus.EXPIRED, None, ClosedReason.NO_MARKET_DATA)
    assert state.exited_weight == 0.0


@pytest.mark.parametrize(("candles", "reason"), [
    ([bar(11, 100.0, 98.0)], ClosedReason.STOP),
    ([bar(11, 107.0, 100.0)], ClosedReason.ALL_TARGETS),
    ([bar(11, 100.5, 99.5)], ClosedReason.EXPIRY),
])
def test_every_close_says_why(candles: list[Bar], reason: ClosedReason) -> None:
    setup = long_setup()
    assert resolve(setup, candles, as_of_ms=setup.expires_at_ms).closed_reason == reason


# ---------------------------------------------------------------- properties

@st.composite
def trades(draw: st.DrawFn) -> tuple[TradeSetup, list[Bar]]:
    side = draw(st.sampled_from(["LONG", "SHORT"]))
    entry = draw(st.floats(0.01, 100_000))
    atr = entry * draw(st.floats(0.001, 0.05))
    sl_m = draw(st.floats(0.5, 2.0))
    tp_m = sorted(draw(st.lists(st.floats(0.5, 8.0), min_size=3, max_size=3)))
    raw_weights = draw(st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3).filter(lambda w: sum(w) > 0.01))
    weights = tuple(w / sum(raw_weights) for w in raw_weights)
    direction = 1 if side == "LONG" else -1
    setup = TradeSetup(side, entry, tuple(entry + direction * m * atr for m in tp_m),  # type: ignore[arg-type]
                       entry - direction * sl_m * atr, weights, draw(st.floats(0.0, 1.0)),  # type: ignore[arg-type]
                       M15, M15 + draw(st.integers(1, 60)) * M15, M15)
    bars, price = [], entry
    for index in range(draw(st.integers(0, 70))):
        moves = sorted(draw(st.lists(st.floats(-3.0, 3.0), min_size=3, max_size=3)))
        low, close, high = (max(price + m * atr, entry * 1e-3) for m in moves)
        bars.append(Bar((index + 1) * M15, high, low, close))
        price = close
    return setup, bars


@settings(max_examples=300, deadline=None)
@given(trades())
def test_realised_profit_is_bounded_by_the_stop_and_the_furthest_target(trade: tuple[TradeSetup, list[Bar]]) -> None:
    setup, bars = trade
    state = resolve(setup, bars, as_of_ms=setup.expires_at_ms)
    sl_pct = abs(setup.stop - setup.entry) / setup.entry * 100
    tp3_pct = abs(setup.take_profits[2] - setup.entry) / setup.entry * 100
    worst, best = -sl_pct - setup.costs_pct, tp3_pct - setup.costs_pct * state.exited_weight
    assert worst - 1e-9 <= state.realised_net_pct <= best + 1e-9
    assert state.realised_net_pct == pytest.approx(state.realised_gross_pct - setup.costs_pct * state.exited_weight)
    assert state.is_final  # at expiry every trade is closed
    if state.closed_reason == ClosedReason.NO_MARKET_DATA:  # no candle of its life known: nothing invented
        assert state.exit_price is None and not any(b.open_time_ms + M15 > setup.created_at_ms for b in bars)
    else:
        assert state.exited_weight == pytest.approx(1.0)


@settings(max_examples=300, deadline=None)
@given(trades(), st.lists(st.integers(0, 70), max_size=6))
def test_statuses_only_move_forward_and_pieces_reach_the_state_of_one_run(
        trade: tuple[TradeSetup, list[Bar]], cuts: list[int]) -> None:
    setup, bars = trade
    state = TradeState()
    for cut in sorted(cuts):
        known = bars[:cut]  # what an exchange serves at that run: the candles closed so far
        as_of = known[-1].open_time_ms + M15 if known else setup.created_at_ms
        following = advance(setup, state, known, as_of_ms=as_of)
        assert status_rank(following.status) >= status_rank(state.status)
        if state.status in FINAL_STATUSES:
            assert following == state
        assert following.targets_hit >= state.targets_hit
        state = following
    as_of = setup.expires_at_ms
    assert advance(setup, state, bars, as_of_ms=as_of) == resolve(setup, bars, as_of_ms=as_of)


@settings(max_examples=300, deadline=None)
@given(trades(), st.integers(0, 70), st.integers(0, 10))
def test_an_unpriced_expiry_keeps_exactly_the_exits_already_taken(
        trade: tuple[TradeSetup, list[Bar]], cut: int, late_candles: int) -> None:
    # Given a trade followed while its market served candles, then never again
    setup, bars = trade
    known = bars[:cut]
    state = advance(setup, TradeState(), known, as_of_ms=known[-1].open_time_ms + M15 if known else setup.created_at_ms)
    # When the tracker gives up on it at some moment past expiry + grace
    as_of = setup.expires_at_ms + (NO_DATA_GRACE_CANDLES + late_candles) * setup.candle_ms
    after = expire_unpriced(setup, state, as_of_ms=as_of)
    if state.is_final:
        assert after is state
        return
    # Then it is final, unpriced, and its realised profit is that of the targets hit: nothing invented
    gross, net, exited = realised(setup, state.targets_hit, None)
    assert after.is_final and after.exit_price is None and after.tp_hit_ms == state.tp_hit_ms
    assert (after.realised_gross_pct, after.realised_net_pct, after.exited_weight) == (gross, net, exited)
    tp3_pct = abs(setup.take_profits[2] - setup.entry) / setup.entry * 100
    assert -setup.costs_pct - 1e-9 <= after.realised_net_pct <= tp3_pct - setup.costs_pct * exited + 1e-9


# ---------------------------------------------------------------- plain-text export

@pytest.mark.parametrize(("price", "text"), [(62800.0, "62800"), (62812.37, "62812.37"), (0.000123, "0.000123"),
                                             (1e-05, "0.00001"), (0.0, "0")])
def test_prices_print_without_trailing_zeros_or_exponents(price: float, text: str) -> None:
    from traderai.core.text_format import format_price

    assert format_price(price) == text


@pytest.mark.parametrize(("seconds", "text"), [(45 * 60, "45m"), (2 * 3600, "2h"), (2 * 3600 + 15 * 60, "2h 15m"),
                                               (27 * 3600, "1d 3h"), (86400, "1d")])
def test_time_in_trade_prints_coarsely(seconds: float, text: str) -> None:
    from traderai.core.text_format import format_duration

    assert format_duration(seconds) == text
