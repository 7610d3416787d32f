"""The shard plan (core.shards) and each shard's share of the exchange budget (market.budget)."""

from __future__ import annotations

import asyncio
import heapq
from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from traderai.core.shards import (
    RETRY_INTERVAL_SECONDS,
    WEIGHT_PER_MARKET,
    WINDOW_SECONDS,
    ShardPlanError,
    plan_shards,
    shard_for,
)
from traderai.market.budget import WeightBudget

MARKETS = st.integers(0, 2500).map(lambda n: [f"M{i}/USDT" for i in range(n)])


@settings(deadline=None)
@given(markets=MARKETS, size=st.integers(1, 300))
def test_a_plan_splits_and_rejoins_the_list_with_nothing_lost_or_doubled(markets: list[str], size: int) -> None:
    plan = plan_shards(markets, size)
    assert [m for shard in plan for m in shard.markets] == markets  # same markets, same order, once each
    assert all(0 < len(shard.markets) <= size for shard in plan) or markets == []
    assert [shard.index for shard in plan] == list(range(len(plan)))
    assert {shard.count for shard in plan} == {len(plan)}
    assert len({shard.label for shard in plan}) == len(plan)  # log keys never collide within a tick
    for shard in {plan[0], plan[len(plan) // 2], plan[-1]}:  # a shard re-derives its slice from its descriptor
        assert shard_for(markets, size, None, shard.descriptor()) == shard


def test_a_descriptor_from_another_list_is_refused_not_silently_resliced() -> None:
    before = [f"M{i}/USDT" for i in range(250)]
    descriptor = plan_shards(before, 100)[2].descriptor()  # 50 markets
    with pytest.raises(ShardPlanError, match="market list changed"):
        shard_for(before + [f"X{i}/USDT" for i in range(60)], 100, None, descriptor)  # now 3 shards of 100
    with pytest.raises(ShardPlanError, match="not a shard descriptor"):
        shard_for(before, 100, None, {"index": "two"})


def test_the_budget_is_shared_equally_below_the_exchange_limit() -> None:
    plan = plan_shards([f"M{i}/USDT" for i in range(1000)], 100, 6000)
    assert len(plan) == 10 and {s.weight_per_minute for s in plan} == {480}  # 6,000 x 0.8 / 10
    assert all(s.minutes_needed <= 1 for s in plan)  # 100 markets x 4 weight = 400 <= 480: one burst
    with pytest.raises(ShardPlanError, match="EXCHANGE_WEIGHT_PER_MINUTE"):
        plan_shards([f"M{i}/USDT" for i in range(10_000)], 1, 6000)  # 10,000 shards: < 1 market each


def _simulate(plan, request_gaps, failing: set[int], fail_after: int) -> list[tuple[float, int]]:
    """Every shard issues its requests (weight 2) as soon as its own WeightBudget allows, plus the gaps
    drawn; a failing shard stops after `fail_after` requests and is retried RETRY_INTERVAL_SECONDS after its
    last one with a fresh budget (a new sandbox). Returns every (time, weight) granted, in virtual time."""
    granted: list[tuple[float, int]] = []
    attempts = []  # (start time, shard index, attempt, requests)
    for shard in plan:
        requests = len(shard.markets) * WEIGHT_PER_MARKET // 2
        attempts.append((0.0, shard.index, 0, requests))
    heapq.heapify(attempts)
    while attempts:
        now, index, attempt, requests = heapq.heappop(attempts)
        budget = WeightBudget(plan[index].weight_per_minute, WINDOW_SECONDS)
        stop_at = fail_after if index in failing and attempt == 0 else requests
        for n in range(min(stop_at, requests)):
            now += request_gaps[(index + n) % len(request_gaps)]
            while (wait := budget.delay(2, now)) > 0:  # as WeightBudget.acquire waits, in virtual time
                now += wait
            budget.grant(2, now)
            granted.append((now, 2))
        if stop_at < requests:  # the attempt failed: Step Functions retries this shard alone, later
            heapq.heappush(attempts, (now + RETRY_INTERVAL_SECONDS, index, attempt + 1, requests))
    return granted


def _max_in_any_window(granted: list[tuple[float, int]]) -> int:
    """The most weight in any half-open window (t - 60 s, t], compared in exact arithmetic (Fraction), as
    WeightBudget defines it: a float `t_end - WINDOW_SECONDS` rounds, and would count a grant in or out of a
    window it is not in."""
    times = sorted(granted)
    best, total, start = 0, 0, 0
    for end in range(len(times)):
        total += times[end][1]
        while Fraction(times[end][0]) - Fraction(times[start][0]) >= WINDOW_SECONDS:
            total -= times[start][1]
            start += 1
        best = max(best, total)
    return best


@settings(max_examples=60, deadline=None)
@given(markets=st.integers(1, 1500), size=st.integers(20, 400), limit=st.sampled_from([1200, 2400, 6000]),
       gaps=st.lists(st.floats(0, 0.5), min_size=1, max_size=7), failing=st.sets(st.integers(0, 80), max_size=5),
       fail_after=st.integers(0, 300))
@example(markets=301, size=20, limit=1200, gaps=[7.766539596959239e-131], failing=set(), fail_after=0)
def test_shards_together_never_exceed_the_exchange_budget(markets: int, size: int, limit: int, gaps: list[float],
                                                          failing: set[int], fail_after: int) -> None:
    symbols = [f"M{i}/USDT" for i in range(markets)]
    try:
        plan = plan_shards(symbols, size, limit)
    except ShardPlanError:
        return  # too many shards for the budget: refused at planning, nothing runs
    granted = _simulate(plan, gaps, failing, fail_after)
    assert sum(w for _, w in granted) >= markets * WEIGHT_PER_MARKET  # every market fetched (retries included)
    assert _max_in_any_window(granted) <= limit, (markets, size, limit, gaps, failing, fail_after)


@settings(deadline=None)
@given(start=st.sampled_from([0.0, 1e-300, 3.0, 86_400.123456789, 1e7 + 0.1]),
       gaps=st.lists(st.floats(0, 61), min_size=1, max_size=200), limit=st.integers(2, 20))
def test_one_budget_never_grants_over_its_limit_at_the_window_boundary(start: float, gaps: list[float],
                                                                       limit: int) -> None:
    # monotonic clocks read large values (days of uptime) where the float sum t + 60 rounds; tiny gaps
    # put grants within an ulp of a window boundary
    budget, now, granted = WeightBudget(limit, WINDOW_SECONDS), start, []
    for gap in gaps:
        now += gap
        while (wait := budget.delay(2, now)) > 0:
            now += wait
        budget.grant(2, now)
        granted.append((now, 2))
        assert budget.used(now) <= limit
    assert _max_in_any_window(granted) <= limit


def test_acquire_waits_for_the_window_in_order() -> None:
    clock = [0.0]

    async def sleep(seconds: float) -> None:
        clock[0] += seconds

    budget = WeightBudget(10, 60.0, clock=lambda: clock[0], sleep=sleep)

    async def run() -> list[float]:
        times = []
        for _ in range(12):
            await budget.acquire(2)
            times.append(clock[0])
        return times

    times = asyncio.run(run())
    assert times[:5] == [0.0] * 5 and times[5:10] == [60.0] * 5 and times[10:] == [120.0] * 2
    with pytest.raises(ValueError, match="never fit"):
        budget.delay(11, 0.0)
