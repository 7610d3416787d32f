"""Scheduled retraining under moto: each state machine step's handler called with the previous step's
output, promote / keep / rollback with hand-made figures, overlapping runs, unloadable candidates, the
champion's expiry, and a warm PredictFunction serving a promoted model without a redeploy."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import numpy as np
import pytest

from traderai import wiring
from traderai.adapters import model_registry as registry
from traderai.adapters.candle_archive import CandleArchive
from traderai.adapters.model_registry import BundledModels
from traderai.market.csv import bundled_candles_path, load_candles_csv
from traderai.services import retraining
from traderai.services.archive import RecordedHistory, archive_markets
from traderai.settings import Settings
from traderai.testing.fake_exchange import utc
from traderai.testing.handlers import FakeLambdaContext, load_event, load_handler

MARKETS = ("BTC/USDT", "ETH/USDT")
RUN_AT = utc(2025, 4, 27, 2)  # a Sunday 02:00 run: 120 training days end 14 days before it
BUNDLED_ID = {s: BundledModels().get(s, "15m").model_id for s in MARKETS}
EVIDENCE = {"LONG": {"n": 40, "mean_net_pct": 0.3, "se_pct": 0.1},  # the manifest's shape (research/evidence.py)
            "SHORT": {"n": 35, "mean_net_pct": -0.1, "se_pct": 0.12}}


def _fill_archive(aws: Any, symbols=MARKETS, until=RUN_AT) -> CandleArchive:
    archive = CandleArchive(aws.s3, aws.bucket, "binance")
    candles = {s: load_candles_csv(bundled_candles_path(s), s) for s in symbols}
    asyncio.run(archive_markets(archive, RecordedHistory(candles), symbols, "15m", until, backfill_days=200))
    return archive


@pytest.fixture
def steps(aws, function_env):
    """The three step handlers, each with its own template environment (as the state machine calls them)."""
    params = {"Markets": ",".join(MARKETS), "TrainDays": "120", "EvalDays": "14"}

    def call(name: str, event: dict[str, Any]) -> dict[str, Any]:
        function_env(f"{name.capitalize()}Function", **{k: v for k, v in params.items()
                                                        if name != "promote" or k == "Markets"})
        return load_handler(name).handler(copy.deepcopy(event), FakeLambdaContext())

    return call


def _pointer(aws: Any, symbol: str) -> dict[str, Any]:
    return json.loads(aws.s3.get_object(Bucket=aws.bucket, Key=registry.pointer_key("models", symbol, "15m"))
                      ["Body"].read())


def _with_evidence(aws: Any, symbol: str, model_id: str, evidence: Any = EVIDENCE) -> None:
    """What the shipped recipe will add (the model engineer's `edge_evidence`), written into a candidate."""
    key = f"models/{symbol.replace('/', '_')}/15m/{model_id}/manifest.json"
    manifest = json.loads(aws.s3.get_object(Bucket=aws.bucket, Key=key)["Body"].read())
    manifest["edge_evidence"] = evidence
    aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=json.dumps(manifest).encode())


def test_the_steps_train_evaluate_and_keep_a_champion_when_the_challenger_has_no_evidence(aws, steps) -> None:
    _fill_archive(aws)
    trained = steps("train", load_event("retrain_schedule.json"))
    assert set(trained["candidates"]) == set(MARKETS) and trained["refused"] == {}
    assert (trained["train_from"], trained["train_until"]) == ("2024-12-14T02:00:00Z", "2025-04-13T02:00:00Z")
    for symbol in MARKETS:  # candidates written under their own id; the pointer has not moved
        assert trained["candidates"][symbol] == f"{symbol.replace('/', '_')}_15m_20250427_020000"
        assert _pointer(aws, symbol)["model_id"] == BUNDLED_ID[symbol]
        assert trained["candidates"][symbol] in registry.list_model_ids(aws.s3, aws.bucket, "models", symbol, "15m")

    for symbol in MARKETS:  # a recipe that wrote no evidence
        _with_evidence(aws, symbol, trained["candidates"][symbol], None)
    evaluated = steps("evaluate", trained)
    for symbol in MARKETS:
        entry = evaluated["markets"][symbol]
        assert entry["champion_model_id"] == BUNDLED_ID[symbol] and entry["rows"] >= retraining.MIN_EVAL_ROWS
        assert entry["verdict"] == "keep" and any(r.startswith("no_evidence") for r in entry["reasons"])
        for model in ("champion", "challenger"):
            assert 0.6 < entry[model]["log_loss"] < 0.8 and 0.2 < entry[model]["brier"] < 0.3
    assert evaluated["promotions"] == []

    decided = steps("promote", evaluated)
    assert [r["outcome"] for r in decided["records"]] == ["kept", "kept"]
    assert all(_pointer(aws, s)["model_id"] == BUNDLED_ID[s] for s in MARKETS)
    (key,) = aws.objects("retraining/")
    assert key == decided["key"] == "retraining/dt=2025-04-27/20250427T020000Z.json"
    lines = aws.json_lines(key)
    assert [line["symbol"] for line in lines] == list(MARKETS)
    assert all(line["champion_log_loss"] and line["challenger_log_loss"] for line in lines)
    assert "KEPT" in decided["message"] and "no_evidence" in decided["message"]


