"""CSV candle loader: gzip or plain, validated rows, bundled paths."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from traderai.market import BadCandlesError
from traderai.market.csv import bundled_candles_path, load_candles_csv

HEADER = "timestamp,open,high,low,close,volume\n"
ROWS = "1700000000000,10,11,9,10.5,100\n1700000900000,10.5,12,10,11,0\n1700003600000,11,11,11,11,0\n"


@pytest.mark.parametrize("compressed", [True, False])
def test_reads_gzip_or_plain_whatever_the_name(tmp_path: Path, compressed: bool) -> None:
    path = tmp_path / "candles.csv"
    data = (HEADER + ROWS).encode()
    path.write_bytes(gzip.compress(data) if compressed else data)
    candles = load_candles_csv(path, "btc_usdt")
    assert candles.symbol == "BTC/USDT" and candles.timeframe == "15m" and len(candles) == 3
    assert candles.open_time_ms.dtype == np.int64
    assert candles.open_time_ms[2] == 1700003600000  # a gap (halt) is allowed
    np.testing.assert_array_equal(candles.close, [10.5, 11, 11])


@pytest.mark.parametrize(("body", "message"), [
    ("time,o,h,l,c,v\n1,1,1,1,1,1\n", "header"),
    (HEADER + "1700000000000,10,11,9,abc,100\n", "unreadable"),
    (HEADER + "1700000000000,10,11,9,10,100\n1700000000000,10,11,9,10,100\n", "row 3"),
    (HEADER + "1700000000000,10,11,0,10,100\n", "non-positive"),
    (HEADER + "1700000000000,10,11,9,10,-1\n", "volume"),
])
def test_bad_files_raise_bad_candles_naming_the_problem(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(BadCandlesError, match=message):
        load_candles_csv(path, "BTC/USDT")


@pytest.mark.parametrize("symbol", ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT"])
def test_bundled_candles_are_180_days_of_sorted_15m_candles(symbol: str) -> None:
    candles = load_candles_csv(bundled_candles_path(symbol, "15m"), symbol)
    assert len(candles) == 180 * 96
    assert (np.diff(candles.open_time_ms) == 900_000).all()


def test_unknown_bundled_market_names_what_is_bundled() -> None:
    with pytest.raises(FileNotFoundError, match="BTC_USDT-15m"):
        bundled_candles_path("XRP/USDT", "15m")
