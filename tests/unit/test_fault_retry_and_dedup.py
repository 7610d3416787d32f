"""Pure fault handling: bounded, jittered retries of the exchange adapter and at-most-once pushes per version.

Property tests over any sequence of failures: attempts never exceed the policy, waits stay within
[½, 1)× their ceiling and grow, permanent errors are never retried; a broadcast retried after any
partial failure reaches every connection exactly once per signal version.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import ccxt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traderai.adapters.deliveries import InMemoryLedger, parts
from traderai.adapters.push import PostResult
from traderai.market import PermanentMarketError, RateLimitedError, TemporaryMarketError
from traderai.market.exchange import RetryPolicy, call_with_retry
from traderai.services.broadcast import Broadcaster, BroadcastFailed, change_from_record
from traderai.testing.handlers import load_event

TEMPORARY = [ccxt.RequestTimeout("timeout"), ccxt.RateLimitExceeded("429"), ccxt.DDoSProtection("418"),
             ccxt.ExchangeNotAvailable("503"), ccxt.NetworkError("reset")]
PERMANENT = [ccxt.BadSymbol("no such market"), ccxt.AuthenticationError("401"), ccxt.BadRequest("400")]


def run(failures: list[BaseException], policy: RetryPolicy, jitter: float = 0.5) -> tuple[Any, int, list[float]]:
    calls, sleeps = 0, []

    async def call() -> str:
        nonlocal calls
        calls += 1
        if calls <= len(failures):
            raise failures[calls - 1]
        return "candles"

    async def sleep(delay: float) -> None:
        sleeps.append(delay)

    async def main() -> Any:
        try:
            return await call_with_retry(call, what="fetch_ohlcv", policy=policy, sleep=sleep, rand=lambda: jitter)
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            return exc

    return asyncio.run(main()), calls, sleeps


@settings(max_examples=200, deadline=None)
@given(failures=st.lists(st.sampled_from(TEMPORARY), max_size=8), attempts=st.integers(1, 6),
       jitter=st.floats(0, 0.999))
def test_temporary_faults_are_retried_at_most_the_policys_attempts(failures: list[BaseException], attempts: int,
                                                                   jitter: float) -> None:
    policy = RetryPolicy(attempts=attempts, base_delay_s=0.5, max_delay_s=8.0)
    outcome, calls, sleeps = run(failures, policy, jitter)
    assert calls == min(len(failures) + 1, attempts)
    assert len(sleeps) == calls - 1
    if len(failures) < attempts:
        assert outcome == "candles"
    else:
        assert isinstance(outcome, TemporaryMarketError)
    for retry, (delay, error) in enumerate(zip(sleeps, failures, strict=False)):
        factor = policy.rate_limited_factor if isinstance(error, (ccxt.RateLimitExceeded, ccxt.DDoSProtection)) else 1
        ceiling = min(policy.max_delay_s, policy.base_delay_s * factor * 2**retry)
        assert ceiling / 2 <= delay < ceiling or delay == pytest.approx(ceiling / 2 + ceiling / 2 * jitter)


@pytest.mark.parametrize("error", PERMANENT)
def test_permanent_faults_are_never_retried(error: BaseException) -> None:
    outcome, calls, sleeps = run([error, error], RetryPolicy(attempts=4))
    assert isinstance(outcome, PermanentMarketError) and calls == 1 and sleeps == []


def test_a_rate_limit_waits_longer_than_a_timeout() -> None:
    _, _, after_timeout = run([ccxt.RequestTimeout("t")], RetryPolicy())
    _, _, after_429 = run([ccxt.RateLimitExceeded("429")], RetryPolicy())
    assert after_429[0] == 4 * after_timeout[0]
    outcome, _, _ = run([ccxt.RateLimitExceeded("429")] * 9, RetryPolicy(attempts=2))
    assert isinstance(outcome, RateLimitedError)


# ---------------------------------------------------------------- one push per connection per version

class FlakyPusher:
    """Delivers to every id except those listed as failing on the current attempt; counts deliveries."""

    def __init__(self, failing_by_attempt: list[set[str]]) -> None:
        self.failing_by_attempt = failing_by_attempt
        self.attempt = 0
        self.delivered: dict[str, int] = {}

    def posts(self, connection_ids: Any, payload: bytes) -> Iterator[tuple[str, str, str]]:
        failing = self.failing_by_attempt[self.attempt] if self.attempt < len(self.failing_by_attempt) else set()
        self.attempt += 1
        for connection_id in connection_ids:
            if connection_id in failing:
                yield connection_id, PostResult.FAILED, "HTTP 500"
            else:
                self.delivered[connection_id] = self.delivered.get(connection_id, 0) + 1
                yield connection_id, PostResult.DELIVERED, ""


class Connections:
    """Connections following every symbol, as the store lists a symbol's subscribers."""

    def __init__(self, ids: list[str]) -> None:
        from traderai.adapters.connections import Subscriber

        self.rows = [Subscriber(i) for i in ids]

    def subscribers(self, symbol: str, read: Any = None) -> list[Any]:
        return list(self.rows)

    def remove_many(self, ids: Any) -> None:
        raise AssertionError("nothing is gone in this test")


