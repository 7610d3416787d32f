"""Served model = trained model: numpy serving reproduces scikit-learn's probabilities exactly."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from traderai.adapters.model_registry import BundledModels
from traderai.contracts import Candles
from traderai.core.features import FEATURE_NAMES
from traderai.market.csv import bundled_candles_path, load_candles_csv
from traderai.model.serving import ModelError, ModelNotFoundError, ServedModel, load_model
from traderai.train import (
    TrainConfig,
    TrainingResult,
    dump_json,
    make_labels,
    model_id_for,
    time_split,
    train,
)

TRAINED_AT = datetime(2025, 5, 1, 12, 0, 0, tzinfo=UTC)
SMALL_GBDT = {"max_iter": 30, "max_leaf_nodes": 15, "learning_rate": 0.1, "min_samples_leaf": 50,
              "l2_regularization": 1.0}


@cache
def markets() -> tuple[Candles, ...]:
    """A few thousand rows: the last 2,500 candles of BTC and ETH."""
    return tuple(load_candles_csv(bundled_candles_path(s), s).tail(2500) for s in ("BTC/USDT", "ETH/USDT"))


@cache
def trained(kind: str) -> TrainingResult:
    config = TrainConfig(kind=kind, gbdt_params=SMALL_GBDT)
    return train(markets(), ["BTC/USDT", "ETH/USDT", "XRP/USDT"], "15m", config, TRAINED_AT)


def _reload(result: TrainingResult, symbol: str = "BTC/USDT") -> ServedModel:
    """Through JSON bytes, as the registry stores it."""
    return load_model(json.loads(dump_json(result.artifact)), json.loads(dump_json(result.manifests[symbol])))


@pytest.mark.parametrize("kind", ["logistic", "gbdt"])
def test_served_probabilities_equal_sklearn_on_held_out_rows(kind: str) -> None:
    result = trained(kind)
    served = _reload(result)
    expected = result.estimator.predict_proba(result.test_features)[:, 1]
    assert result.test_features.shape[0] > 500
    np.testing.assert_allclose(served.predict_proba(result.test_features), expected, rtol=0, atol=1e-9)


def test_gbdt_routes_missing_values_as_sklearn_does() -> None:
    result = trained("gbdt")
    rows = result.test_features[:300].copy()
    rng = np.random.default_rng(3)
    rows[rng.random(rows.shape) < 0.3] = np.nan
    expected = result.estimator.predict_proba(rows)[:, 1]
    np.testing.assert_allclose(_reload(result).predict_proba(rows), expected, rtol=0, atol=1e-9)


def test_logistic_gives_nan_for_an_incomplete_row() -> None:
    row = trained("logistic").test_features[0].copy()
    row[3] = np.nan
    assert np.isnan(_reload(trained("logistic")).predict_proba(row)[0])


def test_manifest_describes_the_model() -> None:
    result = trained("gbdt")
    manifest = result.manifests["BTC/USDT"]
    assert manifest["model_id"] == "BTC_USDT_15m_20250501_120000"
    assert model_id_for("btc_usdt", "15m", TRAINED_AT) == manifest["model_id"]
    assert manifest["expires_at"] == "2025-07-30T12:00:00Z"
    assert manifest["feature_names"] == list(FEATURE_NAMES)
    assert manifest["horizon"] == 4 and manifest["training_symbols"] == ["BTC/USDT", "ETH/USDT"]
    assert set(manifest["metrics"]) >= {"test", "baseline", "train"}
    assert set(manifest["metrics"]["test"]) >= {"auc", "accuracy", "brier", "log_loss"}
    quantiles = manifest["feature_quantiles"]
    assert quantiles["source"] == "BTC/USDT" and len(quantiles["levels"]) == 11
    assert all(v == sorted(v) for v in quantiles["values"].values())
    assert result.manifests["XRP/USDT"]["feature_quantiles"]["source"] == "pooled"
    assert manifest["data"]["train"]["to"] < manifest["data"]["test"]["from"]
    served = _reload(result)
    assert served.symbol == "BTC/USDT" and served.horizon == 4 and served.timeframe == "15m"
    assert not served.is_expired(TRAINED_AT) and served.is_expired(datetime(2025, 8, 1, tzinfo=UTC))


def test_labels_look_exactly_horizon_candles_ahead() -> None:
    labels = make_labels(np.array([1.0, 2.0, 1.5, 3.0, 3.0]), 2)
    np.testing.assert_array_equal(labels[:3], [1.0, 1.0, 1.0])
    assert np.isnan(labels[3:]).all()
    np.testing.assert_array_equal(make_labels(np.array([2.0, 1.0, 2.0]), 1)[:2], [0.0, 1.0])


def test_time_split_purges_labels_that_reach_into_the_test_stretch() -> None:
    step = 900_000
    times = np.arange(1000, dtype=np.int64) * step
    train_rows, test_rows, cut = time_split(times, 4, "15m", 0.2)
    assert not (train_rows & test_rows).any()
    assert times[test_rows].min() == cut
    # The last training label needs the close of candle t+4, which must be known at the cut.
    assert times[train_rows].max() + 5 * step <= cut
    assert times[train_rows].max() + 6 * step > cut


@pytest.mark.parametrize("symbol", ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT"])
def test_bundled_models_load_and_stay_small(symbol: str) -> None:
    model = BundledModels().get(symbol, "15m")
    assert re.fullmatch(rf"{symbol.replace('/', '_')}_15m_\d{{8}}_\d{{6}}", model.model_id)
    assert model.feature_names == FEATURE_NAMES and model.symbol == symbol
    folder = Path(str(resources.files("traderai") / "data" / "models")) / symbol.replace("/", "_") / "15m"
    assert (folder / model.model_id / "model.json").stat().st_size <= 200_000
    probability = model.predict_proba(np.zeros((2, len(FEATURE_NAMES))))
    assert probability.shape == (2,) and ((probability > 0) & (probability < 1)).all()


def test_a_market_without_a_bundled_model_is_a_clear_error() -> None:
    with pytest.raises(ModelNotFoundError, match=r"XRP/USDT 15m.*bundled: BNB_USDT/15m"):
        BundledModels().get("XRP/USDT", "15m")


def test_wrong_feature_count_is_refused() -> None:
    with pytest.raises(ModelError, match="expected rows of"):
        _reload(trained("logistic")).predict_proba(np.zeros((1, 3)))


def _broken(kind: str, change: str) -> tuple[dict[str, Any], dict[str, Any]]:
    result = trained(kind)
    artifact = copy.deepcopy(result.artifact)
    manifest = copy.deepcopy(result.manifests["BTC/USDT"])
    match change:
        case "format":
            artifact["format"] = "pickle"
        case "kind":
            artifact["kind"] = "svm"
        case "coef_length":
            artifact["coef"] = artifact["coef"][:-1]
        case "coef_nan":
            artifact["coef"][0] = float("nan")
        case "zero_scale":
            artifact["scaler"]["scale"][2] = 0.0
        case "coef_text":
            artifact["coef"][0] = "0.1"
        case "tree_backwards":
            artifact["trees"][0]["left"][0] = 0
        case "tree_feature":
            artifact["trees"][0]["feature"][0] = 99
        case "tree_missing":
            del artifact["trees"][1]["value"]
        case "no_trees":
            artifact["trees"] = []
        case "manifest_id":
            del manifest["model_id"]
        case "manifest_features":
            manifest["feature_names"] = manifest["feature_names"][::-1]
        case "manifest_horizon":
            manifest["horizon"] = 0
        case "manifest_expiry":
            manifest["expires_at"] = "2025-07-30 12:00"
    return artifact, manifest


@pytest.mark.parametrize(("kind", "change", "message"), [
    ("logistic", "format", "format"), ("logistic", "kind", "kind"), ("logistic", "coef_length", "coef"),
    ("logistic", "coef_nan", "non-finite"), ("logistic", "zero_scale", "scale"),
    ("logistic", "coef_text", "coef"),
    ("gbdt", "tree_backwards", "child index"), ("gbdt", "tree_feature", "feature"),
    ("gbdt", "tree_missing", "missing value"), ("gbdt", "no_trees", "trees"),
    ("logistic", "manifest_id", "model_id"), ("logistic", "manifest_features", "feature_names"),
    ("logistic", "manifest_horizon", "horizon"), ("logistic", "manifest_expiry", "UTC offset"),
])
def test_malformed_artifacts_are_refused_with_the_reason(kind: str, change: str, message: str) -> None:
    artifact, manifest = _broken(kind, change)
    with pytest.raises(ModelError, match=message):
        load_model(artifact, manifest)


def test_serving_imports_numpy_only() -> None:
    """The predict Lambda cannot carry scikit-learn, pandas or scipy: load + predict must not import them."""
    code = (
        "import sys, numpy as np\n"
        "from traderai.adapters.model_registry import BundledModels\n"
        "from traderai.core.features import compute_features\n"
        "from traderai.market.csv import bundled_candles_path, load_candles_csv\n"
        "c = load_candles_csv(bundled_candles_path('BTC/USDT'), 'BTC/USDT').tail(500)\n"
        "p = BundledModels().get('BTC/USDT', '15m').predict_proba(compute_features(c)[-1:])\n"
        "assert 0 < p[0] < 1\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'pandas', 'scipy'))\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_cli_train_writes_the_registry_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from traderai.cli import main

    csv = tmp_path / "ETH_USDT-15m.csv"
    c = markets()[1]
    rows = "\n".join(f"{t},{o},{h},{lo},{cl},{v}" for t, o, h, lo, cl, v in zip(
        c.open_time_ms, c.open, c.high, c.low, c.close, c.volume, strict=True))
    csv.write_text("timestamp,open,high,low,close,volume\n" + rows + "\n")
    out = tmp_path / "models"
    assert main(["train", "--data", str(csv), "--kind", "logistic", "--horizon", "2", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    model_id = summary["models"]["ETH/USDT"]
    assert set(summary["outcome_brier_skill"]) == {"LONG", "SHORT"}
    assert set(summary["edge_evidence"]["ETH/USDT"]) == {"LONG", "SHORT"}
    pointer = json.loads((out / "ETH_USDT" / "15m" / "latest.json").read_text())
    assert pointer["model_id"] == model_id and pointer["key"] == f"ETH_USDT/15m/{model_id}/model.json"
    served = BundledModels(out).get("ETH/USDT", "15m")
    assert served.model_id == model_id and served.horizon == 2
