"""Expected value of a signal's bracket, and the edge gate's reading of the model's evidence.

The bracket has five mutually exclusive outcomes within its life (`contracts.OUTCOMES`, the tracker's
rule in core/outcome.py). Each has a payoff in % of notional before costs, from the signal's own levels
and partial-exit weights w1..w3 (tpK = TP_k's distance %, sl = the stop's distance %):

    stop      -sl                               stopped before TP1
    tp1_stop  w1*tp1 - (w2+w3)*sl               TP1, then the stop
    tp2_stop  w1*tp1 + w2*tp2 - w3*sl           TP2, then the stop
    tp3       w1*tp1 + w2*tp2 + w3*tp3          every target (the seed's "expected" gross)
    expiry    sum_k w_k * e_k * atr/entry*100   life ended open; e_k = mean exit of tranche k in ATR

    expected_value_pct = sum_o p_o * payoff_o - costs_pct     (costs charged on the full position)
    expected_r         = expected_value_pct / (sl_pct + costs_pct)   (EV in stop-out losses)

So with every probability on `tp3` the EV is the seed's `expected_net_profit_pct` (its best case), and
with every probability on `stop` it is -sl - costs. Pure: plain floats, no numpy, no clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from traderai.contracts import OUTCOMES

PROBABILITY_SUM_TOLERANCE = 1e-9
"""How far the five probabilities may sum from 1 (the contract's tolerance: float rounding only)."""

EDGE_SE_MULTIPLE = 2.0
"""The edge is proven when mean - 2 SE > 0: a one-sided test at about 2.3 % (normal approximation)."""

MATCH_TOLERANCE = 1e-9


def outcome_payoffs(tp_pcts: Sequence[float], sl_pct: float, weights: Sequence[float],
                    expiry_exit_atr: Sequence[float], atr_pct: float) -> dict[str, float]:
    """Payoff (% of notional, before costs) of each outcome; `atr_pct` = ATR / entry * 100."""
    w1, w2, w3 = weights
    tp1, tp2, tp3 = tp_pcts
    return {
        "stop": -sl_pct,
        "tp1_stop": w1 * tp1 - (w2 + w3) * sl_pct,
        "tp2_stop": w1 * tp1 + w2 * tp2 - w3 * sl_pct,
        "tp3": w1 * tp1 + w2 * tp2 + w3 * tp3,
        "expiry": sum(w * e * atr_pct for w, e in zip(weights, expiry_exit_atr, strict=True)),
    }


def probabilities_problem(probabilities: Mapping[str, float]) -> str | None:
    """Why these outcome probabilities are unusable (a sentence), or None when they are a distribution."""
    values = [probabilities.get(o) for o in OUTCOMES]
    if any(v is None for v in values) or set(probabilities) != set(OUTCOMES):
        return f"outcome probabilities must have exactly {', '.join(OUTCOMES)}"
    bad = [o for o in OUTCOMES if not math.isfinite(probabilities[o]) or probabilities[o] < 0]
    if bad:
        return f"outcome probabilities not finite and >= 0: {', '.join(f'{o}={probabilities[o]}' for o in bad)}"
    total = math.fsum(probabilities[o] for o in OUTCOMES)
    if abs(total - 1.0) > PROBABILITY_SUM_TOLERANCE:
        return f"outcome probabilities sum to {total!r}, not 1 within {PROBABILITY_SUM_TOLERANCE:g}"
    return None


def expected_value_pct(probabilities: Mapping[str, float], payoffs: Mapping[str, float], costs_pct: float) -> float:
    """Sum over the outcomes of p * payoff, minus the round-trip costs (% of notional)."""
    return math.fsum(probabilities[o] * payoffs[o] for o in OUTCOMES) - costs_pct


def expected_r(ev_pct: float, sl_pct: float, costs_pct: float) -> float:
    """The expected value in units of what a stop-out loses (stop distance plus costs)."""
    return ev_pct / (sl_pct + costs_pct)


def bracket_mismatch(bracket: Mapping[str, object] | None, sl_atr: float, tp_atr: Sequence[float],
                     life_candles: float) -> str | None:
    """Why the model's bracket is not the traded one (a sentence), or None when they are the same.

    The outcome probabilities are those of the geometry the model was trained for; a different stop,
    target or life makes them someone else's numbers, so there is no expected value to show.
    """
    if bracket is None:
        return "the prediction names no bracket for its outcome probabilities"
    model_sl, model_tp, model_life = bracket.get("sl_atr"), bracket.get("tp_atr"), bracket.get("life_candles")
    differences = []
    if not _close(model_sl, sl_atr):
        differences.append(f"SL {model_sl} ATR (signal {sl_atr:g})")
    if not (isinstance(model_tp, (list, tuple)) and len(model_tp) == len(tp_atr)
            and all(_close(m, t) for m, t in zip(model_tp, tp_atr, strict=True))):
        differences.append(f"TP {model_tp} ATR (signal {list(tp_atr)})")
    if not _close(model_life, life_candles):
        differences.append(f"life {model_life} candles (signal {life_candles:g})")
    if differences:
        return "model bracket differs from the signal's: " + "; ".join(differences)
    return None


@dataclass(frozen=True, slots=True)
class EdgeVerdict:
    """The gate's reading of the out-of-sample evidence for one (market, side)."""

    proven: bool
    lower_bound_pct: float | None  # mean - 2 SE, None when there is no usable evidence
    message: str


def edge_verdict(evidence: Mapping[str, object] | None, side: str) -> EdgeVerdict:
    """Proven only when the evidence exists, is well formed and mean - 2 SE > 0; anything else is unproven."""
    if not evidence:
        return EdgeVerdict(False, None, f"no out-of-sample evidence for {side}")
    n, mean, se = evidence.get("n"), evidence.get("mean_net_pct"), evidence.get("se_pct")
    numbers_ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                     for v in (n, mean, se))
    if not numbers_ok or not isinstance(n, int) or n < 2 or se < 0:  # type: ignore[operator]
        return EdgeVerdict(False, None, f"malformed out-of-sample evidence for {side}")
    bound = float(mean) - EDGE_SE_MULTIPLE * float(se)  # type: ignore[arg-type]
    text = (f"out-of-sample {side}: mean net {mean:+.3f}% - {EDGE_SE_MULTIPLE:g} SE ({se:.3f}) = {bound:+.3f}% "
            f"over {n} signals")
    return EdgeVerdict(bound > 0, bound, text + (" > 0" if bound > 0 else " <= 0"))


def _close(value: object, expected: float) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isclose(float(value), expected, rel_tol=MATCH_TOLERANCE, abs_tol=MATCH_TOLERANCE))
