"""The expected value and the edge gate replayed on walk-forward signals (`traderai backtest --report`).

For the shipped recipe (direction model for the side, outcome model for the EV, the seed's
bracket), every signal the seed's rules publish is split as the signal path splits it:

- ``tradeable``: its EV >= MIN_EXPECTED_VALUE_PCT **and** the edge evidence for its (market, side)
  has ``mean - 2 s.e. > 0``. The evidence is what a manifest would have held at that moment: the
  realised net of the (market, side)'s EV-passing signals of EARLIER test blocks that had closed
  before this block started (block s.e.), never the block being traded;
- ``paper``: everything else, with its reasons (``negative_expected_value``, ``no_proven_edge``,
  ``protection_<name>``).

Protection locks are replayed with the signal step's own pure rule (`core.protections.market_locks`)
on the market's signals closed before each decision (paper ones too: the live guards read every
stored signal), with the Strategy's protection settings. A signal is decided at its candle's close;
a signal closes at the close of its exit candle.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from traderai.contracts import TIMEFRAME_SECONDS, Strategy
from traderai.core.protections import Close, market_locks
from traderai.research.search import GEOMETRIES, PanelResult, SignalTable
from traderai.research.stats import BlockMean, block_length_ms, block_mean, calibration_figures

SIDES = {"LONG": True, "SHORT": False}


def evidence_passes(evidence: BlockMean | None) -> bool:
    """The gate's bound: proven only with a finite s.e. and mean - 2 s.e. above zero."""
    return evidence is not None and math.isfinite(evidence.se) and evidence.mean - 2.0 * evidence.se > 0.0


def gate(table: SignalTable, fold_starts_ms: list[int], step_ms: int, block_ms: int,
         min_ev_pct: float) -> tuple[np.ndarray, list[list[str]]]:
    """(tradeable mask, reasons per signal): EV filter and the evidence of earlier closed blocks."""
    n = table.net_pct.shape[0]
    passes_ev = np.isfinite(table.ev_pct) & (table.ev_pct >= min_ev_pct)
    closed_ms = table.open_time_ms + (table.exit_offset + 1) * step_ms
    tradeable = np.zeros(n, dtype=bool)
    reasons: list[list[str]] = [[] for _ in range(n)]
    edges = [*fold_starts_ms, np.iinfo(np.int64).max]
    for start, end in itertools.pairwise(edges):
        in_block = (table.open_time_ms >= start) & (table.open_time_ms < end)
        for symbol in set(table.symbol[in_block].tolist()):
            for long in (True, False):
                mine = in_block & (table.symbol == symbol) & (table.long == long)
                past = ((table.symbol == symbol) & (table.long == long) & passes_ev & (closed_ms <= start)
                        & (table.open_time_ms >= edges[0]))
                evidence = block_mean(table.net_pct[past], table.open_time_ms[past], block_ms) if past.any() else None
                proven = evidence_passes(evidence)
                tradeable[mine] = passes_ev[mine] & proven
                for i in np.flatnonzero(mine):
                    if not passes_ev[i]:
                        reasons[i].append("negative_expected_value")
                    if not proven:
                        reasons[i].append("no_proven_edge")
    return tradeable, reasons


def protection_locks(table: SignalTable, step_ms: int, settings: Any) -> tuple[list[list[str]], list[dict[str, str]]]:
    """Per signal, the protections locking its market when it was decided; and every distinct lock engaged."""
    import bisect
    from datetime import UTC, datetime, timedelta

    def when(ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, tz=UTC)

    locked: list[list[str]] = [[] for _ in range(table.net_pct.shape[0])]
    engaged: dict[tuple[str, str, str], dict[str, str]] = {}
    history = timedelta(hours=settings.history_hours)
    for symbol in sorted(set(table.symbol.tolist())):
        mine = np.flatnonzero(table.symbol == symbol)
        closed_ms = table.open_time_ms[mine] + (table.exit_offset[mine] + 1) * step_ms
        order = np.argsort(closed_ms, kind="stable")
        closes = [Close(str(int(mine[i])), when(int(closed_ms[i])),
                        bool(table.stopped[mine[i]] and table.net_pct[mine[i]] < 0), float(table.net_pct[mine[i]]))
                  for i in order]
        times = [c.closed_at for c in closes]
        for i in mine:
            now = when(int(table.open_time_ms[i]) + step_ms)
            recent = closes[bisect.bisect_left(times, now - history):bisect.bisect_right(times, now)]
            for lock in market_locks(symbol, recent, now, settings):
                locked[i].append(lock.protection)
                engaged[(symbol, lock.protection, lock.engaged_at)] = lock.to_dict()
    return locked, sorted(engaged.values(), key=lambda d: (d["engaged_at"], d["symbol"]))


