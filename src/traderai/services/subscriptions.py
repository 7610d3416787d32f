"""Adding, listing, removing and testing notification subscribers (`traderai notify`): every check a
subscriber must pass happens here, at `add`, with the reason; the secret goes to Secrets Manager only.
"""

from __future__ import annotations

import secrets as random_secrets
import time
from dataclasses import replace
from datetime import UTC, datetime

from traderai.contracts import SettingsError, Signal, iso_utc
from traderai.core.notify import (
    EVENTS,
    Filters,
    InvalidSubscriber,
    Subscriber,
    validate_bot_token,
    validate_chat_id,
    validate_filters,
    validate_subscriber_id,
    validate_webhook_url,
)
from traderai.services.broadcast import SignalChange
from traderai.services.notify import DeliveryResult, Notifier
from traderai.settings import normalize_symbol


def build_filters(symbols: str | None, side: str | None, tradeable_only: bool, min_expected_value_pct: float | None,
                  events: str | None, markets: tuple[str, ...]) -> Filters:
    """Filters from the command line's text; an unknown market, side or event is InvalidSubscriber."""
    try:
        wanted = tuple(dict.fromkeys(normalize_symbol(s) for s in (symbols or "").split(",") if s.strip()))
    except SettingsError as exc:
        raise InvalidSubscriber(f"symbols: {exc}") from None
    sides = tuple(s.strip().upper() for s in (side or "").split(",") if s.strip())
    chosen = tuple(e.strip() for e in (events or ",".join(EVENTS)).split(",") if e.strip())
    validate_filters(wanted, markets, sides, chosen, min_expected_value_pct)
    return Filters(symbols=wanted, sides=sides, tradeable_only=tradeable_only,
                   min_expected_value_pct=min_expected_value_pct, events=chosen)


def add_subscriber(store: object, secret_store: object, secret_prefix: str, *, kind: str, target: str, secret: str,
                   filters: Filters, subscriber_id: str | None = None, label: str = "",
                   allow_loopback_http: bool = False, now: datetime | None = None) -> Subscriber:
    """Validate, store the secret, then the subscriber (the secret is removed again if that fails)."""
    if kind == "telegram":
        target, secret = validate_chat_id(target), validate_bot_token(secret)
    elif kind == "webhook":
        target = validate_webhook_url(target, allow_loopback_http=allow_loopback_http)
        if len(secret) < 16:
            raise InvalidSubscriber("webhook secret: at least 16 characters")
    else:
        raise InvalidSubscriber(f"kind: {kind!r} is not telegram or webhook")
    subscriber_id = validate_subscriber_id(subscriber_id or f"{kind[:2]}-{random_secrets.token_hex(4)}")
    if not secret_prefix or not secret_prefix.endswith("/"):
        raise InvalidSubscriber(f"secret prefix: {secret_prefix!r} must end with '/' (the stack's <stack>/notify/)")
    subscriber = Subscriber(subscriber_id=subscriber_id, kind=kind, target=target,
                            secret_name=f"{secret_prefix}{subscriber_id}", filters=filters, label=label,
                            created_at=iso_utc(now or datetime.now(UTC)))
    secret_store.put(subscriber.secret_name, secret, f"TraderAI notifications: {kind} {subscriber_id}")  # type: ignore[attr-defined]
    try:
        store.add(subscriber)  # type: ignore[attr-defined]
    except BaseException:
        secret_store.delete(subscriber.secret_name)  # type: ignore[attr-defined]
        raise
    return subscriber


def new_webhook_secret() -> str:
    return random_secrets.token_urlsafe(32)


def sample_signal(now: datetime) -> Signal:
    """What `notify test` sends: a signal plainly marked as a test (symbol TEST/USDT, paper)."""
    created = iso_utc(now)
    return Signal(signal_id=f"test_{int(now.timestamp())}", symbol="TEST/USDT", side="LONG", entry_price=100.0,
                  tp1_price=102.0, tp2_price=103.5, tp3_price=106.0, sl_price=99.0, leverage=1, position_size_usd=0.0,
                  quantity=0.0, gross_profit_pct=3.83, costs_pct=0.32, expected_net_profit_pct=3.51,
                  net_risk_reward_ratio=2.66, confidence=0.5, probability=0.5, risk_reward_ratio=3.83,
                  status="ACTIVE", created_at=created, expires_at=created, model_id="test", batch_id="test",
                  exchange="test", timeframe="15m", atr=1.0, candle_time=created, tradeable=False,
                  paper_reasons=("test",))


def send_test(notifier: Notifier, subscriber: Subscriber, now: datetime) -> DeliveryResult:
    """Send the sample signal to this subscriber now (its filters and the ledger do not apply)."""
    change = SignalChange("INSERT", sample_signal(now), (), version=f"test{int(now.timestamp())}")
    return notifier.deliver_now(replace(subscriber, enabled=True), change, time.monotonic() + 30)
