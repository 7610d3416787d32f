"""The values that cross a boundary: prediction log lines, decisions, signals, API-key rows, and what
the pure core computes from (candles, market facts, the strategy's parameters).

The bottom layer: it imports nothing of the project, and the core imports nothing else of it. Plain
frozen dataclasses over floats and strings; `Candles` holds numpy arrays but this module never imports
numpy, so the API and WebSocket paths import it cheaply. Field names are the contract of
docs/design.md ("Contracts"); `to_dict` gives the JSON shape.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Self, cast

if TYPE_CHECKING:  # annotations only: numpy is never imported here (the API path does not load it)
    import numpy as np


class ContractError(ValueError):
    """A record does not have the shape of its contract; the message names the field."""


class Side(StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"


class SignalStatus(StrEnum):
    ACTIVE = "ACTIVE"
    TP1_HIT = "TP1_HIT"
    TP2_HIT = "TP2_HIT"
    TP3_HIT = "TP3_HIT"
    STOPPED = "STOPPED"
    EXPIRED = "EXPIRED"


OPEN_STATUSES = (SignalStatus.ACTIVE, SignalStatus.TP1_HIT, SignalStatus.TP2_HIT)
"""A signal in one of these is a position still in play: tracked, and blocking a second one (same side)."""


class ClosedReason(StrEnum):
    """Why a trade closed (`closed_reason`): set with every final status by the tracker."""

    ALL_TARGETS = "all_targets"  # TP3_HIT
    STOP = "stop"  # STOPPED: the rest left at the stop
    EXPIRY = "expiry"  # EXPIRED: the rest left at the last close inside the life
    NO_MARKET_DATA = "no_market_data"  # EXPIRED with no candle to price the rest: exit_price stays null


class RejectReason(StrEnum):
    """Reason codes of a rejected decision: stable strings, queried in Athena and counted in metrics."""

    INVALID_PREDICTION = "invalid_prediction"
    STALE_PREDICTION = "stale_prediction"
    LOW_CONFIDENCE = "low_confidence"
    LOW_NET_PROFIT = "low_net_profit"
    LOW_LIQUIDITY = "low_liquidity"
    STOP_BEYOND_LIQUIDATION = "stop_beyond_liquidation"
    DUPLICATE_ACTIVE = "duplicate_active"
    DRIFT = "drift"
    MODEL_EXPIRED = "model_expired"


class PaperReason(StrEnum):
    """Why an accepted signal is paper (`tradeable: false`): stable strings in `paper_reasons`.

    A paper signal passed every rule of the seed and is stored and tracked like any other, but it
    claims no edge: its expected value is below MIN_EXPECTED_VALUE_PCT, the model's out-of-sample
    evidence for (market, side) does not prove one, or a protection locks the market.
    """

    NEGATIVE_EXPECTED_VALUE = "negative_expected_value"
    NO_PROVEN_EDGE = "no_proven_edge"
    PROTECTION_STOPLOSS_GUARD = "protection_stoploss_guard"
    PROTECTION_LOW_PROFIT = "protection_low_profit"


OUTCOMES = ("stop", "tp1_stop", "tp2_stop", "tp3", "expiry")
"""The five mutually exclusive outcomes of a signal's bracket within its life (the tracker's rule):
stop before TP1; TP1 then the stop; TP2 then the stop; TP3; the life ended open."""

SIDES = (Side.LONG.value, Side.SHORT.value)
EDGE_EVIDENCE_KEYS = ("n", "mean_net_pct", "se_pct")


def iso_utc(moment: datetime) -> str:
    """ISO-8601 UTC with a `Z`, second precision: the one time format of every record."""
    if moment.tzinfo is None:
        raise ContractError("naive datetime: every time in TraderAI is UTC-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso_utc(text: object, name: str = "time") -> datetime:
    """Parse an ISO-8601 time; anything else (a time without an offset too) is refused rather than guessed."""
    try:
        moment = datetime.fromisoformat(cast(str, text).replace("Z", "+00:00"))
    except (TypeError, ValueError, AttributeError) as exc:
        raise ContractError(f"{name}: {text!r} is not an ISO-8601 time") from exc
    if moment.tzinfo is None:
        raise ContractError(f"{name}: {text!r} has no UTC offset (write it with Z or +00:00)")
    return moment.astimezone(UTC)


def _finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ContractError(f"{name}: expected a number, got {type(value).__name__}")
    return float(value)


def _per_side(value: Any, name: str) -> dict[str, Any]:
    """An object keyed by side (LONG and/or SHORT, at least one), else ContractError naming the field."""
    if not isinstance(value, dict) or not value:
        raise ContractError(f"{name}: expected an object keyed by LONG and/or SHORT")
    unknown = sorted(str(k) for k in value if k not in SIDES)
    if unknown:
        raise ContractError(f"{name}: unknown side(s) {', '.join(unknown)} (expected LONG and/or SHORT)")
    return value


def _numbers(value: Any, count: int, name: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != count:
        raise ContractError(f"{name}: expected a list of {count} numbers")
    return tuple(_finite(v, name) for v in value)


def parse_outcome_probabilities(value: Any, name: str = "prediction.outcome_probabilities"
                                ) -> dict[str, dict[str, float]] | None:
    """`{side: {outcome: p}}` with exactly the five OUTCOMES per side, or None.

    Only the shape is checked: NaN, negative or not-summing-to-1 probabilities are data that the
    signal step rejects as `invalid_prediction` (logged), like a NaN `probability`.
    """
    if value is None:
        return None
    parsed: dict[str, dict[str, float]] = {}
    for side, outcomes in _per_side(value, name).items():
        if not isinstance(outcomes, dict) or set(outcomes) != set(OUTCOMES):
            raise ContractError(f"{name}.{side}: expected exactly the outcomes {', '.join(OUTCOMES)}")
        parsed[side] = {o: _finite(outcomes[o], f"{name}.{side}.{o}") for o in OUTCOMES}
    return parsed


def _parse_expiry_exit_atr(value: Any) -> dict[str, tuple[float, float, float]] | None:
    if value is None:
        return None
    name = "prediction.expiry_exit_atr"
    return {side: _numbers(exits, 3, f"{name}.{side}")  # type: ignore[misc]
            for side, exits in _per_side(value, name).items()}


def _parse_bracket(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    name = "prediction.bracket"
    if not isinstance(value, dict) or not {"sl_atr", "tp_atr", "life_candles"} <= set(value):
        raise ContractError(f"{name}: expected an object with sl_atr, tp_atr, life_candles")
    life = value["life_candles"]
    if isinstance(life, bool) or not isinstance(life, int) or life < 1:
        raise ContractError(f"{name}.life_candles: expected a positive integer")
    return {"sl_atr": _finite(value["sl_atr"], f"{name}.sl_atr"),
            "tp_atr": list(_numbers(value["tp_atr"], 3, f"{name}.tp_atr")),
            "life_candles": life}


def _parse_edge_evidence(value: Any) -> dict[str, dict[str, float]] | None:
    """Keep each side's `n`, `mean_net_pct`, `se_pct` when well formed; drop the rest.

    Never a ContractError: missing or malformed evidence means *unproven* (a paper signal), so a side
    whose entry is malformed (not an object, n not a non-negative integer, a non-finite mean or a
    negative / non-finite SE) is left out, exactly as if the manifest had none. Extra keys of the
    manifest's evidence (e.g. `ev_buckets`) are not carried into the prediction log.
    """
    if not isinstance(value, dict):
        return None
    kept: dict[str, dict[str, float]] = {}
    for side in SIDES:
        entry = value.get(side)
        if not isinstance(entry, dict):
            continue
        n, mean, se = (entry.get(k) for k in EDGE_EVIDENCE_KEYS)
        numbers = (mean, se)
        if (isinstance(n, bool) or not isinstance(n, int) or n < 0
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in numbers)
                or not all(math.isfinite(cast(float, v)) for v in numbers) or cast(float, se) < 0):
            continue
        kept[side] = {"n": n, "mean_net_pct": float(cast(float, mean)), "se_pct": float(cast(float, se))}
    return kept


@dataclass(frozen=True, slots=True)
class Prediction:
    """One model prediction for one market at one closed candle (a line of the prediction log)."""

    batch_id: str
    model_id: str
    exchange: str
    symbol: str
    timeframe: str
    candle_time: str  # open time of the last closed candle, ISO-8601 UTC
    predicted_at: str
    price: float  # close of that candle
    atr: float
    probability: float
    confidence: float
    side: str  # "long" | "short", as the seed logs it
    horizon: int  # candles
    # Market context the signal filters need (from the exchange's market and ticker data).
    quote_volume_24h: float | None = None
    amount_step: float | None = None
    price_step: float | None = None
    drift_score: float | None = None
    features: dict[str, float] = field(default_factory=dict)
    # Issue 12 (docs: README "Signal math"): the outcome model's view of the bracket actually traded.
    # None when the serving model has none (then no expected value: the signal can only be paper).
    outcome_probabilities: dict[str, dict[str, float]] | None = None  # {LONG|SHORT: {outcome: p}}
    expiry_exit_atr: dict[str, tuple[float, float, float]] | None = None  # {side: mean exit per tranche, ATR}
    bracket: dict[str, Any] | None = None  # {"sl_atr", "tp_atr": [3], "life_candles"} the model was trained for
    edge_evidence: dict[str, dict[str, float]] | None = None  # {side: {n, mean_net_pct, se_pct}} out of sample

    @staticmethod
    def side_of(probability: float) -> str:
        return "long" if probability >= 0.5 else "short"

    @staticmethod
    def confidence_of(probability: float) -> float:
        return max(probability, 1.0 - probability)

    def to_dict(self, *, with_features: bool = True) -> dict[str, Any]:
        record = asdict(self)
        if not with_features:
            record.pop("features")
        if self.expiry_exit_atr is not None:
            record["expiry_exit_atr"] = {side: list(exits) for side, exits in self.expiry_exit_atr.items()}
        return record

    @classmethod
    def from_dict(cls, record: Any) -> Self:
        """Build from a JSON object; missing or mistyped fields raise ContractError naming them.

        NaN probability or a non-positive ATR are *not* refused here: they are data the signal
        step must reject with a reason code and log, not a malformed event. The same holds for
        outcome probabilities that are NaN, negative or do not sum to 1: their *shape* is checked
        here, their values by the signal step. Malformed `edge_evidence` is kept out, never refused.
        """
        if not isinstance(record, dict):
            raise ContractError(f"prediction: expected a JSON object, got {type(record).__name__}")
        required = ("batch_id", "model_id", "exchange", "symbol", "timeframe", "candle_time",
                    "predicted_at", "price", "atr", "probability", "horizon")
        missing = [name for name in required if name not in record]
        if missing:
            raise ContractError(f"prediction: missing field(s) {', '.join(missing)}")
        for name in ("batch_id", "model_id", "exchange", "symbol", "timeframe", "candle_time",
                     "predicted_at"):
            if not isinstance(record[name], str) or not record[name]:
                raise ContractError(f"prediction.{name}: expected a non-empty string")
        probability = _finite(record["probability"], "prediction.probability")
        optional = {}
        for name in ("quote_volume_24h", "amount_step", "price_step", "drift_score"):
            if record.get(name) is not None:
                optional[name] = _finite(record[name], f"prediction.{name}")
        horizon = record["horizon"]
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ContractError("prediction.horizon: expected a positive integer")
        features = record.get("features") or {}
        if not isinstance(features, dict):
            raise ContractError("prediction.features: expected an object of name -> number")
        return cls(
            batch_id=record["batch_id"], model_id=record["model_id"], exchange=record["exchange"],
            symbol=record["symbol"], timeframe=record["timeframe"], candle_time=record["candle_time"],
            predicted_at=record["predicted_at"],
            price=_finite(record["price"], "prediction.price"),
            atr=_finite(record["atr"], "prediction.atr"),
            probability=probability,
            confidence=(_finite(record["confidence"], "prediction.confidence")
                        if "confidence" in record else cls.confidence_of(probability)),
            side=str(record.get("side") or cls.side_of(probability)),
            horizon=horizon,
            features={str(k): float(v) for k, v in features.items()},
            outcome_probabilities=parse_outcome_probabilities(record.get("outcome_probabilities")),
            expiry_exit_atr=_parse_expiry_exit_atr(record.get("expiry_exit_atr")),
            bracket=_parse_bracket(record.get("bracket")),
            edge_evidence=_parse_edge_evidence(record.get("edge_evidence")),
            **optional,
        )


@dataclass(frozen=True, slots=True)
class Signal:
    """A complete trade setup that passed every filter (a DynamoDB item, served and pushed as JSON)."""

    signal_id: str
    symbol: str
    side: str  # LONG | SHORT
    entry_price: float
    tp1_price: float
    tp2_price: float
    tp3_price: float
    sl_price: float
    leverage: int
    position_size_usd: float
    quantity: float
    gross_profit_pct: float
    """Weighted take-profit distance, % of notional, before costs: the gross if every target fills."""
    costs_pct: float
    expected_net_profit_pct: float
    """The BEST CASE, not an expectation: the net profit (% of notional, after costs) if every target fills.
    The seed's name and its 2 % rule (MIN_NET_PROFIT_PCT); what the signal is worth is expected_value_pct."""
    net_risk_reward_ratio: float
    confidence: float
    probability: float
    risk_reward_ratio: float
    """gross_profit_pct / stop distance (the seed's ratio: the same for every signal at fixed multipliers)."""
    status: str
    created_at: str
    expires_at: str
    model_id: str
    batch_id: str
    exchange: str
    timeframe: str
    atr: float
    candle_time: str
    # Partial-exit weights of TP1..TP3 in force when the signal was built (TP_WEIGHTS then); the tracker
    # realises profit with these. None only on items stored before signals recorded them.
    tp_weights: tuple[float, float, float] | None = None
    # Lifecycle, set by the tracker as the trade plays out (docs/lifecycle.md); None until it happens.
    tp1_hit_at: str | None = None
    tp2_hit_at: str | None = None
    tp3_hit_at: str | None = None
    closed_at: str | None = None  # TP3 hit, stopped or expired
    exit_price: float | None = None  # where the rest left (stop, or market at expiry); None if no price known
    closed_reason: str | None = None  # a ClosedReason value once final
    realised_net_pct: float | None = None  # exits taken so far, costs charged by the weight exited
    time_in_trade_seconds: float | None = None  # created_at -> closed_at (or the latest hit while open)
    updated_at: str | None = None  # when the tracker last changed the status
    # Issue 12: what the signal is worth in expectation, and whether it claims an edge. None on items
    # stored before signals recorded them (those were all published as tradeable).
    expected_value_pct: float | None = None
    """What the signal is worth in expectation: the sum over the bracket's outcomes of P(outcome) x payoff,
    minus costs, % of notional. Null when the model gives no outcome probabilities for this bracket."""
    expected_r: float | None = None
    """expected_value_pct / (stop distance % + costs_pct): the expected value in units of a stop-out's loss."""
    outcome_probabilities: dict[str, float] | None = None
    """P of each outcome within the signal's life: stop, tp1_stop, tp2_stop, tp3, expiry (they sum to 1)."""
    tradeable: bool | None = None
    """false: a PAPER signal (passed the seed's rules, tracked, but claims no edge; see paper_reasons).
    Null on signals stored before the field existed, which were published as tradeable."""
    paper_reasons: tuple[str, ...] | None = None
    """Why paper: negative_expected_value, no_proven_edge, protection_stoploss_guard, protection_low_profit."""

    # The OpenAPI document describes the fields with the docstrings above (services.api.attribute_docs).

    def __post_init__(self) -> None:
        # JSON and DynamoDB hand the weights back as a list: hold them as a tuple, so a signal read back
        # equals the one written (and stays hashable like the frozen record it is).
        if self.tp_weights is not None and not isinstance(self.tp_weights, tuple):
            object.__setattr__(self, "tp_weights", tuple(self.tp_weights))
        if self.paper_reasons is not None and not isinstance(self.paper_reasons, tuple):
            object.__setattr__(self, "paper_reasons", tuple(self.paper_reasons))

    @property
    def is_tradeable(self) -> bool:
        """Tradeable unless marked paper: items stored before the edge gate were all published as tradeable."""
        return self.tradeable is not False

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        if self.tp_weights is not None:
            record["tp_weights"] = list(self.tp_weights)
        if self.paper_reasons is not None:
            record["paper_reasons"] = list(self.paper_reasons)
        return record

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def required_field_names(cls) -> tuple[str, ...]:
        """The fields every stored signal has (lifecycle fields come later; older items lack `tp_weights`)."""
        return tuple(f.name for f in fields(cls) if f.default is MISSING)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Self:
        missing = [name for name in cls.required_field_names() if name not in record]
        if missing:
            raise ContractError(f"signal: missing field(s) {', '.join(missing)}")
        weights = record.get("tp_weights")
        if weights is not None and (not isinstance(weights, (list, tuple)) or len(weights) != 3):
            raise ContractError("signal.tp_weights: expected a list of three numbers")
        if weights is not None:
            record = record | {"tp_weights": tuple(_finite(w, "signal.tp_weights") for w in weights)}
        tradeable = record.get("tradeable")
        if tradeable is not None and not isinstance(tradeable, bool):
            raise ContractError("signal.tradeable: expected true, false or null")
        paper = record.get("paper_reasons")
        if paper is not None and (not isinstance(paper, (list, tuple)) or not all(isinstance(r, str) for r in paper)):
            raise ContractError("signal.paper_reasons: expected a list of reason codes")
        outcomes = record.get("outcome_probabilities")
        if outcomes is not None:
            if not isinstance(outcomes, dict) or set(outcomes) != set(OUTCOMES):
                raise ContractError(f"signal.outcome_probabilities: expected exactly {', '.join(OUTCOMES)}")
            record = record | {"outcome_probabilities": {
                o: _finite(outcomes[o], f"signal.outcome_probabilities.{o}") for o in OUTCOMES}}
        return cls(**{name: record[name] for name in cls.field_names() if name in record})


