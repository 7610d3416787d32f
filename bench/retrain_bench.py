"""Retraining: wall time and peak memory of the train step, the Lambda memory that follows, and how long a
warm PredictFunction takes to serve a promoted model.

    .venv/bin/python bench/retrain_bench.py [--data DIR] [--json PATH] [--quick]

- **4 markets x 180 days**: the real Binance 15m candles (`--data`, default the bundled ones), the newest
  180 days each, through `services.retraining.train_step` (the shipped recipe, the archive in moto S3).
- **100 markets x 1 year**: STAND-IN markets: each is one of the real series of `--data` over a different
  365-day window (offsets of 7 days), re-stamped onto one common calendar year so the recipe's calendar
  split treats them as 100 markets side by side. Real price paths, synthetic market identities; the
  candles are served from memory, not read from (moto) S3 (stood in: the archive reads). Needs
  `--data` with more than a year and a half of candles (the bundled 180 days are too short; skipped then).
- Each case runs in its own interpreter; peak memory is that process's max RSS (`resource.getrusage`),
  Python and numpy/scikit-learn included, as Lambda counts it.
- **promotion -> served**: the real PredictFunction handler (replay source, moto S3) warm, a promotion by the
  registry's conditional pointer move, then the handler invoked every 0.25 s until its predictions carry the
  new model_id. MODEL_REFRESH_SECONDS is scaled down to 2 s for the measurement (stood in); deployed, the
  bound is MODEL_REFRESH_SECONDS (60 s) after the last pointer read, so the first 5-minute tick after a
  promotion serves the new model.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from figures import INFO, Figure, verdict  # noqa: E402

SECTION = "8. Retraining"
LAMBDA_SIZES_MB = (1024, 1769, 2048, 3008, 4096, 6144, 8192, 10240)  # 1,769 MB = one full vCPU


def _load(data_dir: Path | None, symbols: list[str]):
    from traderai.market.csv import load_candles_csv
    from traderai.market.replay import bundled_candles_dir, candles_file_name

    root = data_dir or bundled_candles_dir()
    return {s: load_candles_csv(root / candles_file_name(s), s) for s in symbols}


def _restamped(candles, symbol: str, start: int, count: int, end_ms: int):
    from traderai.contracts import Candles

    part = candles.slice(start, start + count)
    shift = end_ms - int(part.open_time_ms[-1])
    return Candles(symbol, "15m", part.open_time_ms + shift, part.open, part.high, part.low, part.close, part.volume)


class InMemoryArchive:
    """The archive's read side over candles in memory (the large case: S3 reads are not what is timed)."""

    def __init__(self, markets) -> None:
        self.markets = markets

    def market_prefix(self, symbol: str, timeframe: str) -> str:
        return f"memory/{symbol}/{timeframe}/"

    def load(self, symbol: str, timeframe: str, start_ms: int, end_ms: int):
        import numpy as np

        candles = self.markets[symbol]
        lo, hi = np.searchsorted(candles.open_time_ms, [start_ms, end_ms])
        return candles.slice(int(lo), int(hi))