def edge_report(panel: PanelResult, geometry: str, table: SignalTable, strategy: Strategy) -> dict[str, Any]:
    """Per market: EV calibration (deciles with block s.e.), tradeable vs paper, protection locks, the figures."""
    step_ms = TIMEFRAME_SECONDS[panel.timeframe] * 1000
    block_ms = block_length_ms(GEOMETRIES[geometry].life(panel.timeframe) * step_ms)
    min_ev_pct = strategy.min_expected_value_pct
    tradeable, reasons = gate(table, panel.fold_starts_ms, step_ms, block_ms, min_ev_pct)
    locked, locks = protection_locks(table, step_ms, strategy.protections)
    was_locked = np.array([bool(names) for names in locked], dtype=bool)
    for i, names in enumerate(locked):
        if names:
            tradeable[i] = False
            reasons[i].extend(names)
    markets: dict[str, Any] = {}
    for symbol in sorted(panel.rows.symbols):  # every market, also one the rules gave no signal
        mine = table.symbol == symbol
        t, p = mine & tradeable, mine & ~tradeable
        trade_stats = block_mean(table.net_pct[t], table.open_time_ms[t], block_ms)
        paper_stats = block_mean(table.net_pct[p], table.open_time_ms[p], block_ms)
        reason_counts: dict[str, int] = {}
        for row in np.flatnonzero(p):
            for reason in reasons[row]:
                reason_counts[reason] = reason_counts.get(reason, 0) + 1
        locked_stats = block_mean(table.net_pct[mine & was_locked], table.open_time_ms[mine & was_locked], block_ms)
        free_stats = block_mean(table.net_pct[mine & ~was_locked], table.open_time_ms[mine & ~was_locked], block_ms)
        # The figure: tradeable mean + 2 s.e. >= 0, or none tradeable and the decisions say why
        # (no_proven_edge); a market the rules gave no signal at all cannot have done harm.
        no_harm = (trade_stats.n == 0 and (paper_stats.n == 0 or reason_counts.get("no_proven_edge", 0) > 0)) or (
            trade_stats.n > 0 and math.isfinite(trade_stats.se) and trade_stats.mean + 2 * trade_stats.se >= 0)
        markets[symbol] = {
            "calibration": calibration_figures(table.ev_pct[mine], table.net_pct[mine], table.open_time_ms[mine],
                                               block_ms),
            "mean_p_stop": float(np.mean(table.p_stop[mine])) if mine.any() else float("nan"),
            "tradeable": trade_stats.as_dict(), "paper": paper_stats.as_dict(), "paper_reasons": reason_counts,
            "while_locked": locked_stats.as_dict(), "while_unlocked": free_stats.as_dict(),
            "no_harm": bool(no_harm)}
    return {"timeframe": panel.timeframe, "features": panel.feature_set, "geometry": geometry,
            "min_ev_pct": min_ev_pct, "block_days": block_ms / 86_400_000, "markets": markets,
            "protections": {"simulated": True, "settings": _settings_dict(strategy.protections),
                            "locks": locks, "locked_signals": int(sum(1 for names in locked if names))},
            "all": calibration_figures(table.ev_pct, table.net_pct, table.open_time_ms, block_ms)}


def _settings_dict(settings: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(settings)
