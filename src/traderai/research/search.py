"""Look for an edge, honestly: a small bounded grid, every configuration out of sample, purged, after costs.

The grid (`SearchConfig`): timeframes (15m, and 1h / 4h resampled from the 15m candles) x feature
sets (the served 18, or 18 + market factor + window aggregates + calendar: `research/extended.py`)
x bracket geometries (`GEOMETRIES`) x selection models:

- ``direction``: today's recipe. Logistic regression + isotonic calibration on ``close[t+4] >
  close[t]``; every signal the seed's rules accept (`backtest.accept_mask`, the geometry's own
  SL/TP/life) and the duplicate filter lets through is traded.
- ``outcome``: the same signals (the side is still the seed's), traded only where the outcome
  model's expected value of that side is >= `min_ev_pct`. The outcome model is the shipped recipe
  (`model.outcome`): per side a multinomial logistic regression on the first-touch labels of the
  geometry's bracket (`labels.outcome_labels`, the tracker's rule), shrunk toward the class rates
  by a weight fitted on the calibration slice; EV = sum_o p_o x payoff_o - costs (CONTRACT-12).

Every configuration runs the same expanding walk-forward: the pooled calendar of all markets, the
last `test_span` cut into `folds` test blocks, a calibration slice before each, purged by the
longest label life of the grid (so every configuration sees the same test candles). Models are
fitted only on rows whose label is known before their test block starts. Trades are played out by
the tracker's rule (`backtest.play_out`) with the Strategy's costs.

A configuration's result is the mean realised net % of the signals it trades, with a block
standard error (`stats.block_mean`: calendar blocks of whole days, >= 2 lives, are the independent
units, since signals of different markets and sides overlap and move together). The winner is the
configuration with the highest t; it is only a finding if its mean is positive AND its t survives
Bonferroni over every configuration tried (`stats.bonferroni`). The deflated Sharpe ratio of the best
daily Sharpe ratio (`stats.deflated_sharpe`, Bailey & López de Prado) is reported beside it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from traderai.contracts import TIMEFRAME_SECONDS, Candles, Strategy
from traderai.core.features import compute_features
from traderai.model.fit import fit_calibration, fit_estimator
from traderai.model.labels import DIRECTION_HORIZON, OUTCOMES, UNLABELLED, outcome_labels
from traderai.model.outcome import (
    Bracket,
    OutcomeSide,
    brier,
    class_rates,
    expected_value_pct,
    fit_outcome_estimator,
    fit_shrink,
)
from traderai.model.serving import apply_calibration
from traderai.research.backtest import backtest_market, life_candles
from traderai.research.extended import MARKET_FACTOR_SYMBOL, extended_features, resample
from traderai.research.stats import (
    block_length_ms,
    block_mean,
    bonferroni,
    calibration_figures,
    daily_series,
    deflated_sharpe,
    sharpe_moments,
)
from traderai.research.walkforward import MarketFrame, PooledRows, make_folds, pool, prepare_market

Progress = Callable[[str], None]
SIDES = ("LONG", "SHORT")
MODELS = ("direction", "outcome")


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Geometry:
    """A bracket: stop and targets in ATR multiples, life in hours (candles = life / timeframe)."""

    name: str
    sl_atr: float
    tp_atr: tuple[float, float, float]
    life_hours: float

    def strategy(self, base: Strategy | None = None) -> Strategy:
        return replace(base or Strategy(), sl_atr_multiplier=self.sl_atr, tp_atr_multipliers=self.tp_atr,
                       signal_ttl_hours=self.life_hours)

    def life(self, timeframe: str) -> int:
        return life_candles(self.strategy(), timeframe)

    def bracket(self, timeframe: str) -> Bracket:
        """The outcome model's bracket (`model.outcome.Bracket`) at this timeframe."""
        return Bracket.of_strategy(self.strategy(), timeframe)


GEOMETRIES: dict[str, Geometry] = {
    "seed": Geometry("seed", 1.0, (2.0, 3.5, 6.0), 24.0),  # the default Strategy
    "wide_stop": Geometry("wide_stop", 2.0, (2.0, 3.0, 4.0), 24.0),  # stop as far as TP1: ~1:1 odds
    "long_life": Geometry("long_life", 1.5, (3.0, 5.0, 8.0), 48.0),  # wider and longer
}