def run_case(case: str, data_dir: Path | None) -> dict[str, float | int | str]:
    """One train step in this process: archive filled in moto, then `train_step`; returns its figures."""
    import asyncio

    import boto3
    import numpy as np
    from moto import mock_aws

    from traderai.adapters.candle_archive import CandleArchive
    from traderai.services.archive import RecordedHistory, archive_markets
    from traderai.services.retraining import RetrainSettings, train_step
    from traderai.settings import Settings

    real = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT"]
    series = _load(data_dir, real)
    end = min(int(c.open_time_ms[-1]) for c in series.values())
    step = 900_000
    if case == "small":
        days = 180
        markets = {s: c.tail((days + 16) * 96) for s, c in series.items()}
    else:
        days, markets = 365, {}
        count = days * 96 + 14 * 96 + 96
        for i in range(100):
            source = series[real[i % 4]]
            offset = (i // 4) * 7 * 96
            start = len(source) - count - offset
            if start < 0:
                raise SystemExit(f"--data holds too little history for 100 x 1 year (need {count + offset} candles)")
            markets[f"M{i:03d}/USDT"] = _restamped(source, f"M{i:03d}/USDT", start, count, end)
    now = datetime.fromtimestamp((end + step) / 1000, tz=UTC) + timedelta(minutes=5)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        if case == "small":  # the real path: the archive in (moto) S3, read back by the train step
            archive = CandleArchive(s3, "bench", "binance")
            asyncio.run(archive_markets(archive, RecordedHistory(markets), list(markets), "15m", now,
                                        backfill_days=days + 16, concurrency=8))
        else:  # 1,300 monthly objects through moto would time moto: the candles are served from memory
            archive = InMemoryArchive(markets)
        settings = Settings(markets=tuple(markets), bucket_name="bench")
        retrain = RetrainSettings(train_days=days, eval_days=14)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started, cpu_started = time.perf_counter(), time.process_time()
        result = train_step(settings, retrain, archive, s3, now)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes
    rows = int(sum(len(c) for c in markets.values()))
    del np
    return {"case": case, "markets": len(markets), "days": days, "candles": rows, "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "peak_rss_mb": round(peak_mb), "rss_before_train_mb": round(rss_before / 1024),
            "candidates": len(result["candidates"]), "refused": len(result["refused"])}


def lambda_memory(peak_mb: float) -> int:
    """The smallest Lambda size with 30 % headroom over the measured peak, at least one full vCPU (1,769 MB)."""
    need = max(1769, math.ceil(peak_mb * 1.3))
    return next((size for size in LAMBDA_SIZES_MB if size >= need), LAMBDA_SIZES_MB[-1])


def promotion_latency(refresh_s: float = 2.0, every_s: float = 0.25) -> float:
    """Seconds from a promotion until the warm predict handler's predictions carry the new model_id."""
    import os

    import boto3
    from moto import mock_aws

    os.environ.update({"LOG_LEVEL": "ERROR", "POWERTOOLS_METRICS_DISABLED": "true"})  # no per-invocation output

    from traderai import wiring
    from traderai.adapters import model_registry as registry
    from traderai.adapters.model_registry import BundledModels
    from traderai.infra import load_template
    from traderai.local.aws import LocalAws
    from traderai.testing.handlers import FakeLambdaContext, load_event, load_handler

    with mock_aws():
        s3, dynamodb = boto3.client("s3", region_name="us-east-1"), boto3.client("dynamodb", region_name="us-east-1")
        local = LocalAws(s3, dynamodb, load_template(), {"DataBucket": "bench"}).provision()
        os.environ.update(local.environment("PredictFunction", {"MarketSource": "replay", "Markets": "BTC/USDT",
                                                                "LogLevel": "ERROR"}))
        wiring.clear()
        wiring.MODEL_REFRESH_SECONDS = refresh_s
        handler = load_handler("predict").handler
        event = load_event("predict_schedule.json")
        handler(event, FakeLambdaContext())  # warm
        served = BundledModels().get("BTC/USDT", "15m")
        root = BundledModels().root
        pointer = json.loads((root / "BTC_USDT" / "15m" / "latest.json").read_text())
        new_id = "BTC_USDT_15m_20990101_000000"
        registry.write_model(s3, "bench", "models", json.loads((root / pointer["key"]).read_text()),
                             {**served.manifest, "model_id": new_id})
        time.sleep(refresh_s)  # the cached pointer is due: the next invocation re-reads it ...
        handler(event, FakeLambdaContext())  # ... now, just before the promotion: the worst case follows
        registry.move_pointer(s3, "bench", "models", "BTC/USDT", "15m", new_id, expected_model_id=served.model_id,
                              reason="bench", moved_at="bench")
        promoted = time.perf_counter()
        while True:
            reply = handler(event, FakeLambdaContext())
            if {p["model_id"] for p in reply["predictions"]} == {new_id}:
                return time.perf_counter() - promoted
            time.sleep(every_s)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="candle files (BASE_QUOTE-15m.csv.gz); default the bundled ones")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--case", choices=("small", "large"), help=argparse.SUPPRESS)  # one case, in-process
    parser.add_argument("--quick", action="store_true", help="4 markets x 180 days only")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.data)))
        return 0
    figures: list[Figure] = []
    cases = ["small"] if args.quick or args.data is None else ["small", "large"]
    for case in cases:
        command = [sys.executable, __file__, "--case", case, *(["--data", str(args.data)] if args.data else [])]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            print(done.stderr[-2000:], file=sys.stderr)
            continue
        figures_of = json.loads(done.stdout.strip().splitlines()[-1])
        label = (f"{figures_of['markets']} markets x {figures_of['days']} days"
                 + (" (stand-in markets: real series, offset windows)" if case == "large" else " (real candles)"))
        print(f"{label}: train step {figures_of['wall_s']} s wall, {figures_of['cpu_s']} s CPU, "
              f"peak RSS {figures_of['peak_rss_mb']} MB, {figures_of['candles']:,} candles, "
              f"{figures_of['candidates']} candidates")
        memory = lambda_memory(figures_of["peak_rss_mb"])
        figures += [
            Figure(SECTION, f"train step wall time, {label}", f"{figures_of['wall_s']} s", "< 900 s (Lambda)",
                   verdict(figures_of["wall_s"] < 900),
                   f"CPU {figures_of['cpu_s']} s; this machine, shared (2 cores); Lambda at 1 vCPU"),
            Figure(SECTION, f"train step peak memory, {label}", f"{figures_of['peak_rss_mb']} MB", "", INFO,
                   f"Lambda memory that follows (peak + 30 %, >= 1 vCPU): {memory} MB"),
        ]
    seconds = promotion_latency()
    print(f"promotion -> served by a warm PredictFunction: {seconds:.2f} s with MODEL_REFRESH_SECONDS=2 "
          f"(deployed: 60 s, so the first tick after a promotion)")
    figures.append(Figure(SECTION, "promotion -> warm PredictFunction serves it", f"{seconds:.2f} s",
                          "<= MODEL_REFRESH_SECONDS + one invocation", INFO,
                          "refresh scaled to 2 s, invoked every 0.25 s (stood in); deployed: 60 s, the next tick"))
    if args.json:
        args.json.write_text(json.dumps([f.to_dict() for f in figures]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
