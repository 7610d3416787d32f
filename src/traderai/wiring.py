"""The wiring: every client, store and runtime a function uses, built once per container, never at import.

Handlers (`functions/*/app.py`) and the local stack get their adapters here and nowhere else. The first
call reads and validates the settings, so a missing or malformed one fails that cold start naming its
environment variable; warm invocations reuse what was built (ccxt's sessions and loaded markets, boto3
clients, pynamodb connection pools). Each object is handed over typed as the port its service declares
(`traderai.ports`). `clear()` forgets everything (tests, and the local stack after changing the
environment).

The API, WebSocket, broadcast, signal and compact functions import this module too, and their layer
carries neither numpy nor ccxt: what needs them (the predict step, the model registry, the market
source) is imported inside the function that builds it. So is every adapter that only some functions
use (the connection store, the pusher, the delivery ledger, the market list, the logs, Athena): a
function loads at import only the signal store (which the API, signal, track and broadcast paths read)
and pays for the others in the call that first builds them.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from traderai.adapters.signal_store import SignalStore
from traderai.contracts import Strategy
from traderai.settings import CompactionSettings, Settings, required_env

DEFAULT_TELEGRAM_API = "https://api.telegram.org"

if TYPE_CHECKING:
    from botocore.client import BaseClient

    from traderai.adapters.api_keys import ApiKeyStore
    from traderai.adapters.candle_archive import CandleArchive
    from traderai.adapters.connections import ConnectionStore
    from traderai.adapters.logs import JsonLinesLog
    from traderai.adapters.push import Pusher
    from traderai.adapters.subscribers import DeadLetters, SecretStore, SubscriberStore
    from traderai.core.shards import Shard
    from traderai.ports import (  # the ports type the fields and getters only
        CandleHistory,
        DeliveryLedger,
        MarketDataSource,
        MarketSource,
        ModelProvider,
        Prefixes,
        QueryRunner,
        SignalRepository,
    )
    from traderai.services.api import PageTokens
    from traderai.services.notify import Notifier
    from traderai.services.predict import TickResult
    from traderai.services.retraining import RetrainSettings
    from traderai.services.sharding import MarketListSource, PlanStore, ShardSettings
    from traderai.services.track import TrackReport


def wall_clock() -> datetime:
    return datetime.now(UTC)


def utc_today() -> date:
    return datetime.now(UTC).date()


_clock: Callable[[], datetime] = wall_clock


def now() -> datetime:
    """The functions' "now": the wall clock on AWS; the local stack sets its replay clock (`use_clock`)."""
    return _clock()


def use_clock(clock: Callable[[], datetime]) -> None:
    """Make `now()` read this clock (the local stack's replay clock) until `clear()`."""
    global _clock
    _clock = clock


@lru_cache(maxsize=1)
def s3_client() -> BaseClient:
    import boto3  # the Lambda runtime's own; loaded only by the functions that talk to S3

    return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or None)


# ---------------------------------------------------------------- predict, signal, track (the tick)

@dataclass
class MarketRuntime:
    """What every function that reads markets keeps per container: settings, a source, a clock, a loop.

    The event loop lives as long as the container, so ccxt's sessions and loaded markets survive
    warm invocations.
    """

    settings: Settings
    source: MarketDataSource
    clock: Callable[[], datetime] = field(default=wall_clock, kw_only=True)
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop, kw_only=True)

    def now_for(self, tick_time: datetime) -> datetime:
        """The live exchange runs on the wall clock; the replay runs on the tick's own clock."""
        if self.settings.market_source == "replay":
            return tick_time + timedelta(seconds=5)
        return self.clock()