def test_a_challenger_of_the_shipped_recipe_with_no_worse_figures_is_promoted_and_the_champion_kept(aws, steps) -> None:
    _fill_archive(aws)
    trained = steps("train", load_event("retrain_schedule.json"))
    _with_evidence(aws, "ETH/USDT", trained["candidates"]["ETH/USDT"], None)
    evaluated = steps("evaluate", trained)
    btc = evaluated["markets"]["BTC/USDT"]
    assert btc["log_loss"]["passes"] and btc["brier"]["passes"], btc  # the same recipe on newer candles
    assert btc["verdict"] == "promote" and evaluated["promotions"] == ["BTC/USDT"]
    assert evaluated["markets"]["ETH/USDT"]["verdict"] == "keep"
    decided = steps("promote", evaluated)
    assert decided["promoted"] == ["BTC/USDT"]
    pointer = _pointer(aws, "BTC/USDT")
    assert pointer["model_id"] == trained["candidates"]["BTC/USDT"]
    assert pointer["previous_model_id"] == BUNDLED_ID["BTC/USDT"]  # the champion stays in the registry
    assert BUNDLED_ID["BTC/USDT"] in registry.list_model_ids(aws.s3, aws.bucket, "models", "BTC/USDT", "15m")
    assert _pointer(aws, "ETH/USDT")["model_id"] == BUNDLED_ID["ETH/USDT"]


def _evaluated(champion: str | None, challenger: str, verdict: str = "promote") -> dict[str, Any]:
    return {"run_id": "run", "now": "2025-04-27T02:00:00Z", "markets": {"BTC/USDT": {
        "symbol": "BTC/USDT", "champion_model_id": champion, "challenger_model_id": challenger, "verdict": verdict,
        "reasons": [], "rows": 1000, "champion": {"log_loss": 0.69, "brier": 0.25, "reference": "champion"},
        "challenger": {"log_loss": 0.68, "brier": 0.249}}}}


def _candidate(aws: Any, model_id: str, symbol: str = "BTC/USDT") -> str:
    """A copy of the market's bundled model under another id (a hand-made challenger)."""
    served = BundledModels().get(symbol, "15m")
    root = BundledModels().root
    pointer = json.loads((root / symbol.replace("/", "_") / "15m" / "latest.json").read_text())
    artifact = json.loads((root / pointer["key"]).read_text())
    registry.write_model(aws.s3, aws.bucket, "models", artifact, {**served.manifest, "model_id": model_id})
    return model_id


def test_two_overlapping_retrainings_one_wins_the_other_backs_off(aws) -> None:
    settings = Settings(markets=("BTC/USDT",), bucket_name=aws.bucket)
    first, second = _candidate(aws, "BTC_USDT_15m_20250427_020000"), _candidate(aws, "BTC_USDT_15m_20250427_020001")
    champion = BUNDLED_ID["BTC/USDT"]
    won = retraining.decide_step(settings, aws.s3, _evaluated(champion, first), RUN_AT)
    lost = retraining.decide_step(settings, aws.s3, {**_evaluated(champion, second), "run_id": "run2"}, RUN_AT)
    assert won["records"][0]["outcome"] == "promoted"
    assert lost["records"][0]["outcome"] == "kept" and "superseded" in lost["records"][0]["reasons"][-1]
    assert _pointer(aws, "BTC/USDT")["model_id"] == first


