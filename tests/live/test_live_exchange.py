"""Opt-in: the real exchange through ccxt (`pytest -m live tests/live`, needs a network)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from traderai.market.exchange import CcxtSource
from traderai.settings import Settings

pytestmark = pytest.mark.live


def test_binance_serves_closed_validated_candles_and_market_facts() -> None:
    settings = Settings.from_env({"MARKETS": "BTC/USDT", "EXCHANGE_ID": "binance"})

    async def fetch() -> tuple:
        source = CcxtSource(settings)
        try:
            now = datetime.now(UTC)
            await source.check_settings()
            candles = await source.fetch_candles("BTC/USDT", "15m", 500, now)
            return candles, await source.market_info("BTC/USDT", now), now
        finally:
            await source.close()

    candles, info, now = asyncio.run(fetch())
    assert len(candles) == 500
    assert int(candles.open_time_ms[-1]) + 900_000 <= now.timestamp() * 1000  # the forming candle is dropped
    assert info.amount_step and info.price_step and (info.quote_volume_24h or 0) > 0


def test_binance_serves_a_batch_of_spot_tickers_in_one_request() -> None:
    symbols = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
    settings = Settings.from_env({"MARKETS": ",".join(symbols), "EXCHANGE_ID": "binance"})

    async def fetch() -> dict:
        source = CcxtSource(settings)
        try:
            await source.check_settings()
            return dict(await source.market_infos(symbols, datetime.now(UTC)))
        finally:
            await source.close()

    infos = asyncio.run(fetch())
    assert set(infos) == set(symbols)
    assert all(not isinstance(info, Exception) and (info.quote_volume_24h or 0) > 0 for info in infos.values())
