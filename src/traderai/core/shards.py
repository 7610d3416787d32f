"""The shard plan of a tick: which markets each PredictFunction invocation predicts, and its share of the
exchange's request-weight budget. Pure: the Plan state calls `plan_shards` on the tick's market list and
writes every shard's `item()` to the tick's plan object in S3, which the state machine's Distributed Map
reads (one item per shard: its markets travel with it, so a shard never re-reads the list, and a list changed
during the tick cannot move a market between shards); `shard_from_item` checks an item a shard is given.

The exchange budget (Binance: request weight per IP per minute, 6,000 on spot; klines and a one-symbol
ticker weigh 2 each) is shared by every shard of a tick, since Lambda invocations may leave through the
same IP (always so behind a NAT gateway). Each shard gets an equal share of the budget minus a reserve
(`RESERVE_FRACTION`, for load_markets at a cold start and retried requests), enforced over a rolling minute
by its own limiter (market.budget.WeightBudget); the shares add up to at most the budget, so the shards
together never exceed it, whatever their timing. A retried shard runs in a fresh sandbox with a fresh
limiter: the state machine waits a full window (`RETRY_INTERVAL_SECONDS`) before the retry, so the failed
attempt's requests have left the window the retry's requests enter.

A tick whose markets need more weight than one window of the budget allows is refused at planning
(`TickBudgetError`, naming the figures): its shards would wait minutes for their share, past the tick and
the function's timeout, and the markets at the end of the list would be predicted late or not at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RESERVE_FRACTION = 0.2
WINDOW_SECONDS = 60.0
RETRY_INTERVAL_SECONDS = 61  # > WINDOW_SECONDS: a retry never shares a window with its failed attempt
WEIGHT_PER_MARKET = 2 + 2  # one klines request and one 24h ticker request (Binance weights)
MAX_TICK_WINDOWS = 1.0  # a tick's weight must fit one window of the budget (less the reserve)


class ShardPlanError(ValueError):
    """A plan cannot be made or an item is not one of a plan; the message says why."""


class TickBudgetError(ShardPlanError):
    """The tick's markets need more exchange weight than the budget gives in one window."""

    reason = "over_budget"


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

    def item(self) -> dict[str, Any]:
        """The shard as the Map state carries it to its invocation: its own markets and budget share."""
        return {"index": self.index, "count": self.count, "markets": list(self.markets),
                "weight_per_minute": self.weight_per_minute}


def plan_shards(markets: Sequence[str], shard_size: int, weight_per_minute: int | None = None, *,
                max_windows: float | None = MAX_TICK_WINDOWS) -> tuple[Shard, ...]:
    """Contiguous slices of `shard_size` markets (the last may be smaller); each gets an equal share of
    `weight_per_minute` less the reserve. Every market is in exactly one shard, in the list's order.
    A tick needing more than `max_windows` windows of the budget is refused (None: never)."""
    if shard_size < 1:
        raise ShardPlanError(f"SHARD_SIZE: {shard_size} must be at least 1")
    if not markets:
        raise ShardPlanError("market list: no market listed (a tick over an empty list is refused)")
    if len(set(markets)) != len(markets):
        raise ShardPlanError("market list: a market is listed twice")
    count = math.ceil(len(markets) / shard_size)
    share = None
    if weight_per_minute is not None:
        if weight_per_minute <= 0:
            raise ShardPlanError(f"EXCHANGE_WEIGHT_PER_MINUTE: {weight_per_minute} must be positive")
        usable = math.floor(weight_per_minute * (1 - RESERVE_FRACTION))
        needed = len(markets) * WEIGHT_PER_MARKET
        if max_windows is not None and needed > usable * max_windows:
            raise TickBudgetError(
                f"exchange budget: {len(markets):,} markets need {needed:,} request weight per tick "
                f"({WEIGHT_PER_MARKET} each), but EXCHANGE_WEIGHT_PER_MINUTE {weight_per_minute:,} less the "
                f"{RESERVE_FRACTION:.0%} reserve gives {usable:,} per minute: at most "
                f"{int(usable * max_windows) // WEIGHT_PER_MARKET:,} markets per tick from one IP")
        share = math.floor(usable / count)
        if share < WEIGHT_PER_MARKET:
            raise ShardPlanError(f"EXCHANGE_WEIGHT_PER_MINUTE: {weight_per_minute} shared by {count} shards leaves "
                                 f"{share} per shard, less than one market's {WEIGHT_PER_MARKET}")
    return tuple(Shard(index, count, tuple(markets[index * shard_size:(index + 1) * shard_size]), share)
                 for index in range(count))


def shard_from_item(item: Mapping[str, Any], max_size: int) -> Shard:
    """The shard an item of a plan describes; ShardPlanError if it is not one (a hand-made or damaged event)."""
    try:
        index, count, markets, weight = item["index"], item["count"], item["markets"], item["weight_per_minute"]
    except (KeyError, TypeError):
        raise ShardPlanError(f"shard: {item!r} is not a shard item (index, count, markets, "
                             "weight_per_minute)") from None
    if not (type(index) is int and type(count) is int and 0 <= index < count):
        raise ShardPlanError(f"shard: index {index!r} of count {count!r} is not a shard of a plan")
    if not (isinstance(markets, list) and 0 < len(markets) <= max_size
            and all(isinstance(m, str) for m in markets)):
        raise ShardPlanError(f"shard {index}: markets must be 1..{max_size} symbols (SHARD_SIZE)")
    if len(set(markets)) != len(markets):
        raise ShardPlanError(f"shard {index}: a market is listed twice")
    if weight is not None and not (type(weight) is int and weight >= WEIGHT_PER_MARKET):
        raise ShardPlanError(f"shard {index}: weight_per_minute {weight!r} is not a budget share")
    return Shard(index, count, tuple(markets), weight)
