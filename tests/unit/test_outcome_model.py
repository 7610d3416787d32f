"""The outcome model: trained on the tracker's labels, calibrated on a later slice, served = scikit-learn,
evidence in the manifest, and the isotonic calibration resting on enough rows everywhere."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache

import numpy as np
import pytest

from traderai.contracts import Candles, Strategy
from traderai.market.csv import bundled_candles_path, load_candles_csv
from traderai.model import labels, serving
from traderai.model.fit import MIN_CALIBRATION_STEP_ROWS, calibration_document, fit_calibrator
from traderai.model.outcome import (
    Bracket,
    brier,
    expected_value_pct,
    fit_shrink,
    newey_west_se,
    outcome_rows,
    payoff_atr,
    shrink,
)
from traderai.model.serving import ModelError, ServedModel, load_model
from traderai.train import TrainConfig, TrainingResult, dump_json, train

TRAINED_AT = datetime(2025, 5, 1, 12, 0, 0, tzinfo=UTC)


@cache
def markets() -> tuple[Candles, ...]:
    return tuple(load_candles_csv(bundled_candles_path(s), s).tail(4000) for s in ("SOL/USDT", "ETH/USDT"))


@cache
def trained() -> TrainingResult:
    return train(markets(), ["SOL/USDT", "ETH/USDT", "XRP/USDT"], "15m", TrainConfig(), TRAINED_AT)


def served(symbol: str = "SOL/USDT") -> ServedModel:
    result = trained()
    return load_model(json.loads(dump_json(result.artifact)), json.loads(dump_json(result.manifests[symbol])))


def test_served_outcome_probabilities_equal_scikit_learn_on_the_unseen_stretch() -> None:
    result = trained()
    rows = result.outcome_test_features
    assert rows is not None and rows.shape[0] > 1000
    got = served().predict_outcomes(rows)
    assert got is not None
    for side in ("LONG", "SHORT"):
        expected = result.outcome_model.sides[side].predict_proba(rows)
        np.testing.assert_allclose(got[side], expected, rtol=0, atol=1e-9)
        assert (got[side] >= 0).all() and np.allclose(got[side].sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_the_artifact_carries_the_bracket_and_expiry_exits_the_strategy_trades() -> None:
    model = served()
    strategy = Strategy()
    assert model.bracket == {"sl_atr": strategy.sl_atr_multiplier, "tp_atr": list(strategy.tp_atr_multipliers),
                             "life_candles": 96}
    exits = model.expiry_exit_atr
    assert exits is not None and set(exits) == {"LONG", "SHORT"}
    # Expiry exits lie between the stop and TP3 (a tranche that filled left at its TP; the others above the stop).
    assert all(-1.0 < e < 6.0 for side in exits.values() for e in side)
    assert serving.OUTCOMES == labels.OUTCOMES


def test_slices_are_purged_by_the_bracket_life() -> None:
    manifest = trained().manifests["SOL/USDT"]
    outcome = manifest["metrics"]["outcome"]
    assert outcome["bracket"]["life_candles"] == 96
    assert outcome["calibration"]["LONG"]["rows"] >= 100
    # Brier skill is reported per market and side against the pre-test base rates.
    for side in ("LONG", "SHORT"):
        entry = outcome["per_symbol"]["SOL/USDT"][side]
        assert entry["brier_skill"] == pytest.approx(1 - entry["brier"] / entry["base_brier"])


def test_the_manifest_carries_evidence_of_its_own_market_and_none_for_an_unseen_one() -> None:
    result = trained()
    for symbol in ("SOL/USDT", "ETH/USDT"):
        evidence = result.manifests[symbol]["edge_evidence"]
        assert set(evidence) == {"LONG", "SHORT"}
        for side in evidence.values():
            assert isinstance(side["n"], int) and side["n"] >= 0
            assert (side["mean_net_pct"] is None) == (side["n"] == 0)
        assert result.manifests[symbol]["evidence_details"]["counts"]["predicted"] > 0
    assert result.manifests["XRP/USDT"]["edge_evidence"] is None  # never seen: unproven


def test_malformed_outcome_sections_are_refused() -> None:
    result = trained()
    manifest = result.manifests["SOL/USDT"]
    for change, message in ((lambda o: o["sides"].pop("SHORT"), "outcome.sides"),
                            (lambda o: o["sides"]["LONG"]["calibration"].update(weight=1.5), "weight must be"),
                            (lambda o: o["sides"]["LONG"]["coef"].pop(), "outcome.sides.LONG.coef"),
                            (lambda o: o.update(classes=["stop"]), "outcome.classes"),
                            (lambda o: o["bracket"].update(life_candles=0), "outcome.bracket")):
        artifact = json.loads(dump_json(result.artifact))
        change(artifact["outcome"])
        with pytest.raises(ModelError, match=message):
            load_model(artifact, manifest)
    artifact = json.loads(dump_json(result.artifact))
    del artifact["outcome"]
    assert load_model(artifact, manifest).predict_outcomes(np.zeros(18)) is None


def test_the_shrink_falls_back_to_the_base_rate_when_the_model_knows_nothing() -> None:
    rng = np.random.default_rng(0)
    prior = np.array([0.6, 0.1, 0.1, 0.1, 0.1])
    outcome = rng.choice(5, size=5000, p=prior)
    noise = rng.dirichlet(np.ones(5), size=5000)  # confident and meaningless
    assert fit_shrink(noise, outcome, prior) > 0.95
    truth = np.full((5000, 5), 0.025)
    truth[np.arange(5000), outcome] = 0.9  # a model that is right 90 % of the time
    assert fit_shrink(truth, outcome, prior) < 0.05
    np.testing.assert_allclose(shrink(noise, prior, 1.0), np.broadcast_to(prior, noise.shape))
    assert brier(np.broadcast_to(prior, noise.shape), outcome) < brier(noise, outcome)


def test_expected_value_is_the_contracts_probability_weighted_payoff() -> None:
    strategy = Strategy()
    bracket = Bracket.of_strategy(strategy, "15m")
    p = np.array([[0.6, 0.1, 0.05, 0.15, 0.1]])
    exits = (2.0, 0.5, 0.5)
    # Entry 100, ATR 1: sl 1 %, TPs 2 / 3.5 / 6 %; thirds.
    payoffs = [-1.0, 2 / 3 - 2 / 3, 2 / 3 + 3.5 / 3 - 1 / 3, (2 + 3.5 + 6) / 3, (2.0 + 0.5 + 0.5) / 3]
    hand = sum(pi * v for pi, v in zip(p[0], payoffs, strict=True)) - strategy.costs_pct
    got = expected_value_pct(p, np.array([1.0]), strategy.tp_weights, bracket, exits, strategy.costs_pct)
    assert got[0] == pytest.approx(hand, abs=1e-12)
    np.testing.assert_allclose(payoff_atr(strategy.tp_weights, bracket, exits), payoffs, atol=1e-12)


def test_newey_west_never_understates_the_naive_error_and_grows_with_serial_correlation() -> None:
    rng = np.random.default_rng(1)
    iid = rng.normal(size=2000)
    naive = iid.std(ddof=1) / np.sqrt(iid.shape[0])
    assert newey_west_se(iid) >= naive
    ar = np.empty(2000)
    ar[0] = 0.0
    for t in range(1, 2000):
        ar[t] = 0.7 * ar[t - 1] + iid[t]
    assert newey_west_se(ar) > 1.5 * ar.std(ddof=1) / np.sqrt(2000)
    assert np.isnan(newey_west_se(np.array([1.0])))


def test_outcome_rows_label_both_sides_with_the_trackers_labels() -> None:
    candles = markets()[0]
    rows = outcome_rows([candles])
    from traderai.core.features import atr

    step = 15 * 60 * 1000
    expected = labels.outcome_labels(candles.high, candles.low, candles.close,
                                     atr(candles.high, candles.low, candles.close), long=False,
                                     open_time_ms=candles.open_time_ms, step_ms=step)
    np.testing.assert_array_equal(rows.outcome["SHORT"], expected.outcome[rows.row])
    assert (rows.outcome["LONG"][-96:] == labels.UNLABELLED).all()


def test_no_isotonic_step_rests_on_fewer_than_the_minimum_rows() -> None:
    rng = np.random.default_rng(2)
    raw = np.clip(rng.normal(0.5, 0.04, 12_345), 0, 1)
    raw[:2] = [0.8, 0.9]  # two extreme rows, both up: the old map sent them to 0.99 alone
    up = (rng.random(raw.shape[0]) < 0.5).astype(float)
    up[:2] = 1.0
    document = calibration_document(fit_calibrator("isotonic", raw, up))
    assert min(document["rows"]) >= MIN_CALIBRATION_STEP_ROWS
    assert sum(dict(zip(document["y"], document["rows"], strict=True)).values()) == raw.shape[0]
    # The top step is the up-rate of the top rows it rests on, not of the two extreme rows.
    top = np.argsort(raw, kind="stable")[-document["rows"][-1]:]
    assert document["y"][-1] == pytest.approx(up[top].mean())
    assert serving.apply_calibration(document, np.array([0.95]))[0] < 0.6


def _predict(model: ServedModel):
    from traderai.contracts import MarketInfo
    from traderai.services.predict import predict_market
    from traderai.settings import Settings

    candles = markets()[0].tail(500)
    info = MarketInfo(symbol="SOL/USDT", amount_step=0.01, price_step=0.01, quote_volume_24h=2e9)
    tick = datetime.fromtimestamp(int(candles.open_time_ms[-1]) / 1000 + 900, tz=UTC)
    return candles, predict_market(candles, info, model, Settings(), tick, tick)


def test_every_prediction_carries_the_outcome_fields_of_its_model_and_market() -> None:
    from traderai.contracts import Prediction
    from traderai.core.features import compute_features

    model = served()
    candles, prediction = _predict(model)
    expected = model.predict_outcomes(compute_features(candles)[-1])
    assert prediction.outcome_probabilities is not None and expected is not None
    for side in ("LONG", "SHORT"):
        got = prediction.outcome_probabilities[side]
        assert list(got) == list(labels.OUTCOMES)
        np.testing.assert_allclose(list(got.values()), expected[side][0], rtol=0, atol=0)
        assert abs(sum(got.values()) - 1.0) <= 1e-9
    assert prediction.bracket == model.bracket and prediction.expiry_exit_atr == model.expiry_exit_atr
    # The evidence is the manifest's, reduced to the contract's keys; a side without signals is left out.
    manifest = model.manifest["edge_evidence"]
    shown = prediction.edge_evidence or {}
    for side in ("LONG", "SHORT"):
        if manifest[side]["n"] >= 2:
            assert shown[side] == {k: manifest[side][k] for k in ("n", "mean_net_pct", "se_pct")}
        else:
            assert side not in shown
    # The log line round-trips through the contract unchanged.
    again = Prediction.from_dict(json.loads(json.dumps(prediction.to_dict())))
    assert again.outcome_probabilities == prediction.outcome_probabilities
    assert again.bracket == prediction.bracket and again.edge_evidence == prediction.edge_evidence


def test_a_model_without_an_outcome_part_or_evidence_predicts_none_of_them() -> None:
    result = trained()
    artifact = json.loads(dump_json(result.artifact))
    del artifact["outcome"]
    manifest = json.loads(dump_json(result.manifests["SOL/USDT"]))
    manifest["edge_evidence"] = {"LONG": {"n": 0, "mean_net_pct": None, "se_pct": None}}
    _, prediction = _predict(load_model(artifact, manifest))
    assert prediction.outcome_probabilities is None and prediction.bracket is None
    assert prediction.expiry_exit_atr is None and prediction.edge_evidence is None
    assert 0.0 <= prediction.probability <= 1.0  # the direction model serves as before


def test_outcome_serving_imports_numpy_only(tmp_path) -> None:
    import subprocess
    import sys

    from traderai.train import write_local

    write_local(trained(), tmp_path)
    code = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from traderai.adapters.model_registry import BundledModels\n"
        f"m = BundledModels(Path({str(tmp_path)!r})).get('SOL/USDT', '15m')\n"
        "p = m.predict_outcomes(np.zeros(18))\n"
        "assert abs(p['LONG'].sum() - 1) < 1e-9\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'pandas', 'scipy'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


@pytest.mark.parametrize("symbol", ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT"])
def test_every_step_of_the_shipped_calibrations_rests_on_enough_rows(symbol: str) -> None:
    from traderai.adapters.model_registry import BundledModels

    model = BundledModels().get(symbol, "15m")
    import importlib.resources as resources
    from pathlib import Path

    root = Path(str(resources.files("traderai") / "data" / "models"))
    artifact = json.loads((root / symbol.replace("/", "_") / "15m" / model.model_id / "model.json").read_text())
    calibration = artifact["calibration"]
    assert calibration["kind"] == "isotonic"
    assert min(calibration["rows"]) >= MIN_CALIBRATION_STEP_ROWS
    steps = dict(zip(calibration["y"], calibration["rows"], strict=True))
    assert sum(steps.values()) == model.manifest["data"]["calibration"]["rows"]
    assert model.predict_outcomes(np.zeros(18)) is not None and model.manifest["edge_evidence"] is not None


def test_ev_calibration_compares_predicted_ev_with_the_brackets_realised_net_on_every_test_candle() -> None:
    result = trained()
    figures = result.manifests["SOL/USDT"]["ev_calibration"]
    rows = outcome_rows([markets()[0]])
    manifest = result.manifests["SOL/USDT"]
    cut = manifest["data"]["test"]["from"]
    from traderai.contracts import parse_iso_utc

    cut_ms = int(parse_iso_utc(cut).timestamp() * 1000)
    strategy = Strategy()
    for side in ("LONG", "SHORT"):
        labelled = (rows.open_time_ms >= cut_ms) & (rows.outcome[side] >= 0)
        assert figures[side]["n"] == int(labelled.sum()) > 100
        # Realised net of each candle's bracket, by hand from the labels: thirds at their exit distances.
        realised = rows.exit_atr[side][labelled].mean(axis=1) * rows.atr_pct[labelled] - strategy.costs_pct
        assert figures[side]["mean_realised"] == pytest.approx(realised.mean(), abs=1e-9)
        predicted = expected_value_pct(result.outcome_model.sides[side].predict_proba(rows.features[labelled]),
                                       rows.atr_pct[labelled], strategy.tp_weights, Bracket(),
                                       result.outcome_model.sides[side].expiry_exit_atr, strategy.costs_pct)
        assert figures[side]["mean_predicted"] == pytest.approx(predicted.mean(), abs=1e-9)
        assert figures[side]["se"] > 0 and len(figures[side]["deciles"]) == 10


def test_the_shipped_models_predictions_give_the_signal_step_the_ev_the_evidence_used() -> None:
    """Live EV (core, from the prediction's fields) = the EV the manifest's evidence was measured with."""
    from traderai.adapters.model_registry import BundledModels
    from traderai.contracts import MarketInfo
    from traderai.core.features import atr, compute_features
    from traderai.core.signals import decide
    from traderai.services.predict import predict_market
    from traderai.settings import Settings

    model = BundledModels().get("SOL/USDT", "15m")
    full = load_candles_csv(bundled_candles_path("SOL/USDT"), "SOL/USDT")
    info = MarketInfo(symbol="SOL/USDT", amount_step=0.01, price_step=0.01, quote_volume_24h=2e9)
    strategy = Strategy(min_confidence=0.5)  # the shipped models never reach 0.55: look at the EV, not the filter
    checked = 0
    for end in range(len(full) - 400, len(full) - 100, 7):
        candles = full.slice(end - 500, end)
        tick = datetime.fromtimestamp(int(candles.open_time_ms[-1]) / 1000 + 900, tz=UTC)
        prediction = predict_market(candles, info, model, Settings(), tick, tick)
        decision, signal = decide(prediction, strategy, decided_at=tick)
        if signal is None:
            continue
        side = decision.side
        row = compute_features(candles)[-1]
        atr_pct = atr(candles.high, candles.low, candles.close)[-1] / candles.close[-1] * 100
        expected = expected_value_pct(model.predict_outcomes(row)[side], np.array([atr_pct]), strategy.tp_weights,
                                      Bracket(), model.expiry_exit_atr[side], strategy.costs_pct)[0]
        assert decision.expected_value_pct == pytest.approx(expected, abs=1e-9)
        assert not signal.tradeable and "no_proven_edge" in signal.paper_reasons  # the evidence has no signals
        checked += 1
    assert checked >= 3


def test_candles_of_the_test_stretch_never_reach_either_model_or_their_calibrations() -> None:
    """Purging: scrambling every candle from the cut on leaves the whole artifact unchanged (the outcome
    labels of the last calibration rows end before the cut), while the test metrics do change."""
    from dataclasses import replace as dc_replace

    from traderai.contracts import parse_iso_utc

    result = trained()
    cut_ms = int(parse_iso_utc(result.manifests["SOL/USDT"]["data"]["test"]["from"]).timestamp() * 1000)
    rng = np.random.default_rng(5)
    changed = []
    for candles in markets():
        later = candles.open_time_ms >= cut_ms
        scale = np.where(later, rng.uniform(0.7, 1.3, len(candles)), 1.0)
        wider = np.where(later, 1.01, 1.0)
        changed.append(dc_replace(candles, open=candles.open * scale, high=candles.high * scale * wider,
                                  low=candles.low * scale / wider, close=candles.close * scale))
    again = train(changed, ["SOL/USDT", "ETH/USDT"], "15m", TrainConfig(), TRAINED_AT)
    assert dump_json(again.artifact) == dump_json(result.artifact)
    assert again.metrics["outcome"]["test"] != result.metrics["outcome"]["test"]
