"""Cold start: each handler module imported in a fresh interpreter, then its first invocation, the way
Lambda runs it: from the function's built layers, with the bytecode they ship.

Every layer of the function is built by its `sam build` recipe (src/Makefile, layers/Makefile: the pinned
lock, then Python 3.12 bytecode) and merged into one read-only folder, as Lambda extracts them into /opt.
The third-party layers are built from the same lock for this machine's platform (Lambda's are arm64
wheels, which cannot load here). For every function, `RUNS` fresh interpreters (`python -S`: no
site-packages, so only the standard library, that folder, the handler's own folder and a stand-in for the
runtime's AWS SDK: this environment's, with the bytecode pip compiled for it, an assumption, as AWS does not
publish the runtime's files; PYTHONDONTWRITEBYTECODE=1; Lambda's environment variables) each (1) import
`functions/<name>/app.py` (Lambda's init phase; the function's own code ships without bytecode: its folder is
copied without the `__pycache__` that tests leave there, as sam build copies it) and (2)
invoke the handler once with its sample event from `events/` (the first request: settings, clients, the
first calls to AWS). AWS is a moto server on localhost, provisioned from the template; pushes go to a
local `@connections` endpoint. The medians are reported as wall-clock time (the verdicts) and as the
process's CPU time (steadier on this shared machine, where other work stretches the wall clock; the first
call's CPU excludes waiting on moto). The heavy modules loaded at each stage are listed, so a regression
names its import. The predict function runs its replay source here (no network): the live path adds
`ccxt.async_support` and the exchange object, timed separately in the same interpreter. `--compare` also
runs every probe on the same layers with their bytecode removed (what the layers shipped before),
interleaved, for a before/after from one run.

    .venv/bin/python bench/cold_start.py [--runs N] [--json PATH] [--importtime NAME] [--compare] [--only NAME...]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from figures import Figure, emit, median, verdict

from traderai.infra import create_dynamodb_table, load_template
from traderai.testing.handlers import EVENTS_DIR, FUNCTIONS_DIR
from traderai.testing.sam import LAYER_CACHE, built_layer

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
HOW = ("real: the function's layers as built for sam build, read-only, with the bytecode they ship, Lambda's "
       "environment variables; stood in: this machine's CPU and x86_64 wheels of the same lock for Lambda's arm64, "
       "this environment's boto3 (with its bytecode) for the runtime's, UDP to no X-Ray daemon")
# Lambda's runtime site-packages besides the standard library: the AWS SDK and what it needs (stood in by ours)
RUNTIME_SDK = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3")

PROBE = r"""
import gc, importlib.util, json, sys, time
frozen_before = gc.get_freeze_count()
started, cpu_started = time.perf_counter(), time.process_time()
task, opt, sdk, name, event_path, heavy = sys.argv[1:7]
sys.path[:0] = [task, opt, sdk]  # Lambda's order: /var/task, /opt/python, then the runtime's site-packages
spec = importlib.util.spec_from_file_location("app", f"{task}/app.py")
module = importlib.util.module_from_spec(spec)
sys.modules["app"] = module
spec.loader.exec_module(module)
imported, cpu_imported = time.perf_counter(), time.process_time()
frozen = gc.get_freeze_count() - frozen_before  # a handler that froze what its load created (gc.freeze)
heavy = heavy.split(",")
at_import = sorted(h for h in heavy if h in sys.modules)


class Context:  # the attributes Powertools reads from a Lambda context
    function_name, function_version, memory_limit_in_mb = "traderai-bench", "$LATEST", 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:traderai-bench"
    aws_request_id, log_group_name, log_stream_name = "00000000-0000-0000-0000-000000000000", "/aws/lambda/x", "x"

    def get_remaining_time_in_millis(self):
        return 60_000


error = None
try:
    with open(event_path) as handle:
        event = json.load(handle)
except FileNotFoundError as exc:
    event, error = None, f"no sample event: {exc}"
first_call = None
if event is not None:
    invoke_started = time.perf_counter()
    try:
        module.handler(event, Context())
    except Exception as exc:
        error = f"{type(exc).__name__}: {str(exc)[:160]}"
    first_call = time.perf_counter() - invoke_started
