"""moto-backed AWS built from infra/template.yaml, and the function environments the template sets."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from traderai import wiring
from traderai.apigw.connections import ConnectionsServer
from traderai.infra import load_template
from traderai.local.aws import LocalAws
from traderai.testing.handlers import load_handler
from traderai.testing.serving import ServingTables, serving_tables

BUCKET = "traderai-data-test"
SIGNALS_TABLE = "traderai-signals-test"
CONNECTIONS_TABLE = "traderai-connections-test"


@dataclass
class Aws:
    s3: Any
    dynamodb: Any
    template: dict[str, Any]
    local: LocalAws
    bucket: str = BUCKET
    signals_table: str = SIGNALS_TABLE
    connections_table: str = CONNECTIONS_TABLE

    def objects(self, prefix: str) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for o in listed.get("Contents", []))

    def json_lines(self, key: str) -> list[dict[str, Any]]:
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode()
        return [json.loads(line) for line in body.splitlines()]

    def signal_items(self) -> list[dict[str, Any]]:
        return self.dynamodb.scan(TableName=self.signals_table)["Items"]


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture
def aws(template: dict[str, Any]) -> Iterator[Aws]:
    """A moto account with the template's bucket and tables, and the bundled models published."""
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        local = LocalAws(s3, dynamodb, template, {"DataBucket": BUCKET, "SignalsTable": SIGNALS_TABLE,
                                                  "ConnectionsTable": CONNECTIONS_TABLE}).provision()
        yield Aws(s3=s3, dynamodb=dynamodb, template=template, local=local)


@pytest.fixture
def signal(function_env: Callable[..., dict[str, str]], sample_clock: Callable[[], None]) -> Callable[..., Any]:
    """The SignalFunction handler with the template's environment, deciding on the sample events' clock."""
    function_env("SignalFunction")
    handler = load_handler("signal").handler
    sample_clock()
    return handler


@pytest.fixture
def serving(template: dict[str, Any]) -> Iterator[ServingTables]:
    """moto with the tables the API, WebSocket and broadcast functions use, built from the template."""
    with serving_tables(template) as tables:
        yield tables


@pytest.fixture
def gateway() -> Iterator[ConnectionsServer]:
    """A real local `@connections` server (200, or 410 for a gone id) on a free port."""
    with ConnectionsServer() as server:
        yield server


@pytest.fixture
def function_env(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Callable[..., dict[str, str]]:
    """Set a function's environment exactly as the template does (with the test's resource names)."""

    def apply(logical_id: str, **parameters: str) -> dict[str, str]:
        environment = aws.local.environment(logical_id, parameters)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        _clear_runtime_caches()
        return environment

    yield apply
    _clear_runtime_caches()


SAMPLE_DECIDED_AT = datetime(2025, 4, 7, 14, 0, 9, tzinfo=UTC)
"""When the sample events' tick (candle 13:45-14:00 UTC on 2025-04-07) is decided: 9 s after the close."""


@pytest.fixture
def sample_clock() -> Callable[[], None]:
    """Call after the signal environment is set: decide on the sample events' clock, as the deployed
    function would right after that tick. On today's wall clock the signal step would (rightly) refuse
    every sample prediction as stale_prediction: its candle closed long ago."""

    def apply() -> None:
        wiring.signal_runtime().clock = lambda: SAMPLE_DECIDED_AT

    return apply


def _clear_runtime_caches() -> None:
    wiring.clear()


@pytest.fixture
def between_rule() -> Iterator[None]:
    """Make moto refuse `BETWEEN :low AND :high` with low > high as DynamoDB does (moto skips the check).

    Use after the handler's environment is set: it hooks the client of `wiring.signal_store()`.
    """
    from botocore.exceptions import ClientError

    from traderai import wiring

    def check(params: dict[str, Any], **_: Any) -> None:
        condition = params.get("KeyConditionExpression", "")
        values = {k: next(iter(v.values())) for k, v in params.get("ExpressionAttributeValues", {}).items()}
        for low, high in re.findall(r"BETWEEN (:\w+) AND (:\w+)", condition):
            if values[low] > values[high]:
                raise ClientError({"Error": {"Code": "ValidationException", "Message": "Invalid "
                                   "KeyConditionExpression: The BETWEEN operator requires upper bound to be "
                                   "greater than or equal to lower bound"}}, "Query")

    events = wiring.signal_store()._model._get_connection().connection.client.meta.events
    events.register("provide-client-params.dynamodb.Query", check)
    yield
    events.unregister("provide-client-params.dynamodb.Query", check)
