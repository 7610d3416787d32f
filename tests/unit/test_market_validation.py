"""Closed-only filtering and candle validation: broken candles refused, stale feeds named, gaps counted."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traderai.contracts import Candles
from traderai.market import BadCandlesError, StaleFeedError
from traderai.market.validation import candles_from_klines, candles_from_rows, closed_only, validate_candles
from traderai.testing.fake_exchange import synthetic_candles

TF = 900
START = datetime(2025, 1, 1, tzinfo=UTC)
CANDLES = synthetic_candles("BTC/USDT", start=START, count=50)
AFTER_LAST_CLOSE = START + timedelta(seconds=TF * 50)  # the moment the 50th candle closes


def rows_of(candles: Candles) -> list[list[float]]:
    return [
        [int(t), o, h, lo, c, v]
        for t, o, h, lo, c, v in zip(
            candles.open_time_ms,
            candles.open,
            candles.high,
            candles.low,
            candles.close,
            candles.volume,
            strict=True,
        )
    ]


def changed(candles: Candles, index: int, **values: float) -> Candles:
    arrays = {
        name: getattr(candles, name).copy()
        for name in ("open_time_ms", "open", "high", "low", "close", "volume")
    }
    for name, value in values.items():
        arrays[name][index] = value
    return Candles(candles.symbol, candles.timeframe, **arrays)


def test_closed_only_drops_the_forming_candle_from_ccxt_rows() -> None:
    # Given the exchange's rows at 1 ms before the last candle closes
    rows = rows_of(CANDLES)
    # When filtered
    kept = closed_only(rows, TF, AFTER_LAST_CLOSE - timedelta(milliseconds=1))
    # Then the forming one is gone and nothing else
    assert kept == rows[:-1]


def test_closed_only_keeps_a_candle_closing_exactly_now() -> None:
    assert closed_only(rows_of(CANDLES), TF, AFTER_LAST_CLOSE) == rows_of(CANDLES)


def test_closed_only_works_on_candles_too() -> None:
    kept = closed_only(CANDLES, TF, AFTER_LAST_CLOSE - timedelta(minutes=20))
    assert len(kept) == 48
    assert kept.open_time_ms[-1] == CANDLES.open_time_ms[47]


def test_closed_only_leaves_a_malformed_row_for_validation_to_name() -> None:
    rows = [[None, 1, 1, 1, 1, 1], *rows_of(CANDLES)]
    assert closed_only(rows, TF, AFTER_LAST_CLOSE)[0] == [None, 1, 1, 1, 1, 1]


def test_closed_only_refuses_a_naive_now() -> None:
    with pytest.raises(ValueError, match="naive"):
        closed_only(rows_of(CANDLES), TF, datetime(2025, 1, 1))


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=-TF * 1000 * 3, max_value=TF * 1000 * 3))
def test_closed_only_keeps_exactly_the_candles_closed_by_now(offset_ms: int) -> None:
    now = AFTER_LAST_CLOSE + timedelta(milliseconds=offset_ms)
    kept = closed_only(CANDLES, TF, now)
    now_ms = int(now.timestamp() * 1000)
    assert (kept.open_time_ms + TF * 1000 <= now_ms).all()
    dropped = CANDLES.open_time_ms[len(kept) :]
    assert (dropped + TF * 1000 > now_ms).all()


def test_valid_candles_pass_with_a_clean_report() -> None:
    report = validate_candles(CANDLES, AFTER_LAST_CLOSE, TF)
    assert (report.count, report.gaps, report.missing_candles) == (50, 0, 0)


@pytest.mark.parametrize(
    ("index", "values", "message"),
    [
        (10, {"open_time_ms": int(CANDLES.open_time_ms[9])}, "duplicate or out of order"),
        (10, {"open_time_ms": int(CANDLES.open_time_ms[8])}, "duplicate or out of order"),
        (10, {"open_time_ms": int(CANDLES.open_time_ms[10]) + 60_000}, "off the 900s grid"),
        (10, {"close": math.nan}, "NaN"),
        (10, {"high": math.inf}, "NaN or infinite"),
        (10, {"low": 0.0}, "not positive"),
        (10, {"open": -1.0}, "not positive"),
        (10, {"high": 1.0, "low": 2.0}, "high below low"),
        (10, {"close": 1e9}, "open/close outside"),
        (10, {"open": 1.0}, "open/close outside"),
        (10, {"volume": -0.5}, "volume is negative"),
        (10, {"volume": math.nan}, "volume is NaN"),
    ],
    ids=[
        "duplicate",
        "out-of-order",
        "off-grid",
        "nan-close",
        "inf-high",
        "zero-low",
        "negative-open",
        "high-below-low",
        "close-above-high",
        "open-below-low",
        "negative-volume",
        "nan-volume",
    ],
)
def test_broken_candles_are_refused_naming_the_problem(
    index: int, values: dict[str, float], message: str
) -> None:
    broken = changed(CANDLES, index, **values)
    with pytest.raises(BadCandlesError, match=message) as error:
        validate_candles(broken, AFTER_LAST_CLOSE, TF)
    assert "BTC/USDT" in str(error.value)
    assert error.value.reason == "bad_candles"


def test_no_candles_at_all_is_refused() -> None:
    with pytest.raises(BadCandlesError, match="no closed candles"):
        validate_candles(CANDLES.slice(0, 0), AFTER_LAST_CLOSE, TF)


def test_a_still_forming_candle_is_refused() -> None:
    with pytest.raises(BadCandlesError, match="still forming"):
        validate_candles(CANDLES, AFTER_LAST_CLOSE - timedelta(seconds=1), TF)


def test_a_feed_is_fresh_up_to_two_intervals_after_the_last_close() -> None:
    validate_candles(CANDLES, AFTER_LAST_CLOSE + timedelta(seconds=2 * TF), TF)


def test_a_feed_older_than_two_intervals_is_stale() -> None:
    with pytest.raises(StaleFeedError, match="newest closed candle") as error:
        validate_candles(CANDLES, AFTER_LAST_CLOSE + timedelta(seconds=2 * TF + 1), TF)
    assert error.value.reason == "stale_feed"


def test_gaps_are_counted_not_refused() -> None:
    # Given a 6-candle exchange halt (as on 2023-03-24) and a flat zero-volume candle before it
    keep = np.r_[0:20, 26:50]
    halted = Candles(
        "BTC/USDT",
        "15m",
        *(getattr(CANDLES, n)[keep] for n in ("open_time_ms", "open", "high", "low", "close", "volume")),
    )
    halted = changed(halted, 19, volume=0.0)
    # When validated
    report = validate_candles(halted, AFTER_LAST_CLOSE, TF)
    # Then it passes and says what is missing
    assert (report.gaps, report.missing_candles, report.largest_gap_candles) == (1, 6, 6)
    assert report.zero_volume_candles == 1
    assert report.has_gaps


@settings(max_examples=60, deadline=None)
@given(st.sets(st.integers(min_value=1, max_value=48), max_size=30))
def test_missing_candles_equal_the_removed_interior_candles(removed: set[int]) -> None:
    keep = np.array([i for i in range(50) if i not in removed])
    holey = Candles(
        "BTC/USDT",
        "15m",
        *(getattr(CANDLES, n)[keep] for n in ("open_time_ms", "open", "high", "low", "close", "volume")),
    )
    report = validate_candles(holey, AFTER_LAST_CLOSE, TF)
    assert report.missing_candles == len(removed)
    assert report.count == 50 - len(removed)


def test_rows_become_candles() -> None:
    candles = candles_from_rows("BTC/USDT", "15m", rows_of(CANDLES))
    assert np.array_equal(candles.open_time_ms, CANDLES.open_time_ms)
    assert np.allclose(candles.volume, CANDLES.volume)
    assert candles.open_time_ms.dtype == np.int64


@pytest.mark.parametrize(
    "row",
    [
        [1735689600000, 1.0, 2.0, 0.5, None, 3.0],
        [1735689600000, 1.0, 2.0, 0.5, 1.5],
        [1735689600000, "1.0", 2.0, 0.5, 1.5, 3.0],
        [1735689600000.5, 1.0, 2.0, 0.5, 1.5, 3.0],
        "1735689600000,1,2,0.5,1.5,3",
        None,
    ],
    ids=["none-close", "short-row", "string-price", "fractional-time", "string-row", "none-row"],
)
def test_malformed_rows_are_bad_candles(row: object) -> None:
    with pytest.raises(BadCandlesError, match="candle #1"):
        candles_from_rows("BTC/USDT", "15m", [rows_of(CANDLES)[0], row])  # type: ignore[list-item]


@given(st.lists(st.tuples(st.integers(0, 2**45), *[st.floats(-1e12, 1e12) | st.just(float("nan"))] * 5), min_size=1,
                max_size=50))
def test_the_numpy_fast_path_gives_what_the_row_by_row_path_gives(rows: list[tuple]) -> None:
    from traderai.market import validation

    as_lists = [list(row) for row in rows]
    fast = validation._fast_candles("BTC/USDT", "15m", as_lists)
    assert fast is not None
    slow_rows = [tuple(row) for row in as_lists]  # not lists of lists: the row-by-row path
    assert validation._fast_candles("BTC/USDT", "15m", slow_rows) is None
    slow = validation.candles_from_rows("BTC/USDT", "15m", slow_rows)
    for name in ("open_time_ms", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name))
    assert validation._fast_candles("BTC/USDT", "15m", [[*as_lists[0][:5], True]]) is None  # a bool: slow path


# -- Binance's klines reply as JSON decodes it (decimal strings): candles_from_klines ------------------------------

DECIMAL = st.decimals(min_value=0, max_value=10**9, places=8, allow_nan=False, allow_infinity=False)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**45), DECIMAL, DECIMAL, DECIMAL, DECIMAL, DECIMAL), min_size=1,
                max_size=40))
def test_klines_give_what_ccxts_binance_decoding_gives(rows: list[tuple]) -> None:
    # Given a klines reply as Binance sends it: times as integers, prices and volume as 8-decimal strings, and the
    # six fields after them
    import ccxt

    reply = [[t, *(f"{value:.8f}" for value in values), t + 899_999, "1.5", 7, "0.5", "0.75", "0"]
             for t, *values in rows]
    # When it becomes candles in one numpy conversion, and through ccxt's binance.parse_ohlcvs then our rows path
    fast = candles_from_klines("BTC/USDT", "15m", reply)
    exchange = ccxt.binance()
    market = {"id": "BTCUSDT", "symbol": "BTC/USDT", "spot": True, "inverse": False}
    parsed = exchange.parse_ohlcvs([list(row) for row in reply], market, "15m", None, len(reply))
    # ccxt sorts by time; Binance sends them sorted, as the validation that follows requires
    by_time = sorted(range(len(reply)), key=lambda i: reply[i][0])
    ccxt_way = candles_from_rows("BTC/USDT", "15m", parsed)
    # Then both give the same numbers, bit for bit
    for name in ("open_time_ms", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(fast, name)[by_time], getattr(ccxt_way, name))
    assert fast.open_time_ms.dtype == np.int64


@pytest.mark.parametrize(
    ("row", "named"),
    [
        ([1735689600000, "1.0", "2.0", "0.5", None, "3.0"], "field close is not a number: None"),
        ([1735689600000, "1.0", "2.0", "0.5", "abc", "3.0"], "field close is not a number: 'abc'"),
        ([1735689600000, "1.0", True, "0.5", "1.5", "3.0"], "field high is not a number: True"),
        ([1735689600000, "1.0", "2.0", "0.5", "1.5"], "is not \\[time, open, high, low, close, volume\\]"),
        (["1735689600000", "1.0", "2.0", "0.5", "1.5", "3.0"], "field open_time is not a number"),
        ([1735689600000.5, "1.0", "2.0", "0.5", "1.5", "3.0"], "open time 1735689600000.5 is not whole"),
        ({"openTime": 1735689600000}, "is not \\[time"),
    ],
    ids=["none-close", "word-close", "bool-high", "short-row", "string-time", "fractional-time", "object-row"],
)
def test_a_malformed_kline_is_bad_candles_naming_it(row: object, named: str) -> None:
    good = [1735688700000, "1.0", "2.0", "0.5", "1.5", "3.0", 1735689599999, "4.5", 3, "1.0", "1.5", "0"]
    with pytest.raises(BadCandlesError, match=f"candle #1.*{named}"):
        candles_from_klines("BTC/USDT", "15m", [good, row])


def test_a_klines_reply_that_is_not_a_list_is_bad_candles() -> None:
    with pytest.raises(BadCandlesError, match="the klines reply is dict, not a list of candles"):
        candles_from_klines("BTC/USDT", "15m", {"code": -1121, "msg": "Invalid symbol."})
    assert len(candles_from_klines("BTC/USDT", "15m", [])) == 0  # no candles: validation refuses them by name
