"""Fan-out and cold-import benchmark of the serving side: `python bench/fanout.py [--connections 5000]`.

1. Fan-out: one signal pushed to N connections through a local `@connections` server (its own
   process, real sockets) answering each post after `--latency` (10 ms, API Gateway-like), with
   - the signed transport, concurrent (what BroadcastFunction uses),
   - boto3's post_to_connection, concurrent (same thread pool),
   - boto3 sequentially, on a sample, extrapolated to N (the naive loop of many samples).
   Plus the whole broadcast of one stream record (BroadcastFunction's path, warm): the audience found by
   a Query of the Subscriptions table on the signal's symbol and one on `*` (N targets among 2N open
   connections: the other N follow other symbols and are never read), the delivery ledger's Query, the
   signed fan-out, and the ledger's batched write. DynamoDB is stood in by moto's server in its own
   process on loopback (`--dynamodb inprocess`: moto inside this process, as the tests run it); the
   time each part took is printed, moto's serving included.
2. Import time of each handler module in a fresh interpreter, median of 5 (cold-start cost).

Targets: concurrent fan-out >= 2,000 posts/s here; each handler import < 0.5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")

from traderai.adapters.push import BotoPoster, Pusher, SignedPoster, encode

HANDLERS = ("api", "websocket", "broadcast")
MESSAGE = encode({"type": "signal", "data": {"signal_id": "signal_BTC_USDT_1786146ad970", "symbol": "BTC/USDT",
                                             "side": "LONG", "entry_price": 97000.0, "tp1_price": 99900.0}})


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-m", "traderai.apigw.connections",
                                "--latency", str(latency)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def fan_out_rate(pusher: Pusher, ids: list[str]) -> tuple[float, int]:
    pusher.post("warm-up", MESSAGE)
    report = None

    def run() -> None:
        nonlocal report
        report = pusher.fan_out(ids, MESSAGE)

    seconds = timed(run)
    assert report is not None and not report.failed and len(report.delivered) == len(ids), report
    return len(ids) / seconds, len(report.delivered)


def sequential_rate(endpoint: str, sample: int) -> float:
    poster = BotoPoster(endpoint)
    poster.post("warm-up", MESSAGE)
    seconds = timed(lambda: [poster.post(f"seq-{n}=", MESSAGE) for n in range(sample)])
    return sample / seconds


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's server in its own process on a free loopback port (DynamoDB's stand-in): its endpoint."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def dynamodb(where: str) -> Iterator[str | None]:
    """The template's serving tables in moto: its server in another process (yields its endpoint) or this
    process (yields None)."""
    if where == "inprocess":
        from moto import mock_aws

        with mock_aws():
            yield None
        return
    with moto_server() as endpoint:
        yield endpoint


class Timings:
    """Seconds spent in named calls (wrapped on the instances the broadcaster holds; nothing else changes)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, obj: Any, method: str, name: str) -> None:
        call = getattr(obj, method)

        @functools.wraps(call)
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

        setattr(obj, method, timed_call)


def broadcast_record(endpoint: str, connections: int, where: str) -> tuple[float, dict[str, float]]:
    """One INSERT record through a warm Broadcaster: its seconds, and the seconds of its DynamoDB parts."""
    import boto3

    from traderai.adapters.connections import ALL_SYMBOLS, CONNECTION_TTL, ConnectionStore
    from traderai.adapters.deliveries import DeliveryStore
    from traderai.adapters.dynamo import batch_write
    from traderai.infra import create_dynamodb_table, load_template
    from traderai.services.broadcast import Broadcaster, change_from_record
    from traderai.testing.handlers import load_event

    change = change_from_record(load_event("broadcast_insert.json")["Records"][0])
    assert change is not None
    with dynamodb(where) as host:
        client = boto3.client("dynamodb", endpoint_url=host)
        template = load_template()
        for logical_id in ("ConnectionsTable", "SubscriptionsTable", "DeliveriesTable"):
            create_dynamodb_table(client, template, logical_id, f"bench-{logical_id}")
        store = ConnectionStore("bench-ConnectionsTable", "bench-SubscriptionsTable", host=host)
        ledger = DeliveryStore("bench-DeliveriesTable", host=host)
        # N targets: half follow every symbol, half the signal's symbol among others; N more follow other
        # symbols only (a Scan would read them too). Rows and items as ConnectionStore writes them, in bulk.
        now = datetime.now(UTC)
        rows, items = store._model, store._subscriptions
        followed = {f"conn-{n}=": ([ALL_SYMBOLS] if n % 2 else [change.signal.symbol, "ETH/USDT"])
                    for n in range(connections)}
        followed |= {f"other-{n}=": ["ETH/USDT", "SOL/USDT"] for n in range(connections)}
        batch_write(rows, puts=[rows(cid, symbols=None if keys == [ALL_SYMBOLS] else keys, connected_at="x",
                                     ttl=now + CONNECTION_TTL) for cid, keys in followed.items()])
        batch_write(items, puts=[items(key, cid, ttl=now + CONNECTION_TTL)
                                 for cid, keys in followed.items() for key in keys])
        broadcaster = Broadcaster(store, Pusher(SignedPoster(endpoint)), ledger)
        # warm, as a container that has broadcast before: clients and connection pools made
        list(store.following("WARM/UP"))
        ledger.delivered("warm-up")
        Pusher(SignedPoster(endpoint)).post("warm-up", MESSAGE)
        timings = Timings()
        timings.wrap(store, "subscribers", "2 Queries of the subscribers")
        timings.wrap(ledger, "delivered", "ledger Query")
        timings.wrap(ledger, "record", "ledger BatchWriteItem")
        outcome = None

        def run() -> None:
            nonlocal outcome
            outcome = broadcaster.broadcast(change)

        seconds = timed(run)
        assert outcome is not None and outcome.delivered == connections, outcome
        return seconds, timings.seconds


