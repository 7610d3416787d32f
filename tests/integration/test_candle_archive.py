"""The candle archive under moto: layout, same bytes on a rerun, a backfill resuming after a failure in the
middle, bad candles refused with a reason, and the ArchiveFunction handler with the template's environment."""

from __future__ import annotations

import asyncio
import gzip
import itertools
from datetime import timedelta
from typing import Any

import ccxt
import numpy as np
import pytest

from traderai.adapters.candle_archive import CandleArchive
from traderai.contracts import Candles
from traderai.market import archive as fmt
from traderai.market.csv import bundled_candles_path, load_candles_csv
from traderai.services.archive import CcxtHistory, archive_market, archive_markets
from traderai.testing.fake_exchange import FakeExchange, utc
from traderai.testing.handlers import FakeLambdaContext, load_event, load_handler

NOW = utc(2025, 3, 10, 12, 7)  # the fake exchange's clock: the 12:00 candle is still forming
STEP_MS = 900_000
FAR_MS = int(utc(2100, 1, 1).timestamp() * 1000)


def _btc() -> Candles:
    return load_candles_csv(bundled_candles_path("BTC/USDT"), "BTC/USDT")


def _exchange(**candles: Candles) -> FakeExchange:
    markets = candles or {"BTC/USDT": _btc()}
    return FakeExchange({c.symbol: c for c in markets.values()}, now=NOW)


def _run(archive: CandleArchive, source: Any, symbol: str = "BTC/USDT", days: int = 100, **kwargs: Any):
    return asyncio.run(archive_market(archive, source, symbol, "15m", NOW, backfill_days=days, **kwargs))


def _archived_bytes(aws: Any) -> dict[str, bytes]:
    return {key: aws.s3.get_object(Bucket=aws.bucket, Key=key)["Body"].read() for key in aws.objects("candles/")}


def test_backfill_writes_one_deterministic_gzip_csv_per_month(aws) -> None:
    archive = CandleArchive(aws.s3, aws.bucket, "binance")
    exchange = _exchange()
    result = _run(archive, CcxtHistory(exchange))
    assert result.status == "archived" and result.gaps == 0
    prefix = "candles/exchange=binance/symbol=BTC_USDT/timeframe=15m/"
    assert aws.objects("candles/") == [f"{prefix}month={m}/candles.csv.gz"
                                       for m in ("2024-11", "2024-12", "2025-01", "2025-02", "2025-03")]
    # paginated: every request continues after the last candle of the one before, 1,000 at a time
    requests = exchange.ohlcv_requests
    assert len(requests) == result.pages >= 10 and all(r["limit"] == 1000 for r in requests)
    assert all(b["since"] > a["since"] for a, b in itertools.pairwise(requests))
    # exactly the bundled candles from the backfill start to the last CLOSED one (11:45), nothing invented
    archived = archive.load("BTC/USDT", "15m", 0, FAR_MS)
    btc = _btc()
    expected = btc.slice(int(np.searchsorted(btc.open_time_ms, archived.open_time_ms[0])),
                         int(np.searchsorted(btc.open_time_ms, int(NOW.timestamp() * 1000) - STEP_MS, "right")))
    assert archived.open_time_ms[-1] == int(utc(2025, 3, 10, 11, 45).timestamp() * 1000)
    for name in ("open_time_ms", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(archived, name), getattr(expected, name))
    body = gzip.decompress(aws.s3.get_object(Bucket=aws.bucket, Key=f"{prefix}month=2025-01/candles.csv.gz")["Body"]
                           .read()).decode()
    assert body.startswith("timestamp,open,high,low,close,volume\n")


def test_rearchiving_rewrites_the_same_bytes(aws) -> None:
    archive = CandleArchive(aws.s3, aws.bucket, "binance")
    _run(archive, CcxtHistory(_exchange()))
    first = _archived_bytes(aws)
    again = _run(archive, CcxtHistory(_exchange()))
    assert again.status == "up_to_date" and again.candles == 0
    # re-archiving a day already archived (a rerun with the day's candles): same bytes, no new object version
    btc = _btc()
    day = btc.slice(*np.searchsorted(btc.open_time_ms, [int(utc(2025, 2, 3).timestamp() * 1000),
                                                        int(utc(2025, 2, 4).timestamp() * 1000)]))
    assert archive.write_month("BTC/USDT", "15m", "2025-02", day) is False
    assert _archived_bytes(aws) == first
    versions = aws.s3.list_object_versions(Bucket=aws.bucket, Prefix="candles/")["Versions"]
    assert len(versions) == len(first)
    # a second bucket archived from scratch holds byte-identical objects (no time or name in the gzip header)
    aws.s3.create_bucket(Bucket="other")
    _run(CandleArchive(aws.s3, "other", "binance"), CcxtHistory(_exchange()))
    assert {k: aws.s3.get_object(Bucket="other", Key=k)["Body"].read() for k in first} == first


