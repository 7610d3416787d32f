"""Track-record arithmetic: win rate, expectancy, profit factor and drawdown on hand-made results, and
the drawdown against a brute-force definition for any sequence (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from traderai.core.track_record import cumulative, drawdown_span, max_drawdown, r_multiple, summarise

results = st.lists(st.floats(min_value=-50, max_value=50, allow_nan=False, allow_infinity=False), max_size=60)


def test_a_hand_made_record_gives_the_figures_worked_out_by_hand() -> None:
    # Given six closed trades: three wins (1 + 2 + 0.5 = 3.5) and three losses (-0.5 - 1.5 - 1 = -3)
    trades = [1.0, -0.5, 2.0, -1.5, -1.0, 0.5]
    summary = summarise(trades)
    assert (summary.trades, summary.wins, summary.losses) == (6, 3, 3)
    assert summary.win_rate == 0.5
    assert summary.avg_win_pct == pytest.approx(3.5 / 3) and summary.avg_loss_pct == pytest.approx(-1.0)
    assert summary.profit_factor == pytest.approx(3.5 / 3)
    assert summary.expectancy_pct == pytest.approx(0.5 / 6) == summary.avg_net_pct
    # cumulative 1, 0.5, 2.5, 1, 0, 0.5: the peak 2.5 (3rd trade) falls to 0 (5th)
    assert cumulative(trades) == pytest.approx([1.0, 0.5, 2.5, 1.0, 0.0, 0.5])
    assert summary.max_drawdown_pct == pytest.approx(2.5)
    assert drawdown_span(trades) == (2, 4)


def test_a_record_without_a_loss_has_no_profit_factor_and_no_drawdown() -> None:
    summary = summarise([0.4, 1.2])
    assert summary.profit_factor is None and summary.max_drawdown_pct == 0.0 and summary.win_rate == 1.0
    assert drawdown_span([0.4, 1.2]) is None


def test_a_first_trade_loss_is_a_drawdown_from_zero() -> None:
    assert max_drawdown([-1.0, 3.0]) == 1.0 and drawdown_span([-1.0, 3.0]) == (-1, 0)


def test_a_break_even_trade_is_neither_win_nor_loss_but_counts() -> None:
    summary = summarise([0.0, 1.0])
    assert (summary.trades, summary.wins, summary.losses, summary.win_rate) == (2, 1, 0, 0.5)


def test_no_trades_no_rates() -> None:
    summary = summarise([])
    assert summary.trades == 0 and summary.win_rate is None and summary.expectancy_pct is None
    assert summary.max_drawdown_pct == 0.0


@given(results)
def test_drawdown_is_the_largest_fall_from_any_earlier_peak(trades: list[float]) -> None:
    curve = [0.0, *cumulative(trades)]
    brute = max((curve[i] - curve[j] for i in range(len(curve)) for j in range(i, len(curve))), default=0.0)
    assert max_drawdown(trades) == pytest.approx(brute, abs=1e-9)
    span = drawdown_span(trades)
    if span is not None:
        peak, trough = span
        assert curve[peak + 1] - curve[trough + 1] == pytest.approx(brute, abs=1e-9)


@given(results)
def test_expectancy_is_the_mean_and_win_rate_a_fraction(trades: list[float]) -> None:
    summary = summarise(trades)
    if trades:
        assert summary.expectancy_pct == pytest.approx(sum(trades) / len(trades), abs=1e-9)
        assert 0.0 <= summary.win_rate <= 1.0
        assert (summary.profit_factor is None) == (summary.losses == 0)


def test_r_multiple_divides_by_the_stop_distance_plus_costs() -> None:
    assert r_multiple(-1.32, 1.0, 0.32) == pytest.approx(-1.0)
    assert r_multiple(2.0, 0.0, 0.0) is None
