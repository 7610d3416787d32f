"""Fan-out and cold-import benchmark of the serving side: `python bench/fanout.py [--connections 5000]`.

1. Fan-out: one signal pushed to N connections through a local `@connections` server (its own
   process, real sockets) answering each post after `--latency` (10 ms, API Gateway-like), with
   - the signed transport, concurrent (what BroadcastFunction uses),
   - boto3's post_to_connection, concurrent (same thread pool),
   - boto3 sequentially, on a sample, extrapolated to N (the naive loop of many samples).
   Plus the whole broadcast of one stream record (BroadcastFunction's path, warm): the audience found by
   a Query of the Subscriptions table on the signal's symbol and one on `*` (N targets among 2N open
   connections: the other N follow other symbols and are never read), the delivery ledger's Query, the
   signed fan-out posting to each page as it arrives, and the ledger's batched write. DynamoDB is stood in
   by bench/dynamodb_standin.py: its own process on loopback, items held by partition so a Query reads
   its partition only, each request answered after 10 ms (assumed, no server CPU counted). moto is no
   measure here: its Query walks every item of the table, page after page (`--dynamodb server`: moto's
   server in its own process; `--dynamodb inprocess`: moto in this process, as the tests run it). The
   audience read alone and the ledger's calls are timed too.
2. Import time of each handler module in a fresh interpreter, median of 5 (cold-start cost).

Targets: concurrent fan-out and the whole record >= 2,000 posts/s here; each handler import < 0.5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
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


TABLES = ("ConnectionsTable", "SubscriptionsTable", "DeliveriesTable")
DYNAMODB = {"standin": "a loopback stand-in holding items by partition, 10 ms per request (bench/dynamodb_standin.py)",
            "server": "moto's server, own process", "inprocess": "moto in this process"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def dynamodb(where: str, template: dict[str, Any]) -> Iterator[str | None]:
    """The serving tables of the template in DynamoDB's stand-in: yields its endpoint (None: in-process moto)."""
    from traderai.infra import create_dynamodb_table

    if where == "inprocess":
        import boto3
        from moto import mock_aws

        with mock_aws():
            for logical_id in TABLES:
                create_dynamodb_table(boto3.client("dynamodb"), template, logical_id, f"bench-{logical_id}")
            yield None
        return
    if where == "standin":
        schemas = {f"bench-{lid}": [k["AttributeName"] for k in template["Resources"][lid]["Properties"]["KeySchema"]]
                   for lid in TABLES}
        command = [sys.executable, str(Path(__file__).with_name("dynamodb_standin.py")), "--latency", "0.010",
                   "--tables", json.dumps(schemas)]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        endpoint = process.stdout.readline().strip()
    else:
        port = free_port()
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        endpoint = f"http://127.0.0.1:{port}"
    try:
        if where == "server":
            import boto3

            for _ in range(300):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
                time.sleep(0.1)
            for logical_id in TABLES:
                create_dynamodb_table(boto3.client("dynamodb", endpoint_url=endpoint), template, logical_id,
                                      f"bench-{logical_id}")
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


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
    """One INSERT record through a warm Broadcaster: its seconds, and where they went."""
    from traderai.adapters.connections import ALL_SYMBOLS, CONNECTION_TTL, ConnectionStore
    from traderai.adapters.deliveries import DeliveryStore
    from traderai.adapters.dynamo import batch_write
    from traderai.infra import load_template
    from traderai.services.broadcast import Broadcaster, change_from_record
    from traderai.testing.handlers import load_event

    change = change_from_record(load_event("broadcast_insert.json")["Records"][0])
    assert change is not None
    with dynamodb(where, load_template()) as host:
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
        # warm, as a container that has broadcast before: clients, connection pools and reader threads made
        list(store.subscribers("WARM/UP"))
        ledger.delivered("warm-up")
        pusher = Pusher(SignedPoster(endpoint))
        pusher.post("warm-up", MESSAGE)
        # the audience alone, read as the broadcast reads it (both Queries at once, paginated)
        audience = timed(lambda: list(store.subscribers(change.signal.symbol)))
        broadcaster = Broadcaster(store, pusher, ledger)
        timings = Timings()
        timings.wrap(ledger, "delivered", "ledger Query")
        timings.wrap(ledger, "record", "ledger BatchWriteItem")
        outcome = None

        def run() -> None:
            nonlocal outcome
            outcome = broadcaster.broadcast(change)

        seconds = timed(run)
        assert outcome is not None and outcome.delivered == connections, outcome
        return seconds, {"2 Queries of the audience, read alone before": audience, **timings.seconds}


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
    parser.add_argument("--dynamodb", choices=tuple(DYNAMODB), default="standin",
                        help="DynamoDB's stand-in for the whole record: "
                        + "; ".join(f"{k}: {v}" for k, v in DYNAMODB.items()))
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
    print(f"{'whole record: Query, ledger, fan-out':<46}{n / record:>10,.0f}{record:>14.2f}s"
          f"{'>= 2,000/s' + (' ok' if n / record >= 2000 else ' MISSED'):>12}")
    print(f"  DynamoDB: {DYNAMODB[args.dynamodb]}; "
          + "; ".join(f"{name} {value:.3f} s" for name, value in parts.items()))
    print(f"speed-up of the concurrent signed fan-out over sequential boto3: {signed / sequential:.0f}x")
    print("\nHandler module import, fresh interpreter, median of 5 (target < 0.5 s)")
    print(f"{'handler':<12}{'seconds':>10}")
    for function in HANDLERS:
        seconds = import_seconds(function)
        print(f"{function:<12}{seconds:>10.3f}{'' if seconds < 0.5 else '  MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
