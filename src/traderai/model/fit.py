"""The fitting primitives: a classifier, its calibrator, their plain-JSON export, and the metrics.

Shared by training (`traderai.train`, the shipped models) and research (`traderai.research`, the
walk-forward evaluation), which both sit above this module. scikit-learn is imported inside each
function: the module is importable without it (only fitting needs it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from traderai.model.serving import ARTIFACT_FORMAT

DEFAULT_GBDT_PARAMS: dict[str, Any] = {
    "max_iter": 100, "max_leaf_nodes": 15, "learning_rate": 0.05, "min_samples_leaf": 200, "l2_regularization": 1.0}


def _logit(probability: np.ndarray) -> np.ndarray:
    raw = np.clip(probability, 1e-12, 1.0 - 1e-12)
    return (np.log(raw) - np.log1p(-raw))[:, None]


def calibrate_with(calibrator: Any | None, raw_probability: np.ndarray) -> np.ndarray:
    """Apply a fitted scikit-learn calibrator (see `fit_calibrator`) to raw probabilities."""
    if calibrator is None:
        return raw_probability
    if isinstance(calibrator, BinnedIsotonic):
        return calibrator.predict(raw_probability)
    return calibrator.predict_proba(_logit(raw_probability))[:, 1]


def fit_estimator(kind: str, features: np.ndarray, labels: np.ndarray, *, gbdt_params: dict[str, Any] | None = None,
                  logistic_c: float = 1.0, seed: int = 0) -> Any:
    """Fit a fresh classifier on these rows only (the logistic scaler too: it sits inside the pipeline)."""
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        estimator = make_pipeline(StandardScaler(), LogisticRegression(C=logistic_c, max_iter=2000))
    else:
        from sklearn.ensemble import HistGradientBoostingClassifier

        estimator = HistGradientBoostingClassifier(early_stopping=False, random_state=seed,
                                                   **(gbdt_params or DEFAULT_GBDT_PARAMS))
    return estimator.fit(features, labels.astype(np.int64))


CALIBRATION_BOUNDS = (0.01, 0.99)  # a calibrated probability never claims certainty
MIN_CALIBRATION_STEP_ROWS = 1000
"""No isotonic step rests on fewer calibration rows than this. A step's level is the up-rate of its rows,
a proportion near 0.5 whose standard error is √(0.25 / n): 0.016 at 1,000 rows, so a level of 0.55
(the default MIN_CONFIDENCE) sits ~3 standard errors from 0.5 and noise alone cannot carry a step across
the confidence threshold. (The shipped map used to send raw ≥ 0.74 to 0.99 on 2 rows: s.e. 0.35.)"""


def _isotonic_bins(raw_probability: np.ndarray, labels: np.ndarray,
                   min_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean raw, mean label, rows) of consecutive quantile bins of raw probability, each of >= min_rows rows
    (one bin with every row when there are fewer than `min_rows`)."""
    order = np.argsort(raw_probability, kind="stable")
    groups = np.array_split(order, max(1, raw_probability.shape[0] // min_rows))
    return (np.array([raw_probability[g].mean() for g in groups]), np.array([labels[g].mean() for g in groups]),
            np.array([g.shape[0] for g in groups], dtype=np.int64))


@dataclass(frozen=True, slots=True)
class BinnedIsotonic:
    """An IsotonicRegression fitted on quantile-bin means (weights = bin rows), and the calibration rows
    behind each of its steps (a step = a run of equal levels; PAV only ever merges whole bins)."""

    regression: Any
    bin_x: np.ndarray
    bin_rows: np.ndarray

    def predict(self, raw_probability: np.ndarray) -> np.ndarray:
        return self.regression.predict(raw_probability)

    def step_rows(self) -> dict[float, int]:
        """Level -> calibration rows it rests on."""
        rows: dict[float, int] = {}
        for level, count in zip(self.regression.predict(self.bin_x).tolist(), self.bin_rows.tolist(), strict=True):
            rows[level] = rows.get(level, 0) + count
        return rows


def fit_calibrator(kind: str, raw_probability: np.ndarray, labels: np.ndarray,
                   min_step_rows: int = MIN_CALIBRATION_STEP_ROWS) -> Any:
    """Fit a calibrator on held-out rows: isotonic (a step map bounded to CALIBRATION_BOUNDS, fitted on
    quantile bins of >= `min_step_rows` rows so that no step rests on fewer) or sigmoid (Platt scaling: a
    logistic regression on the raw logit, effectively unregularised)."""
    labels = labels.astype(np.float64)
    if kind == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        x, y, rows = _isotonic_bins(np.asarray(raw_probability, dtype=np.float64), labels, min_step_rows)
        regression = IsotonicRegression(y_min=CALIBRATION_BOUNDS[0], y_max=CALIBRATION_BOUNDS[1], increasing=True,
                                        out_of_bounds="clip").fit(x, y, sample_weight=rows.astype(np.float64))
        return BinnedIsotonic(regression, x, rows)
    if kind == "sigmoid":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=1e6, max_iter=1000).fit(_logit(raw_probability), labels.astype(np.int64))
    raise ValueError(f"calibration must be 'isotonic' or 'sigmoid', got {kind!r}")


def calibration_document(calibrator: Any) -> dict[str, Any]:
    """The fitted calibrator as the artifact's plain-JSON calibration (`serving.apply_calibration`).

    Isotonic: interpolation points x/y plus, per point, the calibration rows its step rests on."""
    if isinstance(calibrator, BinnedIsotonic):
        regression, steps = calibrator.regression, calibrator.step_rows()
        y = [float(v) for v in regression.y_thresholds_]
        return {"kind": "isotonic", "x": [float(v) for v in regression.X_thresholds_], "y": y,
                "rows": [int(steps[v]) for v in y]}
    return {"kind": "sigmoid", "a": float(calibrator.coef_[0, 0]), "b": float(calibrator.intercept_[0])}


def fit_calibration(kind: str, raw_probability: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Fit a calibrator and return its plain-JSON form."""
    return calibration_document(fit_calibrator(kind, raw_probability, labels))


def export_estimator(estimator: Any, kind: str, feature_names: Sequence[str]) -> dict[str, Any]:
    """The fitted estimator as the plain JSON artifact `serving.load_model` reads (no pickle)."""
    artifact: dict[str, Any] = {"format": ARTIFACT_FORMAT, "kind": kind, "feature_names": list(feature_names)}
    if kind == "logistic":
        scaler, logistic = estimator[0], estimator[-1]
        if list(logistic.classes_) != [0, 1]:
            raise ValueError(f"expected classes [0, 1], got {list(logistic.classes_)}")
        artifact["scaler"] = {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()}
        artifact["coef"] = logistic.coef_[0].tolist()
        artifact["intercept"] = float(logistic.intercept_[0])
        return artifact
    if list(estimator.classes_) != [0, 1] or estimator.n_trees_per_iteration_ != 1:
        raise ValueError("expected a binary HistGradientBoostingClassifier")
    # _predictors / _baseline_prediction are private: the serving test pins the export to
    # scikit-learn's own predict_proba, so a changed layout fails there, not in production.
    trees = []
    for (predictor,) in estimator._predictors:
        nodes = predictor.nodes
        if nodes["is_categorical"].any():
            raise ValueError("categorical splits are not exported")
        leaf = nodes["is_leaf"].astype(bool)
        trees.append({
            "feature": np.where(leaf, -1, nodes["feature_idx"]).tolist(),
            "threshold": [None if is_leaf else _json_float(t) for is_leaf, t in zip(
                leaf.tolist(), nodes["num_threshold"].tolist(), strict=True)],
            "left": nodes["left"].astype(np.int64).tolist(),
            "right": nodes["right"].astype(np.int64).tolist(),
            "missing_left": nodes["missing_go_to_left"].astype(np.int64).tolist(),
            "is_leaf": leaf.astype(np.int64).tolist(),
            "value": np.where(leaf, nodes["value"], 0.0).tolist(),
        })
    artifact["baseline"] = float(np.asarray(estimator._baseline_prediction).reshape(-1)[0])
    artifact["trees"] = trees
    return artifact


def _json_float(value: float) -> float | str:
    if np.isposinf(value):
        return "inf"
    if np.isneginf(value):
        return "-inf"
    return value


def classification_metrics(labels: np.ndarray, probability: np.ndarray) -> dict[str, float | int | None]:
    """AUC (None if one class only), accuracy at 0.5, Brier score, log loss, rows and up-rate."""
    from sklearn.metrics import (
        accuracy_score,
        brier_score_loss,
        log_loss,
        roc_auc_score,
    )

    labels = labels.astype(np.int64)
    clipped = np.clip(probability, 1e-15, 1 - 1e-15)
    both = len(np.unique(labels)) == 2
    return {"auc": float(roc_auc_score(labels, probability)) if both else None,
            "accuracy": float(accuracy_score(labels, probability >= 0.5)),
            "brier": float(brier_score_loss(labels, probability)),
            "log_loss": float(log_loss(labels, clipped, labels=[0, 1])),
            "rows": int(labels.shape[0]), "up_rate": float(labels.mean())}
