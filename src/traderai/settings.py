"""One typed settings object, read from the environment once at cold start.

A missing or malformed setting fails loudly with its name; strategy parameters carry the seed's
values as defaults. Nothing here imports numpy, boto3 or ccxt, so every function can load it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Self

TIMEFRAME_SECONDS = {"1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600,
                     "2h": 7200, "4h": 14400, "6h": 21600, "12h": 43200, "1d": 86400}
_SYMBOL = re.compile(r"^[A-Z0-9]{2,15}/[A-Z0-9]{2,15}(:[A-Z0-9]{2,15})?$")


EDGE_GATES = ("off", "warn", "enforce")


class SettingsError(ValueError):
    """A setting is missing or wrong; the message starts with the setting's name."""


@dataclass(frozen=True, slots=True)
class Strategy:
    """Signal math parameters (DESIGN.md "Signal math"); defaults are the seed's new set."""

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
    def protections(self):  # -> core.protections.ProtectionSettings (imported here: settings stays dependency-free)
        from traderai.core.protections import ProtectionSettings

        return ProtectionSettings(
            self.stoploss_guard_stops, self.stoploss_guard_window_hours, self.stoploss_guard_cooldown_hours,
            self.low_profit_signals, self.low_profit_min_net_pct, self.low_profit_lookback_hours,
            self.low_profit_cooldown_hours)

    @property
    def costs_pct(self) -> float:
        """Round-trip costs in % of notional: two taker fills, two slippages, funding."""
        return 2 * self.taker_fee_pct + 2 * self.slippage_pct + self.funding_pct


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a function needs to know, validated once at cold start."""

    markets: tuple[str, ...] = ("BTC/USDT",)
    timeframe: str = "15m"
    exchange_id: str = "binance"
    market_source: str = "ccxt"  # "ccxt" (live exchange) or "replay" (recorded candles)
    replay_data_dir: str | None = None
    candle_limit: int = 500  # >= features.WARMUP_CANDLES, so served features equal trained ones
    tick_seconds: int = 300
    bucket_name: str | None = None
    signals_table: str | None = None
    connections_table: str | None = None
    api_keys_table: str | None = None
    deliveries_table: str | None = None
    model_prefix: str = "models"
    strategy: Strategy = field(default_factory=Strategy)

    def require(self, *names: str) -> Self:
        """Fail with the environment variable's name if a resource this function uses is unset."""
        for name in names:
            if not getattr(self, name):
                raise SettingsError(f"{_ENV_OF[name]}: required by this function but not set")
        return self

    @property
    def timeframe_seconds(self) -> int:
        return TIMEFRAME_SECONDS[self.timeframe]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        env = os.environ if env is None else env
        strategy_kwargs: dict[str, object] = {}
        for attr, (name, parse) in _STRATEGY_ENV.items():
            if env.get(name, "").strip():
                strategy_kwargs[attr] = _parse(name, env[name], parse)
        try:
            strategy = Strategy(**strategy_kwargs)  # type: ignore[arg-type]
        except TypeError as exc:  # pragma: no cover - a programming error, not a setting
            raise SettingsError(str(exc)) from exc

        kwargs: dict[str, object] = {"strategy": strategy}
        if env.get("MARKETS", "").strip():
            kwargs["markets"] = _parse_markets(env["MARKETS"])
        for attr, name in (("timeframe", "TIMEFRAME"), ("exchange_id", "EXCHANGE_ID"),
                           ("market_source", "MARKET_SOURCE"), ("replay_data_dir", "REPLAY_DATA_DIR"),
                           ("bucket_name", "BUCKET_NAME"), ("signals_table", "SIGNALS_TABLE"),
                           ("connections_table", "CONNECTIONS_TABLE"), ("model_prefix", "MODEL_PREFIX"),
                           ("api_keys_table", "API_KEYS_TABLE"), ("deliveries_table", "DELIVERIES_TABLE")):
            if env.get(name, "").strip():
                kwargs[attr] = env[name].strip()
        for attr, name in (("candle_limit", "CANDLE_LIMIT"), ("tick_seconds", "TICK_SECONDS")):
            if env.get(name, "").strip():
                kwargs[attr] = _parse(name, env[name], int)
        settings = cls(**kwargs)  # type: ignore[arg-type]
        settings._validate()
        return settings

    def with_strategy(self, **changes: object) -> Self:
        return replace(self, strategy=replace(self.strategy, **changes))

    def _validate(self) -> None:
        if self.timeframe not in TIMEFRAME_SECONDS:
            raise SettingsError(f"TIMEFRAME: {self.timeframe!r} is not one of {', '.join(TIMEFRAME_SECONDS)}")
        if self.market_source not in ("ccxt", "replay"):
            raise SettingsError(f"MARKET_SOURCE: {self.market_source!r} is not 'ccxt' or 'replay'")
        if not re.fullmatch(r"[a-z0-9]{2,30}", self.exchange_id):
            raise SettingsError(f"EXCHANGE_ID: {self.exchange_id!r} is not a ccxt exchange id")
        if not 50 <= self.candle_limit <= 1500:
            raise SettingsError(f"CANDLE_LIMIT: {self.candle_limit} is outside 50..1500")
        if self.tick_seconds <= 0:
            raise SettingsError(f"TICK_SECONDS: {self.tick_seconds} must be positive")


