"""A sharded tick at 1,000 and 10,000 markets through the deployed plan, in the local stack, shards as Lambda
runs them: separate warm worker processes (local.sandboxes), one per sandbox.

What is real: the template's environment, the market list read from S3 by the Plan state (MarketListKey, the
deployed path for thousands of markets), the plan object in S3 read as the Distributed Map's ItemReader reads
it (services.sharding.run_sharded_tick), the real PredictFunction handler in up to 10 sandboxes (Plan, then one
invocation per shard) and the real SignalFunction handler in up to 10 more, `CcxtSource` (validation, retries,
the shard's share of the exchange budget, the conversion of each klines reply to candles), moto's server
for S3 and DynamoDB (every plan, predictions/ and decisions/ object written over HTTP on loopback, as the local
stack does).
What is stood in: the exchange (`FakeExchange`, 100 ms per request, markets cloned from the four bundled pairs;
klines handed back as Binance's reply decodes from JSON, tickers as ccxt parses them),
the models (each clone served by the bundled model of its pair), Step Functions (the runner's threads),
Lambda's sandboxes (worker processes on this machine's cores, however many that is).

Measured: tick fired -> the last shard's decisions object written, per tick, over consecutive 15m closes, the
sandboxes warm (all of them started before the first tick; the first WARMUP_TICKS closes, each sandbox's first
calls, are run and not counted; with the models in S3 the two 5-minute ticks between closes are fired too, as
deployed, and not timed).

    .venv/bin/python bench/shard_tick.py [--quick] [--json PATH] [--profile N]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import logging
import os
import pstats
import shutil
import socket
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")

from figures import Figure, emit, median, verdict
from tick_scale import BASE_PAIRS, LATENCY_S, ClonedModels, base_candles

from traderai.adapters.market_list import DEFAULT_LIST_KEY
from traderai.contracts import Candles
from traderai.core.shards import TICKER_BATCH_SIZE, max_spot_markets, usable_weight

SECTION = "2. Tick at scale"
KEEP_CANDLES = 700  # enough for CANDLE_LIMIT 500 + the ticks measured
WARMUP_TICKS = 2  # closes run before the measured ones: a sandbox's first calls are not a warm tick's cost
LIST_KEY = DEFAULT_LIST_KEY
_TICK: list[datetime] = [datetime(2025, 1, 1, tzinfo=UTC)]  # in a sandbox: the tick its last event named
_FIRST_TICK: list[datetime] = []  # in a sandbox: the first tick it served


def clone_symbol(index: int) -> str:
    return f"{BASE_PAIRS[index % 4].split('/')[0]}{index // 4}/USDT"


class LazyClones(dict):  # type: ignore[type-arg]
    """The cloned markets (as tick_scale.clone_markets, rotated, not rescaled) made on first use: a sandbox builds
    only the markets its shards ask for, not all 10,000 (each 700 candles), and every sandbox builds the same
    numbers."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self._symbols = {clone_symbol(i): i for i in range(count)}

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._symbols

    def __iter__(self) -> Iterator[str]:
        return iter(self._symbols)

    def __len__(self) -> int:
        return len(self._symbols)

    def __missing__(self, symbol: str) -> Candles:
        import numpy as np

        index = self._symbols[symbol]
        source = base_candles()[BASE_PAIRS[index % 4]]
        clone = index // 4
        shift = 97 * clone
        # the last KEEP_CANDLES + 200 candles of np.roll(series, shift), taken without the full-length copy
        # (a worker serving 30 shards would otherwise hold 3,000 full series); not rescaled, unlike
        # tick_scale.clone_markets: a clone's candles are its pair's values at other times, so the fake exchange
        # writes each candle's decimal strings once per sandbox for all clones of a pair (writing them, ~2.5 ms a
        # new market, is the fake's CPU, not the tick's: converting them is the tick's)
        n = len(source.close)
        rows = (np.arange(n - KEEP_CANDLES - 200, n) - shift) % n
        arrays = [np.take(getattr(source, name), rows) for name in ("open", "high", "low", "close", "volume")]
        value = Candles(symbol, "15m", source.open_time_ms[-KEEP_CANDLES - 200:].copy(), *arrays)
        self[symbol] = value
        return value


def replayed_clock() -> float:
    """A sandbox's monotonic clock plus the replayed time since its first tick: the bench fires 15m ticks back to
    back, deployed they are 15 minutes apart (the rate-limit window and the model pointers' refresh follow it)."""
    offset = (_TICK[0] - _FIRST_TICK[0]).total_seconds() if _FIRST_TICK else 0.0
    return time.monotonic() + offset


