"""Wiring: the adapters each function needs, built once per container (lazily, never at import).

Handlers call `predict_runtime()` / `signal_runtime()`; the first call reads and validates the
settings (a wrong setting fails the cold start naming it) and later warm calls reuse everything.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from traderai.adapters.logs import JsonLinesLog
from traderai.settings import Settings


@lru_cache(maxsize=1)
def s3_client() -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or None)


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class MarketRuntime:
    """What every function that reads markets keeps per container: settings, a source, a clock, a loop.

    The event loop lives as long as the container, so ccxt's sessions and loaded markets survive
    warm invocations.
    """

    settings: Settings
    source: Any
    clock: Callable[[], datetime] = field(default=wall_clock, kw_only=True)
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop, kw_only=True)

    def now_for(self, tick_time: datetime) -> datetime:
        """The live exchange runs on the wall clock; the replay runs on the tick's own clock."""
        if self.settings.market_source == "replay":
            return tick_time + timedelta(seconds=5)
        return self.clock()


@dataclass
class PredictRuntime(MarketRuntime):
    models: Any
    log: JsonLinesLog
    shards: Any = None  # services.sharding.ShardSettings

    def run(self, tick_time: datetime, shard: Any = None):
        """Every market, or one shard's (core.shards.Shard): its markets, its log object, its budget share."""
        from traderai.services.predict import run_tick

        markets, label = (None, None) if shard is None else (shard.markets, shard.label)
        if shard is not None and hasattr(self.source, "share_budget"):
            self.source.share_budget(shard.weight_per_minute)
        return self.loop.run_until_complete(
            run_tick(self.settings, self.source, self.models, self.log, tick_time, self.now_for(tick_time),
                     markets, label))


@dataclass
class TrackRuntime(MarketRuntime):
    store: Any

    def run(self, tick_time: datetime):
        from traderai.services.track import track

        return track(self.store, self.source, self.settings.strategy, self.now_for(tick_time), self.loop)


def build_predict_runtime(settings: Settings, s3: Any, source: Any = None) -> PredictRuntime:
    """Validate markets/timeframe against the source and find the models: fails fast, naming the setting."""
    from traderai.adapters.model_registry import ModelRegistry
    from traderai.market.fetch import make_source

    settings.require("bucket_name")
    source = source or make_source(settings)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(source.check_settings(settings.markets, settings.timeframe))
    # The pointer is re-read at most every MODEL_REFRESH_SECONDS, so a promoted model serves from the first
    # tick after that without a redeploy (one small GET per market and minute; docs/retraining.md).
    models = ModelRegistry(settings.bucket_name, settings.model_prefix, lambda: s3,
                           refresh_seconds=MODEL_REFRESH_SECONDS)
    from traderai.services.sharding import ShardSettings

    return PredictRuntime(settings, source, models, JsonLinesLog(s3, settings.bucket_name),
                          ShardSettings.from_env(settings), loop=loop)


MODEL_REFRESH_SECONDS = 60.0


_PREDICT_RUNTIMES: dict[str, PredictRuntime] = {}
_PREDICT_LOCK = threading.Lock()


def predict_runtime() -> PredictRuntime:
    """One per container. On Lambda that is one per process; the local runner runs concurrent shards in
    threads, so each thread (named per shard slot) is a container of its own, with its own event loop."""
    name = threading.current_thread().name
    with _PREDICT_LOCK:
        runtime = _PREDICT_RUNTIMES.get(name)
    if runtime is None:
        runtime = build_predict_runtime(Settings.from_env(), s3_client())
        with _PREDICT_LOCK:
            runtime = _PREDICT_RUNTIMES.setdefault(name, runtime)
    return runtime





@dataclass
class SignalRuntime:
    settings: Settings
    repository: Any
    log: JsonLinesLog
    clock: Callable[[], datetime] = wall_clock


@lru_cache(maxsize=1)
def signal_runtime() -> SignalRuntime:
    from traderai.adapters.signal_store import SignalStore

    settings = Settings.from_env().require("bucket_name", "signals_table")
    return SignalRuntime(settings, SignalStore(settings.signals_table),
                         JsonLinesLog(s3_client(), settings.bucket_name))


@lru_cache(maxsize=1)
def track_runtime() -> TrackRuntime:
    """Settings validated at cold start (a wrong one fails naming it); the market source is made once."""
    from traderai.adapters.signal_store import SignalStore
    from traderai.market.fetch import make_source

    settings = Settings.from_env().require("signals_table")
    return TrackRuntime(settings, make_source(settings), store=SignalStore(settings.signals_table))


@dataclass
class ChartRuntime:
    """A signal chart's candle history (the market source MARKET_SOURCE names) and its event loop."""

    history: Any  # traderai.market.CandleHistory
    source: str  # "exchange" or "replay": said in the reply
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)


@lru_cache(maxsize=1)
def chart_runtime() -> ChartRuntime:
    """GET /signals/{id}/candles: the same market source as predict and track (ccxt or the replay)."""
    from traderai.market.fetch import make_source

    settings = Settings.from_env()
    return ChartRuntime(make_source(settings), "replay" if settings.market_source == "replay" else "exchange")


def clear() -> None:
    """Forget every built runtime (tests, and the local stack when it changes the environment)."""
    for cached in (signal_runtime, track_runtime, chart_runtime, s3_client):
        cached.cache_clear()
    with _PREDICT_LOCK:
        _PREDICT_RUNTIMES.clear()
    retraining_runtime.cache_clear()


@dataclass
class RetrainingRuntime:
    """The archive and retraining functions' settings, archive and S3 client (built once per container)."""

    settings: Settings
    retrain: Any  # services.retraining.RetrainSettings
    archive: Any  # adapters.candle_archive.CandleArchive
    s3: Any
    clock: Callable[[], datetime] = wall_clock


@lru_cache(maxsize=1)
def retraining_runtime() -> RetrainingRuntime:
    from traderai.adapters.candle_archive import CandleArchive
    from traderai.services.retraining import RetrainSettings

    settings = Settings.from_env().require("bucket_name")
    retrain = RetrainSettings.from_env()
    return RetrainingRuntime(settings, retrain, CandleArchive(s3_client(), settings.bucket_name,
                                                              settings.exchange_id, retrain.archive_prefix),
                             s3_client())
