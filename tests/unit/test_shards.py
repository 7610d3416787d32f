"""The shard plan (core.shards) and each shard's share of the exchange budget (market.budget)."""

from __future__ import annotations

import asyncio
import heapq
from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from traderai.core.shards import (
    KLINES_WEIGHT,
    LOAD_MARKETS_WEIGHT,
    MIN_SHARE,
    RETRY_INTERVAL_SECONDS,
    TICKER_BATCH_SIZE,
    TICKER_WEIGHT,
    WINDOW_SECONDS,
    Shard,
    ShardPlanError,
    ShardShareError,
    TickBudgetError,
    max_spot_markets,
    plan_shards,
    shard_from_item,
    shard_weight,
    ticker_batch_weight,
)
from traderai.market.budget import WeightBudget

MARKETS = st.integers(1, 2500).map(lambda n: [f"M{i}/USDT" for i in range(n)])


@settings(deadline=None)
@given(markets=MARKETS, size=st.integers(1, 300))
def test_a_plan_splits_and_rejoins_the_list_with_nothing_lost_or_doubled(markets: list[str], size: int) -> None:
    plan = plan_shards(markets, size)
    assert [m for shard in plan for m in shard.markets] == markets  # same markets, same order, once each
    assert all(0 < len(shard.markets) <= size for shard in plan)
    assert [shard.index for shard in plan] == list(range(len(plan)))
    assert {shard.count for shard in plan} == {len(plan)}
    assert len({shard.label for shard in plan}) == len(plan)  # log keys never collide within a tick
    for shard in plan:  # each item of the plan object is its shard, and nothing else
        assert shard_from_item(shard.item(), size) == shard


def test_an_empty_list_is_refused_never_planned_as_an_empty_tick() -> None:
    with pytest.raises(ShardPlanError, match="no market listed"):
        plan_shards([], 100, 6000)


def test_an_item_that_is_not_a_shard_of_a_plan_is_refused() -> None:
    (shard,) = plan_shards(["BTC/USDT", "ETH/USDT"], 100, 6000)
    item = shard.item()
    assert shard_from_item(item, 100).markets == ("BTC/USDT", "ETH/USDT")
    for broken, message in (({"index": "two"}, "not a shard item"),
                            ({**item, "index": 1}, "is not a shard of a plan"),
                            ({**item, "index": True}, "is not a shard of a plan"),
                            ({**item, "markets": []}, "1..100 symbols"),
                            ({**item, "markets": "BTC/USDT"}, "1..100 symbols"),
                            ({**item, "markets": ["BTC/USDT"] * 2}, "listed twice"),
                            ({**item, "weight_per_minute": 1}, "not a budget share")):
        with pytest.raises(ShardPlanError, match=message):
            shard_from_item(broken, 100)
    with pytest.raises(ShardPlanError, match=r"1\.\.1 symbols"):
        shard_from_item(item, 1)  # more markets than SHARD_SIZE allows


def test_the_budget_is_shared_by_weight_below_the_exchange_limit() -> None:
    plan = plan_shards([f"M{i}/USDT" for i in range(1000)], 100, 6000)
    assert len(plan) == 10 and {s.weight_per_minute for s in plan} == {480}  # 6,000 x 0.8 / 10
    assert all(s.minutes_needed <= 1 for s in plan)  # 100 klines x 2 + 5 ticker batches x 2 = 210 <= 480
    with pytest.raises(ShardPlanError, match="EXCHANGE_WEIGHT_PER_MINUTE"):
        plan_shards([f"M{i}/USDT" for i in range(2000)], 1, 6000, max_windows=None)  # 2,000 shards: 2 weight each


