"""What the local gateway serves besides the APIs: the page (`traderai/web/`), its `config.js`, and the
local-only endpoints under `/_local/` (status, decisions, retraining). None of it exists when deployed:
the page is hosted apart and configured with the stack's URLs."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png",
                ".svg": "image/svg+xml", ".ico": "image/x-icon", ".json": "application/json"}

LocalRoute = Callable[[Mapping[str, str]], Any]
RunBlocking = Callable[[Callable[[], Any]], Awaitable[Any]]
"""Runs a blocking call off the event loop (the gateway's thread pool) and awaits it."""


class Page:
    """The static page, `config.js` (the API key only for the page itself) and `/_local/{name}`."""

    def __init__(self, web_dir: Path, own_hosts: set[str], page_config: Callable[[], dict[str, Any]],
                 local_routes: Mapping[str, LocalRoute], run: RunBlocking) -> None:
        self.web_dir = web_dir
        self.own_hosts = own_hosts  # host:port forms this gateway's own page is served from
        self.page_config = page_config
        self.local_routes = dict(local_routes)
        self.run = run

    def static(self, path: str) -> web.StreamResponse | None:
        """The file of `traderai/web/` at this path (index.html for `/`), or None."""
        name = "index.html" if path in ("/", "") else path.lstrip("/")
        root = self.web_dir.resolve()
        candidate = (root / name).resolve()
        if not candidate.is_relative_to(root) or not candidate.is_file():
            return None
        content_type = STATIC_TYPES.get(candidate.suffix, "application/octet-stream")
        return web.Response(body=candidate.read_bytes(), content_type=content_type,
                            headers={"Cache-Control": "no-cache"})

    async def config_js(self, request: web.Request) -> web.Response:
        page_config = self.page_config()
        if not self.own_page(request):  # any site could <script src=> this file and read the key
            page_config = {name: value for name, value in page_config.items() if name != "apiKey"}
        config = json.dumps(page_config, indent=2)
        return web.Response(text=f"window.TRADERAI_CONFIG = {config};\n", content_type="text/javascript",
                            headers={"Cache-Control": "no-store"})

    def own_page(self, request: web.Request) -> bool:
        """A request from this gateway's own page: addressed to this host and port (not a DNS-rebound name),
        and not made by another site (`Sec-Fetch-Site`, which browsers send; curl sends none)."""
        site = request.headers.get("Sec-Fetch-Site")
        return request.host in self.own_hosts and site in (None, "same-origin", "none")

    async def local(self, request: web.Request) -> web.Response:
        handler = self.local_routes.get(request.match_info["name"])
        if handler is None:
            return web.json_response({"message": "Not Found"}, status=404)
        query = dict(request.query)
        try:
            body = await self.run(lambda: handler(query))
        except ValueError as exc:
            return web.json_response({"error": "bad_request", "message": str(exc)}, status=400)
        return web.json_response(body, headers={"Cache-Control": "no-store"})