cpu_called = time.process_time()
after_call = sorted(h for h in heavy if h in sys.modules)
ccxt_s = None
if name == "predict" and "ccxt" not in sys.modules:
    t = time.perf_counter()
    import ccxt.async_support
    ccxt.async_support.binance({"enableRateLimit": True})  # what the live source builds before its first request
    ccxt_s = time.perf_counter() - t
import os
compiled = [n for n, m in sys.modules.items() if (getattr(m, "__file__", None) or "").startswith(opt)
            and m.__file__.endswith(".py") and not os.path.exists(getattr(m, "__cached__", None) or "")]
print("PROBE" + json.dumps({"import_s": imported - started, "first_call_s": first_call, "ccxt_s": ccxt_s,
                            "import_cpu_s": cpu_imported - cpu_started, "first_cpu_s": cpu_called - cpu_started,
                            "at_import": at_import, "after_call": after_call, "compiled": len(compiled),
                            "frozen": frozen, "error": error}))
"""


@dataclass(frozen=True)
class Runtime:
    """What a probe runs against: the function's code (no bytecode), its merged layers (read-only) and the
    runtime's SDK."""

    task: Path
    opt: Path
    sdk: Path


def function_layers(template: dict[str, Any]) -> dict[str, list[str]]:
    """Handler folder name -> the layer ids of its function, in the template's order."""
    layers = {}
    for spec in template["Resources"].values():
        if spec["Type"] == "AWS::Serverless::Function":
            props = spec["Properties"]
            layers[Path(props["CodeUri"]).name] = [ref["Ref"] for ref in props.get("Layers", [])]
    return layers


@contextlib.contextmanager
def runtimes(names: list[str], bytecode: bool) -> Iterator[dict[str, Runtime]]:
    """For each handler, its layers built (cached) and merged into one read-only folder, as Lambda's /opt;
    without `bytecode`, every .pyc removed (as the layers shipped before they carried any)."""
    import boto3

    layers = function_layers(load_template())
    with tempfile.TemporaryDirectory(prefix="traderai-cold-") as scratch:
        sdk = Path(scratch) / "runtime-sdk"
        sdk.mkdir()
        site = Path(boto3.__file__).parents[1]
        for entry in RUNTIME_SDK:
            (sdk / entry).symlink_to(site / entry)
            if entry.endswith(".py"):  # a lone module: its bytecode as well (a package's comes with its folder)
                cached = Path(importlib.util.cache_from_source(str(site / entry)))
                (sdk / "__pycache__").mkdir(exist_ok=True)
                (sdk / "__pycache__" / cached.name).symlink_to(cached)
        built: dict[str, Runtime] = {}
        for name in names:
            task = Path(scratch) / name / "task"
            shutil.copytree(FUNCTIONS_DIR / name, task, ignore=shutil.ignore_patterns("__pycache__"))
            opt = Path(scratch) / name / "python"
            for layer_id in layers[name]:
                host = layer_id not in ("CoreLayer", "TrainingCodeLayer")  # ours are pure Python
                shutil.copytree(built_layer(layer_id, LAYER_CACHE, host=host), opt, dirs_exist_ok=True, symlinks=True)
            if not bytecode:
                for pyc in opt.rglob("__pycache__/*.pyc"):
                    pyc.unlink()  # ccxt ships bytecode only, in place of its sources (no __pycache__): it stays
            for path in (task, *task.rglob("*"), opt, *opt.rglob("*")):  # /var/task and /opt are read-only on Lambda
                if not path.is_symlink():
                    path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
            built[name] = Runtime(task, opt, sdk)
        try:
            yield built
        finally:
            for path in Path(scratch).rglob("*"):
                if not path.is_symlink():
                    path.chmod(path.stat().st_mode | stat.S_IWUSR)


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


