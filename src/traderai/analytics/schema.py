"""The Glue tables' columns as the template declares them, and their DuckDB equivalents.

Tests and the bench read the logs with exactly these types, so a record that would not fit the
Athena table fails locally first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from traderai.infra import resource

# Glue table logical ids in infra/template.yaml, by table name.
GLUE_TABLES = {"predictions": "PredictionsTable", "decisions": "DecisionsTable",
               "predictions_parquet": "PredictionsParquetTable", "decisions_parquet": "DecisionsParquetTable"}

_SCALARS = {"string": "VARCHAR", "double": "DOUBLE", "float": "FLOAT", "int": "INTEGER", "integer": "INTEGER",
            "bigint": "BIGINT", "smallint": "SMALLINT", "tinyint": "TINYINT", "boolean": "BOOLEAN",
            "date": "DATE", "timestamp": "TIMESTAMP"}


def glue_columns(template: Mapping[str, Any], table: str) -> dict[str, str]:
    """`{column: hive type}` of a Glue table in the template, in declared order (partition keys excluded)."""
    spec = resource(template, GLUE_TABLES[table], "AWS::Glue::Table")["Properties"]["TableInput"]
    return {column["Name"]: column["Type"] for column in spec["StorageDescriptor"]["Columns"]}


def partition_keys(template: Mapping[str, Any], table: str) -> dict[str, str]:
    spec = resource(template, GLUE_TABLES[table], "AWS::Glue::Table")["Properties"]["TableInput"]
    return {column["Name"]: column["Type"] for column in spec.get("PartitionKeys", [])}


def duckdb_type(hive_type: str) -> str:
    """`map<string,double>` -> `MAP(VARCHAR, DOUBLE)`, `array<string>` -> `VARCHAR[]`, `double` -> `DOUBLE`,
    `struct<a:int,b:array<double>>` -> `STRUCT(a INTEGER, b DOUBLE[])`."""
    text = hive_type.strip().lower()
    if text in _SCALARS:
        return _SCALARS[text]
    if match := re.fullmatch(r"array<(.+)>", text):
        return f"{duckdb_type(match.group(1))}[]"
    if match := re.fullmatch(r"map<([a-z]+)\s*,\s*(.+)>", text):
        return f"MAP({duckdb_type(match.group(1))}, {duckdb_type(match.group(2))})"
    if match := re.fullmatch(r"struct<(.+)>", text):
        members = (member.split(":", 1) for member in _split_top_level(match.group(1)))
        return "STRUCT(" + ", ".join(f"{name.strip()} {duckdb_type(kind)}" for name, kind in members) + ")"
    raise ValueError(f"{hive_type!r}: no DuckDB equivalent known")


def _split_top_level(text: str) -> list[str]:
    """Split `a:int,b:array<double>` on the commas outside any `<...>`."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += {"<": 1, ">": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts
