"""`traderai tick`: run pipeline ticks on this machine (moto in-process, replayed candles) and print
what happened: predictions, accepted signals, rejections with their reasons."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from traderai.contracts import parse_iso_utc
from traderai.local.pipeline import embedded_pipeline


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "tick", help="run predict -> signal ticks locally over replayed candles (no AWS, no Docker)",
        description="Each tick invokes the real PredictFunction handler with a scheduled event, hands its "
                    "reply to SignalFunction as the Lambda destination would, and prints the outcome.")
    parser.add_argument("--start", default="2025-04-07T13:30:00Z", help="first tick (UTC, ISO-8601)")
    parser.add_argument("--ticks", type=int, default=12, help="number of 5-minute ticks (default 12)")
    parser.add_argument("--markets", default="BTC/USDT,ETH/USDT,SOL/USDT,BNB/USDT")
    parser.add_argument("--market-list", type=Path, metavar="FILE",
                        help="read the markets from this list as a deployment with MarketListKey does: the file is "
                             "put in the local bucket and every tick's plan reads it from there (docs/markets.md)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    start = parse_iso_utc(args.start, "--start")
    market_list = args.market_list.read_bytes() if args.market_list else None
    with embedded_pipeline(args.markets, market_list=market_list) as pipeline:
        for index in range(args.ticks):
            tick = start + timedelta(minutes=5 * index)
            reply, summary = pipeline.tick(tick)
            _print_tick(tick, reply, summary, pipeline.local)
    return 0


def _print_tick(tick: datetime, reply: dict[str, Any], summary: dict[str, Any] | None, local: Any) -> None:
    line = f"{tick.astimezone(UTC):%Y-%m-%d %H:%M} UTC  predictions={reply['count']}"
    if reply["failures"]:
        line += f"  failures={[(f['symbol'], f['reason']) for f in reply['failures']]}"
    if summary is None:
        print(line + "  (no candle closed since the last tick)")
        return
    print(line + f"  accepted={summary['accepted']}  rejected={json.dumps(summary['rejected'])}")
    for key in summary["log_keys"]:  # one decisions object per shard of the tick
        decisions = local.s3.get_object(Bucket=local.bucket, Key=key)["Body"].read().decode()
        for decision in map(json.loads, decisions.splitlines()):
            print(f"    {decision['message']}")
