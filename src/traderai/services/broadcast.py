"""Broadcast: a change on the Signals table's stream becomes a message pushed to every matching client.

INSERT -> `{"type": "signal", "data": {...}}`; MODIFY -> `{"type": "signal_update", "data": {...},
"changed": [...]}`. The connections are read once per batch; a connection found gone (410) is
deleted (that very id) and dropped for the rest of the batch. Any other failed post fails the
record, so the stream retries it: delivery is at least once, and clients de-duplicate on
`signal_id` + `status`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from traderai.adapters.connections import Connection, ConnectionStore
from traderai.adapters.deliveries import DeliveryLedger, delivery_id
from traderai.adapters.push import FanoutReport, Pusher, encode
from traderai.adapters.signal_store import signal_from_item
from traderai.contracts import Signal
from traderai.core.text_format import signal_text
from traderai.observability import logger, metrics

MESSAGE_TYPES = {"INSERT": "signal", "MODIFY": "signal_update"}


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


class Broadcaster:
    """Pushes signal changes to the connections that want them; holds the batch's connection list."""

    def __init__(self, connections: ConnectionStore, pusher: Pusher, ledger: DeliveryLedger | None = None) -> None:
        self._store = connections
        self._pusher = pusher
        self._ledger = ledger  # who already got which signal version: a retried record skips them
        self._connections: list[Connection] | None = None

    def broadcast(self, change: SignalChange) -> FanoutReport:
        """Post the change to every matching connection; delete the gone ones; raise if any post failed."""
        key = change.delivery_id if self._ledger is not None else None
        done = self._ledger.delivered(key) if self._ledger is not None and key else frozenset()
        targets = [c.connection_id for c in self.connections()
                   if c.wants(change.signal.symbol) and c.connection_id not in done]
        report = self._pusher.fan_out(targets, encode(change.message()))
        if self._ledger is not None and key and report.delivered:  # before raising for the failed ones
            self._ledger.record(key, report.delivered, datetime.now(UTC))
        if report.gone:
            self._forget(report.gone)
        metrics.add_metric(name="PushDelivered", unit=MetricUnit.Count, value=len(report.delivered))
        metrics.add_metric(name="PushGone", unit=MetricUnit.Count, value=len(report.gone))
        metrics.add_metric(name="PushFailed", unit=MetricUnit.Count, value=len(report.failed))
        logger.info("broadcast", extra={"signal_id": change.signal.signal_id, "type": change.event_name,
                                        "targets": len(targets), "already_delivered": len(done),
                                        "delivered": len(report.delivered),
                                        "gone": len(report.gone), "failed": len(report.failed)})
        if report.failed:
            sample = dict(list(report.failed.items())[:5])
            raise BroadcastFailed(f"{len(report.failed)} of {len(targets)} posts failed for "
                                  f"{change.signal.signal_id}, e.g. {sample}")
        return report

    def connections(self) -> list[Connection]:
        """The open connections, read once per batch (one Scan of a small table)."""
        if self._connections is None:
            self._connections = self._store.all()
        return self._connections

    def _forget(self, gone: tuple[str, ...]) -> None:
        self._store.remove_many(gone)
        gone_ids = set(gone)
        self._connections = [c for c in self.connections() if c.connection_id not in gone_ids]
