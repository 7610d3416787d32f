"""moto tables and function environments for the serving side (API, WebSocket, broadcast) tests.

Lighter than the pipeline's fixture: only the two tables, built from `infra/template.yaml`, and each
function's environment exactly as the template sets it (with test resource names).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from traderai.infra import create_dynamodb_table, function_environment

SIGNALS_TABLE = "traderai-signals-test"
CONNECTIONS_TABLE = "traderai-connections-test"
DELIVERIES_TABLE = "traderai-deliveries-test"  # the name ServingTables.environment derives


@dataclass(frozen=True, slots=True)
class ServingTables:
    dynamodb: Any
    template: dict[str, Any]
    signals_table: str = SIGNALS_TABLE
    connections_table: str = CONNECTIONS_TABLE

    def environment(self, function: str, **values: str) -> dict[str, str]:
        """The env the template gives `function`, resolved against these tables (and `values`)."""
        tables = {logical_id: f"traderai-{logical_id.removesuffix('Table').lower()}-test"
                  for logical_id, spec in self.template["Resources"].items()
                  if spec.get("Type") == "AWS::DynamoDB::Table"}
        names: Mapping[str, str] = tables | {"SignalsTable": self.signals_table,
                                             "ConnectionsTable": self.connections_table,
                                             "DataBucket": "traderai-data-test", "WebSocketApi": "local"}
        return function_environment(self.template, function, {**names, **values})


@contextmanager
def serving_tables(template: dict[str, Any]) -> Iterator[ServingTables]:
    """A moto account holding the template's Signals and Connections tables."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_dynamodb_table(dynamodb, template, "SignalsTable", SIGNALS_TABLE)
        create_dynamodb_table(dynamodb, template, "ConnectionsTable", CONNECTIONS_TABLE)
        create_dynamodb_table(dynamodb, template, "DeliveriesTable", DELIVERIES_TABLE)  # broadcast's ledger
        yield ServingTables(dynamodb, template)
