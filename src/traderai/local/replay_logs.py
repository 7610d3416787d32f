"""Write real prediction and decision logs on this machine: the predict and signal handlers over
replayed candles under moto, objects copied out to a local folder in the same Hive layout.

Used by the Athena tests and `bench/athena_bytes.py`, so the SQL is tried on what the pipeline writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from traderai.local.pipeline import embedded_pipeline

LOG_PREFIXES = ("predictions/", "decisions/")


@dataclass(frozen=True, slots=True)
class ReplayedLogs:
    """Where the logs were copied and what the run did."""

    root: Path
    ticks: int
    keys: tuple[str, ...]


def replay_logs(root: Path, start: datetime, ticks: int, markets: str = "BTC/USDT,ETH/USDT,SOL/USDT,BNB/USDT",
                tick_minutes: int = 15) -> ReplayedLogs:
    """Run `ticks` scheduled ticks `tick_minutes` apart from `start` through PredictFunction and, as
    its Lambda destination would, SignalFunction; copy every log object to `root/<key>`.

    Ticks fall on candle closes (15 minutes for the bundled 15m candles), so each one predicts; the
    signal step's clock is the tick's, so decisions and signal expiry follow the replayed time.
    """
    with embedded_pipeline(markets) as pipeline:
        for index in range(ticks):
            pipeline.tick(start + timedelta(minutes=tick_minutes * index), decided_after=timedelta(seconds=10))
        keys = _copy_logs(pipeline.local.s3, pipeline.local.bucket, root)
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