def test_a_tick_over_one_window_of_the_budget_is_refused_with_the_figures() -> None:
    # 22 shards of 100 (210 each: 4,620) and one of 85 (170 + 5 batches x 2 = 180): 4,800, exactly the budget
    full = plan_shards([f"M{i}/USDT" for i in range(2285)], 100, 6000)
    # each shard's share is its own weight (an equal 4,800 / 23 = 208 would leave the shards of 100 short of
    # their 210, to wait a minute for their last request)
    assert len(full) == 23 and [s.weight_per_minute for s in full] == [210] * 22 + [180]
    assert all(s.minutes_needed <= 1 for s in full)
    mixed = plan_shards([f"M{i}/USDT:USDT" if i % 3 == 0 else f"M{i}/USDT" for i in range(1500)], 100, 6000)
    assert all(s.minutes_needed <= 1 for s in mixed) and sum(s.weight_per_minute for s in mixed) <= 4800
    with pytest.raises(TickBudgetError) as refused:
        plan_shards([f"M{i}/USDT" for i in range(10_000)], 100, 6000)
    assert str(refused.value) == (
        "exchange budget: 10,000 markets need 21,000 request weight per tick (2 a market for its candles, 2 a "
        "request for the tickers of up to 20 spot markets of a shard or of one derivative market), but "
        "EXCHANGE_WEIGHT_PER_MINUTE 6,000 less the 20% reserve gives 4,800 per minute: at most 2,285 spot "
        "markets per tick from one IP in shards of 100")
    with pytest.raises(TickBudgetError, match="2,286 markets need 4,802 request weight"):
        plan_shards([f"M{i}/USDT" for i in range(2286)], 100, 6000)
    # shards of one market: a klines and a one-symbol ticker request each, 4 weight a market, but each shard's
    # share must hold its load_markets (20): 240 shards of 20 fill the budget
    with pytest.raises(TickBudgetError, match=r"at most 240 spot markets per tick from one IP in shards of 1 "
                                              r"\(each shard's share at least 20, its largest request\)$"):
        plan_shards([f"M{i}/USDT" for i in range(1201)], 1, 6000)
    # derivative markets' tickers are asked one by one (4 weight each): 1,200 of them fill the budget
    assert len(plan_shards([f"M{i}/USDT:USDT" for i in range(1200)], 100, 6000)) == 12
    with pytest.raises(TickBudgetError, match="1,201 markets need 4,804 request weight"):
        plan_shards([f"M{i}/USDT:USDT" for i in range(1201)], 100, 6000)
    assert len(plan_shards([f"M{i}/USDT" for i in range(10_000)], 100, None)) == 100  # no budget counted


def test_the_weight_of_a_shard_counts_each_request_binance_weighs() -> None:
    # GET /api/v3/ticker/24hr with a `symbols` list: 2 for 1-20 symbols, 40 for 21-100, 80 for 101 or more
    assert [ticker_batch_weight(n) for n in (1, 20, 21, 100, 101, 500)] == [2, 2, 40, 40, 80, 80]
    with pytest.raises(ValueError, match="at least one symbol"):
        ticker_batch_weight(0)
    spot = [f"M{i}/USDT" for i in range(100)]
    assert shard_weight(spot) == 100 * 2 + 5 * 2  # 5 batches of 20: 10 weight, where 100 tickers alone were 200
    assert shard_weight(spot[:1]) == 4 and shard_weight(spot[:20]) == 42 and shard_weight(spot[:21]) == 46
    assert shard_weight(["BTC/USDT:USDT", "ETH/USDT:USDT", *spot[:30]]) == 32 * 2 + 2 * 2 + 2 * 2
    assert shard_weight([]) == 0


