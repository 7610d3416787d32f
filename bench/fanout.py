"""Fan-out and cold-import benchmark of the serving side: `python bench/fanout.py [--connections 5000]`.

1. Fan-out: one signal pushed to N connections through a local `@connections` server (its own
   process, real sockets) answering each post after `--latency` (10 ms, API Gateway-like), with
   - the signed transport, concurrent (what BroadcastFunction uses),
   - boto3's post_to_connection, concurrent (same thread pool),
   - boto3 sequentially, on a sample, extrapolated to N (the naive loop of many samples).
   Plus the whole broadcast of one stream record under moto: Scan of N connections + fan-out + the
   delivery ledger's Query and sharded writes.
2. Import time of each handler module in a fresh interpreter, median of 5 (cold-start cost).

Targets: concurrent fan-out >= 2,000 posts/s here; each handler import < 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

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


def broadcast_record_seconds(endpoint: str, connections: int) -> float:
    """One INSERT record through Broadcaster: Scan N connections in moto, the ledger's Query, then the
    signed fan-out, recorded in the ledger as it goes."""
    from moto import mock_aws

    from traderai.adapters.connections import ConnectionStore
    from traderai.adapters.deliveries import DeliveryStore
    from traderai.infra import load_template
    from traderai.services.broadcast import Broadcaster, change_from_record
    from traderai.testing.handlers import load_event
    from traderai.testing.serving import DELIVERIES_TABLE, serving_tables

    with mock_aws(), serving_tables(load_template()) as tables:
        store = ConnectionStore(tables.connections_table)
        now = datetime.now(UTC)
        with store._model.batch_write() as batch:
            for n in range(connections):
                batch.save(store._model(f"conn-{n}=", symbols=None, connected_at="x", ttl=now))
        change = change_from_record(load_event("broadcast_insert.json")["Records"][0])
        assert change is not None
        broadcaster = Broadcaster(store, Pusher(SignedPoster(endpoint)), DeliveryStore(DELIVERIES_TABLE))
        return timed(lambda: broadcaster.broadcast(change))


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
    args = parser.parse_args()
    ids = [f"conn-{n}=" for n in range(args.connections)]
    process, endpoint = start_server(args.latency)
    try:
        signed, _ = fan_out_rate(Pusher(SignedPoster(endpoint)), ids)
        boto, _ = fan_out_rate(Pusher(BotoPoster(endpoint)), ids)
        sequential = sequential_rate(endpoint, args.sequential_sample)
        record = broadcast_record_seconds(endpoint, args.connections)
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
    print(f"{'whole record: Scan, ledger (moto) + fan-out':<46}{n / record:>10,.0f}{record:>14.2f}s")
    print(f"speed-up of the concurrent signed fan-out over sequential boto3: {signed / sequential:.0f}x")
    print("\nHandler module import, fresh interpreter, median of 5 (target < 0.5 s)")
    print(f"{'handler':<12}{'seconds':>10}")
    for function in HANDLERS:
        seconds = import_seconds(function)
        print(f"{function:<12}{seconds:>10.3f}{'' if seconds < 0.5 else '  MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
