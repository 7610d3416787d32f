"""The tracker: follow every open signal to its outcome (TrackFunction, every 5 minutes).

Each run reads the open signals (ACTIVE, TP1_HIT, TP2_HIT) with the version each was read at, fetches
the closed candles of their markets since the oldest of them was created, and applies the one
outcome rule (`traderai.core.outcome.advance`). Only a signal whose status changed is written, and
only if its version is still the one read: two overlapping runs compute the same transition, one
writes it, the other's conditional check fails and it backs off ("someone else advanced it").
Writing only real transitions keeps the table's stream, and so the pushed `signal_update`s, free
of noise. Nothing else is stored per run: the next run starts again from the signal's last event.

A signal is valued with its own exit weights and costs, as recorded when it was built (never today's
settings). A signal whose market serves no candles (delisted, removed from MARKETS, a feed that stays
stale) waits, and once its expiry plus the grace is past it is EXPIRED without an exit price
(`core.outcome.expire_unpriced`), by the same conditional write.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from traderai.adapters.signal_store import SignalStore, VersionedSignal
from traderai.contracts import TIMEFRAME_SECONDS, Candles, Signal, SignalStatus, Strategy, iso_utc, parse_iso_utc
from traderai.core.outcome import Bar, TradeSetup, TradeState, advance, expire_unpriced, realised
from traderai.market import MarketDataError
from traderai.observability import logger, metrics
from traderai.ports import MarketDataSource

MAX_CANDLES = 1000  # one exchange request; 10 days of 15m candles, far beyond a signal's default 24 h life


@dataclass(frozen=True, slots=True)
class TrackReport:
    """What one run did: signals looked at, transitions written, lost races, markets that failed."""

    checked: int
    advanced: dict[str, str] = field(default_factory=dict)  # signal_id -> new status
    contended: tuple[str, ...] = ()  # another run advanced these first
    failures: dict[str, str] = field(default_factory=dict)  # symbol -> reason code

    def to_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "advanced": dict(self.advanced), "contended": list(self.contended),
                "failures": dict(self.failures)}


def to_ms(text: str) -> int:
    return int(parse_iso_utc(text).timestamp() * 1000)


def from_ms(ms: int) -> str:
    return iso_utc(datetime.fromtimestamp(ms / 1000, tz=UTC))


def setup_of(signal: Signal, strategy: Strategy) -> TradeSetup:
    """The outcome rule's view of a stored signal: its own levels, exit weights and costs.

    Changing TP_WEIGHTS or the cost settings never rewrites an open signal's profit. Only an item stored
    before signals recorded their weights falls back to the TP_WEIGHTS setting.
    """
    return TradeSetup(
        side=signal.side, entry=signal.entry_price,
        take_profits=(signal.tp1_price, signal.tp2_price, signal.tp3_price), stop=signal.sl_price,
        weights=signal.tp_weights or strategy.tp_weights, costs_pct=signal.costs_pct,
        created_at_ms=to_ms(signal.created_at), expires_at_ms=to_ms(signal.expires_at),
        candle_ms=TIMEFRAME_SECONDS[signal.timeframe] * 1000)


def state_of(signal: Signal, setup: TradeSetup) -> TradeState:
    """The trade state a stored open signal records (its realised profit recomputed by the same rule)."""
    hits = tuple(to_ms(t) if t else None for t in (signal.tp1_hit_at, signal.tp2_hit_at, signal.tp3_hit_at))
    gross, net, exited = realised(setup, sum(h is not None for h in hits), None)
    return TradeState(status=SignalStatus(signal.status), tp_hit_ms=hits,  # type: ignore[arg-type]
                      realised_gross_pct=gross, realised_net_pct=net, exited_weight=exited)


def changes_of(signal: Signal, state: TradeState, now: datetime) -> dict[str, Any]:
    """The attributes a transition writes (None values are left as they are)."""
    created_ms = to_ms(signal.created_at)
    hit_at = [from_ms(ms) if ms is not None else None for ms in state.tp_hit_ms]
    last_ms = state.last_event_ms
    return {
        "status": state.status.value,
        "tp1_hit_at": hit_at[0], "tp2_hit_at": hit_at[1], "tp3_hit_at": hit_at[2],
        "closed_at": from_ms(state.closed_at_ms) if state.closed_at_ms is not None else None,
        "exit_price": state.exit_price,
        "closed_reason": state.closed_reason.value if state.closed_reason is not None else None,
        "realised_net_pct": round(state.realised_net_pct, 6),
        "time_in_trade_seconds": float((last_ms - created_ms) // 1000) if last_ms is not None else None,
        "updated_at": iso_utc(now),
    }


def bars_of(candles: Candles) -> list[Bar]:
    """Plain candles for the pure rule (numpy arrays -> Python numbers)."""
    return [Bar(int(t), float(h), float(lo), float(c)) for t, h, lo, c in
            zip(candles.open_time_ms.tolist(), candles.high.tolist(), candles.low.tolist(),
                candles.close.tolist(), strict=True)]


def candles_needed(oldest_created_at: str, timeframe: str, now: datetime) -> int:
    """Closed candles from the oldest open signal's creation up to `now` (one extra for safety), capped."""
    seconds = (now - parse_iso_utc(oldest_created_at)).total_seconds()
    return max(1, min(MAX_CANDLES, math.ceil(seconds / TIMEFRAME_SECONDS[timeframe]) + 1))


