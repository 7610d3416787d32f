"""Issue 12's figures to reach: is the expected value calibrated, does the default do harm, Brier skill.

    .venv/bin/python bench/edge_bench.py [--data BTC_USDT-15m.csv.gz --data ...] [--folds 5] [--json PATH]

Walk-forward of the shipped recipe (15m, the 18 features, the default Strategy's bracket): the
direction model picks the side, the outcome model gives each signal's EV, and `research.edge`
replays the EV filter, the edge gate (evidence from earlier closed test blocks only) and the
protections exactly as `traderai backtest --report` does. Per market: |mean predicted EV - mean
realised| in block standard errors (target <= 2 where >= 30 signals), the Spearman correlation of the
EV deciles (target >= 0.5 where >= 300 signals), whether the default did harm (tradeable mean + 2 s.e.
>= 0, or none tradeable), and the out-of-sample Brier skill of both models (target >= 0). Without
--data it uses the bundled 180-day candles (and says so): few signals there, so several figures are
not judged. Not a timing benchmark: the figures are statistics, real on real candles.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from figures import INFO, Figure, emit, verdict

from traderai.contracts import Strategy
from traderai.market.csv import bundled_candles_path, load_candles_csv, symbol_from_file_name
from traderai.research.edge import edge_report
from traderai.research.search import SearchConfig, direction_brier_skill, outcome_brier_skill, run_panel, signals_of

SECTION = "8. Edge (issue 12)"
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT")


def figures_of(report: dict, outcome_skill: dict, direction_skill: dict, source: str) -> list[Figure]:
    """The issue's figures, one row per market and figure."""
    rows = []
    for symbol, market in report["markets"].items():
        c = market["calibration"]
        n = c.get("n", 0)
        if n >= 30 and math.isfinite(c.get("gap_in_se", math.nan)):
            rows.append(Figure(SECTION, f"{symbol} EV calibration", f"{c['gap_in_se']:.2f} s.e.", "≤ 2 s.e.",
                               verdict(c["gap_in_se"] <= 2.0),
                               f"{n} signals: predicted {c['mean_predicted']:+.3f}% vs realised "
                               f"{c['mean_realised']:+.3f}% ± {c['se']:.3f} (block s.e.); {source}"))
        else:
            rows.append(Figure(SECTION, f"{symbol} EV calibration", f"{n} signals", "≤ 2 s.e. (≥ 30 signals)", INFO,
                               "too few signals to judge"))
        rho = c.get("decile_spearman", math.nan)
        rows.append(Figure(SECTION, f"{symbol} EV decile Spearman", "–" if not math.isfinite(rho) else f"{rho:+.2f}",
                           "≥ 0.5 (≥ 300 signals)", verdict(rho >= 0.5) if n >= 300 else INFO,
                           f"{n} signals" + ("" if n >= 300 else ": not judged below 300")))
        t = market["tradeable"]
        harm_note = (f"{t['n']} tradeable, {market['paper']['n']} paper "
                     f"({', '.join(f'{k} {v}' for k, v in sorted(market['paper_reasons'].items())) or 'no reasons'})")
        rows.append(Figure(SECTION, f"{symbol} default does no harm",
                           "none tradeable" if t["n"] == 0 else f"{t['mean']:+.3f} + 2 × {t['se']:.3f}",
                           "mean + 2 s.e. ≥ 0, or none tradeable", verdict(market["no_harm"]), harm_note))
        sides = outcome_skill.get(symbol, {})
        if sides:
            worst = min(sides.values())
            rows.append(Figure(SECTION, f"{symbol} outcome Brier skill", f"{worst:+.5f}", "≥ 0", verdict(worst >= 0),
                               "worse side; " + ", ".join(f"{k} {v:+.5f}" for k, v in sides.items())))
        if symbol in direction_skill:
            skill = direction_skill[symbol]
            rows.append(Figure(SECTION, f"{symbol} direction Brier skill", f"{skill:+.5f}", "≥ 0", verdict(skill >= 0),
                               "vs the training up-rate"))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="append", type=Path, help="15m candle CSVs (default: the bundled slices)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.data:
        markets = [load_candles_csv(p, symbol_from_file_name(p) or p.name) for p in args.data]
        source = ", ".join(p.name for p in args.data)
    else:
        markets = [load_candles_csv(bundled_candles_path(s), s) for s in SYMBOLS]
        source = "bundled 180 days"
        print("note: no --data; using the bundled 180-day candles", file=sys.stderr)
    strategy = Strategy()
    config = SearchConfig(timeframes=("15m",), feature_sets=("base",), geometries=("seed",), folds=args.folds)
    panel = run_panel(markets, "15m", "base", config, strategy)
    report = edge_report(panel, "seed", signals_of(panel, "seed", strategy), strategy)
    emit(figures_of(report, outcome_brier_skill(panel, "seed"), direction_brier_skill(panel), source), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
