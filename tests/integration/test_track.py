"""TrackFunction under moto over the bundled real BTC/USDT candles (replay): signals followed to their
outcome through the real handler, overlapping runs, and the stream record that becomes `signal_update`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest

from traderai.adapters.signal_store import SignalStore, VersionedSignal
from traderai.contracts import Signal, SignalStatus, parse_iso_utc
from traderai.core.text_format import signal_text
from traderai.services.broadcast import change_from_record
from traderai.services.track import track
from traderai.settings import Settings
from traderai.testing.handlers import FakeLambdaContext, load_event, load_handler
from traderai.wiring import track_runtime

COSTS = 0.32


def real_signal(name: str, side: str, entry: float, tps: tuple[float, float, float], stop: float,
                created_at: str, expires_at: str) -> Signal:
    """A BTC/USDT 15m signal as the signal step would have stored it at `created_at` (5 s after the tick)."""
    return Signal(
        signal_id=f"signal_BTC_USDT_{name}", symbol="BTC/USDT", side=side, entry_price=entry,
        tp1_price=tps[0], tp2_price=tps[1], tp3_price=tps[2], sl_price=stop, leverage=20,
        position_size_usd=1000.0, quantity=0.01, gross_profit_pct=1.0, costs_pct=COSTS,
        expected_net_profit_pct=0.68, net_risk_reward_ratio=1.0, confidence=0.7, probability=0.3,
        risk_reward_ratio=2.0, status="ACTIVE", created_at=created_at, expires_at=expires_at,
        model_id="BTC_USDT_15m_20261125_111356", batch_id=f"batch_{name}", exchange="binance", timeframe="15m",
        atr=abs(entry - stop), candle_time=created_at)


# Real cases found in the bundled candles (levels at 2.0/3.5/6.0 and 1.0 x ATR(14), as the signal step sets them).
TP1_THEN_STOP = real_signal("tp1stop", "SHORT", 68454.55, (67856.47, 67407.91, 66660.31), 68753.59,
                            "2024-11-03T16:15:05Z", "2024-11-04T16:15:05Z")
ALL_TARGETS = real_signal("alltargets", "SHORT", 68686.0, (68358.26, 68112.46, 67702.78), 68849.87,
                          "2024-11-03T02:15:05Z", "2024-11-04T02:15:05Z")
EXPIRES = real_signal("expires", "SHORT", 94710.59, (93219.95, 92101.97, 90238.67), 95455.91,
                      "2025-01-10T18:45:05Z", "2025-01-11T18:45:05Z")
SAME_CANDLE = real_signal("samecandle", "SHORT", 91243.17, (90306.51, 89604.01, 88433.19), 91711.5,
                          "2024-11-14T13:00:05Z", "2024-11-15T13:00:05Z")


@pytest.fixture
def store(aws: Any) -> SignalStore:
    return SignalStore(aws.signals_table)


@pytest.fixture
def run(function_env: Callable[..., dict[str, str]]) -> Iterator[Callable[[str], dict[str, Any]]]:
    """Invoke the real handler with events/track_schedule.json at another time (replayed candles)."""
    function_env("TrackFunction", MarketSource="replay")
    track_runtime.cache_clear()
    handler = load_handler("track").handler

    def invoke(time: str) -> dict[str, Any]:
        return handler({**load_event("track_schedule.json"), "time": time}, FakeLambdaContext())

    yield invoke
    track_runtime.cache_clear()


def stored(store: SignalStore, signal: Signal) -> Signal:
    found = store.get(signal.signal_id)
    assert found is not None
    return found


def test_sample_event_runs_with_nothing_to_track(run: Callable[[str], dict[str, Any]]) -> None:
    assert run(load_event("track_schedule.json")["time"]) == {
        "checked": 0, "advanced": {}, "contended": [], "failures": {}}


def test_tp1_then_stop(run: Callable[[str], dict[str, Any]], store: SignalStore) -> None:
    # Given an ACTIVE signal
    assert store.put_new(TP1_THEN_STOP)
    # When the tracker runs before anything happened, nothing is written
    assert run("2024-11-03T18:31:05Z")["advanced"] == {}
    assert stored(store, TP1_THEN_STOP) == TP1_THEN_STOP
    # When it runs after the 18:45 candle reached TP1
    assert run("2024-11-03T19:01:05Z")["advanced"] == {TP1_THEN_STOP.signal_id: "TP1_HIT"}
    tp1 = stored(store, TP1_THEN_STOP)
    assert (tp1.status, tp1.tp1_hit_at, tp1.closed_at) == ("TP1_HIT", "2024-11-03T19:00:00Z", None)
    tp1_pct = (68454.55 - 67856.47) / 68454.55 * 100
    assert tp1.realised_net_pct == pytest.approx((tp1_pct - COSTS) / 3, abs=1e-6)
    assert tp1.time_in_trade_seconds == 2 * 3600 + 44 * 60 + 55
    # Then the 20:00 candle reaches the stop: the rest leaves there
    assert run("2024-11-03T20:16:05Z")["advanced"] == {TP1_THEN_STOP.signal_id: "STOPPED"}
    final = stored(store, TP1_THEN_STOP)
    assert (final.status, final.tp1_hit_at, final.tp2_hit_at) == ("STOPPED", "2024-11-03T19:00:00Z", None)
    assert (final.closed_at, final.exit_price) == ("2024-11-03T20:15:00Z", 68753.59)
    assert final.realised_net_pct == pytest.approx(-COSTS, abs=1e-4)  # +2 ATR x 1/3, -1 ATR x 2/3
    assert final.updated_at == "2024-11-03T20:15:05Z"
    # And a closed signal is no longer tracked
    assert run("2024-11-03T20:21:05Z")["checked"] == 0


def test_all_targets_in_one_run(run: Callable[[str], dict[str, Any]], store: SignalStore) -> None:
    assert store.put_new(ALL_TARGETS)
    assert run("2024-11-03T15:01:05Z")["advanced"] == {ALL_TARGETS.signal_id: "TP3_HIT"}
    final = stored(store, ALL_TARGETS)
    assert (final.tp1_hit_at, final.tp2_hit_at, final.tp3_hit_at, final.closed_at) == (
        "2024-11-03T02:30:00Z", "2024-11-03T02:45:00Z", "2024-11-03T14:30:00Z", "2024-11-03T14:30:00Z")
    assert final.realised_net_pct == pytest.approx(0.594548, abs=1e-6)
    assert final.exit_price is None


def test_expiry(run: Callable[[str], dict[str, Any]], store: SignalStore) -> None:
    assert store.put_new(EXPIRES)
    assert run("2025-01-11T18:41:05Z")["advanced"] == {}  # 4 minutes of life left
    assert run("2025-01-11T18:46:05Z")["advanced"] == {EXPIRES.signal_id: "EXPIRED"}
    final = stored(store, EXPIRES)
    assert (final.closed_at, final.exit_price) == ("2025-01-11T18:45:05Z", 94191.82)
    assert final.time_in_trade_seconds == 24 * 3600


def test_stop_and_targets_in_the_same_candle_count_as_stopped(run: Callable[[str], dict[str, Any]],
                                                               store: SignalStore) -> None:
    assert store.put_new(SAME_CANDLE)
    assert run("2024-11-14T14:51:05Z")["advanced"] == {SAME_CANDLE.signal_id: "STOPPED"}
    final = stored(store, SAME_CANDLE)
    assert (final.tp1_hit_at, final.tp2_hit_at, final.closed_at) == (None, None, "2024-11-14T14:45:00Z")
    assert final.realised_net_pct == pytest.approx(-(91711.5 - 91243.17) / 91243.17 * 100 - COSTS, abs=1e-6)


class StaleReads:
    """A store whose open-signal read was taken earlier: a run that read before another run wrote."""

    def __init__(self, store: SignalStore, read: list[VersionedSignal]) -> None:
        self._store, self._read = store, read

    def open_signals(self) -> list[VersionedSignal]:
        return self._read

    def record_progress(self, *args: Any) -> bool:
        return self._store.record_progress(*args)


def test_overlapping_runs_one_writes_the_other_backs_off(aws: Any, store: SignalStore) -> None:
    from traderai.market.replay import ReplaySource

    settings = Settings(market_source="replay", signals_table=aws.signals_table)
    source, loop = ReplaySource(settings), asyncio.new_event_loop()
    now = parse_iso_utc("2024-11-03T19:01:05Z")
    assert store.put_new(TP1_THEN_STOP)
    # Given run A read the open signals, then run B read them too and wrote the transition
    read_by_a = store.open_signals()
    assert track(store, source, settings.strategy, now, loop).advanced == {TP1_THEN_STOP.signal_id: "TP1_HIT"}
    after_b = stored(store, TP1_THEN_STOP)
    # When run A, holding the old version, tries the same transition
    report = track(StaleReads(store, read_by_a), source, settings.strategy, now, loop)  # type: ignore[arg-type]
    # Then its conditional update fails, it backs off, and the signal is as B left it (version bumped once)
    assert (report.advanced, report.contended) == ({}, (TP1_THEN_STOP.signal_id,))
    assert stored(store, TP1_THEN_STOP) == after_b
    [entry] = store.open_signals()
    assert entry.version == read_by_a[0].version + 1
    # And the next run carries on from B's state
    later = track(store, source, settings.strategy, parse_iso_utc("2024-11-03T20:16:05Z"), loop)
    assert later.advanced == {TP1_THEN_STOP.signal_id: "STOPPED"}
    loop.close()


def test_a_tracker_update_reaches_subscribers_as_signal_update(run: Callable[[str], dict[str, Any]],
                                                                store: SignalStore, aws: Any) -> None:
    assert store.put_new(TP1_THEN_STOP)
    run("2024-11-03T19:01:05Z")
    # The table's stream holds the INSERT and the tracker's MODIFY, as BroadcastFunction receives them
    records = stream_records(aws.signals_table)
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY"]
    change = change_from_record(records[1])
    assert change is not None
    message = change.message()
    assert message["type"] == "signal_update"
    assert {"status", "tp1_hit_at", "realised_net_pct", "time_in_trade_seconds", "updated_at"} <= set(
        message["changed"])
    assert message["data"]["status"] == "TP1_HIT" and message["data"]["tp1_hit_at"] == "2024-11-03T19:00:00Z"
    assert message["text"] == signal_text(stored(store, TP1_THEN_STOP))
    assert message["text"].endswith("\nTP1 hit ✅ +0.18% after 2h 44m")


def stream_records(table_name: str) -> list[dict[str, Any]]:
    """Every record of the table's stream (moto), oldest first."""
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    # moto routes only the classic streams endpoint (newer botocore defaults to another host)
    streams = boto3.client("dynamodbstreams", region_name="us-east-1",
                           endpoint_url="https://streams.dynamodb.us-east-1.amazonaws.com")
    arn = dynamodb.describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
    records = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records.extend(streams.get_records(ShardIterator=iterator)["Records"])
    return records


