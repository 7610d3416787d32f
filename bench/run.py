"""`make bench`: run every benchmark, print one table, write it to bench/RESULTS.md.

Each benchmark runs in its own interpreter (fresh imports, its own moto, no shared state) and hands
its figures back as JSON (`--json`). A benchmark that fails shows as a failed row; it does not stop
the others. The exit status is non-zero only if a function crosses Lambda's 250 MB unzipped limit
(bench/sizes.py decides that): the figures are for people, the limit is a hard fact.

    .venv/bin/python bench/run.py [--only NAME ...] [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from figures import MISS, PASS, PENDING, Figure, verdict

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "RESULTS.md"
MB = 1_000_000
PREDICT_TARGET_MB = 150

# name -> (script, extra arguments, extra arguments when --quick)
SCRIPTS: dict[str, tuple[str, list[str], list[str]]] = {
    "freshness": ("freshness.py", [], ["--candles", "4"]),
    "tick_scale": ("tick_scale.py", [], ["--quick"]),
    "shard_tick": ("shard_tick.py", [], ["--quick"]),
    "cold_start": ("cold_start.py", [], ["--runs", "3"]),
    "features": ("features_bench.py", [], []),
    "api": ("api_latency.py", [], ["--signals", "20000", "--requests", "100"]),
    "edge": ("edge_bench.py", [], ["--folds", "3"]),
    "notify": ("notify_bench.py", [], ["--signals", "2000", "--subscribers", "200", "--latency-signals", "10"]),
    "retrain": ("retrain_bench.py", [], ["--quick"]),
}
# Seconds a benchmark may run before it shows as failed: the sharded tick publishes 1,000 models to moto and
# runs a 10,000-market tick (about 10 minutes on a loaded 2-core machine).
TIMEOUT_S = {"shard_tick": 1500}
ORDER = ("freshness", "tick_scale", "shard_tick", "cold_start", "sizes", "features", "api", "backtest", "edge",
         "notify",
         "retrain")


def run_script(name: str, quick: bool) -> list[Figure]:
    """Run one benchmark script in its own interpreter and read its figures back."""
    script, extra, quick_extra = SCRIPTS[name]
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "figures.json"
        command = [sys.executable, str(BENCH_DIR / script), "--json", str(out), *(quick_extra if quick else extra)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=TIMEOUT_S.get(name, 600),
                              check=False)
        if done.returncode != 0 or not out.exists():
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return [Figure(name, f"{script}", "failed", "", MISS, tail[:300])]
        return [Figure(**row) for row in json.loads(out.read_text())]


def size_figures() -> tuple[list[Figure], bool]:
    """Deployable size per function via bench/sizes.py's own functions; True if the hard limit is crossed."""
    import sizes

    template = sizes.load_template()
    layers = sizes.layer_trees(template, sizes.LAYER_CACHE, refresh=False)
    figures, over = [], False
    for function, code, layer_ids, total in sizes.function_sizes(template, layers):
        hard_ok = total <= sizes.LAMBDA_UNZIPPED_LIMIT
        over |= not hard_ok
        if function == "PredictFunction":
            target, ok = f"≤ {PREDICT_TARGET_MB} MB (hard 250)", hard_ok and total <= PREDICT_TARGET_MB * MB
            result = verdict(ok)
        else:  # far below Lambda's limit by construction: informational, unless it ever crosses it
            target, result = "≤ 250 MB (hard)", "info" if hard_ok else verdict(False)
        largest = max(layer_ids, key=lambda lid: layers[lid].size) if layer_ids else None
        parts = ""
        if largest:
            top = sorted(layers[largest].parts.items(), key=lambda item: -item[1])[:3]
            parts = f"; largest in {largest}: " + ", ".join(f"{n} {s / MB:.0f}" for n, s in top)
        figures.append(Figure("4. Deployable size", function, f"{total / MB:.1f} MB", target, result,
                              f"unzipped, real: the layers built by their sam build recipes (pinned locks, arm64 "
                              f"wheels, bytecode included; the runtime's boto3 not counted); code "
                              f"{code / MB:.2f} MB + {' + '.join(layer_ids)}{parts}"))
    return figures, over