@settings(deadline=None)
@given(size=st.integers(1, 400), limit=st.integers(60, 60_000))
def test_the_most_markets_a_plan_takes_is_the_figure_its_refusal_names(size: int, limit: int) -> None:
    usable = int(limit * 0.8)
    most = max_spot_markets(usable, size)
    # never fewer than without batching, nor than one shard per MIN_SHARE of the budget
    assert most >= min(usable // (KLINES_WEIGHT + TICKER_WEIGHT), usable // MIN_SHARE * size)
    try:
        plan = plan_shards([f"M{i}/USDT" for i in range(max(most, 1))], size, limit)
    except ShardPlanError as exc:
        raise AssertionError(f"{most} markets refused in shards of {size} at {limit}: {exc}") from None
    # a tick within one window is within one window in every shard, at its own share
    assert all(s.minutes_needed <= 1 for s in plan) and sum(s.weight_per_minute or 0 for s in plan) <= usable
    with pytest.raises(TickBudgetError, match=f"at most {most:,} spot markets"):  # either refusal names it
        plan_shards([f"M{i}/USDT" for i in range(most + 1)], size, limit)


@settings(deadline=None)
@given(markets=st.integers(1, 2500), size=st.integers(1, 400), limit=st.integers(25, 60_000),
       derivative_every=st.sampled_from([0, 0, 3, 40]), max_windows=st.sampled_from([1.0, None]))
@example(markets=1205, size=5, limit=6000, derivative_every=0, max_windows=1.0)  # 241 shards: 19 each before
@example(markets=2181, size=10, limit=6000, derivative_every=0, max_windows=1.0)  # a last shard of 1 market: 4
def test_every_plan_accepted_gives_each_shard_its_largest_request(markets: int, size: int, limit: int,
                                                                   derivative_every: int,
                                                                   max_windows: float | None) -> None:
    symbols = [f"M{i}/USDT:USDT" if derivative_every and i % derivative_every == 0 else f"M{i}/USDT"
               for i in range(markets)]
    try:
        plan = plan_shards(symbols, size, limit, max_windows=max_windows)
    except TickBudgetError as exc:  # refused for what it says: the tick's weight, or a share below a request
        weights = [shard_weight(symbols[i:i + size]) for i in range(0, markets, size)]
        usable = int(limit * 0.8)
        if exc.reason == "over_budget":
            assert max_windows is not None and sum(weights) > usable * max_windows
        else:
            claims = [max(w, MIN_SHARE) for w in weights]
            assert exc.reason == "too_many_shards" and min(usable * c // sum(claims) for c in claims) < MIN_SHARE
        return
    for shard in plan:
        largest = max(LOAD_MARKETS_WEIGHT, *_requests(shard))  # the cold start's load_markets, then its tick
        assert shard.weight_per_minute is not None and shard.weight_per_minute >= max(largest, MIN_SHARE)
        WeightBudget(shard.weight_per_minute).delay(largest, 0.0)  # the shard's limiter can grant it (no raise)
        assert shard_from_item(shard.item(), size) == shard  # and the item the Map carries is accepted


def test_a_tick_of_shards_too_many_for_the_budget_is_refused_with_the_figures() -> None:
    # 240 shards of 5 markets (12 weight each) get 20 each, exactly the load_markets they must be able to send
    plan = plan_shards([f"M{i}/USDT" for i in range(1200)], 5, 6000)
    assert len(plan) == 240 and {s.weight_per_minute for s in plan} == {20}
    # 241 would get 4,800 x 20 // 4,820 = 19: their limiter could never grant load_markets, so no shard runs
    with pytest.raises(ShardShareError) as refused:
        plan_shards([f"M{i}/USDT" for i in range(1205)], 5, 6000)
    assert refused.value.reason == "too_many_shards" and isinstance(refused.value, TickBudgetError)
    assert str(refused.value) == (
        "exchange budget: 1,205 markets in 241 shards of up to 5 leave a shard 19 request weight per minute, "
        "less than the 20 of its largest request (load_markets: GET /api/v3/exchangeInfo, at a sandbox's cold "
        "start), which its limiter could never grant: EXCHANGE_WEIGHT_PER_MINUTE 6,000 less the 20% reserve "
        "gives 4,800 per minute, and the 241 shards need at least 20 each (a shard's tick weight if more), 4,820 "
        "together. One window serves at most 1,200 spot markets per tick from one IP in shards of 5 (each "
        "shard's share at least 20, its largest request): raise SHARD_SIZE or list fewer markets")
    # a light last shard claims 20, not its own 4: 2,180 markets in shards of 10 plan, 2,181 are refused
    # (in proportion to weight alone it got 4 of 4,800)
    assert min(s.weight_per_minute for s in plan_shards([f"M{i}/USDT" for i in range(2171)], 10, 6000)) == 20
    assert len(plan_shards([f"M{i}/USDT" for i in range(2180)], 10, 6000)) == 218
    with pytest.raises(ShardShareError, match="2,181 markets in 219 shards of up to 10 leave a shard 19 "):
        plan_shards([f"M{i}/USDT" for i in range(2181)], 10, 6000)


def test_no_request_a_shard_sends_weighs_more_than_the_least_share() -> None:
    from traderai.market.exchange import REQUEST_WEIGHTS

    assert max(REQUEST_WEIGHTS.values()) == REQUEST_WEIGHTS["load_markets"] == MIN_SHARE == 20
    assert ticker_batch_weight(TICKER_BATCH_SIZE) <= MIN_SHARE  # a shard's largest ticker batch


def _requests(shard: Shard) -> list[int]:
    """The weights of the requests a shard's tick sends, as CcxtSource sends them: a klines request a market,
    the spot markets' tickers in batches of TICKER_BATCH_SIZE, a derivative market's ticker alone."""
    spot = [m for m in shard.markets if ":" not in m]
    batches = [spot[i:i + TICKER_BATCH_SIZE] for i in range(0, len(spot), TICKER_BATCH_SIZE)]
    weights = [KLINES_WEIGHT] * len(shard.markets) + [ticker_batch_weight(len(batch)) for batch in batches]
    weights += [TICKER_WEIGHT] * (len(shard.markets) - len(spot))
    assert sum(weights) == shard_weight(shard.markets)  # the plan counts what the shard sends
    return weights


def _simulate(plan, request_gaps, failing: set[int], fail_after: int) -> list[tuple[float, int]]:
    """Every shard issues its requests (`_requests`) as soon as its own WeightBudget allows, plus the gaps
    drawn; a failing shard stops after `fail_after` requests and is retried RETRY_INTERVAL_SECONDS after its
    last one with a fresh budget (a new sandbox). Returns every (time, weight) granted, in virtual time."""
    granted: list[tuple[float, int]] = []
    attempts = [(0.0, shard.index, 0) for shard in plan]  # (start time, shard index, attempt)
    heapq.heapify(attempts)
    while attempts:
        now, index, attempt = heapq.heappop(attempts)
        weights = _requests(plan[index])
        requests = len(weights)
        budget = WeightBudget(plan[index].weight_per_minute, WINDOW_SECONDS)
        # every attempt starts cold (a retry runs in a fresh sandbox): load_markets first, through the limiter
        # (a share below its weight raises here, as WeightBudget.acquire does in the shard)
        assert budget.delay(LOAD_MARKETS_WEIGHT, now) == 0  # a fresh limiter grants it at once
        budget.grant(LOAD_MARKETS_WEIGHT, now)
        granted.append((now, LOAD_MARKETS_WEIGHT))
        stop_at = fail_after if index in failing and attempt == 0 else requests
        for n in range(min(stop_at, requests)):
            now += request_gaps[(index + n) % len(request_gaps)]
            weight = weights[(index + n) % requests]  # the batches among the klines, in any order
            while (wait := budget.delay(weight, now)) > 0:  # as WeightBudget.acquire waits, in virtual time
                now += wait
            budget.grant(weight, now)
            granted.append((now, weight))
        if stop_at < requests:  # the attempt failed: Step Functions retries this shard alone, later
            heapq.heappush(attempts, (now + RETRY_INTERVAL_SECONDS, index, attempt + 1))
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
@given(markets=st.integers(1, 2500), size=st.integers(20, 400), limit=st.sampled_from([1200, 2400, 6000]),
       gaps=st.lists(st.floats(0, 0.5), min_size=1, max_size=7), failing=st.sets(st.integers(0, 80), max_size=5),
       fail_after=st.integers(0, 300), derivative_every=st.sampled_from([0, 0, 3, 40]))
@example(markets=301, size=20, limit=1200, gaps=[7.766539596959239e-131], failing=set(), fail_after=0,
         derivative_every=0)
def test_shards_together_never_exceed_the_exchange_budget(markets: int, size: int, limit: int, gaps: list[float],
                                                          failing: set[int], fail_after: int,
                                                          derivative_every: int) -> None:
    symbols = [f"M{i}/USDT:USDT" if derivative_every and i % derivative_every == 0 else f"M{i}/USDT"
               for i in range(markets)]
    try:
        plan = plan_shards(symbols, size, limit, max_windows=None)  # past one window too: the limiter alone
    except ShardPlanError:
        return  # too many shards for the budget: refused at planning, nothing runs
    granted = _simulate(plan, gaps, failing, fail_after)
    # every market fetched (retries included)
    assert sum(w for _, w in granted) >= sum(shard_weight(shard.markets) for shard in plan)
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
