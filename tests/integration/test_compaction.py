"""CompactFunction under moto (Athena accepts the UNLOAD there but does not run it), and the UNLOAD's
SELECT run for real in DuckDB over replayed logs: the Parquet it writes holds exactly the day's rows."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from traderai import wiring
from traderai.adapters.athena import AthenaQueries, AthenaQueryError, S3Prefix
from traderai.analytics.local import LocalCatalog
from traderai.analytics.queries import COMPACTION_SQL, sql_text, unload_statement
from traderai.contracts import SettingsError
from traderai.local.replay_logs import replay_logs
from traderai.services.compaction import CompactionEventError, compact_day, day_to_compact
from traderai.testing.handlers import FakeLambdaContext, load_event, load_handler

WORKGROUP, DATABASE = "traderai-analytics", "traderai"


@pytest.fixture
def compact(aws, function_env) -> Any:
    """The handler with the template's environment, and the workgroup it runs in (moto needs it to exist)."""
    function_env("CompactFunction", AnalyticsWorkGroup=WORKGROUP, AnalyticsDatabase=DATABASE)
    boto3.client("athena", region_name="us-east-1").create_work_group(Name=WORKGROUP)
    wiring.clear()
    yield load_handler("compact").handler
    wiring.clear()


def _athena_queries() -> list[dict[str, Any]]:
    client = boto3.client("athena", region_name="us-east-1")
    ids = client.list_query_executions(WorkGroup=WORKGROUP)["QueryExecutionIds"]
    return sorted((client.get_query_execution(QueryExecutionId=i)["QueryExecution"] for i in ids),
                  key=lambda q: q["Query"])


def test_the_nightly_run_unloads_yesterday_of_both_logs_to_parquet(aws, compact) -> None:
    aws.s3.put_object(Bucket=aws.bucket, Key="predictions/dt=2025-04-08/20250408T120000Z.jsonl", Body=b"{}\n")
    reply = compact(load_event("compact_schedule.json"), FakeLambdaContext())  # fired 2025-04-09T00:30Z

    assert reply["day"] == "2025-04-08"
    assert [t["location"] for t in reply["tables"]] == [
        f"s3://{aws.bucket}/predictions_parquet/dt=2025-04-08/", f"s3://{aws.bucket}/decisions_parquet/dt=2025-04-08/"]
    queries = _athena_queries()
    assert [q["Query"] for q in queries] == sorted(
        unload_statement(sql_text(COMPACTION_SQL[table]), f"s3://{aws.bucket}/{table}_parquet/dt=2025-04-08/")
        for table in ("predictions", "decisions"))
    assert all(q["ExecutionParameters"] == ["'2025-04-08'"] and q["WorkGroup"] == WORKGROUP for q in queries)
    assert aws.objects("predictions/") == ["predictions/dt=2025-04-08/20250408T120000Z.jsonl"]  # JSON stays


def test_a_rerun_replaces_the_days_parquet_instead_of_failing_on_it(aws, compact) -> None:
    for key in ("predictions_parquet/dt=2025-04-07/old-1.parquet", "predictions_parquet/dt=2025-04-07/old-2.parquet",
                "predictions_parquet/dt=2025-04-06/keep.parquet"):
        aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=b"PAR1")
    reply = compact(load_event("compact_day.json"), FakeLambdaContext())

    assert [(t["table"], t["replaced_objects"]) for t in reply["tables"]] == [("predictions", 2), ("decisions", 0)]
    assert aws.objects("predictions_parquet/") == ["predictions_parquet/dt=2025-04-06/keep.parquet"]


@pytest.mark.parametrize(("event", "message"), [
    (load_event("compact_bad_day.json"), "day: '2025-13-01'"),
    ({"detail-type": "Scheduled Event"}, "scheduled event"),
    ([], "got list"),
])
def test_an_event_without_a_day_fails_naming_what_is_wrong(event: Any, message: str) -> None:
    with pytest.raises(CompactionEventError, match=message):
        day_to_compact(event)


def test_today_is_never_compacted_while_ticks_still_write_to_it() -> None:
    with pytest.raises(CompactionEventError, match="not finished"):
        compact_day(date(2025, 4, 9), queries=None, prefixes=None, today=date(2025, 4, 9))  # type: ignore[arg-type]


def test_a_missing_setting_fails_the_cold_start_naming_it(aws, function_env, monkeypatch) -> None:
    function_env("CompactFunction", AnalyticsWorkGroup=WORKGROUP, AnalyticsDatabase=DATABASE)
    monkeypatch.delenv("ATHENA_WORKGROUP")
    wiring.clear()
    with pytest.raises(SettingsError, match=r"^ATHENA_WORKGROUP:"):
        load_handler("compact").handler(load_event("compact_day.json"), FakeLambdaContext())


class _FailingAthena:
    def start_query_execution(self, **request: Any) -> dict[str, str]:
        return {"QueryExecutionId": "q-1"}

    def get_query_execution(self, QueryExecutionId: str) -> dict[str, Any]:
        return {"QueryExecution": {"Status": {"State": "FAILED", "StateChangeReason": "HIVE_BAD_DATA: bad row"}}}


def test_a_failed_athena_query_raises_with_athenas_reason() -> None:
    with pytest.raises(AthenaQueryError, match="q-1 FAILED: HIVE_BAD_DATA"):
        AthenaQueries(_FailingAthena(), WORKGROUP, DATABASE, sleep=lambda _: None).run("SELECT 1")


def test_only_a_days_folder_is_ever_deleted(aws) -> None:
    with pytest.raises(ValueError, match="only a dt="):
        S3Prefix(aws.s3, aws.bucket).delete("predictions/")


def test_the_unload_select_writes_exactly_the_days_rows_with_the_glue_types(tmp_path: Path) -> None:
    replay_logs(tmp_path, datetime(2025, 4, 7, 22, tzinfo=UTC), 6, tick_minutes=30)  # 22:00 .. 00:30
    local = LocalCatalog(tmp_path).register_json()
    for table in ("predictions", "decisions"):
        local.compact_day(table, "2025-04-07")
    local.register_parquet()

    for table in ("predictions", "decisions"):
        columns = ", ".join(local.columns(table))
        day = local.connection.execute(
            f"SELECT {columns} FROM {table} WHERE dt = '2025-04-07' ORDER BY ALL").fetchall()
        compacted = local.connection.execute(f"SELECT {columns} FROM {table}_parquet ORDER BY ALL").fetchall()
        assert len(day) == 4 * 4 and compacted == day, table  # 22:00..23:30: four ticks of four markets
        files = f"{tmp_path}/{table}_parquet/*/*.parquet"
        described = local.connection.execute(
            f"DESCRIBE SELECT * FROM read_parquet('{files}', hive_partitioning = false)").fetchall()
        # the file's own types are the Glue table's (no cast needed), and dt is the folder, as with UNLOAD
        assert {row[0]: row[1] for row in described} == local.columns(f"{table}_parquet"), table