def test_the_pointer_write_is_conditional_on_the_version_read(aws) -> None:
    """The race inside one move: the pointer changes between the read and the write -> If-Match fails."""
    challenger = _candidate(aws, "BTC_USDT_15m_20250427_020000")
    real_put = aws.s3.put_object

    def interleaved(**kwargs: Any) -> Any:
        if kwargs["Key"].endswith("latest.json") and "IfMatch" in kwargs:
            real_put(Bucket=aws.bucket, Key=kwargs["Key"], Body=b'{"model_id": "x", "key": "y"}')  # the other run
        return real_put(**kwargs)

    aws.s3.put_object = interleaved
    try:
        with pytest.raises(registry.PointerConflictError):
            registry.move_pointer(aws.s3, aws.bucket, "models", "BTC/USDT", "15m", challenger,
                                  expected_model_id=BUNDLED_ID["BTC/USDT"], reason="test", moved_at="now")
    finally:
        aws.s3.put_object = real_put
    assert _pointer(aws, "BTC/USDT")["model_id"] == "x"


def test_a_promotion_whose_stamp_write_fails_is_recorded_as_made(aws, caplog) -> None:
    """The pointer moved, then the stamp's write failed (a role without models/_stamp/*, S3 down): the decision
    says promoted, serving the challenger, and the failure is logged with its reason. Raised, the Promote step
    failed with no decision record though the pointer had moved, and a rerun recorded the market as kept."""
    from botocore.exceptions import ClientError

    challenger = _candidate(aws, "BTC_USDT_15m_20250427_020000")
    real_put = aws.s3.put_object

    def no_stamp(**kwargs: Any) -> Any:
        if kwargs["Key"].startswith("models/_stamp/"):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "PutObject")
        return real_put(**kwargs)

    aws.s3.put_object = no_stamp
    try:
        decided = retraining.decide_step(Settings(markets=("BTC/USDT",), bucket_name=aws.bucket), aws.s3,
                                         _evaluated(BUNDLED_ID["BTC/USDT"], challenger), RUN_AT)
    finally:
        aws.s3.put_object = real_put
    record = decided["records"][0]
    assert record["outcome"] == "promoted" and record["serving_model_id"] == challenger
    assert _pointer(aws, "BTC/USDT")["model_id"] == challenger
    [logged] = [r for r in caplog.records if getattr(r, "reason", None) == "stamp_not_bumped"]
    assert logged.levelname == "ERROR" and "AccessDenied" in logged.error and logged.key == "models/_stamp/15m.json"


def _s3_denies(request: Any) -> Any:
    """What botocore raises for S3's 403 to a role without the grant."""
    from botocore.exceptions import ClientError

    raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "PutObject")


def _s3_unreachable(request: Any) -> Any:
    from botocore.exceptions import EndpointConnectionError

    raise EndpointConnectionError(endpoint_url=request.url)


def _fail_put(client: Any, key: str, failure: Any) -> None:
    """Make this client's PutObject of `key` alone fail as `failure` raises, before the request reaches S3
    (moto: its handler comes after this one, which raises first); every other request goes through."""
    def before_send(request: Any, **_: Any) -> Any:
        if request.method == "PUT" and request.url.split("?")[0].endswith(f"/{key}"):
            return failure(request)
        return None

    client.meta.events.register_first("before-send.s3.PutObject", before_send)


THREE = ("BTC/USDT", "ETH/USDT", "SOL/USDT")


def _three_to_promote(aws: Any) -> dict[str, Any]:
    """An evaluation promoting a hand-made challenger in each of three markets, in this order."""
    markets = {}
    for symbol in THREE:
        challenger = _candidate(aws, f"{symbol.replace('/', '_')}_15m_20250427_020000", symbol)
        markets[symbol] = {**_evaluated(BUNDLED_ID.get(symbol) or BundledModels().get(symbol, "15m").model_id,
                                        challenger)["markets"]["BTC/USDT"], "symbol": symbol}
    return {"run_id": "20250427T020000Z", "now": "2025-04-27T02:00:00Z", "markets": markets}