def install_fakes(count: int, models_in_s3: bool, loads_dir: str | None = None) -> None:
    """In each sandbox, before the handler is imported: the fake exchange behind the real CcxtSource, the
    models (the real registry over the clones published to S3, or the bundled ones in memory), and the clocks
    following the tick of the event being served. With `loads_dir`, every model the registry loads from S3
    appends a byte to `<loads_dir>/<pid>` (the bench counts a tick's loads by the files' sizes)."""
    from traderai import wiring
    from traderai.adapters.model_registry import ModelRegistry

    if loads_dir is not None:
        tally = Path(loads_dir) / str(os.getpid())
        load = ModelRegistry._load

        def counted(self: ModelRegistry, pointer: Any) -> Any:
            with tally.open("ab") as out:
                out.write(b".")
            return load(self, pointer)

        ModelRegistry._load = counted  # type: ignore[method-assign]
    from traderai.market import exchange as exchange_module
    from traderai.market.budget import WeightBudget
    from traderai.market.exchange import CcxtSource
    from traderai.testing.fake_exchange import FakeExchange

    # The bench fires 15m ticks back to back; deployed, they are 15 minutes apart, so a warm sandbox's earlier
    # requests have left the exchange's 60 s window. Each shard's limiter reads a clock that runs as the wall
    # clock plus the replayed time since the sandbox's first tick: the budget holds within a tick, as deployed.
    def budget(weight_per_window: int) -> WeightBudget:
        return WeightBudget(weight_per_window, clock=replayed_clock)

    exchange_module.WeightBudget = budget  # type: ignore[assignment,misc]
    original = wiring.build_predict_runtime

    def build(settings: Any, s3: Any, source: Any = None) -> Any:
        exchange = FakeExchange({}, now=lambda: _TICK[0] + timedelta(seconds=3), latency_s=LATENCY_S)
        exchange._candles = LazyClones(count)
        exchange.prepare_klines(base_candles().values())  # the clones' values: written before the first tick
        built = original(settings, s3, source=CcxtSource(settings, exchange=exchange))
        if models_in_s3:
            built.models._clock = replayed_clock
        else:
            built.models = ClonedModels()
        built.clock = lambda: _TICK[0] + timedelta(seconds=3)
        return built

    wiring.build_predict_runtime = build


