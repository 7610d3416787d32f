"""Notifications and the track record: latency from a stream record to the receiver, throughput to 1,000
webhook subscribers at 50 ms per request, and GET /performance over 10,000 closed signals.

What is real and what is stood in:

- latency: the real NotifyFunction handler, fed by the local stack's StreamPoller (the event source mapping
  stand-in; it polls every 0.1 s, Lambda's own poller about 4 times a second per shard), reading the DynamoDB
  stream of moto's server (on loopback, as `traderai local` runs it) after a real `SignalStore.put_new`; moto
  also stands in for Secrets Manager, the Deliveries ledger and SQS. The receivers are the fake Telegram Bot
  API and the webhook receiver over real loopback sockets. Measured: put -> request arrival at the receiver.
- throughput: the same handler, one INSERT record (events/broadcast_insert.json), 1,000 webhook subscribers
  on one loopback receiver that answers each request after 50 ms (a stand-in for real receivers' round trip).
- /performance: the real ApiFunction handler over moto's Signals table holding 10,000 closed signals, its
  GSI Query served by bench/api_latency.py's sorted-index stand-in (moto reads the whole table per Query).
  The report reads only the outcome fields (a projection); the stand-in answers in one page, DynamoDB would
  page at 1 MB (~3 pages here, their round trips not measured). The report cache is cleared before each
  request: every request computes. Everything runs in one process on a shared 2-core machine.

    .venv/bin/python bench/notify_bench.py [--signals N] [--subscribers N] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from figures import INFO, Figure, emit, median, percentile

SECTION = "9. Track record and notifications (issue 16)"
REPO_ROOT = Path(__file__).resolve().parent.parent
TOKEN = "100000001:BENCH" + "x" * 30
CHAT = "100200300"
PREFIX = "bench/notify/"
QUIET = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
         "POWERTOOLS_TRACE_DISABLED": "1", "POWERTOOLS_METRICS_DISABLED": "1", "LOG_LEVEL": "ERROR",
         "POWERTOOLS_LOG_LEVEL": "ERROR", "NOTIFY_ALLOW_LOOPBACK_HTTP": "true"}


_ENDPOINT: list[str] = []


def moto_endpoint() -> str:
    """One moto server for the whole run, on a free loopback port (clients keep the endpoint they first saw)."""
    if not _ENDPOINT:
        import socket

        from moto.server import ThreadedMotoServer

        os.environ.update(QUIET)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False).start()
        _ENDPOINT.append(f"http://127.0.0.1:{port}")
        os.environ["AWS_ENDPOINT_URL"] = _ENDPOINT[0]
    return _ENDPOINT[0]


@contextlib.contextmanager
def notify_stack(telegram_url: str) -> Any:
    """moto's server (as the local stack runs it: its DynamoDB streams work there) with the template's tables
    and the notifications queue; NotifyFunction's environment set."""
    import urllib.request

    endpoint = moto_endpoint()
    # moto's backends live in this process: every stack starts from an empty account
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
    import boto3

    from traderai import wiring
    from traderai.infra import create_dynamodb_table, function_environment, load_template

    template = load_template()
    try:
        dynamodb = boto3.client("dynamodb")
        names = {"SignalsTable": "nb-signals", "DeliveriesTable": "nb-deliveries",
                 "NotifySubscribersTable": "nb-subscribers"}
        for logical_id, name in names.items():
            create_dynamodb_table(dynamodb, template, logical_id, name)
        queue = boto3.client("sqs").create_queue(QueueName="bench-notify-dlq")["QueueUrl"]
        os.environ.update(function_environment(template, "NotifyFunction", {**names, "NotifyDeadLetterQueue": queue}))
        os.environ["TELEGRAM_API_URL"] = telegram_url
        wiring.clear()
        yield template, names, dynamodb
    finally:
        wiring.clear()


def add_subscribers(count: int, webhook_url: str, *, telegram: bool) -> None:
    import boto3

    from traderai.adapters.subscribers import SecretStore, SubscriberStore
    from traderai.core.notify import Filters
    from traderai.services.subscriptions import add_subscriber

    store = SubscriberStore("nb-subscribers")
    secrets = SecretStore(boto3.client("secretsmanager"))
    if telegram:
        add_subscriber(store, secrets, PREFIX, kind="telegram", target=CHAT, secret=TOKEN, filters=Filters(),
                       subscriber_id="tg-bench")
    for n in range(count):
        add_subscriber(store, secrets, PREFIX, kind="webhook", target=f"{webhook_url}/hook/{n}",
                       secret=f"bench-signing-secret-{n:06d}", filters=Filters(), subscriber_id=f"wh-{n:06d}",
                       allow_loopback_http=True)


