"""A sharded tick: the plan step, a shard's own markets, and the local runner that interprets the plan.

On AWS the tick is the TickStateMachine (infra/template.yaml): the schedule starts it with the scheduled
event; its Plan state invokes PredictFunction with `detail.plan = true`, which reads the market list (the S3
object MARKET_LIST_KEY, read anew every tick, or the MARKETS variable of a small deployment), splits it into
shards and writes them to the tick's plan object (`plans/dt=.../<tick>.json`, one item per shard: its index,
its markets, its budget share) and returns that key (`plan_tick`). A Distributed Map reads the plan object
with its ItemReader and invokes PredictFunction once per item (`detail.shard = item`, retried alone after
RETRY_INTERVAL_SECONDS), hands the shard's reply to SignalFunction (inline predictions, or past 200 KB the
shard's predictions/ object), and a shard that still fails goes to the dead-letter queue while the other
shards go on. A list that cannot be read or parsed, or a tick over the exchange budget, fails the Plan
state: the execution fails (TickFailedAlarm), no shard runs. `run_sharded_tick` does the same locally with
the same functions and the same plan object, so `traderai local`, `traderai tick` and the benchmarks run
the deployed plan.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from traderai.contracts import SettingsError
from traderai.core.shards import (
    RETRY_INTERVAL_SECONDS,
    Shard,
    ShardPlanError,
    plan_shards,
    shard_from_item,
    shard_weight,
)
from traderai.market.listing import MarketListError
from traderai.settings import Settings, normalize_symbol

if TYPE_CHECKING:
    from traderai.adapters.market_list import MarketList

DEFAULT_SHARD_SIZE = 100
DEFAULT_CONCURRENCY = 10
BINANCE_WEIGHT_PER_MINUTE = 6000  # spot REQUEST_WEIGHT per IP per minute (exchangeInfo rateLimits)
_LIST_KEY = re.compile(r"config/[A-Za-z0-9][A-Za-z0-9._/-]{0,200}")  # the template's MarketListKey pattern


@dataclass(frozen=True, slots=True)
class ShardSettings:
    """SHARD_SIZE, SHARD_CONCURRENCY and EXCHANGE_WEIGHT_PER_MINUTE (0: the exchange counts no weight)."""

    size: int = DEFAULT_SHARD_SIZE
    concurrency: int = DEFAULT_CONCURRENCY
    weight_per_minute: int | None = BINANCE_WEIGHT_PER_MINUTE
    list_key: str | None = None  # MARKET_LIST_KEY: the market list's key in the data bucket (None: MARKETS)

    @classmethod
    def from_env(cls, settings: Settings, env: Mapping[str, str] | None = None) -> ShardSettings:
        env = os.environ if env is None else env
        values = {}
        for name, default, low, high in (("SHARD_SIZE", DEFAULT_SHARD_SIZE, 1, 1000),
                                         ("SHARD_CONCURRENCY", DEFAULT_CONCURRENCY, 1, 1000),
                                         ("EXCHANGE_WEIGHT_PER_MINUTE", BINANCE_WEIGHT_PER_MINUTE, 0, 1_000_000)):
            text = env.get(name, "").strip()
            try:
                value = int(text) if text else default
            except ValueError:
                raise SettingsError(f"{name}: {text!r} is not an integer") from None
            if not low <= value <= high:
                raise SettingsError(f"{name}: {value} is outside {low}..{high}")
            values[name] = value
        weight = values["EXCHANGE_WEIGHT_PER_MINUTE"]
        counts_weight = False
        if settings.market_source == "ccxt":  # imported only here: ccxt is heavy, and replay needs none of it
            from traderai.market.exchange import PER_MINUTE_WEIGHT_EXCHANGES

            counts_weight = settings.exchange_id in PER_MINUTE_WEIGHT_EXCHANGES
        list_key = env.get("MARKET_LIST_KEY", "").strip() or None
        if list_key is not None and not _LIST_KEY.fullmatch(list_key):
            raise SettingsError(f"MARKET_LIST_KEY: {list_key!r} is not an S3 key under config/ "
                                "(e.g. config/markets.csv)")
        return cls(values["SHARD_SIZE"], values["SHARD_CONCURRENCY"], weight if weight and counts_weight else None,
                   list_key)

    def plan(self, markets: tuple[str, ...]) -> tuple[Shard, ...]:
        """The tick's shards (ShardPlanError, or TickBudgetError past the exchange budget, says why not)."""
        return plan_shards(markets, self.size, self.weight_per_minute)

    def shard(self, item: Mapping[str, Any]) -> Shard:
        """The shard an item of the plan object names, its markets checked as canonical symbols."""
        shard = shard_from_item(item, self.size)
        for symbol in shard.markets:
            try:
                canonical = normalize_symbol(symbol)
            except SettingsError:
                canonical = None
            if canonical != symbol:
                raise ShardPlanError(f"shard {shard.index}: {symbol!r} is not a canonical symbol (BASE/QUOTE)")
        return shard


class MarketListSource(Protocol):
    def read(self) -> MarketList: ...


@dataclass(frozen=True, slots=True)
class FixedMarketList:
    """MARKETS: a small deployment's list, fixed at deploy time (changing it is a redeploy)."""

    markets: tuple[str, ...]

    def read(self) -> MarketList:
        from traderai.adapters.market_list import MarketList

        return MarketList(self.markets, "MARKETS")