@pytest.mark.parametrize(("failure", "error"), [
    (_s3_denies, "promotion_failed: AccessDenied: An error occurred (AccessDenied) when calling the PutObject "
                 "operation: Access Denied"),
    (_s3_unreachable, 'promotion_failed: EndpointConnectionError: Could not connect to the endpoint URL: '),
])
def test_s3_failing_on_one_markets_move_fails_that_market_alone_and_records_the_others(
        aws, function_env, monkeypatch, caplog, capsys, failure, error) -> None:
    """The second of three markets' pointer write fails (S3 denies it, or cannot be reached after the SDK's
    retries): the Promote step records the first as promoted, the second as failed with its reason and the
    model it still serves, and goes on to promote the third. Raised, the step failed before writing the record,
    with the first market's pointer already moved."""
    evaluated = _three_to_promote(aws)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the error as it stands after the SDK's retries, at once
    function_env("PromoteFunction", Markets=",".join(THREE))
    _fail_put(wiring.retraining_runtime().s3, registry.pointer_key("models", "ETH/USDT", "15m"), failure)
    capsys.readouterr()

    decided = load_handler("promote").handler(copy.deepcopy(evaluated), FakeLambdaContext())

    challengers = {s: m["challenger_model_id"] for s, m in evaluated["markets"].items()}
    champion_eth = evaluated["markets"]["ETH/USDT"]["champion_model_id"]
    assert [(r["symbol"], r["outcome"], r["serving_model_id"]) for r in decided["records"]] == [
        ("BTC/USDT", "promoted", challengers["BTC/USDT"]), ("ETH/USDT", "failed", champion_eth),
        ("SOL/USDT", "promoted", challengers["SOL/USDT"])]
    assert {s: _pointer(aws, s)["model_id"] for s in THREE} == {**challengers, "ETH/USDT": champion_eth}
    (reason,) = decided["records"][1]["reasons"]
    assert reason.startswith(error) and reason.endswith(f"the pointer still names {champion_eth}; the next "
                                                        "retraining tries again")
    assert decided["promoted"] == ["BTC/USDT", "SOL/USDT"]
    assert decided["subject"] == "TraderAI retraining 20250427T020000Z: 2 of 3 promoted, 1 failed"
    assert "ETH/USDT 15m: FAILED (serving " + champion_eth + ")" in decided["message"]
    # the decision record holds all three, as the step returned them
    assert [(r["symbol"], r["outcome"]) for r in aws.json_lines(decided["key"])] == [
        ("BTC/USDT", "promoted"), ("ETH/USDT", "failed"), ("SOL/USDT", "promoted")]
    [logged] = [r for r in caplog.records if getattr(r, "reason", None) == "promotion_failed"]
    assert logged.levelname == "ERROR" and logged.symbol == "ETH/USDT" and logged.outcome == "failed"
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [(m["PromotionFailures"], m["ModelsPromoted"]) for m in emitted if "PromotionFailures" in m] == [
        ([1.0], [2.0])]


