"""The records that cross a boundary: prediction log lines, decisions, signals.

Plain frozen dataclasses over floats and strings (no numpy), so the API and WebSocket paths can
import them cheaply. Field names are the contract of DESIGN.md; `to_dict` gives the JSON shape.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Self


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


def iso_utc(moment: datetime) -> str:
    """ISO-8601 UTC with a `Z`, second precision: the one time format of every record."""
    if moment.tzinfo is None:
        raise ContractError("naive datetime: every time in TraderAI is UTC-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso_utc(text: str, name: str = "time") -> datetime:
    """Parse an ISO-8601 time; a time without an offset is refused rather than guessed."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError, AttributeError) as exc:
        raise ContractError(f"{name}: {text!r} is not an ISO-8601 time") from exc
    if moment.tzinfo is None:
        raise ContractError(f"{name}: {text!r} has no UTC offset (write it with Z or +00:00)")
    return moment.astimezone(UTC)


def _finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ContractError(f"{name}: expected a number, got {type(value).__name__}")
    return float(value)


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
        return record

    @classmethod
    def from_dict(cls, record: Any) -> Self:
        """Build from a JSON object; missing or mistyped fields raise ContractError naming them.

        NaN probability or a non-positive ATR are *not* refused here: they are data the signal
        step must reject with a reason code and log, not a malformed event.
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
    costs_pct: float
    expected_net_profit_pct: float
    net_risk_reward_ratio: float
    confidence: float
    probability: float
    risk_reward_ratio: float
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

    def __post_init__(self) -> None:
        # JSON and DynamoDB hand the weights back as a list: hold them as a tuple, so a signal read back
        # equals the one written (and stays hashable like the frozen record it is).
        if self.tp_weights is not None and not isinstance(self.tp_weights, tuple):
            object.__setattr__(self, "tp_weights", tuple(self.tp_weights))

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        if self.tp_weights is not None:
            record["tp_weights"] = list(self.tp_weights)
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

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["reasons"] = list(self.reasons)
        # JSON has no NaN: a NaN from a broken prediction is logged as null, with its reason code.
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
