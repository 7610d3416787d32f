"""Notify: new signals and status changes from the Signals table's stream, sent to Telegram chats and webhooks.

NotifyFunction is the stream's second consumer, beside BroadcastFunction (a DynamoDB stream serves two
readers per shard without throttling; a third consumer should come through EventBridge Pipes or Kinesis).
It reads the stream directly rather than through SNS or EventBridge: the record's sequence number is the
signal version the delivery ledger de-duplicates on, exactly as the WebSocket push does, and no hop is added
to the latency.

For each change, the subscribers whose filters let it through and who have not got this version yet (the
Deliveries ledger, key `notify#<signal_id>#<sequence number>`) are sent to concurrently; each delivery makes
at most `RetryPolicy.attempts` attempts within its own time budget, honouring Telegram's 429 `retry_after`
when it fits, and never past the batch's deadline (the function's remaining time less a margin). Then:

- delivered: added to the ledger, so a redelivered stream record sends nothing twice;
- refused (4xx other than 429): the subscriber's count of rejections goes up and at `DISABLE_AFTER` it is
  disabled (metric NotifySubscriberDisabled, alarmed); the notification goes to the dead-letter queue;
- still failing (5xx, timeouts, a 429 longer than the budget) or cut by the deadline: dead-letter queue.

One subscriber's failure never fails the stream record, so it never holds back the others or later signals;
only a ledger or dead-letter write failure (or records the deadline left untouched) does, and the stream
retries those. Secrets (bot tokens, signing keys) come from Secrets Manager and never reach a log.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from traderai.contracts import iso_utc
from traderai.core.notify import (
    InvalidSubscriber,
    Outcome,
    Reply,
    Subscriber,
    Verdict,
    event_of,
    telegram_payload,
    validate_webhook_url,
    verdict,
    wants,
    webhook_body,
    webhook_headers,
)
from traderai.observability import logger, metrics
from traderai.ports import DeliveryLedger
from traderai.services.broadcast import SignalChange

DEADLINE_MARGIN_SECONDS = 3.0  # stop starting work this long before the function's timeout
WORKERS = 32  # deliveries in flight at once
Post = Callable[[str, bytes, dict[str, str], float], Reply]


class DeadlineReached(Exception):
    """Not enough time left for this record: it fails, and the stream hands it over again."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3
    request_timeout: float = 5.0  # seconds per attempt (connect, and each read)
    budget: float = 12.0  # seconds per delivery, attempts and waits included
    base_delay: float = 0.5  # backoff: base * 2^n, jittered (a 429's retry_after replaces it)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    subscriber_id: str
    outcome: Outcome
    reason: str
    attempts: int
    retry_after_seconds: float | None = None


@dataclass
class NotifyOutcome:
    """What one change's notifications did, in counts."""

    targets: int = 0
    already_delivered: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    disabled: list[str] = field(default_factory=list)


