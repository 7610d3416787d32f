"""Run the named queries on this machine with DuckDB over a local copy of the logs (same Hive layout).

Views carry the Glue tables' names and the template's column types, so a query that works here over
`read_json(..., hive_partitioning=true)` asks Athena the same question. Used by the tests and the bench;
DuckDB and sqlglot are development dependencies, never shipped to Lambda.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from traderai.analytics.queries import COMPACTION_SQL, PARQUET_SUFFIX, sql_text, to_duckdb
from traderai.analytics.schema import duckdb_type, glue_columns, partition_keys
from traderai.infra import load_template


class LocalCatalog:
    """DuckDB views `predictions`, `decisions`, `predictions_parquet`, `decisions_parquet` over `root`."""

    def __init__(self, root: Path, template: Mapping[str, Any] | None = None) -> None:
        import duckdb

        self.root = Path(root)
        self.template = template or load_template()
        self.connection = duckdb.connect()

    def columns(self, table: str) -> dict[str, str]:
        """`{column: DuckDB type}` of a Glue table, as the template declares it."""
        return {name: duckdb_type(kind) for name, kind in glue_columns(self.template, table).items()}

    def json_source(self, table: str, pattern: str = "dt=*/*.jsonl") -> str:
        """`read_json` of the log files with exactly the Glue columns (a value that does not fit fails)."""
        columns = ", ".join(f"'{name}': '{kind}'" for name, kind in self.columns(table).items())
        hive_types = ", ".join(f"'{name}': '{duckdb_type(kind)}'"
                               for name, kind in partition_keys(self.template, table).items())
        return (f"read_json('{self.root / table / pattern}', format = 'newline_delimited', "
                f"hive_partitioning = true, hive_types = {{{hive_types}}}, columns = {{{columns}}})")

    def register_json(self) -> LocalCatalog:
        for table in ("predictions", "decisions"):
            source = self.json_source(table)  # names and types come from the template, not from input
            self.connection.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {source}")  # noqa: S608  # nosec B608
        return self

    def register_parquet(self) -> LocalCatalog:
        """Views over the compacted files; columns are cast to the Glue types, as Athena reads them."""
        for table in ("predictions", "decisions"):
            name = f"{table}{PARQUET_SUFFIX}"
            hive_types = ", ".join(f"'{key}': '{duckdb_type(kind)}'"
                                   for key, kind in partition_keys(self.template, name).items())
            select = ", ".join(f"CAST({column} AS {kind}) AS {column}" for column, kind in self.columns(name).items())
            files = self.root / name / "dt=*/*.parquet"
            self.connection.execute(
                f"CREATE OR REPLACE VIEW {name} AS SELECT {select}, dt FROM read_parquet("  # noqa: S608  # nosec B608
                f"'{files}', hive_partitioning = true, hive_types = {{{hive_types}}})")
        return self

    def query(self, athena_sql: str, parameters: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Transpile Athena SQL to DuckDB and run it; rows as dicts."""
        cursor = self.connection.execute(to_duckdb(athena_sql), list(parameters))
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def compact_day(self, table: str, day: str) -> Path:
        """What CompactFunction's UNLOAD writes, locally: the day's SELECT (the same SQL file) to Parquet
        at `<table>_parquet/dt=<day>/`."""
        target = self.root / f"{table}{PARQUET_SUFFIX}" / f"dt={day}" / "part-0.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        select = to_duckdb(sql_text(COMPACTION_SQL[table]))
        self.connection.execute(f"COPY ({select}) TO '{target}' (FORMAT parquet, COMPRESSION snappy)", [day])
        return target
