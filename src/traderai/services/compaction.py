"""Compaction: rewrite a finished day of the JSON logs into Parquet, so Athena scans fewer bytes.

Athena does the rewrite (UNLOAD of the same SELECT the tests run in DuckDB): the function carries no
Parquet library. UNLOAD never writes into a non-empty folder, so the day's Parquet folder is emptied
first: a retried or repeated run replaces the day instead of failing or duplicating it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from traderai.analytics.queries import COMPACTION_SQL, PARQUET_SUFFIX, sql_text, unload_statement
from traderai.contracts import ContractError, parse_iso_utc
from traderai.observability import logger, metrics
from traderai.ports import Prefixes, QueryRunner


class CompactionEventError(ValueError):
    """The event names no day to compact; the message says what was expected."""


@dataclass(frozen=True, slots=True)
class TableCompaction:
    table: str
    location: str
    replaced_objects: int
    query_execution_id: str


@dataclass(frozen=True, slots=True)
class CompactionResult:
    day: date
    tables: tuple[TableCompaction, ...]

    def summary(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(),
                "tables": [{"table": t.table, "location": t.location, "replaced_objects": t.replaced_objects,
                            "query_execution_id": t.query_execution_id} for t in self.tables]}


def day_to_compact(event: Any) -> date:
    """The finished day an event asks for: `{"day": "2025-04-07"}` (a backfill), or for an EventBridge
    scheduled event the UTC day before its `time` (the run at 00:30 compacts yesterday)."""
    if isinstance(event, dict) and isinstance(event.get("day"), str):
        try:
            return date.fromisoformat(event["day"])
        except ValueError as exc:
            raise CompactionEventError(f"day: {event['day']!r} is not YYYY-MM-DD") from exc
    if isinstance(event, dict) and event.get("detail-type") == "Scheduled Event" and "time" in event:
        try:
            fired: datetime = parse_iso_utc(event["time"], "time")
        except ContractError as exc:
            raise CompactionEventError(str(exc)) from exc
        return fired.date() - timedelta(days=1)
    shape = f"object with keys {sorted(event)[:8]}" if isinstance(event, dict) else type(event).__name__
    raise CompactionEventError(f"expected an EventBridge scheduled event or {{\"day\": \"YYYY-MM-DD\"}}; got {shape}")


def parquet_location(bucket: str, table: str, day: date) -> tuple[str, str]:
    """(prefix, s3 URL) of a day's Parquet folder: `predictions_parquet/dt=2025-04-07/`."""
    prefix = f"{table}{PARQUET_SUFFIX}/dt={day.isoformat()}/"
    return prefix, f"s3://{bucket}/{prefix}"


def compact_day(day: date, queries: QueryRunner, prefixes: Prefixes, today: date) -> CompactionResult:
    """UNLOAD one finished day of each log to Parquet, replacing whatever a previous run left there."""
    if day >= today:
        raise CompactionEventError(f"day: {day.isoformat()} is not finished yet (today is {today.isoformat()})")
    done = []
    for table, file in COMPACTION_SQL.items():
        prefix, location = parquet_location(prefixes.bucket, table, day)
        replaced = prefixes.delete(prefix)
        query_id = queries.run(unload_statement(sql_text(file), location), [f"'{day.isoformat()}'"])
        done.append(TableCompaction(table, location, replaced, query_id))
        logger.info(f"Compacted {table} of {day.isoformat()} to {location}",
                    extra={"query_execution_id": query_id, "replaced_objects": replaced})
    metrics.add_metric(name="DaysCompacted", unit=MetricUnit.Count, value=1)
    return CompactionResult(day, tuple(done))
