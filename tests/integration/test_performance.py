"""GET /performance and GET /signals/{id}?format=text through the real ApiFunction handler under moto."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from traderai import wiring
from traderai.adapters.signal_store import SignalStore
from traderai.contracts import Signal
from traderai.services import performance
from traderai.testing.handlers import FakeLambdaContext, load_event, load_handler
from traderai.testing.serving import ServingTables

Reply = dict[str, Any]


def signal(n: int, symbol: str, status: str, created_at: str, **outcome: Any) -> Signal:
    return Signal(
        signal_id=f"signal_{symbol.replace('/', '_')}_{n:04d}", symbol=symbol, side="LONG", entry_price=62800.0,
        tp1_price=64200.0, tp2_price=65300.0, tp3_price=67000.0, sl_price=62100.0, leverage=20,
        position_size_usd=1000.0, quantity=0.01592, gross_profit_pct=4.0, costs_pct=0.32,
        expected_net_profit_pct=3.68, net_risk_reward_ratio=2.7, confidence=0.7, probability=0.7,
        risk_reward_ratio=3.6, status=status, created_at=created_at, expires_at="2025-01-31T00:00:00Z",
        model_id="BTC_USDT_15m_20241101_000000", batch_id=f"batch_{n}", exchange="binance", timeframe="15m",
        atr=700.0, candle_time=created_at, **outcome)


HOUR = 3600.0
HISTORY = [
    signal(1, "BTC/USDT", "STOPPED", "2024-11-03T16:15:05Z", tp1_hit_at="2024-11-03T19:00:00Z",
           closed_at="2024-11-03T20:15:00Z", exit_price=62100.0, realised_net_pct=-0.32,
           time_in_trade_seconds=4 * HOUR),
    signal(2, "BTC/USDT", "TP3_HIT", "2024-11-04T02:15:05Z", tp1_hit_at="2024-11-04T02:45:00Z",
           tp2_hit_at="2024-11-04T02:45:00Z", tp3_hit_at="2024-11-04T14:30:00Z", closed_at="2024-11-04T14:30:00Z",
           realised_net_pct=2.5, time_in_trade_seconds=12 * HOUR),
    signal(3, "BTC/USDT", "ACTIVE", "2024-11-20T10:00:05Z"),
    signal(4, "ETH/USDT", "EXPIRED", "2024-11-10T18:45:05Z", closed_at="2024-11-11T18:45:05Z",
           exit_price=63000.0, realised_net_pct=0.2, time_in_trade_seconds=24 * HOUR),
    signal(5, "ETH/USDT", "TP1_HIT", "2024-11-29T08:00:05Z", tp1_hit_at="2024-11-29T10:00:00Z",
           realised_net_pct=0.18, time_in_trade_seconds=2 * HOUR),
    signal(6, "SOL/USDT", "STOPPED", "2024-12-05T08:00:05Z", closed_at="2024-12-05T09:00:00Z",
           realised_net_pct=-1.0, time_in_trade_seconds=HOUR),  # outside the November window
]


@pytest.fixture
def store(serving: ServingTables) -> SignalStore:
    store = SignalStore(serving.signals_table)
    for item in HISTORY:
        assert store.put_new(item)
    return store


@pytest.fixture
def call(serving: ServingTables, store: SignalStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Reply]]:
    for name, value in serving.environment("ApiFunction").items():
        monkeypatch.setenv(name, value)
    wiring.clear()
    performance.CACHE.clear()
    api = load_handler("api")

    def invoke(event_file: str, query: dict[str, str] | None = None) -> Reply:
        event = load_event(event_file)
        if query is not None:
            event["queryStringParameters"] = query
            event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
        return api.handler(event, FakeLambdaContext())

    yield invoke
    performance.CACHE.clear()
    wiring.clear()


def body(reply: Reply) -> Any:
    return json.loads(reply["body"])


def test_performance_over_a_window_per_symbol_and_overall(call: Callable[..., Reply]) -> None:
    reply = call("api_get_performance_window.json")
    assert reply["statusCode"] == 200
    report = body(reply)
    assert (report["since"], report["until"], report["truncated"]) == (
        "2024-11-01T00:00:00Z", "2024-11-30T23:59:59Z", False)
    overall = report["overall"]
    assert (overall["signals"], overall["open"], overall["closed"]) == (5, 2, 3)
    assert overall["by_status"] == {"ACTIVE": 1, "TP1_HIT": 1, "TP2_HIT": 0, "TP3_HIT": 1, "STOPPED": 1,
                                    "EXPIRED": 1}
    # rates over the 3 closed signals: #1 stopped after TP1, #2 all targets, #4 expired
    assert overall["tp1_hit_rate"] == pytest.approx(2 / 3, abs=1e-6)
    assert overall["tp2_hit_rate"] == overall["tp3_hit_rate"] == pytest.approx(1 / 3, abs=1e-6)
    assert overall["stop_rate"] == overall["expiry_rate"] == pytest.approx(1 / 3, abs=1e-6)
    assert overall["win_rate"] == pytest.approx(2 / 3, abs=1e-6)
    assert overall["avg_realised_net_pct"] == pytest.approx((-0.32 + 2.5 + 0.2) / 3, abs=1e-6)
    assert overall["total_realised_net_pct"] == pytest.approx(2.38, abs=1e-6)
    assert overall["avg_time_in_trade_hours"] == pytest.approx((4 + 12 + 24) / 3, abs=1e-4)
    assert set(report["by_symbol"]) == {"BTC/USDT", "ETH/USDT"}
    btc, eth = report["by_symbol"]["BTC/USDT"], report["by_symbol"]["ETH/USDT"]
    assert (btc["signals"], btc["closed"], btc["tp1_hit_rate"], btc["avg_realised_net_pct"]) == (3, 2, 1.0, 1.09)
    assert (eth["signals"], eth["open"], eth["expiry_rate"], eth["tp1_hit_rate"]) == (2, 1, 1.0, 0.0)


def test_the_track_record_figures_of_the_window(call: Callable[..., Reply]) -> None:
    # Given November's closed signals: #1 -0.32 (TP1 then stop), #2 +2.5 (all targets), #4 +0.2 (expiry)
    report = body(call("api_get_performance_window.json"))
    overall = report["overall"]
    assert overall["exits"] == {"tp1": 2, "tp2": 1, "tp3": 1, "stop": 1, "expiry": 1, "unpriced": 0}
    assert (overall["wins"], overall["losses"]) == (2, 1)
    assert overall["profit_factor"] == pytest.approx(2.7 / 0.32, abs=1e-4)
    assert overall["expectancy_pct"] == pytest.approx(2.38 / 3, abs=1e-6)
    # in close order (#1 Nov 3, #2 Nov 4, #4 Nov 11): -0.32 from the start's 0 is the deepest fall
    assert overall["max_drawdown_pct"] == pytest.approx(0.32, abs=1e-6)
    # R: realised / (stop distance 700/62800 % + 0.32 % costs)
    risk = 700 / 62800 * 100 + 0.32
    assert overall["expectancy_r"] == pytest.approx((-0.32 + 2.5 + 0.2) / risk / 3, abs=1e-6)
    assert report["definitions"]["win_rate"].startswith("wins / closed priced signals; a win is a realised net")
    # Every stored signal predates the `tradeable` mark: all tradeable, the curve is theirs
    assert (overall["tradeable"], overall["paper"], report["paper"]["overall"]["signals"]) == (5, 0, 0)
    curve = report["tradeable"]["equity_curve"]
    assert [(p["signal_id"][-4:], p["cumulative_net_pct"]) for p in curve] == [
        ("0001", -0.32), ("0002", 2.18), ("0004", 2.38)]
    assert report["tradeable"]["overall"] == overall


@pytest.mark.parametrize(("window", "signals"), [("7d", 1), ("30d", 5), ("90d", 5), ("all", 5)])
def test_named_windows_end_at_the_functions_clock(call: Callable[..., Reply], window: str, signals: int) -> None:
    # Given the functions' clock at 2024-11-30 12:00 UTC (the local stack sets its replay clock here)
    from datetime import UTC, datetime

    wiring.use_clock(lambda: datetime(2024, 11, 30, 12, tzinfo=UTC))
    report = body(call("api_get_performance.json", {"window": window}))
    # Then the window ends then: 7d holds only #5 (Nov 29); "all" has no start but stops before December's #6
    assert report["overall"]["signals"] == signals and report["window"] == window
    assert report["until"] == "2024-11-30T12:00:00Z"
    assert report["since"] == {"7d": "2024-11-23T12:00:00Z", "30d": "2024-10-31T12:00:00Z",
                               "90d": "2024-09-01T12:00:00Z", "all": None}[window]


def test_the_default_window_follows_the_functions_clock_too(call: Callable[..., Reply]) -> None:
    from datetime import UTC, datetime

    wiring.use_clock(lambda: datetime(2024, 12, 6, tzinfo=UTC))
    assert body(call("api_get_performance.json"))["overall"]["signals"] == 4  # Nov 10 .. Dec 5


def test_paper_signals_are_reported_apart() -> None:
    paper = Signal(**(HISTORY[1].to_dict() | {"signal_id": "paper_1", "tradeable": False}))
    kept = Signal(**(HISTORY[0].to_dict() | {"tradeable": True}))
    report = performance.performance_report([kept, paper, HISTORY[3]], None, "2024-12-01T00:00:00Z",
                                            computed_at=wiring.now())
    assert (report.overall.signals, report.overall.paper, report.overall.tradeable) == (3, 1, 2)
    assert report.paper.overall.total_realised_net_pct == 2.5
    assert report.tradeable.overall.total_realised_net_pct == pytest.approx(-0.12)
    assert [p.signal_id for p in report.paper.equity_curve] == ["paper_1"]


def test_a_long_equity_curve_is_thinned_but_keeps_its_drawdown_and_its_end() -> None:
    # Given 5,000 closed signals alternating +1/-0.5, then a run of ten -1 losses in the middle
    results = [1.0 if i % 2 == 0 else -0.5 for i in range(5000)]
    results[2500:2510] = [-1.0] * 10
    signals = [Signal(**(HISTORY[0].to_dict() | {"signal_id": f"s{i:05d}", "closed_at": f"2024-11-03T{i:05d}",
                                                 "realised_net_pct": r})) for i, r in enumerate(results)]
    curve, thinned = performance.equity_curve(signals)
    assert thinned and len(curve) <= performance.MAX_CURVE_POINTS
    assert curve[-1].cumulative_net_pct == pytest.approx(sum(results))
    ids = {p.signal_id for p in curve}
    assert {"s02498", "s02509", "s04999"} <= ids  # the peak and trough of the deepest fall, and the last point


def test_an_unpriced_expiry_is_counted_as_closed_but_left_out_of_the_profit_figures() -> None:
    # Given the three closed signals of November and one whose market vanished after TP1 (no exit price)
    unpriced = signal(7, "ETH/USDT", "EXPIRED", "2024-11-12T08:00:05Z", tp1_hit_at="2024-11-12T10:00:00Z",
                      closed_at="2024-11-13T08:00:05Z", closed_reason="no_market_data", realised_net_pct=0.6,
                      time_in_trade_seconds=24 * HOUR)
    stats = performance.stats_of([HISTORY[0], HISTORY[1], HISTORY[3], unpriced])
    # Then it counts among the closed, the expiries and the TP1 hits
    assert (stats.closed, stats.unpriced) == (4, 1)
    assert stats.expiry_rate == 0.5 and stats.tp1_hit_rate == 0.75
    # But its partial profit (the TP1 third only) is not a trade's outcome: win rate and profit skip it
    assert stats.win_rate == pytest.approx(2 / 3, abs=1e-6)
    assert stats.avg_realised_net_pct == pytest.approx((-0.32 + 2.5 + 0.2) / 3, abs=1e-6)
    assert stats.total_realised_net_pct == pytest.approx(2.38, abs=1e-6)


def test_a_window_with_no_closed_signal_has_null_rates(call: Callable[..., Reply]) -> None:
    report = body(call("api_get_performance.json", {"since": "2024-11-20T00:00:00Z",
                                                    "until": "2024-11-30T00:00:00Z"}))
    assert (report["overall"]["signals"], report["overall"]["closed"]) == (2, 0)
    assert report["overall"]["tp1_hit_rate"] is None and report["overall"]["avg_realised_net_pct"] is None


def test_repeated_calls_are_served_from_the_cache_by_one_query(call: Callable[..., Reply],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    queries: list[tuple[Any, ...]] = []
    original = SignalStore.outcomes_between

    def counting(self: SignalStore, *args: Any, **kwargs: Any) -> list[Any]:
        queries.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SignalStore, "outcomes_between", counting)
    first = body(call("api_get_performance_window.json"))
    second = body(call("api_get_performance_window.json"))
    assert first == second and len(queries) == 1
    assert call("api_get_performance.json", {"until": "2024-11-15T00:00:00Z"})["statusCode"] == 200  # another window
    assert len(queries) == 2


def test_performance_reads_by_query_never_scan(call: Callable[..., Reply], monkeypatch: pytest.MonkeyPatch) -> None:
    from pynamodb.connection.base import Connection

    def no_scan(*_: Any, **__: Any) -> None:
        raise AssertionError("GET /performance must not Scan")

    monkeypatch.setattr(Connection, "scan", no_scan)
    assert call("api_get_performance_window.json")["statusCode"] == 200


@pytest.mark.parametrize(("event_file", "query", "message"), [
    ("api_get_performance_bad_window.json", None, "is after until"),
    ("api_get_performance.json", {"since": "2023-01-01T00:00:00Z", "until": "2024-11-01T00:00:00Z"}, "366 days"),
    ("api_get_performance.json", {"symbol": "BTC/USDT"}, "unknown query parameter"),
    ("api_get_performance.json", {"since": "yesterday"}, "since"),
    ("api_get_performance.json", {"window": "1y"}, "window"),
    ("api_get_performance.json", {"window": "7d", "since": "2024-11-01T00:00:00Z"}, "window or since"),
    ("api_get_performance.json", {"until": "0.5"}, "until: '0.5' is not an RFC 3339 date-time"),  # not 1970
])
def test_bad_windows_are_refused_with_400(call: Callable[..., Reply], event_file: str,
                                          query: dict[str, str] | None, message: str) -> None:
    reply = call(event_file, query)
    assert reply["statusCode"] == 400
    assert message in body(reply)["message"]


def test_a_window_inside_one_second_is_an_empty_report_not_an_error(call: Callable[..., Reply],
                                                                    between_rule: None) -> None:
    # Given since <= until within one stored second (since rounds up past until; DynamoDB's BETWEEN refuses that)
    reply = call("api_get_performance.json", {"since": "2024-11-03T16:15:05.2Z", "until": "2024-11-03T16:15:05.7Z"})
    # Then the window holds no stored second: zero signals, not a 500
    assert reply["statusCode"] == 200 and body(reply)["overall"]["signals"] == 0


def test_windows_that_differ_below_a_second_are_not_served_one_cached_report(call: Callable[..., Reply]) -> None:
    # Given a report cached for since=16:15:05.5 (rounded up to 16:15:06: signal 1, created at 16:15:05, is out)
    until = "2024-11-30T00:00:00Z"
    later = body(call("api_get_performance.json", {"since": "2024-11-03T16:15:05.5Z", "until": until}))
    # When the window starting at 16:15:05 is asked within the cache's minute
    exact = body(call("api_get_performance.json", {"since": "2024-11-03T16:15:05Z", "until": until}))
    # Then it is its own report, with signal 1 in it
    assert (later["since"], exact["since"]) == ("2024-11-03T16:15:06Z", "2024-11-03T16:15:05Z")
    assert exact["overall"]["signals"] == later["overall"]["signals"] + 1


def test_cache_entries_expire_after_their_ttl() -> None:
    clock = [0.0]
    cache = performance.PerformanceCache(ttl=60, clock=lambda: clock[0])
    computed: list[int] = []

    def compute() -> Any:
        computed.append(1)
        return len(computed)

    assert cache.get(("a", None), compute) == 1 and cache.get(("a", None), compute) == 1
    clock[0] = 61.0
    assert cache.get(("a", None), compute) == 2


# ---------------------------------------------------------------- ?format=text

def test_signal_as_channel_text(call: Callable[..., Reply], store: SignalStore) -> None:
    assert store.put_new(Signal(**(HISTORY[2].to_dict() | {"signal_id": "signal_BTC_USDT_0a1b2c3d4e5f"})))
    reply = call("api_get_signal_text.json")
    assert reply["statusCode"] == 200
    assert reply["headers"]["Content-Type"].startswith("text/plain")
    assert reply["body"] == ("BTC/USDT LONG x20\nExpected value: unknown (no outcome model for this signal)\n"
                             "Entry: 62800\nTargets:\n1) 64200\n2) 65300\n3) 67000\n"
                             "Stop: 62100\nBest case if every target fills: +3.68%")


def test_a_closed_signal_as_text_ends_with_its_outcome(call: Callable[..., Reply], store: SignalStore) -> None:
    assert store.put_new(Signal(**(HISTORY[0].to_dict() | {"signal_id": "signal_BTC_USDT_0a1b2c3d4e5f"})))
    assert call("api_get_signal_text.json")["body"].endswith(
        "\nStop: 62100\nBest case if every target fills: +3.68%\nStopped out ❌ -0.32% after 4h")


def test_json_stays_the_default_and_other_formats_are_refused(call: Callable[..., Reply], store: SignalStore) -> None:
    assert store.put_new(Signal(**(HISTORY[2].to_dict() | {"signal_id": "signal_BTC_USDT_0a1b2c3d4e5f"})))
    assert body(call("api_get_signal_by_id.json"))["signal_id"] == "signal_BTC_USDT_0a1b2c3d4e5f"
    assert call("api_get_signal_text.json", {"format": "csv"})["statusCode"] == 400


def test_performance_shows_the_protection_locks_in_force_at_its_clock(call: Callable[..., Reply],
                                                                       store: SignalStore) -> None:
    from datetime import UTC, datetime

    # Given four SOL signals stopped at a loss within 24 h (the default guard: 4 stops in 24 h, 24 h lock)
    for n, hour in enumerate((1, 5, 9, 13)):
        assert store.put_new(signal(100 + n, "SOL/USDT", "STOPPED", f"2024-12-10T{hour - 1:02d}:00:05Z",
                                    closed_at=f"2024-12-10T{hour:02d}:00:00Z", closed_reason="stop",
                                    realised_net_pct=-1.38))
    # Then /performance lists the lock while it lasts (13:00 + 24 h) and not after
    wiring.use_clock(lambda: datetime(2024, 12, 11, 12, tzinfo=UTC))
    locks = body(call("api_get_performance.json"))["locks"]
    assert locks == [{"symbol": "SOL/USDT", "protection": "protection_stoploss_guard",
                      "engaged_at": "2024-12-10T13:00:00Z", "until": "2024-12-11T13:00:00Z",
                      "message": "stoploss_guard: 4 stops within 24 h (limit 4); locked 24 h until "
                                 "2024-12-11T13:00:00Z"}]
    performance.CACHE.clear()
    wiring.use_clock(lambda: datetime(2024, 12, 11, 13, tzinfo=UTC))
    assert body(call("api_get_performance.json"))["locks"] == []


def test_outcomes_are_the_stored_signals_outcome_fields_newest_first(store: SignalStore) -> None:
    from dataclasses import fields

    from traderai.adapters.signal_store import SignalOutcome

    whole = store.created_between("2024-11-01T00:00:00Z", "2024-12-31T00:00:00Z")
    outcomes = store.outcomes_between("2024-11-01T00:00:00Z", "2024-12-31T00:00:00Z")
    names = [f.name for f in fields(SignalOutcome)]
    assert [SignalOutcome(**{n: getattr(s, n) for n in names}) for s in whole] == outcomes
    assert [o.signal_id for o in store.outcomes_between(None, "2024-12-31T00:00:00Z", limit=2)] == [
        s.signal_id for s in whole[:2]]