def child_env(env: dict[str, str], task: Path | None = None) -> dict[str, str]:
    """The probe's environment: Lambda's own variables for a python3.12 function with active tracing, then
    the function's. They matter: without LAMBDA_TASK_ROOT, Powertools turns its Tracer off, and the X-Ray SDK
    starts its centralized sampler, which builds two botocore clients at import (about 0.2 s) that Lambda
    never builds; with AWS_LAMBDA_RUNTIME_API, ApiFunction pauses the garbage collector while it loads, as on
    Lambda."""
    lambda_env = {"LAMBDA_TASK_ROOT": str(task or tempfile.gettempdir()), "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
                  "AWS_LAMBDA_FUNCTION_NAME": "traderai-bench", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                  "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024", "_HANDLER": "app.handler",
                  "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR", "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
                  "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",  # the runtime's; nothing here connects to it
                  "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"}
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tempfile.gettempdir(),
            "PYTHONDONTWRITEBYTECODE": "1", **lambda_env, **env}


def probe(handler: Handler, runtime: Runtime, env: dict[str, str]) -> dict[str, Any]:
    """One fresh interpreter: import time, first-invocation time, heavy modules at each stage, and how many
    modules of the layers had to be compiled from source (none when their bytecode shipped)."""
    task = runtime.task
    done = subprocess.run([sys.executable, "-S", "-c", PROBE, str(task), str(runtime.opt), str(runtime.sdk),
                           handler.name, str(EVENTS_DIR / handler.event), ",".join(HEAVY)],
                          capture_output=True, text=True, env=child_env(env, task), cwd=tempfile.gettempdir(),
                          timeout=120, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{handler.name}: probe failed\n{done.stderr[-2000:]}")
    return json.loads(lines[-1][len("PROBE"):])


def heaviest_imports(name: str, runtime: Runtime, top: int = 6) -> list[tuple[str, float]]:
    """`python -X importtime` of the handler module from its layers: the top-level imports that cost the most."""
    task = runtime.task
    code = (f"import sys; sys.path[:0] = [{str(task)!r}, {str(runtime.opt)!r}, {str(runtime.sdk)!r}]; "
            f"import importlib.util as u; s = u.spec_from_file_location('app', {str(task / 'app.py')!r}); "
            "s.loader.exec_module(u.module_from_spec(s))")
    done = subprocess.run([sys.executable, "-S", "-X", "importtime", "-c", code], capture_output=True, text=True,
                          cwd=tempfile.gettempdir(), timeout=120, check=False,
                          env=child_env({"AWS_DEFAULT_REGION": "us-east-1"}, task))
    costs: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, module = line[len("import time:"):].split("|")
        # Top-level imports only: their names are indented by exactly one space.
        if cumulative.strip().isdigit() and not module.startswith("  ") and module.strip():
            costs[module.strip()] = int(cumulative) / 1e6
    return sorted(costs.items(), key=lambda item: -item[1])[:top]


def series(handler: Handler, runtimes_by_mode: dict[str, Runtime], env: dict[str, str],
           runs: int) -> dict[str, list[dict[str, Any]]]:
    """`runs` probes per mode, the modes interleaved run by run (so load swings hit both alike)."""
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in runtimes_by_mode}
    for _ in range(runs):
        for mode, runtime in runtimes_by_mode.items():
            results[mode].append(probe(handler, runtime, env))
    return results


