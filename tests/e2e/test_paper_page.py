"""The page in Chromium, served by the local gateway from the real ApiFunction over a moto Signals table:
a paper signal shows as PAPER led by its expected value and P(stop), a tradeable one as tradeable, the best
case is labelled, and a protection lock from the closed signals is listed under "Why no signals?".

No scheduler or replay runs: the table holds the sample stream images' signals (events/broadcast_insert*.json)
and four stopped SOL/USDT signals, so what the page must show is known exactly."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from local_stack import free_port

from traderai import wiring
from traderai.adapters.signal_store import SignalStore, signal_from_item
from traderai.apigw.routes import http_routes
from traderai.infra import load_template
from traderai.local.gateway import GatewayConfig, LocalGateway
from traderai.services import performance
from traderai.testing.handlers import FakeLambdaContext, load_event, load_handler
from traderai.testing.serving import serving_tables

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TRADEABLE = signal_from_item(load_event("broadcast_insert.json")["Records"][0]["dynamodb"]["NewImage"])
PAPER = signal_from_item(load_event("broadcast_insert_paper.json")["Records"][0]["dynamodb"]["NewImage"])


def stopped(n: int, hour: int) -> Any:
    """A SOL/USDT signal stopped at a loss at `hour`:00 on 2026-11-26 (the default guard: 4 stops in 24 h)."""
    return dataclasses.replace(
        TRADEABLE, signal_id=f"signal_SOL_USDT_stop{n}", symbol="SOL/USDT", status="STOPPED",
        created_at=f"2026-11-26T{hour - 1:02d}:00:05Z", expires_at=f"2026-11-27T{hour - 1:02d}:00:05Z",
        closed_at=f"2026-11-26T{hour:02d}:00:00Z", closed_reason="stop", realised_net_pct=-1.82)


@pytest.fixture(scope="module")
def gateway() -> Iterator[LocalGateway]:
    template = load_template()
    saved = dict(os.environ)
    with serving_tables(template) as tables:
        os.environ.update(tables.environment("ApiFunction") | {"TOKEN_SECRET": "s" * 40})
        wiring.clear()
        performance.CACHE.clear()
        wiring.use_clock(lambda: NOW)
        store = SignalStore(tables.signals_table)
        for signal in (TRADEABLE, PAPER, *(stopped(n, hour) for n, hour in enumerate((1, 4, 7, 10)))):
            assert store.put_new(signal)
        api = load_handler("api").handler

        def invoke(function: str, event: Any) -> Any:
            assert function == "ApiFunction", function  # the page reads the HTTP API only
            return api(event, FakeLambdaContext())

        routes = [route for route in http_routes(template) if route.function == "ApiFunction"]
        gateway = LocalGateway(invoke, routes, frozenset(), GatewayConfig(http_port=free_port(), ws_port=free_port()))
        gateway._page_config = lambda: {"apiUrl": gateway.http_url, "wsUrl": gateway.ws_url}
        gateway.start()
        try:
            yield gateway
        finally:
            gateway.stop()
            wiring.clear()
            performance.CACHE.clear()
            os.environ.clear()
            os.environ.update(saved)


def test_a_paper_signal_shows_as_paper_and_a_tradeable_one_as_tradeable(gateway: LocalGateway, chromium: Any) -> None:
    page = chromium.new_page(viewport={"width": 1500, "height": 900})
    page.goto(gateway.http_url + "/", wait_until="domcontentloaded")
    paper = page.locator(f'tr[data-signal-id="{PAPER.signal_id}"]')
    paper.wait_for(timeout=10000)
    assert paper.get_attribute("data-tradeable") == "false" and "paper" in paper.get_attribute("class").split()
    # symbol, side, then what the signal is: PAPER, its expected value and P(stop) lead the row
    assert paper.locator("td").all_inner_texts()[:5] == ["BTC/USDT", "LONG", "PAPER", "-0.62%", "61%"]
    title = paper.locator('[data-field="kind"] .kind').get_attribute("title")
    assert title == ("paper, not a trade: expected value below the minimum; "
                     "no proven edge (out-of-sample evidence missing or not above zero)")
    # the seed's expected_net_profit_pct is there, labelled as the best case
    assert paper.locator('[data-field="best_case"]').inner_text() == "+5.41%"
    assert "best case" in paper.locator('[data-field="best_case"]').get_attribute("title")
    assert page.locator("#best-case-header").inner_text() == "best case (all TPs)"

    tradeable = page.locator(f'tr[data-signal-id="{TRADEABLE.signal_id}"]')
    assert tradeable.get_attribute("data-tradeable") == "true"
    assert tradeable.locator("td").all_inner_texts()[:5] == ["BTC/USDT", "LONG", "tradeable", "+0.41%", "38%"]


def test_the_protection_lock_is_listed_with_its_numbers(gateway: LocalGateway, chromium: Any) -> None:
    page = chromium.new_page(viewport={"width": 1500, "height": 900})
    page.goto(gateway.http_url + "/", wait_until="domcontentloaded")
    lock = page.locator('#locks li[data-symbol="SOL/USDT"]')
    lock.wait_for(timeout=10000)
    assert lock.get_attribute("data-protection") == "protection_stoploss_guard"
    text = lock.inner_text()
    assert "SOL/USDT · until 2026-11-27 10:00 UTC" in text
    assert "stoploss_guard: 4 stops within 24 h (limit 4); locked 24 h until 2026-11-27T10:00:00Z" in text
    assert page.locator("#no-locks").is_hidden()
