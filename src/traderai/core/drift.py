"""Feature drift: the Population Stability Index of a recent window against the training quantiles.

numpy only (the predict Lambda computes it on every prediction). The model manifest keeps, per
feature, the training quantiles at levels 0, 0.1, ..., 1 (`feature_quantiles`); their inner edges cut
the line into bins that held `level[i+1] - level[i]` of the training rows (10% each). PSI compares
the share of recent rows per bin with that reference:

    PSI = Σ_bins (actual − expected) · ln(actual / expected)

with both shares floored at `PSI_FLOOR`, so an empty bin costs a bounded amount. Rules of thumb:
< 0.1 stable, 0.1–0.25 moderate shift, > 0.25 large shift. Tied edges (a clipped or often-zero
feature) merge into one bin carrying the summed reference share, so a feature that is legitimately
constant over several deciles does not read as drift.

The drift score of a prediction is the MEAN PSI over features of the last `DRIFT_WINDOW` complete
feature rows (3 days of 15m candles). A window of autocorrelated features is never a random sample
of the training distribution, so even a stable market scores above 0; docs/model-quality.md gives
the distribution of this score on out-of-sample history to pick `MAX_DRIFT_PSI` from.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

PSI_FLOOR = 1e-4
DRIFT_WINDOW = 288  # candles: 3 days of 15m; fits in the default 500-candle fetch after the 200-candle warm-up
MIN_DRIFT_ROWS = 48  # fewer complete rows than this give no score (None) rather than a noisy one


def psi(edges: Sequence[float] | np.ndarray, levels: Sequence[float] | np.ndarray, values: np.ndarray) -> float:
    """PSI of `values` against a reference given by its quantiles `edges` at `levels` (first 0, last 1).

    NaN values are ignored; NaN if no finite value is left.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.shape[0] == 0:
        return float("nan")
    unique, expected = _reference(tuple(map(float, edges)), tuple(map(float, levels)))
    # side="right": a value equal to an edge belongs to the bin above it (the quantile's own bin).
    counts = np.bincount(np.searchsorted(unique, values, side="right"), minlength=unique.shape[0] + 1)
    actual = np.maximum(counts / values.shape[0], PSI_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@functools.lru_cache(maxsize=4096)
def _reference(edges: tuple[float, ...], levels: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The bins and floored reference shares of one feature's training quantiles: the same for every
    prediction a model serves, so computed once per (edges, levels), not once per prediction. Read-only."""
    edge_array = np.asarray(edges, dtype=np.float64)
    level_array = np.asarray(levels, dtype=np.float64)
    # Unique inner edges; the reference share below each is the level of its first occurrence among
    # ALL quantiles (a feature whose minimum equals an inner edge has nothing below it).
    unique = np.unique(edge_array[1:-1])
    below = level_array[np.searchsorted(edge_array, unique, side="left")]
    expected = np.maximum(np.diff(np.concatenate([[0.0], below, [1.0]])), PSI_FLOOR)
    unique.flags.writeable = False
    expected.flags.writeable = False
    return unique, expected


def feature_psi(feature_quantiles: Mapping[str, Any], window: np.ndarray,
                feature_names: Sequence[str]) -> np.ndarray:
    """PSI per feature (NaN where the manifest lacks that feature) of `window` (rows, features).

    `psi` per column, the same numbers (tests/unit/test_drift.py), with every feature's bins in one padded table
    built once per manifest, and the shares and sums taken for all features at once.
    """
    edges, expected, valid = _references(feature_quantiles, tuple(feature_names))
    window = np.asarray(window, dtype=np.float64)
    features, width = expected.shape
    finite = np.isfinite(window)
    # the bin of each value: how many of its feature's edges are <= it (side="right"); +inf padding never is
    bins = np.empty(window.shape, dtype=np.intp)
    for j in range(features):
        bins[:, j] = np.searchsorted(edges[j], window[:, j], side="right")
    flat = (bins + np.arange(features) * width)[finite]
    counts = np.bincount(flat, minlength=features * width).reshape(features, width)
    rows = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        actual = np.maximum(counts / rows[:, None], PSI_FLOOR)
        terms = np.where(valid, (actual - expected) * np.log(actual / expected), 0.0)
    out = terms.sum(axis=1)
    out[(rows == 0) | ~valid[:, 0]] = np.nan
    return out


_REFERENCES: dict[tuple[int, tuple[str, ...]], tuple[Any, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
_REFERENCES_KEPT = 4096  # models a process may serve; the oldest entry goes first beyond it


def _references(feature_quantiles: Mapping[str, Any],
                feature_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(edges, expected, valid) of every feature, padded to the widest: edges (features, bins-1) with +inf,
    expected shares (features, bins) with 1, `valid` marking real bins (a feature the manifest lacks has none).
    Built once per manifest (held by identity, with the manifest itself, so an id is never reused while kept)."""
    key = (id(feature_quantiles), feature_names)
    kept = _REFERENCES.get(key)
    if kept is not None and kept[0] is feature_quantiles:
        return kept[1]
    levels = tuple(map(float, feature_quantiles["levels"]))
    values = feature_quantiles["values"]
    per_feature = [_reference(tuple(map(float, values[name])), levels) if name in values else None
                   for name in feature_names]
    width = max((len(ref[1]) for ref in per_feature if ref is not None), default=1)
    edges = np.full((len(feature_names), width - 1), np.inf)
    expected = np.ones((len(feature_names), width))
    valid = np.zeros((len(feature_names), width), dtype=bool)
    for j, ref in enumerate(per_feature):
        if ref is not None:
            unique, shares = ref
            edges[j, :len(unique)] = unique
            expected[j, :len(shares)] = shares
            valid[j, :len(shares)] = True
    for array in (edges, expected, valid):
        array.flags.writeable = False
    if len(_REFERENCES) >= _REFERENCES_KEPT:
        del _REFERENCES[next(iter(_REFERENCES))]
    _REFERENCES[key] = (feature_quantiles, (edges, expected, valid))
    return edges, expected, valid


def drift_score(feature_quantiles: Mapping[str, Any] | None, features: np.ndarray,
                feature_names: Sequence[str], window: int = DRIFT_WINDOW) -> float | None:
    """Mean PSI over features of the last `window` complete rows of `features`; None when the
    manifest carries no quantiles or fewer than MIN_DRIFT_ROWS complete rows are available."""
    if not feature_quantiles or "values" not in feature_quantiles or "levels" not in feature_quantiles:
        return None
    matrix = np.asarray(features, dtype=np.float64)
    complete = matrix[np.isfinite(matrix).all(axis=1)][-window:]
    if complete.shape[0] < MIN_DRIFT_ROWS:
        return None
    scores = feature_psi(feature_quantiles, complete, feature_names)
    return float(np.nanmean(scores)) if np.isfinite(scores).any() else None


def rolling_drift(feature_quantiles: Mapping[str, Any], features: np.ndarray, feature_names: Sequence[str],
                  rows: np.ndarray, window: int = DRIFT_WINDOW) -> np.ndarray:
    """`drift_score` as predict would compute it at each of `rows` (window ending at that row); for research."""
    out = np.full(len(rows), np.nan)
    for i, row in enumerate(np.asarray(rows, dtype=np.int64).tolist()):
        score = drift_score(feature_quantiles, features[max(0, row + 1 - window):row + 1], feature_names,
                            window)
        out[i] = np.nan if score is None else score
    return out