def follow_tick(event: Any) -> None:
    """Before each event: the fake clocks at the tick it names (scheduled event `time`, hand-off `tick_time`)."""
    from traderai import wiring
    from traderai.contracts import parse_iso_utc

    if "detail-type" in event:
        _TICK[0] = parse_iso_utc(event["time"], "time")
        if not _FIRST_TICK:
            _FIRST_TICK.append(_TICK[0])
    else:
        _TICK[0] = parse_iso_utc(event["tick_time"], "tick_time")
        wiring.signal_runtime().clock = lambda: _TICK[0] + timedelta(seconds=5)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_role(boxes: Any) -> dict[str, float]:
    """CPU seconds so far of each function's sandboxes, and of this process (the moto server, the runner)."""
    from traderai.local.sandboxes import Sandboxes

    assert isinstance(boxes, Sandboxes)
    used = {name: sum(_cpu_seconds(w.process.pid) for w in workers if w.process is not None)
            for name, workers in boxes._all.items()}
    used["this process (moto server, runner)"] = time.process_time()
    return used


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def publish_clones(s3: Any, bucket: str, count: int) -> float:
    """Each clone's model published to the bucket as `traderai train --bucket` would (the bundled model of its
    pair under the clone's symbol and id: a pointer, model.json, manifest.json); returns the seconds taken."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    from traderai.adapters.model_registry import BundledModels, publish

    root = BundledModels().root
    pairs = {}
    for pair in BASE_PAIRS:
        pointer = json.loads((root / pair.replace("/", "_") / "15m" / "latest.json").read_text())
        pairs[pair] = (json.loads((root / pointer["key"]).read_text()),
                       json.loads((root / pointer["manifest_key"]).read_text()))

    def one(index: int) -> None:
        artifact, manifest = pairs[BASE_PAIRS[index % 4]]
        symbol = clone_symbol(index)
        model_id = symbol.replace("/", "_") + manifest["model_id"][len(BASE_PAIRS[index % 4]):]
        publish(s3, bucket, "models", artifact, {**manifest, "symbol": symbol, "model_id": model_id})

    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(count)))
    return time.perf_counter() - started


@contextlib.contextmanager
def local_stack(count: int, params: dict[str, str], sandboxes: int, models_in_s3: bool = True,
                loads_dir: str | None = None) -> Iterator[tuple[Any, Any, Any]]:
    """moto's server with the template's bucket and tables, the market list uploaded, and the two functions'
    sandboxes with the template's environment (pointed at moto). Yields (sandboxes, plans, aws)."""
    import boto3
    from moto.server import ThreadedMotoServer

    from traderai.adapters.market_list import ShardPlans
    from traderai.local.aws import LocalAws
    from traderai.local.pipeline import environment
    from traderai.local.sandboxes import Sandboxes
    from traderai.market.listing import format_market_list

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per request (as `traderai local`)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # moto's backends live in this process and outlive a server: start every run from an empty account
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST"))
    base = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "POWERTOOLS_TRACE_DISABLED": "1", "POWERTOOLS_METRICS_DISABLED": "1", "LOG_LEVEL": "ERROR",
            "POWERTOOLS_LOG_LEVEL": "ERROR"}
    try:
        with environment(base):
            aws = LocalAws(boto3.client("s3"), boto3.client("dynamodb")).provision(with_models=False)
            if models_in_s3:
                publish_clones(aws.s3, aws.bucket, count)
            aws.s3.put_object(Bucket=aws.bucket, Key=LIST_KEY,
                              Body=format_market_list(clone_symbol(i) for i in range(count)))
            overrides = {"MarketSource": "ccxt", "MarketListKey": LIST_KEY, **params}
            # as Lambda's sandboxes, with AWS_LAMBDA_RUNTIME_API set (nothing answers there: the handlers are
            # called directly); wiring.ON_LAMBDA keys what only a sandbox does on it
            environments = {name: {**aws.environment(name, overrides), **base,
                                   "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"}
                            for name in ("PredictFunction", "SignalFunction")}
            with Sandboxes({"PredictFunction": "predict", "SignalFunction": "signal"}, environments,
                           per_function=sandboxes, setup=partial(install_fakes, count, models_in_s3, loads_dir),
                           before=follow_tick) as boxes:
                for name in environments:  # every sandbox up before the first tick: no cold start in a warm one
                    boxes.start(name, sandboxes)
                yield boxes, ShardPlans(aws.s3, aws.bucket), aws
    finally:
        server.stop()


def tick_of(index: int) -> datetime:
    """The index-th 15m close near the end of the bundled data (every clone's candle closes then)."""
    candles = base_candles()[BASE_PAIRS[0]]
    close_ms = int(candles.open_time_ms[-60 + index]) + 900_000
    return datetime.fromtimestamp(close_ms / 1000, tz=UTC)


