"""The SAM template lints clean, translates, and wires what the code relies on.

Checks run on the CloudFormation that SAM generates (samtranslator, offline), so implicit
resources (roles, event rules, event-source mappings, invoke configs) are checked as deployed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.api import ManualArgs, lint
from moto import mock_aws

from traderai.contracts import Strategy
from traderai.events import parse_schedule_event
from traderai.infra import (
    TEMPLATE_PATH,
    TemplateError,
    create_dynamodb_table,
    dynamodb_create_table_kwargs,
    function_environment,
    load_template,
)
from traderai.settings import ENV_NAMES, Settings
from traderai.testing.sam import translated_template

ROOT = TEMPLATE_PATH.parents[1]
FUNCTIONS = ("PredictFunction", "SignalFunction", "ApiFunction", "WebSocketFunction", "BroadcastFunction",
             "TrackFunction", "CompactFunction", "ChartFunction", "NotifyFunction")
# Read by Powertools or the push adapter rather than by traderai.settings.
NON_SETTINGS_ENV = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL",
                    "WEBSOCKET_ENDPOINT", "TOKEN_SECRET",
                    "SUBSCRIBERS_TABLE", "NOTIFY_DLQ_URL",  # NotifyFunction's (wiring.notify_adapters)
                    "SHARD_SIZE", "SHARD_CONCURRENCY", "EXCHANGE_WEIGHT_PER_MINUTE", "MARKET_LIST_KEY",  # sharding
                    "ATHENA_WORKGROUP", "ATHENA_DATABASE"}  # CompactFunction's own CompactionSettings
STRATEGY_ENV = {field.name.upper() for field in fields(Strategy)}
# AWS managed policies SAM attaches; their "*" resources are what those services require
# (CloudWatch Logs streams are created on demand, X-Ray has no resource ARNs, stream reads).
ALLOWED_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole",
}
RESOURCE_NAMES = {"DataBucket": "traderai-data", "SignalsTable": "signals", "ConnectionsTable": "connections",
                  "WebSocketApi": "ws123", "AnalyticsWorkGroup": "traderai-analytics", "AnalyticsDatabase": "traderai",
                  "DeliveriesTable": "deliveries", "ApiKeysTable": "api-keys", "SubscriptionsTable": "subscriptions",
                  "NotifySubscribersTable": "subscribers", "NotifyDeadLetterQueue": "https://sqs/notify-dlq"}


@pytest.fixture(scope="module")
def sam_template() -> dict[str, Any]:
    """The template as written (short-form intrinsics in long form); treat as read-only."""
    return load_template()


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    """The template as SAM translates it, with artifact URIs standing in for local paths."""
    return translated_template()


def _resources(cfn: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {lid: spec for lid, spec in cfn["Resources"].items() if spec["Type"] == type_}


def _role_statements(cfn: dict[str, Any], function: str) -> list[dict[str, Any]]:
    role = cfn["Resources"][f"{function}Role"]["Properties"]
    return [statement for policy in role.get("Policies", [])
            for statement in policy["PolicyDocument"]["Statement"]]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _actions(cfn: dict[str, Any], function: str) -> set[str]:
    return {action for statement in _role_statements(cfn, function)
            for action in _as_list(statement["Action"])}


def _requirement_names(requirements: Path) -> set[str]:
    """Distribution names listed in a requirements file (comments and specifiers dropped)."""
    names = (re.split(r"[^A-Za-z0-9._-]", line.strip(), maxsplit=1)[0]
             for line in requirements.read_text().splitlines())
    return {name.lower().replace("_", "-") for name in names if name}


def _iter_roles(cfn: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from _resources(cfn, "AWS::IAM::Role").items()


# ---------------------------------------------------------------- lint and parse

def test_cfn_lint_reports_no_errors_or_warnings() -> None:
    matches = lint(TEMPLATE_PATH.read_text(encoding="utf-8"),
                   config=ManualArgs(regions=["us-east-1", "eu-central-1", "ap-northeast-1"]))
    assert [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches] == []


def test_load_template_reads_short_form_intrinsics_and_keeps_dates_as_strings(sam_template: dict) -> None:
    assert sam_template["AWSTemplateFormatVersion"] == "2010-09-09"
    assert sam_template["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"][
        "SIGNALS_TABLE"] == {"Ref": "SignalsTable"}
    assert sam_template["Resources"]["BroadcastFunction"]["Properties"]["Events"]["SignalChanges"][
        "Properties"]["Stream"] == {"Fn::GetAtt": ["SignalsTable", "StreamArn"]}


def test_every_function_code_dir_has_its_handler_module(sam_template: dict) -> None:
    for function in FUNCTIONS:
        props = sam_template["Resources"][function]["Properties"]
        module, _, _ = props["Handler"].partition(".")
        assert (TEMPLATE_PATH.parent / props["CodeUri"] / f"{module}.py").is_file(), function


# ---------------------------------------------------------------- wiring

def _schedule_of(cfn: dict, function: str) -> dict[str, Any]:
    (rule,) = [r for r in _resources(cfn, "AWS::Events::Rule").values()
               if r["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": [function, "Arn"]}]
    return rule["Properties"]


def _scheduler_schedules_of(cfn: dict, target: str) -> list[dict[str, Any]]:
    return [s["Properties"] for s in _resources(cfn, "AWS::Scheduler::Schedule").values()
            if s["Properties"]["Target"]["Arn"] in ({"Fn::GetAtt": [target, "Arn"]}, {"Ref": target})]


def test_the_tick_fires_at_five_minute_clock_marks_from_eventbridge_scheduler_with_no_window(cfn: dict) -> None:
    (schedule,) = _scheduler_schedules_of(cfn, "TickStateMachine")
    assert schedule["ScheduleExpression"] == "cron(0/5 * * * ? *)"
    assert schedule.get("ScheduleExpressionTimezone", "UTC") == "UTC"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}  # the string OFF: unquoted YAML would be false
    assert "Name" not in schedule  # a fixed name would collide between two stacks in one account and region
    target = schedule["Target"]
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 900}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}
    assert not [r for r in _resources(cfn, "AWS::Events::Rule").values()
                if r["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["PredictFunction", "Arn"]}]
    assert not _scheduler_schedules_of(cfn, "PredictFunction")  # the state machine plans and fans out


def test_tick_schedule_role_may_only_start_the_tick_and_dead_letter(cfn: dict) -> None:
    (schedule,) = _scheduler_schedules_of(cfn, "TickStateMachine")
    role = cfn["Resources"][schedule["Target"]["RoleArn"]["Fn::GetAtt"][0]]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": ["scheduler.amazonaws.com"]}
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert sorted((s["Action"], json.dumps(s["Resource"])) for s in statements) == [
        ("sqs:SendMessage", json.dumps({"Fn::GetAtt": ["DeadLetterQueue", "Arn"]})),
        ("states:StartExecution", json.dumps({"Ref": "TickStateMachine"}))]


def test_tick_schedule_input_is_a_scheduled_event_at_the_mark(cfn: dict) -> None:
    (schedule,) = _scheduler_schedules_of(cfn, "TickStateMachine")
    rendered = (schedule["Target"]["Input"]
                .replace("<aws.scheduler.scheduled-time>", "2025-04-07T14:05:00Z")
                .replace("<aws.scheduler.execution-id>", "0b5c4f0e-6a43-4c1e-9a39-5f0f2f1e7d11")
                .replace("<aws.scheduler.schedule-arn>", "arn:aws:scheduler:us-east-1:123456789012:schedule/x"))
    event = json.loads(rendered)
    assert parse_schedule_event(event, 300) == datetime(2025, 4, 7, 14, 5, tzinfo=UTC)
    assert event["id"] == "0b5c4f0e-6a43-4c1e-9a39-5f0f2f1e7d11"  # the handler's correlation id


def test_track_runs_one_minute_after_each_predict_mark_and_fails_to_the_dlq(cfn: dict) -> None:
    assert _schedule_of(cfn, "TrackFunction")["ScheduleExpression"] == "cron(1/5 * * * ? *)"
    config = cfn["Resources"]["TrackFunctionEventInvokeConfig"]["Properties"]
    assert config["MaximumRetryAttempts"] == 0
    assert config["DestinationConfig"]["OnFailure"] == {"Destination": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}


def test_compact_runs_nightly_after_the_last_tick_and_fails_to_the_dlq(cfn: dict) -> None:
    assert _schedule_of(cfn, "CompactFunction")["ScheduleExpression"] == "cron(30 0 * * ? *)"
    config = cfn["Resources"]["CompactFunctionEventInvokeConfig"]["Properties"]
    assert config["DestinationConfig"]["OnFailure"] == {"Destination": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}


def test_compact_reads_only_the_logs_and_writes_only_parquet_and_results(cfn: dict) -> None:
    by_action: dict[str, set[str]] = {}
    for statement in _role_statements(cfn, "CompactFunction"):
        for action in _as_list(statement["Action"]):
            by_action.setdefault(action, set()).update(json.dumps(r) for r in _as_list(statement["Resource"]))

    def under(*prefixes: str) -> set[str]:
        return {json.dumps({"Fn::Sub": f"${{DataBucket.Arn}}/{prefix}/*"}) for prefix in prefixes}

    assert by_action["s3:GetObject"] == under("predictions", "decisions")
    assert by_action["s3:PutObject"] == under("predictions_parquet", "decisions_parquet", "athena-results")
    assert by_action["s3:DeleteObject"] == under("predictions_parquet", "decisions_parquet")
    assert by_action["athena:StartQueryExecution"] == {json.dumps({"Fn::Sub": (
        "arn:${AWS::Partition}:athena:${AWS::Region}:${AWS::AccountId}:workgroup/${AnalyticsWorkGroup}")})}


def test_track_queries_only_the_status_index_and_updates_only_the_table(cfn: dict) -> None:
    resources = {action: statement["Resource"] for statement in _role_statements(cfn, "TrackFunction")
                 for action in _as_list(statement["Action"]) if action.startswith("dynamodb:")}
    assert resources == {"dynamodb:Query": {"Fn::Sub": "${SignalsTable.Arn}/index/by_status"},
                         "dynamodb:UpdateItem": {"Fn::GetAtt": ["SignalsTable", "Arn"]}}


def test_broadcast_queries_subscriptions_and_batches_ledger_writes_and_never_scans(cfn: dict) -> None:
    grants: dict[str, set[str]] = {}
    for statement in _role_statements(cfn, "BroadcastFunction"):
        for action in _as_list(statement["Action"]):
            if action.startswith("dynamodb:") and "Stream" not in action and action != "dynamodb:ListStreams":
                for resource in _as_list(statement["Resource"]):
                    grants.setdefault(resource["Fn::GetAtt"][0], set()).add(action)
    assert grants == {"SubscriptionsTable": {"dynamodb:Query", "dynamodb:DeleteItem"},  # find; drop a gone one's
                      "ConnectionsTable": {"dynamodb:GetItem", "dynamodb:DeleteItem"},  # a gone one's row
                      "DeliveriesTable": {"dynamodb:Query", "dynamodb:BatchWriteItem"}}  # the ledger's parts


def test_subscriptions_are_keyed_for_a_query_per_symbol_and_expire_by_ttl(cfn: dict) -> None:
    props = cfn["Resources"]["SubscriptionsTable"]["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "symbol", "KeyType": "HASH"},
                                  {"AttributeName": "connection_id", "KeyType": "RANGE"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    ledger = cfn["Resources"]["DeliveriesTable"]["Properties"]
    assert ledger["KeySchema"] == [{"AttributeName": "delivery_id", "KeyType": "HASH"},
                                   {"AttributeName": "part", "KeyType": "RANGE"}]


def _tick_definition(cfn: dict) -> tuple[dict[str, Any], dict[str, Any]]:
    machine = cfn["Resources"]["TickStateMachine"]["Properties"]
    definition = machine["DefinitionString"]
    text = definition["Fn::Join"][1] if isinstance(definition, dict) and "Fn::Join" in definition else definition
    if isinstance(text, list):
        text = "".join(part if isinstance(part, str) else "null" for part in text)
    return json.loads(text), machine["DefinitionSubstitutions"]


def test_the_tick_plans_then_runs_each_shard_predict_then_signal(cfn: dict) -> None:
    from traderai.core.shards import RETRY_INTERVAL_SECONDS, WINDOW_SECONDS

    definition, substitutions = _tick_definition(cfn)
    assert substitutions["PredictFunctionArn"] == {"Fn::GetAtt": ["PredictFunction", "Arn"]}
    assert substitutions["SignalFunctionArn"] == {"Fn::GetAtt": ["SignalFunction", "Arn"]}
    plan = definition["States"]["Plan"]
    assert plan["Parameters"]["FunctionName"] == "${PredictFunctionArn}"
    assert plan["Parameters"]["Payload"]["detail"] == {"plan": True}
    assert plan["ResultSelector"]["plan_key.$"] == "$.Payload.plan_key"  # the key, never the market list
    shards = definition["States"][plan["Next"]]
    # A Distributed Map reads the shard items from the plan object the Plan state wrote (ItemReader), so no
    # market list travels in the execution's state (256 KB), and shards run as child executions
    assert shards["Type"] == "Map" and "ItemsPath" not in shards
    assert shards["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert shards["ItemReader"] == {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
                                    "Parameters": {"Bucket": "${DataBucketName}", "Key.$": "$.plan.plan_key"}}
    assert substitutions["DataBucketName"] == {"Ref": "DataBucket"}
    assert shards["MaxConcurrencyPath"] == "$.plan.max_concurrency"
    assert shards["ItemSelector"]["detail"] == {"shard.$": "$$.Map.Item.Value"}
    assert shards["ResultPath"] is None  # the shards' hand-offs never accumulate in the execution's state
    assert shards["ToleratedFailurePercentage"] == 0
    states = shards["ItemProcessor"]["States"]
    predict = states[shards["ItemProcessor"]["StartAt"]]
    assert predict["Parameters"] == {"FunctionName": "${PredictFunctionArn}", "Payload.$": "$"}
    # A failed shard is retried alone, after a full rate-limit window; then dead-lettered, the others go on
    (retry,) = predict["Retry"]
    assert retry["MaxAttempts"] == 1 and retry["IntervalSeconds"] == RETRY_INTERVAL_SECONDS > WINDOW_SECONDS
    assert states[predict["Catch"][0]["Next"]]["Resource"] == "arn:aws:states:::sqs:sendMessage"
    decide = states[states[predict["Next"]]["Choices"][0]["Next"]]
    assert decide["Parameters"] == {"FunctionName": "${SignalFunctionArn}", "Payload.$": "$.predicted.handoff"}
    assert states[decide["Catch"][0]["Next"]]["Resource"] == "arn:aws:states:::sqs:sendMessage"
    assert "PredictFunctionEventInvokeConfig" not in cfn["Resources"]  # no async destination any more


def test_predict_gets_the_shard_settings_from_the_template(sam_template: dict) -> None:
    from traderai.services.sharding import ShardSettings

    env = function_environment(sam_template, "PredictFunction", RESOURCE_NAMES)
    shards = ShardSettings.from_env(Settings.from_env(env), env)
    assert (shards.size, shards.concurrency, shards.weight_per_minute, shards.list_key) == (100, 10, 6000, None)
    env = function_environment(sam_template, "PredictFunction", {**RESOURCE_NAMES, "MarketListKey": "config/m.csv"})
    assert ShardSettings.from_env(Settings.from_env(env), env).list_key == "config/m.csv"


def test_a_failed_tick_reaches_a_person(cfn: dict) -> None:
    alarm = cfn["Resources"]["TickFailedAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/States", "ExecutionsFailed")
    assert alarm["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": "TickStateMachine"}}]
    assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_the_market_list_key_is_a_parameter_under_config(sam_template: dict) -> None:
    import re

    parameter = sam_template["Parameters"]["MarketListKey"]
    assert parameter["Default"] == ""
    pattern = re.compile(parameter["AllowedPattern"])
    assert all(pattern.fullmatch(k) for k in ("", "config/markets.csv", "config/prod/markets-v2.json"))
    assert not any(pattern.fullmatch(k) for k in ("markets.csv", "config/", "predictions/x", "config/../models/x"))


def test_signal_sends_failures_to_the_dlq(cfn: dict) -> None:
    config = cfn["Resources"]["SignalFunctionEventInvokeConfig"]["Properties"]
    assert config["MaximumRetryAttempts"] == 2
    assert config["DestinationConfig"]["OnFailure"] == {
        "Destination": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}
    assert "sqs:SendMessage" in _actions(cfn, "SignalFunction")


def _stream_mapping(cfn: dict, function: str) -> dict:
    (mapping,) = [m for m in _resources(cfn, "AWS::Lambda::EventSourceMapping").values()
                  if m["Properties"]["FunctionName"] == {"Ref": function}]
    return mapping["Properties"]


def test_the_signals_stream_has_two_consumers_at_most(cfn: dict) -> None:
    # a DynamoDB stream serves two readers per shard without throttling: broadcast and notify
    mappings = _resources(cfn, "AWS::Lambda::EventSourceMapping").values()
    readers = [m["Properties"]["FunctionName"]["Ref"] for m in mappings
               if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["SignalsTable", "StreamArn"]}]
    assert sorted(readers) == ["BroadcastFunction", "NotifyFunction"]


def test_notify_reads_the_stream_with_partial_batch_failures_and_its_own_dead_letter_queue(cfn: dict) -> None:
    props = _stream_mapping(cfn, "NotifyFunction")
    assert (props["StartingPosition"], props["BatchSize"], props["MaximumRetryAttempts"]) == ("LATEST", 50, 5)
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"] and props["BisectBatchOnFunctionError"]
    (pattern,) = (json.loads(f["Pattern"]) for f in props["FilterCriteria"]["Filters"])
    assert pattern == {"eventName": ["INSERT", "MODIFY"]}
    assert props["DestinationConfig"]["OnFailure"] == {
        "Destination": {"Fn::GetAtt": ["NotifyDeadLetterQueue", "Arn"]}}
    assert "sqs:SendMessage" in _actions(cfn, "NotifyFunction")


def test_broadcast_reads_inserts_and_modifies_with_partial_batch_failures(cfn: dict) -> None:
    props = _stream_mapping(cfn, "BroadcastFunction")
    assert props["EventSourceArn"] == {"Fn::GetAtt": ["SignalsTable", "StreamArn"]}
    assert props["FunctionName"] == {"Ref": "BroadcastFunction"}
    assert props["StartingPosition"] == "LATEST"
    assert props["BatchSize"] == 50
    assert props["MaximumRetryAttempts"] == 5
    assert props["BisectBatchOnFunctionError"] is True
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    (pattern,) = (json.loads(f["Pattern"]) for f in props["FilterCriteria"]["Filters"])
    assert pattern == {"eventName": ["INSERT", "MODIFY"]}
    assert props["DestinationConfig"]["OnFailure"] == {
        "Destination": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}
    assert "sqs:SendMessage" in _actions(cfn, "BroadcastFunction")


def test_http_api_routes_reach_the_api_function(cfn: dict) -> None:
    paths = cfn["Resources"]["HttpApi"]["Properties"]["Body"]["paths"]
    assert set(paths) == {"/signals", "/signals/{signal_id}", "/performance", "/health", "/openapi.json",
                          "/signals/{signal_id}/candles"}
    for path, operations in paths.items():
        assert set(operations) == {"get"}, path
        function = "ChartFunction" if path.endswith("/candles") else "ApiFunction"  # the chart reads the market
        assert f"${{{function}.Arn}}" in operations["get"]["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]


def test_websocket_routes_all_reach_the_websocket_function(cfn: dict) -> None:
    api = cfn["Resources"]["WebSocketApi"]["Properties"]
    assert api["ProtocolType"] == "WEBSOCKET"
    assert api["RouteSelectionExpression"] == "$request.body.action"
    routes = _resources(cfn, "AWS::ApiGatewayV2::Route")
    assert {r["Properties"]["RouteKey"] for r in routes.values()} == {
        "$connect", "$disconnect", "$default", "subscribe", "unsubscribe", "ping"}
    assert all(r["Properties"]["Target"] == {"Fn::Sub": "integrations/${WebSocketIntegration}"}
               for r in routes.values())
    integration = cfn["Resources"]["WebSocketIntegration"]["Properties"]
    assert integration["IntegrationType"] == "AWS_PROXY"
    assert "${WebSocketFunction.Arn}" in integration["IntegrationUri"]["Fn::Sub"]
    stage = cfn["Resources"]["WebSocketStage"]["Properties"]
    assert (stage["StageName"], stage["AutoDeploy"]) == ("prod", True)
    permission = cfn["Resources"]["WebSocketInvokePermission"]["Properties"]
    assert permission["FunctionName"] == {"Ref": "WebSocketFunction"}
    assert "${WebSocketApi}/" in permission["SourceArn"]["Fn::Sub"]


def test_functions_run_python312_on_arm64_with_their_layers(cfn: dict) -> None:
    layer_names = {lid: spec["Properties"]["LayerName"]
                   for lid, spec in _resources(cfn, "AWS::Lambda::LayerVersion").items()}
    candle_readers = ("PredictFunction", "TrackFunction", "ChartFunction")
    expected = {f: ["CoreLayer", "PredictDepsLayer"] for f in candle_readers} | {
        f: ["CoreLayer", "ApiDepsLayer"] for f in FUNCTIONS if f not in candle_readers}
    for function, layers in expected.items():
        props = cfn["Resources"][function]["Properties"]
        assert (props["Runtime"], props["Architectures"]) == ("python3.12", ["arm64"]), function
        assert props["TracingConfig"] == {"Mode": "Active"}, function
        assert [layer_names[ref["Ref"]] for ref in props["Layers"]] == layers, function


def test_layers_build_for_arm64_and_carry_no_training_stack(sam_template: dict) -> None:
    for logical_id in ("CoreLayer", "PredictDepsLayer", "ApiDepsLayer"):
        layer = sam_template["Resources"][logical_id]
        assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
        assert layer["Metadata"]["BuildArchitecture"] == "arm64"
    for requirements in (ROOT / "layers").glob("*/requirements.txt"):
        assert not _requirement_names(requirements) & {"pandas", "boto3"}
        if requirements.parent.name != "training-deps":  # the training step's own layer (TrainFunction only)
            assert not _requirement_names(requirements) & {"scikit-learn", "scipy"}
    assert not _requirement_names(ROOT / "layers" / "api-deps" / "requirements.txt") & {"numpy", "ccxt"}


# ---------------------------------------------------------------- environment vs. settings

@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_env_names_are_ones_the_code_reads(sam_template: dict, function: str) -> None:
    environment = function_environment(sam_template, function, RESOURCE_NAMES)
    assert set(environment) - NON_SETTINGS_ENV <= set(ENV_NAMES)
    assert environment["POWERTOOLS_SERVICE_NAME"] == "traderai"
    assert environment["POWERTOOLS_METRICS_NAMESPACE"] == "TraderAI"


def test_strategy_env_names_follow_the_strategy_fields() -> None:
    assert set(ENV_NAMES) >= STRATEGY_ENV


def test_predict_env_parses_into_settings_the_schedule_agrees_with(sam_template: dict) -> None:
    environment = function_environment(sam_template, "PredictFunction", RESOURCE_NAMES)
    settings = Settings.from_env(environment).require("bucket_name")
    assert settings.markets == ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT")
    assert (settings.timeframe, settings.exchange_id, settings.market_source) == ("15m", "binance", "ccxt")
    assert (settings.bucket_name, settings.model_prefix) == ("traderai-data", "models")
    assert settings.tick_seconds == 300  # cron(0/5 ...)


def test_signal_env_carries_every_strategy_setting_with_the_code_defaults(sam_template: dict) -> None:
    environment = function_environment(sam_template, "SignalFunction", RESOURCE_NAMES)
    assert set(environment) >= STRATEGY_ENV
    settings = Settings.from_env(environment).require("bucket_name", "signals_table")
    assert settings.strategy == Strategy()
    assert settings.signals_table == "signals"


@pytest.mark.parametrize(("function", "required"), [
    ("ApiFunction", ("signals_table",)),
    ("WebSocketFunction", ("connections_table", "subscriptions_table")),
    ("BroadcastFunction", ("connections_table", "subscriptions_table", "deliveries_table")),
    ("TrackFunction", ("signals_table",)),
])
def test_api_side_functions_get_their_tables(sam_template: dict, function: str, required: tuple[str]) -> None:
    Settings.from_env(function_environment(sam_template, function, RESOURCE_NAMES)).require(*required)


@pytest.mark.parametrize("function", ["WebSocketFunction", "BroadcastFunction"])
def test_push_functions_post_to_the_prod_stage(sam_template: dict, function: str) -> None:
    environment = function_environment(sam_template, function, RESOURCE_NAMES | {"AWS::Region": "eu-west-1"})
    assert environment["WEBSOCKET_ENDPOINT"] == "https://ws123.execute-api.eu-west-1.amazonaws.com/prod"


def test_function_environment_names_what_it_cannot_resolve(sam_template: dict) -> None:
    with pytest.raises(TemplateError, match=r"SIGNALS_TABLE.*SignalsTable"):
        function_environment(sam_template, "ApiFunction", {})


# ---------------------------------------------------------------- least privilege

def test_roles_use_only_expected_managed_policies(cfn: dict) -> None:
    for role_id, role in _iter_roles(cfn):
        assert set(role["Properties"].get("ManagedPolicyArns", [])) <= ALLOWED_MANAGED_POLICIES, role_id


def test_no_inline_statement_allows_everything(cfn: dict) -> None:
    for role_id, role in _iter_roles(cfn):
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                where = f"{role_id}/{policy['PolicyName']}"
                assert statement["Effect"] == "Allow", where
                for action in _as_list(statement["Action"]):
                    assert "*" not in action, f"{where}: {action}"
                for resource in _as_list(statement["Resource"]):
                    assert resource != "*", where
                    assert isinstance(resource, dict), f"{where}: {resource} is not a named resource"


@pytest.mark.parametrize(("function", "actions"), [
    ("PredictFunction", {"s3:PutObject", "s3:GetObject", "s3:ListBucket"}),  # the state machine hands off
    ("SignalFunction", {"s3:PutObject", "s3:GetObject", "dynamodb:PutItem", "dynamodb:Query",
                        "sqs:SendMessage"}),
    ("ApiFunction", {"dynamodb:GetItem", "dynamodb:Query"}),
    ("WebSocketFunction", {"dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem",
                           "dynamodb:GetItem", "dynamodb:BatchWriteItem", "execute-api:ManageConnections"}),
    ("BroadcastFunction", {"dynamodb:Query", "dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
                           "execute-api:ManageConnections", "sqs:SendMessage"}),
    ("TrackFunction", {"dynamodb:Query", "dynamodb:UpdateItem", "sqs:SendMessage"}),
    ("CompactFunction", {"athena:StartQueryExecution", "athena:GetQueryExecution", "glue:GetDatabase",
                         "glue:GetTable", "s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation", "s3:PutObject",
                         "s3:AbortMultipartUpload", "s3:DeleteObject", "sqs:SendMessage"}),
])
def test_each_function_gets_exactly_its_actions(cfn: dict, function: str, actions: set[str]) -> None:
    assert _actions(cfn, function) == actions


def test_s3_access_is_scoped_to_prefixes(cfn: dict) -> None:
    def s3_resources(function: str) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for statement in _role_statements(cfn, function):
            for action in _as_list(statement["Action"]):
                if action.startswith("s3:"):
                    resources = (json.dumps(r) for r in _as_list(statement["Resource"]))
                    found.setdefault(action, set()).update(resources)
        return found

    assert s3_resources("PredictFunction") == {
        "s3:PutObject": {json.dumps({"Fn::Sub": "${DataBucket.Arn}/predictions/*"}),
                         json.dumps({"Fn::Sub": "${DataBucket.Arn}/plans/*"})},  # each tick's shard plan
        "s3:GetObject": {json.dumps({"Fn::Sub": "${DataBucket.Arn}/models/*"}),
                         json.dumps({"Fn::Sub": "${DataBucket.Arn}/${MarketListKey}"})},  # the market list
        "s3:ListBucket": {json.dumps({"Fn::GetAtt": ["DataBucket", "Arn"]})},
    }
    assert s3_resources("SignalFunction") == {
        "s3:PutObject": {json.dumps({"Fn::Sub": "${DataBucket.Arn}/decisions/*"})},
        "s3:GetObject": {json.dumps({"Fn::Sub": "${DataBucket.Arn}/predictions/*"})},  # claim-checked hand-offs
    }


def test_manage_connections_is_scoped_to_the_websocket_api(cfn: dict) -> None:
    for function in ("WebSocketFunction", "BroadcastFunction"):
        (statement,) = [s for s in _role_statements(cfn, function)
                        if s["Action"] == "execute-api:ManageConnections"]
        assert statement["Resource"]["Fn::Sub"].endswith(":${WebSocketApi}/prod/POST/@connections/*")


# ---------------------------------------------------------------- data at rest and in transit

def test_data_bucket_is_encrypted_private_versioned_and_tls_only(cfn: dict) -> None:
    bucket = cfn["Resources"]["DataBucket"]["Properties"]
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True,
        "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    expiring = {r.get("Prefix") for r in bucket["LifecycleConfiguration"]["Rules"] if "ExpirationInDays" in r}
    assert expiring == {"predictions/", "decisions/", "predictions_parquet/", "decisions_parquet/", "athena-results/",
                        "plans/"}
    (statement,) = cfn["Resources"]["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Action"]) == ("Deny", "s3:*")
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert {"Fn::Sub": "${DataBucket.Arn}/*"} in statement["Resource"]


@pytest.mark.parametrize("table", ["SignalsTable", "ConnectionsTable", "SubscriptionsTable"])
def test_tables_are_on_demand_with_pitr_and_sse(cfn: dict, table: str) -> None:
    props = cfn["Resources"][table]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True


def test_signals_table_streams_and_indexes_match_the_queries(cfn: dict) -> None:
    props = cfn["Resources"]["SignalsTable"]["Properties"]
    assert props["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert props["KeySchema"] == [{"AttributeName": "signal_id", "KeyType": "HASH"}]
    indexes = {index["IndexName"]: ([key["AttributeName"] for key in index["KeySchema"]],
                                    index["Projection"]["ProjectionType"])
               for index in props["GlobalSecondaryIndexes"]}
    assert indexes == {"by_symbol": (["symbol", "created_at"], "ALL"),
                       "by_status": (["status", "created_at"], "ALL"),
                       "by_time": (["feed", "created_at"], "ALL")}


def test_connections_expire_by_ttl(cfn: dict) -> None:
    assert cfn["Resources"]["ConnectionsTable"]["Properties"]["TimeToLiveSpecification"] == {
        "AttributeName": "ttl", "Enabled": True}


def test_dead_letter_queue_is_encrypted_and_keeps_two_weeks(cfn: dict) -> None:
    props = cfn["Resources"]["DeadLetterQueue"]["Properties"]
    assert props["SqsManagedSseEnabled"] is True
    assert props["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_outputs_name_what_users_and_the_demo_need(cfn: dict) -> None:
    assert {"HttpApiUrl", "WebSocketUrl", "DataBucketName", "SignalsTableName", "DeadLetterQueueUrl"} <= set(
        cfn["Outputs"])


def test_every_function_has_a_log_group_with_retention(sam_template: dict) -> None:
    groups = {spec["Properties"]["LogGroupName"]["Fn::Sub"]: spec["Properties"]
              for spec in sam_template["Resources"].values() if spec["Type"] == "AWS::Logs::LogGroup"}
    for function in FUNCTIONS:
        assert groups[f"/aws/lambda/${{{function}}}"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


# ---------------------------------------------------------------- moto tables from the template

def test_create_table_kwargs_come_from_the_template(sam_template: dict) -> None:
    kwargs = dynamodb_create_table_kwargs(sam_template, "SignalsTable", "signals-test")
    assert kwargs["TableName"] == "signals-test"
    assert kwargs["BillingMode"] == "PAY_PER_REQUEST"
    assert kwargs["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert "ProvisionedThroughput" not in kwargs
    assert [i["IndexName"] for i in kwargs["GlobalSecondaryIndexes"]] == ["by_symbol", "by_status", "by_time"]


def test_moto_signals_table_answers_the_newest_first_feed_query(sam_template: dict) -> None:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        name = create_dynamodb_table(client, sam_template, "SignalsTable", "signals-test")
        for signal_id, symbol, created_at in [("signal_BTC_USDT_a", "BTC/USDT", "2024-05-01T10:00:00Z"),
                                              ("signal_ETH_USDT_b", "ETH/USDT", "2024-05-01T10:05:00Z")]:
            client.put_item(TableName=name, Item={
                "signal_id": {"S": signal_id}, "symbol": {"S": symbol}, "status": {"S": "ACTIVE"},
                "feed": {"S": "ALL"}, "created_at": {"S": created_at}})

        feed = client.query(TableName=name, IndexName="by_time", KeyConditionExpression="feed = :all",
                            ExpressionAttributeValues={":all": {"S": "ALL"}}, ScanIndexForward=False)
        by_symbol = client.query(TableName=name, IndexName="by_symbol", KeyConditionExpression="symbol = :s",
                                 ExpressionAttributeValues={":s": {"S": "BTC/USDT"}})

        assert [i["signal_id"]["S"] for i in feed["Items"]] == ["signal_ETH_USDT_b", "signal_BTC_USDT_a"]
        assert [i["signal_id"]["S"] for i in by_symbol["Items"]] == ["signal_BTC_USDT_a"]
        table = client.describe_table(TableName=name)["Table"]
        assert table["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        backups = client.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
        assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"


@pytest.mark.parametrize("table", ["ConnectionsTable", "SubscriptionsTable"])
def test_moto_connection_tables_have_the_ttl_attribute(sam_template: dict, table: str) -> None:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        name = create_dynamodb_table(client, sam_template, table, "connections-test")
        ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "ttl")


def test_template_path_points_into_the_checkout() -> None:
    assert Path(__file__).resolve().parents[2] / "infra" / "template.yaml" == TEMPLATE_PATH


@pytest.mark.parametrize("timeframe", ["1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d"])
def test_a_market_failing_on_every_candle_alarms_and_one_bad_candle_does_not(cfn: dict, timeframe: str) -> None:
    """MarketFailures (the per-tick total) over the alarm's own periods, simulated over two days of ticks."""
    from traderai.contracts import TIMEFRAME_SECONDS

    alarm = cfn["Resources"]["MarketFailuresAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("TraderAI", "MarketFailures", "Sum")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "traderai"}]  # the total, every reason
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert {"Ref": "AlarmTopic"} in alarm["AlarmActions"]
    mapping, key, attribute = alarm["Period"]["Fn::FindInMap"]
    assert key == {"Ref": "Timeframe"}
    period = cfn["Mappings"][mapping][timeframe][attribute]
    evaluation, datapoints = alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]
    assert period % 60 == 0 and period * evaluation <= (86_400 if period < 3600 else 7 * 86_400)
    candle = TIMEFRAME_SECONDS[timeframe]
    horizon = max(2 * 86_400, 6 * candle)
    ticks = range(0, horizon, 300)  # the schedule; a tick predicts on a candle that closed in (t-300, t]
    closes = [t for t in ticks if t % candle < 300]

    def alarms(failed_at: set[int]) -> bool:
        sums = [sum(1 for t in failed_at if start <= t < start + period) for start in range(0, horizon, period)]
        return any(sum(total > alarm["Threshold"] for total in sums[i:i + evaluation]) >= datapoints
                   for i in range(len(sums) - evaluation + 1))

    assert alarms(set(closes))  # e.g. model_missing: counted on each tick that predicts, i.e. each close
    assert alarms(set(ticks))  # e.g. a delisted symbol: the fetch fails on every tick
    assert not alarms({closes[len(closes) // 2]})  # one bad candle
    assert not alarms(set(closes[10:12]))  # two in a row

