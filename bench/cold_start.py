"""Cold start: each handler module imported in a fresh interpreter, then its first invocation.

For every function, `RUNS` fresh interpreters each (1) import `functions/<name>/app.py` (what Lambda's
init phase runs) and (2) invoke the handler once with its sample event from `events/` (what the
first request adds: the lazy imports inside the `lru_cache` getters, settings, clients, the first
calls to moto). AWS is a moto server on localhost, provisioned from the template; pushes go to a
local `@connections` endpoint. The medians are reported; the heavy modules loaded at each stage
are listed, so a regression names its import. The predict function runs its replay source here
(no network): the live path adds `ccxt.async_support`, timed separately in the same interpreter.

    .venv/bin/python bench/cold_start.py [--runs N] [--json PATH] [--importtime NAME]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from figures import Figure, emit, median, verdict

from traderai.infra import create_dynamodb_table, load_template
from traderai.testing.handlers import REPO_ROOT

SECTION = "3. Cold start"
RUNS = 5
HEAVY = ("boto3", "botocore", "pynamodb", "pydantic", "numpy", "ccxt", "aws_xray_sdk")


@dataclass(frozen=True)
class Handler:
    name: str
    event: str
    target_s: float | None


HANDLERS = (
    Handler("predict", "predict_schedule.json", None),
    Handler("signal", "signal_destination.json", None),
    Handler("api", "api_get_signals.json", 0.3),
    Handler("websocket", "ws_connect.json", 0.3),
    Handler("broadcast", "broadcast_insert.json", 0.3),
    Handler("authorizer", "authorizer_http.json", None),
)
FIRST_CALL_TARGETS = {"predict": 1.0}
NO_TRACING = ("api", "websocket", "broadcast")  # measured again with POWERTOOLS_TRACE_DISABLED
HOW = ("NO bytecode (empty PYTHONPYCACHEPREFIX: compiled from source, as from a --no-compile layer); "
       "stood in: this machine's CPU for Lambda's")

PROBE = r"""
import json, sys, time
started = time.perf_counter()
from traderai.testing.handlers import load_handler
module = load_handler(sys.argv[1])
imported = time.perf_counter()
heavy = sys.argv[3].split(",")
at_import = sorted(h for h in heavy if h in sys.modules)
from traderai.testing.handlers import FakeLambdaContext, load_event
error = None
try:
    event = load_event(sys.argv[2])
except FileNotFoundError as exc:
    event, error = None, f"no sample event: {exc}"
invoked = imported
if event is not None:
    invoke_started = time.perf_counter()
    try:
        module.handler(event, FakeLambdaContext())
    except Exception as exc:
        error = f"{type(exc).__name__}: {str(exc)[:160]}"
    invoked = time.perf_counter()
    first_call = invoked - invoke_started
else:
    first_call = None
after_call = sorted(h for h in heavy if h in sys.modules)
ccxt_s = None
if sys.argv[1] == "predict" and "ccxt" not in sys.modules:
    t = time.perf_counter()
    import ccxt.async_support
    ccxt_s = time.perf_counter() - t
print("PROBE" + json.dumps({"import_s": imported - started, "first_call_s": first_call, "ccxt_s": ccxt_s,
                            "at_import": at_import, "after_call": after_call,
                            "error": error}))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def table_env_names(template: dict[str, Any]) -> dict[str, str]:
    """Env var -> table logical id, from every function's `!Ref <Table>` in the template."""
    tables = {lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::DynamoDB::Table"}
    names: dict[str, str] = {}
    functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::Function"]
    for function in functions:
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        for env_name, value in variables.items():
            if isinstance(value, dict) and value.get("Ref") in tables:
                names[env_name] = value["Ref"]
    return names


@contextlib.contextmanager
def local_aws() -> Iterator[dict[str, str]]:
    """A moto server with the template's bucket, tables and the bundled models; yields the functions' env."""
    import boto3
    from moto.server import ThreadedMotoServer

    from traderai.apigw.connections import ConnectionsServer
    from traderai.local.aws import publish_bundled_models

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    credentials = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        with ConnectionsServer() as gateway:
            session = boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench",
                                            region_name="us-east-1")
            s3 = session.client("s3", endpoint_url=endpoint)
            dynamodb = session.client("dynamodb", endpoint_url=endpoint)
            template = load_template()
            bucket = "traderai-bench"
            s3.create_bucket(Bucket=bucket)
            publish_bundled_models(s3, bucket)
            env = {**credentials, "AWS_ENDPOINT_URL": endpoint, "BUCKET_NAME": bucket, "MODEL_PREFIX": "models",
                   "MARKET_SOURCE": "replay", "MARKETS": "BTC/USDT,ETH/USDT,SOL/USDT,BNB/USDT", "TIMEFRAME": "15m",
                   "TOKEN_SECRET": "bench-secret-" + "x" * 40, "WEBSOCKET_ENDPOINT": gateway.endpoint,
                   "POWERTOOLS_METRICS_NAMESPACE": "TraderAI", "POWERTOOLS_SERVICE_NAME": "traderai",
                   "LOG_LEVEL": "ERROR"}
            for env_name, logical_id in table_env_names(template).items():
                table = f"bench-{logical_id}"
                with contextlib.suppress(dynamodb.exceptions.ResourceInUseException):
                    create_dynamodb_table(dynamodb, template, logical_id, table)
                env[env_name] = table
            yield env
    finally:
        server.stop()