LIFECYCLE_FIELDS = ("tp1_hit_at", "tp2_hit_at", "tp3_hit_at", "closed_at", "exit_price", "closed_reason",
                    "realised_net_pct", "time_in_trade_seconds", "updated_at")


@dataclass(frozen=True, slots=True)
class Decision:
    """The signal step's verdict on one prediction: accepted with its signal, or rejected with why.

    Every decision, accepted or rejected, is a line of the decision log (Athena: "why no signals?").
    """

    batch_id: str
    model_id: str
    symbol: str
    candle_time: str
    decided_at: str
    accepted: bool
    reason: str | None  # first failing filter (a RejectReason value), None when accepted
    reasons: tuple[str, ...]  # every failing filter, for research
    message: str  # the human sentence, in the seed's words for a rejection
    side: str | None
    probability: float | None
    confidence: float | None
    entry_price: float | None
    atr: float | None
    gross_profit_pct: float | None
    costs_pct: float | None
    expected_net_profit_pct: float | None
    sl_pct: float | None
    signal_id: str | None = None
    # Issue 12: None on rejections decided before the expected value could be computed.
    expected_value_pct: float | None = None
    expected_r: float | None = None
    outcome_probabilities: dict[str, float] | None = None  # the chosen side's five OUTCOMES, or None
    tradeable: bool | None = None  # accepted: True, or False for a paper signal; None when rejected
    paper_reasons: tuple[str, ...] = ()  # PaperReason values of a paper signal (also logged under `warn`)

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["reasons"] = list(self.reasons)
        record["paper_reasons"] = list(self.paper_reasons)
        # JSON has no NaN: a NaN from a broken prediction is logged as null, with its reason code.
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}


# What the core computes from: timeframes, the strategy's parameters, candles and market facts.

TIMEFRAME_SECONDS = {"1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600,
                     "2h": 7200, "4h": 14400, "6h": 21600, "12h": 43200, "1d": 86400}

EDGE_GATES = ("off", "warn", "enforce")


class SettingsError(ValueError):
    """A setting is missing or wrong; the message starts with the setting's name."""


@dataclass(frozen=True, slots=True)
class ProtectionSettings:
    """The guards' parameters (`Strategy.protections`: defaults and validation live there; 0 disables a guard)."""

    stoploss_guard_stops: int
    stoploss_guard_window_hours: float
    stoploss_guard_cooldown_hours: float
    low_profit_signals: int
    low_profit_min_net_pct: float
    low_profit_lookback_hours: float
    low_profit_cooldown_hours: float

    @property
    def history_hours(self) -> float:
        """How far back closes matter at any moment: cool-down plus the longer look-back of an enabled guard."""
        spans = [0.0]
        if self.stoploss_guard_stops:
            spans.append(self.stoploss_guard_cooldown_hours + self.stoploss_guard_window_hours)
        if self.low_profit_signals:
            spans.append(self.low_profit_cooldown_hours + self.low_profit_lookback_hours)
        return max(spans)


@dataclass(frozen=True, slots=True)
class Strategy:
    """Signal math parameters (docs/design.md "Signal math"); defaults are the seed's new set."""

    sl_atr_multiplier: float = 1.0
    tp_atr_multipliers: tuple[float, float, float] = (2.0, 3.5, 6.0)
    tp_weights: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)
    taker_fee_pct: float = 0.05  # per side, % of notional
    slippage_pct: float = 0.08  # per side
    funding_pct: float = 0.06  # estimate over a signal's life
    min_net_profit_pct: float = 2.0
    min_confidence: float = 0.55
    min_quote_volume_usd: float = 10_000_000.0  # 24h quote volume
    leverage: int = 20
    position_size_usd: float = 1000.0
    maintenance_margin_pct: float = 0.5  # for the liquidation-price filter
    signal_ttl_hours: float = 24.0
    max_drift_psi: float = 0.0  # 0 disables the drift gate
    # A signal decided this long after its candle closed would enter at a stale price (retried hops can
    # add up to ~30 minutes); 0 disables the gate.
    max_signal_delay_seconds: float = 900.0
    # Issue 12: a signal the seed's rules accept is tradeable only if its expected value (probability-weighted
    # over the bracket's outcomes, after costs) is at least this. 0 = "does no harm in expectation": a
    # tradeable signal is expected to at least pay its own costs; anything below 0 is a known loser.
    min_expected_value_pct: float = 0.0
    # off: every accepted signal is tradeable (the seed's behaviour); warn: tradeable as before, with the
    # paper reasons logged; enforce: a signal that fails the EV filter, the edge gate or a protection is paper.
    edge_gate: str = "enforce"
    # Protections from the live track record (core/protections.py; README "Protections"). A brake, not a
    # test: StoplossGuard reacts within a day to a run of stops (4 of them within one signal life, where a
    # bracket with no edge is stopped 2 times in 3); LowProfit is the slow one: the mean realised net of a
    # market's last 20 closed signals below -0.5 % (per-signal SD ~1.7 %, so SE ~0.39 %: a market with a
    # +0.2 % edge trips it ~4 % of the time, one losing 1 % a signal ~90 %). Each locks for one signal life.
    stoploss_guard_stops: int = 4  # 0 disables
    stoploss_guard_window_hours: float = 24.0
    stoploss_guard_cooldown_hours: float = 24.0
    low_profit_signals: int = 20  # 0 disables
    low_profit_min_net_pct: float = -0.5
    low_profit_lookback_hours: float = 168.0
    low_profit_cooldown_hours: float = 24.0

    def __post_init__(self) -> None:
        checks = {
            "SL_ATR_MULTIPLIER": self.sl_atr_multiplier > 0,
            "TP_ATR_MULTIPLIERS": len(self.tp_atr_multipliers) == 3
            and all(m > 0 for m in self.tp_atr_multipliers)
            and list(self.tp_atr_multipliers) == sorted(self.tp_atr_multipliers),
            "TP_WEIGHTS": len(self.tp_weights) == 3 and all(w >= 0 for w in self.tp_weights)
            and math.isclose(sum(self.tp_weights), 1.0, abs_tol=1e-9),
            "TAKER_FEE_PCT": 0 <= self.taker_fee_pct < 5,
            "SLIPPAGE_PCT": 0 <= self.slippage_pct < 5,
            "FUNDING_PCT": 0 <= self.funding_pct < 5,
            "MIN_NET_PROFIT_PCT": math.isfinite(self.min_net_profit_pct),
            "MIN_CONFIDENCE": 0.5 <= self.min_confidence <= 1.0,
            "MIN_QUOTE_VOLUME_USD": self.min_quote_volume_usd >= 0,
            "LEVERAGE": 1 <= self.leverage <= 125,
            "POSITION_SIZE_USD": self.position_size_usd > 0,
            "MAINTENANCE_MARGIN_PCT": 0 <= self.maintenance_margin_pct < 100 / max(self.leverage, 1),
            "SIGNAL_TTL_HOURS": self.signal_ttl_hours > 0,
            "MAX_DRIFT_PSI": self.max_drift_psi >= 0,
            "MAX_SIGNAL_DELAY_SECONDS": self.max_signal_delay_seconds >= 0,
            "MIN_EXPECTED_VALUE_PCT": 0 <= self.min_expected_value_pct < 100,
            "EDGE_GATE": self.edge_gate in EDGE_GATES,
            "STOPLOSS_GUARD_STOPS": 0 <= self.stoploss_guard_stops <= 100,
            "STOPLOSS_GUARD_WINDOW_HOURS": 0 < self.stoploss_guard_window_hours <= 720,
            "STOPLOSS_GUARD_COOLDOWN_HOURS": 0 < self.stoploss_guard_cooldown_hours <= 720,
            "LOW_PROFIT_SIGNALS": 0 <= self.low_profit_signals <= 500,
            "LOW_PROFIT_MIN_NET_PCT": -100 < self.low_profit_min_net_pct < 100,
            "LOW_PROFIT_LOOKBACK_HOURS": 0 < self.low_profit_lookback_hours <= 2160,
            "LOW_PROFIT_COOLDOWN_HOURS": 0 < self.low_profit_cooldown_hours <= 720,
        }
        wrong = [name for name, ok in checks.items() if not ok]
        if wrong:
            raise SettingsError(f"{wrong[0]}: value out of range in {self!r}")

    @property
    def protections(self) -> ProtectionSettings:
        """The protection guards' parameters, as `core.protections` takes them."""
        return ProtectionSettings(
            self.stoploss_guard_stops, self.stoploss_guard_window_hours, self.stoploss_guard_cooldown_hours,
            self.low_profit_signals, self.low_profit_min_net_pct, self.low_profit_lookback_hours,
            self.low_profit_cooldown_hours)

    @property
    def costs_pct(self) -> float:
        """Round-trip costs in % of notional: two taker fills, two slippages, funding."""
        return 2 * self.taker_fee_pct + 2 * self.slippage_pct + self.funding_pct


