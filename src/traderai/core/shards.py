"""The shard plan of a tick: which markets each PredictFunction invocation predicts, and its share of the
exchange's request-weight budget. Pure: the Plan state calls `plan_shards` on the tick's market list and
writes every shard's `item()` to the tick's plan object in S3, which the state machine's Distributed Map
reads (one item per shard: its markets travel with it, so a shard never re-reads the list for them, and a list
changed during the tick cannot move a market between shards; in a tick without a candle close a shard's
sandbox reads the list only to load its models beforehand, services.predict.WARM_LIMIT); `shard_from_item`
checks an item a shard is given.

The exchange budget (Binance: request weight per IP per minute, 6,000 on spot; a klines request weighs 2, and
a 24h-ticker request 2 for 1-20 symbols: `shard_weight` counts a shard's tick) is shared by every shard of a
tick, since Lambda invocations may leave through the same IP (always so behind a NAT gateway). Each shard
gets a share of the budget minus a reserve (`RESERVE_FRACTION`, for load_markets at a cold start, retried
requests and a rejected ticker batch asked again market by market) in proportion to its tick's weight (equal
for shards alike) and never less than `MIN_SHARE`, the largest single request a shard sends (load_markets,
20), so a tick that fits one window fits it in every shard, enforced over a rolling minute by its own
limiter (market.budget.WeightBudget); the shares add up to at most the budget, so the shards together never
exceed it, whatever their timing. A retried shard runs in a fresh sandbox with a fresh
limiter: the state machine waits a full window (`RETRY_INTERVAL_SECONDS`) before the retry, so the failed
attempt's requests have left the window the retry's requests enter.

A tick whose markets need more weight than one window of the budget allows is refused at planning
(`TickBudgetError`, naming the figures): its shards would wait minutes for their share, past the tick and
the function's timeout, and the markets at the end of the list would be predicted late or not at all. So is
a tick of so many shards that a share would be less than MIN_SHARE (`ShardShareError`): that shard's
limiter could never grant its load_markets, and the shard would fail in every cold sandbox.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RESERVE_FRACTION = 0.2
WINDOW_SECONDS = 60.0
RETRY_INTERVAL_SECONDS = 61  # > WINDOW_SECONDS: a retry never shares a window with its failed attempt
# Binance spot request weights: GET /api/v3/klines weighs 2 at any limit up to 1,000; GET /api/v3/ticker/24hr
# weighs 2 with one `symbol`, and with a `symbols` list 2 for 1-20 symbols, 40 for 21-100, 80 for 101 or more.
# A shard asks its spot markets' tickers in requests of TICKER_BATCH_SIZE symbols (100 markets: 5 requests,
# weight 10; one request of 100 would weigh 40); a derivative market's (`BTC/USDT:USDT`) ticker is asked alone,
# since ccxt's binance sends no `symbols` list to the futures endpoints (market.exchange).
KLINES_WEIGHT = 2
TICKER_WEIGHT = 2  # one symbol, or a batch of up to TICKER_BATCH_SIZE
TICKER_BATCH_SIZE = 20


def ticker_batch_weight(symbols: int) -> int:
    """Binance spot's weight of one GET /api/v3/ticker/24hr listing `symbols` symbols (1 or more)."""
    if symbols < 1:
        raise ValueError("a ticker batch lists at least one symbol")
    return TICKER_WEIGHT if symbols <= 20 else 40 if symbols <= 100 else 80


def shard_weight(markets: Sequence[str]) -> int:
    """The request weight one tick of these markets costs in one shard: a klines request each, the spot markets'
    tickers in batches of TICKER_BATCH_SIZE, each derivative market's ticker alone."""
    derivatives = sum(1 for market in markets if ":" in market)
    spot = len(markets) - derivatives
    return (len(markets) * KLINES_WEIGHT + derivatives * TICKER_WEIGHT
            + math.ceil(spot / TICKER_BATCH_SIZE) * ticker_batch_weight(TICKER_BATCH_SIZE))


# GET /api/v3/exchangeInfo (ccxt's load_markets), sent by a sandbox at its cold start and hourly after
# (market.exchange caches the markets an hour), through the shard's limiter like every other request.
LOAD_MARKETS_WEIGHT = 20
# The largest single request a shard sends, so the least share a shard can work with: a WeightBudget smaller
# than a request can never grant it (it raises), and the shard fails.
MIN_SHARE = max(LOAD_MARKETS_WEIGHT, KLINES_WEIGHT, TICKER_WEIGHT, ticker_batch_weight(TICKER_BATCH_SIZE))
MAX_TICK_WINDOWS = 1.0  # a tick's weight must fit one window of the budget (less the reserve)


class ShardPlanError(ValueError):
    """A plan cannot be made or an item is not one of a plan; the message says why."""


class TickBudgetError(ShardPlanError):
    """The tick's markets need more exchange weight than the budget gives in one window."""

    reason = "over_budget"


class ShardShareError(TickBudgetError):
    """The tick has so many shards that one's share of the budget is less than MIN_SHARE, the largest request
    it sends: its limiter could never grant that request."""

    reason = "too_many_shards"


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
        return shard_weight(self.markets) / self.weight_per_minute

    def item(self) -> dict[str, Any]:
        """The shard as the Map state carries it to its invocation: its own markets and budget share."""
        return {"index": self.index, "count": self.count, "markets": list(self.markets),
                "weight_per_minute": self.weight_per_minute}