def test_a_move_whose_reply_is_lost_after_s3_wrote_it_is_recorded_as_promoted(aws, caplog) -> None:
    """The pointer write landed and its reply was lost (a read timeout): read back, the pointer names the
    challenger, so the market is recorded as promoted, serving it, not as failed."""
    from botocore.exceptions import ReadTimeoutError

    evaluated = _three_to_promote(aws)
    key = registry.pointer_key("models", "ETH/USDT", "15m")

    def mark(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["lose_reply"] = params.get("Key") == key

    def lose(context: dict[str, Any], **_: Any) -> None:
        if context.get("lose_reply"):
            raise ReadTimeoutError(endpoint_url=f"https://{aws.bucket}.s3.amazonaws.com/{key}")

    aws.s3.meta.events.register("provide-client-params.s3.PutObject", mark)
    aws.s3.meta.events.register("after-call.s3.PutObject", lose)
    decided = retraining.decide_step(Settings(markets=THREE, bucket_name=aws.bucket), aws.s3, evaluated, RUN_AT)
    eth = decided["records"][1]
    assert (eth["outcome"], eth["serving_model_id"]) == ("promoted", evaluated["markets"]["ETH/USDT"]
                                                         ["challenger_model_id"])
    assert "S3's reply to the move failed (ReadTimeoutError" in eth["reasons"][-1]
    assert decided["promoted"] == list(THREE) and "failed" not in decided["subject"]
    [logged] = [r for r in caplog.records if getattr(r, "symbol", None) == "ETH/USDT" and r.levelname == "ERROR"]
    assert logged.reason == "stamp_not_bumped"


def test_s3_failing_on_the_expiry_read_after_the_moves_leaves_promotes_result_and_names_the_market(
        aws, function_env, monkeypatch, caplog, capsys) -> None:
    """After its moves and its record, Promote reads each champion's expiry for ChampionDaysToExpiry. S3 failing
    on one market's pointer there (the reads after the moves; the moves themselves succeed) leaves that market's
    expiry unknown, logged with its reason; raised, it failed the step after the pointers moved and the record
    was written, losing the notification and sending the state machine's "champions stay" notice instead."""
    evaluated = _three_to_promote(aws)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    function_env("PromoteFunction", Markets=",".join(THREE))
    client = wiring.retraining_runtime().s3
    eth_pointer = registry.pointer_key("models", "ETH/USDT", "15m")
    record_written: list[bool] = []

    def after_the_record(request: Any, **_: Any) -> Any:  # the record is the step's last write before expiry
        if request.method == "PUT" and "/retraining/" in request.url:
            record_written.append(True)
        if (record_written and request.method == "GET"
                and request.url.split("?")[0].endswith(f"/{eth_pointer}")):
            return _s3_unreachable(request)
        return None

    client.meta.events.register_first("before-send.s3", after_the_record)
    capsys.readouterr()

    decided = load_handler("promote").handler(copy.deepcopy(evaluated), FakeLambdaContext())

    assert record_written and decided["promoted"] == list(THREE) and "failed" not in decided["subject"]
    [logged] = [r for r in caplog.records if getattr(r, "reason", None) == "expiry_unknown"]
    assert logged.symbol == "ETH/USDT" and logged.error.startswith("EndpointConnectionError")
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [m["ChampionDaysToExpiry"] for m in emitted if "ChampionDaysToExpiry" in m]  # from BTC and SOL


def test_a_bug_during_a_move_is_raised_not_recorded_as_an_s3_failure(aws) -> None:
    """Only S3's own errors (botocore's) are a market's failure: a programming error fails the step loudly."""
    evaluated = _three_to_promote(aws)

    def bug(request: Any) -> Any:
        raise KeyError("Key")

    _fail_put(aws.s3, registry.pointer_key("models", "ETH/USDT", "15m"), bug)
    with pytest.raises(KeyError):
        retraining.decide_step(Settings(markets=THREE, bucket_name=aws.bucket), aws.s3, evaluated, RUN_AT)
    assert aws.objects("retraining/") == []


def test_a_candidate_that_does_not_load_is_never_promoted(aws, steps) -> None:
    broken = _candidate(aws, "BTC_USDT_15m_20250427_020000")
    aws.s3.put_object(Bucket=aws.bucket, Key=f"models/BTC_USDT/15m/{broken}/model.json", Body=b'{"format": 1}')
    decided = retraining.decide_step(Settings(markets=("BTC/USDT",), bucket_name=aws.bucket), aws.s3,
                                     _evaluated(BUNDLED_ID["BTC/USDT"], broken), RUN_AT)
    assert decided["records"][0]["outcome"] == "kept"
    assert "challenger_unloadable" in decided["records"][0]["reasons"][-1]
    assert _pointer(aws, "BTC/USDT")["model_id"] == BUNDLED_ID["BTC/USDT"]
    _fill_archive(aws, ("BTC/USDT",))
    evaluated = steps("evaluate", {"run_id": "r", "now": "2025-04-27T02:00:00Z",
                                   "candidates": {"BTC/USDT": broken}, "refused": {}})
    assert evaluated["markets"]["BTC/USDT"]["verdict"] == "keep"
    assert evaluated["markets"]["BTC/USDT"]["reasons"][0].startswith("challenger_unloadable")


def test_a_gap_in_the_archive_window_refuses_that_market_with_a_reason(aws, steps) -> None:
    archive = _fill_archive(aws)
    month = archive.read_month("ETH/USDT", "15m", "2025-02")
    keep = np.ones(len(month), dtype=bool)
    keep[500:540] = False  # ten hours missing
    index = np.flatnonzero(keep)
    key = archive.key("ETH/USDT", "15m", "2025-02")
    from traderai.contracts import Candles
    from traderai.market import archive as fmt

    columns = (getattr(month, n)[index] for n in ("open_time_ms", "open", "high", "low", "close", "volume"))
    aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=fmt.encode(Candles("ETH/USDT", "15m", *columns)))
    trained = steps("train", load_event("retrain_schedule.json"))
    assert list(trained["candidates"]) == ["BTC/USDT"]
    assert trained["refused"]["ETH/USDT"].startswith("gap: 40 candles missing in a row")