class PlanStore(Protocol):
    def write(self, tick_time: datetime, items: list[dict[str, Any]]) -> str: ...


def plan_tick(tick_time: datetime, markets: MarketListSource, shards: ShardSettings, plans: PlanStore, *,
              check: Callable[[tuple[str, ...]], None] | None = None) -> dict[str, Any]:
    """The Plan state: read and check the market list (`check`: against the exchange's markets), split it,
    write the shards to the tick's plan object. What the state machine gets back is small whatever the
    market count: the object's key and counts. Any refusal raises: no plan object, no shard runs."""
    listed = markets.read()
    if check is not None:
        try:
            check(listed.markets)
        except SettingsError as exc:
            raise MarketListError(f"{listed.source}: {exc}") from exc
    plan = shards.plan(listed.markets)
    key = plans.write(tick_time, [shard.item() for shard in plan])
    # The shares differ by shard (in proportion to each shard's weight): the smallest and the largest, not one.
    shares = [shard.weight_per_minute for shard in plan if shard.weight_per_minute is not None]
    return {"markets": len(listed.markets), "market_list": listed.source, "market_list_version": listed.version,
            "shard_size": shards.size, "max_concurrency": shards.concurrency,
            "tick_weight": sum(shard_weight(shard.markets) for shard in plan),
            "share_per_minute": {"smallest": min(shares), "largest": max(shares)} if shares else None,
            "shards": len(plan), "plan_key": key}


def shard_request(scheduled_event: Mapping[str, Any], item: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The event of the Plan state (no item) or of one Map iteration: the scheduled event, `detail`
    carrying `plan` or the shard item (as the state machine's Parameters/ItemSelector build it)."""
    detail: dict[str, Any] = {"plan": True} if item is None else {"shard": dict(item)}
    return {**dict(scheduled_event), "detail": detail}


# ---------------------------------------------------------------- the local runner of the state machine


@dataclass
class ShardOutcome:
    item: dict[str, Any]  # the plan object's item: the shard's index, markets and budget share
    reply: dict[str, Any] | None = None  # PredictFunction's hand-off
    summary: dict[str, Any] | None = None  # SignalFunction's reply (None: no predictions, or failed)
    attempts: int = 0
    error: str | None = None  # after the retry: on AWS, the dead-letter queue
    seconds: float = 0.0


@dataclass
class ShardedTick:
    plan: dict[str, Any]
    shards: list[ShardOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def predictions(self) -> int:
        return sum(int((s.reply or {}).get("count", 0)) for s in self.shards)

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [f for s in self.shards for f in (s.reply or {}).get("failures", [])]

    @property
    def errors(self) -> list[str]:
        return [f"shard {s.item.get('index')}: {s.error}" for s in self.shards if s.error]


Invoke = Callable[[str, Any], Any]
ReadItems = Callable[[str], list[dict[str, Any]]]


def run_sharded_tick(invoke: Invoke, read_items: ReadItems, scheduled_event: Mapping[str, Any], *,
                     retry_interval_s: float = 0.0, max_attempts: int = 2,
                     max_concurrency: int | None = None) -> ShardedTick:
    """The TickStateMachine's steps with `invoke(function, event)`: Plan, then the plan object's items as the
    Distributed Map's ItemReader reads them (`read_items(plan_key)`), every shard (at most `max_concurrency`
    at once, from the plan unless given) predict -> signal, a failed shard retried alone after
    `retry_interval_s` (RETRY_INTERVAL_SECONDS on AWS; shorter locally, where no exchange counts)."""
    started = time.monotonic()
    plan = invoke("PredictFunction", shard_request(scheduled_event))
    tick = ShardedTick(plan)
    items = read_items(plan["plan_key"])
    if len(items) != plan["shards"]:
        raise ShardPlanError(f"{plan['plan_key']}: {len(items)} items, the plan made {plan['shards']}")

    def one(item: dict[str, Any]) -> ShardOutcome:
        outcome = ShardOutcome(item)
        begun = time.monotonic()
        while outcome.attempts < max_attempts:
            outcome.attempts += 1
            try:
                outcome.reply = invoke("PredictFunction", shard_request(scheduled_event, item))
                if outcome.reply.get("count"):
                    outcome.summary = invoke("SignalFunction", outcome.reply)
                outcome.error = None
                break
            except Exception as exc:  # noqa: BLE001 - the state machine's Retry/Catch, reported per shard
                outcome.error = f"{type(exc).__name__}: {exc}"
                if outcome.attempts < max_attempts:
                    time.sleep(retry_interval_s)
        outcome.seconds = time.monotonic() - begun
        return outcome

    workers = max(1, min(max_concurrency or int(plan["max_concurrency"]), len(items)))
    with ThreadPoolExecutor(workers, thread_name_prefix="shard") as pool:
        tick.shards = list(pool.map(one, items))
    tick.seconds = time.monotonic() - started
    return tick


__all__ = ["RETRY_INTERVAL_SECONDS", "ShardSettings", "ShardedTick", "plan_tick", "run_sharded_tick",
           "shard_request"]
