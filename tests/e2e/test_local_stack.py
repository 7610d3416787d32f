"""End to end over real sockets: the pipeline's signal pushed over the WebSocket, served over HTTP, shown
by the page in headless Chromium; and the stack stopping with nothing left behind."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from local_stack import Stack, assert_stopped_cleanly
from websockets.sync.client import connect

from traderai.contracts import Signal

pytestmark = pytest.mark.slow

# The tracker may move a signal on between the push and the GET; everything else must be identical.
LIFECYCLE_FIELDS = {"status", "tp1_hit_at", "tp2_hit_at", "tp3_hit_at", "closed_at", "exit_price",
                    "realised_net_pct", "time_in_trade_seconds", "updated_at"}


def http_get(stack: Stack, path: str, *, key: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(stack.http_url + path)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def receive(socket: Any, wanted: set[str], timeout: float) -> dict[str, Any]:
    """The next message of a wanted type within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = json.loads(socket.recv(timeout=max(0.01, deadline - time.monotonic())))
        if message.get("type") in wanted:
            return message
    raise TimeoutError(f"no {wanted} message within {timeout}s")


@pytest.fixture(scope="module")
def pushed_signal(stack: Stack) -> dict[str, Any]:
    """The first signal the pipeline produces after a real WebSocket client subscribes."""
    with connect(f"{stack.ws_url}?api_key={stack.dev_key}", open_timeout=5) as socket:
        socket.send(json.dumps({"action": "subscribe", "id": "e2e"}))
        assert receive(socket, {"subscribed"}, 5)["id"] == "e2e"
        return receive(socket, {"signal"}, 20)["data"]


def test_websocket_client_receives_a_signal_the_pipeline_produced(stack: Stack, pushed_signal: dict[str, Any]) -> None:
    assert set(pushed_signal) == set(Signal.field_names())
    assert pushed_signal["signal_id"].startswith("signal_")
    assert pushed_signal["side"] in ("LONG", "SHORT")
    assert pushed_signal["expected_net_profit_pct"] >= 2.0  # the seed's filter, unchanged


def test_get_signals_returns_the_same_signal_with_the_same_fields(stack: Stack, pushed_signal: dict[str, Any]) -> None:
    status, page = http_get(stack, "/signals?limit=200", key=stack.dev_key)
    assert status == 200
    listed = {item["signal_id"]: item for item in page["items"]}
    assert pushed_signal["signal_id"] in listed
    served = listed[pushed_signal["signal_id"]]
    assert set(served) == set(pushed_signal)
    assert {k: v for k, v in served.items() if k not in LIFECYCLE_FIELDS} == {
        k: v for k, v in pushed_signal.items() if k not in LIFECYCLE_FIELDS}
    status, one = http_get(stack, f"/signals/{pushed_signal['signal_id']}", key=stack.dev_key)
    assert status == 200 and one["signal_id"] == pushed_signal["signal_id"]


@pytest.mark.parametrize(("key", "expected"), [(None, 401), ("tai_0000000000000000_" + "x" * 43, 403)])
def test_the_gateway_calls_the_authorizer(stack: Stack, key: str | None, expected: int) -> None:
    assert http_get(stack, "/signals", key=key)[0] == expected
    assert http_get(stack, "/health")[0] == 200  # Auth: NONE in the template


