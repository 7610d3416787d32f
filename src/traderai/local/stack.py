"""The whole system on one machine: moto's server as AWS, the real handlers, a local gateway, a replay clock.

`LocalStack.start()` brings it up in this order, and `stop()` takes it down in reverse:

1. moto's `ThreadedMotoServer` on `aws_port`: every AWS call of this process (and the user's AWS CLI with
   `--endpoint-url`) goes there; the bucket and every table (with its stream) come from the template
   through `LocalAws`, and the bundled models are published to the bucket.
2. Each function's environment is the template's (`function_environment`), merged into this process's
   environment (the functions share one process; the template gives them consistent values, checked).
3. The handlers are imported and warmed; an API key is created for the authorizer (the development key).
4. The local gateway (HTTP API, WebSocket API, `@connections`, the page), the stream poller that feeds
   BroadcastFunction, and the tick scheduler that fires PredictFunction -> SignalFunction and TrackFunction.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from traderai import wiring
from traderai.adapters.logs import DECISIONS, JsonLinesLog, log_key
from traderai.adapters.market_list import ShardPlans
from traderai.adapters.subscribers import SecretStore, SubscriberStore
from traderai.apigw.routes import http_routes, websocket_route_keys
from traderai.contracts import TIMEFRAME_SECONDS, iso_utc, parse_iso_utc
from traderai.core.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, Filters, signature
from traderai.infra import load_template
from traderai.local.aws import LocalAws
from traderai.local.functions import LocalFunctions
from traderai.local.gateway import GatewayConfig, LocalGateway
from traderai.local.pipeline import LOCAL_MARKET_LIST_KEY
from traderai.local.retraining import RetrainLoop, StateMachineRunner
from traderai.local.scheduler import ReplayClock, StreamMapping, StreamPoller, TickReport, TickScheduler
from traderai.market.csv import load_candles_csv
from traderai.market.listing import parse_market_list
from traderai.market.replay import REPLAY_TIMEFRAME, bundled_candles_dir, candles_file_name
from traderai.services import auth, performance
from traderai.services.subscriptions import add_subscriber, new_webhook_secret
from traderai.settings import normalize_symbol
from traderai.testing.notify_servers import FakeTelegram, WebhookReceiver

DEFAULT_START = "2025-04-06T18:00:00Z"  # unseen by the bundled models; see docs/demo.md
DEFAULT_SPEED = 300.0  # replay seconds per wall second: one 5-minute tick per second
FUNCTIONS = ("PredictFunction", "SignalFunction", "TrackFunction", "ApiFunction", "WebSocketFunction",
             "BroadcastFunction", "AuthorizerFunction", "ChartFunction", "NotifyFunction")
NOTIFY_SECRET_PREFIX = "traderai-local/notify/"  # noqa: S105 - a name prefix, no secret (stack output NotifySecretPrefix)
DEMO_CHAT_ID = "100200300"  # the fake Telegram's one chat
RETRAIN_FUNCTIONS = ("ArchiveFunction", "TrainFunction", "EvaluateFunction", "PromoteFunction")
# The bundled candles start 2024-11-01: 120 training days before the 14 held out fit them from a replayed
# April 2025 (the template's 180 would refuse every market as insufficient_history). --param overrides.
LOCAL_RETRAIN_PARAMETERS = {"TrainDays": "120"}
DEV_KEY_NAME = "local demo (development key)"


class EnvironmentConflict(ValueError):
    """Two functions need different values of one environment variable, so they cannot share a process."""


@dataclass
class LocalOptions:
    """What `traderai local` is asked for (its command-line flags)."""

    host: str = "127.0.0.1"
    http_port: int = 3000
    ws_port: int = 3001
    aws_port: int = 4566
    speed: float = DEFAULT_SPEED
    start: str = DEFAULT_START
    markets: str = "BTC/USDT,ETH/USDT,SOL/USDT,BNB/USDT"
    data_dir: Path | None = None
    live: bool = False
    track: bool = True
    auth: bool = True
    fake_telegram: bool = False  # a local fake of the Bot API, with a subscribed chat: notifications shown
    webhook_receiver: bool = False  # a local webhook receiver (verifies signatures), subscribed
    parameters: dict[str, str] = field(default_factory=dict)  # template parameter overrides
    retrain_every_days: float = 7.0  # replayed days between retrainings; 0: archive only, no retraining
    market_list: bytes | None = None  # a market list put in the bucket and read by every tick (MarketListKey)


def merged_environment(environments: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """One environment for functions sharing a process; a variable they disagree on raises."""
    merged: dict[str, str] = {}
    owner: dict[str, str] = {}
    for function, environment in environments.items():
        for name, value in environment.items():
            if name in merged and merged[name] != value:
                raise EnvironmentConflict(f"{name}: {owner[name]} sets {merged[name]!r}, {function} sets {value!r}")
            merged[name], owner[name] = value, function
    return merged


def replay_end(markets: list[str], data_dir: Path | None) -> datetime:
    """The close time of the last candle every market has recorded (the replay stops there)."""
    ends = []
    for symbol in markets:
        candles = load_candles_csv(Path(data_dir or bundled_candles_dir()) / candles_file_name(symbol), symbol,
                                   REPLAY_TIMEFRAME)
        ends.append(int(candles.open_time_ms[-1]) // 1000 + TIMEFRAME_SECONDS[REPLAY_TIMEFRAME])
    return datetime.fromtimestamp(min(ends), tz=UTC)


class LocalStack:
    """Start, run and stop the local system; `console` receives the progress lines."""

    def __init__(self, options: LocalOptions, console: Callable[[str], None] = print) -> None:
        self.options = options
        self.console = console
        self.started_at = time.monotonic()
        self.startup_seconds: float | None = None
        self.dev_key: str | None = None
        self.aws: LocalAws | None = None
        self._moto: Any = None
        self.gateway: LocalGateway | None = None
        self.scheduler: TickScheduler | None = None
        self.poller: StreamPoller | None = None
        self.notify_poller: StreamPoller | None = None
        self.telegram: Any = None
        self.webhook: Any = None
        self.notify_secret_prefix = NOTIFY_SECRET_PREFIX
        self.functions: LocalFunctions | None = None
        self.clock: ReplayClock | None = None
        self._saved_env: dict[str, str | None] = {}
        self.retrain_loop: Any = None
        self.market_failures: dict[str, int] = {}

    @property
    def aws_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.options.aws_port}"  # loopback only, whatever --host says

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """Bring everything up; on any failure, take down what was started and re-raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - self.started_at

    def _start(self) -> None:
        options = self.options
        self._set_env({"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": self.aws_endpoint, "POWERTOOLS_TRACE_DISABLED": "1",
                       "AWS_SESSION_TOKEN": None, "AWS_PROFILE": None, "AWS_ENDPOINT_URL_S3": None,
                       "AWS_ENDPOINT_URL_DYNAMODB": None})
        self._start_moto()
        import boto3

        template = load_template()
        self.aws = LocalAws(boto3.client("s3"), boto3.client("dynamodb"), template).provision()
        if options.market_list is not None:  # as deployed with MarketListKey: the plan reads it from the bucket
            options.parameters.setdefault("MarketListKey", LOCAL_MARKET_LIST_KEY)
            self.aws.s3.put_object(Bucket=self.aws.bucket, Key=options.parameters["MarketListKey"],
                                   Body=options.market_list)
        if "NotifyDeadLetterQueue" in template["Resources"]:  # its Ref is the queue URL NotifyFunction sends to
            self.aws.names["NotifyDeadLetterQueue"] = boto3.client("sqs").create_queue(
                QueueName="traderai-notify-dlq-local")["QueueUrl"]
        self.clock = self._make_clock()
        names = [f for f in FUNCTIONS if f in template["Resources"] and (options.track or f != "TrackFunction")]
        names += [f for f in RETRAIN_FUNCTIONS if f in template["Resources"] and not options.live]
        self.gateway = LocalGateway(self._invoke, http_routes(template), websocket_route_keys(template),
                                    GatewayConfig(options.host, options.http_port, options.ws_port),
                                    page_config=self.page_config,
                                    local_routes={"status": self.status, "decisions": self.decisions,
                                                  "retraining": self.retraining})
        self._set_env(self._function_environment(names))
        self._clear_caches()
        self.functions = LocalFunctions(template, names)
        self.functions.load()
        self._warm()
        if options.auth and "AuthorizerFunction" in names:
            # the authorizer hook: API key on HTTP routes and $connect
            self.gateway.authorizer = auth.KeyAuthorizer(wiring.api_key_store())
            self.dev_key = self._create_dev_key()
        self.gateway.start()
        self.poller = StreamPoller(boto3.client("dynamodbstreams"), self.aws.stream_arn("SignalsTable"),
                                   StreamMapping.from_template(template, "BroadcastFunction"), self._invoke,
                                   on_drop=self._stream_record_dropped)
        self.poller.start()
        if "NotifyFunction" in names:  # the stream's second consumer, with its own iterators
            self._start_notify_demo()
            self.notify_poller = StreamPoller(boto3.client("dynamodbstreams"), self.aws.stream_arn("SignalsTable"),
                                              StreamMapping.from_template(template, "NotifyFunction"), self._invoke,
                                              on_drop=self._stream_record_dropped)
            self.notify_poller.start()
        end = None if options.live else replay_end(list(self._markets()), options.data_dir)
        plans = ShardPlans(boto3.client("s3"), self.aws.bucket)
        self.scheduler = TickScheduler(self._invoke, plans.read, self.clock, on_tick=self._report,
                                       track="TrackFunction" in names,
                                       end=end, on_end=self._replay_ended)
        self.clock.begin()
        self.scheduler.start()
        if "TrainFunction" in names:
            runner = StateMachineRunner(template, "RetrainStateMachine", self._invoke)
            self.retrain_loop = RetrainLoop(self._invoke, self.clock, runner, every_days=options.retrain_every_days,
                                            console=self.console, end=end)
            self.retrain_loop.start()

    def _start_moto(self) -> None:
        from moto.moto_server import werkzeug_app
        from moto.server import ThreadedMotoServer

        # moto's server answers every origin's CORS preflight (`*`) and takes any credentials: any web page
        # open in the user's browser could read and write every table (ApiKeys too). Only the AWS CLI and
        # this process talk to it, and they need no CORS. (MOTO_DISABLE_GLOBAL_CORS is read at import.)
        werkzeug_app.DISABLE_GLOBAL_CORS = True
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log lines on the console
        # moto has no authentication at all: it listens on loopback even when --host opens the gateway wider.
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.options.aws_port, verbose=False)
        self._moto.start()

    def _make_clock(self) -> ReplayClock:
        if self.options.live:
            return ReplayClock(datetime.now(UTC), 1.0)
        return ReplayClock(parse_iso_utc(self.options.start, "--start"), self.options.speed)

    def _markets(self) -> tuple[str, ...]:
        if self.options.market_list is not None:  # the replay ends with the list's markets' recorded candles
            return parse_market_list(self.options.market_list, "--market-list")
        return tuple(dict.fromkeys(normalize_symbol(s) for s in self.options.markets.split(",") if s.strip()))

    def _function_environment(self, names: list[str]) -> dict[str, str | None]:
        assert self.aws is not None and self.gateway is not None
        overrides = {"MarketSource": "ccxt" if self.options.live else "replay", "Markets": ",".join(self._markets()),
                     "LogLevel": os.environ.get("LOG_LEVEL", "INFO"), **LOCAL_RETRAIN_PARAMETERS,
                     **self.options.parameters}
        merged = merged_environment({name: self.aws.environment(name, overrides) for name in names})
        # What only a deployment knows: where @connections is, and the stack's generated secret.
        merged["WEBSOCKET_ENDPOINT"] = self.gateway.management_endpoint
        if "NotifyFunction" in names:
            merged["NOTIFY_ALLOW_LOOPBACK_HTTP"] = "true"  # http:// webhooks to this machine's receivers
            if self.options.fake_telegram:
                self.telegram = FakeTelegram([self._demo_bot_token()], chats=[DEMO_CHAT_ID]).start()
                merged["TELEGRAM_API_URL"] = self.telegram.url
        if "TOKEN_SECRET" in merged:
            merged["TOKEN_SECRET"] = secrets.token_urlsafe(48)
        environment: dict[str, str | None] = dict(merged)
        environment["REPLAY_DATA_DIR"] = str(self.options.data_dir) if self.options.data_dir else None
        return environment

    @staticmethod
    def _clear_caches() -> None:
        wiring.clear()

    def _warm(self) -> None:
        """Cold starts now rather than at the first tick; the signal step decides on the replay clock."""
        assert self.clock is not None
        wiring.predict_runtime()
        wiring.signal_runtime().clock = self.clock.now
        # The API's "now" (GET /performance windows, a signal's chart) is the replay clock too; a report is
        # cached for 2 wall seconds (10 replay minutes at 300x), not a minute (5 replay hours).
        wiring.use_clock(self.clock.now)
        performance.CACHE.ttl = 2.0

    def _create_dev_key(self) -> str:
        key, record = auth.new_key(DEV_KEY_NAME, datetime.now(UTC))
        wiring.api_key_store().add(record)
        return key

    def _invoke(self, logical_id: str, event: Any) -> Any:
        assert self.functions is not None
        return self.functions.invoke(logical_id, event)

    # ------------------------------------------------------------------ notifications (demo receivers)

    @staticmethod
    def _demo_bot_token() -> str:
        return "100000001:LOCAL" + "x" * 30

    def _start_notify_demo(self) -> None:
        """Subscribe the fake Telegram chat and the local webhook receiver (flags), through `notify add`'s code."""
        import boto3

        assert self.aws is not None
        store = SubscriberStore(self.aws.names["NotifySubscribersTable"])
        secrets = SecretStore(boto3.client("secretsmanager"))
        if self.telegram is not None:
            add_subscriber(store, secrets, self.notify_secret_prefix, kind="telegram", target=DEMO_CHAT_ID,
                           secret=self._demo_bot_token(), filters=Filters(), subscriber_id="demo-telegram",
                           label="local fake Telegram chat")
            self.telegram.on_request = self._telegram_received
        if self.options.webhook_receiver:
            secret = new_webhook_secret()
            self.webhook = WebhookReceiver().start()
            self.webhook.on_request = lambda request: self._webhook_received(request, secret)
            add_subscriber(store, secrets, self.notify_secret_prefix, kind="webhook",
                           target=f"{self.webhook.url}/traderai", secret=secret, filters=Filters(),
                           subscriber_id="demo-webhook", label="local webhook receiver", allow_loopback_http=True)

    def _telegram_received(self, request: Any) -> None:
        if request.status != 200:
            return
        first, *rest = request.json()["text"].splitlines()
        shown = [line for line in rest if line.startswith(("Expected value", "PAPER", "Tradeable"))]
        if rest and not rest[-1].startswith(("Best case", "Stop:")):  # a status change's line
            shown.append(rest[-1])
        self.console(f"    > telegram chat {DEMO_CHAT_ID}: " + " / ".join([first, *shown]))

    def _webhook_received(self, request: Any, secret: str) -> None:
        timestamp = request.headers.get(TIMESTAMP_HEADER.lower(), "0")
        valid = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= 300 and secrets.compare_digest(
            signature(secret, int(timestamp), request.body), request.headers.get(SIGNATURE_HEADER.lower(), ""))
        body = request.json()
        data = body.get("data", {})
        self.console(f"    > webhook {'signature ok' if valid else 'BAD SIGNATURE'}: {body.get('type')} "
                     f"{data.get('symbol')} {data.get('side')} {data.get('status')}")

    # ------------------------------------------------------------------ progress

    def _report(self, report: TickReport) -> None:
        for _, reason in report.failures:  # markets refused before any decision (model_expired, stale_feed, ...)
            self.market_failures[reason] = self.market_failures.get(reason, 0) + 1
        if not (report.predictions or report.errors or report.advanced or report.failures):
            return
        line = f"{report.tick_time:%Y-%m-%d %H:%M} UTC  predictions={report.predictions}  accepted={report.accepted}"
        if report.accepted:
            line += f" (tradeable={report.tradeable} paper={report.accepted - report.tradeable})"
        if report.rejected:
            line += "  rejected: " + " ".join(f"{k}={v}" for k, v in sorted(report.rejected.items()))
        if report.failures:
            line += "  failed: " + " ".join(f"{symbol}={reason}" for symbol, reason in report.failures)
        self.console(line)
        for key in report.decisions_keys if report.accepted else ():  # one object per shard
            for decision in self._decisions_of(key):
                if decision.get("accepted"):
                    self.console(f"    + {decision['message']}")
        for signal_id, status in sorted(report.advanced.items()):
            self.console(f"    ~ {signal_id} -> {status}")
        for error in report.errors:
            self.console(f"    ! {error}")

    def progress_summary(self) -> str:
        """Totals so far: ticks, predictions, accepted, rejected by reason."""
        assert self.scheduler is not None
        totals = self.scheduler.totals
        rejected = sum(totals.rejected.values())
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(totals.rejected.items(), key=lambda kv: -kv[1]))
        return (f"{totals.ticks} ticks, {totals.predictions} predictions, {totals.accepted} accepted, "
                f"{rejected} rejected" + (f" ({reasons})" if reasons else "")
                + f", {totals.advanced} status changes")

    def _stream_record_dropped(self, record: Mapping[str, Any]) -> None:
        """On AWS the record would go to the on-failure destination (the dead-letter queue): say so here."""
        keys = record["dynamodb"].get("Keys", {})
        self.console(f"    ! BroadcastFunction kept failing on {record['eventName']} {json.dumps(keys)}: retries "
                     f"exhausted, the record would go to the dead-letter queue (see the log file)")

    def _replay_ended(self, at: datetime) -> None:
        self.console(f"replay reached the end of the recorded candles ({at:%Y-%m-%d %H:%M} UTC); still serving. "
                     "Ctrl-C to stop.")

    # ------------------------------------------------------------------ page support

    def page_config(self) -> dict[str, Any]:
        """`config.js` for the page: where the APIs are, the development key, the local endpoints."""
        assert self.gateway is not None
        return {"apiUrl": self.gateway.http_url, "wsUrl": self.gateway.ws_url, "apiKey": self.dev_key,
                "statusUrl": f"{self.gateway.http_url}/_local/status",
                "decisionsUrl": f"{self.gateway.http_url}/_local/decisions",
                "retrainingUrl": f"{self.gateway.http_url}/_local/retraining"}

    def status(self, query: Mapping[str, str]) -> dict[str, Any]:
        """`GET /_local/status`: the replay clock and the running totals."""
        assert self.clock is not None and self.scheduler is not None and self.functions is not None
        totals = self.scheduler.totals
        return {"mode": "live" if self.options.live else "replay", "replay_time": iso_utc(self.clock.now()),
                "speed": self.clock.speed, "start": iso_utc(self.clock.start), "markets": list(self._markets()),
                "ticks": totals.ticks, "predictions": totals.predictions, "accepted": totals.accepted,
                "rejected": dict(totals.rejected), "status_changes": totals.advanced,
                "market_failures": dict(self.market_failures),
                "last_tick": iso_utc(totals.last_tick) if totals.last_tick else None,
                "broadcast_records": self.poller.delivered if self.poller else 0,
                "notify_records": self.notify_poller.delivered if self.notify_poller else 0,
                "connections": self.gateway.connection_count if self.gateway else 0,
                "invocations": {name: stats.invocations for name, stats in self.functions.stats.items()}}

    def retraining(self, query: Mapping[str, str]) -> dict[str, Any]:
        """`GET /_local/retraining`: the local retraining runs (newest first) and how many archive runs."""
        loop = self.retrain_loop
        return {"every_days": self.options.retrain_every_days, "archive_runs": loop.archives if loop else 0,
                "runs": [run.to_dict() for run in reversed(loop.runs)] if loop else []}

    def decisions(self, query: Mapping[str, str]) -> dict[str, Any]:
        """`GET /_local/decisions?since=&limit=&rejected=1`: newest decisions from the S3 decision log.

        The log keys sort by tick time (`decisions/dt=YYYY-MM-DD/YYYYMMDDTHHMMSSZ.jsonl`), so `since` is a
        `StartAfter` of one listing, as Athena's partition projection would prune by `dt`.
        """
        assert self.aws is not None and self.clock is not None
        try:
            limit = max(1, min(200, int(query.get("limit", "50"))))
            since = parse_iso_utc(query["since"], "since") if query.get("since") else self.clock.now() - timedelta(
                hours=12)
        except ValueError as exc:
            raise ValueError(f"bad parameter: {exc}") from exc
        only_rejected = query.get("rejected", "") in ("1", "true")
        listing = self.aws.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.aws.bucket, Prefix=f"{DECISIONS}/", StartAfter=log_key(DECISIONS, since))
        keys = sorted(obj["Key"] for page in listing for obj in page.get("Contents", []))
        log = JsonLinesLog(self.aws.s3, self.aws.bucket)
        items: list[dict[str, Any]] = []
        for key in reversed(keys):
            decisions = [d for d in log.read(key) if not (only_rejected and d.get("accepted"))]
            items.extend(sorted(decisions, key=lambda d: d.get("symbol", "")))
            if len(items) >= limit:
                break
        return {"items": items[:limit], "source": f"s3://{self.aws.bucket}/{DECISIONS}/"}

    def _decisions_of(self, key: str) -> list[dict[str, Any]]:
        assert self.aws is not None
        body = self.aws.s3.get_object(Bucket=self.aws.bucket, Key=key)["Body"].read()
        return [json.loads(line) for line in body.decode().splitlines() if line]

    # ------------------------------------------------------------------ stop

    def stop(self) -> None:
        """Stop ticking, stop polling, close every socket and port, stop moto; restore the environment."""
        for stop in (self.retrain_loop.stop if self.retrain_loop else None,
                     self.scheduler.stop if self.scheduler else None, self.poller.stop if self.poller else None,
                     self.notify_poller.stop if self.notify_poller else None,
                     self.telegram.stop if self.telegram else None, self.webhook.stop if self.webhook else None,
                     self.gateway.stop if self.gateway else None, self._moto.stop if self._moto else None):
            if stop is None:
                continue
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                self.console(f"! while stopping: {type(exc).__name__}: {exc}")
        self.scheduler = self.poller = self.notify_poller = self.gateway = self._moto = None
        self.telegram = self.webhook = None
        self._restore_env()

    def _set_env(self, values: Mapping[str, str | None]) -> None:
        for name, value in values.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def _restore_env(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()