@dataclass(frozen=True, slots=True)
class SearchConfig:
    """The grid and the walk-forward layout; the defaults are the bounded grid the docs report."""

    timeframes: tuple[str, ...] = ("15m", "1h", "4h")
    feature_sets: tuple[str, ...] = ("base", "extended")
    geometries: tuple[str, ...] = tuple(GEOMETRIES)
    models: tuple[str, ...] = MODELS
    folds: int = 4
    test_span: float = 0.5
    calibration_share: float = 1.0
    min_ev_pct: float = 0.0
    max_outcome_train_rows: int = 60_000  # evenly strided; labels overlapping over a life carry little more
    min_signals: int = 30  # a configuration needs this many traded signals to be ranked

    @property
    def configurations(self) -> int:
        return len(self.timeframes) * len(self.feature_sets) * len(self.geometries) * len(self.models)

    def purge(self, timeframe: str) -> int:
        return max(DIRECTION_HORIZON, *(GEOMETRIES[g].life(timeframe) for g in self.geometries))


def feature_matrix(candles: Candles, feature_set: str, factor: Candles | None) -> np.ndarray:
    if feature_set == "base":
        return compute_features(candles)
    if feature_set == "extended":
        return extended_features(candles, factor)
    raise ValueError(f"feature set must be base or extended, got {feature_set!r}")


def build_frames(markets: Sequence[Candles], timeframe: str, feature_set: str) -> list[MarketFrame]:
    """Each market's frame at `timeframe` (resampled) with the chosen features; BTC is the market factor."""
    resampled = [resample(c, timeframe) for c in markets]
    factor = next((c for c in resampled if c.symbol == MARKET_FACTOR_SYMBOL), None)
    frames = []
    for candles in resampled:
        frame = prepare_market(candles, labelings=("direction",))
        frames.append(replace(frame, features=feature_matrix(candles, feature_set, factor)))
    return frames


@dataclass
class SideModel:
    """Out-of-sample outcome probabilities and EV of one side over the pooled rows (NaN outside tests)."""

    probabilities: np.ndarray  # (n, 5)
    ev_pct: np.ndarray  # (n,)
    outcome: np.ndarray  # (n,) class index, UNLABELLED where unknown
    base_rate: np.ndarray  # (n, 5) the class frequencies before each row's test block
    expiry_exit: list[list[float]] = field(default_factory=list)  # per fold
    shrink: list[float] = field(default_factory=list)  # per fold: the calibration's weight toward the base rate


@dataclass
class PanelResult:
    """One (timeframe, feature set): the direction model's OOS probability and each geometry's side models."""

    timeframe: str
    feature_set: str
    frames: list[MarketFrame]
    rows: PooledRows
    direction: np.ndarray  # (n,) calibrated P(up), NaN outside tests
    sides: dict[str, dict[str, SideModel]]  # geometry -> side -> model
    fold_starts_ms: list[int]
    seconds: float


def _stride(mask: np.ndarray, limit: int) -> np.ndarray:
    rows = np.flatnonzero(mask)
    step = max(1, math.ceil(rows.shape[0] / limit))
    return rows[::step]


def _fit_side(features: np.ndarray, classes: np.ndarray, exits: np.ndarray, train: np.ndarray, calib: np.ndarray,
              max_rows: int) -> OutcomeSide | None:
    """The shipped outcome recipe (`model.train`) on one fold: fit on the train slice (evenly strided to
    `max_rows`), prior = class rates before the test block, shrink weight fitted on the calibration slice."""
    labelled = classes != UNLABELLED
    fit_rows = _stride(train & labelled, max_rows)
    try:
        estimator = fit_outcome_estimator(features[fit_rows], classes[fit_rows])
    except ValueError:
        return None
    prior = class_rates(classes[(train | calib) & labelled])
    cal = calib & labelled
    weight = fit_shrink(estimator.predict_proba(features[cal]), classes[cal], prior)
    expiry = fit_rows[classes[fit_rows] == OUTCOMES.index("expiry")]
    exit_mean = tuple(float(v) for v in exits[expiry].mean(axis=0)) if expiry.shape[0] else (0.0, 0.0, 0.0)
    return OutcomeSide(estimator, weight, prior, exit_mean)  # type: ignore[arg-type]


