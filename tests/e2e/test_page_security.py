"""The page and its config.js never hand the API key to anyone but the APIs it was issued for, and no
other web site can reach the demo's moto from a browser.

A bare local gateway serves the real page (`traderai/web/`) and a `config.js` with a key; no stack runs.
Headless Chromium loads it; requests to other hosts are intercepted (nothing leaves the machine).
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from local_stack import free_port

from traderai.local.gateway import GatewayConfig, LocalGateway
from traderai.local.stack import LocalOptions, LocalStack

KEY = "tai_0123456789abcdef_" + "k" * 43
EVIL = "http://evil.test"


@pytest.fixture(scope="module")
def gateway() -> Iterator[LocalGateway]:
    gateway = LocalGateway(lambda *_: {"statusCode": 200}, [], frozenset(),
                           GatewayConfig(http_port=free_port(), ws_port=free_port()))
    gateway.page.page_config = lambda: {"apiUrl": gateway.http_url, "wsUrl": gateway.ws_url, "apiKey": KEY}
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def config_js(gateway: LocalGateway, headers: dict[str, str]) -> str:
    request = urllib.request.Request(f"{gateway.http_url}/config.js", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read().decode()


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "script"},  # <script src=http://127.0.0.1:3000/config.js>
    {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Dest": "script"},  # another local server, e.g. localhost:8080
    {"Host": "rebound.evil.test:3000", "Sec-Fetch-Site": "same-origin"},  # DNS rebinding to 127.0.0.1
])
def test_config_js_gives_no_key_to_another_site(gateway: LocalGateway, headers: dict[str, str]) -> None:
    assert KEY not in config_js(gateway, headers)


@pytest.mark.parametrize("headers", [{}, {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Dest": "script"}])
def test_config_js_gives_the_key_to_the_page_itself(gateway: LocalGateway, headers: dict[str, str]) -> None:
    assert KEY in config_js(gateway, headers)


def open_page(chromium: Any, url: str) -> tuple[Any, list[dict[str, Any]]]:
    """The page at `url`, every request to another host recorded and answered with an empty page."""
    page = chromium.new_page()
    elsewhere: list[dict[str, Any]] = []

    def record(route: Any) -> None:
        elsewhere.append({"url": route.request.url, "headers": route.request.headers})
        route.fulfill(status=200, content_type="application/json", headers={"Access-Control-Allow-Origin": "*",
                      "Access-Control-Allow-Headers": "authorization"}, body='{"items": []}')

    page.route(f"{EVIL}/**", record)
    page.on("websocket", lambda socket: socket.url.startswith("ws://evil.test/")
            and elsewhere.append({"url": socket.url, "headers": {}}))
    page.goto(url, wait_until="load")
    page.wait_for_timeout(500)
    return page, elsewhere


@pytest.mark.parametrize("query", [f"?api={EVIL}", "?ws=ws://evil.test/prod", f"?api={EVIL}&ws=ws://evil.test/prod"])
def test_endpoints_from_the_page_url_never_get_the_configured_key(gateway: LocalGateway, chromium: Any,
                                                                  query: str) -> None:
    # Given a link to the page that points its APIs elsewhere
    _, elsewhere = open_page(chromium, f"{gateway.http_url}/{query}")
    # Then the page may talk to them, but never with the key config.js gave it for its own APIs
    assert elsewhere, "the page did not use the endpoint from its URL"
    for request in elsewhere:
        assert KEY not in request["url"] and KEY not in str(request["headers"].get("authorization"))


def test_a_typed_key_is_sent_only_to_the_api_it_was_typed_for(gateway: LocalGateway, chromium: Any) -> None:
    # Given a key typed into the page for its own API (kept in the tab's sessionStorage)
    typed = "tai_fedcba9876543210_" + "t" * 43
    page, elsewhere = open_page(chromium, f"{gateway.http_url}/")
    page.evaluate("document.getElementById('keybox').hidden = false")
    page.fill("#keyinput", typed)
    page.click("#keysave")
    page.wait_for_timeout(300)
    # When the same tab then follows a link to the page with other endpoints in its URL
    page.goto(f"{gateway.http_url}/?api={EVIL}&ws=ws://evil.test/prod", wait_until="load")
    page.wait_for_timeout(500)
    # Then neither the typed key nor the configured one travels there
    assert elsewhere, "the page did not use the endpoint from its URL"
    for request in elsewhere:
        for key in (typed, KEY):
            assert key not in request["url"] and key not in str(request["headers"].get("authorization"))


@pytest.mark.parametrize("api", ["javascript:alert(document.domain)//", "data:text/html,<script>alert(1)</script>"])
def test_a_script_url_in_the_page_url_never_becomes_a_link(gateway: LocalGateway, chromium: Any, api: str) -> None:
    page, _ = open_page(chromium, f"{gateway.http_url}/?api={urllib.request.quote(api)}")
    hrefs = page.eval_on_selector_all("#endpoints a", "links => links.map(a => a.href)")
    assert hrefs and all(href.startswith(("http://", "https://")) for href in hrefs)


def test_moto_answers_no_browser_from_another_site(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the demo's moto server, which takes any credentials (e.g. a DynamoDB Scan of the ApiKeys table)
    monkeypatch.delenv("MOTO_DISABLE_GLOBAL_CORS", raising=False)
    stack = LocalStack(LocalOptions(aws_port=free_port()), console=lambda _: None)
    stack._start_moto()
    try:
        # When a page on another site asks, as a browser does before a cross-origin DynamoDB call
        preflight = urllib.request.Request(stack.aws_endpoint + "/", method="OPTIONS", headers={
            "Origin": "https://evil.test", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-amz-target"})
        with urllib.request.urlopen(preflight, timeout=5) as response:
            allowed = response.headers.get("Access-Control-Allow-Origin")
    finally:
        stack._moto.stop()
        stack._restore_env()
    # Then moto does not allow it: the browser never sends the call
    assert allowed is None


def test_a_server_that_drops_each_connection_at_once_is_not_hammered(gateway: LocalGateway, chromium: Any) -> None:
    # Given a WebSocket server that accepts every connection and closes it at once (overloaded, redeploying)
    import threading

    from websockets.sync.server import serve

    opened: list[float] = []

    def drop(connection: Any) -> None:
        opened.append(time.monotonic())
        connection.close()

    with serve(drop, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.socket.getsockname()[1]
        # When the page runs against it for 6 seconds
        page = chromium.new_page()
        signal_reads: list[str] = []
        page.on("request", lambda request: "/signals" in request.url and signal_reads.append(request.url))
        page.goto(f"{gateway.http_url}/?ws=ws://127.0.0.1:{port}/prod", wait_until="load")
        page.wait_for_timeout(6000)
        page.close()
        server.shutdown()
    # Then it backs off (0.5, 1, 2, 4 s ...) instead of reconnecting every half second
    assert 2 <= len(opened) <= 5, f"{len(opened)} connections in 6 s"
    assert len(signal_reads) <= 5
