"""Markdown reports with PNG plots for `traderai evaluate` and `traderai backtest` (matplotlib, Agg).

Each report is a folder: a Markdown page, the PNGs it links, and a JSON file holding every figure
on the page, so a later run can be diffed against this one.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from traderai.contracts import Strategy
from traderai.research.backtest import Trades
from traderai.research.search import GEOMETRIES
from traderai.research.walkforward import BASELINES, WalkForwardResult, winner


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, int]]) -> str:
    """A Markdown table of `rows` with (key, header, digits) columns."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(k), d) for k, _, d in columns) + " |")
    return "\n".join(lines)


METRIC_COLUMNS = [("auc", "AUC", 4), ("accuracy", "accuracy", 4), ("brier", "Brier", 5), ("log_loss", "log loss", 5),
                  ("brier_skill", "Brier skill vs base rate", 5), ("up_rate", "label=1 rate", 3), ("rows", "rows", 0)]


def plot_calibration(result: WalkForwardResult, keys: list[str], path: Path) -> Path:
    """Reliability diagram (equal-count bins) of the given "labeling/model" curves."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    lo = min(min(result.curves[k]["predicted"] + result.curves[k]["observed"]) for k in keys)
    hi = max(max(result.curves[k]["predicted"] + result.curves[k]["observed"]) for k in keys)
    pad = 0.01
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="grey", linestyle="--", linewidth=1, label="perfect")
    for key in keys:
        curve = result.curves[key]
        ax.plot(curve["predicted"], curve["observed"], marker="o", label=key)
    ax.set_xlabel("predicted probability (bin mean, out of sample)")
    ax.set_ylabel("observed frequency")
    ax.set_title("Calibration, walk-forward test blocks")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_evaluation_report(result: WalkForwardResult, out_dir: Path, sources: list[str]) -> Path:
    """evaluation.md + calibration PNG + evaluation.json; returns the Markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    best_labeling, best_model = winner(result)
    keys = [f"{best_labeling}/{m}" for m in (best_model, *BASELINES)]
    family = best_model.split("+")[0]
    if f"{best_labeling}/{family}" not in keys:
        keys.insert(1, f"{best_labeling}/{family}")
    plot_calibration(result, keys, out_dir / "calibration.png")
    config = result.config
    lines = [
        "# Walk-forward evaluation", "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from {', '.join(sources)}.", "",
        f"{config.folds} expanding folds over the last {config.test_span:.0%} of the calendar, pooled over "
        f"{', '.join(result.rows.symbols)}; purge {config.purge} candles between train, calibration and test; "
        f"calibration slice = {config.calibration_share:g} test block(s) right before each test block. "
        f"Families: {', '.join(config.families)}; labelings: {', '.join(config.labelings)}; "
        f"calibrations: {', '.join(config.calibrations)}. Metrics are on the concatenated test blocks "
        "(rows whose label is defined); the Brier skill compares with the base rate of the same labeling.", "",
        f"**Winner (highest out-of-sample Brier skill): `{best_labeling}` / `{best_model}`.**", "",
        "## Folds", "",
        markdown_table(result.folds, [("fold", "fold", 0), ("train_from", "train from", 0), ("train_to", "train to", 0),
                                      ("calibration_from", "calibration from", 0), ("test_from", "test from", 0),
                                      ("test_to", "test to", 0), ("train_rows", "train rows", 0),
                                      ("calibration_rows", "calibration rows", 0), ("test_rows", "test rows", 0)]),
        "", "## Overall (all test blocks)", "",
        markdown_table(result.overall, [("labeling", "labeling", 0), ("model", "model", 0), *METRIC_COLUMNS]),
        "", f"## Per fold: `{best_labeling}`", "",
        markdown_table([r for r in result.per_fold if r["labeling"] == best_labeling
                        and r["model"] in (best_model, family, *BASELINES)],
                       [("fold", "fold", 0), ("model", "model", 0), *METRIC_COLUMNS]),
        "", f"## Per symbol: `{best_labeling}`", "",
        markdown_table([r for r in result.per_symbol if r["labeling"] == best_labeling
                        and r["model"] in (best_model, *BASELINES)],
                       [("symbol", "symbol", 0), ("model", "model", 0), *METRIC_COLUMNS]),
        "", "## Calibration", "", "![calibration](calibration.png)", "",
        markdown_table([{"key": k, **{f"b{i}": f"{p:.3f}→{o:.3f}" for i, (p, o) in enumerate(
            zip(result.curves[k]["predicted"], result.curves[k]["observed"], strict=True))}} for k in keys],
            [("key", "curve", 0)] + [(f"b{i}", f"bin {i + 1}", 0) for i in range(10)]),
        "", f"Time: {result.seconds['total']:.1f} s (fitting {result.seconds['fit']:.1f} s).", "",
    ]
    path = out_dir / "evaluation.md"
    path.write_text("\n".join(lines))
    (out_dir / "evaluation.json").write_text(json.dumps(
        {"sources": sources, "winner": {"labeling": best_labeling, "model": best_model}, "folds": result.folds,
         "overall": result.overall, "per_fold": result.per_fold, "per_symbol": result.per_symbol,
         "curves": result.curves, "seconds": result.seconds}, indent=1, default=_json_default))
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def plot_equity(trades: Trades, strategy: Strategy, path: Path) -> Path:
    """Cumulative net P&L in USD (position_size_usd notional per signal), total and per symbol."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    usd = trades.outcomes.net_pct / 100.0 * strategy.position_size_usd
    times = [datetime.fromtimestamp(t / 1000, tz=UTC) for t in trades.open_time_ms.tolist()]
    if len(trades):
        ax.plot(times, np.cumsum(usd), color="black", linewidth=1.6, label="all")
        for symbol in sorted(set(trades.symbol.tolist())):
            mine = trades.symbol == symbol
            ax.plot([t for t, m in zip(times, mine.tolist(), strict=True) if m], np.cumsum(usd[mine]),
                    linewidth=1, label=symbol)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_ylabel(f"cumulative net P&L, USD (${strategy.position_size_usd:,.0f} notional per signal)")
    ax.set_title("Equity curve, net of fees, slippage and funding")
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_expected_vs_realised(trades: Trades, path: Path) -> Path:
    """Histograms of the rule's expected net % and the realised net % per signal."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if len(trades):
        expected, realised = trades.outcomes.expected_net_pct, trades.outcomes.net_pct
        lo, hi = min(expected.min(), realised.min()), max(expected.max(), realised.max())
        bins = np.linspace(lo, hi, 50)
        ax.hist(realised, bins=bins, alpha=0.6, label=f"realised net % (mean {realised.mean():+.2f})")
        ax.hist(expected, bins=bins, alpha=0.6, label=f"expected net % by the rule (mean {expected.mean():+.2f})")
        ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("net profit per signal, % of notional")
    ax.set_ylabel("signals")
    ax.set_title("Expected (all TPs hit) vs realised, per signal")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


