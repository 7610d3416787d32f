"""Notifications through the real NotifyFunction handler: moto for the tables, Secrets Manager and the dead-letter
queue; a fake Telegram Bot API and a webhook receiver over real sockets; the stream records of `events/`."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from traderai import wiring
from traderai.adapters.signal_store import signal_from_item
from traderai.adapters.subscribers import SecretStore, SubscriberStore
from traderai.core.notify import Filters
from traderai.core.text_format import signal_text
from traderai.infra import create_dynamodb_table
from traderai.services import notify, subscriptions
from traderai.testing.handlers import FakeLambdaContext, load_event, load_handler
from traderai.testing.notify_servers import FakeTelegram, Scripted, WebhookReceiver
from traderai.testing.serving import ServingTables

TOKEN = "123456789:AAH" + "x" * 32
CHAT = "-1001234567890"
PREFIX = "traderai-test/notify/"
MARKETS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT")
SUBSCRIBERS_TABLE = "traderai-notifysubscribers-test"


class Stack:
    """The notify side of a moto account, and the two receivers."""

    def __init__(self, serving: ServingTables, telegram: FakeTelegram, webhook: WebhookReceiver) -> None:
        self.telegram, self.webhook = telegram, webhook
        self.sqs = boto3.client("sqs", region_name="us-east-1")
        self.queue_url = self.sqs.create_queue(QueueName="notify-dlq")["QueueUrl"]
        create_dynamodb_table(serving.dynamodb, serving.template, "NotifySubscribersTable", SUBSCRIBERS_TABLE)
        self.store = SubscriberStore(SUBSCRIBERS_TABLE)
        self.secrets = SecretStore(boto3.client("secretsmanager", region_name="us-east-1"))
        self.environment = serving.environment("NotifyFunction", NotifyDeadLetterQueue=self.queue_url) | {
            "TELEGRAM_API_URL": telegram.url, "NOTIFY_ALLOW_LOOPBACK_HTTP": "true"}

    def add(self, kind: str, target: str, secret: str, subscriber_id: str, **filters: Any) -> None:
        subscriptions.add_subscriber(self.store, self.secrets, PREFIX, kind=kind, target=target, secret=secret,
                                     filters=Filters(**filters), subscriber_id=subscriber_id,
                                     allow_loopback_http=True)

    def dead_letters(self) -> list[dict[str, Any]]:
        messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]


@pytest.fixture
def stack(serving: ServingTables, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with FakeTelegram([TOKEN], chats=[CHAT]) as telegram, WebhookReceiver() as webhook:
        running = Stack(serving, telegram, webhook)
        for name, value in running.environment.items():
            monkeypatch.setenv(name, value)
        wiring.clear()
        yield running
        wiring.clear()


@pytest.fixture
def invoke(stack: Stack) -> Callable[..., dict[str, Any]]:
    handler = load_handler("notify").handler

    def call(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        return handler(event, context or FakeLambdaContext())

    return call


def verify_independently(secret: str, request: Any, now: float, tolerance: float = 300) -> bool:
    """What a receiver does, written from the documented scheme only: HMAC-SHA256 over '<timestamp>.<body>'."""
    timestamp = request.headers["x-traderai-timestamp"]
    expected = "v1=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256).hexdigest()
    fresh = abs(now - int(timestamp)) <= tolerance
    return fresh and hmac.compare_digest(expected, request.headers["x-traderai-signature"])


def inserted_signal() -> Any:
    return signal_from_item(load_event("broadcast_insert.json")["Records"][0]["dynamodb"]["NewImage"])


def test_a_new_signal_reaches_the_telegram_chat_and_a_signed_webhook(stack: Stack, invoke: Callable[..., Any]) -> None:
    # Given a Telegram chat and a webhook subscribed to everything
    stack.add("telegram", CHAT, TOKEN, "tg-desk")
    stack.add("webhook", f"{stack.webhook.url}/hooks/traderai", "s3cret-signing-key-0123456789", "wh-bot")
    # When the stream hands NotifyFunction a new signal
    reply = invoke(load_event("broadcast_insert.json"))
    # Then nothing failed, the chat got the channel text, the webhook a signed JSON of the signal
    assert reply == {"batchItemFailures": []}
    signal = inserted_signal()
    (message,) = stack.telegram.messages()
    assert message == {"chat_id": int(CHAT), "text": signal_text(signal), "disable_web_page_preview": True}
    (request,) = stack.webhook.requests
    assert request.path == "/hooks/traderai"
    assert verify_independently("s3cret-signing-key-0123456789", request, time.time())
    assert not verify_independently("another-key-entirely-0123456789", request, time.time())
    body = request.json()
    assert (body["type"], body["event"], body["data"]["signal_id"]) == ("signal", "new", signal.signal_id)
    assert request.headers["x-traderai-delivery"] == body["delivery_id"]
    # a replayed request (same body, an old timestamp) is refused by the receiver's tolerance
    assert not verify_independently("s3cret-signing-key-0123456789", request, time.time() + 301)
    assert stack.dead_letters() == []


def test_a_redelivered_stream_record_is_sent_once(stack: Stack, invoke: Callable[..., Any]) -> None:
    stack.add("telegram", CHAT, TOKEN, "tg-desk")
    stack.add("webhook", f"{stack.webhook.url}/h", "s3cret-signing-key-0123456789", "wh-bot")
    event = load_event("broadcast_insert.json")
    invoke(event)
    invoke(event)  # the same record again (a retried batch)
    assert len(stack.telegram.messages()) == 1 and len(stack.webhook.requests) == 1


def test_telegrams_429_retry_after_is_honoured(stack: Stack, invoke: Callable[..., Any]) -> None:
    # Given Telegram answering the first request 429 with retry_after 1
    stack.add("telegram", CHAT, TOKEN, "tg-desk")
    stack.telegram.fail_next(Scripted(429, retry_after=1))
    invoke(load_event("broadcast_insert.json"))
    # Then the second attempt came at least a second later and went through
    first, second = stack.telegram.requests
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 1.0
    assert len(stack.telegram.messages()) == 1 and stack.dead_letters() == []


def test_a_5xx_webhook_is_retried_then_dead_lettered_without_holding_back_the_others(
        stack: Stack, invoke: Callable[..., Any]) -> None:
    # Given a webhook answering 500 to every attempt, and a healthy Telegram chat
    stack.add("telegram", CHAT, TOKEN, "tg-desk")
    stack.add("webhook", f"{stack.webhook.url}/h", "s3cret-signing-key-0123456789", "wh-down")
    stack.webhook.fail_next(*[Scripted(500)] * 3)
    reply = invoke(load_event("broadcast_insert.json"))
    # Then the record succeeded, the chat got its message, the webhook was tried 3 times, then dead-lettered
    assert reply == {"batchItemFailures": []}
    assert len(stack.telegram.messages()) == 1 and len(stack.webhook.requests) == 3
    (letter,) = stack.dead_letters()
    assert (letter["subscriber_id"], letter["reason"], letter["attempts"]) == ("wh-down", "http_500", 3)
    assert letter["signal_id"] == inserted_signal().signal_id
    assert stack.store.get("wh-down").enabled  # a 5xx never disables


def test_a_receiver_refusing_with_4xx_is_disabled_after_three_rejections(stack: Stack,
                                                                          invoke: Callable[..., Any]) -> None:
    # Given a webhook answering 403, and three new signals
    stack.add("webhook", f"{stack.webhook.url}/h", "s3cret-signing-key-0123456789", "wh-gone")
    stack.webhook.fail_next(*[Scripted(403)] * 5)
    event = load_event("broadcast_insert.json")
    for n in range(4):
        record = json.loads(json.dumps(event["Records"][0]))
        record["dynamodb"]["NewImage"]["signal_id"]["S"] += f"{n}"
        record["dynamodb"]["SequenceNumber"] = f"{n}00000000000012345678901"
        invoke({"Records": [record]})
    # Then one attempt per signal (a 4xx is not retried), disabled at the third, the fourth not sent
    assert len(stack.webhook.requests) == 3
    subscriber = stack.store.get("wh-gone")
    assert not subscriber.enabled and "http_403" in (subscriber.disabled_reason or "")
    assert [d["reason"] for d in stack.dead_letters()] == ["http_403"] * 3


def test_a_slow_receiver_never_holds_the_batch_past_its_deadline(stack: Stack, invoke: Callable[..., Any],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a webhook that answers after 20 s, a healthy chat, and 7 s left in the invocation
    stack.add("telegram", CHAT, TOKEN, "tg-desk")
    stack.add("webhook", f"{stack.webhook.url}/slow", "s3cret-signing-key-0123456789", "wh-slow")
    stack.webhook.fail_next(Scripted(200, delay=20))

    class Context(FakeLambdaContext):
        def get_remaining_time_in_millis(self) -> int:
            return 7_000

    started = time.monotonic()
    reply = invoke(load_event("broadcast_insert.json"), Context())
    elapsed = time.monotonic() - started
    # Then the function returned within its time (7 s less the margin), the chat got its message at once
    assert elapsed < 7.0 - notify.DEADLINE_MARGIN_SECONDS + 1.0
    assert reply == {"batchItemFailures": []}
    assert stack.telegram.requests[0].at - started < 2.0
    (letter,) = stack.dead_letters()
    assert letter["subscriber_id"] == "wh-slow" and letter["reason"] in ("timeout", "deadline")


def test_filters_pick_the_subscribers(stack: Stack, invoke: Callable[..., Any]) -> None:
    signal = inserted_signal()  # the sample: a LONG on BTC/USDT without an expected value
    other = "ETH/USDT" if signal.symbol != "ETH/USDT" else "SOL/USDT"
    stack.add("webhook", f"{stack.webhook.url}/mine", "s3cret-signing-key-0123456789", "wh-mine",
              symbols=(signal.symbol,), sides=(signal.side,))
    stack.add("webhook", f"{stack.webhook.url}/other", "s3cret-signing-key-0123456789", "wh-other", symbols=(other,))
    stack.add("webhook", f"{stack.webhook.url}/ev", "s3cret-signing-key-0123456789", "wh-ev",
              min_expected_value_pct=0.5)
    stack.add("webhook", f"{stack.webhook.url}/status", "s3cret-signing-key-0123456789", "wh-status",
              events=("status",))
    invoke(load_event("broadcast_insert.json"))
    assert [r.path for r in stack.webhook.requests] == ["/mine"]


def test_a_status_change_is_sent_with_its_outcome_line(stack: Stack, invoke: Callable[..., Any]) -> None:
    stack.add("telegram", CHAT, TOKEN, "tg-desk")
    event = load_event("broadcast_modify.json")
    invoke(event)
    changed = signal_from_item(event["Records"][0]["dynamodb"]["NewImage"])
    (message,) = stack.telegram.messages()
    assert message["text"] == signal_text(changed) and changed.status != "ACTIVE"


def test_secrets_stay_out_of_the_table_and_the_logs(stack: Stack, invoke: Callable[..., Any], serving: ServingTables,
                                                    capsys: pytest.CaptureFixture[str],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    stack.add("telegram", CHAT, TOKEN, "tg-desk")
    stack.add("webhook", f"{stack.webhook.url}/h", "s3cret-signing-key-0123456789", "wh-bot")
    stack.telegram.fail_next(Scripted(500))
    with caplog.at_level(logging.DEBUG, logger="traderai"):  # our log at its most verbose (botocore: off)
        invoke(load_event("broadcast_insert.json"))
    items = serving.dynamodb.scan(TableName=SUBSCRIBERS_TABLE)["Items"]
    logged = capsys.readouterr().out + capsys.readouterr().err + caplog.text
    for secret in (TOKEN, "s3cret-signing-key-0123456789"):
        assert secret not in json.dumps(items) and secret not in logged
    assert '"notify"' in logged or "notify" in logged  # the handler did log its work


@pytest.mark.parametrize(("kind", "target", "extra", "reason"), [
    ("webhook", "http://hooks.example.com/x", {}, "is not https"),
    ("webhook", "http://127.0.0.1:9/x", {"allow_loopback_http": False}, "only for the local stack"),
    ("webhook", "https://user:pw@hooks.example.com/x", {}, "credentials"),
    ("webhook", "ftp://hooks.example.com/x", {}, "not https"),
    ("telegram", "12ab", {}, "not a Telegram chat id"),
    ("telegram", "@ab", {}, "not a Telegram chat id"),
])
def test_bad_subscribers_are_refused_at_add_with_the_reason(stack: Stack, kind: str, target: str,
                                                             extra: dict[str, Any], reason: str) -> None:
    from traderai.core.notify import InvalidSubscriber

    secret = TOKEN if kind == "telegram" else "s3cret-signing-key-0123456789"
    with pytest.raises(InvalidSubscriber, match=reason):
        subscriptions.add_subscriber(stack.store, stack.secrets, PREFIX, kind=kind, target=target, secret=secret,
                                     filters=Filters(), **{"allow_loopback_http": True, **extra})
    assert stack.store.all() == []


def test_an_unknown_market_is_refused_with_the_markets_traded() -> None:
    from traderai.core.notify import InvalidSubscriber

    with pytest.raises(InvalidSubscriber, match="XRP/USDT not among the markets traded"):
        subscriptions.build_filters("btc-usdt,XRP/USDT", None, False, None, None, MARKETS)
    assert subscriptions.build_filters("btc-usdt", "long", True, 0.5, "new", MARKETS) == Filters(
        symbols=("BTC/USDT",), sides=("LONG",), tradeable_only=True, min_expected_value_pct=0.5, events=("new",))


def test_notify_cli_add_list_test_remove(stack: Stack, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from traderai.cli import main

    base = ["notify", "--table", SUBSCRIBERS_TABLE, "--secret-prefix", PREFIX]
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    assert main([*base, "add", "telegram", "--chat-id", CHAT, "--id", "tg-desk", "--symbols", "BTC/USDT"]) == 0
    assert main([*base, "add", "telegram", "--chat-id", "not-a-chat"]) == 2
    assert "refused: chat id" in capsys.readouterr().err
    assert main([*base, "add", "webhook", "--url", "http://hooks.example.com/x"]) == 2
    assert "is not https" in capsys.readouterr().err
    assert main([*base, "add", "webhook", "--url", "https://hooks.example.com/x", "--symbols", "DOGE/USDT"]) == 2
    assert "DOGE/USDT not among the markets traded" in capsys.readouterr().err
    assert main([*base, "list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(s["subscriber_id"], s["target"], s["filters"]["symbols"]) for s in listed] == [
        ("tg-desk", CHAT, ["BTC/USDT"])]
    assert TOKEN not in json.dumps(listed)
    assert main([*base, "test", "tg-desk", "--telegram-api-url", stack.telegram.url]) == 0
    (message,) = stack.telegram.messages()
    assert message["text"].startswith("TEST/USDT LONG") and "PAPER, not a trade" in message["text"]
    assert main([*base, "remove", "tg-desk"]) == 0
    assert stack.store.all() == []
    with pytest.raises(Exception, match=r"ResourceNotFound|marked for deletion|InvalidRequest"):
        stack.secrets.get(f"{PREFIX}tg-desk")


def test_a_generated_webhook_secret_is_printed_once_and_verifies(stack: Stack, capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from traderai import notify_cli
    from traderai.cli import main

    # as against the local stack's loopback AWS endpoint, where http:// loopback receivers are allowed
    monkeypatch.setattr(notify_cli, "_loopback_endpoint", lambda _: True)
    base = ["notify", "--table", SUBSCRIBERS_TABLE, "--secret-prefix", PREFIX]
    assert main([*base, "add", "webhook", "--url", f"{stack.webhook.url}/h", "--id", "wh-bot"]) == 0
    secret = capsys.readouterr().out.strip()
    assert len(secret) >= 40
    assert main([*base, "test", "wh-bot"]) == 0
    (request,) = stack.webhook.requests
    assert verify_independently(secret, request, time.time())
    assert datetime.fromtimestamp(int(request.headers["x-traderai-timestamp"]), tz=UTC).year >= 2025
