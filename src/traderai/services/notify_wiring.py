"""Wiring of NotifyFunction: the subscriber table, the secrets, the ledger and the dead-letter queue.

The adapters are built once per container (lazily; a missing setting fails naming its variable); a
`Notifier` is made per invocation around them, so each batch reads the subscriber list once, fresh.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from traderai.services import wiring
from traderai.services.notify import Notifier

DEFAULT_TELEGRAM_API = "https://api.telegram.org"


@lru_cache(maxsize=1)
def _adapters() -> dict[str, Any]:
    import boto3

    from traderai.adapters.subscribers import DeadLetters, SecretStore, SubscriberStore

    return {"subscribers": SubscriberStore(wiring.required_env("SUBSCRIBERS_TABLE")),
            "secrets": SecretStore(boto3.client("secretsmanager")),
            "dead_letters": DeadLetters(boto3.client("sqs"), wiring.required_env("NOTIFY_DLQ_URL"))}


def notifier() -> Notifier:
    """A Notifier for one invocation (`TELEGRAM_API_URL` set only to point at another Bot API, e.g. a fake)."""
    from traderai.adapters.http_post import post

    adapters = _adapters()
    return Notifier(adapters["subscribers"], adapters["secrets"], wiring.delivery_ledger(), adapters["dead_letters"],
                    telegram_api=os.environ.get("TELEGRAM_API_URL", "").strip() or DEFAULT_TELEGRAM_API, post=post,
                    allow_loopback_http=os.environ.get("NOTIFY_ALLOW_LOOPBACK_HTTP", "") == "true")


def clear() -> None:
    _adapters.cache_clear()