SUMMARY_COLUMNS = [("signals", "signals", 0), ("long", "long", 0), ("short", "short", 0),
                   ("mean_confidence", "mean conf.", 3), ("tp1_rate", "TP1 hit", 3), ("tp2_rate", "TP2 hit", 3),
                   ("tp3_rate", "TP3 hit", 3), ("stop_rate", "stopped", 3), ("expiry_rate", "expired", 3),
                   ("win_rate", "net > 0", 3), ("expected_net_pct", "expected net %", 3),
                   ("expectancy_net_pct", "realised net % (mean)", 3), ("stderr_net_pct", "± s.e. (blocks)", 3),
                   ("median_net_pct", "median net %", 3), ("total_net_usd", "total net USD", 0)]


def write_backtest_report(result: WalkForwardResult, labeling: str, model: str, trades: Trades,
                          counts: dict[str, dict[str, int]], tables: dict[str, Any], strategy: Strategy,
                          out_dir: Path, sources: list[str], edge: dict[str, Any] | None = None) -> Path:
    """backtest.md + calibration/equity/expected-vs-realised PNGs + backtest.json; returns the Markdown path.

    `edge` (`research.edge.edge_report`) adds the expected-value section and its EV-decile PNG."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_calibration(result, [f"{labeling}/{model}", f"{labeling}/base_rate", f"{labeling}/persistence"],
                     out_dir / "calibration.png")
    plot_equity(trades, strategy, out_dir / "equity.png")
    plot_expected_vs_realised(trades, out_dir / "expected_vs_realised.png")
    overall = tables["overall"]
    funnel = [{"symbol": s, **c} for s, c in counts.items()]
    verdict = ("no signal was accepted" if not overall.get("signals") else
               f"mean realised net {overall['expectancy_net_pct']:+.3f}% of notional per signal "
               f"(± {overall['stderr_net_pct']:.3f} s.e.) against the rule's expected "
               f"{overall['expected_net_pct']:+.3f}%: the edge after costs is "
               f"{'NEGATIVE' if overall['expectancy_net_pct'] < 0 else 'positive'}")
    lines = [
        "# Backtest of the signal rules", "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from {', '.join(sources)}.", "",
        f"Probabilities: walk-forward out-of-sample `{labeling}` / `{model}` ({result.config.folds} folds, "
        f"test blocks {result.folds[0]['test_from']} → {result.folds[-1]['test_to']}). Rules: `decide()` "
        f"with the default Strategy (min confidence {strategy.min_confidence}, min expected net "
        f"{strategy.min_net_profit_pct}%, SL {strategy.sl_atr_multiplier}×ATR, TPs "
        f"{'/'.join(f'{m:g}' for m in strategy.tp_atr_multipliers)}×ATR, weights "
        f"{'/'.join(f'{w:.3f}' for w in strategy.tp_weights)}, life {strategy.signal_ttl_hours:g} h, costs "
        f"{strategy.costs_pct:.2f}% per round trip, drift gate {'off' if strategy.max_drift_psi == 0 else 'on'}). "
        "24h quote volume = Σ close×volume of the last 96 candles. Same-candle TP and SL → SL; stop never moved.",
        "", f"**Result: {verdict}.**", "",
        "## Funnel", "",
        markdown_table(funnel, [("symbol", "symbol", 0), ("predicted", "OOS predictions", 0),
                                ("accepted_by_rules", "accepted by the filters", 0),
                                ("refused_as_duplicate", "refused: one already open", 0),
                                ("cut_by_end_of_data", "cut by end of data", 0), ("signals", "signals traded", 0)]),
        "", "## Overall", "", markdown_table([overall], SUMMARY_COLUMNS),
        "", "## By symbol", "", markdown_table([{"group": k, **v} for k, v in tables["by_symbol"].items()],
                                             [("group", "symbol", 0), *SUMMARY_COLUMNS]),
        "", "## By side", "", markdown_table([{"group": k, **v} for k, v in tables["by_side"].items()],
                                           [("group", "side", 0), *SUMMARY_COLUMNS]),
        "", "## By confidence bucket", "",
        markdown_table([{"group": k, **v} for k, v in tables["by_confidence"].items()],
                       [("group", "confidence", 0), *SUMMARY_COLUMNS]),
        "", "Net % is of notional; × leverage "
        f"({strategy.leverage}) for % of margin. USD on ${strategy.position_size_usd:,.0f} notional per signal.",
        "", "## Plots", "", "![calibration](calibration.png)", "", "![equity](equity.png)", "",
        "![expected vs realised](expected_vs_realised.png)", "",
    ]
    if edge is not None:
        plot_ev_deciles(edge, out_dir / "ev_deciles.png")
        lines += edge_section(edge, "ev_deciles.png")
    path = out_dir / "backtest.md"
    path.write_text("\n".join(lines))
    (out_dir / "backtest.json").write_text(json.dumps(
        {"sources": sources, "labeling": labeling, "model": model, "counts": counts, "tables": tables,
         "folds": result.folds, "calibration_curve": result.curves[f"{labeling}/{model}"], "edge": edge},
        indent=1, default=_json_default))
    return path


SEARCH_COLUMNS = [("model", "model", 0), ("timeframe", "tf", 0), ("features", "features", 0),
                  ("geometry", "bracket", 0), ("seed_signals", "seed signals", 0), ("n", "traded", 0),
                  ("mean", "realised net % (mean)", 3), ("se", "± block s.e.", 3), ("naive_se", "(naive s.e.)", 3),
                  ("t", "t", 2), ("blocks", "blocks", 0)]


def write_search_report(result: Any, out_dir: Path, sources: list[str]) -> Path:
    """search.md + search.json of `research.search.run_search`; returns the Markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = result.config
    geometry_lines = [f"- `{name}`: stop {g.sl_atr:g}×ATR, targets {'/'.join(f'{m:g}' for m in g.tp_atr)}×ATR, "
                      f"life {g.life_hours:g} h" for name, g in GEOMETRIES.items() if name in config.geometries]
    correction = result.correction or {}
    winner = result.winner
    ranked = sorted(result.entries, key=lambda e: -e["t"] if math.isfinite(e["t"]) else math.inf)
    outcome_rows = [e for e in result.entries if e["model"] == "outcome"]
    calibration_rows = []
    for e in outcome_rows:
        for market, c in e["ev_calibration"].items():
            if c.get("n"):
                calibration_rows.append({"config": f"{e['timeframe']} {e['features']} {e['geometry']}",
                                         "market": market, **{k: c.get(k) for k in (
                                             "n", "mean_predicted", "mean_realised", "se", "gap_in_se",
                                             "decile_spearman")}})
    skill_rows = []
    for e in outcome_rows:
        for market, sides in e["brier_skill"].items():
            skill_rows.append({"config": f"{e['timeframe']} {e['features']} {e['geometry']}", "market": market,
                               "long": sides.get("LONG"), "short": sides.get("SHORT")})
    direction_rows = [{"panel": k, **v} for k, v in result.direction_skill.items()]
    symbols = sorted({s for v in result.direction_skill.values() for s in v})
    lines = [
        "# Looking for an edge: the configuration grid", "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from {', '.join(sources)}.", "",
        f"**{config.configurations} configurations tried** = {len(config.timeframes)} timeframes "
        f"({', '.join(config.timeframes)}, resampled from the 15m candles) × {len(config.feature_sets)} feature sets "
        f"({', '.join(config.feature_sets)}) × {len(config.geometries)} brackets × {len(config.models)} models "
        f"({', '.join(config.models)}). Walk-forward: {config.folds} expanding folds over the last "
        f"{config.test_span:.0%} of the calendar, purged by the longest label life of the grid, costs "
        "always paid. `direction` trades every signal the seed's rules publish; `outcome` trades those of them "
        f"whose outcome-model EV is ≥ {config.min_ev_pct:g}%. s.e. over calendar blocks of ≥ 2 signal lives.", "",
        *geometry_lines, "",
        f"**Verdict: {result.verdict}.**", "",
    ]
    if winner:
        lines += [f"Winner by t: {winner['model']} / {winner['timeframe']} / {winner['features']} / "
                  f"{winner['geometry']}: {winner['n']} signals, {winner['mean']:+.3f}% ± {winner['se']:.3f} "
                  f"(t {winner['t']:+.2f}). Bonferroni over {correction.get('configurations')}: one-sided p "
                  f"{correction.get('p_one_sided', math.nan):.3g}, "
                  f"adjusted {correction.get('p_adjusted', math.nan):.3g}, "
                  f"needs t > {correction.get('t_threshold', math.nan):.2f}: "
                  f"{'survives' if correction.get('survives') else 'does not survive'}.", ""]
    dsr = correction.get("deflated_sharpe")
    if dsr:
        lines += [f"Deflated Sharpe ratio (Bailey & López de Prado) of the best daily Sharpe ratio, "
                  f"{dsr['configuration']}: daily SR {dsr.get('sharpe', math.nan):+.4f} over {dsr.get('periods')} days "
                  f"against SR0 {dsr['sr0']:.4f} expected from the best of {dsr['trials']} skill-less trials: "
                  f"DSR {dsr['dsr']:.3f} ({'≥' if dsr['survives'] else '<'} 0.95 needed).", ""]
    lines += [
        "## Every configuration (best t first)", "", markdown_table(ranked, SEARCH_COLUMNS), "",
        "## Outcome model: predicted EV vs realised, per configuration and market (all seed signals)", "",
        "Calibrated where |gap| ≤ 2 s.e. (judged from 30 signals); ranks where the decile Spearman ≥ 0.5 "
        "(judged from 300).", "",
        markdown_table(calibration_rows, [("config", "configuration", 0), ("market", "market", 0), ("n", "signals", 0),
                                          ("mean_predicted", "mean predicted EV %", 3),
                                          ("mean_realised", "mean realised %", 3), ("se", "± s.e.", 3),
                                          ("gap_in_se", "|gap| / s.e.", 2), ("decile_spearman", "decile Spearman", 2)]),
        "", "## Outcome model: Brier skill vs the training class frequencies (all labelled OOS candles)", "",
        markdown_table(skill_rows, [("config", "configuration", 0), ("market", "market", 0), ("long", "LONG", 4),
                                    ("short", "SHORT", 4)]),
        "", "## Direction model: Brier skill vs the training up-rate", "",
        markdown_table(direction_rows, [("panel", "timeframe / features", 0), *((s, s, 4) for s in symbols)]),
        "", f"Time: {result.seconds:.0f} s.", "",
    ]
    path = out_dir / "search.md"
    path.write_text("\n".join(lines))
    (out_dir / "search.json").write_text(json.dumps(
        {"sources": sources, "configurations": config.configurations, "verdict": result.verdict,
         "winner": winner, "correction": correction, "entries": result.entries,
         "direction_brier_skill": result.direction_skill, "seconds": result.seconds},
        indent=1, default=_json_default))
    return path


