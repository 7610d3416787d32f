"""`traderai tick`: run pipeline ticks on this machine (moto in-process, replayed candles) and print
what happened: predictions, accepted signals, rejections with their reasons."""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "tick", help="run predict -> signal ticks locally over replayed candles (no AWS, no Docker)",
        description="Each tick invokes the real PredictFunction handler with a scheduled event, hands its "
                    "reply to SignalFunction as the Lambda destination would, and prints the outcome.")
    parser.add_argument("--start", default="2025-04-07T13:30:00Z", help="first tick (UTC, ISO-8601)")
    parser.add_argument("--ticks", type=int, default=12, help="number of 5-minute ticks (default 12)")
    parser.add_argument("--markets", default="BTC/USDT,ETH/USDT,SOL/USDT,BNB/USDT")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import boto3
    from moto import mock_aws

    from traderai import runtime
    from traderai.contracts import parse_iso_utc
    from traderai.local.aws import LocalAws
    from traderai.testing.handlers import FakeLambdaContext, load_event, load_handler

    start = parse_iso_utc(args.start, "--start")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.update({"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
                       "POWERTOOLS_TRACE_DISABLED": "1", "POWERTOOLS_METRICS_DISABLED": "1", "LOG_LEVEL": "WARNING"})
    with mock_aws():
        local = LocalAws(boto3.client("s3"), boto3.client("dynamodb")).provision()
        os.environ.update(local.environment("PredictFunction", {"MarketSource": "replay", "Markets": args.markets}))
        os.environ.update(local.environment("SignalFunction"))
        os.environ["LOG_LEVEL"] = "WARNING"  # this command prints its own summary; JSON logs would bury it
        for cached in (runtime.predict_runtime, runtime.signal_runtime, runtime.s3_client):
            cached.cache_clear()
        predict, signal = load_handler("predict").handler, load_handler("signal").handler
        replay_now = [start]
        runtime.signal_runtime().clock = lambda: replay_now[0]  # signals are created on the replay clock
        for index in range(args.ticks):
            tick = start + timedelta(minutes=5 * index)
            replay_now[0] = tick + timedelta(seconds=5)
            event = {**load_event("predict_schedule.json"), "time": tick.strftime("%Y-%m-%dT%H:%M:05Z")}
            reply = predict(event, FakeLambdaContext())
            envelope = {**load_event("signal_destination.json"), "responsePayload": reply}
            summary = signal(envelope, FakeLambdaContext()) if reply["predictions"] else None
            _print_tick(tick, reply, summary, local)
    return 0


def _print_tick(tick: datetime, reply: dict[str, Any], summary: dict[str, Any] | None, local: Any) -> None:
    line = f"{tick.astimezone(UTC):%Y-%m-%d %H:%M} UTC  predictions={len(reply['predictions'])}"
    if reply["failures"]:
        line += f"  failures={[(f['symbol'], f['reason']) for f in reply['failures']]}"
    if not reply["predictions"]:
        print(line + "  (no candle closed since the last tick)")
        return
    print(line + f"  accepted={summary['accepted']}  rejected={json.dumps(summary['rejected'])}")
    decisions = local.s3.get_object(Bucket=local.bucket, Key=summary["log_key"])["Body"].read().decode()
    for decision in map(json.loads, decisions.splitlines()):
        print(f"    {decision['message']}")
