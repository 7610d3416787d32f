"""The shard plan of a tick: which markets each PredictFunction invocation predicts, and its share of the
exchange's request-weight budget. Pure: the state machine's plan step, every shard (to find its own slice)
and the local runner all call `plan_shards` on the same market list and get the same plan.

The exchange budget (Binance: request weight per IP per minute, 6,000 on spot; klines and a one-symbol
ticker weigh 2 each) is shared by every shard of a tick, since Lambda invocations may leave through the
same IP (always so behind a NAT gateway). Each shard gets an equal share of the budget minus a reserve
(`RESERVE_FRACTION`, for load_markets at a cold start and retried requests), enforced over a rolling minute
by its own limiter (market.budget.WeightBudget); the shares add up to at most the budget, so the shards
together never exceed it, whatever their timing. A retried shard runs in a fresh sandbox with a fresh
limiter: the state machine waits a full window (`RETRY_INTERVAL_SECONDS`) before the retry, so the failed
attempt's requests have left the window the retry's requests enter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

RESERVE_FRACTION = 0.2
WINDOW_SECONDS = 60.0
RETRY_INTERVAL_SECONDS = 61  # > WINDOW_SECONDS: a retry never shares a window with its failed attempt
WEIGHT_PER_MARKET = 2 + 2  # one klines request and one 24h ticker request (Binance weights)


class ShardPlanError(ValueError):
    """A plan cannot be made or does not match the market list; the message says why."""


@dataclass(frozen=True, slots=True)
class Shard:
    """One shard of a tick: markets [start, start + len(markets)) of the list, its budget share."""

    index: int
    count: int
    markets: tuple[str, ...]
    weight_per_minute: int | None  # None: the exchange has no per-minute weight budget to share

    @property
    def label(self) -> str:
        """`s003of010`: part of the shard's log keys, so the shards of one tick never collide."""
        width = max(3, len(str(self.count)))
        return f"s{self.index:0{width}d}of{self.count:0{width}d}"

    @property
    def minutes_needed(self) -> float:
        """Minutes this shard's requests take at its budget share (≤ 1: the whole shard in one burst)."""
        if self.weight_per_minute is None:
            return 0.0
        return len(self.markets) * WEIGHT_PER_MARKET / self.weight_per_minute

    def descriptor(self) -> dict[str, int]:
        """What the state machine carries per shard: small, whatever the market count (markets are
        re-derived from the list by the shard itself, and checked against `size` and `markets`)."""
        return {"index": self.index, "count": self.count, "markets": len(self.markets)}


def plan_shards(markets: Sequence[str], shard_size: int, weight_per_minute: int | None = None) -> tuple[Shard, ...]:
    """Contiguous slices of `shard_size` markets (the last may be smaller); each gets an equal share of
    `weight_per_minute` less the reserve. Every market is in exactly one shard, in the list's order."""
    if shard_size < 1:
        raise ShardPlanError(f"SHARD_SIZE: {shard_size} must be at least 1")
    if len(set(markets)) != len(markets):
        raise ShardPlanError("MARKETS: a market is listed twice")
    count = max(1, math.ceil(len(markets) / shard_size))
    share = None
    if weight_per_minute is not None:
        if weight_per_minute <= 0:
            raise ShardPlanError(f"EXCHANGE_WEIGHT_PER_MINUTE: {weight_per_minute} must be positive")
        share = math.floor(weight_per_minute * (1 - RESERVE_FRACTION) / count)
        if share < WEIGHT_PER_MARKET:
            raise ShardPlanError(f"EXCHANGE_WEIGHT_PER_MINUTE: {weight_per_minute} shared by {count} shards leaves "
                                 f"{share} per shard, less than one market's {WEIGHT_PER_MARKET}")
    return tuple(Shard(index, count, tuple(markets[index * shard_size:(index + 1) * shard_size]), share)
                 for index in range(count))


def shard_for(markets: Sequence[str], shard_size: int, weight_per_minute: int | None,
              descriptor: dict[str, object]) -> Shard:
    """The shard a descriptor names, re-planned from the same list; ShardPlanError if the list changed
    since the plan was made (another count, or another size of that shard): markets would be lost or doubled."""
    try:
        index, count, size = (int(descriptor[key]) for key in ("index", "count", "markets"))  # type: ignore[call-overload]
    except (KeyError, TypeError, ValueError) as exc:
        raise ShardPlanError(f"shard: {descriptor!r} is not a shard descriptor (index, count, markets)") from exc
    plan = plan_shards(markets, shard_size, weight_per_minute)
    if count != len(plan) or not 0 <= index < count or len(plan[index].markets) != size:
        raise ShardPlanError(f"shard: {descriptor!r} does not match the current plan ({len(plan)} shards of "
                             f"{shard_size} over {len(markets)} markets): the market list changed during the tick")
    shard: Shard = plan[index]
    return shard