EDGE_COLUMNS = [("market", "market", 0), ("n", "seed signals", 0), ("mean_predicted", "mean predicted EV %", 3),
                ("mean_realised", "mean realised %", 3), ("se", "± s.e.", 3), ("gap_in_se", "|gap| / s.e.", 2),
                ("calibrated", "calibrated (≤ 2 s.e.)", 0), ("decile_spearman", "decile Spearman", 2),
                ("ranks_ok", "Spearman ≥ 0.5", 0), ("mean_p_stop", "mean P(stop)", 3)]
GATE_COLUMNS = [("market", "market", 0), ("t_n", "tradeable", 0), ("t_mean", "tradeable net %", 3),
                ("t_se", "± s.e.", 3), ("p_n", "paper", 0), ("p_mean", "paper net %", 3), ("p_se", "± s.e.", 3),
                ("reasons", "paper reasons", 0), ("no_harm", "no harm", 0)]
LOCK_COLUMNS = [("market", "market", 0), ("l_n", "decided while locked", 0), ("l_mean", "their net %", 3),
                ("l_se", "± s.e.", 3), ("u_n", "decided unlocked", 0), ("u_mean", "their net %", 3),
                ("u_se", "± s.e.", 3)]


def edge_section(report: dict[str, Any], png: str) -> list[str]:
    """Markdown lines of `research.edge.edge_report`."""
    markets = report["markets"]
    calibration = [{"market": m, **{k: v for k, v in r["calibration"].items() if k != "deciles"},
                    "mean_p_stop": r["mean_p_stop"]} for m, r in markets.items()]
    gate_rows = [{"market": m, "t_n": r["tradeable"]["n"], "t_mean": r["tradeable"]["mean"],
                  "t_se": r["tradeable"]["se"], "p_n": r["paper"]["n"], "p_mean": r["paper"]["mean"],
                  "p_se": r["paper"]["se"],
                  "reasons": ", ".join(f"{k} {v}" for k, v in sorted(r["paper_reasons"].items())),
                  "no_harm": r["no_harm"]} for m, r in markets.items()]
    protections = report["protections"]
    lock_counts: dict[str, int] = {}
    for lock in protections["locks"]:
        key = f"{lock['symbol']} {lock['protection']}"
        lock_counts[key] = lock_counts.get(key, 0) + 1
    lock_rows = [{"key": k, "n": v} for k, v in sorted(lock_counts.items())]
    return [
        "## Expected value and the edge gate", "",
        f"Outcome model (multinomial logistic per side on the first-touch labels of the `{report['geometry']}` "
        f"bracket, {report['features']} features, {report['timeframe']}), out of sample in the same kind of "
        "walk-forward. Every signal the seed's rules publish is scored: EV = Σ p(outcome) × payoff − costs. "
        f"Tradeable = EV ≥ {report['min_ev_pct']:g}% AND the (market, side)'s evidence from earlier, already "
        "closed test blocks has mean − 2 s.e. > 0; everything else is paper. s.e. over calendar blocks of "
        f"{report['block_days']:g} days.", "",
        markdown_table(calibration, EDGE_COLUMNS), "",
        f"![predicted EV vs realised by decile]({png})", "",
        markdown_table(gate_rows, GATE_COLUMNS), "",
        "### Protection locks", "",
        f"Replayed with the signal step's rule on the signals closed before each decision, settings "
        f"{protections['settings']}: {len(protections['locks'])} locks engaged; "
        f"{protections['locked_signals']} signals decided while their market was locked (paper).", "",
        markdown_table(lock_rows, [("key", "market / protection", 0),
                                   ("n", "lock engagements (a close that sets or extends a lock)", 0)])
        if lock_rows else "No lock engaged.", "",
        "What the locks would have kept out, per market (all seed signals, block s.e.):", "",
        markdown_table([{"market": m, "l_n": r["while_locked"]["n"], "l_mean": r["while_locked"]["mean"],
                         "l_se": r["while_locked"]["se"], "u_n": r["while_unlocked"]["n"],
                         "u_mean": r["while_unlocked"]["mean"], "u_se": r["while_unlocked"]["se"]}
                        for m, r in markets.items()], LOCK_COLUMNS), "",
        *[f"- {lock['engaged_at']} {lock['symbol']}: {lock['message']}" for lock in protections["locks"][:10]],
        "" if len(protections["locks"]) <= 10 else f"- … {len(protections['locks']) - 10} more in backtest.json",
        "",
    ]


