"""Train the up-move classifier and export it as plain JSON for the numpy server (CLI only).

This module imports scikit-learn and must never be imported by a Lambda handler: the predict
path loads the exported JSON with `traderai.model.serving` (numpy only).

Label: ``close[t + horizon] > close[t]`` (default horizon 4 candles = 1 h at 15m). In a
5-fold walk-forward on 2.7 years of BTC/ETH/SOL/BNB 15m candles, horizon 4 had a higher
out-of-sample AUC than 16 (0.537 vs 0.526) and it is short enough that a stretch of candles
gives many independent labels.

Split: by calendar time across all markets, so a market's test stretch never sits inside another
market's training stretch: fit on the oldest stretch, calibrate (isotonic) on the stretch after it,
test on everything after the cut; each boundary has a purge gap of the label's horizon, so no label
reaches across it. The shipped model is the one fitted and calibrated before the cut, so its test
metrics describe exactly the model that serves. `traderai evaluate` (research/walkforward.py) runs
the same recipe in expanding walk-forward folds and compares labelings and model families.

Beside it (issue 12, `TrainConfig.outcome`), the outcome model of `model/outcome.py`: per side the
probabilities of the traded bracket's five outcomes, fitted before the same calibration cut, shrunk
toward the class base rates on the calibration slice and tested after the same test cut, each boundary
purged by the bracket's life (96 candles). Its JSON goes into the same artifact (`outcome`); each
market's manifest gets the evidence of `research/evidence.py` measured on the unseen stretch
(`edge_evidence`, `ev_buckets`) and the EV calibration on every unseen candle (`ev_calibration`).
The isotonic calibration is fitted on quantile bins of >= MIN_CALIBRATION_STEP_ROWS rows (`model/fit.py`).

The fitting primitives both share are `model/fit.py`. Training sits above research: the manifest's
evidence is a backtest of the unseen test stretch (`research/evidence.py`).
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from traderai.contracts import TIMEFRAME_SECONDS, Candles, Strategy, iso_utc
from traderai.core.features import FEATURE_NAMES, WARMUP_CANDLES, atr, compute_features
from traderai.model.fit import (
    DEFAULT_GBDT_PARAMS,
    calibrate_with,
    calibration_document,
    classification_metrics,
    export_estimator,
    fit_calibrator,
    fit_estimator,
)
from traderai.model.labels import (
    BARRIER_CANDLES,
    BARRIER_SL_ATR,
    BARRIER_TP_ATR,
    LABELINGS,
    OUTCOMES,
    triple_barrier_labels,
)
from traderai.model.layout import market_key, pointer_document
from traderai.model.outcome import (
    SIDES,
    Bracket,
    OutcomeModel,
    OutcomeSide,
    brier,
    class_rates,
    expected_value_pct,
    export_outcome,
    fit_outcome_estimator,
    fit_shrink,
    log_loss,
    outcome_rows,
)
from traderai.model.serving import MODEL_KINDS
from traderai.research.evidence import market_evidence
from traderai.research.stats import block_length_ms, calibration_figures
from traderai.research.walkforward import prepare_market
from traderai.settings import normalize_symbol

QUANTILE_LEVELS = tuple(round(0.1 * i, 1) for i in range(11))  # min, deciles, max


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """What to fit; defaults are the shipped models' settings."""

    horizon: int = 4
    kind: str = "logistic"  # or "gbdt"; logistic + isotonic won the walk-forward (docs/model-quality.md)
    test_fraction: float = 0.2
    expires_days: float = 90.0
    seed: int = 0
    gbdt_params: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_GBDT_PARAMS))
    logistic_c: float = 1.0
    labeling: str = "direction"  # or "triple_barrier" (model/labels.py); sets what probability means
    calibration: str | None = "isotonic"  # or "sigmoid"; fitted on `calibration_fraction` of the pre-test stretch
    calibration_fraction: float = 0.2
    outcome: bool = True  # also fit the outcome model (model/outcome.py) and the manifest's edge evidence
    outcome_c: float = 1.0
    min_expected_value_pct: float | None = None  # the EV filter the evidence applies; None: the Strategy's

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError("horizon must be at least one candle")
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"kind must be one of {MODEL_KINDS}")
        if not 0.0 < self.test_fraction < 0.9:
            raise ValueError("test_fraction must be in (0, 0.9)")
        if self.labeling not in LABELINGS:
            raise ValueError(f"labeling must be one of {LABELINGS}")
        if self.calibration not in (None, "isotonic", "sigmoid") or not 0.0 < self.calibration_fraction < 0.9:
            raise ValueError("calibration must be None, 'isotonic' or 'sigmoid'; calibration_fraction in (0, 0.9)")

    @property
    def label_horizon(self) -> int:
        """Candles the label looks ahead: the purge between fit, calibration and test slices."""
        if self.labeling == "triple_barrier":
            return BARRIER_CANDLES
        return self.horizon

    @property
    def label_text(self) -> str:
        """What a probability of this model means, written into the manifest."""
        if self.labeling == "triple_barrier":
            return (f"P(LONG TP1 +{BARRIER_TP_ATR:g}xATR is hit before its SL -{BARRIER_SL_ATR:g}xATR | the LONG or "
                    f"the SHORT setup hits its TP1 before its SL within {BARRIER_CANDLES} candles)")
        return f"close[t+{self.horizon}] > close[t]"


