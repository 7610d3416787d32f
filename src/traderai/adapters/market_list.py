"""The tick's inputs in S3: the market list an operator keeps there (MARKET_LIST_KEY), and each tick's shard
plan, the JSON array the TickStateMachine's Distributed Map reads with its ItemReader (services/sharding.py).

The list is read on every plan, so a new list serves from the next tick with no redeploy; a list that cannot
be read or parsed fails the plan (market.listing.MarketListError), never a tick over an older or partial list.
A shard's sandbox reads it too, in a tick without a candle close, to load the list's models before the next
close (services.predict.run_tick's `warm`): there a list that cannot be read is logged and nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from traderai.market.listing import MAX_BYTES, MarketListError, format_market_list, parse_market_list

PLANS = "plans"
DEFAULT_LIST_KEY = "config/markets.csv"  # what docs/markets.md deploys with; `traderai markets` and the local stack


@dataclass(frozen=True, slots=True)
class MarketList:
    markets: tuple[str, ...]
    source: str  # `s3://bucket/key` or `MARKETS`
    version: str | None = None  # the S3 object's version id (else its ETag): which list a tick ran


class S3MarketList:
    """The list at `s3://bucket/key`: read (and checked) by every plan, written by `traderai markets put`."""

    def __init__(self, s3: Any, bucket: str, key: str) -> None:
        self._s3, self.bucket, self.key = s3, bucket, key

    @property
    def source(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def read(self) -> MarketList:
        try:
            reply = self._s3.get_object(Bucket=self.bucket, Key=self.key)
        except self._s3.exceptions.NoSuchKey:
            raise MarketListError(f"{self.source}: no such object (upload one: traderai markets put FILE "
                                  f"--bucket {self.bucket} --key {self.key})") from None
        except self._s3.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise MarketListError(f"{self.source}: cannot be read ({code})") from exc
        if int(reply.get("ContentLength") or 0) > MAX_BYTES:
            raise MarketListError(f"{self.source}: {reply['ContentLength']:,} bytes, more than the "
                                  f"{MAX_BYTES:,} a market list may have")
        markets = parse_market_list(reply["Body"].read(MAX_BYTES + 1), self.source)
        version = reply.get("VersionId") or str(reply.get("ETag", "")).strip('"') or None
        return MarketList(markets, self.source, version)

    def write(self, markets: tuple[str, ...]) -> str | None:
        """Upload `markets` (already parsed: canonical) as the list; returns the new object's version id."""
        reply = self._s3.put_object(Bucket=self.bucket, Key=self.key, Body=format_market_list(markets),
                                    ContentType="text/csv")
        return reply.get("VersionId")


def plan_key(tick_time: datetime) -> str:
    """`plans/dt=2025-04-29/20250429T120000Z.json`: deterministic per tick, so a retried plan overwrites."""
    return f"{PLANS}/dt={tick_time:%Y-%m-%d}/{tick_time:%Y%m%dT%H%M%SZ}.json"


class ShardPlans:
    """Each tick's shard items as one JSON array: written by the Plan state, read by the Map's ItemReader."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3, self.bucket = s3, bucket

    def write(self, tick_time: datetime, items: list[dict[str, Any]]) -> str:
        key = plan_key(tick_time)
        self._s3.put_object(Bucket=self.bucket, Key=key, ContentType="application/json",
                            Body=json.dumps(items, separators=(",", ":")).encode())
        return key

    def read(self, key: str) -> list[dict[str, Any]]:
        items = json.loads(self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        if not isinstance(items, list):
            raise ValueError(f"s3://{self.bucket}/{key}: a shard plan is a JSON array")
        return items