def test_a_market_without_candles_is_reported_and_its_signals_wait(run: Callable[[str], dict[str, Any]],
                                                                    store: SignalStore) -> None:
    unknown = Signal(**(TP1_THEN_STOP.to_dict() | {"signal_id": "signal_XRP_USDT_x", "symbol": "XRP/USDT"}))
    assert store.put_new(unknown)
    report = run("2024-11-03T19:01:05Z")
    assert (report["advanced"], report["failures"]) == ({}, {"XRP/USDT": "exchange_rejected"})
    assert stored(store, unknown).status == SignalStatus.ACTIVE


# ---------------------------------------------------------------- the signal's own exit weights and costs

def tracked_with(store: SignalStore, strategy_now: Any, at: str) -> dict[str, str]:
    """One tracker run over the replayed candles with today's strategy settings (maybe not the signal's)."""
    from traderai.market.replay import ReplaySource

    settings = Settings(market_source="replay", signals_table=store.table_name, strategy=strategy_now)
    loop = asyncio.new_event_loop()
    try:
        return track(store, ReplaySource(settings), settings.strategy, parse_iso_utc(at), loop).advanced
    finally:
        loop.close()


def test_realised_profit_uses_the_weights_and_costs_stored_on_the_signal(store: SignalStore) -> None:
    from traderai.contracts import Strategy

    # Given a signal built when TP_WEIGHTS was 0.5,0.3,0.2 (and costs were 0.32%)
    weighted = Signal(**(TP1_THEN_STOP.to_dict() | {"tp_weights": [0.5, 0.3, 0.2]}))
    assert store.put_new(weighted)
    assert stored(store, weighted).tp_weights == (0.5, 0.3, 0.2)
    # When TP_WEIGHTS and the fees are changed while it is open, and the tracker runs on
    changed = Strategy(tp_weights=(0.2, 0.3, 0.5), taker_fee_pct=0.2)
    assert tracked_with(store, changed, "2024-11-03T19:01:05Z") == {weighted.signal_id: "TP1_HIT"}
    assert tracked_with(store, changed, "2024-11-03T20:16:05Z") == {weighted.signal_id: "STOPPED"}
    # Then its realised profit is the one of its own weights and costs: 1/2 at TP1 (+2 ATR), 1/2 at the stop
    tp1_pct = (68454.55 - 67856.47) / 68454.55 * 100
    sl_pct = (68753.59 - 68454.55) / 68454.55 * 100
    final = stored(store, weighted)
    assert final.realised_net_pct == pytest.approx(0.5 * tp1_pct - 0.5 * sl_pct - COSTS, abs=1e-6)
    assert final.tp_weights == (0.5, 0.3, 0.2)