@dataclass(frozen=True, slots=True)
class CalibratedEstimator:
    """A fitted scikit-learn classifier followed by its calibrator (IsotonicRegression or a
    LogisticRegression on the raw logit), both scikit-learn objects: the reference the served model
    is pinned to."""

    estimator: Any
    calibrator: Any | None

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        raw = self.estimator.predict_proba(features)[:, 1]
        return np.column_stack([1.0 - (p := calibrate_with(self.calibrator, raw)), p])


@dataclass(frozen=True, slots=True)
class Dataset:
    """Complete rows (features and label known) of all markets, pooled."""

    features: np.ndarray  # (n, k)
    labels: np.ndarray  # (n,) 0/1
    open_time_ms: np.ndarray  # (n,) candle open time
    market: np.ndarray  # (n,) index into `symbols`
    symbols: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TrainingResult:
    """The exported artifact, one manifest per market it is published for, and the evaluation."""

    artifact: dict[str, Any]
    manifests: dict[str, dict[str, Any]]  # symbol -> manifest
    metrics: dict[str, Any]
    estimator: Any  # the fitted scikit-learn object (for tests and research)
    test_features: np.ndarray
    test_labels: np.ndarray
    outcome_model: Any = None  # model.outcome.OutcomeModel (scikit-learn reference), None without one
    outcome_test_features: np.ndarray | None = None


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def make_labels(close: np.ndarray, horizon: int) -> np.ndarray:
    """1.0 where close[t + horizon] > close[t], 0.0 where not, NaN for the last `horizon` rows."""
    close = np.asarray(close, dtype=np.float64)
    labels = np.full(close.shape[0], np.nan)
    if close.shape[0] > horizon:
        labels[:-horizon] = (close[horizon:] > close[:-horizon]).astype(np.float64)
    return labels


def build_dataset(markets: Sequence[Candles], horizon: int, labeling: str = "direction") -> Dataset:
    """Features and labels of every market, warm-up and unlabelled rows dropped, pooled."""
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    symbols = tuple(c.symbol for c in markets)
    for index, candles in enumerate(markets):
        features = compute_features(candles)
        if labeling == "triple_barrier":
            labels = triple_barrier_labels(candles.high, candles.low, candles.close,
                                           atr(candles.high, candles.low, candles.close))
        else:
            labels = make_labels(candles.close, horizon)
        ok = ~np.isnan(features).any(axis=1) & ~np.isnan(labels)
        parts.append((features[ok], labels[ok], candles.open_time_ms[ok],
                      np.full(int(ok.sum()), index, dtype=np.int64)))
    if not parts or sum(p[0].shape[0] for p in parts) == 0:
        raise ValueError("no complete rows: give more candles than the feature warm-up")
    features, labels, open_time_ms, market = (np.concatenate([p[i] for p in parts]) for i in range(4))
    return Dataset(features, labels, open_time_ms, market, symbols=symbols)


def time_split(open_time_ms: np.ndarray, horizon: int, timeframe: str,
               test_fraction: float) -> tuple[np.ndarray, np.ndarray, int]:
    """(train mask, test mask, cut time ms): calendar cut with a purge of `horizon` candles.

    A training row's label must be known (its horizon candle closed) before the cut.
    """
    step_ms = TIMEFRAME_SECONDS[timeframe] * 1000
    first, last = int(open_time_ms.min()), int(open_time_ms.max())
    cut = first + int((last - first) * (1.0 - test_fraction))
    cut -= cut % step_ms
    train = open_time_ms + (horizon + 1) * step_ms <= cut
    test = open_time_ms >= cut
    return train, test, cut


