"""The prediction and decision logs: one JSON-lines object per tick in S3, laid out for Athena.

Keys are Hive-style (`predictions/dt=YYYY-MM-DD/…`) so Athena partition projection finds them,
and deterministic per tick, so a retried tick overwrites its object instead of duplicating it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

PREDICTIONS = "predictions"
DECISIONS = "decisions"


def log_key(kind: str, tick_time: datetime, shard: str | None = None) -> str:
    """`predictions/dt=2025-04-29/20250429T120000Z.jsonl` for the tick at 12:00 UTC; a shard of a sharded
    tick has its own object (`20250429T120000Z-s003of010.jsonl`), so the shards of one tick never collide."""
    suffix = f"-{shard}" if shard else ""
    return f"{kind}/dt={tick_time:%Y-%m-%d}/{tick_time:%Y%m%dT%H%M%SZ}{suffix}.jsonl"


def to_json_lines(records: Iterable[Mapping[str, Any]]) -> bytes:
    """One compact JSON object per line; NaN/inf become null (JSON and Athena have no NaN)."""
    return "".join(_line(r) for r in records).encode()


def _line(record: Mapping[str, Any]) -> str:
    try:  # the common record has no NaN: encoded as it is, not walked value by value first
        return json.dumps(record, separators=(",", ":"), sort_keys=True, allow_nan=False) + "\n"
    except ValueError:
        return json.dumps(_finite(dict(record)), separators=(",", ":"), sort_keys=True) + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class LogObjectMissing(LookupError):
    """The log object asked for is not in the bucket."""


class JsonLinesLog:
    """Writes a tick's records as one S3 object. A failed put raises: the tick fails as a whole."""

    def __init__(self, s3_client: Any, bucket: str) -> None:
        self._s3 = s3_client
        self._bucket = bucket

    def write(self, kind: str, tick_time: datetime, records: list[Mapping[str, Any]], shard: str | None = None) -> str:
        key = log_key(kind, tick_time, shard)
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=to_json_lines(records),
                            ContentType="application/x-ndjson")
        return key

    def read(self, key: str) -> list[dict[str, Any]]:
        """The records of one object; LogObjectMissing if there is none under `key`."""
        try:
            body = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except self._s3.exceptions.NoSuchKey as exc:
            raise LogObjectMissing(f"s3://{self._bucket}/{key} does not exist") from exc
        except self._s3.exceptions.ClientError as exc:
            # S3 answers AccessDenied, not NoSuchKey, for a missing key to a role without s3:ListBucket
            # (SignalFunction may only get predictions/*).
            if exc.response.get("Error", {}).get("Code") != "AccessDenied":
                raise
            raise LogObjectMissing(f"s3://{self._bucket}/{key} does not exist or may not be read "
                                   "(AccessDenied)") from exc
        return [json.loads(line) for line in body.decode().splitlines() if line]