def run(count: int, ticks: int, *, weight_per_minute: int = 6000, sandboxes: int = 10,
        profile: Path | None = None, models_in_s3: bool = True) -> tuple[list[float], dict[str, Any]]:
    """`ticks` measured ticks (after one cold tick) of `count` markets; returns their seconds and the detail.

    The measured ticks are 15m closes; with the models in S3, the two 5-minute ticks between closes are fired
    too, as deployed (not timed: they predict nothing, and warm each sandbox's model cache with the list)."""
    from traderai.local.scheduler import scheduled_event
    from traderai.services.sharding import run_sharded_tick

    params = {"ShardSize": "100", "ShardConcurrency": str(sandboxes),
              "ExchangeWeightPerMinute": str(weight_per_minute)}
    seconds: list[float] = []
    detail: dict[str, Any] = {"model_loads": []}
    loads_dir = tempfile.mkdtemp(prefix="traderai-bench-loads-")

    def loads_so_far() -> int:
        return sum(path.stat().st_size for path in Path(loads_dir).iterdir())

    with local_stack(count, params, sandboxes, models_in_s3, loads_dir) as (boxes, plans, _aws):
        for k in range(ticks + WARMUP_TICKS):
            event = scheduled_event(tick_of(k), "TickStateMachine")
            profiler = cProfile.Profile() if profile and k == ticks else None
            cpu_before, loads_before = cpu_by_role(boxes), loads_so_far()
            started = time.perf_counter()
            if profiler:
                profiler.enable()
            tick = run_sharded_tick(boxes.invoke, plans.read, event)
            elapsed = time.perf_counter() - started
            if profiler:
                profiler.disable()
                profiler.dump_stats(profile)
            if tick.errors:
                raise RuntimeError("; ".join(tick.errors[:3]))
            decided = sum(int((s.summary or {}).get("decisions", 0)) for s in tick.shards)
            assert tick.predictions == count and decided == count, (tick.predictions, decided, tick.failures[:3])
            cpu = {name: round(used - cpu_before.get(name, 0.0), 2) for name, used in cpu_by_role(boxes).items()}
            if k >= WARMUP_TICKS:  # each sandbox's first calls (clients, caches): not what a warm tick costs
                seconds.append(elapsed)
                detail["model_loads"].append(loads_so_far() - loads_before)
            detail.update({"shards": tick.plan["shards"], "sandboxes": boxes.counts(), "cpu_seconds": cpu,
                           "load": os.getloadavg(),
                           "shard_seconds": sorted(round(s.seconds, 2) for s in tick.shards)})
            # deployed, two 5-minute ticks without a close come before the next close
            if k < ticks + WARMUP_TICKS - 1 and models_in_s3:
                for minutes in (5, 10):
                    between = scheduled_event(tick_of(k) + timedelta(minutes=minutes), "TickStateMachine")
                    started = time.perf_counter()
                    quiet = run_sharded_tick(boxes.invoke, plans.read, between)
                    if quiet.errors or quiet.predictions:
                        raise RuntimeError(f"a tick without a close: {quiet.errors[:3]}, {quiet.predictions}")
                    detail.setdefault("between_seconds", []).append(round(time.perf_counter() - started, 2))
    shutil.rmtree(loads_dir, ignore_errors=True)
    return seconds, detail


def refused_at(count: int) -> str:
    """What the plan says of `count` markets against Binance's budget from one IP."""
    from traderai.core.shards import ShardPlanError, plan_shards

    try:
        plan_shards([clone_symbol(i) for i in range(count)], 100, 6000)
    except ShardPlanError as exc:
        return str(exc)
    return "planned"


def cpu_text(detail: dict[str, Any]) -> str:
    """`predict 3.8 s + signal 0.2 s + moto/runner 0.3 s` for the last tick."""
    cpu = detail.get("cpu_seconds", {})
    names = {"PredictFunction": "predict", "SignalFunction": "signal", "this process (moto server, runner)":
             "moto server and runner"}
    return " + ".join(f"{names.get(k, k)} {v:.1f} s" for k, v in cpu.items()) + " in the last tick"


def _ticks(seconds: list[float], detail: dict[str, Any]) -> str:
    """`3.61 s (212 models loaded), ...`: each warm tick with the models its sandboxes read from S3."""
    return ", ".join(f"{s:.2f} s ({n} models loaded)" for s, n in zip(seconds, detail["model_loads"], strict=True))


def _bound(detail: dict[str, Any], cores: int) -> str:
    """The CPU of the last tick by role, and what it implies: no schedule on `cores` cores finishes sooner."""
    total = sum(detail.get("cpu_seconds", {}).values())
    return (f"CPU {cpu_text(detail)}, {total:.1f} s in all: on {cores} cores no schedule finishes that tick in "
            f"under {total / cores:.1f} s")


def _share_text(count: int) -> str:
    """`210 weight/min per shard, 210 needed`: a shard's share of Binance's 6,000/min and what its tick uses."""
    from traderai.core.shards import plan_shards, shard_weight

    shard = plan_shards([clone_symbol(i) for i in range(count)], 100, 6000)[0]
    return f"{shard.weight_per_minute:,} weight/min per shard, {shard_weight(shard.markets):,} needed"


def _budget_text(count: int) -> str:
    """Whether Binance's budget from one IP (6,000/min less the reserve) covers `count` markets' tick."""
    from traderai.core.shards import shard_weights

    needed, usable = sum(shard_weights([clone_symbol(i) for i in range(count)], 100)), usable_weight(6000)
    if needed <= usable:
        return f"the Binance budget holds ({needed:,} weight/tick of {usable:,})"
    return (f"the Binance budget does not: {needed:,} weight/tick, {usable:,}/min per IP usable: the plan refuses "
            f"it; it needs {-(-needed // usable)} egress IPs")


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]


