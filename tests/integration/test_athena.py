"""The named Athena queries, run for real: the pipeline's handlers write two days of logs under moto
(replayed candles), the objects are copied out in their Hive layout, each query is transpiled from
Athena (Trino) SQL to DuckDB with sqlglot and run over them, and its answer is compared with the same
answer computed here in plain Python from the records."""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from dataclasses import fields
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot

from traderai.analytics.local import LocalCatalog
from traderai.analytics.queries import (
    NAMED_QUERIES,
    QueryParameterError,
    compacted,
    named_query,
    sql_text,
    to_duckdb,
)
from traderai.analytics.schema import GLUE_TABLES, glue_columns, partition_keys
from traderai.analytics.template import sync_template
from traderai.contracts import TIMEFRAME_SECONDS, Decision, Prediction
from traderai.infra import load_template
from traderai.local.replay_logs import replay_logs

START = datetime(2025, 4, 7, tzinfo=UTC)
TICKS = 100  # every 30 minutes from 04-07 00:00 to 04-09 01:30: two full days and the closes after them
FIRST_DAY, LAST_DAY = "2025-04-07", "2025-04-08"
DAYS = {"first_day": FIRST_DAY, "last_day": LAST_DAY}


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The log objects PredictFunction and SignalFunction wrote, copied to a folder in the same layout."""
    root = tmp_path_factory.mktemp("logs")
    replayed = replay_logs(root, START, TICKS, tick_minutes=30)
    assert len(replayed.keys) == 2 * TICKS  # one predictions and one decisions object per tick
    return root


@pytest.fixture(scope="module")
def catalog(logs: Path) -> LocalCatalog:
    return LocalCatalog(logs).register_json()


def _records(root: Path, table: str) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((root / table).glob("dt=*/*.jsonl")):
        day = path.parent.name.removeprefix("dt=")
        rows.extend({**json.loads(line), "dt": day} for line in path.read_text().splitlines() if line)
    return rows


@pytest.fixture(scope="module")
def predictions(logs: Path) -> list[dict[str, Any]]:
    return _records(logs, "predictions")


@pytest.fixture(scope="module")
def decisions(logs: Path) -> list[dict[str, Any]]:
    return _records(logs, "decisions")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _in_range(day: str, first: str, last: str) -> bool:
    return first <= day <= last


def _next_day(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def _resolved(predictions: list[dict[str, Any]], first: str, last: str) -> list[tuple[dict[str, Any], str]]:
    """(prediction, realised side) for every prediction of [first, last] whose later close is logged."""
    closes = {(p["exchange"], p["symbol"], p["timeframe"], _epoch(p["candle_time"])): p["price"]
              for p in predictions if _in_range(p["dt"], first, _next_day(last))}
    resolved = []
    for p in predictions:
        if not _in_range(p["dt"], first, last):
            continue
        later = _epoch(p["candle_time"]) + p["horizon"] * TIMEFRAME_SECONDS[p["timeframe"]]
        close = closes.get((p["exchange"], p["symbol"], p["timeframe"], later))
        if close is not None:
            resolved.append((p, "long" if close > p["price"] else "short"))
    return resolved


def _mean_or_none(values: list[float | None]) -> float | None:
    """SQL avg: nulls ignored, null when there is nothing to average."""
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _approx(row: dict[str, Any], expected: dict[str, Any]) -> None:
    assert set(row) == set(expected)
    for name, value in expected.items():
        if isinstance(value, float):
            assert float(row[name]) == pytest.approx(value, abs=1.01e-4), name
        else:
            assert row[name] == value, name


# ---------------------------------------------------------------- schema

@pytest.mark.parametrize(("table", "contract"), [("predictions", Prediction), ("decisions", Decision)])
def test_glue_columns_are_exactly_the_contract_fields(table: str, contract: type) -> None:
    template = load_template()
    contract_fields = [f.name for f in fields(contract)]
    for variant in (table, f"{table}_parquet"):
        assert list(glue_columns(template, variant)) == contract_fields, variant
        assert partition_keys(template, variant) == {"dt": "string"}


def test_every_written_record_fits_the_declared_columns(catalog: LocalCatalog, predictions: list, decisions: list
                                                        ) -> None:
    for table, records in (("predictions", predictions), ("decisions", decisions)):
        declared = set(catalog.columns(table))
        assert records and all(set(r) - {"dt"} <= declared for r in records), table
        # DuckDB reads every file with exactly the Glue types; a value that does not fit raises here
        read = catalog.connection.execute(f"SELECT * FROM {table} ORDER BY dt, symbol, candle_time").fetchall()
        assert len(read) == len(records)
    row = catalog.query("SELECT features, horizon FROM predictions WHERE symbol = 'BTC/USDT' ORDER BY candle_time "
                        "LIMIT 1")[0]
    first_btc = min((p for p in predictions if p["symbol"] == "BTC/USDT"), key=lambda p: p["candle_time"])
    assert row == {"features": first_btc["features"], "horizon": first_btc["horizon"]}
    reasons = catalog.query("SELECT reasons FROM decisions WHERE cardinality(reasons) > 1 LIMIT 1")
    assert reasons and all(isinstance(reason, str) for reason in reasons[0]["reasons"])


def test_a_record_that_does_not_fit_a_declared_type_fails_to_load(tmp_path: Path) -> None:
    bad = tmp_path / "predictions" / "dt=2025-04-07"
    bad.mkdir(parents=True)
    (bad / "x.jsonl").write_text(json.dumps({"symbol": "BTC/USDT", "features": {"rsi_14": "high"}}) + "\n")
    local = LocalCatalog(tmp_path)
    with pytest.raises(duckdb.Error):
        local.connection.execute(f"SELECT * FROM {local.json_source('predictions')}").fetchall()


def test_glue_tables_project_daily_partitions_over_the_log_prefixes() -> None:
    template = load_template()
    for table, logical_id in GLUE_TABLES.items():
        spec = template["Resources"][logical_id]["Properties"]["TableInput"]
        parameters = spec["Parameters"]
        assert spec["Name"] == table
        assert (parameters["projection.enabled"], parameters["projection.dt.type"],
                parameters["projection.dt.format"], parameters["projection.dt.range"]) == (
            "true", "date", "yyyy-MM-dd", "2020-01-01,NOW")
        assert parameters["storage.location.template"] == {"Fn::Sub": f"s3://${{DataBucket}}/{table}/dt=${{!dt}}/"}
        serde = spec["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]
        assert serde == ("org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe" if "parquet" in table
                         else "org.openx.data.jsonserde.JsonSerDe")


def test_workgroup_enforces_encrypted_results_and_a_scan_cutoff() -> None:
    props = load_template()["Resources"]["AnalyticsWorkGroup"]["Properties"]["WorkGroupConfiguration"]
    assert props["EnforceWorkGroupConfiguration"] is True
    assert props["BytesScannedCutoffPerQuery"] == {"Ref": "AthenaBytesScannedCutoff"}
    assert props["ResultConfiguration"] == {"OutputLocation": {"Fn::Sub": "s3://${DataBucket}/athena-results/"},
                                            "EncryptionConfiguration": {"EncryptionOption": "SSE_S3"}}


# ---------------------------------------------------------------- the template holds the files' SQL

def test_named_queries_in_the_template_are_the_sql_files() -> None:
    resources = load_template()["Resources"]
    named = {lid: spec["Properties"] for lid, spec in resources.items() if spec["Type"] == "AWS::Athena::NamedQuery"}
    expected = {}
    for query in NAMED_QUERIES:
        expected[query.logical_id] = query.sql
        if "since_day" not in query.parameters:
            expected[f"{query.logical_id}Parquet"] = compacted(query.sql)
    assert {lid: props["QueryString"] for lid, props in named.items()} == expected
    assert all(props["WorkGroup"] == {"Ref": "AnalyticsWorkGroup"} and props["Database"] == {"Ref": "AnalyticsDatabase"}
               for props in named.values())
    assert sync_template(check=True), "run `python -m traderai.analytics.template`"


@pytest.mark.parametrize("query", NAMED_QUERIES, ids=lambda q: q.file)
def test_each_query_has_one_parameter_per_placeholder(query) -> None:
    placeholders = list(sqlglot.parse_one(query.sql, read="trino").find_all(sqlglot.exp.Placeholder))
    assert len(placeholders) == len(query.parameters)
    assert compacted(query.sql).count("_parquet") == query.sql.count("FROM predictions") + query.sql.count(
        "FROM decisions") + query.sql.count("JOIN decisions")


@pytest.mark.parametrize("days", [{"first_day": "2025-04-07"}, {"first_day": "2025-4-7", "last_day": "2025-04-08"},
                                  {"first_day": "2025-02-30", "last_day": "2025-04-08"},
                                  {"first_day": "'; DROP TABLE x; --", "last_day": "2025-04-08"}])
def test_execution_parameters_refuse_anything_but_a_day(days: dict[str, str]) -> None:
    with pytest.raises(QueryParameterError):
        named_query("rejections_daily.sql").execution_parameters(**days)


def test_execution_parameters_are_quoted_literals_in_placeholder_order() -> None:
    query = named_query("AccuracyDailyQuery")
    assert query.execution_parameters(first_day="2025-04-07", last_day=date(2025, 4, 8)) == [
        "'2025-04-07'", "'2025-04-08'", "'2025-04-07'", "'2025-04-08'"]


# ---------------------------------------------------------------- each query against Python

def test_daily_accuracy_matches_the_records(catalog: LocalCatalog, predictions: list) -> None:
    query = named_query("accuracy_daily.sql")
    rows = catalog.query(query.sql, query.positional(**DAYS))

    groups: dict[tuple[str, str, str], list[tuple[str, str]]] = defaultdict(list)
    for p, realised in _resolved(predictions, FIRST_DAY, LAST_DAY):
        groups[(p["dt"], p["symbol"], p["model_id"])].append((p["side"], realised))
    expected = [{"dt": dt, "symbol": symbol, "model_id": model, "resolved": len(pairs),
                 "correct": sum(side == realised for side, realised in pairs),
                 "accuracy": sum(side == realised for side, realised in pairs) / len(pairs),
                 "up_rate": sum(realised == "long" for _, realised in pairs) / len(pairs)}
                for (dt, symbol, model), pairs in sorted(groups.items())]
    assert len(rows) == len(expected) == 2 * 4  # two days x four markets
    for row, want in zip(rows, expected, strict=True):
        _approx(row, want)
    # every prediction of both days resolved, the last ones by closes logged after midnight of day 2
    per_day_and_symbol = defaultdict(int)
    for p in predictions:
        per_day_and_symbol[(p["dt"], p["symbol"])] += 1
    assert all(row["resolved"] == per_day_and_symbol[(row["dt"], row["symbol"])] for row in rows)


def test_calibration_matches_the_records(logs: Path, tmp_path: Path) -> None:
    # The shipped models (isotonic steps of >= 1,000 rows) are never more than ~0.535 confident, so the replay
    # fills one 0.05 bucket only. To check the query's bucketing, a copy of the logs gets an extra object of
    # copies of real records (same candles, prices and horizons) at higher confidences, in both directions.
    import shutil

    root = tmp_path / "logs"
    shutil.copytree(logs, root)
    first = sorted((root / "predictions" / f"dt={FIRST_DAY}").glob("*.jsonl"))[0]
    extra = []
    for index, line in enumerate(first.read_text().splitlines()[:8]):
        record = json.loads(line)
        confidence = (0.62, 0.71, 0.88, 0.97)[index % 4]
        long = index % 2 == 0
        extra.append(json.dumps({**record, "confidence": confidence, "side": "long" if long else "short",
                                 "probability": confidence if long else 1 - confidence}))
    (first.parent / "zz-extra.jsonl").write_text("\n".join(extra) + "\n")
    catalog = LocalCatalog(root).register_json()
    predictions = _records(root, "predictions")
    query = named_query("calibration.sql")
    rows = catalog.query(query.sql, query.positional(**DAYS))

    buckets: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for p, realised in _resolved(predictions, FIRST_DAY, LAST_DAY):
        buckets[min(math.floor(p["confidence"] * 20), 19)].append((p["confidence"], int(p["side"] == realised)))
    expected = []
    for bucket, items in sorted(buckets.items()):
        confidence = statistics.fmean(c for c, _ in items)
        hit_rate = statistics.fmean(h for _, h in items)
        expected.append({"confidence_from": bucket * 0.05, "confidence_to": (bucket + 1) * 0.05,
                         "resolved": len(items), "mean_confidence": confidence, "hit_rate": hit_rate,
                         "overconfidence": confidence - hit_rate})
    assert len(rows) == len(expected) >= 4
    for row, want in zip(rows, expected, strict=True):
        _approx(row, want)


def test_rejections_per_day_and_symbol_match_the_records(catalog: LocalCatalog, decisions: list) -> None:
    query = named_query("rejections_daily.sql")
    rows = catalog.query(query.sql, query.positional(**DAYS))

    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for d in decisions:
        if _in_range(d["dt"], FIRST_DAY, LAST_DAY):
            groups[(d["dt"], d["symbol"], d["reason"] or "accepted")].append(d)
            totals[(d["dt"], d["symbol"])] += 1

    expected = sorted(
        ({"dt": dt, "symbol": symbol, "outcome": outcome, "decisions": len(items),
          "pct_of_day": round(100 * len(items) / totals[(dt, symbol)], 2),
          "mean_expected_net_profit_pct": _mean_or_none([d["expected_net_profit_pct"] for d in items]),
          "mean_confidence": _mean_or_none([d["confidence"] for d in items])}
         for (dt, symbol, outcome), items in groups.items()),
        key=lambda r: (r["dt"], r["symbol"], -r["decisions"], r["outcome"]))
    assert [(r["dt"], r["symbol"], r["outcome"], r["decisions"]) for r in rows] == [
        (r["dt"], r["symbol"], r["outcome"], r["decisions"]) for r in expected]
    for row, want in zip(rows, expected, strict=True):
        _approx(row, want)
    assert {r["outcome"] for r in rows} - {"accepted"}  # the replay has rejections to explain


def test_filter_failures_count_every_failing_filter(catalog: LocalCatalog, decisions: list) -> None:
    query = named_query("filter_failures_daily.sql")
    rows = catalog.query(query.sql, query.positional(**DAYS))

    counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for d in decisions:
        if _in_range(d["dt"], FIRST_DAY, LAST_DAY):
            for reason in d["reasons"]:
                counts[(d["dt"], d["symbol"], reason)][0] += 1
                counts[(d["dt"], d["symbol"], reason)][1] += len(d["reasons"]) == 1
    expected = sorted(({"dt": dt, "symbol": symbol, "failing_filter": reason, "rejections": n,
                        "only_failing_filter": alone} for (dt, symbol, reason), (n, alone) in counts.items()),
                      key=lambda r: (r["dt"], r["symbol"], -r["rejections"], r["failing_filter"]))
    assert rows == expected
    assert sum(r["rejections"] for r in rows) > sum(r["only_failing_filter"] for r in rows)  # some fail several


def test_probability_distribution_per_day_matches_the_records(catalog: LocalCatalog, predictions: list) -> None:
    query = named_query("probability_drift_daily.sql")
    rows = catalog.query(query.sql, query.positional(**DAYS))

    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for p in predictions:
        if _in_range(p["dt"], FIRST_DAY, LAST_DAY):
            groups[(p["dt"], p["symbol"], p["model_id"])].append(p)
    assert [(r["dt"], r["symbol"], r["model_id"]) for r in rows] == sorted(groups)
    for row in rows:
        items = groups[(row["dt"], row["symbol"], row["model_id"])]
        probabilities = sorted(p["probability"] for p in items)
        _approx({k: row[k] for k in ("predictions", "mean_probability", "stddev_probability", "long_share",
                                     "mean_confidence", "mean_drift_score")},
                {"predictions": len(items), "mean_probability": statistics.fmean(probabilities),
                 "stddev_probability": statistics.stdev(probabilities),
                 "long_share": sum(p["side"] == "long" for p in items) / len(items),
                 "mean_confidence": statistics.fmean(p["confidence"] for p in items),
                 "mean_drift_score": _mean_or_none([p.get("drift_score") for p in items])})
        # approx_percentile is approximate in Athena and in DuckDB alike: within 5 ranks of the exact one
        for name, q in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9)):
            low = probabilities[max(0, math.floor(q * len(items)) - 5)]
            high = probabilities[min(len(items) - 1, math.ceil(q * len(items)) + 5)]
            assert low - 1e-4 <= row[name] <= high + 1e-4, name
        assert row["p10"] <= row["p50"] <= row["p90"]


def test_firing_offset_per_day_matches_the_records(catalog: LocalCatalog, predictions: list) -> None:
    query = named_query("firing_offset_daily.sql")
    rows = catalog.query(query.sql, query.positional(**DAYS))

    offsets: dict[str, list[float]] = defaultdict(list)
    for dt, tick, predicted_at in sorted({(p["dt"], p["batch_id"].rsplit("_", 2)[-2] + p["batch_id"][-6:],
                                           p["predicted_at"]) for p in predictions
                                          if _in_range(p["dt"], FIRST_DAY, LAST_DAY)}):
        mark = datetime.strptime(tick, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        offsets[dt].append((datetime.fromisoformat(predicted_at.replace("Z", "+00:00")) - mark).total_seconds())
    assert [r["dt"] for r in rows] == sorted(offsets)
    for row in rows:
        values = sorted(offsets[row["dt"]])
        assert row["invocations"] == len(values)
        assert row["offset_max_s"] == pytest.approx(max(values))
        assert values[0] <= row["offset_p50_s"] <= row["offset_p95_s"] <= row["offset_max_s"]
    # The replay decides on the tick's own clock, 5 s after the mark (runtime.now_for): what the local
    # freshness figure assumes; a deployed stack's log gives the real offset here.
    assert {v for values in offsets.values() for v in values} == {5.0}


def test_latest_prediction_per_market_and_its_decision(catalog: LocalCatalog, predictions: list,
                                                       decisions: list) -> None:
    query = named_query("latest_predictions.sql")
    rows = catalog.query(query.sql, query.positional(since_day=LAST_DAY))

    latest: dict[tuple[str, str, str], dict] = {}
    for p in predictions:
        key = (p["exchange"], p["symbol"], p["timeframe"])
        if p["dt"] >= LAST_DAY and (key not in latest or (p["candle_time"], p["predicted_at"]) > (
                latest[key]["candle_time"], latest[key]["predicted_at"])):
            latest[key] = p
    verdicts = {(d["batch_id"], d["symbol"], d["candle_time"]): d for d in decisions}
    expected = []
    for key in sorted(latest):
        p = latest[key]
        d = verdicts[(p["batch_id"], p["symbol"], p["candle_time"])]
        expected.append({name: p[name] for name in ("exchange", "symbol", "timeframe", "model_id", "candle_time",
                                                    "predicted_at", "price", "probability", "confidence", "side",
                                                    "drift_score")}
                        | {"accepted": d["accepted"], "outcome": d["reason"] or "accepted",
                           "signal_id": d["signal_id"]})
    assert rows == expected
    assert {r["candle_time"] for r in rows} == {"2025-04-09T01:15:00Z"}  # the last tick, 01:30


# ---------------------------------------------------------------- the same answers from Parquet

def test_compacted_days_give_the_same_answers_from_parquet(logs: Path, catalog: LocalCatalog) -> None:
    local = LocalCatalog(logs).register_json()
    for day in ("2025-04-07", "2025-04-08", "2025-04-09"):
        for table in ("predictions", "decisions"):
            local.compact_day(table, day)
    local.register_parquet()
    for table in ("predictions", "decisions"):
        columns = ", ".join(local.columns(table))
        as_json = local.connection.execute(f"SELECT {columns}, dt FROM {table} ORDER BY ALL").fetchall()
        as_parquet = local.connection.execute(f"SELECT {columns}, dt FROM {table}_parquet ORDER BY ALL").fetchall()
        assert as_parquet == as_json, table
    for query in NAMED_QUERIES:
        parameters = query.positional(**DAYS) if "first_day" in query.parameters else query.positional(
            since_day=LAST_DAY)
        assert local.query(compacted(query.sql), parameters) == local.query(query.sql, parameters), query.file


def test_every_sql_file_transpiles_to_duckdb() -> None:
    for file in {q.file for q in NAMED_QUERIES} | {"compact_predictions.sql", "compact_decisions.sql"}:
        assert to_duckdb(sql_text(file)).lstrip().startswith(("/*", "SELECT", "WITH")), file
