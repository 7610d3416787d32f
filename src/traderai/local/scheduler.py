"""What EventBridge and Lambda's event plumbing do on AWS, done locally on a replay clock.

- `ReplayClock`: replay time runs `speed` times faster than the wall clock from `start` (the live mode
  is speed 1 from now).
- `TickScheduler`: at every 5-minute mark of that clock, PredictFunction gets a scheduled event; its
  reply goes to SignalFunction in the Lambda on-success destination envelope (as `EventInvokeConfig`
  does); TrackFunction runs one minute after each mark (its cron is `1/5`). Each tick is reported to
  `on_tick` with counts of predictions, accepted signals and rejections by reason.
- `StreamPoller`: reads the Signals table's DynamoDB stream (describe_stream / get_shard_iterator /
  get_records, which moto implements) and invokes BroadcastFunction with the records in the Lambda
  DynamoDB event shape, filtered and batched as the template's event source mapping says; records a
  reply lists in `batchItemFailures` are retried from the first failed one, up to its retry limit.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from traderai.contracts import iso_utc
from traderai.events import tick_mark
from traderai.services.sharding import ReadItems, run_sharded_tick
from traderai.testing.handlers import ACCOUNT_ID, REGION

TICK = timedelta(minutes=5)
TRACK_OFFSET = timedelta(minutes=1)


class ReplayClock:
    """Replay time: `start` plus the wall time elapsed since `begin()`, times `speed`."""

    def __init__(self, start: datetime, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed: must be positive")
        self.start = start
        self.speed = speed
        self._began: float | None = None

    def begin(self) -> None:
        self._began = time.monotonic()

    def now(self) -> datetime:
        elapsed = 0.0 if self._began is None else time.monotonic() - self._began
        return self.start + timedelta(seconds=elapsed * self.speed)

    def wall_seconds_until(self, moment: datetime) -> float:
        return max(0.0, (moment - self.now()).total_seconds() / self.speed)


def scheduled_event(moment: datetime, rule: str) -> dict[str, Any]:
    """An EventBridge `Scheduled Event` as it reaches a function (fired a few seconds after the mark)."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": ACCOUNT_ID, "time": (moment + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION, "resources": [f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{rule}"], "detail": {}}


def destination_envelope(request: Mapping[str, Any], reply: Any, function: str) -> dict[str, Any]:
    """The Lambda on-success destination record wrapping a function's reply."""
    return {"version": "1.0", "timestamp": iso_utc(datetime.now(UTC)),
            "requestContext": {"requestId": str(uuid.uuid4()), "condition": "Success", "approximateInvokeCount": 1,
                               "functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function}:$LATEST"},
            "requestPayload": dict(request), "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
            "responsePayload": reply}


@dataclass
class TickReport:
    """One tick: what PredictFunction, SignalFunction and TrackFunction did."""

    tick_time: datetime
    predictions: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    accepted: int = 0
    tradeable: int = 0  # of the accepted: the rest are paper (claim no edge)
    rejected: dict[str, int] = field(default_factory=dict)
    advanced: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    decisions_key: str | None = None
    decisions_keys: list[str] = field(default_factory=list)  # every shard's decisions object
    wall_seconds: float = 0.0


@dataclass
class Totals:
    """Running totals since the start (the progress lines and `/_local/status`)."""

    ticks: int = 0
    predictions: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    advanced: int = 0
    errors: int = 0
    broadcasts: int = 0
    last_tick: datetime | None = None

    def add(self, report: TickReport) -> None:
        self.ticks += 1
        self.predictions += report.predictions
        self.accepted += report.accepted
        for reason, count in report.rejected.items():
            self.rejected[reason] = self.rejected.get(reason, 0) + count
        self.advanced += len(report.advanced)
        self.errors += len(report.errors)
        self.last_tick = report.tick_time


Invoke = Callable[[str, Any], Any]


class TickScheduler:
    """Fires the predict -> signal hand-off and the tracker at every 5-minute mark of the clock."""

    def __init__(self, invoke: Invoke, read_items: ReadItems, clock: ReplayClock, *,
                 on_tick: Callable[[TickReport], None], track: bool = True, end: datetime | None = None,
                 on_end: Callable[[datetime], None] | None = None) -> None:
        self._invoke = invoke
        self._read_items = read_items  # the Distributed Map's ItemReader: a tick's plan object from S3
        self.clock = clock
        self._on_tick = on_tick
        self._track = track
        self._end = end
        self._on_end = on_end
        self.totals = Totals()
        self.retry_interval_s = 1.0  # RETRY_INTERVAL_SECONDS on AWS, where the exchange's minute is shared
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tick-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Let the tick in progress finish, then stop."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        next_tick = tick_mark(self.clock.now(), int(TICK.total_seconds()))
        while not self._stop.is_set():
            if self._end is not None and next_tick > self._end:
                if self._on_end is not None:
                    self._on_end(next_tick)
                return
            if self._stop.wait(self.clock.wall_seconds_until(next_tick)):
                return
            report = self.run_tick(next_tick)
            self.totals.add(report)
            self._on_tick(report)
            next_tick += TICK

    def run_tick(self, tick_time: datetime) -> TickReport:
        """One tick as the TickStateMachine runs it (services.sharding): plan, then every shard predict ->
        signal (a failed shard retried alone), then track."""
        started = time.monotonic()
        report = TickReport(tick_time)
        request = scheduled_event(tick_time, "traderai-TickStateMachine")
        try:
            sharded = run_sharded_tick(self._invoke, self._read_items, request,
                                       retry_interval_s=self.retry_interval_s)
        except Exception as exc:  # noqa: BLE001 - the plan failed: on AWS the execution fails (alarmed); shown here
            report.errors.append(f"PredictFunction (plan): {type(exc).__name__}: {exc}")
            sharded = None
        if sharded is not None:
            report.errors.extend(sharded.errors)  # on AWS: that shard's event in the dead-letter queue
            reply, summary = combined(sharded)
            report.predictions = reply["count"]
            report.failures = [(f.get("symbol", "?"), f.get("reason", "?")) for f in reply["failures"]]
            if summary is not None:
                report.accepted = int(summary.get("stored", 0)) + int(summary.get("already_stored", 0))
                report.tradeable = int(summary.get("tradeable", 0))
                report.rejected = dict(summary.get("rejected", {}))
                report.decisions_key = summary.get("log_key")
                report.decisions_keys = list(summary.get("log_keys", []))
        if self._track:
            try:
                tracked = self._invoke("TrackFunction", scheduled_event(tick_time + TRACK_OFFSET,
                                                                         "traderai-TrackSchedule"))
                report.advanced = dict(tracked.get("advanced", {}))
            except Exception as exc:  # noqa: BLE001 - reported, the next tick redoes the same work
                report.errors.append(f"TrackFunction: {type(exc).__name__}: {exc}")
        report.wall_seconds = time.monotonic() - started
        return report


# ---------------------------------------------------------------- the stream -> BroadcastFunction


@dataclass(frozen=True, slots=True)
class StreamMapping:
    """The template's DynamoDB event source mapping of a function: what to read and how to deliver it."""

    function: str
    batch_size: int = 100
    starting_position: str = "LATEST"
    max_retries: int = -1
    event_names: frozenset[str] | None = None  # from FilterCriteria on eventName; None = all

    @classmethod
    def from_template(cls, template: Mapping[str, Any], function: str) -> StreamMapping:
        events = template["Resources"][function]["Properties"].get("Events") or {}
        for event in events.values():
            if event.get("Type") != "DynamoDB":
                continue
            props = event["Properties"]
            names: set[str] | None = None
            for rule in (props.get("FilterCriteria") or {}).get("Filters", []):
                pattern = json.loads(rule["Pattern"])
                names = (names or set()) | set(pattern.get("eventName", []))
            return cls(function, int(props.get("BatchSize", 100)), str(props.get("StartingPosition", "LATEST")),
                       int(props.get("MaximumRetryAttempts", -1)), frozenset(names) if names else None)
        raise ValueError(f"{function}: no DynamoDB event source in the template")


def lambda_stream_record(record: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """A `dynamodbstreams.get_records` record as Lambda delivers it (epoch-second times, the source ARN)."""
    images = dict(record["dynamodb"])
    created = images.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        images["ApproximateCreationDateTime"] = int(created.timestamp())
    return {"eventID": record["eventID"], "eventName": record["eventName"],
            "eventVersion": record.get("eventVersion", "1.1"), "eventSource": "aws:dynamodb",
            "awsRegion": record.get("awsRegion", REGION), "dynamodb": images, "eventSourceARN": stream_arn}


class StreamPoller:
    """Polls one table stream and invokes the mapped function, like Lambda's event source mapping."""

    def __init__(self, streams: Any, stream_arn: str, mapping: StreamMapping, invoke: Invoke, *,
                 interval: float = 0.1, on_batch: Callable[[int, list[str]], None] | None = None,
                 on_drop: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._streams = streams
        self.stream_arn = stream_arn
        self.mapping = mapping
        self._invoke = invoke
        self._interval = interval
        self._on_batch = on_batch
        self._on_drop = on_drop
        self._iterators: dict[str, str | None] = {}
        self._pending: list[dict[str, Any]] = []
        self._attempts = 0
        self.delivered = 0
        self.dropped: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream-poller", daemon=True)

    def start(self) -> None:
        """Take the shard iterators now (LATEST means: from here), then poll in a thread."""
        self._refresh_shards()
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _refresh_shards(self) -> None:
        description = self._streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        for shard in description.get("Shards", []):
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self._streams.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard_id,
                    ShardIteratorType=self.mapping.starting_position)["ShardIterator"]

    def _run(self) -> None:
        polls = 0
        while not self._stop.wait(self._interval):
            try:
                if polls % 50 == 0:
                    self._refresh_shards()
                polls += 1
                self.poll_once()
            except Exception:  # noqa: BLE001, S112 - the endpoint going away at shutdown; retry next poll
                continue

    def poll_once(self) -> None:
        """Read new records from every shard, then deliver what is pending in batches."""
        for shard_id, iterator in list(self._iterators.items()):
            if iterator is None:
                continue
            page = self._streams.get_records(ShardIterator=iterator, Limit=1000)
            self._iterators[shard_id] = page.get("NextShardIterator")
            for record in page.get("Records", []):
                if self.mapping.event_names is None or record["eventName"] in self.mapping.event_names:
                    self._pending.append(lambda_stream_record(record, self.stream_arn))
        while self._pending and not self._stop.is_set():
            if not self._deliver(self._pending[: self.mapping.batch_size]):
                return

    def _deliver(self, batch: list[dict[str, Any]]) -> bool:
        """Invoke with one batch; True when it is done (delivered or given up), False to retry later."""
        failed_from: int | None = None
        try:
            reply = self._invoke(self.mapping.function, {"Records": batch})
            failed_ids = {f["itemIdentifier"] for f in (reply or {}).get("batchItemFailures", [])}
            for index, record in enumerate(batch):
                if record["dynamodb"].get("SequenceNumber") in failed_ids:
                    failed_from = index
                    break
        except Exception:  # noqa: BLE001 - a function error fails the whole batch, as on Lambda
            failed_from = 0
        done = batch if failed_from is None else batch[:failed_from]
        self.delivered += len(done)
        if self._on_batch is not None:
            self._on_batch(len(done), [r["dynamodb"]["Keys"]["signal_id"]["S"] for r in done])
        if failed_from is None:
            del self._pending[: len(batch)]
            self._attempts = 0
            return True
        del self._pending[:failed_from]
        self._attempts += 1
        if 0 <= self.mapping.max_retries < self._attempts:  # on AWS: the on-failure destination
            record = self._pending.pop(0)
            self.dropped.append(record["eventID"])
            if self._on_drop is not None:
                self._on_drop(record)
            self._attempts = 0
        return False


def combined(sharded: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A sharded tick's replies as one: predictions counted, failures listed, signal summaries added up
    (`log_keys`: every shard's decisions object)."""
    reply = {"count": sharded.predictions, "failures": sharded.failures, "shards": len(sharded.shards)}
    summaries = [s.summary for s in sharded.shards if s.summary is not None]
    if not summaries:
        return reply, None
    summary: dict[str, Any] = {"accepted": 0, "rejected": {}, "log_keys": []}
    for part in summaries:
        for key, value in part.items():
            if isinstance(value, int) and not isinstance(value, bool):
                summary[key] = summary.get(key, 0) + value
            elif isinstance(value, dict):  # counts by reason
                merged = summary.setdefault(key, {})
                for reason, count in value.items():
                    merged[reason] = merged.get(reason, 0) + count
        if part.get("log_key"):
            summary["log_keys"].append(part["log_key"])
    summary["log_key"] = summary["log_keys"][0] if summary["log_keys"] else None
    return reply, summary
