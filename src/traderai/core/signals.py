"""Signal math: a prediction becomes a complete trade setup, or a rejection with its reason.

Formulas are README's "Signal math": distances are ATR multiples, gross profit is the weighted
average of the take-profit distances, net = gross - round-trip costs (the best case: every target
fills), and the risk/reward ratio is gross / stop distance as the seed computes it.

Issue 12: a candidate the seed's rules accept is stored, but it is *tradeable* only when its expected
value over the bracket's outcomes (core/expected_value.py) is at least MIN_EXPECTED_VALUE_PCT, the
model's out-of-sample evidence for (market, side) proves an edge (mean - 2 SE > 0), and no protection
locks the market (core/protections.py). Otherwise it is a *paper* signal with its reasons.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from traderai.contracts import (
    TIMEFRAME_SECONDS,
    ContractError,
    Decision,
    PaperReason,
    Prediction,
    RejectReason,
    Side,
    Signal,
    SignalStatus,
    Strategy,
    iso_utc,
    parse_iso_utc,
)
from traderai.core.expected_value import (
    bracket_mismatch,
    edge_verdict,
    expected_r,
    expected_value_pct,
    outcome_payoffs,
    probabilities_problem,
)
from traderai.core.protections import Lock


@dataclass(frozen=True, slots=True)
class Levels:
    """Entry, three take-profits and the stop, with the percentages derived from them."""

    side: Side
    entry: float
    take_profits: tuple[float, float, float]
    stop: float
    tp_pcts: tuple[float, float, float]
    sl_pct: float
    gross_profit_pct: float
    costs_pct: float

    @property
    def expected_net_profit_pct(self) -> float:
        return self.gross_profit_pct - self.costs_pct

    @property
    def risk_reward_ratio(self) -> float:
        return self.gross_profit_pct / self.sl_pct

    @property
    def net_risk_reward_ratio(self) -> float:
        """Net reward over the stop's loss including costs: what a trader actually risks."""
        return self.expected_net_profit_pct / (self.sl_pct + self.costs_pct)


def compute_levels(side: Side, entry: float, atr: float, strategy: Strategy) -> Levels:
    """Place TP1-3 and SL at ATR multiples from entry (LONG: TPs above, SL below; SHORT mirrored)."""
    if not (math.isfinite(entry) and entry > 0):
        raise ValueError(f"entry must be a positive finite price, got {entry}")
    if not (math.isfinite(atr) and atr > 0):
        raise ValueError(f"atr must be positive and finite, got {atr}")
    direction = 1.0 if side is Side.LONG else -1.0
    take_profits = tuple(entry + direction * m * atr for m in strategy.tp_atr_multipliers)
    stop = entry - direction * strategy.sl_atr_multiplier * atr
    tp_pcts = tuple(abs(tp - entry) / entry * 100.0 for tp in take_profits)
    sl_pct = abs(stop - entry) / entry * 100.0
    gross = sum(w * pct for w, pct in zip(strategy.tp_weights, tp_pcts, strict=True))
    return Levels(side=side, entry=entry, take_profits=take_profits, stop=stop,  # type: ignore[arg-type]
                  tp_pcts=tp_pcts, sl_pct=sl_pct, gross_profit_pct=gross,  # type: ignore[arg-type]
                  costs_pct=strategy.costs_pct)


def liquidation_distance_pct(leverage: int, maintenance_margin_pct: float, side: Side) -> float:
    """Adverse move (%) that liquidates an isolated position: margin + PnL = maintenance margin at that price.

    LONG: E/L + (P - E) = m·P  ->  (1/L - m) / (1 - m);  SHORT: E/L + (E - P) = m·P  ->  (1/L - m) / (1 + m).
    The SHORT's is the shorter: 1/L - m would let a SHORT stop sit past its liquidation price.
    """
    margin = maintenance_margin_pct / 100.0
    return 100.0 * (1.0 / leverage - margin) / (1.0 - margin if side is Side.LONG else 1.0 + margin)


