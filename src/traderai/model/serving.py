"""Serve a trained model from plain JSON with numpy alone (no scikit-learn, pandas or scipy).

The training stack does not fit the Lambda zip limit (docs/design.md), so training exports the
fitted scikit-learn model as numbers and this module replays exactly the same arithmetic:

- ``logistic``: StandardScaler then LogisticRegression: p = 1 / (1 + exp(-(((x - mean) / scale) . w + b)))
- ``gbdt``: HistGradientBoostingClassifier: p = expit(baseline + sum of leaf values), each tree
  walked with `x <= threshold` going left and NaN going where the tree learned missing values go.
- optional ``calibration`` (both kinds), fitted on a time slice after the training slice:
  ``isotonic`` is stored as its interpolation points (scikit-learn's `IsotonicRegression.predict`
  with out_of_bounds="clip" is linear interpolation between them, i.e. ``np.interp``); ``sigmoid``
  (Platt) as ``p = 1 / (1 + exp(-(a * logit(p_raw) + b)))``.

- optional ``outcome`` (issue 12): per side, the probabilities of the five outcomes of the traded
  bracket (``OUTCOMES``): StandardScaler then multinomial LogisticRegression,
  ``p = softmax(((x - mean) / scale) @ coef.T + intercept)``, then the calibration's shrink toward
  the class base rates ``p' = (1 - weight) * p + weight * prior``; with the ``bracket`` it was trained
  for and each side's ``expiry_exit_atr``.

A unit test pins the served probabilities to scikit-learn's `predict_proba` (|diff| <= 1e-9).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

ARTIFACT_FORMAT = "traderai.model/1"
MODEL_KINDS = ("logistic", "gbdt")
CALIBRATION_KINDS = ("isotonic", "sigmoid")
OUTCOMES = ("stop", "tp1_stop", "tp2_stop", "tp3", "expiry")  # = model.labels.OUTCOMES (a test pins it)
OUTCOME_SIDES = ("LONG", "SHORT")
_LOGIT_EPS = 1e-12


def apply_calibration(calibration: Mapping[str, Any] | None, probability: np.ndarray) -> np.ndarray:
    """Map raw probabilities through a calibration: isotonic points {"x", "y"} (clipped at the ends) or
    sigmoid {"a", "b"} on the raw logit; None leaves them unchanged."""
    if calibration is None:
        return probability
    if calibration["kind"] == "sigmoid":
        raw = np.clip(probability, _LOGIT_EPS, 1.0 - _LOGIT_EPS)
        logit = np.log(raw) - np.log1p(-raw)
        return 1.0 / (1.0 + np.exp(-(calibration["a"] * logit + calibration["b"])))
    # NaN (an incomplete feature row) stays NaN: np.interp over a single point would map it to that point.
    return np.where(np.isnan(probability), np.nan, np.interp(probability, calibration["x"], calibration["y"]))


class ModelError(ValueError):
    """A model artifact or manifest is malformed or does not fit the request; the message says why."""


class ModelNotFoundError(LookupError):
    """No model is published (or bundled) for this market and timeframe."""


@dataclass(frozen=True, slots=True)
class _Tree:
    feature: np.ndarray  # int64, -1 at leaves
    threshold: np.ndarray  # float64
    left: np.ndarray  # int64
    right: np.ndarray  # int64
    missing_left: np.ndarray  # bool
    is_leaf: np.ndarray  # bool
    value: np.ndarray  # float64, leaf values (0 elsewhere)
    depth: int


@dataclass(frozen=True, slots=True, eq=False)
class ServedModel:
    """A loaded model: identity from the manifest, arithmetic from the artifact."""

    model_id: str
    symbol: str
    timeframe: str
    horizon: int
    feature_names: tuple[str, ...]
    expires_at: datetime
    manifest: Mapping[str, Any]
    kind: str
    _params: Mapping[str, Any] = field(repr=False)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Probability of an up move for each row of `features` (n, k) in `feature_names` order.

        A 1-D input is one row. Rows with NaN give NaN under the logistic model (the signal step
        rejects a NaN probability as invalid); the tree model routes NaN as trained.
        """
        matrix = self._rows(features)
        if self.kind == "logistic":
            scaled = (matrix - self._params["mean"]) / self._params["scale"]
            logit = scaled @ self._params["coef"] + self._params["intercept"]
        else:
            logit = np.full(matrix.shape[0], self._params["baseline"], dtype=np.float64)
            rows = np.arange(matrix.shape[0])
            for tree in self._params["trees"]:
                logit += _walk(tree, matrix, rows)
        return apply_calibration(self._params.get("calibration"), 1.0 / (1.0 + np.exp(-logit)))

    def _rows(self, features: np.ndarray) -> np.ndarray:
        """`features` as an (n, k) float matrix in `feature_names` order (a 1-D input is one row)."""
        matrix = np.asarray(features, dtype=np.float64)
        if matrix.ndim == 1:
            matrix = matrix[None, :]
        if matrix.ndim != 2 or matrix.shape[1] != len(self.feature_names):
            raise ModelError(f"{self.model_id}: expected rows of {len(self.feature_names)} features, "
                             f"got shape {np.shape(features)}")
        return matrix

    @property
    def has_outcomes(self) -> bool:
        return self._params.get("outcome") is not None

    @property
    def bracket(self) -> dict[str, Any] | None:
        """{"sl_atr", "tp_atr": [3], "life_candles"} the outcome model was trained for; None without one."""
        outcome = self._params.get("outcome")
        return None if outcome is None else dict(outcome["bracket"])

    @property
    def expiry_exit_atr(self) -> dict[str, list[float]] | None:
        """Per side, each tranche's mean exit distance (ATR units) when the life ends open; None without one."""
        outcome = self._params.get("outcome")
        return None if outcome is None else {s: list(v["expiry_exit_atr"]) for s, v in outcome["sides"].items()}

    def predict_outcomes(self, features: np.ndarray) -> dict[str, np.ndarray] | None:
        """Per side, (n, 5) probabilities of OUTCOMES for each row (None when the model has no outcome part).

        Each row sums to 1 (a softmax, then a convex mix with a distribution); NaN features give NaN rows.
        """
        outcome = self._params.get("outcome")
        if outcome is None:
            return None
        matrix = self._rows(features)
        result = {}
        for side, p in outcome["sides"].items():
            logits = ((matrix - p["mean"]) / p["scale"]) @ p["coef"].T + p["intercept"]
            logits = logits - logits.max(axis=1, keepdims=True)
            exp = np.exp(logits)
            softmax = exp / exp.sum(axis=1, keepdims=True)
            result[side] = (1.0 - p["weight"]) * softmax + p["weight"] * p["prior"]
        return result

    def is_expired(self, now: datetime) -> bool:
        """True once `now` (UTC-aware) is past the manifest's expires_at: time to retrain."""
        return now >= self.expires_at


