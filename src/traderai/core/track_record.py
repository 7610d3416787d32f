"""Track-record arithmetic over realised results: win rate, expectancy, profit factor, drawdown.

Pure: plain floats in (each closed trade's realised net profit, % of notional, costs included), plain
floats out. Every trade counts with the same notional, so the cumulative realised net is the sum of the
per-trade percentages (what a follower putting the same stake on every signal would have realised).

Definitions (stated once here, repeated by `DEFINITIONS` for the API and the page):

- win: realised net > 0; loss: realised net < 0; a trade at exactly 0 is neither, but counts in `trades`.
- win rate = wins / trades.
- expectancy = win rate x average win + loss rate x average loss (average loss is negative), which is the
  average realised net per trade; expectancy in R divides each trade's result by what its stop risked
  (stop distance % + costs %), so trades with near and far stops compare.
- profit factor = sum of wins / |sum of losses|; None when there is no loss (it would be infinite).
- maximum drawdown = the largest fall of the cumulative realised net from a running peak, the peak
  starting at 0 (before the first trade), in percentage points of notional.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFINITIONS = {
    "win_rate": "wins / closed priced signals; a win is a realised net profit > 0 (after costs)",
    "avg_realised_net_pct": "mean realised net profit of the closed priced signals, % of notional, after costs",
    "expectancy_pct": "win rate x average win + loss rate x average loss: the mean realised net per signal",
    "expectancy_r": "mean of realised net / (stop distance % + costs %): profit per unit of risk taken",
    "profit_factor": "sum of wins / |sum of losses| (null when there is no loss)",
    "max_drawdown_pct": "largest fall of the cumulative realised net (same notional per signal) from its "
                        "running peak, peak starting at 0, in percentage points",
    "window": "signals CREATED in the window; outcomes as known now",
}


@dataclass(frozen=True, slots=True)
class Summary:
    """What a list of realised results says: counts, averages, expectancy, profit factor, drawdown."""

    trades: int
    wins: int
    losses: int
    win_rate: float | None
    avg_net_pct: float | None
    avg_win_pct: float | None
    avg_loss_pct: float | None
    expectancy_pct: float | None
    profit_factor: float | None
    total_net_pct: float
    max_drawdown_pct: float


def cumulative(results: Sequence[float]) -> list[float]:
    """Running sum of the results in order (the equity curve, in percentage points of notional)."""
    total, curve = 0.0, []
    for result in results:
        total += result
        curve.append(total)
    return curve


def max_drawdown(results: Sequence[float]) -> float:
    """Largest peak-to-trough fall of the cumulative sum, the peak starting at 0; 0.0 when it never falls."""
    peak = total = worst = 0.0
    for result in results:
        total += result
        peak = max(peak, total)
        worst = max(worst, peak - total)
    return worst


def drawdown_span(results: Sequence[float]) -> tuple[int, int] | None:
    """Indexes (peak, trough) of the maximum drawdown in the results (peak -1: before the first trade)."""
    peak = total = worst = 0.0
    peak_at, span = -1, None
    for index, result in enumerate(results):
        total += result
        if total > peak:
            peak, peak_at = total, index
        if peak - total > worst:
            worst, span = peak - total, (peak_at, index)
    return span


def summarise(results: Sequence[float]) -> Summary:
    """The Summary of realised results in time order (the order only matters for the drawdown)."""
    wins = [r for r in results if r > 0]
    losses = [r for r in results if r < 0]
    n = len(results)
    if not n:
        return Summary(0, 0, 0, None, None, None, None, None, None, 0.0, 0.0)
    avg_win = sum(wins) / len(wins) if wins else None
    avg_loss = sum(losses) / len(losses) if losses else None
    expectancy = len(wins) / n * (avg_win or 0.0) + len(losses) / n * (avg_loss or 0.0)
    return Summary(
        trades=n, wins=len(wins), losses=len(losses), win_rate=len(wins) / n, avg_net_pct=sum(results) / n,
        avg_win_pct=avg_win, avg_loss_pct=avg_loss, expectancy_pct=expectancy,
        profit_factor=sum(wins) / -sum(losses) if losses else None,
        total_net_pct=sum(results), max_drawdown_pct=max_drawdown(results))


def r_multiple(realised_net_pct: float, stop_distance_pct: float, costs_pct: float) -> float | None:
    """A result in units of what the stop risked (stop distance + costs, % of notional); None if that is 0."""
    risk = stop_distance_pct + costs_pct
    return realised_net_pct / risk if risk > 0 else None