def probe(handler: Handler, env: dict[str, str], runs: int) -> list[dict[str, Any]]:
    """`runs` fresh interpreters: import time, first-invocation time, heavy modules at each stage. No
    compiled bytecode is read or written: each run gets an empty PYTHONPYCACHEPREFIX, so every module (ours
    and the layers') is compiled from source, as Lambda does with a layer built with --no-compile."""
    results = []
    for _ in range(runs):
        no_bytecode = tempfile.mkdtemp(prefix="traderai-nopyc-")
        child_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tempfile.gettempdir(),
                     "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": no_bytecode, **env}
        done = subprocess.run([sys.executable, "-c", PROBE, handler.name, handler.event, ",".join(HEAVY)],
                              capture_output=True, text=True, env=child_env, cwd=REPO_ROOT, timeout=120,
                              check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE")]
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"{handler.name}: probe failed\n{done.stderr[-2000:]}")
        results.append(json.loads(lines[-1][len("PROBE"):]))
    return results


def heaviest_imports(name: str, top: int = 6) -> list[tuple[str, float]]:
    """`python -X importtime` of the handler module: the top-level imports that cost the most (s)."""
    code = f"from traderai.testing.handlers import load_handler; load_handler({name!r})"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120, check=False,
                          env={"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1"})
    costs: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, module = line[len("import time:"):].split("|")
        # Top-level imports only: their names are indented by exactly one space.
        if cumulative.strip().isdigit() and not module.startswith("  ") and module.strip():
            costs[module.strip()] = int(cumulative) / 1e6
    return sorted(costs.items(), key=lambda item: -item[1])[:top]


def measure(runs: int) -> list[Figure]:
    figures = []
    with local_aws() as env:
        for handler in HANDLERS:
            results = probe(handler, env, runs)
            imports = [r["import_s"] for r in results]
            firsts = [r["import_s"] + r["first_call_s"] for r in results if r["first_call_s"] is not None]
            last = results[-1]
            module_s = median(imports)
            target = f"≤ {handler.target_s} s" if handler.target_s else ""
            ok = verdict(module_s <= handler.target_s) if handler.target_s else "info"
            note = (f"median of {runs}, tracing on (Tracing: Active); {HOW}; "
                    f"heavy at import: {', '.join(last['at_import']) or 'none'}")
            if handler.target_s and module_s > handler.target_s:
                note += "; heaviest: " + ", ".join(f"{m} {s:.2f} s" for m, s in heaviest_imports(handler.name))
            figures.append(Figure(SECTION, f"{handler.name}: module import", f"{module_s:.2f} s", target, ok, note))
            if firsts:
                extra = [h for h in last["after_call"] if h not in last["at_import"]]
                note = (f"import + first call, median of {len(firsts)}; "
                        f"loaded at first call: {', '.join(extra) or '-'}")
                if last["ccxt_s"] is not None:
                    ccxt_s = median([r["ccxt_s"] for r in results])
                    note += f"; live exchange path adds ccxt.async_support {ccxt_s:.2f} s"
                if last["error"]:
                    note += f"; first call failed: {last['error']}"
                first_target = FIRST_CALL_TARGETS.get(handler.name)
                figures.append(Figure(SECTION, f"{handler.name}: first invocation", f"{median(firsts):.2f} s",
                                      f"≤ {first_target} s" if first_target else "",
                                      verdict(median(firsts) <= first_target) if first_target else "info",
                                      note + "; replay source, moto server on loopback"))
            if handler.name in NO_TRACING:
                quiet = probe(handler, {**env, "POWERTOOLS_TRACE_DISABLED": "true"}, runs)
                quiet_s = median([r["import_s"] for r in quiet])
                figures.append(Figure(SECTION, f"{handler.name}: module import, tracing off",
                                      f"{quiet_s:.2f} s", f"≤ {handler.target_s} s",
                                      verdict(quiet_s <= (handler.target_s or 0)),
                                      f"median of {runs}, POWERTOOLS_TRACE_DISABLED=true (no X-Ray SDK); {HOW}"))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--importtime", metavar="NAME", help="only list NAME's heaviest imports")
    args = parser.parse_args(argv)
    if args.importtime:
        for module, seconds in heaviest_imports(args.importtime, top=15):
            print(f"{seconds:8.3f} s  {module}")
        return 0
    emit(measure(args.runs), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