def _walk(tree: _Tree, matrix: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Leaf value reached by every row, all rows advanced one level at a time."""
    node = np.zeros(matrix.shape[0], dtype=np.int64)
    for _ in range(tree.depth):
        leaf = tree.is_leaf[node]
        if leaf.all():
            break
        feature = np.where(leaf, 0, tree.feature[node])
        x = matrix[rows, feature]
        go_left = np.where(np.isnan(x), tree.missing_left[node], x <= tree.threshold[node])
        node = np.where(leaf, node, np.where(go_left, tree.left[node], tree.right[node]))
    return tree.value[node]


def _fail(where: str, why: str) -> ModelError:
    return ModelError(f"malformed model artifact: {where}: {why}")


def _vector(value: Any, where: str, length: int | None = None) -> np.ndarray:
    if not isinstance(value, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise _fail(where, "expected a list of numbers")
    array = np.asarray(value, dtype=np.float64)
    if length is not None and array.shape[0] != length:
        raise _fail(where, f"expected {length} values, got {array.shape[0]}")
    if not np.isfinite(array).all():
        raise _fail(where, "contains a non-finite number")
    return array


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(where, "expected a finite number")
    return float(value)


def _parse_tree(raw: Any, index: int, n_features: int) -> _Tree:
    where = f"trees[{index}]"
    if not isinstance(raw, dict):
        raise _fail(where, "expected an object")
    keys = ("feature", "threshold", "left", "right", "missing_left", "is_leaf", "value")
    missing = [k for k in keys if k not in raw]
    if missing:
        raise _fail(where, f"missing {', '.join(missing)}")
    size = len(raw["value"]) if isinstance(raw["value"], list) else 0
    if size == 0:
        raise _fail(f"{where}.value", "expected a non-empty list")
    columns = {k: _vector(raw[k], f"{where}.{k}", size) for k in keys if k != "threshold"}
    threshold = raw["threshold"]
    if not isinstance(threshold, list) or len(threshold) != size:
        raise _fail(f"{where}.threshold", f"expected {size} values")
    # Leaf thresholds are meaningless and stored as null; JSON has no infinity, so an infinite
    # split threshold (possible for splits on missing values) is stored as "inf" / "-inf".
    thresholds = np.asarray([_threshold(t, f"{where}.threshold") for t in threshold], dtype=np.float64)
    is_leaf = columns["is_leaf"].astype(bool)
    feature = columns["feature"].astype(np.int64)
    left, right = columns["left"].astype(np.int64), columns["right"].astype(np.int64)
    inner = ~is_leaf
    if ((feature[inner] < 0) | (feature[inner] >= n_features)).any():
        raise _fail(f"{where}.feature", f"index outside 0..{n_features - 1}")
    for name, child in (("left", left), ("right", right)):
        if ((child[inner] <= np.nonzero(inner)[0]) | (child[inner] >= size)).any():
            raise _fail(f"{where}.{name}", "child index must point forward inside the tree")
    return _Tree(feature=feature, threshold=thresholds, left=left, right=right,
                 missing_left=columns["missing_left"].astype(bool), is_leaf=is_leaf,
                 value=np.where(is_leaf, columns["value"], 0.0), depth=_depth(left, right, is_leaf))


def _threshold(value: Any, where: str) -> float:
    if value is None:
        return 0.0
    if value in ("inf", "-inf"):
        return float(value)
    return _number(value, where)


def _depth(left: np.ndarray, right: np.ndarray, is_leaf: np.ndarray) -> int:
    depth = np.zeros(left.shape[0], dtype=np.int64)
    for node in range(left.shape[0]):  # children always follow their parent (checked above)
        if not is_leaf[node]:
            depth[left[node]] = depth[right[node]] = depth[node] + 1
    return int(depth.max())


def _parse_time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise ModelError(f"malformed model manifest: {where}: expected an ISO-8601 string")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ModelError(f"malformed model manifest: {where}: {value!r} is not ISO-8601") from exc
    if moment.tzinfo is None:
        raise ModelError(f"malformed model manifest: {where}: {value!r} has no UTC offset")
    return moment.astimezone(UTC)


def load_model(artifact: Mapping[str, Any], manifest: Mapping[str, Any]) -> ServedModel:
    """Validate an artifact (model.json) and its manifest (manifest.json) and build a ServedModel.

    Raises ModelError naming the field when anything is missing, mistyped, non-finite or when
    the two files disagree (feature names, model id), so a bad upload fails at load, not as
    silently wrong probabilities.
    """
    if not isinstance(artifact, Mapping):
        raise _fail("artifact", f"expected a JSON object, got {type(artifact).__name__}")
    if not isinstance(manifest, Mapping):
        raise ModelError(f"malformed model manifest: expected a JSON object, got {type(manifest).__name__}")
    if artifact.get("format") != ARTIFACT_FORMAT:
        raise _fail("format", f"expected {ARTIFACT_FORMAT!r}, got {artifact.get('format')!r}")
    kind = artifact.get("kind")
    if kind not in MODEL_KINDS:
        raise _fail("kind", f"expected one of {MODEL_KINDS}, got {kind!r}")
    names = artifact.get("feature_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise _fail("feature_names", "expected a non-empty list of strings")
    n_features = len(names)

    params: dict[str, Any]
    if kind == "logistic":
        scaler = artifact.get("scaler")
        if not isinstance(scaler, dict):
            raise _fail("scaler", "expected an object with mean and scale")
        scale = _vector(scaler.get("scale"), "scaler.scale", n_features)
        if (scale <= 0).any():
            raise _fail("scaler.scale", "every scale must be positive")
        params = {"mean": _vector(scaler.get("mean"), "scaler.mean", n_features), "scale": scale,
                  "coef": _vector(artifact.get("coef"), "coef", n_features),
                  "intercept": _number(artifact.get("intercept"), "intercept")}
    else:
        trees = artifact.get("trees")
        if not isinstance(trees, list) or not trees:
            raise _fail("trees", "expected a non-empty list")
        params = {"baseline": _number(artifact.get("baseline"), "baseline"),
                  "trees": tuple(_parse_tree(t, i, n_features) for i, t in enumerate(trees))}

    params["calibration"] = _parse_calibration(artifact.get("calibration"))
    params["outcome"] = _parse_outcome(artifact.get("outcome"), n_features)

    required = ("model_id", "symbol", "timeframe", "horizon", "feature_names", "expires_at")
    missing = [k for k in required if k not in manifest]
    if missing:
        raise ModelError(f"malformed model manifest: missing {', '.join(missing)}")
    if list(manifest["feature_names"]) != names:
        raise ModelError("model manifest and artifact disagree on feature_names")
    if artifact.get("model_id") not in (None, manifest["model_id"]):
        raise ModelError(f"model artifact {artifact.get('model_id')!r} does not belong to manifest "
                         f"{manifest['model_id']!r}")
    horizon = manifest["horizon"]
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ModelError("malformed model manifest: horizon: expected a positive integer")
    for key in ("model_id", "symbol", "timeframe"):
        if not isinstance(manifest[key], str) or not manifest[key]:
            raise ModelError(f"malformed model manifest: {key}: expected a non-empty string")
    return ServedModel(model_id=manifest["model_id"], symbol=manifest["symbol"],
                       timeframe=manifest["timeframe"], horizon=horizon, feature_names=tuple(names),
                       expires_at=_parse_time(manifest["expires_at"], "expires_at"),
                       manifest=dict(manifest), kind=kind, _params=params)


def _parse_calibration(raw: Any) -> dict[str, Any] | None:
    """None (uncalibrated), sigmoid {a, b} or isotonic points: non-decreasing x and y in [0, 1]."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("kind") not in CALIBRATION_KINDS:
        raise _fail("calibration.kind", f"expected one of {CALIBRATION_KINDS}")
    if raw["kind"] == "sigmoid":
        return {"kind": "sigmoid", "a": _number(raw.get("a"), "calibration.a"),
                "b": _number(raw.get("b"), "calibration.b")}
    x = _vector(raw.get("x"), "calibration.x")
    y = _vector(raw.get("y"), "calibration.y", x.shape[0])
    if x.shape[0] < 1 or (np.diff(x) < 0).any() or (np.diff(y) < 0).any():
        raise _fail("calibration", "expected non-empty, non-decreasing x and y")
    if (x < 0).any() or (x > 1).any() or (y < 0).any() or (y > 1).any():
        raise _fail("calibration", "points must lie in [0, 1]")
    return {"kind": "isotonic", "x": x, "y": y}


def _parse_outcome(raw: Any, n_features: int) -> dict[str, Any] | None:
    """None (no outcome model) or both sides' softmax parameters, shrink and expiry exits, validated."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _fail("outcome", "expected an object")
    if raw.get("classes") != list(OUTCOMES):
        raise _fail("outcome.classes", f"expected {list(OUTCOMES)}")
    bracket = raw.get("bracket")
    if not isinstance(bracket, dict):
        raise _fail("outcome.bracket", "expected an object with sl_atr, tp_atr, life_candles")
    sl = _number(bracket.get("sl_atr"), "outcome.bracket.sl_atr")
    tp = _vector(bracket.get("tp_atr"), "outcome.bracket.tp_atr", 3)
    life = bracket.get("life_candles")
    if isinstance(life, bool) or not isinstance(life, int) or life < 1 or sl <= 0 or (tp <= 0).any():
        raise _fail("outcome.bracket", "expected sl_atr > 0, three tp_atr > 0 and a positive integer life_candles")
    sides = raw.get("sides")
    if not isinstance(sides, dict) or sorted(sides) != sorted(OUTCOME_SIDES):
        raise _fail("outcome.sides", f"expected exactly {list(OUTCOME_SIDES)}")
    k = len(OUTCOMES)
    parsed = {}
    for side in OUTCOME_SIDES:
        where = f"outcome.sides.{side}"
        entry = sides[side]
        if not isinstance(entry, dict) or not isinstance(entry.get("scaler"), dict):
            raise _fail(where, "expected an object with scaler, coef, intercept, calibration, expiry_exit_atr")
        coef = entry.get("coef")
        if not isinstance(coef, list) or len(coef) != k:
            raise _fail(f"{where}.coef", f"expected {k} rows")
        scale = _vector(entry["scaler"].get("scale"), f"{where}.scaler.scale", n_features)
        if (scale <= 0).any():
            raise _fail(f"{where}.scaler.scale", "every scale must be positive")
        calibration = entry.get("calibration")
        if not isinstance(calibration, dict) or calibration.get("kind") != "shrink":
            raise _fail(f"{where}.calibration", "expected {\"kind\": \"shrink\", \"weight\", \"prior\"}")
        weight = _number(calibration.get("weight"), f"{where}.calibration.weight")
        prior = _vector(calibration.get("prior"), f"{where}.calibration.prior", k)
        if not 0.0 <= weight <= 1.0 or (prior < 0).any() or abs(prior.sum() - 1.0) > 1e-9:
            raise _fail(f"{where}.calibration", "weight must be in [0, 1] and prior a distribution")
        parsed[side] = {
            "mean": _vector(entry["scaler"].get("mean"), f"{where}.scaler.mean", n_features), "scale": scale,
            "coef": np.vstack([_vector(row, f"{where}.coef[{i}]", n_features) for i, row in enumerate(coef)]),
            "intercept": _vector(entry.get("intercept"), f"{where}.intercept", k),
            "weight": weight, "prior": prior,
            "expiry_exit_atr": [float(v) for v in _vector(entry.get("expiry_exit_atr"),
                                                          f"{where}.expiry_exit_atr", 3)]}
    return {"bracket": {"sl_atr": sl, "tp_atr": [float(v) for v in tp], "life_candles": life}, "sides": parsed}


def check_features(model: ServedModel, feature_names: Sequence[str]) -> None:
    """Fail loudly when the running code computes different features than the model was trained on."""
    if tuple(feature_names) != model.feature_names:
        raise ModelError(f"{model.model_id}: trained on features {list(model.feature_names)}, "
                         f"code computes {list(feature_names)}")