def decoding_seconds(repeats: int = 30) -> tuple[float, float]:
    """What FakeExchange skips, in seconds (medians of `repeats`): `json.loads` of a real Binance klines reply of
    501 candles (the fake hands back the reply as decoded), and ccxt decoding a 24h ticker reply for a batch of
    TICKER_BATCH_SIZE spot markets (the JSON, then `parse_tickers`: the fake hands back parsed tickers)."""
    import json
    import statistics

    import ccxt

    klines = json.dumps([[1_700_000_000_000 + i * 900_000, "42000.10000000", "42100.00000000", "41900.00000000",
                          "42050.50000000", "123.45600000", 1_700_000_899_999, "5190000.12345678", 1000,
                          "60.10000000", "2500000.00000000", "0"] for i in range(501)])
    exchange = ccxt.binance()
    symbols = TICKER_BATCH_SIZE
    exchange.set_markets([{"id": f"C{i}USDT", "symbol": f"C{i}/USDT", "base": f"C{i}", "quote": "USDT",
                           "baseId": f"C{i}", "quoteId": "USDT", "type": "spot", "spot": True, "margin": False,
                           "swap": False, "future": False, "option": False, "contract": False, "linear": None,
                           "inverse": None, "active": True, "precision": {"amount": 0.001, "price": 0.01},
                           "limits": {}, "info": {}} for i in range(symbols)])
    tickers = json.dumps([{"symbol": f"C{i}USDT", "priceChange": "-94.99999800", "priceChangePercent": "-95.960",
                           "weightedAvgPrice": "0.29628482", "prevClosePrice": "0.10002000", "lastPrice": "4.00000200",
                           "lastQty": "200.00000000", "bidPrice": "4.00000000", "bidQty": "100.00000000",
                           "askPrice": "4.00000200", "askQty": "100.00000000", "openPrice": "99.00000000",
                           "highPrice": "100.00000000", "lowPrice": "0.10000000", "volume": "8913.30000000",
                           "quoteVolume": "15.30000000", "openTime": 1_700_000_000_000,
                           "closeTime": 1_700_086_400_000, "firstId": 28385, "lastId": 28460, "count": 76}
                          for i in range(symbols)])
    wanted = [f"C{i}/USDT" for i in range(symbols)]

    def median_seconds(work: Any) -> float:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            work()
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    return (median_seconds(lambda: json.loads(klines)),
            median_seconds(lambda: exchange.parse_tickers(json.loads(tickers), wanted)))


