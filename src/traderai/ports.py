"""The ports: every interface a service needs from the outside, in one place.

A service is written against these Protocols; an adapter (`traderai.adapters`, `traderai.market`,
`traderai.model`) implements one; `traderai.wiring` builds the adapter and hands it over typed as the
port, so the type checker holds each adapter to the interface its service declared. Only contracts
are imported here: the ports sit just above them, below every adapter and service.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from traderai.contracts import ApiKeyRecord, Candles, MarketInfo, Signal

if TYPE_CHECKING:  # annotations only: the API path never loads numpy
    import numpy as np


class MarketDataSource(Protocol):
    """Closed candles and market facts for one exchange; implementations must be safe to call concurrently."""

    exchange_id: str

    async def fetch_candles(self, symbol: str, timeframe: str, limit: int, now: datetime) -> Candles:
        """The newest `limit` CLOSED candles at `now` (the forming one dropped), validated."""
        ...

    async def market_info(self, symbol: str, now: datetime) -> MarketInfo: ...

    async def check_settings(self, symbols: Iterable[str] | None = None, timeframe: str | None = None) -> None:
        """Fail at cold start, naming the setting, if a market or the timeframe does not exist here."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class MarketInfoBatch(Protocol):
    """A `MarketDataSource` that asks many markets' facts at once, in fewer exchange requests than one a market
    (the live source, on an exchange that takes a list of symbols); `fetch_markets` uses it when a source has it."""

    async def market_infos(self, symbols: Sequence[str], now: datetime) -> Mapping[str, MarketInfo | Exception]:
        """`market_info` of the symbols it asks together, each its info or the error that fails that market
        alone; a symbol left out is asked with `market_info`."""
        ...


class CandleHistory(Protocol):
    """Candles of a past stretch (a signal's chart). Both market sources implement it; a candle archive that
    stores what the exchange served can too, and then takes their place for the charts."""

    async def fetch_candles_between(self, symbol: str, timeframe: str, start_ms: int, end_ms: int,
                                    now: datetime) -> Candles:
        """Closed candles opened in [start_ms, end_ms), oldest first; none that closed after `now`."""
        ...


class PredictiveModel(Protocol):
    """A served model: probabilities of an up move for rows of features (`traderai.model.serving`)."""

    @property
    def model_id(self) -> str: ...

    @property
    def horizon(self) -> int: ...

    @property
    def feature_names(self) -> tuple[str, ...]: ...

    @property
    def expires_at(self) -> datetime | None: ...

    def predict_proba(self, features: np.ndarray) -> np.ndarray: ...


class ModelProvider(Protocol):
    """Resolves (symbol, timeframe) to the model to serve (`traderai.adapters.model_registry`)."""

    def get(self, symbol: str, timeframe: str) -> PredictiveModel: ...


class SignalRepository(Protocol):
    """What the signal step needs of the Signals table."""

    def active_signal_ids(self, symbols: Iterable[str], now: datetime) -> dict[tuple[str, str], frozenset[str]]:
        """(symbol, side) -> ids of signals ACTIVE and unexpired at `now`."""
        ...

    def put_new(self, signal: Signal) -> bool:
        """Store unless it exists (conditional put); False means a retry found it already there."""
        ...

    def closed_signals(self, symbol: str, created_since: str) -> list[Signal]:
        """The market's closed signals created since then (the protections' input)."""
        ...


class KeyLookup(Protocol):
    """What the authorizer needs of the ApiKeys table: one row by key id."""

    def get(self, key_id: str) -> ApiKeyRecord | None:
        """The key's record, or None if no such key id."""
        ...


class DeliveryLedger(Protocol):
    """Which connections already got a signal version (the Deliveries table, or a dict)."""

    def delivered(self, delivery_id: str) -> frozenset[str]:
        """Connection ids this signal version was already pushed to."""
        ...

    def record(self, delivery_id: str, connection_ids: Iterable[str], now: datetime) -> None:
        """Add connection ids that just got this signal version."""
        ...


class QueryRunner(Protocol):
    """Athena, as the compaction job uses it."""

    def run(self, sql: str, parameters: list[str]) -> str:
        """Run and wait; return the query id, raise if it did not succeed."""
        ...


class Prefixes(Protocol):
    """An S3 bucket's prefixes, as the compaction job clears them."""

    bucket: str

    def delete(self, prefix: str) -> int: ...


class MarketSource(MarketDataSource, CandleHistory, Protocol):
    """What `traderai.market.fetch.make_source` returns: both sources (ccxt, the replay) are both."""


class HistorySource(Protocol):
    """Pages of OHLCV rows from `since_ms` on, oldest first (ccxt's fetch_ohlcv with `since`)."""

    exchange_id: str

    async def fetch_page(self, symbol: str, timeframe: str, since_ms: int, limit: int) -> list[Sequence[object]]: ...


class Archive(Protocol):
    """The candle archive, as the archive job appends to it (`traderai.adapters.candle_archive`)."""

    def last_open_ms(self, symbol: str, timeframe: str) -> int | None: ...

    def write_month(self, symbol: str, timeframe: str, month: str, candles: Candles) -> bool: ...