class Notifier:
    """Sends the notifications of signal changes; holds a batch's subscriber list and worker pool."""

    def __init__(self, subscribers: Any, secrets: Any, ledger: DeliveryLedger, dead_letters: Any, *,
                 telegram_api: str, post: Post, policy: RetryPolicy = RetryPolicy(),
                 allow_loopback_http: bool = False, workers: int = WORKERS,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = subscribers
        self._secrets = secrets
        self._ledger = ledger
        self._dead_letters = dead_letters
        self._telegram_api = telegram_api.rstrip("/")
        self._post = post
        self._policy = policy
        self._allow_loopback_http = allow_loopback_http
        self._sleep, self._clock, self._monotonic = sleep, clock, monotonic
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="notify")
        self._subscribers: list[Subscriber] | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        """Release the pool without waiting for a delivery the deadline cut (it ends by its own timeout)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def subscribers(self) -> list[Subscriber]:
        if self._subscribers is None:
            self._subscribers = self._store.all()
        return self._subscribers

    def notify(self, change: SignalChange, deadline: float) -> NotifyOutcome:
        """Send this change to every subscriber that wants it and has not got it; by `deadline` (monotonic)."""
        if self._monotonic() >= deadline:
            raise DeadlineReached(f"{change.signal.signal_id}: no time left in this invocation")
        event = event_of(change.event_name, change.changed)
        if event is None:
            return NotifyOutcome()
        targets = [s for s in self.subscribers() if wants(s, change.signal, event)]
        key = f"notify#{change.delivery_id}" if change.delivery_id else None
        done = self._ledger.delivered(key) if key and targets else frozenset()
        pending = [s for s in targets if s.subscriber_id not in done]
        outcome = NotifyOutcome(targets=len(targets), already_delivered=len(targets) - len(pending))
        if not pending:
            return outcome
        futures: dict[Future[DeliveryResult], Subscriber] = {
            self._pool.submit(self._deliver, s, change, event, deadline): s for s in pending}
        results: list[DeliveryResult] = []
        remaining = set(futures)
        while remaining:
            finished, remaining = wait(remaining, timeout=max(0.0, deadline - self._monotonic()),
                                       return_when=FIRST_COMPLETED)
            if not finished:
                break
            results.extend(f.result() for f in finished)
        for cut in remaining:  # still trying at the deadline: abandoned here, handed to the dead-letter queue
            cut.cancel()
            results.append(DeliveryResult(futures[cut].subscriber_id, Outcome.RETRY, "deadline", 0))
        delivered = [r.subscriber_id for r in results if r.outcome == Outcome.DELIVERED]
        if key and delivered:
            self._ledger.record(key, delivered, datetime.now(UTC))
        outcome.delivered = len(delivered)
        by_id = {s.subscriber_id: s for s in pending}
        for result in results:
            subscriber = by_id[result.subscriber_id]
            if result.outcome == Outcome.DELIVERED:
                if subscriber.failures:
                    self._store.reset_failures(subscriber.subscriber_id)
                continue
            self._dead_letter(change, event, subscriber, result)
            outcome.dead_lettered += 1
            if result.outcome == Outcome.REJECTED and self._store.record_rejection(subscriber.subscriber_id,
                                                                                    result.reason):
                outcome.disabled.append(subscriber.subscriber_id)
                logger.error("notify: subscriber disabled after repeated rejections",
                             extra={"subscriber_id": subscriber.subscriber_id, "kind": subscriber.kind,
                                    "reason": result.reason})
        metrics.add_metric(name="NotifyDelivered", unit=MetricUnit.Count, value=outcome.delivered)
        metrics.add_metric(name="NotifyDeadLettered", unit=MetricUnit.Count, value=outcome.dead_lettered)
        metrics.add_metric(name="NotifySubscriberDisabled", unit=MetricUnit.Count, value=len(outcome.disabled))
        logger.info("notify", extra={"signal_id": change.signal.signal_id, "event": event,
                                     "targets": outcome.targets, "already_delivered": outcome.already_delivered,
                                     "delivered": outcome.delivered, "dead_lettered": outcome.dead_lettered,
                                     "failures": {r.subscriber_id: r.reason for r in results
                                                  if r.outcome != Outcome.DELIVERED}})
        return outcome

    def deliver_now(self, subscriber: Subscriber, change: SignalChange, deadline: float) -> DeliveryResult:
        """One delivery outside any batch (`notify test`): no ledger, no dead letter, no rejection count."""
        return self._deliver(subscriber, change, "new", deadline)

    # ---------------------------------------------------------------- one delivery

    def _deliver(self, subscriber: Subscriber, change: SignalChange, event: str, deadline: float) -> DeliveryResult:
        """Attempts until delivered, refused, out of attempts, or out of time (its budget or the batch's)."""
        ends = min(deadline, self._monotonic() + self._policy.budget)
        try:
            secret = self._secrets.get(subscriber.secret_name)
            url = self._url(subscriber, secret)
        except InvalidSubscriber:  # e.g. an http URL in a deployed stack: refused here too, never sent
            return DeliveryResult(subscriber.subscriber_id, Outcome.REJECTED, "invalid_target", 0)
        except Exception as exc:  # noqa: BLE001 - a secret missing or unreadable: this subscriber only
            logger.warning("notify: secret unavailable", extra={"subscriber_id": subscriber.subscriber_id,
                                                                "error": type(exc).__name__})
            return DeliveryResult(subscriber.subscriber_id, Outcome.RETRY, "secret_unavailable", 0)
        last = Verdict(Outcome.RETRY, "no_attempt")
        for attempt in range(1, self._policy.attempts + 1):
            timeout = min(self._policy.request_timeout, ends - self._monotonic())
            if timeout <= 0.05:
                return DeliveryResult(subscriber.subscriber_id, Outcome.RETRY, last.reason, attempt - 1,
                                      last.retry_after_seconds)
            body, headers = self._request(subscriber, secret, change, event)
            last = verdict(self._post(url, body, headers, timeout))
            if last.outcome != Outcome.RETRY or attempt == self._policy.attempts:
                return DeliveryResult(subscriber.subscriber_id, last.outcome, last.reason, attempt,
                                      last.retry_after_seconds)
            wait_for = (last.retry_after_seconds if last.retry_after_seconds is not None
                        else self._policy.base_delay * 2 ** (attempt - 1) * (0.5 + random.random() / 2))  # noqa: S311 - jitter
            if self._monotonic() + wait_for >= ends:  # a retry_after beyond the budget: the dead-letter queue
                return DeliveryResult(subscriber.subscriber_id, Outcome.RETRY, last.reason, attempt,
                                      last.retry_after_seconds)
            self._sleep(wait_for)
        return DeliveryResult(subscriber.subscriber_id, last.outcome, last.reason, self._policy.attempts)

    def _url(self, subscriber: Subscriber, secret: str) -> str:
        if subscriber.kind == "telegram":
            return f"{self._telegram_api}/bot{secret}/sendMessage"
        return validate_webhook_url(subscriber.target, allow_loopback_http=self._allow_loopback_http)

    def _request(self, subscriber: Subscriber, secret: str, change: SignalChange, event: str
                 ) -> tuple[bytes, dict[str, str]]:
        """The body and headers of one attempt (a webhook is signed at each attempt: its timestamp is now)."""
        if subscriber.kind == "telegram":
            return telegram_payload(subscriber.target, change.signal, event), {"Content-Type": "application/json"}
        now = self._clock()
        delivery_id = change.delivery_id or change.signal.signal_id
        body = webhook_body(change.signal, event, delivery_id, change.changed,
                            iso_utc(datetime.fromtimestamp(now, tz=UTC)))
        return body, webhook_headers(secret, int(now), body, delivery_id)

    def _dead_letter(self, change: SignalChange, event: str, subscriber: Subscriber, result: DeliveryResult) -> None:
        """The notification that did not go, for the operator (no secret, no URL: the subscriber id says where)."""
        self._dead_letters.send({
            "source": "NotifyFunction", "reason": result.reason, "outcome": result.outcome.value,
            "subscriber_id": subscriber.subscriber_id, "kind": subscriber.kind, "event": event,
            "signal_id": change.signal.signal_id, "status": change.signal.status,
            "delivery_id": f"notify#{change.delivery_id}" if change.delivery_id else None,
            "attempts": result.attempts, "retry_after_seconds": result.retry_after_seconds,
            "failed_at": iso_utc(datetime.fromtimestamp(self._clock(), tz=UTC))})


def notify_all(notifier: Notifier, changes: Iterable[SignalChange], deadline: float) -> list[NotifyOutcome]:
    """Every change in order (tests and the benchmark; the handler goes record by record)."""
    return [notifier.notify(change, deadline) for change in changes]
