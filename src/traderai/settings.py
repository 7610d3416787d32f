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
from typing import Any, Self

from traderai.contracts import TIMEFRAME_SECONDS, SettingsError, Strategy

_SYMBOL = re.compile(r"^[A-Z0-9]{2,15}/[A-Z0-9]{2,15}(:[A-Z0-9]{2,15})?$")


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
    subscriptions_table: str | None = None
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

    def required(self, name: str) -> str:
        """A resource name this function uses (`bucket_name`, `signals_table`, ...); unset fails naming its variable."""
        value = getattr(self.require(name), name)
        assert isinstance(value, str)  # require() refused None and ""
        return value

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
                           ("api_keys_table", "API_KEYS_TABLE"), ("deliveries_table", "DELIVERIES_TABLE"),
                           ("subscriptions_table", "SUBSCRIPTIONS_TABLE")):
            if env.get(name, "").strip():
                kwargs[attr] = env[name].strip()
        for attr, name in (("candle_limit", "CANDLE_LIMIT"), ("tick_seconds", "TICK_SECONDS")):
            if env.get(name, "").strip():
                kwargs[attr] = _parse(name, env[name], int)
        settings = cls(**kwargs)  # type: ignore[arg-type]
        settings._validate()
        return settings

    def with_strategy(self, **changes: Any) -> Self:
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
    return values[0], values[1], values[2]


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
           "api_keys_table": "API_KEYS_TABLE", "deliveries_table": "DELIVERIES_TABLE",
           "subscriptions_table": "SUBSCRIPTIONS_TABLE"}
ENV_NAMES = (
    *(name for name, _ in _STRATEGY_ENV.values()),
    "MARKETS", "TIMEFRAME", "EXCHANGE_ID", "MARKET_SOURCE", "REPLAY_DATA_DIR", "CANDLE_LIMIT",
    "TICK_SECONDS", "BUCKET_NAME", "SIGNALS_TABLE", "CONNECTIONS_TABLE", "MODEL_PREFIX",
    "API_KEYS_TABLE", "DELIVERIES_TABLE", "SUBSCRIPTIONS_TABLE")


def required_env(name: str, env: Mapping[str, str] | None = None) -> str:
    """The stripped value of a variable this function cannot run without; unset or blank fails naming it."""
    value = (os.environ if env is None else env).get(name, "").strip()
    if not value:
        raise SettingsError(f"{name}: required by this function but not set")
    return value


@dataclass(frozen=True, slots=True)
class CompactionSettings:
    """What the compaction job needs: the data bucket and the Athena workgroup and Glue database."""

    bucket_name: str
    workgroup: str
    database: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """Read and check the environment; a missing variable fails the cold start naming it."""
        return cls(required_env("BUCKET_NAME", env), required_env("ATHENA_WORKGROUP", env),
                   required_env("ATHENA_DATABASE", env))
