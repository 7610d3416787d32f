"""The pure side of notifications: filters, the reading of replies (429 retry_after, 5xx, 4xx), signatures."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from traderai.contracts import Signal
from traderai.core.notify import (
    Filters,
    InvalidSubscriber,
    Outcome,
    Reply,
    Subscriber,
    event_of,
    message_text,
    signature,
    telegram_payload,
    validate_chat_id,
    validate_webhook_url,
    verdict,
    wants,
)

SIGNAL = Signal(signal_id="s1", symbol="BTC/USDT", side="LONG", entry_price=62800.0, tp1_price=64200.0,
                tp2_price=65300.0, tp3_price=67000.0, sl_price=62100.0, leverage=20, position_size_usd=1000.0,
                quantity=0.0159, gross_profit_pct=4.0, costs_pct=0.32, expected_net_profit_pct=3.68,
                net_risk_reward_ratio=2.7, confidence=0.7, probability=0.7, risk_reward_ratio=3.6, status="ACTIVE",
                created_at="2025-04-06T18:00:05Z", expires_at="2025-04-07T18:00:05Z", model_id="m", batch_id="b",
                exchange="binance", timeframe="15m", atr=700.0, candle_time="2025-04-06T17:45:00Z",
                expected_value_pct=0.8)


def subscriber(**filters: object) -> Subscriber:
    return Subscriber("wh-1", "webhook", "https://hooks.example.com/x", "p/wh-1", Filters(**filters))  # type: ignore[arg-type]


@pytest.mark.parametrize(("filters", "signal_changes", "wanted"), [
    ({}, {}, True),
    ({"symbols": ("ETH/USDT",)}, {}, False),
    ({"symbols": ("BTC/USDT", "ETH/USDT")}, {}, True),
    ({"sides": ("SHORT",)}, {}, False),
    ({"tradeable_only": True}, {"tradeable": False}, False),
    ({"tradeable_only": True}, {"tradeable": None}, True),  # stored before the mark: tradeable
    ({"min_expected_value_pct": 0.5}, {}, True),
    ({"min_expected_value_pct": 1.0}, {}, False),
    ({"min_expected_value_pct": 0.5}, {"expected_value_pct": None}, False),  # unknown is not >= 0.5
    ({"events": ("status",)}, {}, False),
])
def test_filters(filters: dict[str, object], signal_changes: dict[str, object], wanted: bool) -> None:
    signal = Signal(**(SIGNAL.to_dict() | signal_changes))
    assert wants(subscriber(**filters), signal, "new") is wanted


def test_a_disabled_subscriber_wants_nothing() -> None:
    from dataclasses import replace

    assert not wants(replace(subscriber(), enabled=False), SIGNAL, "new")


def test_only_inserts_and_status_changes_are_events() -> None:
    assert event_of("INSERT", ()) == "new"
    assert event_of("MODIFY", ("status", "updated_at")) == "status"
    assert event_of("MODIFY", ("updated_at",)) is None and event_of("REMOVE", ()) is None


@pytest.mark.parametrize(("reply", "outcome", "reason", "retry_after"), [
    (Reply(200, b'{"ok":true}'), Outcome.DELIVERED, "http_200", None),
    (Reply(429, b'{"ok":false,"error_code":429,"parameters":{"retry_after":7}}'), Outcome.RETRY, "http_429", 7.0),
    (Reply(429, b"busy", retry_after_header="3"), Outcome.RETRY, "http_429", 3.0),
    (Reply(429, b"busy"), Outcome.RETRY, "http_429", None),
    (Reply(502, b""), Outcome.RETRY, "http_502", None),
    (Reply(None, error="timeout"), Outcome.RETRY, "timeout", None),
    (Reply(400, b'{"ok":false,"description":"Bad Request: chat not found"}'), Outcome.REJECTED, "http_400", None),
    (Reply(403, b""), Outcome.REJECTED, "http_403", None),
    (Reply(410, b""), Outcome.REJECTED, "http_410", None),
])
def test_replies_are_read_as_telegram_and_webhooks_answer(reply: Reply, outcome: Outcome, reason: str,
                                                          retry_after: float | None) -> None:
    found = verdict(reply)
    assert (found.outcome, found.reason, found.retry_after_seconds) == (outcome, reason, retry_after)


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"a":1}'
    expected = hmac.new(b"key", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("key", 1700000000, body) == f"v1={expected}"
    assert signature("key", 1700000001, body) != signature("key", 1700000000, body)


def test_the_telegram_message_is_the_channel_text() -> None:
    from traderai.core.text_format import signal_text

    payload = json.loads(telegram_payload("-1001234567890", SIGNAL, "new"))
    assert payload["chat_id"] == -1001234567890 and payload["text"] == signal_text(SIGNAL)
    assert "Expected value: +0.80%" in payload["text"]
    paper = Signal(**(SIGNAL.to_dict() | {"tradeable": False, "paper_reasons": ["no_edge"]}))
    assert "PAPER, not a trade" in message_text(paper, "status")
    assert json.loads(telegram_payload("@traderai_signals", SIGNAL, "new"))["chat_id"] == "@traderai_signals"


@pytest.mark.parametrize("chat_id", ["123456789", "-1001234567890", "@traderai_signals"])
def test_valid_chat_ids(chat_id: str) -> None:
    assert validate_chat_id(chat_id) == chat_id


@pytest.mark.parametrize("chat_id", ["", "abc", "0123", "12 34", "@abc", "-", "1" * 17])
def test_malformed_chat_ids_are_refused(chat_id: str) -> None:
    with pytest.raises(InvalidSubscriber, match="chat id"):
        validate_chat_id(chat_id)


@pytest.mark.parametrize(("url", "allowed"), [
    ("https://hooks.example.com/t", True), ("http://hooks.example.com/t", False), ("http://127.0.0.1:9000/t", True),
    ("http://localhost:9000/t", True), ("http://[::1]:9000/t", True), ("http://10.0.0.5/t", False),
    ("https://u:p@hooks.example.com/t", False), ("file:///etc/passwd", False), ("https:///nohost", False),
])
def test_webhook_urls_locally(url: str, allowed: bool) -> None:
    if allowed:
        assert validate_webhook_url(url, allow_loopback_http=True) == url
    else:
        with pytest.raises(InvalidSubscriber):
            validate_webhook_url(url, allow_loopback_http=True)


def test_loopback_http_is_refused_outside_the_local_stack() -> None:
    with pytest.raises(InvalidSubscriber, match="only for the local stack"):
        validate_webhook_url("http://127.0.0.1:9000/t")
