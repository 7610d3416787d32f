"""Least privilege, data protection and alarms, checked on the template as SAM translates it.

Complements test_template.py (which pins each function's action set): here every role of every
function, including ones added later, is held to the same rules, and every table and alarm too.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from traderai.contracts import TIMEFRAME_SECONDS
from traderai.testing.handlers import REPO_ROOT
from traderai.testing.sam import translated_template

# Managed policies SAM attaches; their "*" resources are what those services require.
ALLOWED_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole",
}


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return translated_template()


def _of_type(cfn: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {lid: spec for lid, spec in cfn["Resources"].items() if spec["Type"] == type_}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in role["Properties"].get("Policies", []) for s in p["PolicyDocument"]["Statement"]]


def _function_roles(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    functions = _of_type(cfn, "AWS::Lambda::Function")
    return {lid: cfn["Resources"][spec["Properties"]["Role"]["Fn::GetAtt"][0]] for lid, spec in functions.items()}


def test_every_function_has_its_own_role(cfn: dict[str, Any]) -> None:
    roles = [spec["Properties"]["Role"]["Fn::GetAtt"][0] for spec in _of_type(cfn, "AWS::Lambda::Function").values()]
    assert len(roles) == len(set(roles)) >= 7


def test_no_role_allows_a_wildcard_action_or_an_unnamed_resource(cfn: dict[str, Any]) -> None:
    for function, role in _function_roles(cfn).items():
        assert set(role["Properties"].get("ManagedPolicyArns", [])) <= ALLOWED_MANAGED_POLICIES, function
        for statement in _statements(role):
            assert statement["Effect"] == "Allow", function
            for action in _as_list(statement["Action"]):
                assert "*" not in action, f"{function}: {action}"
            for resource in _as_list(statement["Resource"]):
                text = json.dumps(resource)
                assert resource != "*", function
                if "*" in text:  # a wildcard only below a resource of this stack (a prefix, an index)
                    named = {ref for ref in re.findall(r"\$\{(\w+)(?:\.\w+)?\}", text) if ref in cfn["Resources"]}
                    # or below this stack's own name in Secrets Manager (secret ARNs end in a random suffix)
                    named |= set(re.findall(r":secret:\$\{AWS::StackName\}/\w+/\*", text))
                    assert named, f"{function}: {text} is a wildcard over resources this stack does not name"


def test_dynamodb_writes_never_reach_a_table_the_function_does_not_own(cfn: dict[str, Any]) -> None:
    readers_only = {"ApiFunction", "AuthorizerFunction"}
    for function in readers_only:
        actions = {a for s in _statements(_function_roles(cfn)[function]) for a in _as_list(s["Action"])}
        assert actions <= {"dynamodb:GetItem", "dynamodb:Query"}, function


def test_the_authorizer_can_only_get_one_key_by_id(cfn: dict[str, Any]) -> None:
    (statement,) = _statements(_function_roles(cfn)["AuthorizerFunction"])
    assert statement["Action"] == "dynamodb:GetItem"
    assert statement["Resource"] == {"Fn::GetAtt": ["ApiKeysTable", "Arn"]}


def test_only_notify_scans_and_only_its_subscribers(cfn: dict[str, Any]) -> None:
    # Only the small list of notification subscribers is read whole; broadcast Queries its audience by symbol
    fan_out_lists = {"NotifyFunction": "NotifySubscribersTable"}
    for function, role in _function_roles(cfn).items():
        for statement in _statements(role):
            if "dynamodb:Scan" in _as_list(statement["Action"]):
                assert function in fan_out_lists, f"{function} may Scan"
                assert _as_list(statement["Resource"]) == [{"Fn::GetAtt": [fan_out_lists[function], "Arn"]}], function


def test_notify_reads_only_its_subscribers_secrets_and_writes_only_its_ledger_and_queue(cfn: dict[str, Any]) -> None:
    grants = {(action, json.dumps(resource)) for s in _statements(_function_roles(cfn)["NotifyFunction"])
              for action in _as_list(s["Action"]) for resource in _as_list(s["Resource"])}
    secrets = {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
                          "${AWS::StackName}/notify/*"}
    assert grants == {
        ("dynamodb:Scan", json.dumps({"Fn::GetAtt": ["NotifySubscribersTable", "Arn"]})),
        ("dynamodb:UpdateItem", json.dumps({"Fn::GetAtt": ["NotifySubscribersTable", "Arn"]})),
        ("dynamodb:Query", json.dumps({"Fn::GetAtt": ["DeliveriesTable", "Arn"]})),
        ("dynamodb:BatchWriteItem", json.dumps({"Fn::GetAtt": ["DeliveriesTable", "Arn"]})),
        ("secretsmanager:GetSecretValue", json.dumps(secrets)),
        ("sqs:SendMessage", json.dumps({"Fn::GetAtt": ["NotifyDeadLetterQueue", "Arn"]})),
    } | {g for g in grants if g[0].startswith(("dynamodb:DescribeStream", "dynamodb:GetRecords",
                                                "dynamodb:GetShardIterator", "dynamodb:ListStreams"))}


def test_the_chart_function_gets_one_signal_by_id(cfn: dict[str, Any]) -> None:
    (statement,) = _statements(_function_roles(cfn)["ChartFunction"])
    assert statement["Action"] == "dynamodb:GetItem"
    assert statement["Resource"] == {"Fn::GetAtt": ["SignalsTable", "Arn"]}


def test_every_table_is_encrypted_with_point_in_time_recovery(cfn: dict[str, Any]) -> None:
    tables = _of_type(cfn, "AWS::DynamoDB::Table")
    assert {"SignalsTable", "ConnectionsTable", "SubscriptionsTable", "ApiKeysTable", "DeliveriesTable"} <= set(tables)
    for logical_id, spec in tables.items():
        props = spec["Properties"]
        assert props["SSESpecification"]["SSEEnabled"] is True, logical_id
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}, logical_id


def test_the_keys_table_is_kept_when_the_stack_goes(cfn: dict[str, Any]) -> None:
    spec = cfn["Resources"]["ApiKeysTable"]
    assert (spec["DeletionPolicy"], spec["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert spec["Properties"]["KeySchema"] == [{"AttributeName": "key_id", "KeyType": "HASH"}]


def test_every_bucket_is_encrypted_private_and_tls_only(cfn: dict[str, Any]) -> None:
    policies = {json.dumps(p["Properties"]["Bucket"]): p for p in _of_type(cfn, "AWS::S3::BucketPolicy").values()}
    for logical_id, spec in _of_type(cfn, "AWS::S3::Bucket").items():
        props = spec["Properties"]
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"], logical_id
        assert all(props["PublicAccessBlockConfiguration"].values()) and len(
            props["PublicAccessBlockConfiguration"]) == 4, logical_id
        statements = policies[json.dumps({"Ref": logical_id})]["Properties"]["PolicyDocument"]["Statement"]
        assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
                   for s in statements), logical_id


def test_queues_are_encrypted_and_tls_only(cfn: dict[str, Any]) -> None:
    for logical_id, spec in _of_type(cfn, "AWS::SQS::Queue").items():
        assert spec["Properties"]["SqsManagedSseEnabled"] is True, logical_id
    policies = {json.dumps(p["Properties"]["Queues"]): p for p in _of_type(cfn, "AWS::SQS::QueuePolicy").values()}
    for logical_id in _of_type(cfn, "AWS::SQS::Queue"):
        statements = policies[json.dumps([{"Ref": logical_id}])]["Properties"]["PolicyDocument"]["Statement"]
        assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
                   for s in statements), logical_id
    statements = policies[json.dumps([{"Ref": "DeadLetterQueue"}])]["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in statements)
    (events,) = [s for s in statements if s["Effect"] == "Allow"]
    assert events["Principal"] == {"Service": "events.amazonaws.com"} and events["Action"] == "sqs:SendMessage"
    # Exactly the rules that dead-letter here, by ARN: CloudFormation truncates a long stack name inside a
    # generated rule name, so a `rule/${AWS::StackName}-*` pattern would silently refuse their messages.
    dead_lettering = {lid for lid, spec in _of_type(cfn, "AWS::Events::Rule").items()
                      if any(t.get("DeadLetterConfig", {}).get("Arn") == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
                             for t in spec["Properties"]["Targets"])}
    assert dead_lettering == {"TrackFunctionTick", "CompactFunctionNightly"}
    (condition,) = events["Condition"].values()
    assert {json.dumps(arn) for arn in _as_list(condition["aws:SourceArn"])} == {
        json.dumps({"Fn::GetAtt": [rule, "Arn"]}) for rule in dead_lettering}


def test_model_artifacts_are_never_unpickled() -> None:
    pattern = re.compile(r"^\s*(import|from)\s+(pickle|cPickle|_pickle|joblib|dill|cloudpickle|shelve)\b"
                         r"|\b(pickle|joblib|dill|cloudpickle)\.loads?\(|allow_pickle\s*=\s*True")
    offenders = [f"{path.relative_to(REPO_ROOT)}:{n}"
                 for root in ("src", "functions") for path in (REPO_ROOT / root).rglob("*.py")
                 for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


# ---------------------------------------------------------------- alarms

def _alarms(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {lid: spec["Properties"] for lid, spec in _of_type(cfn, "AWS::CloudWatch::Alarm").items()}


def test_every_alarm_notifies_the_alarm_topic(cfn: dict[str, Any]) -> None:
    assert _alarms(cfn)
    for logical_id, alarm in _alarms(cfn).items():
        assert {"Ref": "AlarmTopic"} in alarm["AlarmActions"], logical_id
    subscription = cfn["Resources"]["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert cfn["Parameters"]["AlarmEmail"]["Default"] == ""


def test_every_function_has_an_errors_alarm(cfn: dict[str, Any]) -> None:
    watched = {alarm["Dimensions"][0]["Value"]["Ref"] for alarm in _alarms(cfn).values()
               if (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors")}
    assert watched == set(_of_type(cfn, "AWS::Lambda::Function"))


def test_dead_letter_queue_depth_alarms(cfn: dict[str, Any]) -> None:
    alarm = _alarms(cfn)["DeadLetterQueueAlarm"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert alarm["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}


def _for_timeframe(cfn: dict[str, Any], value: Any, timeframe: str) -> Any:
    """`value`, or what its `Fn::FindInMap` on `!Ref Timeframe` gives for `timeframe`."""
    if isinstance(value, dict) and "Fn::FindInMap" in value:
        mapping, key, attribute = value["Fn::FindInMap"]
        assert key == {"Ref": "Timeframe"}
        return cfn["Mappings"][mapping][timeframe][attribute]
    return value


@pytest.mark.parametrize("timeframe", ["1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d"])
def test_no_predictions_alarm_waits_longer_than_a_candle_of_any_timeframe(cfn: dict[str, Any], timeframe: str) -> None:
    # Every 5-minute tick emits Predictions, 0 unless a candle closed since the last tick: at 30m or longer
    # most periods hold a 0, so a fixed 20-minute window would alarm on every healthy candle.
    assert timeframe in cfn["Parameters"]["Timeframe"]["AllowedValues"]
    alarm = _alarms(cfn)["NoPredictionsAlarm"]
    period, evaluation_periods, datapoints = (_for_timeframe(cfn, alarm[key], timeframe)
                                              for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"))
    assert datapoints == evaluation_periods
    assert period * evaluation_periods <= (86_400 if period < 3600 else 7 * 86_400)  # CloudWatch's limits
    candle = TIMEFRAME_SECONDS[timeframe]
    two_days = range(0, 2 * 86_400, 300)
    healthy = {tick: 4 if tick % candle < 300 else 0 for tick in two_days}  # 4 markets, a close in (t-300, t]

    def alarms(emitted: dict[int, int]) -> bool:
        sums = [sum(n for tick, n in emitted.items() if start <= tick < start + period)
                for start in range(0, 2 * 86_400, period)]
        return any(all(total < alarm["Threshold"] for total in sums[i:i + evaluation_periods])
                   for i in range(len(sums) - evaluation_periods + 1))

    assert not alarms(healthy)
    assert alarms({tick: n if tick < 86_400 else 0 for tick, n in healthy.items()})  # predictions stop


def test_no_predictions_alarm_counts_silence_as_breaching(cfn: dict[str, Any]) -> None:
    alarm = _alarms(cfn)["NoPredictionsAlarm"]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("TraderAI", "Predictions", "Sum")
    assert _for_timeframe(cfn, alarm["Period"], "15m") * _for_timeframe(cfn, alarm["EvaluationPeriods"], "15m") == (
        20 * 60)  # the default timeframe keeps its 20 minutes
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 1)
    assert alarm["TreatMissingData"] == "breaching"
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "traderai"}]  # Powertools' default dimension


@pytest.mark.parametrize(("alarm_id", "metric"), [
    ("SignalWriteFailuresAlarm", "SignalWriteFailures"), ("PushFailuresAlarm", "PushFailed")])
def test_signal_write_and_push_failures_alarm(cfn: dict[str, Any], alarm_id: str, metric: str) -> None:
    alarm = _alarms(cfn)[alarm_id]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("TraderAI", metric)
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "traderai"}]


@pytest.mark.parametrize("metric", ["Predictions", "SignalWriteFailures", "PushFailed"])
def test_alarmed_metrics_are_emitted_by_the_code(metric: str) -> None:
    sources = "".join(p.read_text() for p in (REPO_ROOT / "src" / "traderai" / "services").glob("*.py"))
    assert f'name="{metric}"' in sources


# ---------------------------------------------------------------- candle archive and retraining

def _s3_grants(cfn: dict[str, Any], function: str) -> dict[str, set[str]]:
    """{action: resources (as JSON text)} of a function's role."""
    grants: dict[str, set[str]] = {}
    for statement in _statements(_function_roles(cfn)[function]):
        for action in _as_list(statement["Action"]):
            grants.setdefault(action, set()).update(json.dumps(r) for r in _as_list(statement["Resource"]))
    return grants


