"""Walk-forward speed and memory: training + evaluation for one market over its full history.

    .venv/bin/python bench/walkforward_bench.py [--data /work/shared/data/BTC_USDT-15m.csv.gz] [--threads 1]

Two runs, each timed from the CSV to the finished tables: the shipped recipe alone (direction label,
logistic + isotonic, 5 folds) and the full comparison (GBDT and logistic x direction and
triple-barrier x raw/isotonic/sigmoid, 5 folds). Peak memory: tracemalloc's peak of Python and
numpy allocations, and the process's maximum resident set size (getrusage). Target: <= 60 s.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc
from pathlib import Path

from traderai.market.csv import bundled_candles_path, load_candles_csv, symbol_from_file_name
from traderai.research.walkforward import WalkForwardConfig, prepare_market, walk_forward

DEFAULT = Path("/work/shared/data/BTC_USDT-15m.csv.gz")
TARGET_SECONDS = 60.0


def run(path: Path, symbol: str, config: WalkForwardConfig, label: str) -> None:
    tracemalloc.start()
    tick = time.perf_counter()
    candles = load_candles_csv(path, symbol)
    frame = prepare_market(candles, labelings=config.labelings)
    result = walk_forward([frame], config)
    seconds = time.perf_counter() - tick
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{label}: {len(candles):,} candles, {len(result.overall)} table rows, {seconds:.1f} s "
          f"(fitting {result.seconds['fit']:.1f} s) -> {'OK' if seconds <= TARGET_SECONDS else 'OVER'} "
          f"the {TARGET_SECONDS:.0f} s target; tracemalloc peak {peak / 1e6:.0f} MB, max RSS so far {rss_mb:.0f} MB")
    for labeling in config.labelings:
        best = max((r for r in result.overall if r["labeling"] == labeling and "+" in r["model"]),
                   key=lambda r: r["brier_skill"])
        print(f"    {labeling}: best calibrated {best['model']} AUC {best['auc']:.4f}, "
              f"Brier skill {best['brier_skill']:+.5f} (persistence "
              f"{result.row(labeling, 'persistence')['brier_skill']:+.5f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT if DEFAULT.is_file() else None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.data is None:
        path, symbol = bundled_candles_path("BTC/USDT"), "BTC/USDT"
        print("note: /work/shared data not found; using the bundled 180 days")
    else:
        path = args.data
        symbol = symbol_from_file_name(path) or "BTC/USDT"
    run(path, symbol, WalkForwardConfig(families=("logistic",), labelings=("direction",), calibrations=("isotonic",),
                                        threads=args.threads), "shipped recipe (direction, logistic+isotonic)")
    run(path, symbol, WalkForwardConfig(threads=args.threads),
        "full comparison (2 families x 2 labelings x 3 calibrations)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