@dataclass
class PredictRuntime(MarketRuntime):
    models: ModelProvider
    log: JsonLinesLog
    shards: ShardSettings | None = None
    market_list: MarketListSource | None = None  # the S3 list (MARKET_LIST_KEY) or MARKETS
    plans: PlanStore | None = None  # where the Plan state writes each tick's shard items

    def plan(self, tick_time: datetime) -> dict[str, Any]:
        """The Plan state: the tick's market list read and checked (against the exchange too), split into
        shards written to the tick's plan object (services.sharding.plan_tick)."""
        from traderai.services.sharding import plan_tick  # the predict function's alone (as below)

        assert self.market_list is not None and self.plans is not None and self.shards is not None

        def on_the_exchange(markets: tuple[str, ...]) -> None:
            self.loop.run_until_complete(self.source.check_settings(markets, self.settings.timeframe))

        return plan_tick(tick_time, self.market_list, self.shards, self.plans, check=on_the_exchange)

    def run(self, tick_time: datetime, shard: Shard | None = None) -> TickResult:
        """Every market, or one shard's (core.shards.Shard): its markets, its log object, its budget share."""
        from traderai.services.predict import run_tick  # numpy: only the predict layer carries it

        markets: tuple[str, ...] | None
        label: str | None
        if shard is not None:
            markets, label = shard.markets, shard.label
        else:  # one invocation over the whole list (`sam local invoke`, tests): the list a plan would read
            markets, label = (self.market_list.read().markets if self.market_list else None), None
        if shard is not None and hasattr(self.source, "share_budget"):
            self.source.share_budget(shard.weight_per_minute)
        # a shard's sandbox may serve any shard at the next close: a tick without one warms it with the list's
        # models (services.predict.WARM_LIMIT)
        market_list = self.market_list
        warm = (lambda: market_list.read().markets) if shard is not None and market_list is not None else None
        return self.loop.run_until_complete(
            run_tick(self.settings, self.source, self.models, self.log, tick_time, self.now_for(tick_time),
                     markets, label, warm))


@dataclass
class TrackRuntime(MarketRuntime):
    store: SignalStore

    def run(self, tick_time: datetime) -> TrackReport:
        from traderai.services.track import track  # the predict layer's: the tracker runs with it

        return track(self.store, self.source, self.settings.strategy, self.now_for(tick_time), self.loop)


def build_predict_runtime(settings: Settings, s3: BaseClient, source: MarketDataSource | None = None
                          ) -> PredictRuntime:
    """Validate markets/timeframe against the source and find the models: fails fast, naming the setting."""
    from traderai.adapters.logs import JsonLinesLog  # this and the next two: the predict function's alone
    from traderai.adapters.market_list import S3MarketList, ShardPlans
    from traderai.adapters.model_registry import ModelRegistry  # numpy (model serving): predict layer only
    from traderai.services.sharding import FixedMarketList, ShardSettings

    bucket = settings.required("bucket_name")
    source = source or market_source(settings)
    shards = ShardSettings.from_env(settings)
    loop = asyncio.new_event_loop()
    # MARKETS is checked at cold start; a list in S3 is checked by every plan (it may change any tick).
    loop.run_until_complete(source.check_settings(() if shards.list_key else settings.markets, settings.timeframe))
    # The registry checks at most every MODEL_REFRESH_SECONDS, so a promoted model serves from the first tick
    # after that without a redeploy: one GET of the timeframe's stamp per check, and the pointers only when the
    # stamp says one moved (docs/retraining.md).
    models = ModelRegistry(bucket, settings.model_prefix, lambda: s3, refresh_seconds=MODEL_REFRESH_SECONDS,
                           freeze_loaded=ON_LAMBDA in os.environ)
    market_list: MarketListSource = (S3MarketList(s3, bucket, shards.list_key) if shards.list_key
                                     else FixedMarketList(settings.markets))
    return PredictRuntime(settings, source, models, JsonLinesLog(s3, bucket), shards, market_list,
                          ShardPlans(s3, bucket), loop=loop)