def run_panel(markets: Sequence[Candles], timeframe: str, feature_set: str, config: SearchConfig,
              strategy: Strategy, progress: Progress = _quiet) -> PanelResult:
    """Walk-forward of the direction model and of every geometry's outcome models on one panel."""
    started = time.perf_counter()
    frames = build_frames(markets, timeframe, feature_set)
    rows = pool(frames)
    n = rows.open_time_ms.shape[0]
    step_ms = TIMEFRAME_SECONDS[timeframe] * 1000
    purge = config.purge(timeframe)
    folds = make_folds(rows.open_time_ms, config.folds, config.test_span, config.calibration_share, step_ms)
    y = rows.labels["direction"]
    atr_pct = np.concatenate([frame.atr[rows.row[rows.market == i]] / frame.candles.close[rows.row[rows.market == i]]
                              for i, frame in enumerate(frames)]) * 100.0
    labels: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for name in config.geometries:
        geometry = GEOMETRIES[name]
        for side in SIDES:
            classes, exits = np.full(n, UNLABELLED, dtype=np.int64), np.full((n, 3), np.nan)
            for i, frame in enumerate(frames):
                c = frame.candles
                lab = outcome_labels(c.high, c.low, c.close, frame.atr, long=side == "LONG", sl_atr=geometry.sl_atr,
                                     tp_atr=geometry.tp_atr, life=geometry.life(timeframe),
                                     open_time_ms=c.open_time_ms, step_ms=step_ms)
                mine = rows.market == i
                classes[mine], exits[mine] = lab.outcome[rows.row[mine]], lab.exit_atr[rows.row[mine]]
            labels[(name, side)] = classes, exits
    direction = np.full(n, np.nan)
    sides = {g: {s: SideModel(np.full((n, 5), np.nan), np.full(n, np.nan), labels[(g, s)][0], np.full((n, 5), np.nan))
                 for s in SIDES} for g in config.geometries}
    for fold in folds:
        train, calib, test = fold.masks(rows.open_time_ms, purge, step_ms)
        known = np.isfinite(y)
        estimator = fit_estimator("logistic", rows.features[train & known], y[train & known])
        raw_cal = estimator.predict_proba(rows.features[calib & known])[:, 1]
        calibration = fit_calibration("isotonic", raw_cal, y[calib & known])
        test_rows = np.flatnonzero(test)
        direction[test_rows] = apply_calibration(calibration, estimator.predict_proba(rows.features[test_rows])[:, 1])
        for name in config.geometries:
            bracket = GEOMETRIES[name].bracket(timeframe)
            for side in SIDES:
                classes, exits = labels[(name, side)]
                fitted = _fit_side(rows.features, classes, exits, train, calib, config.max_outcome_train_rows)
                record = sides[name][side]
                record.base_rate[test_rows] = class_rates(classes[(train | calib) & (classes != UNLABELLED)])
                if fitted is None:  # a class never occurs in the fit slice: no EV for this block
                    record.expiry_exit.append([math.nan] * 3)
                    continue
                p = fitted.predict_proba(rows.features[test_rows])
                record.probabilities[test_rows] = p
                record.ev_pct[test_rows] = expected_value_pct(p, atr_pct[test_rows], strategy.tp_weights, bracket,
                                                              fitted.expiry_exit_atr, strategy.costs_pct)
                record.expiry_exit.append(list(fitted.expiry_exit_atr))
                record.shrink.append(fitted.weight)
        progress(f"{timeframe} {feature_set}: fold {fold.index + 1}/{len(folds)} "
                 f"(train {int((train & known).sum()):,} rows)")
    return PanelResult(timeframe, feature_set, frames, rows, direction, sides,
                       [f.test_start_ms for f in folds], time.perf_counter() - started)


@dataclass
class SignalTable:
    """Every signal the seed's rules publish for one (panel, geometry), with both models' view of it."""

    symbol: np.ndarray
    open_time_ms: np.ndarray
    long: np.ndarray
    net_pct: np.ndarray
    ev_pct: np.ndarray  # the outcome model's EV of the signal's side
    p_stop: np.ndarray
    exit_offset: np.ndarray
    stopped: np.ndarray  # the rest left at the stop


