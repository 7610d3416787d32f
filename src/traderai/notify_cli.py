"""`traderai notify add|list|remove|test`: who gets new signals and status changes, on Telegram or a webhook.

Runs with the operator's AWS credentials against the stack's NotifySubscribers table (`--table`, or
`NOTIFY_SUBSCRIBERS_TABLE`; stack output NotifySubscribersTableName) and its secrets
(`--secret-prefix`, or `NOTIFY_SECRET_PREFIX`; stack output NotifySecretPrefix). A bot token is read
from an environment variable (never from the command line, which shell history keeps); a webhook's
signing secret is generated and printed once on stdout, unless `--secret-env` names one.

    TELEGRAM_BOT_TOKEN=123456:ABC... traderai notify add telegram --chat-id -1001234567890 --symbols BTC/USDT
    traderai notify add webhook --url https://hooks.example.com/traderai --tradeable-only --min-ev 0.5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from urllib.parse import urlsplit

from traderai.adapters.deliveries import InMemoryLedger
from traderai.adapters.http_post import post
from traderai.adapters.subscribers import SecretStore, SubscriberStore, UnknownSubscriber
from traderai.core.notify import InvalidSubscriber, is_loopback
from traderai.infra import load_template, parameter_defaults
from traderai.services import subscriptions
from traderai.services.notify import Notifier
from traderai.settings import normalize_symbol


def add_notify_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("notify", help="Telegram and webhook notifications: add, list, remove, test",
                                   description="Manage who gets new signals and status changes.")
    parser.add_argument("--table", default=os.environ.get("NOTIFY_SUBSCRIBERS_TABLE"),
                        help="subscribers table (default: $NOTIFY_SUBSCRIBERS_TABLE; stack output "
                             "NotifySubscribersTableName)")
    parser.add_argument("--secret-prefix", default=os.environ.get("NOTIFY_SECRET_PREFIX"),
                        help="Secrets Manager name prefix (default: $NOTIFY_SECRET_PREFIX; stack output "
                             "NotifySecretPrefix, e.g. traderai/notify/)")
    parser.add_argument("--markets", default=os.environ.get("MARKETS"),
                        help="the markets the stack trades, for checking --symbols (default: $MARKETS, else the "
                             "template's default)")
    parser.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    parser.add_argument("--endpoint-url", help="AWS endpoint (e.g. the local stack's moto); a loopback one also "
                                               "allows http:// webhooks to loopback receivers")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a Telegram chat or a webhook")
    add.add_argument("kind", choices=("telegram", "webhook"))
    add.add_argument("--chat-id", help="telegram: the chat id (123456789, -1001234567890 or @channel)")
    add.add_argument("--token-env", default="TELEGRAM_BOT_TOKEN",
                     help="telegram: environment variable holding the bot token (default TELEGRAM_BOT_TOKEN)")
    add.add_argument("--url", help="webhook: the https URL to POST to")
    add.add_argument("--secret-env", help="webhook: environment variable holding the signing secret "
                                          "(default: generate one and print it once)")
    add.add_argument("--id", dest="subscriber_id", help="subscriber id (default: generated)")
    add.add_argument("--label", default="", help="a note saying whose this is")
    add.add_argument("--symbols", help="only these markets, comma-separated (default: all)")
    add.add_argument("--side", help="LONG or SHORT (default: both)")
    add.add_argument("--tradeable-only", action="store_true", help="no paper signals")
    add.add_argument("--min-ev", type=float, dest="min_ev",
                     help="only signals whose expected value (%% of notional, after costs) is at least this")
    add.add_argument("--events", help="new,status (default: both)")
    actions.add_parser("list", help="list subscribers (never a secret)")
    remove = actions.add_parser("remove", help="remove a subscriber and its secret")
    remove.add_argument("subscriber_id")
    test = actions.add_parser("test", help="send a test notification to one subscriber now")
    test.add_argument("subscriber_id")
    test.add_argument("--telegram-api-url", default=os.environ.get("TELEGRAM_API_URL") or "https://api.telegram.org",
                      help="Bot API base URL (default: $TELEGRAM_API_URL or https://api.telegram.org)")
    parser.set_defaults(func=run_notify)


def _markets(text: str | None) -> tuple[str, ...]:
    if not text:
        text = str(parameter_defaults(load_template())["Markets"])
    return tuple(normalize_symbol(s) for s in text.split(",") if s.strip())


def _loopback_endpoint(endpoint_url: str | None) -> bool:
    return endpoint_url is not None and bool(endpoint_url) and is_loopback(urlsplit(endpoint_url).hostname or "")


def run_notify(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    import boto3

    if not args.table:
        print("traderai notify: give --table or set NOTIFY_SUBSCRIBERS_TABLE (stack output "
              "NotifySubscribersTableName)", file=sys.stderr)
        return 2
    store = SubscriberStore(args.table, region=args.region, host=args.endpoint_url)
    secrets = SecretStore(boto3.client("secretsmanager", region_name=args.region, endpoint_url=args.endpoint_url))
    now = datetime.now(UTC)
    try:
        if args.action == "add":
            return _add(args, store, secrets, now)
        if args.action == "list":
            print(json.dumps([s.public() for s in store.all()], indent=2))
            return 0
        if args.action == "remove":
            subscriber = store.remove(args.subscriber_id)
            secrets.delete(subscriber.secret_name)
            print(f"removed {subscriber.subscriber_id} ({subscriber.kind}) and its secret", file=sys.stderr)
            return 0
        return _test(args, store, secrets, now)
    except InvalidSubscriber as exc:
        print(f"traderai notify {args.action}: refused: {exc}", file=sys.stderr)
        return 2
    except (UnknownSubscriber, ValueError) as exc:
        print(f"traderai notify {args.action}: {exc}", file=sys.stderr)
        return 1


def _add(args: argparse.Namespace, store: object, secrets: object, now: object) -> int:
    if not args.secret_prefix:
        raise InvalidSubscriber("give --secret-prefix or set NOTIFY_SECRET_PREFIX (stack output NotifySecretPrefix)")
    filters = subscriptions.build_filters(args.symbols, args.side, args.tradeable_only, args.min_ev, args.events,
                                          _markets(args.markets))
    generated = False
    if args.kind == "telegram":
        if not args.chat_id:
            raise InvalidSubscriber("telegram: give --chat-id")
        target, secret = args.chat_id, os.environ.get(args.token_env, "")
        if not secret:
            raise InvalidSubscriber(f"telegram: set {args.token_env} to the bot token (from @BotFather)")
    else:
        if not args.url:
            raise InvalidSubscriber("webhook: give --url")
        target = args.url
        if args.secret_env:
            secret = os.environ.get(args.secret_env, "")
            if not secret:
                raise InvalidSubscriber(f"webhook: {args.secret_env} is not set")
        else:
            secret, generated = subscriptions.new_webhook_secret(), True
    subscriber = subscriptions.add_subscriber(
        store, secrets, args.secret_prefix, kind=args.kind, target=target, secret=secret, filters=filters,
        subscriber_id=args.subscriber_id, label=args.label,
        allow_loopback_http=_loopback_endpoint(args.endpoint_url), now=now)  # type: ignore[arg-type]
    print(json.dumps(subscriber.public(), indent=2), file=sys.stderr)
    if generated:
        print("webhook signing secret (shown once; verify X-TraderAI-Signature with it):", file=sys.stderr)
        print(secret)
    return 0


def _test(args: argparse.Namespace, store: object, secrets: object, now: object) -> int:
    subscriber = store.get(args.subscriber_id)  # type: ignore[attr-defined]
    notifier = Notifier(store, secrets, InMemoryLedger(), None, telegram_api=args.telegram_api_url, post=post,
                        allow_loopback_http=_loopback_endpoint(args.endpoint_url))
    try:
        result = subscriptions.send_test(notifier, subscriber, now)  # type: ignore[arg-type]
    finally:
        notifier.close()
    print(json.dumps({"subscriber_id": result.subscriber_id, "outcome": result.outcome.value,
                      "reason": result.reason, "attempts": result.attempts}, indent=2))
    return 0 if result.outcome.value == "delivered" else 1