def backtest_figures() -> list[Figure]:
    """Backtest throughput from issue 5's bench/backtest_bench.py (candles per second), if it has landed."""
    section = "7. Backtest"
    script = BENCH_DIR / "backtest_bench.py"
    if not (REPO_ROOT / "src" / "traderai" / "research" / "backtest.py").exists() or not script.exists():
        return [Figure(section, "Backtest throughput", "-", "", PENDING, "research/backtest.py not landed")]
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=300, check=False)
    text = done.stdout
    candles = re.search(r"([\d,]+) candles of \S+ in the timed year", text)
    timing = re.search(r"backtest of one year: median ([\d.]+) s", text)
    if done.returncode != 0 or not candles or not timing:
        return [Figure(section, "Backtest throughput", "failed", "", MISS,
                       (done.stderr.strip().splitlines() or text.strip().splitlines() or ["no output"])[-1][:300])]
    count, seconds = int(candles.group(1).replace(",", "")), float(timing.group(1))
    walk = re.search(r"walk-forward for the probabilities: ([\d.]+) s", text)
    note = f"{count:,} candles (one year of 15m) in {seconds * 1000:.0f} ms, median (bench/backtest_bench.py)"
    if walk:
        note += f"; the walk-forward that produces its probabilities: {walk.group(1)} s, not included"
    return [Figure(section, "Backtest throughput", f"{count / max(seconds, 1e-9) / 1e6:.1f} M candles/s",
                   "one year ≤ 2 s", verdict(seconds <= 2.0), note)]


def table(figures: list[Figure]) -> str:
    rows = ["| | figure | measured | target | verdict | how / why |", "|---|---|---|---|---|---|"]
    for f in figures:
        cells = [f.section.split(" ")[0].rstrip("."), f.figure, f.measured, f.target or "-",
                 f"**{f.verdict}**" if f.verdict == MISS else f.verdict, f.note]
        rows.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(rows)


def write_results(figures: list[Figure], started: datetime, seconds: float, loads: tuple[float, float]) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT,
                            check=False).stdout.strip()
    misses = [f for f in figures if f.verdict == MISS]
    header = (f"# Benchmarks\n\nWritten by `make bench` (bench/run.py) on {started:%Y-%m-%d %H:%M} UTC at commit "
              f"`{commit}`, in {seconds:.0f} s. Machine: {os.cpu_count()} shared CPUs, Python "
              f"{platform.python_version()}, load average {loads[0]:.1f} at the start and {loads[1]:.1f} at the end "
              "(other engineers' tests run here: wall-clock figures are noisy, ratios come from one run, CPU "
              "figures are steadier).\n\n")
    summary = (f"{sum(f.verdict == PASS for f in figures)} figures meet their target, {len(misses)} miss, "
               f"{sum(f.verdict == PENDING for f in figures)} pending, the rest are informational.\n\n")
    RESULTS.write_text(header + summary + table(figures) + "\n\n" + NOTES)
    write_readme_table(figures, started, commit)


README = REPO_ROOT / "README.md"
README_BEGIN = "<!-- BEGIN bench table"
README_END = "<!-- END bench table -->"


def write_readme_table(figures: list[Figure], started: datetime, commit: str) -> None:
    """The README's benchmark table: every row of RESULTS.md that has a target, as it is there."""
    text = README.read_text()
    if README_BEGIN not in text or README_END not in text:
        return
    head, rest = text.split(README_BEGIN, 1)
    marker_line, _, _ = rest.partition("\n")
    _, tail = rest.split(README_END, 1)
    rows = table([f for f in figures if f.target])
    body = f"{README_BEGIN}{marker_line}\n\nRun of {started:%Y-%m-%d %H:%M} UTC at `{commit}`.\n\n{rows}\n\n"
    README.write_text(head + body + README_END + tail)


