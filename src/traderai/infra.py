"""Read `infra/template.yaml` so tests and the local demo build what the deployed stack builds.

Tables come from the template's own `AWS::DynamoDB::Table` definitions and function environments
from its `Globals` and `Environment`, so a schema or env-var change is made in one place. Needs
only PyYAML (no cfn-lint, no SAM CLI), so the demo runtime can use it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


def find_checkout(start: Path | None = None) -> Path:
    """The source checkout the code runs from: the nearest folder holding `infra/template.yaml`, looking up
    from `start` (this package's folder: an editable install), then up from the working directory (an
    installed package run inside a checkout); the working directory if neither finds one."""
    for origin in (start or Path(__file__).resolve().parent, Path.cwd().resolve()):
        for folder in (origin, *origin.parents):
            if (folder / "infra" / "template.yaml").is_file():
                return folder
    return Path.cwd()


REPO_ROOT = find_checkout()
TEMPLATE_PATH = REPO_ROOT / "infra" / "template.yaml"


# Pseudo parameters as moto reports them; callers override any of them through `values`.
PSEUDO_PARAMETERS = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "traderai",
}

_SUB_VARIABLE = re.compile(r"\$\{([^!}][^}]*)\}")


class TemplateError(ValueError):
    """The template lacks what the caller asked for, or uses an intrinsic that can't be resolved here."""


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation short-form tags (`!Ref`, `!GetAtt`, `!Sub`, ...)
    as their long form and keeps `2010-09-09`-like scalars as strings, as CloudFormation does."""


_CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: str | Path | None = None) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML template (default: the project's) into plain dicts."""
    text = Path(path or TEMPLATE_PATH).read_text(encoding="utf-8")
    template = yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass  # nosec B506
    if not isinstance(template, dict) or "Resources" not in template:
        raise TemplateError(f"{path or TEMPLATE_PATH}: not a CloudFormation template")
    return template


def resource(template: Mapping[str, Any], logical_id: str, type_: str | None = None) -> dict[str, Any]:
    """The resource `logical_id`, checked to be of `type_` when given."""
    try:
        found = template["Resources"][logical_id]
    except KeyError:
        raise TemplateError(f"{logical_id}: no such resource in the template") from None
    if type_ is not None and found.get("Type") != type_:
        raise TemplateError(f"{logical_id}: is {found.get('Type')}, not {type_}")
    return found


def parameter_defaults(template: Mapping[str, Any]) -> dict[str, str]:
    """Each template parameter's default as the string CloudFormation would pass on."""
    return {name: _scalar_text(spec["Default"])
            for name, spec in template.get("Parameters", {}).items() if "Default" in spec}


def dynamodb_create_table_kwargs(template: Mapping[str, Any], logical_id: str,
                                 table_name: str | None = None) -> dict[str, Any]:
    """boto3 `create_table` kwargs for the template's `AWS::DynamoDB::Table` `logical_id`.

    Key schema, attributes, GSIs, billing mode, stream and SSE come from the template; the table
    is named `table_name` (default: the logical id). PITR and TTL are separate DynamoDB calls and
    are left to the caller.
    """
    props = _literal(resource(template, logical_id, "AWS::DynamoDB::Table").get("Properties", {}),
                     logical_id)
    billing_mode = props.get("BillingMode", "PROVISIONED")
    kwargs: dict[str, Any] = {
        "TableName": table_name or logical_id,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": billing_mode,
    }
    if billing_mode == "PROVISIONED":
        kwargs["ProvisionedThroughput"] = props["ProvisionedThroughput"]
    indexes = []
    for index in props.get("GlobalSecondaryIndexes", []):
        entry = {key: index[key] for key in ("IndexName", "KeySchema", "Projection")}
        if billing_mode == "PROVISIONED":
            entry["ProvisionedThroughput"] = index["ProvisionedThroughput"]
        indexes.append(entry)
    if indexes:
        kwargs["GlobalSecondaryIndexes"] = indexes
    if props.get("LocalSecondaryIndexes"):
        kwargs["LocalSecondaryIndexes"] = props["LocalSecondaryIndexes"]
    if "StreamSpecification" in props:
        kwargs["StreamSpecification"] = {
            "StreamEnabled": True, "StreamViewType": props["StreamSpecification"]["StreamViewType"]}
    if "SSESpecification" in props:
        sse = props["SSESpecification"]
        kwargs["SSESpecification"] = {"Enabled": bool(sse.get("SSEEnabled", False))} | (
            {"SSEType": sse["SSEType"]} if "SSEType" in sse else {}) | (
            {"KMSMasterKeyId": sse["KMSMasterKeyId"]} if "KMSMasterKeyId" in sse else {})
    return kwargs