@dataclass(frozen=True, slots=True, eq=False)
class Candles:
    """Closed OHLCV candles of one market, oldest first; `open_time_ms` is the candle's OPEN time (UTC ms)."""

    symbol: str
    timeframe: str
    open_time_ms: np.ndarray  # int64
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray  # base-asset units

    def __len__(self) -> int:
        return int(self.open_time_ms.shape[0])

    def tail(self, n: int) -> Candles:
        return self.slice(max(0, len(self) - n), len(self))

    def slice(self, start: int, stop: int) -> Candles:
        return Candles(self.symbol, self.timeframe, self.open_time_ms[start:stop], self.open[start:stop],
                       self.high[start:stop], self.low[start:stop], self.close[start:stop],
                       self.volume[start:stop])


@dataclass(frozen=True, slots=True)
class MarketInfo:
    """What the signal filters need to know about a market besides its candles."""

    symbol: str
    amount_step: float | None
    price_step: float | None
    quote_volume_24h: float | None


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """One row of the ApiKeys table: everything but the secret."""

    key_id: str
    name: str
    salt: str  # hex
    secret_hash: str  # hex SHA-256(salt || secret)
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def public(self) -> dict[str, Any]:
        """What `traderai keys list` shows: never the hash or the salt."""
        return {"key_id": self.key_id, "name": self.name, "created_at": self.created_at,
                "revoked_at": self.revoked_at, "status": "active" if self.active else "revoked"}