def _fit(config: TrainConfig, features: np.ndarray, labels: np.ndarray) -> Any:
    return fit_estimator(config.kind, features, labels, gbdt_params=config.gbdt_params,
                         logistic_c=config.logistic_c, seed=config.seed)


def _subset(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The rows of `outer` (a mask) selected by `inner` (a mask over outer's true rows), as a full mask."""
    full = np.zeros_like(outer)
    full[np.flatnonzero(outer)[inner]] = True
    return full


def model_id_for(symbol: str, timeframe: str, trained_at: datetime) -> str:
    """`{BASE}_{QUOTE}_{timeframe}_{YYYYMMDD_HHMMSS}` (trained time, UTC), as the seed names models."""
    base_quote = normalize_symbol(symbol).replace("/", "_").replace(":", "_")
    return f"{base_quote}_{timeframe}_{trained_at.astimezone(UTC).strftime('%Y%m%d_%H%M%S')}"


def _quantiles(features: np.ndarray) -> dict[str, list[float]]:
    values = np.quantile(features, QUANTILE_LEVELS, axis=0)
    return {name: [float(v) for v in values[:, j]] for j, name in enumerate(FEATURE_NAMES)}


def _iso_ms(ms: int) -> str:
    return iso_utc(datetime.fromtimestamp(ms / 1000, tz=UTC))


def _versions() -> dict[str, str]:
    import sklearn

    import traderai

    return {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__,
            "traderai": traderai.__version__}


def train(markets: Sequence[Candles], publish_for: Sequence[str], timeframe: str, config: TrainConfig,
          trained_at: datetime, progress: Progress = _quiet, sources: Sequence[str] = ()) -> TrainingResult:
    """Fit one model on the pooled markets; one manifest per market in `publish_for`.

    Every market's candles must be of `timeframe`. Pooling works because every feature is
    scale-free; a market in `publish_for` that is not in the data gets the pooled quantiles.
    """
    if not markets:
        raise ValueError("no candles to train on")
    wrong = [c.symbol for c in markets if c.timeframe != timeframe]
    if wrong:
        raise ValueError(f"candles of {wrong} are not {timeframe}")
    purge = config.label_horizon
    progress(f"features and labels for {len(markets)} market(s), label {config.label_text}")
    data = build_dataset(markets, config.horizon, config.labeling)
    train_mask, test_mask, cut = time_split(data.open_time_ms, purge, timeframe, config.test_fraction)
    calibration_mask = np.zeros_like(train_mask)
    _, _, calibration_cut = time_split(data.open_time_ms[train_mask], purge, timeframe, config.calibration_fraction)
    if config.calibration:
        # The calibration slice is the last part of the pre-test stretch; the model is fitted before it.
        before_cut = train_mask
        fit_rows, calibration_rows, _ = time_split(data.open_time_ms[before_cut], purge, timeframe,
                                                   config.calibration_fraction)
        train_mask = _subset(before_cut, fit_rows)
        calibration_mask = _subset(before_cut, calibration_rows)
    if train_mask.sum() < 500 or test_mask.sum() < 100 or (config.calibration and calibration_mask.sum() < 100):
        raise ValueError(f"too few rows to train/calibrate/test honestly ({int(train_mask.sum())} train / "
                         f"{int(calibration_mask.sum())} calibration / {int(test_mask.sum())} test)")
    x_train, y_train = data.features[train_mask], data.labels[train_mask]
    x_test, y_test = data.features[test_mask], data.labels[test_mask]
    progress(f"fitting {config.kind} on {x_train.shape[0]:,} rows, calibrating on {int(calibration_mask.sum()):,}, "
             f"testing on {x_test.shape[0]:,} unseen rows (from {_iso_ms(cut)})")
    raw_estimator = _fit(config, x_train, y_train)
    calibrator = None
    if config.calibration:
        raw_calibration = raw_estimator.predict_proba(data.features[calibration_mask])[:, 1]
        calibrator = fit_calibrator(config.calibration, raw_calibration, data.labels[calibration_mask])
    estimator = CalibratedEstimator(raw_estimator, calibrator)
    progress("evaluating on the unseen stretch")
    p_test = estimator.predict_proba(x_test)[:, 1]
    base_rate = float(y_train.mean())
    metrics: dict[str, Any] = {
        "test": classification_metrics(y_test, p_test),
        "baseline": {**classification_metrics(y_test, np.full(y_test.shape[0], base_rate)),
                     "auc": 0.5, "rule": "always predict the training up-rate"},
        "train": classification_metrics(y_train, estimator.predict_proba(x_train)[:, 1]),
        "test_uncalibrated": classification_metrics(y_test, raw_estimator.predict_proba(x_test)[:, 1]),
        "per_symbol": {},
    }
    for index, symbol in enumerate(data.symbols):
        rows = data.market[test_mask] == index
        if rows.sum() >= 100:
            metrics["per_symbol"][symbol] = classification_metrics(y_test[rows], p_test[rows])

    artifact = export_estimator(raw_estimator, config.kind, FEATURE_NAMES)
    if calibrator is not None:
        artifact["calibration"] = calibration_document(calibrator)
    outcome_part: OutcomePart | None = None
    if config.outcome:
        outcome_part = _train_outcome(markets, data, p_test, test_mask, calibration_cut, cut, timeframe, config,
                                      progress)
        artifact["outcome"] = outcome_part.document
        metrics["outcome"] = outcome_part.metrics
    digest = hashlib.sha256(json.dumps(artifact, sort_keys=True).encode()).hexdigest()
    train_times, test_times = data.open_time_ms[train_mask], data.open_time_ms[test_mask]
    common = {
        "timeframe": timeframe, "horizon": purge, "kind": config.kind,
        "label": config.label_text, "labeling": config.labeling, "calibration": config.calibration,
        "feature_names": list(FEATURE_NAMES), "warmup_candles": WARMUP_CANDLES,
        "trained_at": iso_utc(trained_at),
        "expires_at": iso_utc(trained_at + timedelta(days=config.expires_days)),
        "training_symbols": list(data.symbols),
        "data": {"first_candle": _iso_ms(int(data.open_time_ms.min())),
                 "last_candle": _iso_ms(int(data.open_time_ms.max())),
                 "train": {"from": _iso_ms(int(train_times.min())), "to": _iso_ms(int(train_times.max())),
                           "rows": int(train_mask.sum())},
                 "test": {"from": _iso_ms(int(test_times.min())), "to": _iso_ms(int(test_times.max())),
                          "rows": int(test_mask.sum())},
                 "calibration": ({"rows": int(calibration_mask.sum()),
                                  "from": _iso_ms(int(data.open_time_ms[calibration_mask].min())),
                                  "to": _iso_ms(int(data.open_time_ms[calibration_mask].max()))}
                                 if calibration_mask.any() else None),
                 "purge_candles": purge, "sources": list(sources)},
        "metrics": metrics,
        "params": (config.gbdt_params if config.kind == "gbdt" else {"C": config.logistic_c})
        | {"seed": config.seed, "test_fraction": config.test_fraction,
           "calibration_fraction": config.calibration_fraction},
        "versions": _versions(), "artifact_sha256": digest,
    }
    manifests = {}
    for symbol in publish_for:
        symbol = normalize_symbol(symbol)
        own = (data.market == data.symbols.index(symbol) if symbol in data.symbols
               else np.ones_like(train_mask))
        quantile_rows = data.features[train_mask & own]
        evidence = (outcome_part.evidence.get(symbol) if outcome_part is not None else None) or {}
        manifests[symbol] = {"model_id": model_id_for(symbol, timeframe, trained_at), "symbol": symbol,
                             **common,
                             # Out-of-sample evidence of THIS market (CONTRACT-12); None = unproven.
                             "edge_evidence": evidence.get("edge_evidence"),
                             "evidence_details": evidence.get("evidence_details"),
                             "ev_buckets": evidence.get("ev_buckets"),
                             "ev_calibration": evidence.get("ev_calibration"),
                             "feature_quantiles": {"levels": list(QUANTILE_LEVELS),
                                                   "source": symbol if symbol in data.symbols else "pooled",
                                                   "values": _quantiles(quantile_rows)}}
    progress(f"test AUC {metrics['test']['auc']:.4f}, Brier {metrics['test']['brier']:.5f} "
             f"(baseline {metrics['baseline']['brier']:.5f})")
    return TrainingResult(artifact=artifact, manifests=manifests, metrics=metrics, estimator=estimator,
                          test_features=x_test, test_labels=y_test,
                          outcome_model=outcome_part.model if outcome_part is not None else None,
                          outcome_test_features=outcome_part.test_features if outcome_part is not None else None)


@dataclass(frozen=True, slots=True)
class OutcomePart:
    """What `_train_outcome` adds: the artifact section, metrics, per-market evidence, the reference model."""

    document: dict[str, Any]
    metrics: dict[str, Any]
    evidence: dict[str, dict[str, Any]]  # symbol -> market_evidence(...)
    model: Any  # model.outcome.OutcomeModel
    test_features: np.ndarray


def _outcome_metrics(probability: np.ndarray, outcome: np.ndarray, base: np.ndarray) -> dict[str, Any]:
    base_p = np.broadcast_to(base, probability.shape)
    model_brier, base_brier = brier(probability, outcome), brier(base_p, outcome)
    return {"rows": int(outcome.shape[0]), "brier": model_brier, "base_brier": base_brier,
            "brier_skill": 1.0 - model_brier / base_brier if base_brier > 0 else None,
            "log_loss": log_loss(probability, outcome), "base_log_loss": log_loss(base_p, outcome),
            "class_rates": [float(v) for v in class_rates(outcome)],
            "mean_predicted": [float(v) for v in probability.mean(axis=0)]}


def _train_outcome(markets: Sequence[Candles], data: Dataset, p_test: np.ndarray, test_mask: np.ndarray,
                   calibration_cut: int, cut: int, timeframe: str, config: TrainConfig,
                   progress: Progress) -> OutcomePart:
    """Fit both sides' outcome models on the fit slice, shrink them on the calibration slice, measure them
    and the manifest evidence on the unseen test stretch; slices purged by the bracket's life."""
    strategy = Strategy()
    bracket = Bracket.of_strategy(strategy, timeframe)
    rows = outcome_rows(markets, bracket)
    step_ms = TIMEFRAME_SECONDS[timeframe] * 1000
    known = rows.open_time_ms + (bracket.life_candles + 1) * step_ms
    fit_slice, calibration_slice = known <= calibration_cut, (rows.open_time_ms >= calibration_cut) & (known <= cut)
    test_slice = rows.open_time_ms >= cut
    sides: dict[str, OutcomeSide] = {}
    metrics: dict[str, Any] = {"bracket": bracket.to_dict(), "classes": list(OUTCOMES), "test": {}, "per_symbol": {},
                               "calibration": {}}
    for side in SIDES:
        y = rows.outcome[side]
        fit, cal, test = (mask & (y >= 0) for mask in (fit_slice, calibration_slice, test_slice))
        if fit.sum() < 500 or cal.sum() < 100 or test.sum() < 100:
            raise ValueError(f"too few rows for the {side} outcome model ({int(fit.sum())} fit / {int(cal.sum())} "
                             f"calibration / {int(test.sum())} test)")
        progress(f"outcome model {side}: fitting on {int(fit.sum()):,} rows, shrink on {int(cal.sum()):,}, "
                 f"testing on {int(test.sum()):,}")
        estimator = fit_outcome_estimator(rows.features[fit], y[fit], c=config.outcome_c)
        prior = class_rates(y[fit | cal])
        weight = fit_shrink(estimator.predict_proba(rows.features[cal]), y[cal], prior)
        expiry = fit & (y == OUTCOMES.index("expiry"))
        exits = tuple(float(v) for v in rows.exit_atr[side][expiry].mean(axis=0)) if expiry.any() else (0.0,) * 3
        sides[side] = OutcomeSide(estimator, weight, prior, exits)  # type: ignore[arg-type]
        p = sides[side].predict_proba(rows.features[test])
        metrics["calibration"][side] = {"kind": "shrink", "weight": weight, "prior": [float(v) for v in prior],
                                        "rows": int(cal.sum())}
        metrics["test"][side] = {**_outcome_metrics(p, y[test], prior),
                                 "uncalibrated": _outcome_metrics(estimator.predict_proba(rows.features[test]),
                                                                  y[test], prior)}
        for index, symbol in enumerate(rows.symbols):
            mine = rows.market[test] == index
            if mine.sum() >= 100:
                own = class_rates(y[(fit | cal) & (rows.market == index)])
                entry = _outcome_metrics(p[mine], y[test][mine], prior)
                entry["brier_skill_vs_own_rates"] = 1.0 - entry["brier"] / _outcome_metrics(
                    np.broadcast_to(own, p[mine].shape), y[test][mine], prior)["brier"]
                metrics["per_symbol"].setdefault(symbol, {})[side] = entry
        progress(f"outcome model {side}: shrink weight {weight:.3f}, test Brier skill "
                 f"{metrics['test'][side]['brier_skill']:+.5f}")
    model = OutcomeModel(sides, bracket)

    calibration = _ev_calibration(rows, sides, test_slice, bracket, strategy, step_ms)
    min_ev = (config.min_expected_value_pct if config.min_expected_value_pct is not None
              else float(getattr(strategy, "min_expected_value_pct", 0.0)))
    evidence = {}
    for index, candles in enumerate(markets):
        frame = prepare_market(candles, labelings=())
        probability = np.full(len(candles), np.nan)
        mine = data.market[test_mask] == index
        probability[np.searchsorted(candles.open_time_ms, data.open_time_ms[test_mask][mine])] = p_test[mine]
        test_rows = test_slice & (rows.market == index)
        candle_rows = rows.row[test_rows]
        outcome_probability = {}
        for side in SIDES:
            per_candle = np.full((len(candles), len(OUTCOMES)), np.nan)
            if candle_rows.shape[0]:
                per_candle[candle_rows] = sides[side].predict_proba(rows.features[test_rows])
            outcome_probability[side] = per_candle
        evidence[candles.symbol] = market_evidence(
            frame, probability, outcome_probability, {s: sides[s].expiry_exit_atr for s in SIDES}, bracket,
            strategy, min_ev)
        evidence[candles.symbol]["ev_calibration"] = calibration.get(candles.symbol)
        shown = evidence[candles.symbol]["edge_evidence"]
        progress(f"evidence {candles.symbol}: " + ", ".join(
            f"{s} n={shown[s]['n']} mean={_fmt(shown[s]['mean_net_pct'])} se={_fmt(shown[s]['se_pct'])}"
            for s in SIDES))
    return OutcomePart(document=export_outcome(model), metrics=metrics, evidence=evidence, model=model,
                       test_features=rows.features[test_slice])


def _ev_calibration(rows: Any, sides: Mapping[str, Any], test_slice: np.ndarray, bracket: Any, strategy: Any,
                    step_ms: int) -> dict[str, dict[str, Any]]:
    """Per market and side, on EVERY labelled candle of the unseen test stretch (not only the seed's signals):
    the EV the model predicts for that side's bracket vs the net that bracket realised (the tracker's rule,
    costs in), overall and by EV decile, with block standard errors (the brackets of consecutive candles
    overlap: calendar blocks of two lives are the independent units, research/stats.py)."""
    weights = np.asarray(strategy.tp_weights, dtype=np.float64)
    block_ms = block_length_ms(bracket.life_candles * step_ms)
    out: dict[str, dict[str, Any]] = {}
    for side, fitted in sides.items():
        labelled = test_slice & (rows.outcome[side] >= 0)
        predicted = expected_value_pct(fitted.predict_proba(rows.features[labelled]), rows.atr_pct[labelled],
                                       strategy.tp_weights, bracket, fitted.expiry_exit_atr, strategy.costs_pct)
        realised = (rows.exit_atr[side][labelled] @ weights) * rows.atr_pct[labelled] - strategy.costs_pct
        market = rows.market[labelled]
        for index, symbol in enumerate(rows.symbols):
            mine = market == index
            if mine.any():
                out.setdefault(symbol, {})[side] = _json_safe(calibration_figures(
                    predicted[mine], realised[mine], rows.open_time_ms[labelled][mine], block_ms))
    return out


def _json_safe(value: Any) -> Any:
    """NaN / infinite figures (e.g. a correlation of too few points) as null: manifests are strict JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def dump_json(document: dict[str, Any]) -> bytes:
    """Compact, key-sorted JSON bytes: small artifacts and byte-identical output for identical models."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def write_local(result: TrainingResult, out_dir: Path, *, replace: bool = False) -> list[Path]:
    """Write `{out}/{BASE_QUOTE}/{tf}/{model_id}/model.json|manifest.json` and move `latest.json`.

    The same layout as the S3 registry (prefix = out_dir). With `replace`, older model folders of
    each market are removed first (used for the bundled models, so the package holds one each).
    """
    written = []
    for manifest in result.manifests.values():
        market_dir = out_dir / market_key("", manifest["symbol"], manifest["timeframe"]).strip("/")
        if replace and market_dir.is_dir():
            shutil.rmtree(market_dir)
        model_dir = market_dir / manifest["model_id"]
        model_dir.mkdir(parents=True, exist_ok=True)
        for name, document in (("model.json", result.artifact), ("manifest.json", manifest)):
            (model_dir / name).write_bytes(dump_json(document))
            written.append(model_dir / name)
        pointer = pointer_document("", manifest)
        (market_dir / "latest.json").write_bytes(dump_json(pointer))
        written.append(market_dir / "latest.json")
    return written