def test_a_signal_stored_without_weights_tracks_with_the_setting(store: SignalStore) -> None:
    from traderai.contracts import Strategy

    # Given an item written before signals recorded their weights (no tp_weights attribute at all)
    assert TP1_THEN_STOP.tp_weights is None and store.put_new(TP1_THEN_STOP)
    # When it is tracked, the TP_WEIGHTS setting stands in for the missing weights
    assert tracked_with(store, Strategy(tp_weights=(0.5, 0.3, 0.2)), "2024-11-03T19:01:05Z") == {
        TP1_THEN_STOP.signal_id: "TP1_HIT"}
    tp1_pct = (68454.55 - 67856.47) / 68454.55 * 100
    assert stored(store, TP1_THEN_STOP).realised_net_pct == pytest.approx(0.5 * (tp1_pct - COSTS), abs=1e-6)


# ---------------------------------------------------------------- a market that no longer serves candles

# XRP/USDT has no recorded candles (a market delisted or removed from MARKETS); BTC/USDT's recording ends
# 2025-04-30 00:00, so a BTC signal living past it meets a feed that stays stale.
DELISTED = Signal(**(TP1_THEN_STOP.to_dict() | {"signal_id": "signal_XRP_USDT_gone", "symbol": "XRP/USDT"}))
STALE = Signal(**(EXPIRES.to_dict() | {"signal_id": "signal_BTC_USDT_stale", "created_at": "2025-04-30T10:00:05Z",
                                       "expires_at": "2025-05-01T10:00:05Z", "candle_time": "2025-04-30T09:45:00Z"}))


