"""Bytes each named Athena query scans over the JSON logs vs. the compacted Parquet, on the same data.

Writes real logs first (the predict and signal handlers under moto over replayed candles, one tick per
15-minute candle close, 4 markets), compacts every day locally with the same SELECT CompactFunction
UNLOADs, then measures with Athena's billing rule for each format:

- JSON (text): every byte of every object in the partitions the query reads;
- Parquet: the compressed column chunks of the columns the query references, in those partitions
  (Athena reads only those, plus a few KB of footer, counted here as the file's footer length).

Each query's answer is also checked to be identical on both formats. Figures go to docs/athena.md.

    .venv/bin/python bench/athena_bytes.py [--days 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import sqlglot
from sqlglot import exp

from traderai.analytics.local import LocalCatalog
from traderai.analytics.queries import NAMED_QUERIES, RESOLVED_RANGE, NamedQuery, compacted
from traderai.local.replay_logs import replay_logs

START = datetime(2025, 4, 7, tzinfo=UTC)


def days_between(first: str, last: str) -> list[str]:
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def partitions_read(query: NamedQuery, first: str, last: str, all_days: list[str]) -> dict[str, list[str]]:
    """Days of each log table the query's dt predicates select (what partition projection lists)."""
    tables = {t.name for t in sqlglot.parse_one(query.sql, read="trino").find_all(exp.Table)} & {
        "predictions", "decisions"}
    if "since_day" in query.parameters:
        return {table: [d for d in all_days if d >= last] for table in tables}
    if query.parameters == RESOLVED_RANGE:  # closes are read one day past the last day
        after = (date.fromisoformat(last) + timedelta(days=1)).isoformat()
        return {"predictions": [d for d in days_between(first, after) if d in all_days]}
    return {table: days_between(first, last) for table in tables}


def referenced_columns(query: NamedQuery, columns: list[str]) -> set[str]:
    tree = sqlglot.parse_one(query.sql, read="trino")
    projections = [e for select in tree.find_all(exp.Select) for e in select.expressions]
    if any(isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star))
           for e in projections):  # SELECT * / p.* reads every column (count(*) reads none)
        return set(columns)
    return {column.name for column in tree.find_all(exp.Column)} & set(columns)


def json_bytes(root: Path, table: str, days: list[str]) -> tuple[int, int]:
    files = [f for day in days for f in (root / table / f"dt={day}").glob("*.jsonl")]
    return sum(f.stat().st_size for f in files), len(files)


def parquet_bytes(catalog: LocalCatalog, table: str, days: list[str], columns: set[str]) -> tuple[int, int]:
    files = [f for day in days for f in (catalog.root / f"{table}_parquet" / f"dt={day}").glob("*.parquet")]
    total = 0
    for file in files:
        chunks = catalog.connection.execute(
            "SELECT path_in_schema, total_compressed_size FROM parquet_metadata(?)", [str(file)]).fetchall()
        total += sum(size for path, size in chunks if path.split(", ")[0] in columns)
        total += int.from_bytes(file.read_bytes()[-8:-4], "little")  # footer (metadata) length
    return total, len(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=2, help="full days of 15-minute ticks (default 2)")
    parser.add_argument("--keep", type=Path, help="write the logs here (default: a temporary folder)")
    args = parser.parse_args(argv)

    root = args.keep or Path(tempfile.mkdtemp(prefix="traderai-athena-"))
    ticks = 96 * args.days + 8  # and two hours of the next day, so the last predictions resolve
    print(f"replaying {ticks} ticks of 4 markets into {root} ...", file=sys.stderr)
    replay_logs(root, START, ticks, tick_minutes=15)
    catalog = LocalCatalog(root).register_json()
    all_days = sorted(p.name.removeprefix("dt=") for p in (root / "predictions").glob("dt=*"))
    for day in all_days:
        for table in ("predictions", "decisions"):
            catalog.compact_day(table, day)
    catalog.register_parquet()

    first, last = all_days[0], all_days[args.days - 1]
    for table in ("predictions", "decisions"):
        size, count = json_bytes(root, table, all_days)
        psize = sum(f.stat().st_size for f in (root / f"{table}_parquet").glob("dt=*/*.parquet"))
        print(f"{table}: {count} JSON objects, {size:,} bytes; Parquet {len(all_days)} files, {psize:,} bytes "
              f"({size / psize:.1f}x smaller)")
    print()
    print(f"range {first} .. {last} ({args.days} days)")
    print(f"{'query':<30}{'JSON bytes':>14}{'objects':>9}{'Parquet bytes':>15}{'files':>7}{'ratio':>8}")
    for query in NAMED_QUERIES:
        start = last if "since_day" in query.parameters else first
        parameters = query.positional(first_day=first, last_day=last, since_day=start)
        assert catalog.query(query.sql, parameters) == catalog.query(compacted(query.sql), parameters), query.file
        json_total = json_objects = parquet_total = parquet_files = 0
        for table, days in partitions_read(query, first, start if "since_day" in query.parameters else last,
                                           all_days).items():
            size, count = json_bytes(root, table, days)
            json_total, json_objects = json_total + size, json_objects + count
            columns = referenced_columns(query, list(catalog.columns(table)))
            size, count = parquet_bytes(catalog, table, days, columns)
            parquet_total, parquet_files = parquet_total + size, parquet_files + count
        print(f"{query.file:<30}{json_total:>14,}{json_objects:>9}{parquet_total:>15,}{parquet_files:>7}"
              f"{json_total / parquet_total:>7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
