"""`traderai` command line: one subcommand per function, registered in SUBCOMMANDS.

To add a subcommand, write `_add_<name>(subparsers)` that defines its arguments and sets
`func=_run_<name>`, then list it in SUBCOMMANDS. Heavy imports (numpy, scikit-learn, boto3)
happen inside the `_run_*` functions, so `traderai --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from traderai.keys_cli import add_keys_parser
from traderai.local import command, tick
from traderai.markets_cli import add_markets_parser
from traderai.models_cli import add_models_parser, add_retrain_parser
from traderai.notify_cli import add_notify_parser
from traderai.research.commands import add_backtest_parser, add_evaluate_parser

AddSubcommand = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


class _Progress:
    """Timestamped progress lines on stderr (stdout stays clean for the result)."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)


# --- train ----------------------------------------------------------------------------------------

def _add_train(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "train", help="train the up-move model and write/publish it",
        description="Fit one model on the given candle files (pooled; features are scale-free) and "
                    "write it per market in the registry layout; --bucket also publishes it to S3.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", action="append", type=Path, metavar="CSV",
                        help="candle CSV (gzip or plain); repeat to pool markets. The market is read from a "
                             "file name like BTC_USDT-15m.csv.gz, else --symbol is used")
    source.add_argument("--bundled", action="store_true",
                        help="regenerate the models shipped in the package from the bundled candles")
    parser.add_argument("--symbol", action="append", metavar="BASE/QUOTE",
                        help="market(s) to publish the model for (repeatable; default: the data's markets)")
    parser.add_argument("--timeframe", default="15m")
    parser.add_argument("--horizon", type=int, default=4,
                        help="label horizon in candles (default 4 = 1h at 15m)")
    parser.add_argument("--kind", choices=("gbdt", "logistic"), default="logistic",
                        help="logistic (default: won the walk-forward, docs/model-quality.md) or gbdt")
    parser.add_argument("--labeling", choices=("direction", "triple_barrier"), default="direction")
    parser.add_argument("--calibration", choices=("isotonic", "sigmoid", "none"), default="isotonic",
                        help="fitted on a slice after the training slice (default isotonic)")
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="last part of the calendar held out as the unseen test stretch")
    parser.add_argument("--expires-days", type=float, default=90.0)
    parser.add_argument("--out", type=Path, help="output directory (registry layout); default ./models")
    parser.add_argument("--bucket", help="also publish to this S3 bucket (moves each market's latest.json)")
    parser.add_argument("--prefix", default="models", help="S3 key prefix (default: models)")
    parser.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    import json
    from datetime import UTC, datetime

    from traderai.market.csv import bundled_candles_path, load_candles_csv, symbol_from_file_name
    from traderai.settings import normalize_symbol
    from traderai.train import TrainConfig, train, write_local  # numpy and the training stack: `traderai train` only

    progress = _Progress()
    if args.bundled:
        symbols = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT"]
        files = [(bundled_candles_path(s, args.timeframe), s) for s in symbols]
        out = args.out or Path(__file__).parent / "data" / "models"
    else:
        fallback = args.symbol[0] if args.symbol and len(args.symbol) == 1 else None
        files = []
        for path in args.data:
            symbol = symbol_from_file_name(path) or fallback
            if symbol is None:
                print(f"error: cannot tell the market of {path}; name it BASE_QUOTE-tf.csv[.gz] or pass "
                      f"one --symbol", file=sys.stderr)
                return 2
            files.append((path, symbol))
        out = args.out or Path("models")
    publish_for = [normalize_symbol(s) for s in (args.symbol or [s for _, s in files])]

    markets = []
    for path, symbol in files:
        progress(f"loading {path.name} as {symbol}")
        markets.append(load_candles_csv(path, symbol, args.timeframe))
    config = TrainConfig(horizon=args.horizon, kind=args.kind, test_fraction=args.test_fraction,
                         expires_days=args.expires_days, labeling=args.labeling,
                         calibration=None if args.calibration == "none" else args.calibration)
    result = train(markets, publish_for, args.timeframe, config, datetime.now(UTC).replace(microsecond=0),
                   progress=progress, sources=[path.name for path, _ in files])
    written = write_local(result, out, replace=args.bundled)
    progress(f"wrote {len(written)} files under {out}")
    if args.bucket:
        import boto3

        from traderai.adapters.model_registry import publish

        s3 = boto3.client("s3")
        for manifest in result.manifests.values():
            pointer = publish(s3, args.bucket, args.prefix, result.artifact, manifest)
            progress(f"published s3://{args.bucket}/{pointer['key']}")
    summary = {"models": {s: m["model_id"] for s, m in result.manifests.items()},
               "test": result.metrics["test"], "baseline": result.metrics["baseline"], "out": str(out)}
    if "outcome" in result.metrics:  # the outcome model's Brier skill and each market's out-of-sample evidence
        outcome_test = result.metrics["outcome"]["test"]
        summary["outcome_brier_skill"] = {side: m["brier_skill"] for side, m in outcome_test.items()}
        summary["edge_evidence"] = {s: m.get("edge_evidence") for s, m in result.manifests.items()}
    print(json.dumps(summary, indent=2))
    return 0


# --- registry -------------------------------------------------------------------------------------

SUBCOMMANDS: dict[str, AddSubcommand] = {
    "train": _add_train,
    "tick": tick.add_parser,
    "local": command.add_parser,
    "keys": add_keys_parser,
    "markets": add_markets_parser,
    "notify": add_notify_parser,
    "evaluate": add_evaluate_parser,
    "backtest": add_backtest_parser,
    "models": add_models_parser,
    "retrain": add_retrain_parser,
}
"""name -> function adding the subparser (which sets `func`); other subcommands register here."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="traderai", description="TraderAI: crypto trading signals on AWS.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS.values():
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `traderai` script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
