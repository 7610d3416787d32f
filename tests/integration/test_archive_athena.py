"""The Glue tables `candles` and `retraining` read, with their declared columns, what the archive and the
retraining write: the S3 objects copied to a local Hive layout and queried with DuckDB (Athena SQL
transpiled with sqlglot), as tests/integration/test_athena.py does for the logs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from traderai.adapters.candle_archive import CandleArchive
from traderai.analytics.queries import to_duckdb
from traderai.analytics.schema import duckdb_type
from traderai.infra import load_template
from traderai.market.csv import bundled_candles_path, load_candles_csv
from traderai.services.archive import RecordedHistory, archive_markets
from traderai.testing.fake_exchange import utc

pytest.importorskip("duckdb")


def _download(aws, prefix: str, root: Path) -> None:
    for key in aws.objects(prefix):
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(aws.s3.get_object(Bucket=aws.bucket, Key=key)["Body"].read())


def _table(table: str) -> dict:
    spec = load_template()["Resources"][{"candles": "CandlesTable", "retraining": "RetrainingTable"}[table]]
    return spec["Properties"]["TableInput"]


def _projection(table: str) -> dict[str, str]:
    return _table(table)["Parameters"]


def _columns(table: str, kind: str = "Columns") -> dict[str, str]:
    spec = _table(table)
    listed = spec["StorageDescriptor"]["Columns"] if kind == "Columns" else spec["PartitionKeys"]
    return {column["Name"]: duckdb_type(column["Type"]) for column in listed}


def test_the_candles_table_projects_the_archive_layout_and_reads_its_objects(aws, tmp_path: Path) -> None:
    import duckdb

    symbols = ["BTC/USDT", "ETH/USDT"]
    candles = {s: load_candles_csv(bundled_candles_path(s), s) for s in symbols}
    archive = CandleArchive(aws.s3, aws.bucket, "binance")
    asyncio.run(archive_markets(archive, RecordedHistory(candles), symbols, "15m", utc(2025, 3, 1), backfill_days=60))
    parameters = _projection("candles")
    template = parameters["storage.location.template"]["Fn::Sub"].replace("s3://${DataBucket}/", "")
    for key in aws.objects("candles/"):  # every object sits where the projection looks for its partition
        month = key.split("month=")[1][:7]
        symbol = key.split("symbol=")[1].split("/")[0]
        location = (template.replace("${!exchange}", "binance").replace("${!symbol}", symbol)
                    .replace("${!timeframe}", "15m").replace("${!month}", month))
        assert key == location + "candles.csv.gz"
    assert parameters["skip.header.line.count"] == "1"
    _download(aws, "candles/", tmp_path)

    columns, keys = _columns("candles"), _columns("candles", "PartitionKeys")
    connection = duckdb.connect()
    spec = ", ".join(f"'{name}': '{kind}'" for name, kind in columns.items())
    hive = ", ".join(f"'{name}': '{kind}'" for name, kind in keys.items())
    connection.execute(  # nosec B608 - names and types from the template
        f"CREATE VIEW candles AS SELECT * FROM read_csv('{tmp_path}/candles/*/*/*/*/*.csv.gz', header = true, "
        f"columns = {{{spec}}}, hive_partitioning = true, hive_types = {{{hive}}})")
    athena_sql = ("SELECT month, count(*) AS n, min(open_time_ms) AS first_ms, max(high) AS high FROM candles "
                  "WHERE exchange = 'binance' AND symbol = 'BTC_USDT' AND timeframe = '15m' "
                  "GROUP BY month ORDER BY month")
    rows = connection.execute(to_duckdb(athena_sql)).fetchall()
    btc = archive.load("BTC/USDT", "15m", 0, int(utc(2100, 1, 1).timestamp() * 1000))
    months = np.array([np.datetime64(int(t), "ms").astype("datetime64[M]").astype(str) for t in btc.open_time_ms])
    expected = [(m, int((months == m).sum()), int(btc.open_time_ms[months == m].min()),
                 float(btc.high[months == m].max())) for m in sorted(set(months))]
    assert rows == expected and len(rows) == 3  # 2024-12, 2025-01, 2025-02


def test_the_retraining_table_reads_every_decision_record_with_its_declared_types(aws, tmp_path: Path) -> None:
    import duckdb

    from traderai.services import retraining
    from traderai.settings import Settings

    evaluated = {"run_id": "20250427T020000Z", "now": "2025-04-27T02:00:00Z", "markets": {
        "BTC/USDT": {"symbol": "BTC/USDT", "champion_model_id": "a", "challenger_model_id": "b", "verdict": "keep",
                     "reasons": ["worse_log_loss: ..."], "rows": 1200, "eval_from": "2025-04-01T00:00:00Z",
                     "eval_to": "2025-04-26T00:00:00Z", "evidence": "evidence: ...",
                     "champion": {"log_loss": 0.69, "brier": 0.25, "reference": "champion"},
                     "challenger": {"log_loss": 0.70, "brier": 0.26},
                     "log_loss": {"difference": 0.01, "tolerance": 0.002, "passes": False},
                     "brier": {"difference": 0.01, "tolerance": 0.001, "passes": False},
                     "champion_expires_at": "2025-06-01T00:00:00Z"},
        "ETH/USDT": {"symbol": "ETH/USDT", "champion_model_id": "c", "challenger_model_id": None, "verdict": "keep",
                     "reasons": ["gap: 40 candles missing in a row"]}}}
    retraining.decide_step(Settings(markets=("BTC/USDT", "ETH/USDT"), bucket_name=aws.bucket), aws.s3, evaluated,
                           utc(2025, 4, 27, 2))
    _download(aws, "retraining/", tmp_path)
    columns = _columns("retraining")
    spec = ", ".join(f"'{name}': '{kind}'" for name, kind in columns.items())
    connection = duckdb.connect()
    rows = connection.execute(  # nosec B608 - names and types from the template
        f"SELECT symbol, outcome, champion_log_loss, challenger_log_loss, rows, reasons, dt FROM read_json("
        f"'{tmp_path}/retraining/*/*.json', format = 'newline_delimited', hive_partitioning = true, "
        f"hive_types = {{'dt': 'VARCHAR'}}, columns = {{{spec}}}) ORDER BY symbol").fetchall()
    assert rows == [("BTC/USDT", "kept", 0.69, 0.70, 1200, ["worse_log_loss: ..."], "2025-04-27"),
                    ("ETH/USDT", "kept", None, None, 0, ["gap: 40 candles missing in a row"], "2025-04-27")]
    record_keys = set(aws.json_lines(aws.objects("retraining/")[0])[0])
    assert record_keys == set(columns)  # every field written is a column, every column is written