def signals_of(panel: PanelResult, geometry: str, strategy: Strategy) -> SignalTable:
    """The seed's signals (the direction model's side, the geometry's bracket), played out, with their EV."""
    bracket = GEOMETRIES[geometry].strategy(strategy)
    parts = []
    for index, frame in enumerate(panel.frames):
        mine = np.flatnonzero(panel.rows.market == index)
        probability = np.full(len(frame.candles), np.nan)
        probability[panel.rows.row[mine]] = panel.direction[mine]
        pooled_of_row = np.full(len(frame.candles), -1, dtype=np.int64)
        pooled_of_row[panel.rows.row[mine]] = mine
        trades, _ = backtest_market(frame, probability, bracket)
        kept_rows = np.searchsorted(frame.candles.open_time_ms, trades.open_time_ms)
        pooled = pooled_of_row[kept_rows]
        ev = np.where(trades.long, panel.sides[geometry]["LONG"].ev_pct[pooled],
                      panel.sides[geometry]["SHORT"].ev_pct[pooled])
        stop = np.where(trades.long, panel.sides[geometry]["LONG"].probabilities[pooled, 0],
                        panel.sides[geometry]["SHORT"].probabilities[pooled, 0])
        parts.append(SignalTable(trades.symbol, trades.open_time_ms, trades.long, trades.outcomes.net_pct, ev, stop,
                                 trades.outcomes.exit_offset, trades.outcomes.stopped))
    return SignalTable(*(np.concatenate([getattr(p, f) for p in parts]) for f in SignalTable.__dataclass_fields__))


def summarize_config(panel: PanelResult, geometry: str, model: str, table: SignalTable,
                     config: SearchConfig) -> dict[str, Any]:
    """Realised net of the traded signals (overall and per market) with block s.e.; EV calibration; Brier skill."""
    step_ms = TIMEFRAME_SECONDS[panel.timeframe] * 1000
    block = block_length_ms(GEOMETRIES[geometry].life(panel.timeframe) * step_ms)
    traded = np.ones(table.net_pct.shape[0], dtype=bool) if model == "direction" else table.ev_pct >= config.min_ev_pct
    overall = block_mean(table.net_pct[traded], table.open_time_ms[traded], block)
    end_ms = int(panel.rows.open_time_ms.max()) + step_ms
    daily = sharpe_moments(daily_series(table.net_pct[traded], table.open_time_ms[traded],
                                        panel.fold_starts_ms[0], end_ms))
    entry: dict[str, Any] = {"timeframe": panel.timeframe, "features": panel.feature_set, "geometry": geometry,
                             "model": model, "seed_signals": int(table.net_pct.shape[0]), **overall.as_dict(),
                             "daily": daily, "per_market": {}}
    for symbol in sorted(set(table.symbol.tolist())):
        mine = traded & (table.symbol == symbol)
        entry["per_market"][symbol] = block_mean(table.net_pct[mine], table.open_time_ms[mine], block).as_dict()
    if model == "outcome":
        entry["ev_calibration"] = {"all": calibration_figures(table.ev_pct, table.net_pct, table.open_time_ms, block)}
        for symbol in sorted(set(table.symbol.tolist())):
            mine = table.symbol == symbol
            entry["ev_calibration"][symbol] = calibration_figures(table.ev_pct[mine], table.net_pct[mine],
                                                                  table.open_time_ms[mine], block)
        entry["brier_skill"] = outcome_brier_skill(panel, geometry)
    return entry


def outcome_brier_skill(panel: PanelResult, geometry: str) -> dict[str, dict[str, float]]:
    """Per market and side: 1 - Brier(model) / Brier(training class frequencies), over labelled OOS rows."""
    out: dict[str, dict[str, float]] = {}
    for index, symbol in enumerate(panel.rows.symbols):
        out[symbol] = {}
        for side in SIDES:
            record = panel.sides[geometry][side]
            ok = ((panel.rows.market == index) & (record.outcome != UNLABELLED) & np.isfinite(record.ev_pct)
                  & np.isfinite(record.base_rate).all(axis=1))
            if ok.sum() < 100:
                continue
            model_brier = brier(record.probabilities[ok], record.outcome[ok])
            base = brier(record.base_rate[ok], record.outcome[ok])
            out[symbol][side] = 1.0 - model_brier / base
    return out