def test_connections_api_delivers_to_an_open_socket_and_answers_410_for_a_gone_one(stack: Stack) -> None:
    management = f"http://127.0.0.1:{stack.ws_port}/prod/@connections/"
    with connect(f"{stack.ws_url}?api_key={stack.dev_key}", open_timeout=5) as socket:
        socket.send(json.dumps({"action": "ping", "id": 7}))
        pong = receive(socket, {"pong"}, 5)  # WebSocketFunction answered through POST @connections
        assert pong["id"] == 7
    request = urllib.request.Request(management + "no-such-connection", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as gone:
        urllib.request.urlopen(request, timeout=5)
    assert gone.value.code == 410
    assert gone.value.headers["x-amzn-ErrorType"] == "GoneException"


def test_the_page_shows_the_signal_and_live_updates_without_reload(stack: Stack, pushed_signal: dict[str, Any],
                                                                  chromium: Any) -> None:
    page = chromium.new_page(viewport={"width": 1400, "height": 900})
    with connect(f"{stack.ws_url}?api_key={stack.dev_key}", open_timeout=5) as observer:
        page.goto(stack.http_url + "/", wait_until="domcontentloaded")
        page.evaluate("window.__loadedOnce = true")
        row = page.locator(f'tr[data-signal-id="{pushed_signal["signal_id"]}"]')
        row.wait_for(timeout=15_000)
        assert row.locator('[data-field="symbol"]').inner_text() == pushed_signal["symbol"]
        assert row.locator('[data-field="side"]').inner_text() == pushed_signal["side"]
        page.locator('#conn[data-state="open"]').wait_for(timeout=15_000)
        # A push that happens after the page loaded shows up without a reload.
        message = receive(observer, {"signal", "signal_update"}, 60)["data"]
    later = page.locator(f'tr[data-signal-id="{message["signal_id"]}"][data-status="{message["status"]}"]')
    later.wait_for(timeout=15_000)
    assert page.evaluate("window.__loadedOnce") is True
    page.locator("#rejections li[data-reason]").first.wait_for(timeout=15_000)


def js_fixed(value: float, digits: int) -> str:
    """JavaScript's Number.toFixed: the exact binary value, a tie rounded away from zero."""
    text = str(Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))
    return "0" if text == "-0" else text


def js_signed_pct(value: float) -> str:
    """How the page writes a signed percentage (app.js signedPct): +0.41% / -0.62%."""
    return f"{'+' if value > 0 else ''}{js_fixed(value, 2)}%"


def test_the_page_shows_a_paper_signal_as_paper_led_by_its_expected_value(stack: Stack, chromium: Any) -> None:
    # Given a paper signal the pipeline stored (the shipped models prove no edge: their signals are paper)
    deadline = time.monotonic() + 30
    paper = None
    while paper is None and time.monotonic() < deadline:
        items = http_get(stack, "/signals?tradeable=false&limit=50", key=stack.dev_key)[1]["items"]
        paper = items[0] if items else None
        time.sleep(0.5)
    assert paper is not None, "no paper signal within 30 s"
    assert paper["tradeable"] is False and paper["paper_reasons"]
    # When the page shows it
    page = chromium.new_page(viewport={"width": 1500, "height": 900})
    page.goto(stack.http_url + "/", wait_until="domcontentloaded")
    row = page.locator(f'tr[data-signal-id="{paper["signal_id"]}"]')
    row.wait_for(timeout=15_000)
    # Then it is marked paper, with its reasons, and leads with its expected value and P(stop)
    assert row.get_attribute("data-tradeable") == "false" and "paper" in (row.get_attribute("class") or "")
    badge = row.locator('[data-field="kind"] .kind')
    assert badge.inner_text() == "PAPER" and badge.get_attribute("title").startswith("paper, not a trade: ")
    cells = row.locator("td").all_inner_texts()
    assert cells[:3] == [paper["symbol"], paper["side"], "PAPER"]
    ev = paper["expected_value_pct"]
    assert cells[3] == ("–" if ev is None else js_signed_pct(ev))
    stop = (paper["outcome_probabilities"] or {}).get("stop")
    assert cells[4] == ("–" if stop is None else f"{js_fixed(stop * 100, 0)}%")
    # and the seed's expected_net_profit_pct is labelled as the best case
    assert row.locator('[data-field="best_case"]').inner_text() == js_signed_pct(paper["expected_net_profit_pct"])
    assert page.locator("#best-case-header").inner_text() == "best case (all TPs)"
    assert "PAPER = passed the seed's rules but claims no edge" in page.locator(
        "section.panel", has=page.locator("#signals")).locator("h2").inner_text()


def test_stops_cleanly_on_ctrl_c_leaving_no_process_or_port(start_local: Callable[..., Stack]) -> None:
    running = start_local("--no-track")
    assert running.process.poll() is None
    assert_stopped_cleanly(running)
