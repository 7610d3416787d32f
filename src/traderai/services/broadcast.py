"""Broadcast: a change on the Signals table's stream becomes a message pushed to every matching client.

INSERT -> `{"type": "signal", "data": {...}}`; MODIFY -> `{"type": "signal_update", "data": {...},
"changed": [...]}`. The audience of a symbol is read once per batch: a Query of the Subscriptions table
on that symbol and one on `*` (every symbol), never a Scan of all connections. A connection found gone
(410) is deleted (that very id, its row and its items) and dropped for the rest of the batch. Any other
failed post fails the record, so the stream retries it. The delivery ledger, written every
`RECORD_EVERY` posts and before failing, makes the retry post only to the connections that missed it;
clients still de-duplicate on `signal_id` + `status` for a crash between a post and its ledger write.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from traderai.adapters.connections import ConnectionStore, Subscriber
from traderai.adapters.deliveries import delivery_id
from traderai.adapters.push import PostResult, Pusher, encode
from traderai.adapters.signal_store import signal_from_item
from traderai.contracts import Signal
from traderai.core.text_format import signal_text
from traderai.observability import logger, metrics
from traderai.ports import DeliveryLedger

MESSAGE_TYPES = {"INSERT": "signal", "MODIFY": "signal_update"}
# Posts between two ledger writes. A fan-out killed mid-way (a timeout) re-pushes at most this many on
# retry. Each write puts new ledger parts only (one BatchWriteItem), so it costs the ids it adds.
RECORD_EVERY = 5_000
FAILURE_SAMPLE = 5  # failed posts named in the error message


class BroadcastFailed(Exception):
    """Some posts failed for a reason other than a gone connection: the record must be retried."""


@dataclass(frozen=True, slots=True)
class SignalChange:
    """One stream record, decoded: what kind of change, the signal now, and which fields changed."""

    event_name: str
    signal: Signal
    changed: tuple[str, ...] = ()
    version: str = ""  # the stream record's sequence number: the same on every redelivery of this change

    @property
    def delivery_id(self) -> str | None:
        """Key of this signal version in the delivery ledger (None: no version, no de-duplication)."""
        return delivery_id(self.signal.signal_id, self.version) if self.version else None

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"type": MESSAGE_TYPES[self.event_name], "data": self.signal.to_dict(),
                                   "text": signal_text(self.signal)}  # the signal-channel post
        if self.event_name == "MODIFY":
            message["changed"] = list(self.changed)
        return message


def change_from_record(record: Mapping[str, Any]) -> SignalChange | None:
    """Decode a DynamoDB stream record (raw event form); None for kinds that are not broadcast (REMOVE)."""
    event_name = record.get("eventName")
    if event_name not in MESSAGE_TYPES:
        return None
    images = record["dynamodb"]
    new_image = images["NewImage"]
    old_image = images.get("OldImage") or {}
    changed = tuple(sorted(name for name in Signal.field_names() if new_image.get(name) != old_image.get(name)))
    version = str(images.get("SequenceNumber") or record.get("eventID") or "")
    return SignalChange(event_name, signal_from_item(new_image), changed if old_image else (), version)


@dataclass(frozen=True, slots=True)
class BroadcastOutcome:
    """How one change's fan-out went, in counts (the ids stay out of memory), plus the gone ids."""

    targets: int
    already_delivered: int
    delivered: int
    gone: tuple[str, ...]
    failed: int


class Broadcaster:
    """Pushes signal changes to the connections that want them; holds the batch's audience per symbol."""

    def __init__(self, connections: ConnectionStore, pusher: Pusher, ledger: DeliveryLedger | None = None, *,
                 record_every: int = RECORD_EVERY) -> None:
        self._store = connections
        self._pusher = pusher
        self._ledger = ledger  # who already got which signal version: a retried record skips them
        self._record_every = record_every
        self._following: dict[str, list[Subscriber]] = {}  # symbol or `*` -> its items, read once per batch

    def broadcast(self, change: SignalChange) -> BroadcastOutcome:
        """Post the change to every matching connection that has not got it; record who got it as the
        fan-out goes; delete the gone ones; raise if any post failed."""
        key = change.delivery_id if self._ledger is not None else None
        done = self._ledger.delivered(key) if self._ledger is not None and key else frozenset()
        targets = 0

        def wanted() -> Iterator[str]:  # posted to as the audience is read
            nonlocal targets
            for subscriber in self.audience(change.signal.symbol):
                if subscriber.wants_signal(change.signal) and subscriber.connection_id not in done:
                    targets += 1
                    yield subscriber.connection_id

        unrecorded: list[str] = []  # reached, not yet in the ledger: at most `record_every`
        delivered = 0
        gone: list[str] = []
        failed_sample: dict[str, str] = {}  # the first few failures, for the error message
        failures = 0
        try:
            for connection_id, outcome, reason in self._pusher.posts(wanted(), encode(change.message())):
                if outcome == PostResult.DELIVERED:
                    delivered += 1
                    unrecorded.append(connection_id)
                    if len(unrecorded) >= self._record_every:
                        self._record(key, unrecorded)
                elif outcome == PostResult.GONE:
                    gone.append(connection_id)
                else:
                    failures += 1
                    if len(failed_sample) < FAILURE_SAMPLE:
                        failed_sample[connection_id] = reason
        finally:
            self._record(key, unrecorded)  # before raising for the failed ones, or for anything else
        if gone:
            self._forget(tuple(gone))
        metrics.add_metric(name="PushDelivered", unit=MetricUnit.Count, value=delivered)
        metrics.add_metric(name="PushGone", unit=MetricUnit.Count, value=len(gone))
        metrics.add_metric(name="PushFailed", unit=MetricUnit.Count, value=failures)
        logger.info("broadcast", extra={"signal_id": change.signal.signal_id, "type": change.event_name,
                                        "targets": targets, "already_delivered": len(done),
                                        "delivered": delivered, "gone": len(gone), "failed": failures})
        if failures:
            raise BroadcastFailed(f"{failures} of {targets} posts failed for "
                                  f"{change.signal.signal_id}, e.g. {failed_sample}")
        return BroadcastOutcome(targets, len(done), delivered, tuple(gone), failures)

    def _record(self, key: str | None, unrecorded: list[str]) -> None:
        """Add the connections just reached to the ledger, then forget them here."""
        if self._ledger is not None and key and unrecorded:
            self._ledger.record(key, unrecorded, datetime.now(UTC))
        unrecorded.clear()

    def audience(self, symbol: str) -> Iterator[Subscriber]:
        """The connections following `symbol` or every symbol, each once, as they are read; each Query made
        once per batch (a batch of five symbols makes six)."""
        return self._store.subscribers(symbol, self._following)

    def _forget(self, gone: tuple[str, ...]) -> None:
        self._store.remove_many(gone)
        gone_ids = set(gone)
        for key, subscribers in self._following.items():
            self._following[key] = [c for c in subscribers if c.connection_id not in gone_ids]