MODEL_REFRESH_SECONDS = 60.0
# Set by Lambda's runtime in every sandbox: what only a sandbox does (freezing its loaded models out of the
# garbage collector's passes) keys on it; tests and the local stack, many handlers in one process, do not.
ON_LAMBDA = "AWS_LAMBDA_RUNTIME_API"


def market_source(settings: Settings) -> MarketSource:
    from traderai.market.fetch import make_source  # ccxt or the replay's numpy: predict layer only

    return make_source(settings)


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
    repository: SignalRepository
    log: JsonLinesLog
    clock: Callable[[], datetime] = wall_clock


@lru_cache(maxsize=1)
def signal_runtime() -> SignalRuntime:
    from traderai.adapters.logs import JsonLinesLog  # the signal function's (and predict's)

    settings = Settings.from_env().require("bucket_name", "signals_table")
    return SignalRuntime(settings, SignalStore(settings.required("signals_table")),
                         JsonLinesLog(s3_client(), settings.required("bucket_name")))


@lru_cache(maxsize=1)
def track_runtime() -> TrackRuntime:
    """Settings validated at cold start (a wrong one fails naming it); the market source is made once."""
    settings = Settings.from_env()
    store = SignalStore(settings.required("signals_table"))
    return TrackRuntime(settings, market_source(settings), store=store)


@dataclass
class ChartRuntime:
    """A signal chart's candle history (the market source MARKET_SOURCE names) and its event loop."""

    history: CandleHistory
    source: str  # "exchange" or "replay": said in the reply
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)


@lru_cache(maxsize=1)
def chart_runtime() -> ChartRuntime:
    """GET /signals/{id}/candles: the same market source as predict and track (ccxt or the replay)."""
    settings = Settings.from_env()
    return ChartRuntime(market_source(settings), "replay" if settings.market_source == "replay" else "exchange")


# ---------------------------------------------------------------- API, WebSocket, broadcast, authorizer

@lru_cache(maxsize=1)
def signal_store() -> SignalStore:
    return SignalStore(Settings.from_env().required("signals_table"))


@lru_cache(maxsize=1)
def strategy() -> Strategy:
    """The signal rules in force (the protections' settings: GET /performance shows the same locks)."""
    return Settings.from_env().strategy


@lru_cache(maxsize=1)
def connection_store() -> ConnectionStore:
    from traderai.adapters.connections import ConnectionStore  # the WebSocket and broadcast functions' alone

    settings = Settings.from_env()
    return ConnectionStore(settings.required("connections_table"), settings.required("subscriptions_table"))


@lru_cache(maxsize=1)
def delivery_ledger() -> DeliveryLedger:
    """Which connections already got a signal version (DELIVERIES_TABLE): one push per connection per version."""
    from traderai.adapters.deliveries import DeliveryStore  # the broadcast and notify functions' alone

    return DeliveryStore(Settings.from_env().required("deliveries_table"))


@lru_cache(maxsize=1)
def page_tokens() -> PageTokens:
    from traderai.services.api import PageTokens  # its pydantic models: only the API's routes need them

    return PageTokens(required_env("TOKEN_SECRET"))


@lru_cache(maxsize=1)
def pusher() -> Pusher:
    """Posts to `WEBSOCKET_ENDPOINT`; `PUSH_TRANSPORT=boto3` switches to boto3's client (default: signed)."""
    from traderai.adapters.push import Pusher  # the WebSocket and broadcast functions' alone

    return Pusher.for_endpoint(required_env("WEBSOCKET_ENDPOINT"),
                               transport=os.environ.get("PUSH_TRANSPORT", "").strip() or "signed")


@lru_cache(maxsize=1)
def api_key_store() -> ApiKeyStore:
    """The store `API_KEYS_TABLE` names (the authorizer reads it; `traderai keys` and the demo write it)."""
    from traderai.adapters.api_keys import ApiKeyStore  # the authorizer's alone

    return ApiKeyStore(Settings.from_env().required("api_keys_table"))