def latency(signals: int) -> list[Figure]:
    """put_new -> request at the receiver, through the stream poller and the real handler."""
    import boto3

    from traderai.adapters.signal_store import SignalStore, signal_from_item
    from traderai.local.scheduler import StreamMapping, StreamPoller
    from traderai.testing.handlers import FakeLambdaContext, load_handler
    from traderai.testing.notify_servers import FakeTelegram, WebhookReceiver

    sample = signal_from_item(json.loads((REPO_ROOT / "events" / "broadcast_insert.json").read_text())
                              ["Records"][0]["dynamodb"]["NewImage"])
    with FakeTelegram([TOKEN], chats=[CHAT]) as telegram, WebhookReceiver() as webhook, \
            notify_stack(telegram.url) as (template, names, dynamodb):
        add_subscribers(1, webhook.url, telegram=True)
        handler = load_handler("notify").handler
        store = SignalStore(names["SignalsTable"])
        arn = dynamodb.describe_table(TableName=names["SignalsTable"])["Table"]["LatestStreamArn"]
        poller = StreamPoller(boto3.client("dynamodbstreams"), arn, StreamMapping.from_template(template,
                              "NotifyFunction"), lambda _, event: handler(event, FakeLambdaContext()))
        poller.start()
        telegram_s, webhook_s = [], []
        try:
            for n in range(signals):
                from dataclasses import replace

                put_at = time.monotonic()
                assert store.put_new(replace(sample, signal_id=f"{sample.signal_id}_{n:04d}"))
                got_telegram = telegram.wait_for(n + 1, timeout=10)
                got_webhook = webhook.wait_for(n + 1, timeout=10)
                assert len(got_telegram) == len(got_webhook) == n + 1, "a notification did not arrive"
                telegram_s.append(got_telegram[-1].at - put_at)
                webhook_s.append(got_webhook[-1].at - put_at)
        finally:
            poller.stop()
    both = [max(t, w) for t, w in zip(telegram_s, webhook_s, strict=True)]
    return [Figure(SECTION, "stream record -> receiver (local): p50 / p95",
                   f"{median(both):.2f} / {percentile(both, 0.95):.2f} s", "", INFO,
                   f"{signals} signals, Telegram (fake Bot API) and a webhook each; put_new -> request arrived; "
                   f"p95 Telegram {percentile(telegram_s, 0.95):.2f} s, webhook {percentile(webhook_s, 0.95):.2f} s; "
                   "includes the local poller's 0.1 s interval (Lambda polls a shard ~4/s); moto for AWS")]


def throughput(subscribers: int) -> list[Figure]:
    """One new signal to `subscribers` webhooks answering after 50 ms each."""
    from traderai.services import notify
    from traderai.testing.handlers import FakeLambdaContext, load_event, load_handler
    from traderai.testing.notify_servers import FakeTelegram, WebhookReceiver

    with FakeTelegram([TOKEN]) as telegram, WebhookReceiver(latency=0.05) as webhook, \
            notify_stack(telegram.url):
        add_subscribers(subscribers, webhook.url, telegram=False)
        handler = load_handler("notify").handler
        event = load_event("broadcast_insert.json")
        started = time.monotonic()
        reply = handler(event, FakeLambdaContext())
        seconds = time.monotonic() - started
        delivered = len(webhook.requests)
        assert reply == {"batchItemFailures": []} and delivered == subscribers, (reply, delivered)
        again = time.monotonic()
        handler(event, FakeLambdaContext())  # the same record redelivered: the ledger sends nothing
        redelivery_s = time.monotonic() - again
        assert len(webhook.requests) == subscribers
        second = json.loads(json.dumps(event))  # the next signal: secrets now in the warm container's cache
        record = second["Records"][0]
        record["dynamodb"]["NewImage"]["signal_id"]["S"] += "_next"
        record["dynamodb"]["SequenceNumber"] = "2" + record["dynamodb"]["SequenceNumber"][1:]
        warm = time.monotonic()
        assert handler(second, FakeLambdaContext()) == {"batchItemFailures": []}
        warm_s = time.monotonic() - warm
        assert len(webhook.requests) == 2 * subscribers
    ideal = subscribers / notify.WORKERS * 0.05
    return [Figure(SECTION, f"one signal to {subscribers:,} webhooks at 50 ms per request, warm / cold",
                   f"{warm_s:.1f} / {seconds:.1f} s ({subscribers / warm_s:.0f} / {subscribers / seconds:.0f} "
                   "deliveries/s)", "", INFO,
                   f"{notify.WORKERS} in flight (ideal {ideal:.1f} s); each signed and ledgered; cold: the first "
                   f"signal reads every secret (moto Secrets Manager, in this process); warm: the next signal, "
                   f"secrets cached 5 min; a redelivered record sent 0 in {redelivery_s:.1f} s (subscriber Scan + "
                   f"ledger Query in moto); one loopback receiver stands in for {subscribers:,}; 60 s Lambda timeout")]