def usable_weight(weight_per_minute: int) -> int:
    """What a tick may spend of the exchange's budget a minute: the budget less the reserve."""
    return math.floor(weight_per_minute * (1 - RESERVE_FRACTION))


def shard_weights(markets: Sequence[str], shard_size: int) -> list[int]:
    """The request weight of each shard of one tick over `markets` in shards of `shard_size` (a ticker batch
    never spans two shards)."""
    return [shard_weight(markets[start:start + shard_size]) for start in range(0, len(markets), shard_size)]


def plan_shards(markets: Sequence[str], shard_size: int, weight_per_minute: int | None = None, *,
                max_windows: float | None = MAX_TICK_WINDOWS) -> tuple[Shard, ...]:
    """Contiguous slices of `shard_size` markets (the last may be smaller); each gets a share of
    `weight_per_minute` less the reserve in proportion to its `shard_weight`, or to MIN_SHARE if that is more.
    Every market is in exactly one shard, in the list's order.
    A tick needing more than `max_windows` windows of the budget is refused (None: never), and so is one whose
    smallest share would be less than MIN_SHARE."""
    if shard_size < 1:
        raise ShardPlanError(f"SHARD_SIZE: {shard_size} must be at least 1")
    if not markets:
        raise ShardPlanError("market list: no market listed (a tick over an empty list is refused)")
    if len(set(markets)) != len(markets):
        raise ShardPlanError("market list: a market is listed twice")
    count = math.ceil(len(markets) / shard_size)
    shares: list[int] | None = None
    if weight_per_minute is not None:
        if weight_per_minute <= 0:
            raise ShardPlanError(f"EXCHANGE_WEIGHT_PER_MINUTE: {weight_per_minute} must be positive")
        usable = usable_weight(weight_per_minute)
        weights = shard_weights(markets, shard_size)
        needed = sum(weights)
        if max_windows is not None and needed > usable * max_windows:
            raise TickBudgetError(
                f"exchange budget: {len(markets):,} markets need {needed:,} request weight per tick "
                f"({KLINES_WEIGHT} a market for its candles, {TICKER_WEIGHT} a request for the tickers of up to "
                f"{TICKER_BATCH_SIZE} spot markets of a shard or of one derivative market), but "
                f"EXCHANGE_WEIGHT_PER_MINUTE {weight_per_minute:,} less the {RESERVE_FRACTION:.0%} reserve gives "
                f"{usable:,} per minute: {_at_most(int(usable * max_windows), shard_size)}")
        # In proportion to the weight, not equal: a tick within `usable` then gets every shard at least its own
        # weight (usable * w // needed >= w), so no shard waits a window for its last requests. Equal shares did
        # not promise it: 2,285 spot markets in shards of 100 are 22 shards of 210 and one of 180 (4,800), and
        # an equal 4,800 / 23 is 208. A shard lighter than MIN_SHARE (a few markets) claims MIN_SHARE: its
        # load_markets must fit its share whatever its tick weighs.
        claims = [max(weight, MIN_SHARE) for weight in weights]
        claimed = sum(claims)
        shares = [usable * claim // claimed for claim in claims]
        if min(shares) < MIN_SHARE:
            raise ShardShareError(
                f"exchange budget: {len(markets):,} markets in {count:,} shards of up to {shard_size:,} leave a "
                f"shard {min(shares):,} request weight per minute, less than the {MIN_SHARE} of its largest request "
                f"(load_markets: GET /api/v3/exchangeInfo, at a sandbox's cold start), which its limiter could "
                f"never grant: EXCHANGE_WEIGHT_PER_MINUTE {weight_per_minute:,} less the {RESERVE_FRACTION:.0%} "
                f"reserve gives {usable:,} per minute, and the {count:,} shards need at least {MIN_SHARE} each (a "
                f"shard's tick weight if more), {claimed:,} together. One window serves "
                f"{_at_most(usable, shard_size)}: raise SHARD_SIZE or list fewer markets")
    return tuple(Shard(index, count, tuple(markets[index * shard_size:(index + 1) * shard_size]),
                       None if shares is None else shares[index])
                 for index in range(count))


def _at_most(weight: int, shard_size: int) -> str:
    """`at most 2,285 spot markets per tick from one IP in shards of 100`, saying so when MIN_SHARE lowers it."""
    most = max_spot_markets(weight, shard_size)
    text = f"at most {most:,} spot markets per tick from one IP in shards of {shard_size:,}"
    if most < max_spot_markets(weight, shard_size, least_share=0):
        text += f" (each shard's share at least {MIN_SHARE}, its largest request)"
    return text


def max_spot_markets(weight: int, shard_size: int, *, least_share: int = MIN_SHARE) -> int:
    """The most spot markets whose tick, in shards of `shard_size`, each shard claiming its weight or
    `least_share` if that is more (as `plan_shards` shares the budget), claims at most `weight`."""
    def claim(markets: int) -> int:
        return max(shard_weight(["spot"] * markets), least_share)

    full, left = divmod(weight, claim(shard_size))
    low, high = 0, shard_size - 1  # the markets of a last, smaller shard that fit in what is left
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if claim(middle) <= left else (low, middle - 1)
    return full * shard_size + low


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
    if weight is not None and not (type(weight) is int and weight >= MIN_SHARE):
        raise ShardPlanError(f"shard {index}: weight_per_minute {weight!r} is not a budget share")
    return Shard(index, count, tuple(markets), weight)