def plot_ev_deciles(report: dict[str, Any], path: Any) -> Any:
    """One panel per market: realised mean net by predicted-EV decile, error bars 2 block s.e."""
    plt = _pyplot()
    markets = list(report["markets"])
    cols = min(2, max(1, len(markets)))
    rows = max(1, math.ceil(len(markets) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.2 * rows), squeeze=False)
    for ax, symbol in zip(axes.flat, markets, strict=False):
        calibration = report["markets"][symbol]["calibration"]
        deciles = calibration.get("deciles", [])
        x = [d["predicted"] for d in deciles]
        y = [d["realised"] for d in deciles]
        err = [2 * d["se"] if math.isfinite(d["se"]) else 0.0 for d in deciles]
        ax.errorbar(x, y, yerr=err, fmt="o", capsize=3, label="realised mean ± 2 s.e. (blocks)")
        if x:
            lo, hi = min(min(x), min(y)), max(max(x), max(y))
            ax.plot([lo, hi], [lo, hi], color="grey", linestyle="--", linewidth=1, label="predicted = realised")
        ax.axhline(0, color="black", linewidth=0.6)
        rho = calibration.get("decile_spearman", float("nan"))
        ax.set_title(f"{symbol}: {calibration.get('n', 0)} signals, Spearman {rho:+.2f}", fontsize=10)
        ax.set_xlabel("predicted EV, % of notional (decile mean)")
        ax.set_ylabel("realised net %")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(markets):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

