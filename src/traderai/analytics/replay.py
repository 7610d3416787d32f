"""Write real prediction and decision logs on this machine: the predict and signal handlers over
replayed candles under moto, objects copied out to a local folder in the same Hive layout.

Used by the Athena tests and `bench/athena_bytes.py`, so the SQL is tried on what the pipeline writes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

LOG_PREFIXES = ("predictions/", "decisions/")


@dataclass(frozen=True, slots=True)
class ReplayedLogs:
    """Where the logs were copied and what the run did."""

    root: Path
    ticks: int
    keys: tuple[str, ...]


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def replay_logs(root: Path, start: datetime, ticks: int, markets: str = "BTC/USDT,ETH/USDT,SOL/USDT,BNB/USDT",
                tick_minutes: int = 15) -> ReplayedLogs:
    """Run `ticks` scheduled ticks `tick_minutes` apart from `start` through PredictFunction and, as
    its Lambda destination would, SignalFunction; copy every log object to `root/<key>`.

    Ticks fall on candle closes (15 minutes for the bundled 15m candles), so each one predicts; the
    signal step's clock is the tick's, so decisions and signal expiry follow the replayed time.
    """
    import boto3
    from moto import mock_aws

    from traderai import runtime
    from traderai.local.aws import LocalAws
    from traderai.testing.handlers import FakeLambdaContext, load_event, load_handler

    quiet = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1",
             "POWERTOOLS_TRACE_DISABLED": "1", "POWERTOOLS_METRICS_DISABLED": "1", "LOG_LEVEL": "ERROR"}
    caches = (runtime.predict_runtime, runtime.signal_runtime, runtime.s3_client)
    with _environment(quiet), mock_aws():
        local = LocalAws(boto3.client("s3"), boto3.client("dynamodb")).provision()
        env = {**local.environment("PredictFunction", {"MarketSource": "replay", "Markets": markets}),
               **local.environment("SignalFunction")}
        with _environment({**env, "LOG_LEVEL": "ERROR"}):
            for cached in caches:
                cached.cache_clear()
            try:
                predict, signal = load_handler("predict").handler, load_handler("signal").handler
                for index in range(ticks):
                    tick = start + timedelta(minutes=tick_minutes * index)
                    runtime.signal_runtime().clock = lambda tick=tick: tick + timedelta(seconds=10)
                    event = {**load_event("predict_schedule.json"), "time": f"{tick:%Y-%m-%dT%H:%M:05Z}"}
                    reply = predict(event, FakeLambdaContext())
                    if reply["predictions"]:
                        envelope = {**load_event("signal_destination.json"), "responsePayload": reply}
                        signal(envelope, FakeLambdaContext())
                keys = _copy_logs(local.s3, local.bucket, root)
            finally:
                for cached in caches:
                    cached.cache_clear()
    return ReplayedLogs(root, ticks, tuple(keys))


def _copy_logs(s3: Any, bucket: str, root: Path) -> list[str]:
    keys: list[str] = []
    for prefix in LOG_PREFIXES:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                target = root / item["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
                keys.append(item["Key"])
    return sorted(keys)