def direction_brier_skill(panel: PanelResult) -> dict[str, float]:
    """Per market: Brier skill of the direction model's OOS probability against the training up-rate."""
    y = panel.rows.labels["direction"]
    out = {}
    for index, symbol in enumerate(panel.rows.symbols):
        ok = (panel.rows.market == index) & np.isfinite(y) & np.isfinite(panel.direction)
        if ok.sum() < 100:
            continue
        base = float(y[ok].mean())
        out[symbol] = 1.0 - float(((panel.direction[ok] - y[ok]) ** 2).mean()) / float(((base - y[ok]) ** 2).mean())
    return out


@dataclass
class SearchResult:
    config: SearchConfig
    entries: list[dict[str, Any]]
    winner: dict[str, Any] | None
    correction: dict[str, Any] | None
    verdict: str
    direction_skill: dict[str, dict[str, float]]  # "timeframe/features" -> market -> Brier skill
    seconds: float
    tables: dict[tuple[str, str, str], SignalTable] = field(default_factory=dict)


def run_search(markets: Sequence[Candles], config: SearchConfig, strategy: Strategy | None = None,
               progress: Progress = _quiet) -> SearchResult:
    """Every configuration of the grid; the winner and its multiple-testing correction."""
    import sklearn.linear_model  # noqa: F401
    from threadpoolctl import threadpool_limits

    strategy = strategy or Strategy()
    started = time.perf_counter()
    entries: list[dict[str, Any]] = []
    skill: dict[str, dict[str, float]] = {}
    tables: dict[tuple[str, str, str], SignalTable] = {}
    with threadpool_limits(limits=1):
        for timeframe in config.timeframes:
            for feature_set in config.feature_sets:
                panel = run_panel(markets, timeframe, feature_set, config, strategy, progress)
                skill[f"{timeframe}/{feature_set}"] = direction_brier_skill(panel)
                for geometry in config.geometries:
                    table = signals_of(panel, geometry, strategy)
                    tables[(timeframe, feature_set, geometry)] = table
                    for model in config.models:
                        entry = summarize_config(panel, geometry, model, table, config)
                        entries.append(entry)
                        progress(f"{timeframe:>3} {feature_set:<8} {geometry:<9} {model:<9} "
                                 f"n={entry['n']:>5} mean {entry['mean']:+.3f} ± {entry['se']:.3f} t {entry['t']:+.2f}")
    winner, correction, verdict = judge(entries, config)
    return SearchResult(config, entries, winner, correction, verdict, skill, time.perf_counter() - started, tables)


def judge(entries: list[dict[str, Any]], config: SearchConfig) -> tuple[dict[str, Any] | None,
                                                                      dict[str, Any] | None, str]:
    """(winner, its Bonferroni test, verdict): the highest t among configurations with enough signals;
    an edge only if its mean is positive and its t beats the threshold for all configurations tried."""
    ranked = [e for e in entries if e["n"] >= config.min_signals and math.isfinite(e["t"])]
    if not ranked:
        return None, None, "no configuration traded enough signals to be judged: no proven edge"
    winner = max(ranked, key=lambda e: e["t"])
    correction = bonferroni(winner["t"], config.configurations)
    # A second view: the deflated Sharpe ratio of the best daily Sharpe ratio among all the trials.
    best = max(ranked, key=lambda e: e.get("daily", {}).get("sharpe", -math.inf))
    if "daily" in best:
        correction["deflated_sharpe"] = {
            "configuration": describe(best),
            **deflated_sharpe(best["daily"]["sharpe"], np.array([e["daily"]["sharpe"] for e in entries]),
                              best["daily"]["periods"], best["daily"]["skew"], best["daily"]["kurtosis"])}
    if winner["mean"] > 0 and correction["survives"]:
        return winner, correction, (
            f"edge found: {describe(winner)} realises {winner['mean']:+.3f}% per signal, t {winner['t']:.2f} "
            f"> {correction['t_threshold']:.2f} (Bonferroni over {config.configurations} configurations)")
    return winner, correction, (
        f"no proven edge: the best configuration ({describe(winner)}) realises {winner['mean']:+.3f}% "
        f"± {winner['se']:.3f} per signal (t {winner['t']:+.2f}); after {config.configurations} "
        f"configurations a finding needs a positive mean and t > {correction['t_threshold']:.2f}")


def describe(entry: dict[str, Any]) -> str:
    return f"{entry['model']} / {entry['timeframe']} / {entry['features']} features / {entry['geometry']} bracket"
