"""moto tables and function environments for the serving side (API, WebSocket, broadcast) tests.

Lighter than the pipeline's fixture: only the serving tables, built from `infra/template.yaml`, and each
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
SUBSCRIPTIONS_TABLE = "traderai-subscriptions-test"  # the name ServingTables.environment derives
DELIVERIES_TABLE = "traderai-deliveries-test"  # the name ServingTables.environment derives


@dataclass(frozen=True, slots=True)
class ServingTables:
    dynamodb: Any
    template: dict[str, Any]
    signals_table: str = SIGNALS_TABLE
    connections_table: str = CONNECTIONS_TABLE
    subscriptions_table: str = SUBSCRIPTIONS_TABLE

    def scan(self, table: str) -> list[dict[str, Any]]:
        """Every item of a table, raw (a test's view of the table, never the code under test's)."""
        pages = self.dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
        return [item for page in pages for item in page["Items"]]

    def connection_ids(self) -> set[str]:
        """The connection ids with a row in the Connections table."""
        return {item["connection_id"]["S"] for item in self.scan(self.connections_table)}

    def subscription_items(self) -> set[tuple[str, str, bool]]:
        """(symbol or `*`, connection id, tradeable_only) of every Subscriptions item."""
        return {(item["symbol"]["S"], item["connection_id"]["S"], item.get("tradeable_only", {}).get("BOOL", False))
                for item in self.scan(self.subscriptions_table)}

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
    """A moto account holding the template's Signals, Connections, Subscriptions and Deliveries tables."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_dynamodb_table(dynamodb, template, "SignalsTable", SIGNALS_TABLE)
        create_dynamodb_table(dynamodb, template, "ConnectionsTable", CONNECTIONS_TABLE)
        create_dynamodb_table(dynamodb, template, "SubscriptionsTable", SUBSCRIPTIONS_TABLE)
        create_dynamodb_table(dynamodb, template, "DeliveriesTable", DELIVERIES_TABLE)  # broadcast's ledger
        yield ServingTables(dynamodb, template)