def test_too_little_history_is_refused_not_trained(aws, steps) -> None:
    _fill_archive(aws, until=utc(2025, 2, 1))  # the archive stops two and a half months before the run
    trained = steps("train", load_event("retrain_schedule.json"))
    assert trained["candidates"] == {}
    assert all(reason.startswith("insufficient_history") for reason in trained["refused"].values())
    evaluated = steps("evaluate", trained)
    assert all(m["verdict"] == "keep" for m in evaluated["markets"].values())


@pytest.mark.parametrize(("challenger_loss", "verdict"), [(0.690, "promote"), (0.702, "promote"), (0.71, "keep")])
def test_not_worse_allows_the_noise_of_the_window_and_no_more(challenger_loss: float, verdict: str) -> None:
    rng = np.random.default_rng(0)
    champion = rng.normal(0.70, 0.05, 2000)
    challenger = champion + (challenger_loss - 0.70) + rng.normal(0, 0.05, 2000)
    result = retraining.not_worse(challenger, champion, horizon=4, z=2.0)
    # tolerance = 2 SE of the paired difference, inflated by sqrt(horizon) for overlapping labels
    se = np.std(challenger - champion, ddof=1) / np.sqrt(2000) * 2
    assert result["tolerance"] == pytest.approx(2 * se)
    assert ("promote" if result["passes"] else "keep") == verdict


@pytest.mark.parametrize(("evidence", "require_proven", "passes", "why"), [
    (None, False, False, "no_evidence"),
    ({}, False, False, "no_evidence"),
    ({"LONG": {"note": "no figures"}}, False, False, "malformed_evidence"),
    ({"LONG": {"n": 0, "mean_net_pct": None, "se_pct": None}, "SHORT": {"n": 0}}, False, True,
     "LONG: 0 out-of-sample signal(s), unproven"),  # what the recipe writes when nothing passed its rules
    ({"LONG": {"n": 0, "mean_net_pct": None, "se_pct": None}, "SHORT": {"n": 0}}, True, False, "no_proven_edge"),
    ({"LONG": {"n": 10, "mean_net_pct": float("nan"), "se_pct": 0.1}}, False, False, "malformed_evidence"),
    ({"LONG": {"n": 10, "mean_net_pct": 0.1, "se_pct": None}}, False, False, "malformed_evidence"),
    (EVIDENCE, False, True, "out-of-sample LONG: mean net +0.300% - 2 SE (0.100) = +0.100% over 40 signals > 0"),
    ({"LONG": {"n": 40, "mean_net_pct": 0.1, "se_pct": 0.1}}, False, True, "<= 0"),  # readable, unproven
    ({"LONG": {"n": 40, "mean_net_pct": 0.1, "se_pct": 0.1}}, True, False, "no_proven_edge"),
    (EVIDENCE, True, True, "> 0"),
])
def test_evidence_must_be_present_and_readable_by_the_gate(evidence, require_proven, passes, why) -> None:
    manifest = {} if evidence is None else {"edge_evidence": evidence}
    ok, text = retraining.evidence_check(manifest, require_proven)
    assert ok is passes and why in text


