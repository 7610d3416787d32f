"""Walk-forward: time-ordered purged folds, baselines in the same run, calibrated OOS probabilities, the CLI."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from traderai.cli import main
from traderai.market.csv import bundled_candles_path, load_candles_csv
from traderai.model.labels import BARRIER_CANDLES
from traderai.model.serving import ModelError, load_model
from traderai.research.walkforward import (
    BASELINES,
    MarketFrame,
    WalkForwardConfig,
    WalkForwardResult,
    make_folds,
    prepare_market,
    walk_forward,
    winner,
)
from traderai.train import TrainConfig, TrainingResult, dump_json, train

STEP = 900_000
SMALL_GBDT = {"max_iter": 20, "max_leaf_nodes": 7, "learning_rate": 0.1, "min_samples_leaf": 100,
              "l2_regularization": 1.0}


@cache
def frames() -> tuple[MarketFrame, ...]:
    return tuple(prepare_market(load_candles_csv(bundled_candles_path(s), s).tail(6000))
                 for s in ("BTC/USDT", "ETH/USDT"))


@cache
def result() -> WalkForwardResult:
    return walk_forward(frames(), WalkForwardConfig(folds=3, gbdt_params=SMALL_GBDT))


def test_test_blocks_tile_the_end_of_the_calendar_in_order() -> None:
    times = np.arange(10_000, dtype=np.int64) * STEP
    folds = make_folds(times, 4, 0.4, 1.0, STEP)
    assert folds[0].test_start_ms == 6000 * STEP and folds[-1].test_end_ms == 10_000 * STEP
    for before, after in itertools.pairwise(folds):
        assert before.test_end_ms == after.test_start_ms
    for fold in folds:
        assert fold.cal_start_ms < fold.test_start_ms < fold.test_end_ms
        assert fold.test_start_ms - fold.cal_start_ms == 1000 * STEP  # one block of calibration


@pytest.mark.parametrize("purge", [4, BARRIER_CANDLES])
def test_train_calibration_and_test_are_disjoint_and_purged_by_the_label_horizon(purge: int) -> None:
    times = np.arange(10_000, dtype=np.int64) * STEP
    for fold in make_folds(times, 3, 0.5, 0.5, STEP):
        train, calibration, test = fold.masks(times, purge, STEP)
        assert not (train & calibration).any() and not (calibration & test).any() and not (train & test).any()
        # The last training label (candle t + purge) closes by the calibration start; the same for calibration.
        assert times[train].max() + (purge + 1) * STEP <= fold.cal_start_ms
        assert times[calibration].max() + (purge + 1) * STEP <= fold.test_start_ms
        assert times[calibration].min() == fold.cal_start_ms and times[test].min() == fold.test_start_ms
        assert times[test].max() < fold.test_end_ms


def test_every_family_labeling_calibration_and_baseline_is_reported() -> None:
    r = result()
    models = {*BASELINES, "gbdt", "gbdt+isotonic", "gbdt+sigmoid", "logistic", "logistic+isotonic",
              "logistic+sigmoid"}
    for labeling in ("direction", "triple_barrier"):
        assert {row["model"] for row in r.overall if row["labeling"] == labeling} == models
        assert {row["fold"] for row in r.per_fold if row["labeling"] == labeling} == {0, 1, 2}
    for row in r.overall:
        assert set(row) >= {"auc", "accuracy", "brier", "log_loss", "brier_skill", "rows"}
    assert r.row("direction", "base_rate")["brier_skill"] == 0.0
    curve = r.curves["direction/logistic+isotonic"]
    assert len(curve["predicted"]) == 10 and sum(curve["rows"]) == r.row("direction", "logistic")["rows"]


def test_out_of_sample_probabilities_exist_exactly_on_test_blocks() -> None:
    r = result()
    first_test = min(f["test_from"] for f in r.folds)
    p = r.oos[("direction", "logistic+sigmoid")]
    in_test = np.isfinite(p)
    from datetime import UTC, datetime

    start_ms = datetime.strptime(first_test, "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp() * 1000
    assert in_test.any() and (r.rows.open_time_ms[in_test] >= start_ms).all()
    assert not in_test[r.rows.open_time_ms < start_ms].any()
    assert ((p[in_test] > 0) & (p[in_test] < 1)).all()


def test_the_base_rate_baseline_is_the_training_up_rate_of_each_fold() -> None:
    r = result()
    base = r.oos[("direction", "base_rate")]
    values = np.unique(base[np.isfinite(base)])
    assert 1 <= values.shape[0] <= 3 and ((values > 0.4) & (values < 0.6)).all()


def test_the_winner_is_a_trained_model() -> None:
    labeling, model = winner(result())
    assert labeling in ("direction", "triple_barrier") and model not in BASELINES


def test_backtest_cli_writes_a_report_with_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["backtest", "--bundled", "--folds", "3", "--model", "logistic+sigmoid", "--report", str(tmp_path)])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["counts"]) == {"BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT"}
    for name in ("backtest.md", "backtest.json", "calibration.png", "equity.png", "expected_vs_realised.png",
                 "ev_deciles.png"):
        assert (tmp_path / name).stat().st_size > 0
    page = (tmp_path / "backtest.md").read_text()
    assert "By confidence bucket" in page and "expected_vs_realised.png" in page
    # The expected-value section: per market calibration, tradeable vs paper, the replayed protection locks.
    assert "Expected value and the edge gate" in page and "ev_deciles.png" in page
    assert "### Protection locks" in page
    edge = json.loads((tmp_path / "backtest.json").read_text())["edge"]
    assert set(edge["markets"]) == {"BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT"}
    for market in edge["markets"].values():
        assert market["tradeable"]["n"] + market["paper"]["n"] == market["calibration"]["n"]
    assert edge["protections"]["simulated"] is True


def test_backtest_cli_refuses_an_unknown_model(tmp_path: Path) -> None:
    assert main(["backtest", "--bundled", "--model", "svm", "--report", str(tmp_path)]) == 2


def test_search_cli_refuses_candles_other_than_15m(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The search builds 1h and 4h itself from 15m candles; given 1h candles it says so instead of running.
    assert main(["evaluate", "--search", "--bundled", "--timeframe", "1h", "--report", str(tmp_path)]) == 2
    assert "give 15m candles" in capsys.readouterr().err


# --- the calibrated artifact the predict path serves ---------------------------------------------

TRAINED_AT = datetime(2025, 5, 1, tzinfo=UTC)


@cache
def shipped(kind: str, calibration: str, labeling: str = "direction") -> TrainingResult:
    markets = [frame.candles.tail(2500) for frame in frames()]
    config = TrainConfig(kind=kind, calibration=calibration, labeling=labeling, gbdt_params=SMALL_GBDT)
    return train(markets, ["BTC/USDT"], "15m", config, TRAINED_AT)


@pytest.mark.parametrize(("kind", "calibration"), [("gbdt", "sigmoid"), ("logistic", "isotonic"),
                                                   ("logistic", "sigmoid")])
def test_served_calibrated_probabilities_equal_scikit_learns(kind: str, calibration: str) -> None:
    result = shipped(kind, calibration)
    served = load_model(json.loads(dump_json(result.artifact)), json.loads(dump_json(result.manifests["BTC/USDT"])))
    assert result.artifact["calibration"]["kind"] == calibration
    expected = result.estimator.predict_proba(result.test_features)[:, 1]
    np.testing.assert_allclose(served.predict_proba(result.test_features), expected, rtol=0, atol=1e-9)


def test_the_manifest_says_what_the_probability_means() -> None:
    manifest = shipped("logistic", "isotonic", "triple_barrier").manifests["BTC/USDT"]
    assert manifest["labeling"] == "triple_barrier" and manifest["horizon"] == BARRIER_CANDLES
    assert "TP1" in manifest["label"] and manifest["calibration"] == "isotonic"
    assert manifest["data"]["train"]["to"] < manifest["data"]["calibration"]["from"] < manifest["data"]["test"]["from"]


@pytest.mark.parametrize("calibration", [{"kind": "platt"}, {"kind": "isotonic", "x": [0.2, 0.1], "y": [0.1, 0.2]},
                                         {"kind": "isotonic", "x": [0.1, 0.2], "y": [0.1]},
                                         {"kind": "sigmoid", "a": "1"}])
def test_a_malformed_calibration_is_refused(calibration: dict) -> None:
    result = shipped("logistic", "isotonic")
    artifact = {**result.artifact, "calibration": calibration}
    with pytest.raises(ModelError, match="calibration"):
        load_model(artifact, result.manifests["BTC/USDT"])
