"""`traderai local` (what `make demo` runs): the whole system on this machine, with a live page.

The functions' own output (Powertools JSON logs, EMF metrics) goes to a log file whose path is printed;
the console shows the URLs and one progress line per tick that did something. Ctrl-C (SIGINT) or
SIGTERM stops everything: the scheduler, the stream poller, the gateway's sockets and ports, moto.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import TextIO

from traderai.local.stack import DEFAULT_SPEED, DEFAULT_START, LocalOptions, LocalStack

READY_LINE = "traderai local: ready"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "local", help="run the whole system locally: moto as AWS, the real handlers, a gateway and a live page",
        description="moto's server stands in for AWS (tables, bucket and streams from infra/template.yaml), a "
                    "local gateway serves the HTTP and WebSocket APIs to the real handlers, and a scheduler "
                    "replays the bundled real candles on a fast clock. Open the printed page URL.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--http-port", type=int, default=3000, help="HTTP API and the page (default 3000)")
    parser.add_argument("--ws-port", type=int, default=3001, help="WebSocket API and @connections (default 3001)")
    parser.add_argument("--aws-port", type=int, default=4566, help="moto's AWS endpoint (default 4566)")
    parser.add_argument("--speed", type=float, default=DEFAULT_SPEED,
                        help=f"replay seconds per wall second (default {DEFAULT_SPEED:g}: one 5-minute tick a second)")
    parser.add_argument("--start", default=DEFAULT_START, help=f"replay start, UTC ISO-8601 (default {DEFAULT_START})")
    parser.add_argument("--markets", default="BTC/USDT,ETH/USDT,SOL/USDT,BNB/USDT", help="comma-separated")
    parser.add_argument("--market-list", type=Path, metavar="FILE",
                        help="run as a stack deployed with MarketListKey: FILE is put in the local bucket and every "
                             "tick's plan reads it from there; `traderai markets put FILE --local` changes it while "
                             "the stack runs (docs/markets.md)")
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="replay candles from DIR (files like BTC_USDT-15m.csv.gz; default: the bundled ones)")
    parser.add_argument("--live", action="store_true",
                        help="read the real exchange through ccxt on the wall clock (needs a network)")
    parser.add_argument("--no-track", action="store_true", help="do not run TrackFunction")
    parser.add_argument("--no-auth", action="store_true", help="no authorizer: the APIs need no key")
    parser.add_argument("--fake-telegram", action="store_true",
                        help="run a local fake of the Telegram Bot API with a subscribed chat: notifications are "
                             "printed here (no Telegram account needed)")
    parser.add_argument("--webhook-receiver", action="store_true",
                        help="run a local webhook receiver, subscribed: each notification is printed with its "
                             "signature check")
    parser.add_argument("--log-file", type=Path, help="where the functions' logs go (default: a temp file)")
    parser.add_argument("--retrain-every", type=float, default=7.0, metavar="DAYS",
                        help="replayed days between retrainings, the first that long after the start (default 7; "
                             "0: archive only); each runs after the replayed day's archive run (00:10 UTC)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="template parameter override, e.g. --param MinNetProfitPct=1.5 (repeatable)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    console = _Console(sys.stdout, started)
    log_path = args.log_file or Path(tempfile.mkdtemp(prefix="traderai-local-")) / "functions.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    parameters = dict(item.split("=", 1) for item in args.param if "=" in item)
    # A tick with nothing to count is normal (no candle closed); Powertools warns about it.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    # Before any handler module is imported: Powertools binds its log stream to sys.stdout at import.
    with log_path.open("a", buffering=1, encoding="utf-8") as function_log:
        sys.stdout = function_log
        try:
            return _serve(args, console, log_path, parameters)
        finally:
            sys.stdout = console.stream


def _serve(args: argparse.Namespace, console: _Console, log_path: Path, parameters: dict[str, str]) -> int:
    options = LocalOptions(host=args.host, http_port=args.http_port, ws_port=args.ws_port, aws_port=args.aws_port,
                           speed=args.speed, start=args.start, markets=args.markets, data_dir=args.data,
                           live=args.live, track=not args.no_track, auth=not args.no_auth, parameters=parameters,
                           fake_telegram=args.fake_telegram, webhook_receiver=args.webhook_receiver,
                           retrain_every_days=args.retrain_every,
                           market_list=args.market_list.read_bytes() if args.market_list else None)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    stack = LocalStack(options, console)
    console("starting: moto, tables and bucket from infra/template.yaml, handlers, gateway ...")
    try:
        stack.start()
    except OSError as exc:
        console(f"error: {exc} (is another `traderai local` running? choose other ports with --http-port, "
                f"--ws-port, --aws-port)")
        return 1
    try:
        _print_urls(console, stack, log_path)
        console(f"{READY_LINE} in {stack.startup_seconds:.1f}s")
        last_summary = time.monotonic()
        while not stop.wait(0.2):
            if time.monotonic() - last_summary >= 30:
                console(f"totals: {stack.progress_summary()}")
                last_summary = time.monotonic()
        console(f"stopping ... totals: {stack.progress_summary()}")
    finally:
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console("stopped: scheduler, stream poller, gateway and moto are down; ports closed")
    return 0


def _print_urls(console: _Console, stack: object, log_path: Path) -> None:
    assert isinstance(stack, LocalStack) and stack.gateway is not None and stack.aws is not None
    gateway, aws, clock = stack.gateway, stack.aws, stack.clock
    assert clock is not None
    mode = ("live: ccxt on the wall clock" if stack.options.live
            else f"replay from {clock.start:%Y-%m-%d %H:%M} UTC at {clock.speed:g}x")
    lines = [
        f"page       {gateway.http_url}/",
        f"HTTP API   {gateway.http_url}/signals   (also /health, /openapi.json)",
        f"WebSocket  {gateway.ws_url}" + ("?api_key=<key>" if stack.dev_key else ""),
        f"AWS        {stack.aws_endpoint}   e.g. aws --endpoint-url {stack.aws_endpoint} s3 ls "
        f"s3://{aws.bucket}/predictions/ --recursive",
        f"           tables: {', '.join(sorted(v for k, v in aws.names.items() if k.endswith('Table')))}",
        f"notify     traderai notify --endpoint-url {stack.aws_endpoint} --table "
        f"{aws.names.get('NotifySubscribersTable')} --secret-prefix {stack.notify_secret_prefix} list",
        f"logs       {log_path}",
        f"clock      {mode}",
    ]
    if stack.dev_key:
        lines.insert(3, f"dev key    {stack.dev_key}")
        lines.insert(4, f"           curl -H 'Authorization: Bearer {stack.dev_key}' {gateway.http_url}/signals")
    for line in lines:
        console(line)


class _Console:
    """Progress lines with the seconds since start, on the real stdout (flushed: pipes see them at once)."""

    def __init__(self, stream: TextIO, started: float) -> None:
        self.stream = stream
        self.started = started
        self._lock = threading.Lock()

    def __call__(self, message: str) -> None:
        with self._lock:
            self.stream.write(f"[{time.monotonic() - self.started:6.1f}s] {message}\n")
            self.stream.flush()