async def fetch_bars(source: MarketDataSource, wanted: dict[tuple[str, str], int], now: datetime
                     ) -> tuple[dict[tuple[str, str], list[Bar]], dict[str, str]]:
    """Candles of every (symbol, timeframe) at once; a market that fails is reported, never fatal."""
    keys = list(wanted)
    results = await asyncio.gather(*(source.fetch_candles(symbol, timeframe, wanted[(symbol, timeframe)], now)
                                     for symbol, timeframe in keys), return_exceptions=True)
    bars: dict[tuple[str, str], list[Bar]] = {}
    failures: dict[str, str] = {}
    for (symbol, timeframe), result in zip(keys, results, strict=True):
        if isinstance(result, Candles):
            bars[(symbol, timeframe)] = bars_of(result)
        elif isinstance(result, MarketDataError):
            failures[symbol] = result.reason
            logger.warning("track: market data failed", extra={"symbol": symbol, "reason": result.reason,
                                                               "error": str(result)})
        elif isinstance(result, Exception):
            failures[symbol] = "unexpected_error"
            logger.error("track: market data failed unexpectedly", exc_info=result, extra={"symbol": symbol})
        else:  # BaseException: not ours to swallow
            raise result
    return bars, failures


def track(store: SignalStore, source: MarketDataSource, strategy: Strategy, now: datetime,
          loop: asyncio.AbstractEventLoop) -> TrackReport:
    """One tracker run at `now`: advance every open signal whose candles show a transition."""
    open_signals = store.open_signals()
    oldest: dict[tuple[str, str], str] = {}
    for entry in open_signals:
        key = (entry.signal.symbol, entry.signal.timeframe)
        oldest[key] = min(oldest.get(key, entry.signal.created_at), entry.signal.created_at)
    wanted = {key: candles_needed(created, key[1], now) for key, created in oldest.items()}
    bars, failures = loop.run_until_complete(fetch_bars(source, wanted, now)) if wanted else ({}, {})
    advanced, contended = {}, []
    for entry in open_signals:
        key = (entry.signal.symbol, entry.signal.timeframe)
        # No candles for this market in this run: only a signal past its expiry + grace is settled (unpriced).
        status = _advance_one(store, entry, bars.get(key), strategy, now)
        if status is _CONTENDED:
            contended.append(entry.signal.signal_id)
        elif status is not None:
            advanced[entry.signal.signal_id] = status
    metrics.add_metric(name="SignalsAdvanced", unit=MetricUnit.Count, value=len(advanced))
    metrics.add_metric(name="TrackContended", unit=MetricUnit.Count, value=len(contended))
    metrics.add_metric(name="TrackMarketFailures", unit=MetricUnit.Count, value=len(failures))
    return TrackReport(checked=len(open_signals), advanced=advanced, contended=tuple(contended),
                       failures=failures)


_CONTENDED = "contended"


def _advance_one(store: SignalStore, entry: VersionedSignal, bars: Iterable[Bar] | None, strategy: Strategy,
                 now: datetime) -> str | None:
    """The new status written for one signal, None if nothing happened, `_CONTENDED` if a race was lost.

    `bars` None: its market's candles could not be fetched this run.
    """
    signal = entry.signal
    setup = setup_of(signal, strategy)
    before = state_of(signal, setup)
    as_of_ms = int(now.timestamp() * 1000)
    after = (expire_unpriced(setup, before, as_of_ms=as_of_ms) if bars is None
             else advance(setup, before, bars, as_of_ms=as_of_ms))
    if after == before:
        return None
    if not store.record_progress(signal.signal_id, entry.version, changes_of(signal, after, now)):
        logger.info("track: signal already advanced by another run",
                    extra={"signal_id": signal.signal_id, "read_version": entry.version})
        return _CONTENDED
    logger.info("track: signal advanced", extra={"signal_id": signal.signal_id, "from": signal.status,
                                                 "to": after.status.value,
                                                 "closed_reason": after.closed_reason,
                                                 "realised_net_pct": round(after.realised_net_pct, 4)})
    return after.status.value
