"""Recorded candles served as if live, on a clock the caller controls (local demo, backtests, tests).

Given `now`, a `ReplaySource` serves exactly what an exchange would have served then: the newest
closed candles, no peeking at the forming one. Past the end of the data the feed is honestly stale.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from importlib.resources import files
from pathlib import Path

import numpy as np

from traderai.contracts import TIMEFRAME_SECONDS, Candles, MarketInfo, SettingsError
from traderai.market import PermanentMarketError
from traderai.market.csv import load_candles_csv
from traderai.market.validation import now_ms, validate_candles
from traderai.settings import Settings

REPLAY_TIMEFRAME = "15m"
"""The timeframe of the recorded data; the replay does not resample."""

# Binance spot LOT_SIZE / PRICE_FILTER steps of the bundled markets.
DEFAULT_STEPS: dict[str, tuple[float, float]] = {
    "BTC": (0.00001, 0.01),
    "ETH": (0.0001, 0.01),
    "SOL": (0.001, 0.01),
    "BNB": (0.001, 0.01),
    "XRP": (0.1, 0.0001),
    "DOGE": (1.0, 0.00001),
}


class ReplayRangeError(PermanentMarketError):
    """`now` is before the recorded data begins: there is nothing an exchange could have served."""

    reason = "replay_out_of_range"


def bundled_candles_dir() -> Path:
    """The candles shipped inside the package (`traderai/data/candles`)."""
    return Path(str(files("traderai").joinpath("data", "candles")))


def candles_file_name(symbol: str, timeframe: str = REPLAY_TIMEFRAME) -> str:
    """`BTC/USDT` -> `BTC_USDT-15m.csv.gz` (a perpetual's `:USDT` settle suffix is ignored)."""
    pair = symbol.split(":", 1)[0]
    return f"{pair.replace('/', '_')}-{timeframe}.csv.gz"


def default_steps(symbol: str, reference_price: float | None) -> tuple[float | None, float | None]:
    """(amount_step, price_step) from the table, else ~5 significant digits of price and ~$0.1 of amount."""
    base = symbol.split("/", 1)[0]
    if base in DEFAULT_STEPS:
        return DEFAULT_STEPS[base]
    if reference_price is None or not math.isfinite(reference_price) or reference_price <= 0:
        return None, None
    magnitude = math.floor(math.log10(reference_price))
    return 10.0 ** math.floor(math.log10(0.1 / reference_price)), 10.0 ** (magnitude - 4)


class ReplaySource:
    """`MarketDataSource` over recorded 15m candles; `candles` preloads data (tests), else files are read."""

    def __init__(
        self,
        settings: Settings,
        *,
        candles: Mapping[str, Candles] | None = None,
        data_dir: str | Path | None = None,
    ) -> None:
        self.exchange_id = settings.exchange_id
        self._settings = settings
        self._data_dir = Path(data_dir or settings.replay_data_dir or bundled_candles_dir())
        self._candles: dict[str, Candles] = dict(candles or {})

    async def check_settings(
        self, symbols: Iterable[str] | None = None, timeframe: str | None = None
    ) -> None:
        """Fail at start with the setting's name if a market has no recorded data or the timeframe differs."""
        timeframe = timeframe or self._settings.timeframe
        if timeframe != REPLAY_TIMEFRAME:
            raise SettingsError(
                f"TIMEFRAME: the replay serves recorded {REPLAY_TIMEFRAME} candles, not {timeframe!r}"
            )
        wanted = tuple(symbols) if symbols is not None else self._settings.markets
        unknown = [
            s
            for s in wanted
            if s not in self._candles and not (self._data_dir / candles_file_name(s)).is_file()
        ]
        if unknown:
            raise SettingsError(f"MARKETS: no recorded candles for {', '.join(unknown)} in {self._data_dir}")

    async def fetch_candles(self, symbol: str, timeframe: str, limit: int, now: datetime) -> Candles:
        """The newest `limit` candles closed by `now` (fewer near the data's start), validated."""
        if timeframe != REPLAY_TIMEFRAME:
            raise PermanentMarketError(
                f"{symbol}: the replay serves {REPLAY_TIMEFRAME} candles, not {timeframe!r}"
            )
        candles = self._recorded(symbol)
        closed = self._closed_count(candles, now)
        window = candles.slice(max(0, closed - limit), closed)
        validate_candles(window, now, TIMEFRAME_SECONDS[REPLAY_TIMEFRAME])
        return window

    async def fetch_candles_between(self, symbol: str, timeframe: str, start_ms: int, end_ms: int,
                                    now: datetime) -> Candles:
        """Recorded candles opened in [start_ms, end_ms) and closed by `now`: never one from the replay's future."""
        if timeframe != REPLAY_TIMEFRAME:
            raise PermanentMarketError(
                f"{symbol}: the replay serves {REPLAY_TIMEFRAME} candles, not {timeframe!r}"
            )
        candles = self._recorded(symbol)
        first = int(np.searchsorted(candles.open_time_ms, start_ms, side="left"))
        stop = min(int(np.searchsorted(candles.open_time_ms, end_ms, side="left")),
                   self._closed_count(candles, now))
        return candles.slice(first, max(first, stop))

    async def market_info(self, symbol: str, now: datetime) -> MarketInfo:
        """Steps from the default table; 24h quote volume = Σ close×volume of the last 24h's candles."""
        candles = self._recorded(symbol)
        closed = self._closed_count(candles, now)
        step_ms = TIMEFRAME_SECONDS[REPLAY_TIMEFRAME] * 1000
        since_open_ms = now_ms(now) - 24 * 3600 * 1000 - step_ms  # close time > now - 24h
        first = int(np.searchsorted(candles.open_time_ms, since_open_ms, side="right"))
        day = candles.slice(first, closed)
        quote_volume = float(np.sum(day.close * day.volume))
        amount_step, price_step = default_steps(symbol, float(candles.close[closed - 1]))
        return MarketInfo(symbol, amount_step, price_step, quote_volume)

    async def close(self) -> None:
        """Nothing to release: the data is in memory."""

    def _recorded(self, symbol: str) -> Candles:
        if symbol not in self._candles:
            path = self._data_dir / candles_file_name(symbol)
            if not path.is_file():
                raise PermanentMarketError(f"{symbol}: no recorded candles ({path} not found)")
            self._candles[symbol] = load_candles_csv(path, symbol, REPLAY_TIMEFRAME)
        return self._candles[symbol]

    @staticmethod
    def _closed_count(candles: Candles, now: datetime) -> int:
        """How many recorded candles had closed by `now` (open time + timeframe <= now)."""
        cutoff_ms = now_ms(now) - TIMEFRAME_SECONDS[REPLAY_TIMEFRAME] * 1000
        closed = int(np.searchsorted(candles.open_time_ms, cutoff_ms, side="right"))
        if closed == 0:
            first = (
                np.datetime_as_string(np.datetime64(int(candles.open_time_ms[0]), "ms"), unit="m")
                if len(candles)
                else "nowhere (empty data)"
            )
            raise ReplayRangeError(
                f"{candles.symbol}: now={now.isoformat()} is before the recorded data's first "
                f"closed candle (data starts {first}Z)"
            )
        return closed
