"""`traderai evaluate` and `traderai backtest`: the walk-forward table and the cost-aware backtest.

    traderai evaluate --data BTC_USDT-15m.csv.gz --data ETH_USDT-15m.csv.gz ... [--report DIR]
    traderai backtest --data ... --report DIR [--labeling direction] [--model logistic+isotonic]
    (--bundled instead of --data uses the candles shipped in the package)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from traderai.contracts import Strategy
from traderai.market.csv import bundled_candles_path, load_candles_csv, symbol_from_file_name
from traderai.research.backtest import backtest_market, concat, report_tables
from traderai.research.edge import edge_report
from traderai.research.report import write_backtest_report, write_evaluation_report, write_search_report
from traderai.research.search import SearchConfig, run_panel, run_search, signals_of
from traderai.research.walkforward import (
    CALIBRATIONS,
    FAMILIES,
    WalkForwardConfig,
    prepare_market,
    walk_forward,
    winner,
)

BUNDLED_SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT")
SHIPPED_LABELING = "direction"
SHIPPED_MODEL = "logistic+isotonic"
"""What won the walk-forward on the full data (docs/model-quality.md); the backtest's default."""


class _Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", action="append", type=Path, metavar="CSV",
                        help="candle CSV named like BTC_USDT-15m.csv.gz (gzip or plain); repeat to pool markets")
    source.add_argument("--bundled", action="store_true", help="use the 180-day candles bundled in the package")
    parser.add_argument("--timeframe", default="15m")
    parser.add_argument("--folds", type=int, default=5, help="walk-forward folds (default 5)")
    parser.add_argument("--test-span", type=float, default=0.5,
                        help="share of the calendar covered by the test blocks (default 0.5)")
    parser.add_argument("--threads", type=int, default=1, help="OpenMP threads for the GBDT (default 1)")


def add_evaluate_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `traderai evaluate`."""
    parser = subparsers.add_parser(
        "evaluate", help="walk-forward evaluation: families x labelings x calibrations vs baselines",
        description="Expanding-window walk-forward (purged, calibrated on a slice after training) of the GBDT and "
                    "logistic models on the direction and triple-barrier labels, against the base-rate and "
                    "persistence baselines. Prints the overall table; --report also writes Markdown + PNG + JSON.")
    _add_data_arguments(parser)
    parser.add_argument("--family", action="append", choices=("gbdt", "logistic"), help="default: both")
    parser.add_argument("--labeling", action="append", choices=("direction", "triple_barrier"), help="default: both")
    parser.add_argument("--report", type=Path, metavar="DIR", help="write evaluation.md, calibration.png, "
                                                                    "evaluation.json here")
    parser.add_argument("--search", action="store_true",
                        help="instead: look for an edge over the bounded grid (timeframes 15m/1h/4h x features "
                             "base/extended x 3 brackets x direction/outcome model), realised net after costs, "
                             "block s.e., Bonferroni over the configurations; --report writes search.md/json")
    parser.set_defaults(func=run_evaluate)


def add_backtest_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `traderai backtest`."""
    parser = subparsers.add_parser(
        "backtest", help="backtest the signal rules on walk-forward out-of-sample probabilities, net of costs",
        description="Walk-forward out-of-sample probabilities -> decide() filters (default Strategy) -> TP1/TP2/TP3 "
                    "partial exits, SL, expiry, costs. Writes backtest.md with calibration, equity and "
                    "expected-vs-realised plots.")
    _add_data_arguments(parser)
    parser.add_argument("--labeling", choices=("direction", "triple_barrier"), default=SHIPPED_LABELING)
    parser.add_argument("--model", default=SHIPPED_MODEL,
                        help="gbdt | logistic, optionally +isotonic or +sigmoid (default: %(default)s)")
    parser.add_argument("--report", type=Path, metavar="DIR", required=True)
    parser.set_defaults(func=run_backtest)


def _symbol_of(path: Path) -> str:
    symbol = symbol_from_file_name(path)
    if symbol is None:
        raise SystemExit(f"error: cannot tell the market of {path}; name it BASE_QUOTE-tf.csv[.gz]")
    return symbol


def load_frames(args: argparse.Namespace, progress: _Progress) -> tuple[list[Any], list[str]]:
    """Candles of every market given on the command line, prepared (features, labels)."""
    files = ([(bundled_candles_path(s, args.timeframe), s) for s in BUNDLED_SYMBOLS] if args.bundled
             else [(p, _symbol_of(p)) for p in args.data])
    frames = []
    for path, symbol in files:
        progress(f"loading {path.name} as {symbol}")
        frames.append(prepare_market(load_candles_csv(path, symbol, args.timeframe)))
    return frames, [("bundled " if args.bundled else "") + p.name for p, _ in files]