def test_rollback_is_one_pointer_move_back_to_the_previous_model(aws) -> None:
    challenger = _candidate(aws, "BTC_USDT_15m_20250427_020000")
    registry.move_pointer(aws.s3, aws.bucket, "models", "BTC/USDT", "15m", challenger,
                          expected_model_id=BUNDLED_ID["BTC/USDT"], reason="promote", moved_at="t1")
    record = registry.rollback(aws.s3, aws.bucket, "models", "BTC/USDT", "15m", moved_at="2025-04-28T09:00:00Z")
    assert _pointer(aws, "BTC/USDT")["model_id"] == BUNDLED_ID["BTC/USDT"]
    assert _pointer(aws, "BTC/USDT")["previous_model_id"] == challenger  # a second rollback undoes the first
    assert record["outcome"] == "rolled_back" and record["serving_model_id"] == BUNDLED_ID["BTC/USDT"]
    with pytest.raises(registry.UnknownModelError, match="DOGE/USDT"):
        registry.rollback(aws.s3, aws.bucket, "models", "DOGE/USDT", "15m", moved_at="t")


def test_an_expiring_champion_is_reported_and_an_expired_one_refused(aws, function_env) -> None:
    settings = Settings(markets=MARKETS, bucket_name=aws.bucket)
    expires = BundledModels().get("BTC/USDT", "15m").expires_at
    assert retraining.days_to_expiry(settings, aws.s3, expires - _days(3))["BTC/USDT"] == pytest.approx(3.0)
    from traderai.observability import metrics

    metrics.clear_metrics()
    soonest = retraining.emit_expiry_metric({"BTC/USDT": 3.5, "ETH/USDT": 40.0, "SOL/USDT": None}, warning_days=7)
    assert soonest == 3.5  # ChampionExpiryAlarm fires below ExpiryWarningDays (7)
    assert metrics.metric_set["ChampionDaysToExpiry"]["Value"] == [3.5]
    metrics.clear_metrics()
    # past expiry, with no challenger promoted, the predict step refuses the market with model_expired
    function_env("PredictFunction", MarketSource="replay", Markets="BTC/USDT")
    predict = load_handler("predict").handler
    event = {**load_event("predict_schedule.json"), "time": "2025-04-07T14:00:05Z"}
    wiring.predict_runtime().models.get("BTC/USDT", "15m")
    late = json.loads(json.dumps(BundledModels().get("BTC/USDT", "15m").manifest))
    late["expires_at"] = "2025-04-07T00:00:00Z"
    root = BundledModels().root
    pointer = json.loads((root / "BTC_USDT" / "15m" / "latest.json").read_text())
    registry.publish(aws.s3, aws.bucket, "models", json.loads((root / pointer["key"]).read_text()),
                     {**late, "model_id": "BTC_USDT_15m_expired"})
    wiring.predict_runtime().models._refresh_seconds = 0
    reply = predict(event, FakeLambdaContext())
    assert [f["reason"] for f in reply["failures"]] == ["model_expired"]


def _days(n: float):
    from datetime import timedelta

    return timedelta(days=n)


def test_a_warm_predict_function_serves_a_promoted_model_without_a_redeploy(aws, function_env) -> None:
    function_env("PredictFunction", MarketSource="replay", Markets="BTC/USDT")
    predict = load_handler("predict").handler
    clock = [1000.0]
    event = load_event("predict_schedule.json")
    first = predict(event, FakeLambdaContext())
    registry_ = wiring.predict_runtime().models
    registry_._clock = lambda: clock[0]
    # the cache re-timed on the test's clock (the stamp it was read under kept): what a warm container holds
    registry_._cache = {k: registry._Cached(v.model, clock[0], v.stamp, clock[0] + registry.POINTER_BACKSTOP_SECONDS)
                        for k, v in registry_._cache.items()}
    registry_._stamps = {timeframe: (stamp, clock[0]) for timeframe, (stamp, _) in registry_._stamps.items()}
    assert {p["model_id"] for p in first["predictions"]} == {BUNDLED_ID["BTC/USDT"]}

    challenger = _candidate(aws, "BTC_USDT_15m_20250427_020000")
    registry.move_pointer(aws.s3, aws.bucket, "models", "BTC/USDT", "15m", challenger,
                          expected_model_id=BUNDLED_ID["BTC/USDT"], reason="promote", moved_at="t")
    clock[0] += wiring.MODEL_REFRESH_SECONDS - 1  # the same warm container, before the pointer is re-read
    assert {p["model_id"] for p in predict(event, FakeLambdaContext())["predictions"]} == {BUNDLED_ID["BTC/USDT"]}
    clock[0] += 1  # MODEL_REFRESH_SECONDS after the last read: the stamp moved with the pointer, which is read again
    assert {p["model_id"] for p in predict(event, FakeLambdaContext())["predictions"]} == {challenger}
    clock[0] += wiring.MODEL_REFRESH_SECONDS  # nothing moved since: the stamp alone is read, the model stays
    assert {p["model_id"] for p in predict(event, FakeLambdaContext())["predictions"]} == {challenger}


