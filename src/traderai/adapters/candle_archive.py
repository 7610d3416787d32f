"""The candle archive in S3: one deterministic gzip CSV per market and month (format: market/archive.py).

Writing a month merges what is archived with the new candles and puts the object only when its bytes
change, so re-archiving a day leaves the same bytes (and no new object version in the versioned bucket).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from traderai.contracts import TIMEFRAME_SECONDS, Candles
from traderai.market import archive as fmt

DEFAULT_PREFIX = "candles"


class CandleArchive:
    """Read and write one exchange's archived candles under `s3://bucket/prefix/exchange=.../`."""

    def __init__(self, s3_client: Any, bucket: str, exchange: str, prefix: str = DEFAULT_PREFIX) -> None:
        self.s3, self.bucket, self.exchange, self.prefix = s3_client, bucket, exchange, prefix

    def market_prefix(self, symbol: str, timeframe: str) -> str:
        return fmt.market_prefix(self.prefix, self.exchange, symbol, timeframe)

    def months(self, symbol: str, timeframe: str) -> list[str]:
        """The archived months of a market (YYYY-MM), oldest first."""
        months = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.market_prefix(symbol, timeframe)):
            for item in page.get("Contents", []):
                month = fmt.month_of_key(item["Key"])
                if month:
                    months.append(month)
        return sorted(months)

    def key(self, symbol: str, timeframe: str, month: str) -> str:
        return fmt.month_key(self.prefix, self.exchange, symbol, timeframe, month)

    def read_raw(self, symbol: str, timeframe: str, month: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            return self.s3.get_object(Bucket=self.bucket, Key=self.key(symbol, timeframe, month))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise

    def read_month(self, symbol: str, timeframe: str, month: str) -> Candles:
        raw = self.read_raw(symbol, timeframe, month)
        if raw is None:
            return fmt.empty(symbol, timeframe)
        return fmt.decode(raw, symbol, timeframe, f"s3://{self.bucket}/{self.key(symbol, timeframe, month)}")

    def write_month(self, symbol: str, timeframe: str, month: str, candles: Candles) -> bool:
        """Merge `candles` (all of `month`) into the archived month; True if the object changed."""
        existing_raw = self.read_raw(symbol, timeframe, month)
        key = self.key(symbol, timeframe, month)
        existing = (fmt.decode(existing_raw, symbol, timeframe, f"s3://{self.bucket}/{key}")
                    if existing_raw is not None else fmt.empty(symbol, timeframe))
        body = fmt.encode(fmt.merge(existing, candles))
        if body == existing_raw:
            return False
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="text/csv",
                           ContentEncoding="gzip")
        return True

    def last_open_ms(self, symbol: str, timeframe: str) -> int | None:
        """Open time of the newest archived candle: where an append or an interrupted backfill resumes."""
        for month in reversed(self.months(symbol, timeframe)):
            candles = self.read_month(symbol, timeframe, month)
            if len(candles):
                return int(candles.open_time_ms[-1])
        return None

    def load(self, symbol: str, timeframe: str, start_ms: int, end_ms: int) -> Candles:
        """Archived candles with start_ms <= open time < end_ms, oldest first (empty if none)."""
        step_ms = TIMEFRAME_SECONDS[timeframe] * 1000
        first, last = fmt.month_of_ms(start_ms), fmt.month_of_ms(max(start_ms, end_ms - step_ms))
        parts = [self.read_month(symbol, timeframe, month) for month in self.months(symbol, timeframe)
                 if first <= month <= last]
        if not parts:
            return fmt.empty(symbol, timeframe)
        candles = fmt.concat(parts)
        keep = np.flatnonzero((candles.open_time_ms >= start_ms) & (candles.open_time_ms < end_ms))
        return candles.slice(int(keep[0]), int(keep[-1]) + 1) if keep.size else fmt.empty(symbol, timeframe)
