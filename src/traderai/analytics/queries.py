"""The named Athena queries: which SQL file answers which question, and with which parameters.

Every query filters on the partition key `dt` with positional parameters (`?`), so Athena's partition
projection reads only the days asked for; they are given as quoted literals in
`start-query-execution --execution-parameters`. The same text runs on the Parquet tables after
compaction (`compacted`): the two table families have the same columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources

PREDICTIONS_TABLE = "predictions"
DECISIONS_TABLE = "decisions"
PARQUET_SUFFIX = "_parquet"
_LOG_TABLE = re.compile(r"\b(FROM|JOIN)(\s+)(predictions|decisions)\b", re.IGNORECASE)


class QueryParameterError(ValueError):
    """A query was given a missing or malformed day; the message names the parameter."""


@dataclass(frozen=True, slots=True)
class NamedQuery:
    """One `AWS::Athena::NamedQuery`: its template logical id, SQL file, title and parameters."""

    logical_id: str
    file: str
    title: str
    question: str
    parameters: tuple[str, ...]  # names of the positional `?` parameters, in order

    @property
    def sql(self) -> str:
        return sql_text(self.file)

    def execution_parameters(self, **days: str | date) -> list[str]:
        """Athena `ExecutionParameters` (SQL literals, `'2025-04-07'`) for the named days."""
        values = []
        for name in self.parameters:
            if name not in days:
                raise QueryParameterError(f"{name}: required by {self.file} (give {', '.join(self.parameters)})")
            values.append(f"'{_day(days[name], name)}'")
        return values

    def positional(self, **days: str | date) -> list[str]:
        """The same parameters as plain strings, in order (for a local DuckDB run)."""
        return [value.strip("'") for value in self.execution_parameters(**days)]


RANGE = ("first_day", "last_day")
RESOLVED_RANGE = ("first_day", "last_day", "first_day", "last_day")

NAMED_QUERIES: tuple[NamedQuery, ...] = (
    NamedQuery("AccuracyDailyQuery", "accuracy_daily.sql", "Daily directional accuracy per symbol and model",
               "Is the model still accurate? Each prediction is resolved by the close horizon candles later, "
               "read from the prediction log itself.", RESOLVED_RANGE),
    NamedQuery("CalibrationQuery", "calibration.sql", "Calibration by confidence bucket",
               "When the model is 65% confident, is it right 65% of the time?", RESOLVED_RANGE),
    NamedQuery("RejectionsDailyQuery", "rejections_daily.sql", "Why no signals: outcomes per day and symbol",
               "Why were there no signals? Every decision by outcome: accepted or the first filter that "
               "rejected it.", RANGE),
    NamedQuery("FilterFailuresDailyQuery", "filter_failures_daily.sql", "Every failing filter per day and symbol",
               "Which filters block signals, counting every failing filter of a rejection.", RANGE),
    NamedQuery("ProbabilityDriftDailyQuery", "probability_drift_daily.sql",
               "Probability distribution per day (drift)",
               "Is the probability distribution drifting? Quantiles, mean, spread and long share per day.", RANGE),
    NamedQuery("FiringOffsetDailyQuery", "firing_offset_daily.sql", "Firing offset p50/p95 per day",
               "How late does the tick start after the schedule's mark? Offset from the mark to each predict "
               "invocation's start, p50/p95/max seconds per day.", RANGE),
    NamedQuery("LatestPredictionsQuery", "latest_predictions.sql", "Latest prediction per market",
               "What did the model say last for each market, and what did the signal step decide?",
               ("since_day", "since_day")),
)

# The SELECT that CompactFunction wraps in UNLOAD, one per log table.
COMPACTION_SQL = {PREDICTIONS_TABLE: "compact_predictions.sql", DECISIONS_TABLE: "compact_decisions.sql"}


@cache
def sql_text(file: str) -> str:
    """A SQL file shipped in `traderai/sql/`, exactly as the template's QueryString holds it."""
    return resources.files("traderai").joinpath("sql", file).read_text(encoding="utf-8")


def named_query(file_or_id: str) -> NamedQuery:
    """Look a named query up by its SQL file or its template logical id."""
    for query in NAMED_QUERIES:
        if file_or_id in (query.file, query.logical_id):
            return query
    raise KeyError(f"{file_or_id}: no such named query")


def compacted(sql: str) -> str:
    """The same query over the Parquet tables (`predictions_parquet`, `decisions_parquet`)."""
    return _LOG_TABLE.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3).lower()}{PARQUET_SUFFIX}", sql)


def unload_statement(select_sql: str, location: str) -> str:
    """Athena UNLOAD of a SELECT to Parquet at `location` (which must be empty: UNLOAD never overwrites)."""
    if not location.startswith("s3://") or not location.endswith("/") or "'" in location:
        raise ValueError(f"{location!r}: expected an s3://bucket/prefix/ location")
    body = "\n".join(line for line in select_sql.strip().splitlines() if not line.lstrip().startswith("--"))
    return f"UNLOAD (\n{body}\n) TO '{location}' WITH (format = 'PARQUET', compression = 'SNAPPY')"


def to_duckdb(sql: str) -> str:
    """Transpile Athena (Trino) SQL to DuckDB with sqlglot, for local runs over the same files."""
    import sqlglot

    (statement,) = sqlglot.transpile(sql, read="trino", write="duckdb")
    return statement


def _day(value: str | date, name: str) -> str:
    text = value.isoformat() if isinstance(value, date) else str(value)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            pass
    raise QueryParameterError(f"{name}: {text!r} is not a day (YYYY-MM-DD)")