def measure(quick: bool) -> list[Figure]:
    figures: list[Figure] = []
    cores = os.cpu_count() or 1
    klines_json, tickers = decoding_seconds()
    real = ("real: the handlers in worker processes (one per sandbox, warm), the S3 market list, the plan object, "
            "CcxtSource with the shard's budget share, its conversion of each market's klines reply (Binance's "
            "decimal strings) to candles, the model registry (one read of the stamp per sandbox and closing tick; a "
            "market's model, one S3 object, read the first time a sandbox meets the market), moto's server for "
            f"S3/DynamoDB; stood in: FakeExchange {LATENCY_S * 1000:.0f} ms/request, handing back each klines reply "
            f"as JSON decodes it (decoding a real 501-candle reply, {klines_json * 1000:.2f} ms per market on this "
            f"machine, is not in these figures) and the tickers as ccxt parses them (a real reply for a batch of "
            f"{TICKER_BATCH_SIZE}, {tickers * 1000:.2f} ms, 5 batches a shard, neither), markets and models cloned "
            "from the 4 bundled pairs, Step "
            f"Functions (the local runner), Lambda (processes on this machine's {cores} cores), S3 (moto)")
    alone, alone_detail = run(100, 3 if quick else 5, sandboxes=1)
    figures.append(Figure(SECTION, "one shard of 100 markets alone (local stack): tick fired -> decisions logged, p95",
                          f"{_p95(alone):.2f} s", "", "info",
                          f"{len(alone)} warm ticks, median {median(alone):.2f} s; what one Lambda sandbox runs; "
                          f"CPU {cpu_text(alone_detail)}; {real}"))
    seconds, detail = run(1000, 4 if quick else 8)
    load = detail["load"][0]
    figures.append(Figure(
        SECTION, "1,000 markets, sharded tick (local stack, shards in 10 sandbox processes): fired -> all decisions "
                 "logged, p95",
        f"{_p95(seconds):.2f} s", "≤ 2 s", verdict(_p95(seconds) <= 2.0),
        f"{len(seconds)} warm ticks (every sandbox started first, {WARMUP_TICKS} closes run before and not counted), "
        f"median {median(seconds):.2f} s, each: {_ticks(seconds, detail)}; a shard goes to "
        "whichever sandbox is free, as on Lambda; the two 5-minute ticks between closes (fired, not timed: "
        f"{_between(detail)}) load the list's models into each sandbox they reach; {detail['shards']} shards of 100 in "
        f"10 PredictFunction + 10 SignalFunction worker processes, 10 at once, on {cores} cores (load {load:.1f}); "
        f"{_bound(detail, cores)}; exchange budget 6,000/min shared: {_share_text(1000)}; {real}"))
    big, detail = run(10_000, 1, weight_per_minute=0, models_in_s3=False)
    load = detail["load"][0]
    figures.append(Figure(
        SECTION, "10,000 markets, same code (local stack, 10 sandbox processes, no exchange budget): fired -> all "
                 "decisions logged, p95",
        f"{_p95(big):.2f} s", "≤ 3 s", verdict(_p95(big) <= 3.0),
        f"{len(big)} warm ticks, median {median(big):.2f} s; 100 shards, 10 at a time on {cores} cores (load "
        f"{load:.1f}); {_bound(detail, cores)}; run without the weight budget, which refuses it: "
        f"{refused_at(10_000)}; the models served from memory in this row (publishing 10,000 models to moto takes "
        f"minutes), from S3 in the others; {real}"))
    one = _p95(alone)
    cpu = alone_detail["cpu_seconds"]
    # on Lambda: PredictFunction's 1,024 MB is ~0.58 vCPU, SignalFunction's 512 MB ~0.29 (1 vCPU at 1,769 MB);
    # their CPU stretches by 1/share, and the decoding the fake skips (100 klines replies' JSON, the shard's 5 ticker
    # replies) is added at predict's share
    skipped = 100 * klines_json + 5 * tickers
    slower = (cpu["PredictFunction"] * (1769 / 1024 - 1) + cpu["SignalFunction"] * (1769 / 512 - 1)
              + skipped * 1769 / 1024)
    for count, at_once in ((1000, 10), (10_000, 100)):
        waves = -(-(count // 100) // at_once)
        figures.append(Figure(
            SECTION, f"{count:,} markets on Lambda, ESTIMATE (not measured): {count // 100} shards, {at_once} at once",
            f"~{waves * (one + slower):.1f} s", f"≤ {2 if count == 1000 else 3} s", "info",
            f"{waves} wave(s) × (the one-shard p95 above, {one:.2f} s, + {slower:.2f} s): each sandbox runs its shard "
            f"alone, on its CPU share, at this machine's core speed; PredictFunction's 1,024 MB is about 0.58 vCPU "
            f"and SignalFunction's 512 MB about 0.29 (Lambda gives 1 vCPU at 1,769 MB), so their CPU above "
            f"({cpu['PredictFunction']:.2f} s and {cpu['SignalFunction']:.2f} s) takes 1.7× and 3.5× as long, and "
            f"the decoding the fake skips (100 klines replies' JSON and 5 ticker replies, {skipped:.2f} s) is added at "
            "1.7×; a sandbox whose models "
            "are not yet loaded adds one S3 read per market (10 at once); Step Functions' own latency (the Plan "
            "state, the Distributed Map's start, each child's) is not measured here; " + _budget_text(count)))
    return figures


def _between(detail: dict[str, Any]) -> str:
    between = detail.get("between_seconds", [])
    return (f"{between[0]:.1f} s for the first, which loaded the models, then median {median(between[1:]):.2f} s"
            if len(between) > 1 else "none")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true", help="fewer ticks")
    parser.add_argument("--profile", type=int, metavar="MARKETS",
                        help="only profile one warm tick of MARKETS markets (the runner's side) and print it")
    args = parser.parse_args(argv)
    if args.profile:
        one_ip = max_spot_markets(usable_weight(6000), 100)
        seconds, detail = run(args.profile, 2, profile=Path("/tmp/shard_tick.prof"),
                              weight_per_minute=0 if args.profile > one_ip else 6000,
                              sandboxes=min(10, -(-args.profile // 100)))
        print(seconds, detail)
        stats = io.StringIO()
        pstats.Stats("/tmp/shard_tick.prof", stream=stats).sort_stats("cumulative").print_stats(25)
        print(stats.getvalue())
        return 0
    emit(measure(args.quick), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
