"""`traderai models list|show|promote|rollback` and `traderai retrain` against a moto bucket."""

from __future__ import annotations

import json

import pytest

from traderai.adapters import model_registry as registry
from traderai.adapters.model_registry import BundledModels
from traderai.cli import main

BTC_ID = BundledModels().get("BTC/USDT", "15m").model_id


def _copy_of_btc(aws, model_id: str) -> None:
    served = BundledModels().get("BTC/USDT", "15m")
    root = BundledModels().root
    pointer = json.loads((root / "BTC_USDT" / "15m" / "latest.json").read_text())
    registry.write_model(aws.s3, aws.bucket, "models", json.loads((root / pointer["key"]).read_text()),
                         {**served.manifest, "model_id": model_id})


def test_list_show_promote_and_rollback(aws, capsys) -> None:
    new_id = "BTC_USDT_15m_20250427_020000"
    _copy_of_btc(aws, new_id)
    assert main(["models", "list", "--bucket", aws.bucket, "--symbol", "BTC/USDT"]) == 0
    assert capsys.readouterr().out.splitlines() == ["BTC/USDT 15m", f"    {new_id}", f"  * {BTC_ID}"]

    assert main(["models", "promote", "--bucket", aws.bucket, "--symbol", "BTC/USDT", "--model-id", new_id]) == 0
    assert f"serving {new_id} (was {BTC_ID})" in capsys.readouterr().out
    main(["models", "list", "--bucket", aws.bucket, "--symbol", "btc/usdt"])
    assert capsys.readouterr().out.splitlines()[1:] == [f"  * {new_id}", f"    {BTC_ID} (previous)"]
    assert main(["models", "show", "--bucket", aws.bucket, "--symbol", "BTC/USDT"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["served"] and shown["manifest"]["model_id"] == new_id

    assert main(["models", "rollback", "--bucket", aws.bucket, "--symbol", "BTC/USDT"]) == 0
    assert f"serving {BTC_ID} again (was {new_id})" in capsys.readouterr().out
    pointer, _ = registry.read_pointer(aws.s3, aws.bucket, "models", "BTC/USDT", "15m")
    assert pointer["model_id"] == BTC_ID
    # both moves are in the decision log, queryable beside the scheduled retrainings
    outcomes = sorted(line["outcome"] for key in aws.objects("retraining/") for line in aws.json_lines(key))
    assert outcomes == ["promoted", "rolled_back"]


@pytest.mark.parametrize(("argv", "named"), [
    (["models", "show", "--symbol", "DOGE/USDT"], "DOGE/USDT"),
    (["models", "list", "--symbol", "DOGE/USDT"], "DOGE/USDT"),
    (["models", "promote", "--symbol", "BTC/USDT", "--model-id", "BTC_USDT_15m_nosuch"], "BTC_USDT_15m_nosuch"),
    (["models", "show", "--symbol", "BTC/USDT", "--model-id", "BTC_USDT_15m_nosuch"], "BTC_USDT_15m_nosuch"),
    (["models", "rollback", "--symbol", "BTC/USDT"], "names no previous model"),
])
def test_an_unknown_market_or_model_id_is_a_clear_error_naming_it(aws, capsys, argv, named) -> None:
    assert main([*argv, "--bucket", aws.bucket]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and named in error
    pointer, _ = registry.read_pointer(aws.s3, aws.bucket, "models", "BTC/USDT", "15m")
    assert pointer["model_id"] == BTC_ID  # nothing moved


def test_retrain_runs_one_retraining_against_a_bucket(aws, capsys) -> None:
    assert main(["retrain", "--bucket", aws.bucket, "--markets", "BTC/USDT", "--archive", "bundled",
                 "--time", "2025-04-27T02:00:00Z", "--train-days", "120"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("BTC/USDT 15m: ") and "decision record: retraining/dt=2025-04-27/" in out
    assert any(k.startswith("candles/exchange=binance/symbol=BTC_USDT/") for k in aws.objects("candles/"))
    (record,) = aws.json_lines(aws.objects("retraining/")[0])
    assert record["outcome"] in ("promoted", "kept") and record["challenger_model_id"].endswith("20250427_020000")
