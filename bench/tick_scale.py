"""A tick at scale: predict + signal for 10, 50, 100 (and 1,000) markets against a fake exchange.

Markets are the four bundled real pairs cloned under new names (`BTC7/USDT`, ...), each clone's
series rotated and rescaled so no two markets compute on the same numbers. The exchange is
`FakeExchange` with 100 ms per request, behind the real `CcxtSource` (validation, retries) and the
real `run_tick` / `process_handoff`. Measured in one run:

- wall time of a whole tick, fetching with the default concurrency and with concurrency 1;
- CPU per market after the fetch: the same tick over the already-fetched snapshots (no latency),
  `time.process_time()` around predict + signal, divided by the market count;
- what ccxt's own rate limiter does to the fetch, with Binance's declared costs, in its default
  leaky-bucket mode and in the rolling-window mode `CcxtSource` configures;
- 1,000 markets in one function (the sharded tick through the deployed plan: bench/shard_tick.py).

    .venv/bin/python bench/tick_scale.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import io
import json
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
os.environ.setdefault("LOG_LEVEL", "ERROR")

import ccxt
from ccxt.async_support.base.throttler import Throttler
from figures import Figure, emit, median, verdict

from traderai.adapters.model_registry import BundledModels
from traderai.contracts import Candles, MarketInfo, Signal
from traderai.market.exchange import RATE_LIMITER, CcxtSource
from traderai.market.fetch import DEFAULT_CONCURRENCY, MarketSnapshot, fetch_markets
from traderai.market.replay import bundled_candles_dir, candles_file_name
from traderai.services import predict as predict_module
from traderai.services.predict import TickResult, run_tick
from traderai.services.signal import process_handoff
from traderai.settings import Settings
from traderai.testing.fake_exchange import FakeExchange

SECTION = "2. Tick at scale"
STOOD = ("real: CcxtSource, run_tick, process_handoff; stood in: FakeExchange (100 ms/request), markets and models "
         "cloned from the 4 bundled pairs, an in-memory log and signal store")
BASE_PAIRS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT")
LATENCY_S = 0.100
TICK_OFFSET_S = 3  # the scheduler fires a few seconds after the mark
# Binance spot: 6,000 request weight per minute per IP; klines weight 2 (limit <= 1000), 24h ticker of one
# symbol weight 2 (https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits). ccxt declares
# rateLimit 50 ms and cost 0.4 for both, i.e. 1 cost unit = 5 weight, 1,200 units a minute.
BINANCE_WEIGHT_PER_MINUTE = 6000


def weight_of(count: int) -> int:
    """Request weight of `count` spot markets' tick, as the plan counts it (klines each, tickers in batches)."""
    from traderai.core.shards import shard_weight

    return shard_weight([f"C{i}/USDT" for i in range(count)])