def import_seconds(function: str, runs: int = 5) -> float:
    probe = ("import time; from traderai.testing.handlers import load_handler; t = time.perf_counter(); "
             f"load_handler({function!r}); print(time.perf_counter() - t)")
    env = {"PATH": os.environ.get("PATH", ""), "POWERTOOLS_TRACE_DISABLED": "1", "AWS_DEFAULT_REGION": "us-east-1"}
    samples = [float(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                                    env=env).stdout) for _ in range(runs)]
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--latency", type=float, default=0.010)
    parser.add_argument("--sequential-sample", type=int, default=200)
    parser.add_argument("--dynamodb", choices=("server", "inprocess"), default="server",
                        help="moto's server in its own process (default), or moto inside this process")
    args = parser.parse_args()
    ids = [f"conn-{n}=" for n in range(args.connections)]
    process, endpoint = start_server(args.latency)
    try:
        signed, _ = fan_out_rate(Pusher(SignedPoster(endpoint)), ids)
        boto, _ = fan_out_rate(Pusher(BotoPoster(endpoint)), ids)
        sequential = sequential_rate(endpoint, args.sequential_sample)
        record, parts = broadcast_record(endpoint, args.connections, args.dynamodb)
    finally:
        process.terminate()
        process.wait(timeout=10)
    n = args.connections
    print(f"\nFan-out of one message to {n:,} connections, local @connections server "
          f"({args.latency * 1000:.0f} ms per post, own process), {os.cpu_count()} CPUs")
    print(f"{'method':<46}{'posts/s':>10}{'time for all':>15}{'target':>12}")
    rows = [("signed SigV4, 64 threads (BroadcastFunction)", signed, ">= 2,000/s", signed >= 2000),
            ("boto3 post_to_connection, 64 threads", boto, "", None),
            (f"boto3 sequential (sample of {args.sequential_sample}, extrapolated)", sequential, "", None)]
    for name, rate, target, ok in rows:
        verdict = "" if ok is None else (" ok" if ok else " MISSED")
        print(f"{name:<46}{rate:>10,.0f}{n / rate:>14.2f}s{target + verdict:>12}")
    moto = "moto server, own process" if args.dynamodb == "server" else "moto in-process"
    print(f"{'whole record: Query, ledger, fan-out':<46}{n / record:>10,.0f}{record:>14.2f}s"
          f"{'>= 2,000/s' + (' ok' if n / record >= 2000 else ' MISSED'):>12}")
    print(f"  of which DynamoDB ({moto}): " + "; ".join(f"{name} {value:.3f} s" for name, value in parts.items())
          + f"; fan-out and the rest {record - sum(parts.values()):.2f} s")
    print(f"speed-up of the concurrent signed fan-out over sequential boto3: {signed / sequential:.0f}x")
    print("\nHandler module import, fresh interpreter, median of 5 (target < 0.5 s)")
    print(f"{'handler':<12}{'seconds':>10}")
    for function in HANDLERS:
        seconds = import_seconds(function)
        print(f"{function:<12}{seconds:>10.3f}{'' if seconds < 0.5 else '  MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
