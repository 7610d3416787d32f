"""Drift: PSI of recent feature rows against the manifest's training quantiles, on every prediction."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traderai.adapters.model_registry import BundledModels
from traderai.contracts import MarketInfo, RejectReason, Strategy
from traderai.core.drift import DRIFT_WINDOW, MIN_DRIFT_ROWS, drift_score, feature_psi, psi
from traderai.core.features import FEATURE_NAMES, compute_features
from traderai.core.signals import decide
from traderai.market.csv import bundled_candles_path, load_candles_csv
from traderai.model.serving import load_model
from traderai.services.predict import predict_market
from traderai.settings import Settings

LEVELS = np.linspace(0.0, 1.0, 11)
NOW = datetime(2025, 4, 30, 0, 5, tzinfo=UTC)


def reference(rng: np.random.Generator) -> np.ndarray:
    return np.quantile(rng.normal(size=50_000), LEVELS)


def test_a_sample_of_the_training_distribution_scores_near_zero() -> None:
    rng = np.random.default_rng(1)
    assert psi(reference(rng), LEVELS, rng.normal(size=20_000)) < 0.01


def test_a_shifted_distribution_scores_as_a_large_shift() -> None:
    rng = np.random.default_rng(2)
    assert psi(reference(rng), LEVELS, rng.normal(loc=1.0, size=5_000)) > 0.25


def test_psi_is_the_textbook_sum_over_decile_bins() -> None:
    edges = np.arange(11.0)  # bins [0,1), [1,2), ... each 10% of the reference
    values = np.array([0.5] * 20 + [5.5] * 80)  # 20% in bin 0, 80% in bin 5, none elsewhere
    floor = 1e-4
    expected = (0.2 - 0.1) * np.log(0.2 / 0.1) + (0.8 - 0.1) * np.log(0.8 / 0.1) \
        + 8 * (floor - 0.1) * np.log(floor / 0.1)
    assert psi(edges, LEVELS, values) == pytest.approx(expected, rel=1e-12)


def test_tied_quantiles_merge_into_one_bin_so_a_zero_heavy_feature_is_not_drift() -> None:
    rng = np.random.default_rng(3)
    train = np.where(rng.random(50_000) < 0.5, 0.0, rng.exponential(size=50_000))  # half exactly zero
    edges = np.quantile(train, LEVELS)
    assert (edges[:5] == 0).all()
    same = np.where(rng.random(5_000) < 0.5, 0.0, rng.exponential(size=5_000))
    assert psi(edges, LEVELS, same) < 0.02
    assert psi(edges, LEVELS, np.zeros(5_000)) > 0.25  # a feature stuck at zero is drift


def test_nan_values_are_ignored() -> None:
    rng = np.random.default_rng(4)
    edges = reference(rng)
    values = rng.normal(size=1000)
    with_nan = np.concatenate([values, [np.nan] * 50])
    assert psi(edges, LEVELS, with_nan) == psi(edges, LEVELS, values)
    assert np.isnan(psi(edges, LEVELS, np.array([np.nan])))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), tied=st.integers(0, 8), missing=st.integers(0, 2), nan_share=st.floats(0, 1))
def test_feature_psi_is_psi_of_each_column(seed: int, tied: int, missing: int, nan_share: float) -> None:
    """All features at once (one padded bin table) gives psi() of every column: tied quantiles (fewer bins),
    features the manifest lacks (NaN), NaN values and all-NaN columns."""
    rng = np.random.default_rng(seed)
    names = [f"f{j}" for j in range(5)]
    values = {name: list(np.quantile(rng.normal(size=2_000) * (j + 1), LEVELS)) for j, name in enumerate(names)}
    values["f1"] = [0.0] * tied + list(np.linspace(0.1, 1.0, 11 - tied))  # a zero-heavy feature: merged bins
    for name in names[5 - missing:]:
        del values[name]
    window = rng.normal(size=(300, 5)) * 2
    window[:40, 1] = 0.0  # values ON an edge belong to the bin above it
    window[40:60, 0] = values["f0"][3]
    window[rng.random(window.shape) < nan_share] = np.nan
    window[:, 2] = np.nan if seed % 5 == 0 else window[:, 2]
    quantiles = {"levels": list(LEVELS), "values": values}
    got = feature_psi(quantiles, window, names)
    want = [psi(values[name], LEVELS, window[:, j]) if name in values else np.nan for j, name in enumerate(names)]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert feature_psi(quantiles, window, names) is not got and np.array_equal(
        feature_psi(quantiles, window, names), got, equal_nan=True)  # the cached table serves the same


def _btc(n: int = 500):
    return load_candles_csv(bundled_candles_path("BTC/USDT"), "BTC/USDT").tail(n)


def test_drift_score_is_the_mean_psi_of_the_last_window_of_complete_rows() -> None:
    manifest = BundledModels().get("BTC/USDT", "15m").manifest
    features = compute_features(_btc())
    complete = features[np.isfinite(features).all(axis=1)]
    expected = feature_psi(manifest["feature_quantiles"], complete[-DRIFT_WINDOW:], FEATURE_NAMES).mean()
    assert drift_score(manifest["feature_quantiles"], features, FEATURE_NAMES) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("quantiles", [None, {}, {"levels": list(LEVELS)}])
def test_no_quantiles_in_the_manifest_means_no_drift_score(quantiles: dict | None) -> None:
    assert drift_score(quantiles, np.zeros((400, len(FEATURE_NAMES))), FEATURE_NAMES) is None


def test_too_few_complete_rows_give_no_score() -> None:
    manifest = BundledModels().get("BTC/USDT", "15m").manifest
    features = compute_features(_btc(200 + MIN_DRIFT_ROWS - 2))
    assert drift_score(manifest["feature_quantiles"], features, FEATURE_NAMES) is None


def _served_with_shifted_quantiles(shift: float):
    model = BundledModels().get("BTC/USDT", "15m")
    manifest = copy.deepcopy(dict(model.manifest))
    values = manifest["feature_quantiles"]["values"]
    for name in values:
        spread = values[name][-1] - values[name][0]
        values[name] = [v + shift * spread for v in values[name]]
    import json
    from importlib import resources
    from pathlib import Path

    root = Path(str(resources.files("traderai") / "data" / "models"))
    pointer = json.loads((root / "BTC_USDT" / "15m" / "latest.json").read_text())
    artifact = json.loads((root / pointer["key"]).read_text())
    return load_model(artifact, manifest)


def test_every_prediction_carries_a_drift_score_and_a_high_one_is_gated() -> None:
    # Given the bundled BTC model and the last 500 bundled candles
    candles = _btc()
    info = MarketInfo(symbol="BTC/USDT", amount_step=0.00001, price_step=0.01, quote_volume_24h=2e9)
    settings = Settings()
    model = BundledModels().get("BTC/USDT", "15m")
    tick = datetime.fromtimestamp(int(candles.open_time_ms[-1]) / 1000 + 900, tz=UTC)
    # When predict runs with the real manifest and with one whose training quantiles sit far away
    normal = predict_market(candles, info, model, settings, tick, NOW.replace(year=2026, month=11, day=25))
    shifted = predict_market(candles, info, _served_with_shifted_quantiles(3.0), settings, tick,
                             NOW.replace(year=2026, month=11, day=25))
    # Then both carry a finite score, the shifted one is large and the configured gate rejects it as drift
    assert normal.drift_score is not None and 0 <= normal.drift_score < shifted.drift_score
    assert shifted.drift_score > 1.0
    gated = Strategy(max_drift_psi=1.0, min_confidence=0.5, min_net_profit_pct=-100)
    decision, _ = decide(shifted, gated, decided_at=tick)
    assert RejectReason.DRIFT.value in decision.reasons