def requests_of(count: int) -> int:
    """Exchange requests of `count` spot markets' tick: a klines request each, the tickers in batches."""
    from traderai.core.shards import TICKER_BATCH_SIZE

    return count + -(-count // TICKER_BATCH_SIZE)


@functools.cache
def base_candles() -> dict[str, Candles]:
    from traderai.market.csv import load_candles_csv

    return {s: load_candles_csv(bundled_candles_dir() / candles_file_name(s), s, "15m") for s in BASE_PAIRS}


def clone_markets(count: int) -> dict[str, Candles]:
    """`count` markets made of the bundled pairs: clone k of a pair is rotated by 97·k candles, rescaled."""
    markets: dict[str, Candles] = {}
    for index in range(count):
        base = BASE_PAIRS[index % len(BASE_PAIRS)]
        clone = index // len(BASE_PAIRS)
        source = base_candles()[base]
        symbol = f"{base.split('/')[0]}{clone}/USDT"
        shift, scale = 97 * clone, 1.0 + 0.003 * clone
        arrays = [np.roll(getattr(source, name), shift) * (scale if name != "volume" else 1.0)
                  for name in ("open", "high", "low", "close", "volume")]
        markets[symbol] = Candles(symbol, "15m", source.open_time_ms, *arrays)
    return markets


def tick_time_of(markets: dict[str, Candles]) -> datetime:
    """A 15-minute mark near the end of the data: every market's candle closes exactly then."""
    candles = next(iter(markets.values()))
    close_ms = int(candles.open_time_ms[-50]) + 900_000
    return datetime.fromtimestamp(close_ms / 1000, tz=UTC)


class ClonedModels:
    """The bundled model of the pair each clone was made from (one model object per pair, as warm)."""

    def __init__(self) -> None:
        self._bundled = BundledModels()

    def get(self, symbol: str, timeframe: str) -> Any:
        base = symbol.split("/")[0].rstrip("0123456789")
        return self._bundled.get(f"{base}/USDT", timeframe)


class MemoryLog:
    """A log that serialises what it is given (that CPU is part of the tick) and keeps the bytes in memory,
    so a claim-check hand-off (over 200 KB, e.g. 1,000 markets) is redeemed from it as from S3."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def write(self, kind: str, tick_time: datetime, records: list[Any], shard: str | None = None) -> str:
        from traderai.adapters.logs import log_key, to_json_lines

        key = log_key(kind, tick_time, shard)
        self.objects[key] = to_json_lines(records)
        return key

    def read(self, key: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.objects[key].decode().splitlines() if line]


class MemoryRepository:
    """Signals kept in a dict: the signal step's logic without DynamoDB."""

    def __init__(self) -> None:
        self.signals: dict[str, Signal] = {}

    def active_signal_ids(self, symbols: Iterable[str], now: datetime) -> dict[tuple[str, str], frozenset[str]]:
        return {}

    def put_new(self, signal: Signal) -> bool:
        return self.signals.setdefault(signal.signal_id, signal) is signal

    def closed_signals(self, symbol: str, created_since: str) -> list[Signal]:
        return []


class PrefetchedSource:
    """Serves snapshots fetched earlier, instantly: a tick over it costs only the work after the fetch."""

    exchange_id = "binance"

    def __init__(self, snapshots: dict[str, MarketSnapshot]) -> None:
        self._snapshots = snapshots

    async def fetch_candles(self, symbol: str, timeframe: str, limit: int, now: datetime) -> Candles:
        return self._snapshots[symbol].candles

    async def market_info(self, symbol: str, now: datetime) -> MarketInfo:
        return self._snapshots[symbol].info


class ThrottledFakeExchange(FakeExchange):
    """FakeExchange behind ccxt's own rate limiter, with Binance's declared costs (ccxt `binance.api`)."""

    def __init__(self, *args: Any, bucket: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bucket = bucket
        self._throttler: Throttler | None = None
        api = ccxt.binance().describe()["api"]["public"]["get"]
        self._costs = {"fetch_ohlcv": float(api["klines"]["cost"]), "fetch_ticker": float(api["ticker/24hr"]["cost"])}

    async def _throttle(self, method: str) -> None:
        if self._throttler is None:
            self._throttler = Throttler(dict(self._bucket), asyncio.get_running_loop())
        await self._throttler(self._costs[method])

    async def publicGetKlines(self, params: Any) -> Any:  # a spot market's fetch_ohlcv (the clones are spot)
        await self._throttle("fetch_ohlcv")
        return await super().publicGetKlines(params)

    async def fetch_ticker(self, symbol: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        await self._throttle("fetch_ticker")
        return await super().fetch_ticker(symbol, *args, **kwargs)

    async def fetch_tickers(self, symbols: Any = None, *args: Any, **kwargs: Any) -> dict[str, Any]:
        from traderai.core.shards import TICKER_WEIGHT, ticker_batch_weight

        if self._throttler is None:
            self._throttler = Throttler(dict(self._bucket), asyncio.get_running_loop())
        # ccxt's cost for one symbol's ticker is its weight's share: a batch costs its weight in that unit
        await self._throttler(self._costs["fetch_ticker"] / TICKER_WEIGHT * ticker_batch_weight(len(symbols or ())))
        return await super().fetch_tickers(symbols, *args, **kwargs)


def ccxt_bucket(algorithm: str) -> dict[str, Any]:
    """The token bucket ccxt builds for binance: its default leaky bucket, or the rolling window."""
    rate_limit = float(ccxt.binance().rateLimit)
    if algorithm == "leakyBucket":
        return {"refillRate": 1 / rate_limit, "capacity": 1, "delay": 0.001, "cost": 1, "algorithm": "leakyBucket"}
    return {"refillRate": 1 / rate_limit, "capacity": 1, "delay": 0.001, "cost": 1, "algorithm": "rollingWindow",
            "windowSize": float(RATE_LIMITER["rollingWindowSize"]), "rateLimit": rate_limit}


@dataclass(frozen=True)
class TickRun:
    markets: int
    concurrency: int
    wall_s: float
    cpu_s: float
    predictions: int
    failures: int
    peak_in_flight: int


def settings_for(markets: Sequence[str]) -> Settings:
    return Settings(markets=tuple(markets), market_source="ccxt", candle_limit=500, bucket_name="bench")


async def _tick(markets: dict[str, Candles], concurrency: int, exchange: FakeExchange) -> tuple[TickRun, TickResult]:
    settings = settings_for(list(markets))
    tick_time = tick_time_of(markets)
    now = tick_time + timedelta(seconds=TICK_OFFSET_S)
    exchange.set_now(now)
    source = CcxtSource(settings, exchange=exchange)
    await source.check_settings()  # a warm container has its markets loaded
    # the fake writes the replies it will serve before the clock starts (the tick is 50 candles from the end)
    exchange.prepare_klines(series.tail(settings.candle_limit + 60) for series in markets.values())
    models = ClonedModels()
    for symbol in markets:
        models.get(symbol, "15m")  # models cached, as after the first tick
    original = predict_module.fetch_markets
    predict_module.fetch_markets = functools.partial(fetch_markets, concurrency=concurrency)
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        log = MemoryLog()
        result = await run_tick(settings, source, models, log, tick_time, now)
        process_handoff(result.handoff(), settings.strategy, MemoryRepository(), log, now)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        predict_module.fetch_markets = original
    run = TickRun(len(markets), concurrency, wall, cpu, len(result.predictions), len(result.failures),
                  exchange.peak_in_flight)
    return run, result


def run_tick_once(markets: dict[str, Candles], concurrency: int, latency_s: float = LATENCY_S,
                  bucket: dict[str, Any] | None = None) -> TickRun:
    """One whole tick (fetch + predict + signal) with a fresh fake exchange."""
    now = tick_time_of(markets)
    exchange = (ThrottledFakeExchange(markets, now=now, latency_s=latency_s, bucket=bucket) if bucket
                else FakeExchange(markets, now=now, latency_s=latency_s))
    return asyncio.run(_tick(markets, concurrency, exchange))[0]


def compute_cpu_per_market(markets: dict[str, Candles], repeats: int = 3) -> tuple[float, float]:
    """(CPU s, wall s) per market of predict + signal over already-fetched snapshots; best of `repeats`."""
    settings = settings_for(list(markets))
    tick_time = tick_time_of(markets)
    now = tick_time + timedelta(seconds=TICK_OFFSET_S)

    async def fetched() -> dict[str, MarketSnapshot]:
        exchange = FakeExchange(markets, now=now)
        source = CcxtSource(settings, exchange=exchange)
        snapshots, failures = await fetch_markets(source, markets, "15m", settings.candle_limit + 1, now)
        assert not failures, failures
        return snapshots

    source = PrefetchedSource(asyncio.run(fetched()))
    models = ClonedModels()
    best_cpu, best_wall = float("inf"), float("inf")
    for _ in range(repeats):
        loop = asyncio.new_event_loop()
        wall, cpu = time.perf_counter(), time.process_time()
        log = MemoryLog()
        result = loop.run_until_complete(run_tick(settings, source, models, log, tick_time, now))
        process_handoff(result.handoff(), settings.strategy, MemoryRepository(), log, now)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        loop.close()
        assert len(result.predictions) == len(markets), result.failures
        best_cpu, best_wall = min(best_cpu, cpu), min(best_wall, wall)
    return best_cpu / len(markets), best_wall / len(markets)


def _run_shard(job: tuple[int, int, int, Any]) -> tuple[float, float, int]:
    """Markets [start, start+count) of the clone set as one tick, as one invocation would run it.

    Returns (wall s, CPU s, predictions) of the tick alone. Building the markets is not timed, and the
    shards running side by side start their ticks together (a barrier), as concurrent invocations would.
    """
    start, count, concurrency, barrier = job
    markets = dict(list(clone_markets(start + count).items())[start:])
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait(timeout=60)
    with contextlib.redirect_stdout(io.StringIO()):
        run = run_tick_once(markets, concurrency)
    return run.wall_s, run.cpu_s, run.predictions


def sharded(total: int, shards: int, concurrency: int) -> list[tuple[float, float, int]]:
    """`total` markets split into `shards` ticks, one process per shard, one shard per core at a time.

    A shard per core keeps each shard's wall time what its own Lambda sandbox would see; running all
    of them at once on this machine's 2 cores would measure the cores, not the design.
    """
    size = -(-total // shards)
    starts = list(range(0, total, size))
    workers = max(1, min(len(starts), os.cpu_count() or 1))
    context = multiprocessing.get_context("spawn")
    results: list[tuple[float, float, int]] = []
    with context.Manager() as manager, context.Pool(workers) as pool:
        for batch in range(0, len(starts), workers):
            group = starts[batch:batch + workers]
            barrier = manager.Barrier(len(group))
            jobs = [(start, min(size, total - start), concurrency, barrier) for start in group]
            results.extend(pool.map(_run_shard, jobs, chunksize=1))
    return results


def measure(quick: bool) -> list[Figure]:
    """Every figure of this section (the 1,000-market runs unless `quick`)."""
    figures: list[Figure] = []
    concurrency = DEFAULT_CONCURRENCY
    print(f"tick at scale: FakeExchange {LATENCY_S * 1000:.0f} ms/request, fetch concurrency {concurrency}, "
          f"{os.cpu_count()} CPUs", file=sys.stderr)

    cpu_per_market, _ = compute_cpu_per_market(clone_markets(100))
    for count in (10, 50, 100):
        markets = clone_markets(count)
        runs = [run_tick_once(markets, concurrency) for _ in range(3)]
        best = min(runs, key=lambda r: r.wall_s)
        assert best.predictions == count, f"{count} markets: {best.predictions} predictions, {best.failures} failed"
        target = "≤ 1.5 s" if count == 100 else ""
        figures.append(Figure(SECTION, f"{count} markets, tick wall (concurrency {concurrency})",
                              f"{best.wall_s:.2f} s", target, verdict(best.wall_s <= 1.5) if target else "info",
                              f"best of 3 (median {median([r.wall_s for r in runs]):.2f} s); "
                              f"{best.peak_in_flight} requests in flight at peak; {STOOD}"))
    hundred = clone_markets(100)
    sequential = run_tick_once(hundred, 1)
    figures.append(Figure(SECTION, "100 markets, tick wall, sequential fetch (concurrency 1)",
                          f"{sequential.wall_s:.2f} s", "", "info",
                          f"a sanity check (≥ 10 s by construction): {requests_of(100)} requests one after another "
                          f"(a klines request per market, the tickers in batches), 100 ms each; {STOOD}"))
    figures.append(Figure(SECTION, "CPU per market after the fetch (predict + signal)",
                          f"{cpu_per_market * 1000:.2f} ms", "≤ 10 ms", verdict(cpu_per_market <= 0.010),
                          f"process_time over 100 prefetched markets, best of 3; {STOOD}"))

    leaky = run_tick_once(hundred, concurrency, bucket=ccxt_bucket("leakyBucket"))
    rolling = run_tick_once(hundred, concurrency, bucket=ccxt_bucket("rollingWindow"))
    figures.append(Figure(SECTION, "100 markets behind ccxt's default leaky bucket (binance costs)",
                          f"{leaky.wall_s:.2f} s", "", "info",
                          "ccxt spaces every request by cost×rateLimit (0.4×50 ms for a klines request or a "
                          f"ticker batch of 20): {requests_of(100)} requests ≥ {requests_of(100) * 0.02:.1f} s; "
                          f"ccxt's own Throttler; {STOOD}"))
    figures.append(Figure(SECTION, "100 markets behind the rolling 60 s window CcxtSource now uses",
                          f"{rolling.wall_s:.2f} s", "≤ 1.5 s", verdict(rolling.wall_s <= 1.5),
                          f"{weight_of(100)} of {BINANCE_WEIGHT_PER_MINUTE} weight/min; ccxt's own "
                          f"Throttler; {STOOD}"))

    if not quick:
        thousand = clone_markets(1000)
        single = run_tick_once(thousand, concurrency)
        figures.append(Figure(SECTION, "1,000 markets in one function", f"{single.wall_s:.2f} s", "", "info",
                              f"CPU {single.cpu_s:.2f} s; weight {weight_of(1000)}/tick of "
                              f"{BINANCE_WEIGHT_PER_MINUTE}/min; {STOOD}"))
        # The sharded tick through the deployed plan is bench/shard_tick.py.
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true", help="skip the 1,000-market runs")
    args = parser.parse_args(argv)
    with contextlib.redirect_stdout(io.StringIO()):  # Powertools prints EMF metric lines
        figures = measure(args.quick)
    emit(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