def round_down_to_step(value: float, step: float | None) -> float:
    """Round a quantity down to the market's amount step (never up: that would exceed the size).

    A missing or unusable step (None, <= 0, NaN, infinite) leaves the value as it is."""
    if not _usable_step(step):
        return value
    exact_step = Decimal(repr(step))
    return float((Decimal(repr(value)) // exact_step) * exact_step)


def round_to_step(price: float, step: float | None) -> float:
    """Round a price to the market's tick (nearest); an unusable step leaves it as it is."""
    if not _usable_step(step):
        return price
    exact_step = Decimal(repr(step))
    return float((Decimal(repr(price)) / exact_step).to_integral_value(ROUND_HALF_EVEN) * exact_step)


def _usable_step(step: float | None) -> bool:
    return step is not None and math.isfinite(step) and step > 0


def signal_id_for(prediction: Prediction) -> str:
    """Deterministic id: the same prediction (a retried tick) always yields the same signal id."""
    digest = hashlib.sha256(
        f"{prediction.model_id}|{prediction.symbol}|{prediction.candle_time}".encode()
    ).hexdigest()[:12]
    return f"signal_{prediction.symbol.replace('/', '_').replace(':', '_')}_{digest}"


def signal_delay_seconds(prediction: Prediction, decided_at: datetime) -> float | None:
    """Seconds from the prediction's candle close to the decision; None if the candle time is unreadable."""
    timeframe = TIMEFRAME_SECONDS.get(prediction.timeframe)
    try:
        candle_open = parse_iso_utc(prediction.candle_time, "candle_time")
    except ContractError:
        return None
    if timeframe is None:
        return None
    return (decided_at - candle_open).total_seconds() - timeframe


def rejection_message(symbol: str, reason: RejectReason, levels: Levels | None,
                      prediction: Prediction, strategy: Strategy, decided_at: datetime) -> str:
    """The log sentence for a rejection, in the seed's words where the seed has them."""
    head = f"Signal rejected for {symbol}: "
    match reason:
        case RejectReason.LOW_NET_PROFIT:
            assert levels is not None
            return (head + f"Expected net profit {levels.expected_net_profit_pct:.2f}% "
                    f"< minimum {strategy.min_net_profit_pct:.1f}%")
        case RejectReason.LOW_CONFIDENCE:
            return head + f"Confidence {prediction.confidence:.3f} < minimum {strategy.min_confidence:.3f}"
        case RejectReason.LOW_LIQUIDITY:
            return (head + f"24h quote volume {prediction.quote_volume_24h or 0:,.0f} "
                    f"< minimum {strategy.min_quote_volume_usd:,.0f}")
        case RejectReason.STOP_BEYOND_LIQUIDATION:
            assert levels is not None
            return (head + f"Stop {levels.sl_pct:.2f}% away is beyond liquidation at "
                    f"{liquidation_distance_pct(strategy.leverage, strategy.maintenance_margin_pct, levels.side):.2f}% "
                    f"({strategy.leverage}x)")
        case RejectReason.DUPLICATE_ACTIVE:
            return head + "an open signal for this symbol and side already exists"
        case RejectReason.DRIFT:
            return head + f"feature drift PSI {prediction.drift_score:.3f} > maximum {strategy.max_drift_psi:.3f}"
        case RejectReason.STALE_PREDICTION:
            return (head + f"prediction is {signal_delay_seconds(prediction, decided_at) or 0:.0f} s past its "
                    f"candle's close > maximum {strategy.max_signal_delay_seconds:.0f} s (the entry would be stale)")
        case RejectReason.INVALID_PREDICTION:
            return head + f"invalid prediction (probability={prediction.probability}, atr={prediction.atr})"
        case _:
            return head + str(reason)


@dataclass(frozen=True, slots=True)
class Expectation:
    """The expected value of the chosen side's bracket, or why there is none (`missing`)."""

    expected_value_pct: float | None = None
    expected_r: float | None = None
    outcome_probabilities: dict[str, float] | None = None
    missing: str | None = None  # why no EV: no outcome model, a bracket mismatch, no expiry exits


def outcome_problem(prediction: Prediction) -> str | None:
    """Why the prediction's outcome data are invalid (-> invalid_prediction), or None.

    Every side's probabilities must be finite, >= 0 and sum to 1 within 1e-9; expiry exits must be finite.
    A wrong shape never gets here (Prediction.from_dict refuses it); these are the model's *values*.
    """
    for side, probabilities in (prediction.outcome_probabilities or {}).items():
        problem = probabilities_problem(probabilities)
        if problem:
            return f"{side} {problem}"
    for side, exits in (prediction.expiry_exit_atr or {}).items():
        if not all(math.isfinite(e) for e in exits):
            return f"{side} expiry exits not finite: {list(exits)}"
    return None


def expectation(prediction: Prediction, side: Side, levels: Levels, strategy: Strategy) -> Expectation:
    """EV of the side's bracket from the prediction's outcome probabilities (valid: see outcome_problem)."""
    probabilities = (prediction.outcome_probabilities or {}).get(side.value)
    if probabilities is None:
        return Expectation(missing=f"the model gives no outcome probabilities for {side.value}")
    timeframe = TIMEFRAME_SECONDS.get(prediction.timeframe)
    life = strategy.signal_ttl_hours * 3600 / timeframe if timeframe else math.nan
    mismatch = bracket_mismatch(prediction.bracket, strategy.sl_atr_multiplier, strategy.tp_atr_multipliers, life)
    if mismatch:
        return Expectation(missing=mismatch)
    exits = (prediction.expiry_exit_atr or {}).get(side.value)
    if exits is None:
        return Expectation(missing=f"the model gives no expiry exits for {side.value}")
    payoffs = outcome_payoffs(levels.tp_pcts, levels.sl_pct, strategy.tp_weights, exits,
                              prediction.atr / levels.entry * 100.0)
    ev = expected_value_pct(probabilities, payoffs, levels.costs_pct)
    return Expectation(ev, expected_r(ev, levels.sl_pct, levels.costs_pct), dict(probabilities))


def paper_reasons(prediction: Prediction, side: Side, expected: Expectation, strategy: Strategy,
                  locks: tuple[Lock, ...]) -> tuple[tuple[PaperReason, str], ...]:
    """Every reason this accepted candidate claims no edge, each with its sentence (empty: tradeable)."""
    reasons: list[tuple[PaperReason, str]] = []
    if expected.expected_value_pct is None:
        reasons.append((PaperReason.NO_PROVEN_EDGE, f"no expected value: {expected.missing}"))
    elif expected.expected_value_pct < strategy.min_expected_value_pct:
        reasons.append((PaperReason.NEGATIVE_EXPECTED_VALUE,
                        f"expected value {expected.expected_value_pct:+.2f}% < minimum "
                        f"{strategy.min_expected_value_pct:.2f}%"))
    verdict = edge_verdict((prediction.edge_evidence or {}).get(side.value), side.value)
    if not verdict.proven:
        if reasons and reasons[0][0] is PaperReason.NO_PROVEN_EDGE:
            reasons[0] = (PaperReason.NO_PROVEN_EDGE, f"{reasons[0][1]}; {verdict.message}")
        else:
            reasons.append((PaperReason.NO_PROVEN_EDGE, verdict.message))
    for lock in locks:
        reasons.append((PaperReason(lock.protection), lock.message))
    return tuple(reasons)


def decide(prediction: Prediction, strategy: Strategy, *, decided_at: datetime,
           active: frozenset[tuple[str, str]] = frozenset(),
           locks: tuple[Lock, ...] = ()) -> tuple[Decision, Signal | None]:
    """Turn one prediction into a Decision (and its Signal when accepted).

    Every filter runs; the headline failure is the reason, all failures are listed. `active`
    holds (symbol, side) pairs that already have another ACTIVE signal; `locks` the protections in
    force on this market at `decided_at`. An accepted signal is tradeable, or paper with its reasons
    (EDGE_GATE=enforce; `warn` logs the reasons and keeps it tradeable; `off` is the seed's behaviour).
    """
    p, atr, price = prediction.probability, prediction.atr, prediction.price
    valid = all(math.isfinite(x) for x in (p, atr, price)) and 0.0 <= p <= 1.0 and atr > 0 and price > 0
    outcomes_wrong = outcome_problem(prediction) if strategy.edge_gate != "off" else None
    if not valid or outcomes_wrong:
        message = rejection_message(prediction.symbol, RejectReason.INVALID_PREDICTION, None, prediction, strategy,
                                    decided_at)
        if outcomes_wrong:
            message = f"Signal rejected for {prediction.symbol}: invalid prediction ({outcomes_wrong})"
        return _decision(prediction, decided_at, None, None, (RejectReason.INVALID_PREDICTION,), message), None

    side = Side.LONG if p >= 0.5 else Side.SHORT
    confidence = max(p, 1.0 - p)
    levels = compute_levels(side, price, atr, strategy)
    expected = (expectation(prediction, side, levels, strategy) if strategy.edge_gate != "off"
                else Expectation(missing="EDGE_GATE=off"))
    failing: list[RejectReason] = []
    if confidence < strategy.min_confidence:
        failing.append(RejectReason.LOW_CONFIDENCE)
    if levels.expected_net_profit_pct < strategy.min_net_profit_pct:
        failing.append(RejectReason.LOW_NET_PROFIT)
    if prediction.quote_volume_24h is None or prediction.quote_volume_24h < strategy.min_quote_volume_usd:
        failing.append(RejectReason.LOW_LIQUIDITY)
    if levels.sl_pct >= liquidation_distance_pct(strategy.leverage, strategy.maintenance_margin_pct, side):
        failing.append(RejectReason.STOP_BEYOND_LIQUIDATION)
    if strategy.max_drift_psi > 0 and (prediction.drift_score or 0.0) > strategy.max_drift_psi:
        failing.append(RejectReason.DRIFT)
    if (prediction.symbol, side.value) in active:
        failing.append(RejectReason.DUPLICATE_ACTIVE)
    delay = signal_delay_seconds(prediction, decided_at)
    if strategy.max_signal_delay_seconds > 0 and delay is not None and delay > strategy.max_signal_delay_seconds:
        failing.append(RejectReason.STALE_PREDICTION)
    # Report the seed's headline filter first when it fails, so the answer to "why no signals?"
    # reads the way the seed's log does; the full list stays in `reasons`.
    failing.sort(key=_REASON_ORDER.index)
    if failing:
        message = rejection_message(prediction.symbol, failing[0], levels, prediction, strategy, decided_at)
        return _decision(prediction, decided_at, side, levels, tuple(failing), message, expected=expected), None

    paper = paper_reasons(prediction, side, expected, strategy, locks) if strategy.edge_gate != "off" else ()
    tradeable = strategy.edge_gate != "enforce" or not paper
    codes = tuple(reason.value for reason, _ in paper)
    signal = build_signal(prediction, side, levels, strategy, decided_at, expected=expected, tradeable=tradeable,
                          paper_reasons=codes if not tradeable else ())
    message = accepted_message(signal, levels, expected, paper, tradeable)
    return _decision(prediction, decided_at, side, levels, (), message, signal_id=signal.signal_id,
                     expected=expected, tradeable=tradeable, paper_reasons=codes), signal


def accepted_message(signal: Signal, levels: Levels, expected: Expectation,
                     paper: tuple[tuple[PaperReason, str], ...], tradeable: bool) -> str:
    """The log sentence of an accepted signal: expected value and P(stop) first, the best case labelled."""
    head = (f"Signal accepted for {signal.symbol}: {signal.side} entry {signal.entry_price} "
            f"{'TRADEABLE' if tradeable else 'PAPER'}: ")
    if expected.expected_value_pct is not None and expected.outcome_probabilities is not None:
        head += (f"expected value {expected.expected_value_pct:+.2f}% "
                 f"(P(stop) {expected.outcome_probabilities['stop']:.0%}), ")
    else:
        head += "expected value unknown, "
    head += f"best case {levels.expected_net_profit_pct:+.2f}% if every target fills"
    if paper:
        head += ("; paper: " if not tradeable else "; would be paper: ") + "; ".join(
            f"{reason.value} ({text})" for reason, text in paper)
    return head


def build_signal(prediction: Prediction, side: Side, levels: Levels, strategy: Strategy,
                 created: datetime, *, expected: Expectation | None = None, tradeable: bool = True,
                 paper_reasons: tuple[str, ...] = ()) -> Signal:
    """The stored setup; `created` is the decision time (deterministic per tick, so retries match)."""
    expected = expected or Expectation()
    step = prediction.price_step
    quantity = round_down_to_step(strategy.position_size_usd / levels.entry, prediction.amount_step)
    tp1, tp2, tp3 = (round_to_step(tp, step) for tp in levels.take_profits)
    return Signal(
        signal_id=signal_id_for(prediction),
        symbol=prediction.symbol,
        side=side.value,
        entry_price=levels.entry,  # the close itself: already a traded price on the tick grid
        tp1_price=tp1, tp2_price=tp2, tp3_price=tp3,
        sl_price=round_to_step(levels.stop, step),
        leverage=strategy.leverage,
        position_size_usd=strategy.position_size_usd,
        quantity=quantity,
        gross_profit_pct=round(levels.gross_profit_pct, 6),
        costs_pct=round(levels.costs_pct, 6),
        expected_net_profit_pct=round(levels.expected_net_profit_pct, 6),
        net_risk_reward_ratio=round(levels.net_risk_reward_ratio, 6),
        confidence=prediction.confidence,
        probability=prediction.probability,
        risk_reward_ratio=round(levels.risk_reward_ratio, 6),
        status=SignalStatus.ACTIVE.value,
        created_at=iso_utc(created),
        expires_at=iso_utc(created + timedelta(hours=strategy.signal_ttl_hours)),
        model_id=prediction.model_id,
        batch_id=prediction.batch_id,
        exchange=prediction.exchange,
        timeframe=prediction.timeframe,
        atr=prediction.atr,
        candle_time=prediction.candle_time,
        tp_weights=strategy.tp_weights,  # the tracker realises profit with these, whatever TP_WEIGHTS becomes
        expected_value_pct=_rounded(expected.expected_value_pct),
        expected_r=_rounded(expected.expected_r),
        outcome_probabilities=expected.outcome_probabilities,
        tradeable=tradeable,
        paper_reasons=paper_reasons,
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


_REASON_ORDER = [RejectReason.INVALID_PREDICTION, RejectReason.STALE_PREDICTION, RejectReason.LOW_NET_PROFIT,
                 RejectReason.LOW_CONFIDENCE, RejectReason.LOW_LIQUIDITY, RejectReason.STOP_BEYOND_LIQUIDATION,
                 RejectReason.DRIFT, RejectReason.MODEL_EXPIRED, RejectReason.DUPLICATE_ACTIVE]


def _decision(prediction: Prediction, decided_at: datetime, side: Side | None, levels: Levels | None,
              reasons: tuple[RejectReason, ...], message: str, signal_id: str | None = None, *,
              expected: Expectation | None = None, tradeable: bool | None = None,
              paper_reasons: tuple[str, ...] = ()) -> Decision:
    expected = expected or Expectation()
    return Decision(
        batch_id=prediction.batch_id, model_id=prediction.model_id, symbol=prediction.symbol,
        candle_time=prediction.candle_time, decided_at=iso_utc(decided_at), accepted=not reasons,
        reason=reasons[0].value if reasons else None, reasons=tuple(r.value for r in reasons),
        message=message, side=side.value if side else None, probability=prediction.probability,
        confidence=prediction.confidence, entry_price=prediction.price, atr=prediction.atr,
        gross_profit_pct=levels.gross_profit_pct if levels else None,
        costs_pct=levels.costs_pct if levels else None,
        expected_net_profit_pct=levels.expected_net_profit_pct if levels else None,
        sl_pct=levels.sl_pct if levels else None, signal_id=signal_id,
        expected_value_pct=expected.expected_value_pct, expected_r=expected.expected_r,
        outcome_probabilities=expected.outcome_probabilities, tradeable=tradeable, paper_reasons=paper_reasons,
    )
