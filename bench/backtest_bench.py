"""Backtest speed: one year of 15m candles of one market through the rules and the outcome rule.

    .venv/bin/python bench/backtest_bench.py [--data /work/shared/data/SOL_USDT-15m.csv.gz] [--repeat 5]

Probabilities come from the walk-forward's out-of-sample predictions (logistic + isotonic, the
shipped recipe) over the market's whole history, so the year is traded on honest probabilities;
that walk-forward is timed separately (bench/walkforward_bench.py is its benchmark). Timed here:
the filters for every candle of the year, the play-out of every candidate, the overlap rule and
the summary tables. Target: <= 2 s. Without --data it uses the bundled 180 days (and says so).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from traderai.contracts import Strategy
from traderai.market.csv import bundled_candles_path, load_candles_csv, symbol_from_file_name
from traderai.research.backtest import backtest_market, report_tables
from traderai.research.walkforward import MarketFrame, WalkForwardConfig, prepare_market, walk_forward

DEFAULT = Path("/work/shared/data/SOL_USDT-15m.csv.gz")
YEAR_CANDLES = 365 * 96
TARGET_SECONDS = 2.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT if DEFAULT.is_file() else None)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.data is None:
        path, symbol = bundled_candles_path("SOL/USDT"), "SOL/USDT"
        print("note: /work/shared data not found; using the bundled 180 days (not a full year)")
    else:
        path = args.data
        symbol = symbol_from_file_name(path) or "SOL/USDT"
    candles = load_candles_csv(path, symbol)
    tick = time.perf_counter()
    frame = prepare_market(candles, labelings=("direction",))
    prepare_s = time.perf_counter() - tick
    tick = time.perf_counter()
    result = walk_forward([frame], WalkForwardConfig(families=("logistic",), labelings=("direction",),
                                                     calibrations=("isotonic",)))
    walk_s = time.perf_counter() - tick
    probability = np.full(len(candles), np.nan)
    probability[result.rows.row] = result.oos[("direction", "logistic+isotonic")]

    # The last year, with the candles before it as warm-up for ATR/volume (already computed on the full history).
    start = max(0, len(candles) - YEAR_CANDLES)
    year = MarketFrame(candles=candles.slice(start, len(candles)), features=frame.features[start:],
                       atr=frame.atr[start:], quote_volume_24h=frame.quote_volume_24h[start:],
                       labels={k: v[start:] for k, v in frame.labels.items()})
    year_p = probability[start:]
    strategy = Strategy()
    timings = []
    for _ in range(args.repeat):
        tick = time.perf_counter()
        trades, counts = backtest_market(year, year_p, strategy)
        tables = report_tables(trades, strategy)
        timings.append(time.perf_counter() - tick)
    overall = tables["overall"]
    print(f"market {symbol}: {len(year.candles):,} candles of 15m in the timed year "
          f"({np.isfinite(year_p).sum():,} with an out-of-sample probability)")
    print(f"features + labels, full history ({len(candles):,} candles): {prepare_s:.2f} s; "
          f"walk-forward for the probabilities: {walk_s:.1f} s (not part of the backtest timing)")
    print(f"candidates accepted by the filters: {counts['accepted_by_rules']:,}; signals traded: {counts['signals']:,}")
    print(f"backtest of one year: median {statistics.median(timings):.3f} s, best {min(timings):.3f} s "
          f"over {args.repeat} runs (target <= {TARGET_SECONDS:.0f} s) -> "
          f"{'OK' if statistics.median(timings) <= TARGET_SECONDS else 'TOO SLOW'}")
    if overall.get("signals"):
        print(f"year result: expectancy {overall['expectancy_net_pct']:+.3f}% net per signal "
              f"(± {overall['stderr_net_pct']:.3f}), TP1 hit {overall['tp1_rate']:.1%}, "
              f"stopped {overall['stop_rate']:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