@pytest.mark.parametrize(("signal", "reason"), [(DELISTED, "exchange_rejected"), (STALE, "stale_feed")])
def test_an_unfetchable_market_waits_until_expiry_plus_the_grace(
        run: Callable[[str], dict[str, Any]], store: SignalStore, signal: Signal, reason: str) -> None:
    assert store.put_new(signal)
    # Given its market fails at the last tick before the grace (2 x 15m) is over, 25 minutes after expiry
    before_grace = (parse_iso_utc(signal.expires_at) + timedelta(minutes=25)).strftime("%Y-%m-%dT%H:%M:%SZ")
    report = run(before_grace)
    assert (report["advanced"], report["failures"]) == ({}, {signal.symbol: reason})
    assert stored(store, signal) == signal


@pytest.mark.parametrize(("signal", "reason"), [(DELISTED, "exchange_rejected"), (STALE, "stale_feed")])
def test_past_the_grace_an_unfetchable_market_expires_its_signal_without_a_price(
        run: Callable[[str], dict[str, Any]], store: SignalStore, signal: Signal, reason: str) -> None:
    assert store.put_new(signal)
    # The tick at which the grace is over: 30 minutes after expiry (runs are at 5 s past each 5-minute mark)
    past_grace = (parse_iso_utc(signal.expires_at) + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    report = run(past_grace)
    assert (report["advanced"], report["failures"]) == ({signal.signal_id: "EXPIRED"}, {signal.symbol: reason})
    final = stored(store, signal)
    assert (final.status, final.closed_at, final.exit_price) == ("EXPIRED", signal.expires_at, None)
    assert final.closed_reason == "no_market_data"
    assert final.realised_net_pct == 0.0  # nothing was exited; the rest has no price, so none is invented
    assert final.time_in_trade_seconds == 24 * 3600
    assert final.updated_at == past_grace
    assert run(past_grace)["checked"] == 0  # no longer open


def test_an_unpriced_expiry_keeps_the_targets_already_hit(run: Callable[[str], dict[str, Any]],
                                                          store: SignalStore) -> None:
    # Given a signal that hit TP1 (+2 ATR) before its market vanished
    tp1_pct = (68454.55 - 67856.47) / 68454.55 * 100
    tp1_hit = Signal(**(DELISTED.to_dict() | {"status": "TP1_HIT", "tp1_hit_at": "2024-11-03T19:00:00Z",
                                              "realised_net_pct": round((tp1_pct - COSTS) / 3, 6),
                                              "time_in_trade_seconds": 9895.0}))
    assert store.put_new(tp1_hit)
    # When the grace after its expiry is over
    assert run("2024-11-04T16:46:05Z")["advanced"] == {tp1_hit.signal_id: "EXPIRED"}
    # Then the TP1 third stays realised as it was, and the other two thirds have no exit price
    final = stored(store, tp1_hit)
    assert (final.tp1_hit_at, final.exit_price, final.closed_reason) == ("2024-11-03T19:00:00Z", None,
                                                                         "no_market_data")
    assert final.realised_net_pct == pytest.approx((tp1_pct - COSTS) / 3, abs=1e-6)
    assert signal_text(final).endswith("\nExpired ⌛ without market data (rest unpriced) +0.18% after 1d")


def test_an_unpriced_expiry_is_conditional_on_the_version_read(aws: Any, store: SignalStore) -> None:
    from traderai.market.replay import ReplaySource

    settings = Settings(market_source="replay", signals_table=aws.signals_table)
    source, loop = ReplaySource(settings), asyncio.new_event_loop()
    now = parse_iso_utc("2024-11-04T16:46:05Z")
    assert store.put_new(DELISTED)
    read_by_a = store.open_signals()
    assert track(store, source, settings.strategy, now, loop).advanced == {DELISTED.signal_id: "EXPIRED"}
    report = track(StaleReads(store, read_by_a), source, settings.strategy, now, loop)  # type: ignore[arg-type]
    assert (report.advanced, report.contended) == ({}, (DELISTED.signal_id,))
    loop.close()