IDS = [f"c{i}=" for i in range(8)]


@settings(max_examples=100, deadline=None)
@given(failing=st.lists(st.sets(st.sampled_from(IDS)), max_size=4), redeliveries=st.integers(0, 2))
def test_retries_after_any_partial_failures_deliver_exactly_once_per_version(failing: list[set[str]],
                                                                            redeliveries: int) -> None:
    change = change_from_record(load_event("broadcast_insert.json")["Records"][0])
    assert change is not None and change.delivery_id
    pusher, ledger = FlakyPusher(failing), InMemoryLedger()
    for _ in range(len(failing) + 1 + redeliveries):  # the stream retries until it succeeds, then redelivers
        try:
            Broadcaster(Connections(IDS), pusher, ledger).broadcast(change)  # type: ignore[arg-type]
        except BroadcastFailed:
            continue
    assert pusher.delivered == dict.fromkeys(IDS, 1)
    assert ledger.delivered(change.delivery_id) == frozenset(IDS)


def test_a_new_version_of_the_same_signal_is_pushed_again() -> None:
    insert = change_from_record(load_event("broadcast_insert.json")["Records"][0])
    modify = change_from_record(load_event("broadcast_modify.json")["Records"][0])
    assert insert and modify and insert.signal.signal_id == modify.signal.signal_id
    assert insert.delivery_id != modify.delivery_id
    pusher, ledger = FlakyPusher([]), InMemoryLedger()
    for change in (insert, modify, insert, modify):
        Broadcaster(Connections(IDS[:2]), pusher, ledger).broadcast(change)  # type: ignore[arg-type]
    assert pusher.delivered == {"c0=": 2, "c1=": 2}


class CountingLedger(InMemoryLedger):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[int] = []

    def record(self, delivery_id: str, connection_ids: Any, now: datetime) -> None:
        ids = list(connection_ids)
        self.writes.append(len(ids))
        super().record(delivery_id, ids, now)


class DiesAfter(FlakyPusher):
    """Delivers `posts` posts, then the invocation dies (a timeout, a crash): the rest never happen."""

    def __init__(self, posts: int) -> None:
        super().__init__([])
        self.limit = posts

    def posts(self, connection_ids: Any, payload: bytes) -> Iterator[tuple[str, str, str]]:
        for n, outcome in enumerate(super().posts(connection_ids, payload)):
            if n == self.limit:
                raise TimeoutError("the invocation ran out of time")
            yield outcome


def test_a_fan_out_is_recorded_as_it_goes_not_only_at_its_end() -> None:
    change = change_from_record(load_event("broadcast_insert.json")["Records"][0])
    assert change is not None and change.delivery_id
    ledger = CountingLedger()
    broadcaster = Broadcaster(Connections(IDS), DiesAfter(7), ledger, record_every=3)  # type: ignore[arg-type]
    with pytest.raises(TimeoutError):
        broadcaster.broadcast(change)
    assert ledger.writes[:2] == [3, 3]  # on the way, every 3 posts (a hard kill would keep these)
    assert ledger.delivered(change.delivery_id) == frozenset(IDS[:7])  # and what was left, on the way out
    pusher = FlakyPusher([])
    Broadcaster(Connections(IDS), pusher, ledger).broadcast(change)  # type: ignore[arg-type]
    assert pusher.delivered == {IDS[7]: 1}


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=24),
                    max_size=60),
       limit=st.integers(100, 400))
def test_ledger_parts_hold_every_id_once_and_stay_under_their_byte_limit(ids: list[str], limit: int) -> None:
    groups = list(parts(ids, limit))
    # nothing lost, nothing doubled: the parts, in order, are exactly the distinct ids
    assert [i for group in groups for i in group] == list(dict.fromkeys(ids))
    # each part within its bytes (as DynamoDB counts a set: UTF-8, plus one per element), none empty
    sizes = [sum(len(i.encode()) + 1 for i in group) for group in groups]
    assert all(group for group in groups) and all(size <= limit for size in sizes)
    # and no more parts than needed: a part is closed only when the next id did not fit
    assert all(size + len(nxt[0].encode()) + 1 > limit for size, nxt in zip(sizes, groups[1:], strict=False))


def test_a_ledger_part_of_api_gateway_ids_is_a_quarter_of_the_item_limit() -> None:
    ids = [f"{n:012x}abc=" for n in range(20_000)]  # 16 characters, as API Gateway's
    groups = list(parts(ids))
    assert [len(g) for g in groups] == [5_882, 5_882, 5_882, 2_354]  # 100,000 bytes / 17 per id