def _sub(path: str) -> str:
    return json.dumps({"Fn::Sub": "${DataBucket.Arn}/" + path})


def test_retraining_functions_reach_only_their_prefixes(cfn: dict[str, Any]) -> None:
    bucket = json.dumps({"Fn::GetAtt": ["DataBucket", "Arn"]})
    assert _s3_grants(cfn, "ArchiveFunction") == {
        "s3:GetObject": {_sub("candles/*"), _sub("models/*")}, "s3:PutObject": {_sub("candles/*")},
        "s3:ListBucket": {bucket},
        "sqs:SendMessage": {json.dumps({"Fn::GetAtt": ["DeadLetterQueue", "Arn"]})}}  # its on-failure destination
    # the trainer writes a candidate's two files and cannot move a pointer (latest.json matches neither)
    assert _s3_grants(cfn, "TrainFunction") == {
        "s3:GetObject": {_sub("candles/*")}, "s3:ListBucket": {bucket},
        "s3:PutObject": {_sub("models/*/*/*/model.json"), _sub("models/*/*/*/manifest.json")}}
    assert _s3_grants(cfn, "EvaluateFunction") == {
        "s3:GetObject": {_sub("candles/*"), _sub("models/*")}, "s3:ListBucket": {bucket}}
    # only the promotion step moves pointers, and writes nothing but pointers, the stamp each move rewrites
    # and decision records
    assert _s3_grants(cfn, "PromoteFunction") == {
        "s3:GetObject": {_sub("models/*")}, "s3:ListBucket": {bucket},
        "s3:PutObject": {_sub("models/*/*/latest.json"), _sub("models/_stamp/*"), _sub("retraining/*")}}