# ---------------------------------------------------------------- compaction (nightly)

@dataclass
class CompactionRuntime:
    settings: CompactionSettings
    queries: QueryRunner
    prefixes: Prefixes
    today: Callable[[], date] = utc_today


@lru_cache(maxsize=1)
def compaction_runtime() -> CompactionRuntime:
    import boto3  # the Lambda runtime's own; loaded only by the functions that talk to AWS

    from traderai.adapters.athena import AthenaQueries, S3Prefix  # the compaction function's alone

    settings = CompactionSettings.from_env()
    athena = boto3.client("athena")
    return CompactionRuntime(settings, AthenaQueries(athena, settings.workgroup, settings.database),
                             S3Prefix(s3_client(), settings.bucket_name))


# ---------------------------------------------------------------- notifications (NotifyFunction)

@lru_cache(maxsize=1)
def notify_adapters() -> NotifyAdapters:
    """The subscriber table, the secrets and the dead-letter queue (SUBSCRIBERS_TABLE, NOTIFY_DLQ_URL)."""
    import boto3  # the Lambda runtime's own; loaded only by the functions that talk to AWS

    from traderai.adapters.subscribers import DeadLetters, SecretStore, SubscriberStore  # NotifyFunction's alone

    return NotifyAdapters(SubscriberStore(required_env("SUBSCRIBERS_TABLE")),
                          SecretStore(boto3.client("secretsmanager")),
                          DeadLetters(boto3.client("sqs"), required_env("NOTIFY_DLQ_URL")))


def notifier() -> Notifier:
    """A Notifier for one invocation around the built adapters, so each batch reads the subscriber list once,
    fresh (`TELEGRAM_API_URL` set only to point at another Bot API, e.g. a fake)."""
    from traderai.adapters.http_post import post  # NotifyFunction's alone (urllib.request)
    from traderai.services.notify import Notifier  # NotifyFunction's alone

    adapters = notify_adapters()
    return Notifier(adapters.subscribers, adapters.secrets, delivery_ledger(), adapters.dead_letters,
                    telegram_api=os.environ.get("TELEGRAM_API_URL", "").strip() or DEFAULT_TELEGRAM_API, post=post,
                    allow_loopback_http=os.environ.get("NOTIFY_ALLOW_LOOPBACK_HTTP", "") == "true")


@dataclass(frozen=True)
class NotifyAdapters:
    subscribers: SubscriberStore
    secrets: SecretStore
    dead_letters: DeadLetters


# ---------------------------------------------------------------- candle archive and retraining

@dataclass
class RetrainingRuntime:
    """The archive and retraining functions' settings, archive and S3 client (built once per container)."""

    settings: Settings
    retrain: RetrainSettings
    archive: CandleArchive
    s3: BaseClient
    clock: Callable[[], datetime] = wall_clock


@lru_cache(maxsize=1)
def retraining_runtime() -> RetrainingRuntime:
    # numpy: only the archive and retraining functions' layers carry it
    from traderai.adapters.candle_archive import CandleArchive
    from traderai.services.retraining import RetrainSettings

    settings = Settings.from_env()
    bucket = settings.required("bucket_name")
    retrain = RetrainSettings.from_env()
    return RetrainingRuntime(settings, retrain, CandleArchive(s3_client(), bucket, settings.exchange_id,
                                                              retrain.archive_prefix), s3_client())


_BUILT = (s3_client, signal_runtime, track_runtime, chart_runtime, signal_store, strategy,
          connection_store, delivery_ledger, page_tokens, pusher, api_key_store, compaction_runtime, notify_adapters,
          retraining_runtime)


def clear() -> None:
    """Forget everything built (tests, and the local stack when it changes the environment)."""
    for built in _BUILT:
        built.cache_clear()
    with _PREDICT_LOCK:
        _PREDICT_RUNTIMES.clear()
    use_clock(wall_clock)
