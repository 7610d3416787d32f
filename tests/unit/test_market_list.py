"""The market list a tick reads (market.listing): both formats, and a clear error naming the bad line."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from traderai.market.listing import MAX_MARKETS, MarketListError, format_market_list, parse_market_list

SOURCE = "s3://bucket/config/markets.csv"


def test_text_and_csv_lists_are_read_as_canonical_symbols_in_order() -> None:
    text = b"\xef\xbb\xbfsymbol,note\n# majors\nBTC/USDT, the first\n\neth_usdt\n  SOL-USDT  \nBTC/USDT:USDT\n"
    assert parse_market_list(text, SOURCE) == ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BTC/USDT:USDT")


def test_json_lists_are_read_as_an_array_or_a_markets_object() -> None:
    assert parse_market_list(b'["BTC/USDT", "eth/usdt"]', SOURCE) == ("BTC/USDT", "ETH/USDT")
    assert parse_market_list(b' {"markets": ["SOL/USDT"]}', SOURCE) == ("SOL/USDT",)


@pytest.mark.parametrize(("data", "message"), [
    (b"symbol\nBTC/USDT\nBTCUSDT\n", f"{SOURCE} line 3: 'BTCUSDT' is not BASE/QUOTE (e.g. BTC/USDT)"),
    (b"BTC/USDT\nETH/USDT\n\nbtc_usdt\n", f"{SOURCE} line 4: BTC/USDT is listed twice (first on line 1)"),
    (b'["BTC/USDT", 7]', f"{SOURCE} item 2: 7 is not a symbol string (e.g. \"BTC/USDT\")"),
    (b'["BTC/USDT", "x"]', f"{SOURCE} item 2: 'x' is not BASE/QUOTE (e.g. BTC/USDT)"),
    (b'["BTC/USDT",\n "ETH/USDT",,]', f"{SOURCE} line 2: not valid JSON (Expecting value, column 13)"),
    (b'{"symbols": []}', f"{SOURCE}: a JSON object must be {{\"markets\": [...]}}, got keys ['symbols']"),
    (b'"BTC/USDT"', None),  # a JSON string is read as a one-line text list whose line is not a symbol
    (b"", f"{SOURCE}: no market listed (a tick over an empty list is refused)"),
    (b"symbol\n# nothing yet\n", f"{SOURCE}: no market listed (a tick over an empty list is refused)"),
    (b"[]", f"{SOURCE}: no market listed (a tick over an empty list is refused)"),
    (b"BTC/USDT\n\xff\n", f"{SOURCE}: not UTF-8 text (byte 9: invalid start byte)"),
])
def test_a_bad_list_is_refused_whole_naming_the_line(data: bytes, message: str | None) -> None:
    with pytest.raises(MarketListError) as refused:
        parse_market_list(data, SOURCE)
    if message is not None:
        assert str(refused.value) == message
    assert refused.value.reason == "market_list_invalid"


def test_a_list_over_the_limit_is_refused() -> None:
    data = json.dumps([f"M{i}/USDT" for i in range(MAX_MARKETS + 1)]).encode()
    with pytest.raises(MarketListError, match="more than 100,000 markets"):
        parse_market_list(data, SOURCE)


@given(st.lists(st.from_regex(r"[A-Z0-9]{2,6}/[A-Z0-9]{2,5}", fullmatch=True), min_size=1, max_size=50, unique=True))
def test_the_uploaded_form_reads_back_as_the_same_list(markets: list[str]) -> None:
    assert parse_market_list(format_market_list(markets), SOURCE) == tuple(markets)