def test_candidate_write_patterns_cannot_match_a_pointer() -> None:
    from fnmatch import fnmatchcase

    pointer, candidate = "models/BTC_USDT/15m/latest.json", "models/BTC_USDT/15m/BTC_USDT_15m_20250413_000000/"
    for pattern in ("models/*/*/*/model.json", "models/*/*/*/manifest.json"):
        assert not fnmatchcase(pointer, pattern)
        assert fnmatchcase(candidate + pattern.rsplit("/", 1)[1], pattern)
    assert fnmatchcase(pointer, "models/*/*/latest.json")
    assert not fnmatchcase(candidate + "model.json", "models/*/*/latest.json")
    stamp = "models/_stamp/15m.json"  # the trainer cannot rewrite the stamp either
    assert not any(fnmatchcase(stamp, p) for p in ("models/*/*/*/model.json", "models/*/*/*/manifest.json"))


def test_the_tick_state_machine_role_invokes_predict_and_signal_and_dead_letters_only(cfn: dict[str, Any]) -> None:
    machine = _of_type(cfn, "AWS::StepFunctions::StateMachine")["TickStateMachine"]
    role = cfn["Resources"][machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]]
    assert not role["Properties"].get("ManagedPolicyArns")
    grants: dict[str, list[Any]] = {}
    for statement in _statements(role):
        assert statement["Effect"] == "Allow"
        for action in _as_list(statement["Action"]):
            grants.setdefault(action, []).extend(_as_list(statement["Resource"]))
    machine_arn = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:${AWS::StackName}-tick"
    assert machine["Properties"]["StateMachineName"] == {"Fn::Sub": "${AWS::StackName}-tick"}
    assert grants == {
        "lambda:InvokeFunction": [{"Fn::GetAtt": [f"{step}Function", "Arn"]} for step in ("Predict", "Signal")],
        "sqs:SendMessage": [{"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}],
        # the Distributed Map: its ItemReader reads the plan objects, its children are executions of itself
        "s3:GetObject": [{"Fn::Sub": "${DataBucket.Arn}/plans/*"}],
        "states:StartExecution": [{"Fn::Sub": machine_arn}],
        "states:DescribeExecution": [{"Fn::Sub": machine_arn.replace(":stateMachine:", ":execution:") + "/*"}],
        "states:StopExecution": [{"Fn::Sub": machine_arn.replace(":stateMachine:", ":execution:") + "/*"}]}


def test_predict_reads_only_the_market_list_key_and_writes_only_its_logs_and_plans(cfn: dict[str, Any]) -> None:
    grants = _s3_grants(cfn, "PredictFunction")
    assert grants["s3:PutObject"] == {_sub("predictions/*"), _sub("plans/*")}
    assert grants["s3:GetObject"] == {_sub("models/*"), _sub("${MarketListKey}")}


def test_the_state_machine_role_invokes_its_three_steps_and_publishes_to_the_alarm_topic(cfn: dict[str, Any]) -> None:
    machine = _of_type(cfn, "AWS::StepFunctions::StateMachine")["RetrainStateMachine"]
    role = cfn["Resources"][machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]]
    assert not role["Properties"].get("ManagedPolicyArns")
    grants = {}
    for statement in _statements(role):
        assert statement["Effect"] == "Allow"
        for action in _as_list(statement["Action"]):
            grants.setdefault(action, []).extend(_as_list(statement["Resource"]))
    assert grants == {
        "lambda:InvokeFunction": [{"Fn::GetAtt": [f"{step}Function", "Arn"]}
                                  for step in ("Train", "Evaluate", "Promote")],
        "sns:Publish": [{"Ref": "AlarmTopic"}]}


def test_only_the_training_step_carries_scikit_learn(cfn: dict[str, Any]) -> None:
    carriers = {lid for lid, spec in _of_type(cfn, "AWS::Lambda::Function").items()
                if any(layer.get("Ref", "").startswith("TrainingDepsLayer") for layer in spec["Properties"]["Layers"])}
    assert carriers == {"TrainFunction"}
