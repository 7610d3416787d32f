"""A sharded tick: the plan step, a shard's own slice, and the local runner that interprets the plan.

On AWS the tick is the TickStateMachine (infra/template.yaml): the schedule starts it with the scheduled
event; its Plan state invokes PredictFunction with `detail.plan = true` and gets the shard descriptors
(`plan_reply`); a Map state invokes PredictFunction once per shard (`detail.shard = descriptor`, retried
alone after RETRY_INTERVAL_SECONDS), hands the shard's reply to SignalFunction (the same hand-off as before:
inline predictions, or past 200 KB the shard's predictions/ object), and a shard that still fails goes to
the dead-letter queue while the other shards go on. `run_sharded_tick` does the same locally with the same
functions, so `traderai local`, `traderai tick` and the benchmarks run the deployed plan.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from traderai.contracts import SettingsError
from traderai.core.shards import RETRY_INTERVAL_SECONDS, Shard, ShardPlanError, plan_shards, shard_for
from traderai.settings import Settings

DEFAULT_SHARD_SIZE = 100
DEFAULT_CONCURRENCY = 10
BINANCE_WEIGHT_PER_MINUTE = 6000  # spot REQUEST_WEIGHT per IP per minute (exchangeInfo rateLimits)


@dataclass(frozen=True, slots=True)
class ShardSettings:
    """SHARD_SIZE, SHARD_CONCURRENCY and EXCHANGE_WEIGHT_PER_MINUTE (0: the exchange counts no weight)."""

    size: int = DEFAULT_SHARD_SIZE
    concurrency: int = DEFAULT_CONCURRENCY
    weight_per_minute: int | None = BINANCE_WEIGHT_PER_MINUTE

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
        return cls(values["SHARD_SIZE"], values["SHARD_CONCURRENCY"], weight if weight and counts_weight else None)

    def plan(self, markets: tuple[str, ...]) -> tuple[Shard, ...]:
        try:
            return plan_shards(markets, self.size, self.weight_per_minute)
        except ShardPlanError as exc:
            raise SettingsError(str(exc)) from exc

    def shard(self, markets: tuple[str, ...], descriptor: Mapping[str, Any]) -> Shard:
        return shard_for(markets, self.size, self.weight_per_minute, dict(descriptor))


def plan_reply(settings: Settings, shards: ShardSettings) -> dict[str, Any]:
    """What the Plan state gets: one small descriptor per shard, and how many run at once."""
    plan = shards.plan(settings.markets)
    return {"markets": len(settings.markets), "shard_size": shards.size, "max_concurrency": shards.concurrency,
            "weight_per_minute_per_shard": plan[0].weight_per_minute,
            "shards": [shard.descriptor() for shard in plan]}


def shard_request(scheduled_event: Mapping[str, Any], descriptor: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The event of the Plan state (no descriptor) or of one Map iteration: the scheduled event, `detail`
    carrying `plan` or the shard (as the state machine's Parameters/ItemSelector build it)."""
    detail: dict[str, Any] = {"plan": True} if descriptor is None else {"shard": dict(descriptor)}
    return {**dict(scheduled_event), "detail": detail}


# ---------------------------------------------------------------- the local runner of the state machine


@dataclass
class ShardOutcome:
    descriptor: dict[str, Any]
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
        return [f"shard {s.descriptor.get('index')}: {s.error}" for s in self.shards if s.error]


Invoke = Callable[[str, Any], Any]


def run_sharded_tick(invoke: Invoke, scheduled_event: Mapping[str, Any], *, retry_interval_s: float = 0.0,
                     max_attempts: int = 2, max_concurrency: int | None = None) -> ShardedTick:
    """The TickStateMachine's steps with `invoke(function, event)`: Plan, then every shard (at most
    `max_concurrency` at once, from the plan unless given) predict -> signal, a failed shard retried alone
    after `retry_interval_s` (RETRY_INTERVAL_SECONDS on AWS; shorter locally, where no exchange counts)."""
    started = time.monotonic()
    plan = invoke("PredictFunction", shard_request(scheduled_event))
    tick = ShardedTick(plan)

    def one(descriptor: dict[str, Any]) -> ShardOutcome:
        outcome = ShardOutcome(descriptor)
        begun = time.monotonic()
        while outcome.attempts < max_attempts:
            outcome.attempts += 1
            try:
                outcome.reply = invoke("PredictFunction", shard_request(scheduled_event, descriptor))
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

    workers = max(1, min(max_concurrency or int(plan["max_concurrency"]), len(plan["shards"])))
    with ThreadPoolExecutor(workers, thread_name_prefix="shard") as pool:
        tick.shards = list(pool.map(one, plan["shards"]))
    tick.seconds = time.monotonic() - started
    return tick


__all__ = ["RETRY_INTERVAL_SECONDS", "ShardSettings", "ShardedTick", "plan_reply", "run_sharded_tick",
           "shard_request"]