def performance_latency(signal_count: int, requests: int) -> list[Figure]:
    """GET /performance?window=all over `signal_count` closed signals, the cache cleared before each request."""
    from api_latency import api_stack, signal_items

    from traderai.services import performance
    from traderai.testing.handlers import FakeLambdaContext

    os.environ.pop("AWS_ENDPOINT_URL", None)  # in-process moto from here (bench/api_latency.py's stand-in)
    closed_statuses = ("STOPPED", "TP3_HIT", "EXPIRED", "STOPPED", "EXPIRED")
    items = signal_items(signal_count)
    with contextlib.redirect_stdout(io.StringIO()), api_stack(0) as (api, stand_in):
        import api_latency

        for index, item in enumerate(items):
            status = closed_statuses[index % len(closed_statuses)]
            net = {"STOPPED": -1.4, "TP3_HIT": 3.1, "EXPIRED": 0.4 - (index % 7) * 0.2}[status]
            item.update({"status": {"S": status}, "closed_at": item["expires_at"],
                         "realised_net_pct": {"N": str(round(net, 4))}, "time_in_trade_seconds": {"N": "7200"},
                         "closed_reason": {"S": {"STOPPED": "stop", "TP3_HIT": "all_targets",
                                                 "EXPIRED": "expiry"}[status]}})
            if status != "STOPPED" or index % 2:
                item["tp1_hit_at"] = item["created_at"]
        api_latency.load_into_moto("bench-signals", items)
        stand_in.__init__(items)  # the sorted index over what the table now holds
        event = json.loads((REPO_ROOT / "events" / "api_get_performance.json").read_text())
        event["queryStringParameters"] = {"window": "all", "until": "2027-12-01T00:00:00Z"}
        event["rawQueryString"] = "window=all&until=2027-12-01T00:00:00Z"
        latencies, served, size = [], [], 0
        for n in range(requests + 3):
            performance.CACHE.clear()
            stand_in.calls.clear()
            stand_in.served_s.clear()
            started = time.perf_counter()
            reply = api.handler(event, FakeLambdaContext())
            if n >= 3:  # the first requests build the model classes and clients
                latencies.append(time.perf_counter() - started)
                served.append(sum(stand_in.served_s))
            assert reply["statusCode"] == 200, reply["body"][:300]
            size = len(reply["body"])
        report = json.loads(reply["body"])
        assert report["overall"]["closed"] == signal_count and stand_in.calls["Scan"] == 0
        queries = stand_in.calls["Query"]
    return [Figure(SECTION, f"GET /performance?window=all, {signal_count:,} closed signals: p50 / p99",
                   f"{median(latencies) * 1000:.0f} / {percentile(latencies, 0.99) * 1000:.0f} ms", "", INFO,
                   f"{requests} requests, cache cleared before each (a cached report costs no Query); {queries} "
                   f"Queries (the window's outcome fields, projected; the protection locks' recent closes), 0 Scan; "
                   f"of it the index stand-in (copying the items it returns) median {median(served) * 1000:.0f} ms; "
                   f"reply {size / 1e6:.2f} MB (curves thinned to 2,000 points); the stand-in answers in one page "
                   "(DynamoDB: ~3 pages of 1 MB for 10,000 projected items, their round trips not measured)")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=10_000, help="closed signals for /performance")
    parser.add_argument("--requests", type=int, default=30, help="timed /performance requests")
    parser.add_argument("--subscribers", type=int, default=1_000, help="webhook subscribers")
    parser.add_argument("--latency-signals", type=int, default=40, help="signals timed stream -> receiver")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    figures = latency(args.latency_signals) + throughput(args.subscribers)
    figures += performance_latency(args.signals, args.requests)
    emit(figures, args.json)
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