def load_candles(args: argparse.Namespace, progress: _Progress) -> tuple[list[Any], list[str]]:
    """Raw candles of every market given on the command line (the search resamples them itself)."""
    files = ([(bundled_candles_path(s, args.timeframe), s) for s in BUNDLED_SYMBOLS] if args.bundled
             else [(p, _symbol_of(p)) for p in args.data])
    markets = []
    for path, symbol in files:
        progress(f"loading {path.name} as {symbol}")
        markets.append(load_candles_csv(path, symbol, args.timeframe))
    return markets, [("bundled " if args.bundled else "") + p.name for p, _ in files]


def run_search_command(args: argparse.Namespace) -> int:
    """`traderai evaluate --search`: the bounded grid; prints the verdict and every configuration (JSON)."""
    progress = _Progress()
    if args.timeframe != "15m":
        print("error: --search resamples 15m candles to 15m/1h/4h; give 15m candles", file=sys.stderr)
        return 2
    markets, sources = load_candles(args, progress)
    result = run_search(markets, SearchConfig(folds=args.folds, test_span=args.test_span), progress=progress)
    if args.report:
        progress(f"wrote {write_search_report(result, args.report, sources)}")
    print(json.dumps({"configurations": result.config.configurations, "verdict": result.verdict,
                      "winner": result.winner, "correction": result.correction,
                      "entries": [{k: v for k, v in e.items() if k not in ("per_market", "ev_calibration")}
                                  for e in result.entries]}, indent=1))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """Run the walk-forward and print the overall table (JSON on stdout)."""
    if args.search:
        return run_search_command(args)
    progress = _Progress()
    frames, sources = load_frames(args, progress)
    config = WalkForwardConfig(folds=args.folds, test_span=args.test_span, timeframe=args.timeframe,
                               families=tuple(args.family or FAMILIES), threads=args.threads,
                               labelings=tuple(args.labeling or ("direction", "triple_barrier")))
    result = walk_forward(frames, config, progress=progress)
    for row in result.overall:
        auc = row["auc"] if row["auc"] is not None else float("nan")
        progress(f"{row['labeling']:<15} {row['model']:<18} AUC {auc:.4f}  acc {row['accuracy']:.4f}  "
                 f"Brier {row['brier']:.5f}  log loss {row['log_loss']:.5f}  skill {row.get('brier_skill', 0):+.5f}")
    if args.report:
        progress(f"wrote {write_evaluation_report(result, args.report, sources)}")
    labeling, model = winner(result)
    print(json.dumps({"winner": {"labeling": labeling, "model": model}, "overall": result.overall,
                      "folds": result.folds, "seconds": result.seconds}, indent=1))
    return 0


def run_backtest(args: argparse.Namespace) -> int:
    """Walk-forward for one labeling/model, then the backtest of its OOS probabilities; prints the summary."""
    import numpy as np

    family, _, calibration = args.model.partition("+")
    if family not in ("gbdt", "logistic") or calibration not in ("", *CALIBRATIONS):
        print(f"error: --model {args.model!r} is not gbdt|logistic[+isotonic|+sigmoid]", file=sys.stderr)
        return 2
    progress = _Progress()
    frames, sources = load_frames(args, progress)
    config = WalkForwardConfig(folds=args.folds, test_span=args.test_span, timeframe=args.timeframe,
                               families=(family,), labelings=(args.labeling,), threads=args.threads,
                               calibrations=(calibration,) if calibration else ())
    result = walk_forward(frames, config, progress=progress)
    oos = result.oos[(args.labeling, args.model)]
    strategy = Strategy()
    parts, counts = [], {}
    tick = time.perf_counter()
    for index, frame in enumerate(frames):
        probability = np.full(len(frame.candles), np.nan)
        mine = result.rows.market == index
        probability[result.rows.row[mine]] = oos[mine]
        trades, counts[frame.symbol] = backtest_market(frame, probability, strategy)
        parts.append(trades)
    trades = concat(parts)
    seconds = time.perf_counter() - tick
    tables = report_tables(trades, strategy)
    edge = _edge(args, frames, strategy, progress)
    path = write_backtest_report(result, args.labeling, args.model, trades, counts, tables, strategy, args.report,
                                 sources, edge)
    progress(f"backtest {seconds:.2f} s for {len(trades)} signals; wrote {path}")
    print(json.dumps({"labeling": args.labeling, "model": args.model, "counts": counts, "overall": tables["overall"],
                      "by_symbol": tables["by_symbol"], "by_confidence": tables["by_confidence"],
                      "backtest_seconds": seconds}, indent=1))
    return 0


def _edge(args: argparse.Namespace, frames: list[Any], strategy: Any, progress: _Progress) -> dict[str, Any]:
    """The expected-value section: the shipped recipe's outcome model on the seed's bracket, gate replayed."""
    config = SearchConfig(timeframes=(args.timeframe,), feature_sets=("base",), geometries=("seed",),
                          folds=args.folds, test_span=args.test_span)
    panel = run_panel([f.candles for f in frames], args.timeframe, "base", config, strategy, progress)
    return edge_report(panel, "seed", signals_of(panel, "seed", strategy), strategy)
