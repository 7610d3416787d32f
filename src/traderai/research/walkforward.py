"""Walk-forward evaluation: expanding windows by calendar time, purged, calibrated, against baselines.

Every fold of every (labeling, model family) is laid out on the pooled calendar of all markets::

    |---------- train (expanding) ----------|purge|-- calibration --|purge|--- test block ---|
    first candle                             cal_start                  test_start     test_end

- A training row's label must be known (its last look-ahead candle closed) before `cal_start`; a
  calibration row's before `test_start`. The purge is the longest label horizon (96 candles), so
  both labelings, and a run of one labeling alone, see exactly the same rows and the same gaps.
- Test blocks tile the last `test_span` of the calendar; no row is ever shuffled across time.
- The model is fitted on the train slice only (the logistic scaler inside its pipeline too), the
  calibrations (isotonic and sigmoid, both evaluated) on the calibration slice only, and all are
  applied unchanged to the test block.
- Baselines are fitted on the same train slice: the base rate ("always up" at the training
  up-rate) and previous-move persistence (P(label | last 4-candle move up/down) from training).

The out-of-sample probabilities of every test block, concatenated, are what the backtest trades.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from traderai.contracts import TIMEFRAME_SECONDS, Candles
from traderai.core.features import atr as atr_of
from traderai.core.features import compute_features
from traderai.model.fit import DEFAULT_GBDT_PARAMS, classification_metrics, fit_calibration, fit_estimator
from traderai.model.labels import DIRECTION_HORIZON, LABELINGS, label_horizon, make_labels_for
from traderai.model.serving import apply_calibration

FAMILIES = ("gbdt", "logistic")
BASELINES = ("base_rate", "persistence")
CALIBRATIONS = ("isotonic", "sigmoid")
QUOTE_VOLUME_WINDOW = 96  # candles in 24 h of 15m candles


def quote_volume_window(timeframe: str) -> int:
    """Candles in 24 h of this timeframe (96 at 15m, 24 at 1h, 6 at 4h): the liquidity filter's window."""
    return max(1, 86_400 // TIMEFRAME_SECONDS[timeframe])

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class MarketFrame:
    """One market's candles with everything derived from them: features, ATR, 24h volume, labels."""

    candles: Candles
    features: np.ndarray  # (n, k)
    atr: np.ndarray  # Wilder ATR(14), price units
    quote_volume_24h: np.ndarray  # sum of close x volume over the last 24 h of candles (incl. t); NaN before
    labels: dict[str, np.ndarray]

    @property
    def symbol(self) -> str:
        return self.candles.symbol


def prepare_market(candles: Candles, labelings: Sequence[str] = LABELINGS) -> MarketFrame:
    """Features (past only) and labels (future only) of one market."""
    atr_values = atr_of(candles.high, candles.low, candles.close)
    quote = np.asarray(candles.close) * np.asarray(candles.volume)
    cumulative = np.concatenate([[0.0], np.cumsum(quote)])
    volume_24h = np.full(len(candles), np.nan)
    window = quote_volume_window(candles.timeframe)
    if len(candles) >= window:
        volume_24h[window - 1:] = cumulative[window:] - cumulative[:-window]
    labels = {name: make_labels_for(name, candles.high, candles.low, candles.close, atr_values)
              for name in labelings}
    return MarketFrame(candles=candles, features=compute_features(candles), atr=atr_values,
                       quote_volume_24h=volume_24h, labels=labels)


@dataclass(frozen=True, slots=True)
class PooledRows:
    """Rows with complete features from every market, in market order (labels may be NaN)."""

    features: np.ndarray
    open_time_ms: np.ndarray
    market: np.ndarray  # index into `symbols`
    row: np.ndarray  # index into that market's candles
    labels: dict[str, np.ndarray]
    prev_up: np.ndarray  # close[t] > close[t - 4]: the persistence baseline's input
    symbols: tuple[str, ...]


def pool(frames: Sequence[MarketFrame]) -> PooledRows:
    """Concatenate the complete-feature rows of every market."""
    parts: dict[str, list[np.ndarray]] = {"features": [], "time": [], "market": [], "row": [], "prev": []}
    label_parts: dict[str, list[np.ndarray]] = {name: [] for name in frames[0].labels}
    for index, frame in enumerate(frames):
        ok = np.flatnonzero(np.isfinite(frame.features).all(axis=1))
        close = np.asarray(frame.candles.close)
        previous = np.concatenate([np.full(DIRECTION_HORIZON, np.nan), close[:-DIRECTION_HORIZON]])
        parts["features"].append(frame.features[ok])
        parts["time"].append(frame.candles.open_time_ms[ok])
        parts["market"].append(np.full(ok.shape[0], index, dtype=np.int64))
        parts["row"].append(ok)
        parts["prev"].append(close[ok] > previous[ok])
        for name in label_parts:
            label_parts[name].append(frame.labels[name][ok])
    if sum(p.shape[0] for p in parts["row"]) == 0:
        raise ValueError("no complete feature rows: give more candles than the feature warm-up")
    return PooledRows(features=np.concatenate(parts["features"]), open_time_ms=np.concatenate(parts["time"]),
                      market=np.concatenate(parts["market"]), row=np.concatenate(parts["row"]),
                      labels={k: np.concatenate(v) for k, v in label_parts.items()},
                      prev_up=np.concatenate(parts["prev"]), symbols=tuple(f.symbol for f in frames))


@dataclass(frozen=True, slots=True)
class Fold:
    """One walk-forward step, in open-time milliseconds: calibrate in [cal_start, test_start), test in
    [test_start, test_end); train on everything whose label is known before cal_start."""

    index: int
    cal_start_ms: int
    test_start_ms: int
    test_end_ms: int

    def masks(self, open_time_ms: np.ndarray, purge_candles: int,
              step_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(train, calibration, test) row masks; a label of row t is known at t + (purge + 1) steps."""
        known = open_time_ms + (purge_candles + 1) * step_ms
        train = known <= self.cal_start_ms
        calibration = (open_time_ms >= self.cal_start_ms) & (known <= self.test_start_ms)
        test = (open_time_ms >= self.test_start_ms) & (open_time_ms < self.test_end_ms)
        return train, calibration, test


def make_folds(open_time_ms: np.ndarray, n_folds: int, test_span: float, calibration_share: float,
               step_ms: int) -> list[Fold]:
    """Test blocks tile the last `test_span` of the calendar; each calibration slice is
    `calibration_share` of a block long and ends where its test block starts."""
    if n_folds < 1 or not 0.0 < test_span < 1.0 or not 0.0 < calibration_share <= 2.0:
        raise ValueError("need n_folds >= 1, 0 < test_span < 1, 0 < calibration_share <= 2")
    first, last = int(open_time_ms.min()), int(open_time_ms.max()) + step_ms
    test_start = first + int((last - first) * (1.0 - test_span))
    block = (last - test_start) / n_folds
    folds = []
    for index in range(n_folds):
        start = test_start + round(index * block)
        end = last if index == n_folds - 1 else test_start + round((index + 1) * block)
        start -= start % step_ms
        end -= end % step_ms if index < n_folds - 1 else 0
        cal_start = start - int(block * calibration_share)
        cal_start -= cal_start % step_ms
        folds.append(Fold(index, cal_start, start, end))
    return folds


@dataclass(frozen=True, slots=True)
class WalkForwardConfig:
    """What to evaluate; defaults compare both families on both labelings in 5 expanding folds."""

    folds: int = 5
    test_span: float = 0.5
    calibration_share: float = 1.0  # calibration slice length, in test-block lengths
    families: tuple[str, ...] = FAMILIES
    labelings: tuple[str, ...] = LABELINGS
    calibrations: tuple[str, ...] = CALIBRATIONS
    timeframe: str = "15m"
    purge_candles: int | None = None  # default: the longest horizon of ALL labelings, so every run sees the same rows
    gbdt_params: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_GBDT_PARAMS))
    logistic_c: float = 1.0
    seed: int = 0
    min_train_rows: int = 500
    threads: int = 1  # OpenMP threads for the GBDT: on a shared 2-core box more threads ran ~9x slower

    @property
    def purge(self) -> int:
        return self.purge_candles if self.purge_candles is not None else max(map(label_horizon, LABELINGS))


@dataclass
class WalkForwardResult:
    """Tables of metrics (overall, per fold, per symbol), calibration curves and the OOS probabilities."""

    config: WalkForwardConfig
    rows: PooledRows
    folds: list[dict[str, Any]]
    overall: list[dict[str, Any]]
    per_fold: list[dict[str, Any]]
    per_symbol: list[dict[str, Any]]
    curves: dict[str, dict[str, list[float]]]  # "labeling/model" -> calibration curve
    oos: dict[tuple[str, str], np.ndarray]  # (labeling, "gbdt+sigmoid" etc.) -> p over pooled rows, NaN outside tests
    seconds: dict[str, float]

    def row(self, labeling: str, model: str) -> dict[str, Any]:
        """The overall metrics row of one labeling and model (e.g. "gbdt+isotonic", "base_rate")."""
        for entry in self.overall:
            if entry["labeling"] == labeling and entry["model"] == model:
                return entry
        raise KeyError((labeling, model))


def calibration_curve(labels: np.ndarray, probability: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """Equal-count bins of predicted probability: mean predicted, observed frequency, rows per bin."""
    order = np.argsort(probability, kind="stable")
    groups = [g for g in np.array_split(order, bins) if g.shape[0]]
    return {"predicted": [float(probability[g].mean()) for g in groups],
            "observed": [float(labels[g].mean()) for g in groups],
            "rows": [int(g.shape[0]) for g in groups]}


def _metrics(labels: np.ndarray, probability: np.ndarray, base_brier: float | None,
             base_log_loss: float | None) -> dict[str, Any]:
    metrics = classification_metrics(labels, probability)
    if base_brier:
        metrics["brier_skill"] = 1.0 - float(metrics["brier"]) / base_brier  # type: ignore[arg-type]
    if base_log_loss:
        metrics["log_loss_skill"] = 1.0 - float(metrics["log_loss"]) / base_log_loss  # type: ignore[arg-type]
    return metrics


def _baselines(labels_train: np.ndarray, prev_train: np.ndarray, prev_eval: np.ndarray,
               n_eval: int) -> dict[str, np.ndarray]:
    up_rate = float(labels_train.mean())
    when_up = labels_train[prev_train].mean() if prev_train.any() else up_rate
    when_down = labels_train[~prev_train].mean() if (~prev_train).any() else up_rate
    return {"base_rate": np.full(n_eval, up_rate),
            "persistence": np.where(prev_eval, float(when_up), float(when_down))}


def walk_forward(frames: Sequence[MarketFrame], config: WalkForwardConfig,
                 progress: Progress = _quiet) -> WalkForwardResult:
    """Run every fold for every labeling and family; see the module doc for the layout."""
    import sklearn.ensemble  # noqa: F401  (loads OpenMP now, so the limit below applies to it)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=config.threads):
        return _walk_forward(frames, config, progress)


def _walk_forward(frames: Sequence[MarketFrame], config: WalkForwardConfig, progress: Progress) -> WalkForwardResult:
    started = time.perf_counter()
    rows = pool(frames)
    step_ms = TIMEFRAME_SECONDS[config.timeframe] * 1000
    folds = make_folds(rows.open_time_ms, config.folds, config.test_span, config.calibration_share, step_ms)
    n = rows.open_time_ms.shape[0]
    models = [*BASELINES]
    for family in config.families:
        models += [family, *(f"{family}+{c}" for c in config.calibrations)]
    oos = {(lab, model): np.full(n, np.nan) for lab in config.labelings for model in models}
    fold_info: list[dict[str, Any]] = []
    per_fold: list[dict[str, Any]] = []
    seconds = {"fit": 0.0, "predict": 0.0}
    for fold in folds:
        train, calib, test = fold.masks(rows.open_time_ms, config.purge, step_ms)
        fold_info.append({"fold": fold.index, "train_rows": int(train.sum()), "calibration_rows": int(calib.sum()),
                          "test_rows": int(test.sum()), **_fold_times(fold, rows.open_time_ms, train)})
        for labeling in config.labelings:
            y = rows.labels[labeling]
            known = np.isfinite(y)
            tr, ca, te = train & known, calib & known, test & known
            if tr.sum() < config.min_train_rows or ca.sum() < 50 or te.sum() < 50:
                raise ValueError(f"fold {fold.index} ({labeling}): too few rows "
                                 f"({int(tr.sum())} train / {int(ca.sum())} calibration / {int(te.sum())} test)")
            test_rows = np.flatnonzero(test)
            baselines = _baselines(y[tr], rows.prev_up[tr], rows.prev_up[test_rows], test_rows.shape[0])
            for name, p in baselines.items():
                oos[(labeling, name)][test_rows] = p
            scored = te[test_rows]
            base_p = baselines["base_rate"][scored]
            y_test = y[test_rows][scored]
            base = classification_metrics(y_test, base_p)
            base_brier, base_ll = float(base["brier"]), float(base["log_loss"])  # type: ignore[arg-type]
            for name, p in baselines.items():
                per_fold.append({"fold": fold.index, "labeling": labeling, "model": name,
                                 **_metrics(y_test, p[scored], base_brier, base_ll)})
            for family in config.families:
                tick = time.perf_counter()
                estimator = fit_estimator(family, rows.features[tr], y[tr], gbdt_params=config.gbdt_params,
                                          logistic_c=config.logistic_c, seed=config.seed)
                seconds["fit"] += time.perf_counter() - tick
                tick = time.perf_counter()
                raw_cal = estimator.predict_proba(rows.features[ca])[:, 1]
                raw_test = estimator.predict_proba(rows.features[test_rows])[:, 1]
                seconds["predict"] += time.perf_counter() - tick
                variants = {family: raw_test}
                for kind in config.calibrations:
                    variants[f"{family}+{kind}"] = apply_calibration(fit_calibration(kind, raw_cal, y[ca]), raw_test)
                for model, p in variants.items():
                    oos[(labeling, model)][test_rows] = p
                    per_fold.append({"fold": fold.index, "labeling": labeling, "model": model,
                                     **_metrics(y_test, p[scored], base_brier, base_ll)})
                progress(f"fold {fold.index + 1}/{len(folds)} {labeling:<14} {family:<8} "
                         f"AUC {per_fold[-1]['auc']:.4f} (train {int(tr.sum()):,} rows)")

    overall, per_symbol, curves = [], [], {}
    for labeling in config.labelings:
        y = rows.labels[labeling]
        base_p = oos[(labeling, "base_rate")]
        scored = np.isfinite(y) & np.isfinite(base_p)
        base = classification_metrics(y[scored], base_p[scored])
        base_brier, base_ll = float(base["brier"]), float(base["log_loss"])  # type: ignore[arg-type]
        for model in models:
            p = oos[(labeling, model)]
            overall.append({"labeling": labeling, "model": model,
                            **_metrics(y[scored], p[scored], base_brier, base_ll)})
            curves[f"{labeling}/{model}"] = calibration_curve(y[scored], p[scored])
            for index, symbol in enumerate(rows.symbols):
                mine = scored & (rows.market == index)
                if mine.sum() >= 100:
                    sym_base = classification_metrics(y[mine], base_p[mine])
                    per_symbol.append({"symbol": symbol, "labeling": labeling, "model": model,
                                       **_metrics(y[mine], p[mine], float(sym_base["brier"]),  # type: ignore[arg-type]
                                                  float(sym_base["log_loss"]))})  # type: ignore[arg-type]
    seconds["total"] = time.perf_counter() - started
    return WalkForwardResult(config=config, rows=rows, folds=fold_info, overall=overall, per_fold=per_fold,
                             per_symbol=per_symbol, curves=curves, oos=oos, seconds=seconds)


def _fold_times(fold: Fold, open_time_ms: np.ndarray, train: np.ndarray) -> dict[str, str]:
    from datetime import UTC, datetime

    def iso(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")

    train_to = int(open_time_ms[train].max()) if train.any() else int(open_time_ms.min())
    return {"train_from": iso(int(open_time_ms.min())), "train_to": iso(train_to),
            "calibration_from": iso(fold.cal_start_ms), "test_from": iso(fold.test_start_ms),
            "test_to": iso(fold.test_end_ms)}


def winner(result: WalkForwardResult) -> tuple[str, str]:
    """(labeling, model) of the trained model (any family, raw or calibrated) whose OOS probabilities
    beat their own labeling's base rate by the most (Brier skill score: comparable across labelings)."""
    trained = [r for r in result.overall if r["model"] not in BASELINES]
    best = max(trained, key=lambda r: r.get("brier_skill", -1.0))
    return best["labeling"], best["model"]