def create_dynamodb_table(dynamodb_client: Any, template: Mapping[str, Any], logical_id: str,
                          table_name: str | None = None) -> str:
    """Create the template's table `logical_id` with a boto3 DynamoDB client (moto or local),
    including its TTL and point-in-time recovery settings; returns the table name."""
    kwargs = dynamodb_create_table_kwargs(template, logical_id, table_name)
    props = resource(template, logical_id)["Properties"]
    dynamodb_client.create_table(**kwargs)
    dynamodb_client.get_waiter("table_exists").wait(TableName=kwargs["TableName"])
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        dynamodb_client.update_time_to_live(
            TableName=kwargs["TableName"],
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]})
    if props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"):
        dynamodb_client.update_continuous_backups(
            TableName=kwargs["TableName"],
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    return kwargs["TableName"]


def function_environment(template: Mapping[str, Any], logical_id: str,
                         values: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the deployed function `logical_id` gets: Globals merged with its own.

    `values` names what only a deployment knows: a resource's physical name by logical id
    (`{"SignalsTable": "signals-local"}`), an attribute as `"Logical.Attr"`, a parameter override
    or a pseudo parameter (`"AWS::Region"`). Parameters default to their template defaults. A
    reference left unresolved raises TemplateError naming the variable.
    """
    function = resource(template, logical_id)
    if function.get("Type") not in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
        raise TemplateError(f"{logical_id}: is {function.get('Type')}, not a function")
    global_vars = (template.get("Globals", {}).get("Function", {})
                   .get("Environment", {}).get("Variables", {}))
    own_vars = function.get("Properties", {}).get("Environment", {}).get("Variables", {})
    known = PSEUDO_PARAMETERS | parameter_defaults(template) | dict(values or {})
    environment = {}
    for name, value in (global_vars | own_vars).items():
        try:
            environment[name] = _resolve(value, known)
        except KeyError as exc:
            raise TemplateError(f"{logical_id}.{name}: give a value for {exc.args[0]!r}") from None
    return environment


def _resolve(value: Any, known: Mapping[str, str]) -> str:
    """Resolve the intrinsics an env var uses (Ref, GetAtt, Sub, Join) to a string."""
    if not isinstance(value, dict):
        return _scalar_text(value)
    if len(value) != 1:
        raise TemplateError(f"not an intrinsic function: {value!r}")
    (function, argument), = value.items()
    if function == "Ref":
        return known[argument]
    if function == "Fn::GetAtt":
        resource_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
        return known[f"{resource_id}.{attribute}"]
    if function == "Fn::Sub":
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        scope = dict(known) | {key: _resolve(val, known) for key, val in variables.items()}
        return _SUB_VARIABLE.sub(lambda match: scope[match.group(1)], text).replace("${!", "${")
    if function == "Fn::Join":
        separator, parts = argument
        return separator.join(_resolve(part, known) for part in parts)
    raise TemplateError(f"{function}: not resolvable outside CloudFormation")


def _literal(value: Any, where: str) -> Any:
    """`value` with no intrinsic function inside, or TemplateError."""
    if isinstance(value, dict):
        if len(value) == 1 and (next(iter(value)) == "Ref" or next(iter(value)).startswith("Fn::")):
            raise TemplateError(f"{where}: {value!r} needs CloudFormation to resolve")
        return {key: _literal(val, where) for key, val in value.items()}
    if isinstance(value, list):
        return [_literal(item, where) for item in value]
    return value


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
