"""Provision the template's bucket and tables in moto (in-process or server) and give each function
the environment the template gives it, so local runs and tests use the schema that deploys."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from traderai.adapters.model_registry import BundledModels, publish
from traderai.infra import create_dynamodb_table, function_environment, load_template

DEFAULT_NAMES = {"DataBucket": "traderai-data-local", "SignalsTable": "traderai-signals-local",
                 "ConnectionsTable": "traderai-connections-local"}


def table_logical_ids(template: Mapping[str, Any]) -> list[str]:
    """Every `AWS::DynamoDB::Table` the template declares, in template order."""
    return [logical_id for logical_id, spec in template.get("Resources", {}).items()
            if spec.get("Type") == "AWS::DynamoDB::Table"]


def default_table_name(logical_id: str) -> str:
    """`ApiKeysTable` -> `traderai-apikeys-local`: the physical name of a table nobody named."""
    stem = logical_id.removesuffix("Table") or logical_id
    return f"traderai-{stem.lower()}-local"


def publish_bundled_models(s3: Any, bucket: str, prefix: str = "models") -> list[str]:
    """Upload every model shipped in the package, as `traderai train --bucket` would: returns model ids."""
    root = BundledModels().root
    published = []
    for pointer_path in sorted(root.glob("*/*/latest.json")):
        pointer = json.loads(pointer_path.read_text())
        artifact = json.loads((root / pointer["key"]).read_text())
        manifest = json.loads((root / pointer["manifest_key"]).read_text())
        published.append(publish(s3, bucket, prefix, artifact, manifest)["model_id"])
    return published


@dataclass
class LocalAws:
    """The template's storage, created through boto3 clients pointed at moto."""

    s3: Any
    dynamodb: Any
    template: dict[str, Any] = field(default_factory=load_template)
    names: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_NAMES))

    @property
    def bucket(self) -> str:
        return self.names["DataBucket"]

    @property
    def signals_table(self) -> str:
        return self.names["SignalsTable"]

    @property
    def connections_table(self) -> str:
        return self.names["ConnectionsTable"]

    def provision(self, *, with_models: bool = True) -> LocalAws:
        """Create the bucket and every DynamoDB table of the template; publish the bundled models.

        A table the caller did not name gets `default_table_name(logical_id)` (added to `names`).
        """
        self.s3.create_bucket(Bucket=self.bucket)
        for logical_id in table_logical_ids(self.template):
            name = self.names.setdefault(logical_id, default_table_name(logical_id))
            create_dynamodb_table(self.dynamodb, self.template, logical_id, name)
        if with_models:
            publish_bundled_models(self.s3, self.bucket)
        return self

    def stream_arn(self, logical_id: str = "SignalsTable") -> str:
        """The latest stream ARN of a provisioned table (the template's `StreamArn` attribute)."""
        return self.dynamodb.describe_table(TableName=self.names[logical_id])["Table"]["LatestStreamArn"]

    def environment(self, logical_id: str, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        """The function's env as the template sets it, with local resource names and parameter overrides."""
        values = {**self.names, "WebSocketApi": "local", **dict(overrides or {})}
        return function_environment(self.template, logical_id, values)