def test_a_backfill_failing_in_the_middle_resumes_from_the_archive(aws) -> None:
    archive = CandleArchive(aws.s3, aws.bucket, "binance")
    exchange = _exchange()
    history = CcxtHistory(exchange, retry=_no_retry())
    pages = 0

    class FailingAfterFourPages:
        exchange_id = "binance"

        async def fetch_page(self, *args: Any) -> list:
            nonlocal pages
            pages += 1
            if pages == 5:  # the exchange goes down in the middle of the backfill
                exchange.fail_always("fetch_ohlcv", ccxt.ExchangeNotAvailable("binance 503"))
            return await history.fetch_page(*args)

    broken = _run(archive, FailingAfterFourPages())
    assert broken.status == "refused" and broken.reason == "exchange_unavailable"
    written = aws.objects("candles/")
    assert written and len(written) < 5  # whole months before the failure are kept, nothing after it
    last = archive.last_open_ms("BTC/USDT", "15m")
    exchange.heal()
    exchange.ohlcv_requests.clear()
    resumed = _run(archive, CcxtHistory(exchange))
    assert resumed.status == "archived"
    assert exchange.ohlcv_requests[0]["since"] == last + STEP_MS  # the cursor is the newest archived candle
    # the interrupted-then-resumed archive is byte for byte the uninterrupted one
    aws.s3.create_bucket(Bucket="straight")
    _run(CandleArchive(aws.s3, "straight", "binance"), CcxtHistory(_exchange()))
    assert _archived_bytes(aws) == {k: aws.s3.get_object(Bucket="straight", Key=k)["Body"].read()
                                    for k in aws.objects("candles/")}
    assert aws.objects("candles/") == sorted(o["Key"] for o in aws.s3.list_objects_v2(Bucket="straight")["Contents"])


def _no_retry() -> Any:
    from traderai.market.exchange import RetryPolicy

    return RetryPolicy(attempts=1)


def test_bad_candles_are_refused_with_a_reason_and_never_written(aws) -> None:
    archive = CandleArchive(aws.s3, aws.bucket, "binance")
    btc, eth = _btc(), load_candles_csv(bundled_candles_path("ETH/USDT"), "ETH/USDT")
    exchange = FakeExchange({"BTC/USDT": btc, "ETH/USDT": eth}, now=NOW)

    def high_below_low(rows: list) -> list:
        return [[r[0], r[1], min(r[2], r[3]) * 0.5, r[3], r[4], r[5]] if i == 3 else r for i, r in enumerate(rows)]

    exchange.mangle("ETH/USDT", high_below_low)
    run = archive_markets(archive, CcxtHistory(exchange), ["BTC/USDT", "ETH/USDT"], "15m", NOW, backfill_days=20)
    results = {r.symbol: r for r in asyncio.run(run)}
    assert results["ETH/USDT"].status == "refused" and results["ETH/USDT"].reason == "bad_candles"
    assert "high below low" in results["ETH/USDT"].error
    assert not [k for k in aws.objects("candles/") if "ETH_USDT" in k]
    assert results["BTC/USDT"].status == "archived"  # one market's bad candles never block another


def test_gaps_are_counted_not_filled(aws) -> None:
    btc = _btc()
    hole = np.ones(len(btc), dtype=bool)
    start = int(np.searchsorted(btc.open_time_ms, int(utc(2025, 3, 1).timestamp() * 1000)))
    hole[start:start + 6] = False  # six candles missing (an exchange halt)
    index = np.flatnonzero(hole)
    gappy = Candles("BTC/USDT", "15m", *(getattr(btc, n)[index] for n in
                                         ("open_time_ms", "open", "high", "low", "close", "volume")))
    archive = CandleArchive(aws.s3, aws.bucket, "binance")
    result = _run(archive, CcxtHistory(_exchange(BTC=gappy)), days=30)
    assert (result.gaps, result.missing_candles) == (1, 6)
    archived = archive.load("BTC/USDT", "15m", 0, FAR_MS)
    assert len(archived) == int(np.count_nonzero(archived.open_time_ms)) and (
        (archived.open_time_ms[-1] - archived.open_time_ms[0]) // STEP_MS + 1 - len(archived)) == 6


def test_a_changed_closed_candle_is_a_conflict_not_an_overwrite(aws) -> None:
    archive = CandleArchive(aws.s3, aws.bucket, "binance")
    _run(archive, CcxtHistory(_exchange()), days=15)
    month = archive.read_month("BTC/USDT", "15m", "2025-03")
    changed = Candles("BTC/USDT", "15m", month.open_time_ms[:2], month.open[:2], month.high[:2] * 1.01,
                      month.low[:2], month.close[:2], month.volume[:2])
    before = _archived_bytes(aws)
    with pytest.raises(fmt.ArchiveConflictError, match="archived with other values"):
        archive.write_month("BTC/USDT", "15m", "2025-03", changed)
    assert _archived_bytes(aws) == before


def test_archive_function_fills_the_archive_from_the_replay_with_the_template_environment(aws, function_env) -> None:
    function_env("ArchiveFunction", MarketSource="replay", ArchiveBackfillDays="40")
    handler = load_handler("archive").handler
    reply = handler(load_event("archive_schedule.json"), FakeLambdaContext())  # 2025-02-15T00:10:00Z
    assert {m["symbol"]: m["status"] for m in reply["markets"]} == {
        s: "archived" for s in ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT")}
    keys = aws.objects("candles/")
    assert len(keys) == 4 * 2 and all("/timeframe=15m/month=2025-0" in k for k in keys)
    # the shipped champions expire long after this replayed day: the metric input is there, no warning
    assert all(days is not None and days > 7 for days in reply["champion_days_to_expiry"].values())
    newest = CandleArchive(aws.s3, aws.bucket, "binance").last_open_ms("SOL/USDT", "15m")
    assert newest == int((utc(2025, 2, 15, 0, 10) - timedelta(minutes=25)).timestamp() * 1000)