NOTES = """## How to read the table

Every number above comes from this one run; the text below restates none of them. Each row says in its last
column what is real and what is stood in. The recurring stand-ins: **moto** (in-process or its server on
loopback) for S3 and DynamoDB, whose GSI Query reads every item (section 6 times the handler over an index
stand-in instead and says so); **FakeExchange** (100 ms per request, markets cloned from the four bundled
pairs) for the exchange; **worker processes on this machine** for Lambda's sandboxes in the sharded tick (one
process per sandbox, the handler imported once and reused across ticks, as Lambda does; but 10 sandboxes here
share this machine's cores, and other work on it, where Lambda gives each its own CPU share, so the local
sharded figure is CPU-bound: its row gives the CPU seconds and the load); **this shared machine's CPU** for
Lambda's; the sharded bench's ticks fire back to back, and each shard's rate limiter reads a clock advanced
by the 15 minutes between two ticks (deployed, a tick's requests have left the exchange's minute by the
next one); and an **assumed firing offset** in the freshness
figure (a deployed stack measures it with the named Athena query "Firing offset p50/p95 per day"). Rows
marked ESTIMATE are arithmetic over measured rows, not measurements. Rows whose target is met by
construction (the size of functions far below Lambda's limit, sanity checks) are `info`.

Design notes the rows refer to: the tick is sharded by `TickStateMachine` (infra/template.yaml: a Plan state
reads the market list from S3 and writes the shards to a plan object, a Distributed Map runs one child per
shard; the same plan runs locally through `services.sharding.run_sharded_tick`), each shard with a share
of the exchange's request weight per minute in proportion to its own weight, at least load_markets' 20
(Binance counts market-data weight per IP per minute; all shards may share one IP; a tick over one minute of
it, or whose shards' shares would fall under 20, is refused at planning, docs/markets.md); cold start
is measured the way Lambda runs it: the function's layers as their `sam build` recipes build them (with the
bytecode they ship; the third-party ones as this machine's wheels of the same lock), read-only, in a fresh
`python -S` with Lambda's environment variables; tracing off means `POWERTOOLS_TRACE_DISABLED=true`, with
which the X-Ray SDK is not imported.
"""

STEPS: dict[str, Callable[[bool], list[Figure]]] = {
    "backtest": lambda quick: backtest_figures(),
    **{name: (lambda quick, name=name: run_script(name, quick)) for name in SCRIPTS},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=ORDER, help="run only these benchmarks")
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test of the benchmarks)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone "
                        "(implied by --only and --quick: a partial or smaller run must not replace the table)")
    args = parser.parse_args(argv)
    started, clock, load_start = datetime.now(UTC), time.monotonic(), os.getloadavg()[0]
    figures: list[Figure] = []
    over_limit = False
    for name in args.only or ORDER:
        step_started = time.monotonic()
        print(f"== {name}", file=sys.stderr, flush=True)
        if name == "sizes":
            rows, over_limit = size_figures()
        else:
            rows = STEPS[name](args.quick)
        figures.extend(rows)
        for f in rows:
            print(f"  {f.figure}: {f.measured}" + (f"  (target {f.target})" if f.target else "") + f"  {f.verdict}")
        print(f"   ({time.monotonic() - step_started:.0f} s)", file=sys.stderr, flush=True)
    figures.sort(key=lambda f: f.section)
    elapsed = time.monotonic() - clock
    if not (args.no_write or args.only or args.quick):
        write_results(figures, started, elapsed, (load_start, os.getloadavg()[0]))
        print(f"wrote {RESULTS.relative_to(REPO_ROOT)} ({elapsed:.0f} s)")
    if over_limit:
        print("a function is OVER Lambda's 250 MB unzipped limit (see bench/sizes.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