def test_the_state_machine_is_train_evaluate_promote_or_keep_notify_with_retry_and_catch(template) -> None:
    machine = template["Resources"]["RetrainStateMachine"]["Properties"]
    assert machine["Type"] == "STANDARD"
    states = machine["Definition"]["States"]
    assert machine["Definition"]["StartAt"] == "Train"
    assert [states[s]["Next"] for s in ("Train", "Evaluate")] == ["Evaluate", "PromoteOrKeep"]
    choice = states["PromoteOrKeep"]
    assert choice["Type"] == "Choice" and choice["Choices"][0]["Next"] == "Promote" and choice["Default"] == "Keep"
    assert states["Promote"]["Next"] == states["Keep"]["Next"] == "Notify"
    for name, state in states.items():
        if state["Type"] == "Task":
            assert state["Retry"] and state["Catch"][0]["ErrorEquals"] == ["States.ALL"], name
    # a failed step is published, then the execution fails (RetrainFailedAlarm); the champions are untouched
    assert {states[s]["Catch"][0]["Next"] for s in ("Train", "Evaluate", "Promote", "Keep")} == {"NotifyFailure"}
    assert states["NotifyFailure"]["Next"] == "Failed" and states["Failed"]["Type"] == "Fail"
    functions = {v["Fn::GetAtt"][0] for v in machine["DefinitionSubstitutions"].values() if "Fn::GetAtt" in v}
    assert functions == {"TrainFunction", "EvaluateFunction", "PromoteFunction"}
    schedule = machine["Events"]["Weekly"]["Properties"]
    assert schedule["ScheduleExpression"] == {"Ref": "RetrainSchedule"}
    assert template["Parameters"]["RetrainSchedule"]["Default"] == "cron(0 2 ? * SUN *)"  # weekly
    assert json.loads(schedule["Input"].replace("<aws.scheduler.scheduled-time>", "2025-04-27T02:00:00Z")) == {
        "time": "2025-04-27T02:00:00Z"}  # exactly what the train step's run_time reads


def test_expiry_and_failure_alarms_watch_what_the_steps_emit(template) -> None:
    alarms = template["Resources"]
    expiry = alarms["ChampionExpiryAlarm"]["Properties"]
    assert (expiry["Namespace"], expiry["MetricName"], expiry["Statistic"]) == ("TraderAI", "ChampionDaysToExpiry",
                                                                               "Minimum")
    assert expiry["Threshold"] == {"Ref": "ExpiryWarningDays"} and expiry["ComparisonOperator"] == "LessThanThreshold"
    assert template["Parameters"]["ExpiryWarningDays"]["Default"] == 7
    failed = alarms["RetrainFailedAlarm"]["Properties"]
    assert (failed["Namespace"], failed["MetricName"]) == ("AWS/States", "ExecutionsFailed")
    assert failed["Dimensions"][0]["Value"] == {"Ref": "RetrainStateMachine"}


def test_retraining_settings_come_from_the_template_and_refuse_bad_values(aws) -> None:
    from traderai.contracts import SettingsError

    environment = aws.local.environment("TrainFunction")
    settings = retraining.RetrainSettings.from_env(environment)
    assert (settings.train_days, settings.eval_days) == (180, 14)
    with pytest.raises(SettingsError, match=r"^TRAIN_DAYS:"):
        retraining.RetrainSettings.from_env({"TRAIN_DAYS": "3"})
    with pytest.raises(SettingsError, match=r"^EXPIRY_WARNING_DAYS:"):
        retraining.RetrainSettings.from_env({"EXPIRY_WARNING_DAYS": "soon"})