def measure(runs: int, compare: bool, only: list[str] | None = None) -> list[Figure]:
    figures = []
    handlers = [handler for handler in HANDLERS if not only or handler.name in only]
    names = [handler.name for handler in handlers]
    load_start = os.getloadavg()[0]
    with local_aws() as env, runtimes(names, bytecode=True) as shipped, contextlib.ExitStack() as stack:
        bare = stack.enter_context(runtimes(names, bytecode=False)) if compare else {}
        for handler in handlers:
            modes = {"shipped": shipped[handler.name], **({"none": bare[handler.name]} if compare else {})}
            quiet_env = {**env, "POWERTOOLS_TRACE_DISABLED": "true"}
            by_mode = series(handler, modes, env, runs)
            quiet = series(handler, modes, quiet_env, runs) if handler.name in NO_TRACING else {}
            results = by_mode["shipped"]
            last = results[-1]
            before = ""
            if compare:
                before_import = median([r["import_s"] for r in by_mode["none"]])
                before = f"; same layers without their bytecode: {before_import:.2f} s"
            module_s = median([r["import_s"] for r in results])
            target = f"≤ {handler.target_s} s" if handler.target_s else ""
            ok = verdict(module_s <= handler.target_s) if handler.target_s else "info"
            cpu = median([r["import_cpu_s"] for r in results])
            note = (f"median of {runs} (wall clock; CPU {cpu:.2f} s), tracing on (Tracing: Active); {HOW}; modules "
                    f"compiled at import: {last['compiled']}; heavy at import: {', '.join(last['at_import']) or 'none'}"
                    f"{before}")
            if last["frozen"]:
                note += (f"; loaded with the garbage collector paused, then {last['frozen']:,} objects frozen out of "
                         "later collections (gc.freeze), as on Lambda (AWS_LAMBDA_RUNTIME_API)")
            if handler.target_s and module_s > handler.target_s:
                note += "; heaviest: " + ", ".join(f"{m} {s:.2f} s"
                                                  for m, s in heaviest_imports(handler.name, shipped[handler.name]))
            figures.append(Figure(SECTION, f"{handler.name}: module import", f"{module_s:.2f} s", target, ok, note))
            firsts = [r["import_s"] + r["first_call_s"] for r in results if r["first_call_s"] is not None]
            if firsts:
                extra = [h for h in last["after_call"] if h not in last["at_import"]]
                cpu = median([r["first_cpu_s"] for r in results if r["first_call_s"] is not None])
                note = (f"import + first call, median of {len(firsts)} (wall clock; CPU {cpu:.2f} s), layers as "
                        f"above; loaded at first call: {', '.join(extra) or '-'}")
                if last["ccxt_s"] is not None:
                    ccxt_s = median([r["ccxt_s"] for r in results])
                    note += f"; the live exchange path adds ccxt.async_support + its binance object: {ccxt_s:.2f} s"
                if compare:
                    before_first = median([r["import_s"] + r["first_call_s"] for r in by_mode["none"]
                                           if r["first_call_s"] is not None])
                    note += f"; same layers without their bytecode: {before_first:.2f} s"
                if last["error"]:
                    note += f"; first call failed: {last['error']}"
                first_target = FIRST_CALL_TARGETS.get(handler.name)
                figures.append(Figure(SECTION, f"{handler.name}: first invocation", f"{median(firsts):.2f} s",
                                      f"≤ {first_target} s" if first_target else "",
                                      verdict(median(firsts) <= first_target) if first_target else "info",
                                      note + "; replay source, moto server on loopback"))
            if quiet:
                quiet_s = median([r["import_s"] for r in quiet["shipped"]])
                cpu = median([r["import_cpu_s"] for r in quiet["shipped"]])
                note = (f"median of {runs} (wall clock; CPU {cpu:.2f} s), POWERTOOLS_TRACE_DISABLED=true (no X-Ray "
                        f"SDK); {HOW}")
                if compare:
                    quiet_before = median([r["import_s"] for r in quiet["none"]])
                    note += f"; same layers without their bytecode: {quiet_before:.2f} s"
                figures.append(Figure(SECTION, f"{handler.name}: module import, tracing off",
                                      f"{quiet_s:.2f} s", f"≤ {handler.target_s} s",
                                      verdict(quiet_s <= (handler.target_s or 0)), note))
    print(f"load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end", file=sys.stderr)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--importtime", metavar="NAME", help="only list NAME's heaviest imports")
    parser.add_argument("--compare", action="store_true",
                        help="also probe the same layers with their bytecode removed, interleaved")
    parser.add_argument("--only", nargs="*", help="only these handlers")
    args = parser.parse_args(argv)
    if args.importtime:
        with runtimes([args.importtime], bytecode=True) as built:
            for module, seconds in heaviest_imports(args.importtime, built[args.importtime], top=15):
                print(f"{seconds:8.3f} s  {module}")
        return 0
    emit(measure(args.runs, args.compare, args.only), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
