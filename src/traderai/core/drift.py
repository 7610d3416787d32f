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
    """PSI per feature (NaN where the manifest lacks that feature) of `window` (rows, features)."""
    levels = feature_quantiles["levels"]
    values = feature_quantiles["values"]
    window = np.asarray(window, dtype=np.float64)
    out = np.full(len(feature_names), np.nan)
    for j, name in enumerate(feature_names):
        if name in values:
            out[j] = psi(values[name], levels, window[:, j])
    return out


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