def normalize_symbol(text: str) -> str:
    """`BTC/USDT`, `BTC_USDT`, `btc-usdt` -> `BTC/USDT`; anything else raises SettingsError."""
    candidate = text.strip().upper().replace("_", "/").replace("-", "/")
    if not _SYMBOL.fullmatch(candidate):
        raise SettingsError(f"symbol: {text!r} is not BASE/QUOTE (e.g. BTC/USDT)")
    return candidate


def _parse_markets(text: str) -> tuple[str, ...]:
    markets = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            markets.append(normalize_symbol(part))
        except SettingsError as exc:
            raise SettingsError(f"MARKETS: {exc}") from exc
    if not markets:
        raise SettingsError("MARKETS: no market given")
    if len(set(markets)) != len(markets):
        raise SettingsError("MARKETS: a market is listed twice")
    return tuple(markets)


def _float_triple(text: str) -> tuple[float, float, float]:
    values = tuple(float(v) for v in text.split(","))
    if len(values) != 3:
        raise ValueError("expected three comma-separated numbers")
    return values  # type: ignore[return-value]


def _parse(name: str, text: str, parse):
    try:
        value = parse(text.strip())
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{name}: {text!r} is not valid ({exc})") from exc
    if isinstance(value, float) and not math.isfinite(value):
        raise SettingsError(f"{name}: {text!r} is not a finite number")
    return value


_STRATEGY_ENV = {
    "sl_atr_multiplier": ("SL_ATR_MULTIPLIER", float),
    "tp_atr_multipliers": ("TP_ATR_MULTIPLIERS", _float_triple),
    "tp_weights": ("TP_WEIGHTS", _float_triple),
    "taker_fee_pct": ("TAKER_FEE_PCT", float),
    "slippage_pct": ("SLIPPAGE_PCT", float),
    "funding_pct": ("FUNDING_PCT", float),
    "min_net_profit_pct": ("MIN_NET_PROFIT_PCT", float),
    "min_confidence": ("MIN_CONFIDENCE", float),
    "min_quote_volume_usd": ("MIN_QUOTE_VOLUME_USD", float),
    "leverage": ("LEVERAGE", int),
    "position_size_usd": ("POSITION_SIZE_USD", float),
    "maintenance_margin_pct": ("MAINTENANCE_MARGIN_PCT", float),
    "signal_ttl_hours": ("SIGNAL_TTL_HOURS", float),
    "max_drift_psi": ("MAX_DRIFT_PSI", float),
    "max_signal_delay_seconds": ("MAX_SIGNAL_DELAY_SECONDS", float),
    "min_expected_value_pct": ("MIN_EXPECTED_VALUE_PCT", float),
    "edge_gate": ("EDGE_GATE", str.lower),
    "stoploss_guard_stops": ("STOPLOSS_GUARD_STOPS", int),
    "stoploss_guard_window_hours": ("STOPLOSS_GUARD_WINDOW_HOURS", float),
    "stoploss_guard_cooldown_hours": ("STOPLOSS_GUARD_COOLDOWN_HOURS", float),
    "low_profit_signals": ("LOW_PROFIT_SIGNALS", int),
    "low_profit_min_net_pct": ("LOW_PROFIT_MIN_NET_PCT", float),
    "low_profit_lookback_hours": ("LOW_PROFIT_LOOKBACK_HOURS", float),
    "low_profit_cooldown_hours": ("LOW_PROFIT_COOLDOWN_HOURS", float),
}
_ENV_OF = {"bucket_name": "BUCKET_NAME", "signals_table": "SIGNALS_TABLE",
           "connections_table": "CONNECTIONS_TABLE", "replay_data_dir": "REPLAY_DATA_DIR",
           "api_keys_table": "API_KEYS_TABLE", "deliveries_table": "DELIVERIES_TABLE"}
ENV_NAMES = (
    *(name for name, _ in _STRATEGY_ENV.values()),
    "MARKETS", "TIMEFRAME", "EXCHANGE_ID", "MARKET_SOURCE", "REPLAY_DATA_DIR", "CANDLE_LIMIT",
    "TICK_SECONDS", "BUCKET_NAME", "SIGNALS_TABLE", "CONNECTIONS_TABLE", "MODEL_PREFIX",
    "API_KEYS_TABLE", "DELIVERIES_TABLE")
