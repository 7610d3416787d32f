"""Notification subscribers: the NotifySubscribers table (pynamodb), their secrets (Secrets Manager) and
the notifications dead-letter queue (SQS).

The table holds where to send and the filters, never a secret: a Telegram bot token or a webhook's signing
key is a Secrets Manager secret named `<NOTIFY_SECRET_PREFIX><subscriber_id>` (the stack's `<stack>/notify/`).
The subscriber list is small (tens, a few thousand at most): NotifyFunction reads it whole, once per batch.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from pynamodb.attributes import BooleanAttribute, ListAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.models import Model

from traderai.adapters.dynamo import table_model
from traderai.core.notify import Filters, Subscriber, filters_from_item

DISABLE_AFTER = 3  # consecutive rejected (4xx) deliveries before a subscriber is disabled
SECRET_TTL_SECONDS = 300.0  # a rotated secret is picked up within 5 minutes by a warm container


class UnknownSubscriber(LookupError):
    """No subscriber has this id."""


class _SubscriberItem(Model):
    subscriber_id = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute()
    target = UnicodeAttribute()
    secret_name = UnicodeAttribute()
    label = UnicodeAttribute(null=True)
    symbols = ListAttribute(of=UnicodeAttribute, null=True)
    sides = ListAttribute(of=UnicodeAttribute, null=True)
    tradeable_only = BooleanAttribute(default=False)
    min_expected_value_pct = NumberAttribute(null=True)
    events = ListAttribute(of=UnicodeAttribute, null=True)
    enabled = BooleanAttribute(default=True)
    failures = NumberAttribute(default=0)
    disabled_reason = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute(null=True)


def _subscriber(item: _SubscriberItem) -> Subscriber:
    filters = filters_from_item({"symbols": item.symbols, "sides": item.sides, "tradeable_only": item.tradeable_only,
                                 "min_expected_value_pct": item.min_expected_value_pct, "events": item.events})
    return Subscriber(subscriber_id=item.subscriber_id, kind=item.kind, target=item.target,
                      secret_name=item.secret_name, filters=filters, enabled=bool(item.enabled),
                      failures=int(item.failures or 0), disabled_reason=item.disabled_reason,
                      created_at=item.created_at or "", label=item.label or "")


class SubscriberStore:
    """Add, list, remove subscribers; count their rejected deliveries and disable them past `DISABLE_AFTER`."""

    def __init__(self, table_name: str, *, region: str | None = None, host: str | None = None) -> None:
        self.table_name = table_name
        self._model = table_model(_SubscriberItem, table_name, region, host)

    def add(self, subscriber: Subscriber) -> None:
        """Store a new subscriber; refuses an id already taken (ValueError)."""
        f: Filters = subscriber.filters
        item = self._model(subscriber.subscriber_id, kind=subscriber.kind, target=subscriber.target,
                           secret_name=subscriber.secret_name, label=subscriber.label or None,
                           symbols=list(f.symbols) or None, sides=list(f.sides) or None,
                           tradeable_only=f.tradeable_only, min_expected_value_pct=f.min_expected_value_pct,
                           events=list(f.events), enabled=subscriber.enabled, failures=0,
                           created_at=subscriber.created_at or None)
        from pynamodb.exceptions import PutError

        try:
            item.save(condition=self._model.subscriber_id.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                raise ValueError(f"subscriber {subscriber.subscriber_id!r} exists already") from None
            raise

    def all(self) -> list[Subscriber]:
        """Every subscriber (one paginated Scan of a small table)."""
        return sorted((_subscriber(item) for item in self._model.scan()), key=lambda s: s.subscriber_id)

    def get(self, subscriber_id: str) -> Subscriber:
        try:
            return _subscriber(self._model.get(subscriber_id))
        except DoesNotExist:
            raise UnknownSubscriber(f"no subscriber {subscriber_id!r}") from None

    def remove(self, subscriber_id: str) -> Subscriber:
        subscriber = self.get(subscriber_id)
        self._model(subscriber_id).delete()
        return subscriber

    def record_rejection(self, subscriber_id: str, reason: str, disable_after: int = DISABLE_AFTER) -> bool:
        """Count one more rejected delivery; disable the subscriber at `disable_after`. True if this disabled it."""
        model = self._model
        item = model(subscriber_id)
        try:
            item.update(actions=[model.failures.add(1)], condition=model.subscriber_id.exists())
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False  # removed meanwhile
            raise
        if int(item.failures or 0) < disable_after:
            return False
        try:  # only the update that crosses the line disables (and alarms) once
            item.update(actions=[model.enabled.set(False),
                                 model.disabled_reason.set(f"{int(item.failures)} rejected deliveries, last {reason}")],
                        condition=model.enabled == True)  # noqa: E712 - a pynamodb condition, not a comparison
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def reset_failures(self, subscriber_id: str) -> None:
        """A delivery went through: the rejected count starts again (only called when it was above 0)."""
        model = self._model
        try:
            model(subscriber_id).update(actions=[model.failures.set(0)], condition=model.subscriber_id.exists())
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise


class SecretStore:
    """Subscriber secrets in Secrets Manager, read through a per-container cache (`SECRET_TTL_SECONDS`)."""

    def __init__(self, client: Any, *, ttl: float = SECRET_TTL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._ttl, self._clock = ttl, clock
        self._cache: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> str:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(name)
            if hit is not None and hit[0] > now:
                return hit[1]
        value = json.loads(self._client.get_secret_value(SecretId=name)["SecretString"])["secret"]
        with self._lock:
            self._cache[name] = (now + self._ttl, value)
        return value

    def put(self, name: str, secret: str, description: str) -> None:
        self._client.create_secret(Name=name, Description=description,
                                   SecretString=json.dumps({"secret": secret}))

    def delete(self, name: str) -> None:
        self._client.delete_secret(SecretId=name, RecoveryWindowInDays=7)


class DeadLetters:
    """Undeliverable notifications, one SQS message each (the notifications dead-letter queue, alarmed)."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def send(self, record: dict[str, Any]) -> None:
        self._client.send_message(QueueUrl=self._queue_url, MessageBody=json.dumps(record, sort_keys=True))
