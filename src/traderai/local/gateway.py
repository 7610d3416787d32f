"""The local API Gateway: the HTTP API and the WebSocket API on localhost, in front of the real handlers.

This module is the sockets (aiohttp) and their lifecycle; what API Gateway does between a socket and a
function is `traderai.apigw`, the same classes the fuzz tests drive in-process:

- HTTP API (default 127.0.0.1:3000): `apigw.http.HttpApi` routes each request on the template's
  routes, authorizes it, builds the payload 2.0 event and turns the reply into the response. A request
  no route takes may be a file of the page or `config.js` (`local.page`), else API Gateway's 404.
- WebSocket API (default 127.0.0.1:3001): `apigw.websocket.WebSocketApi` runs `$connect` (authorizer
  first), each text message on its `$request.body.action` route, and `$disconnect`. As deployed, a
  binary frame closes the connection with 1003 and a message over 128 KB with 1009.
- `@connections` on the WebSocket port (`WEBSOCKET_ENDPOINT`; a stage prefix `/prod/@connections/...` is
  accepted): `apigw.connections.ConnectionsServer`, each open socket attached to it, so a POST
  reaches that socket, GET describes it, DELETE closes it, and a closed one is 410 GoneException.

Authorization is a hook: `authorizer` is anything with `authorize_http(event)` and
`authorize_websocket(event)` (`traderai.services.auth.KeyAuthorizer` is exactly that). None lets every
request in.

Handlers are synchronous: they run in a thread pool, never on the event loop. One asyncio loop in one
thread serves both ports; `start()` returns when both listen and `stop()` closes every socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

from aiohttp import WSMsgType, web
from multidict import CIMultiDict

from traderai.apigw.connections import MAX_POST_BYTES, ConnectionsServer
from traderai.apigw.http import MAX_HTTP_BODY_BYTES, Authorizer, HttpApi, HttpReply, HttpRequest, Invoke, request_id
from traderai.apigw.routes import HttpRoute
from traderai.apigw.websocket import MAX_WS_MESSAGE_BYTES, Connection, Handshake, WebSocketApi
from traderai.local.page import WEB_DIR, LocalRoute, Page

T = TypeVar("T")
PEER_TIMEOUT = 10.0  # seconds a post or close may take on the loop before the socket counts as gone


@dataclass
class GatewayConfig:
    """Where the gateway listens and what it serves."""

    host: str = "127.0.0.1"
    http_port: int = 3000
    ws_port: int = 3001
    stage: str = "prod"
    web_dir: Path = WEB_DIR
    cors_origin: str = "*"
    handler_threads: int = 16


class _SocketPeer:
    """One open socket, as `@connections` reaches it from the server's threads."""

    def __init__(self, socket: web.WebSocketResponse, loop: asyncio.AbstractEventLoop) -> None:
        self.socket = socket
        self.loop = loop

    def send(self, body: bytes) -> bool:
        try:
            text = body.decode()
            if self.socket.closed:
                return False
            asyncio.run_coroutine_threadsafe(self.socket.send_str(text), self.loop).result(PEER_TIMEOUT)
        except (ConnectionResetError, RuntimeError, UnicodeDecodeError, TimeoutError, CancelledError):
            return False
        return True

    def close(self) -> None:
        with contextlib.suppress(ConnectionResetError, RuntimeError, TimeoutError, CancelledError):
            asyncio.run_coroutine_threadsafe(self.socket.close(code=1000, message=b"closed by the server"),
                                             self.loop).result(PEER_TIMEOUT)


class LocalGateway:
    """HTTP API + WebSocket API + `@connections` + the page, on one asyncio loop in its own thread."""

    def __init__(self, invoke: Invoke, routes: list[HttpRoute], ws_route_keys: frozenset[str],
                 config: GatewayConfig | None = None, *, ws_function: str = "WebSocketFunction",
                 authorizer: Authorizer | None = None, page_config: Callable[[], dict[str, Any]] | None = None,
                 local_routes: Mapping[str, LocalRoute] | None = None) -> None:
        self.config = config or GatewayConfig()
        self.http_api = HttpApi(routes, invoke, cors_origin=self.config.cors_origin)
        self.ws_api = WebSocketApi(invoke, ws_route_keys, function=ws_function, stage=self.config.stage)
        self.connections = ConnectionsServer(connected=(), record=False)
        self.authorizer = authorizer
        port = self.config.http_port
        own_hosts = {f"{name}:{port}" for name in (self.config.host, "127.0.0.1", "localhost", "[::1]")}
        self.page = Page(self.config.web_dir, own_hosts, page_config or (lambda: {}), local_routes or {}, self._run)
        self._sockets: dict[str, web.WebSocketResponse] = {}  # touched on the loop only
        self._pool = ThreadPoolExecutor(max_workers=self.config.handler_threads, thread_name_prefix="gateway")
        self._management_pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="connections")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    @property
    def authorizer(self) -> Authorizer | None:
        return self.http_api.authorizer

    @authorizer.setter
    def authorizer(self, authorizer: Authorizer | None) -> None:
        self.http_api.authorizer = self.ws_api.authorizer = authorizer

    # ------------------------------------------------------------------ lifecycle

    @property
    def http_url(self) -> str:
        return f"http://{self.config.host}:{self.config.http_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.config.host}:{self.config.ws_port}/{self.config.stage}"

    @property
    def management_endpoint(self) -> str:
        """`WEBSOCKET_ENDPOINT` for the functions: the `@connections` API of this stage."""
        return f"http://{self.config.host}:{self.config.ws_port}/{self.config.stage}"

    @property
    def connection_count(self) -> int:
        return self.connections.live_count

    def start(self, timeout: float = 10.0) -> None:
        """Listen on both ports (raises if either cannot be bound)."""
        self._thread = threading.Thread(target=self._serve, name="gateway-loop", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the local gateway did not start")
        if self._startup_error is not None:
            self._thread.join(timeout)
            raise self._startup_error

    def stop(self, timeout: float = 10.0) -> None:
        """Close every WebSocket (each gets its `$disconnect`), stop listening, join the thread and pool."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._management_pool.shutdown(wait=True, cancel_futures=True)

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:  # noqa: BLE001 - handed to start(), which raises it
            self._startup_error = exc
            loop.run_until_complete(self._close_runners())
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _listen(self) -> None:
        http_app = web.Application(client_max_size=MAX_HTTP_BODY_BYTES)
        http_app.router.add_get("/config.js", self.page.config_js)
        http_app.router.add_get("/_local/{name}", self.page.local)
        http_app.router.add_route("*", r"/{tail:[\s\S]*}", self._http)  # `.*` misses "%0A": aiohttp's text 404
        # a post a little over the limit reaches @connections, which answers API Gateway's 413
        ws_app = web.Application(client_max_size=2 * MAX_POST_BYTES)
        for prefix in ("", f"/{self.config.stage}"):
            ws_app.router.add_route("*", prefix + "/@connections/{connection_id}", self._management)
        ws_app.router.add_get("/", self._websocket)
        ws_app.router.add_get(f"/{self.config.stage}", self._websocket)
        for app, port in ((http_app, self.config.http_port), (ws_app, self.config.ws_port)):
            runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
            await runner.setup()
            self._runners.append(runner)
            await web.TCPSite(runner, self.config.host, port, reuse_address=True).start()

    async def _shutdown(self) -> None:
        for socket in list(self._sockets.values()):
            await socket.close(code=1001, message=b"server going away")
        await self._close_runners()

    async def _close_runners(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    async def _run(self, call: Callable[[], T]) -> T:
        """A blocking call (authorizer, function, `@connections`) in the pool, awaited on the loop."""
        assert self._loop is not None
        return await self._loop.run_in_executor(self._pool, call)

    @staticmethod
    def _response(reply: HttpReply) -> web.Response:
        return web.Response(status=reply.status, body=reply.body, headers=CIMultiDict(reply.headers))

    # ------------------------------------------------------------------ HTTP API

    async def _http(self, request: web.Request) -> web.StreamResponse:
        http_request = HttpRequest(
            request.method, request.path, request.rel_url.raw_query_string, tuple(request.headers.items()),
            await request.read(), request.remote or "127.0.0.1", request.host,
            f"HTTP/{request.version.major}.{request.version.minor}")
        reply = await self._run(partial(self.http_api.handle, http_request))
        if reply is None and request.method == "GET":
            static = self.page.static(request.path)
            if static is not None:
                return static
        return self._response(reply or self.http_api.not_found())

    # ------------------------------------------------------------------ WebSocket API

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        handshake = Handshake(request.host, request.remote or "127.0.0.1", tuple(request.headers.items()),
                              request.rel_url.raw_query_string)
        connection = Connection(request_id(), handshake, datetime.now(UTC))
        refusal = await self._run(partial(self.ws_api.connect, connection))
        if refusal is not None:
            return self._response(refusal)
        socket = web.WebSocketResponse(max_msg_size=MAX_WS_MESSAGE_BYTES, autoping=True)
        await socket.prepare(request)
        connection_id = connection.connection_id
        assert self._loop is not None
        self._sockets[connection_id] = socket
        self.connections.attach(connection_id, _SocketPeer(socket, self._loop), source_ip=handshake.source_ip,
                                user_agent=handshake.user_agent, connected_at=connection.connected_at)
        close_code, reason = 1000, "client closed"
        try:
            async for message in socket:
                self.connections.touch(connection_id)
                if message.type == WSMsgType.TEXT:
                    error_frame = await self._run(partial(self.ws_api.message, connection, message.data))
                    if error_frame is not None:
                        await socket.send_str(error_frame)
                elif message.type == WSMsgType.BINARY:  # API Gateway does not take binary frames: it closes
                    close_code, reason = 1003, "binary frames are not supported; send JSON text"
                    await socket.close(code=close_code, message=reason.encode())
                elif message.type == WSMsgType.ERROR:
                    close_code, reason = 1011, f"error: {socket.exception()}"
        finally:
            self._sockets.pop(connection_id, None)
            self.connections.disconnect(connection_id)
            close_code = socket.close_code or close_code
            with contextlib.suppress(Exception):  # $disconnect is best effort, as on API Gateway
                await asyncio.wait_for(self._run(partial(self.ws_api.disconnect, connection, close_code, reason)),
                                       timeout=5.0)
        return socket

    # ------------------------------------------------------------------ @connections management API

    async def _management(self, request: web.Request) -> web.StreamResponse:
        connection_id = unquote(request.match_info["connection_id"])
        body = await request.read()
        # Not in the handlers' pool: a function posts here while it holds one of its threads (WebSocketFunction's
        # replies, the broadcast's fan-out), so with every thread busy the posts would wait for themselves.
        assert self._loop is not None
        status, payload = await self._loop.run_in_executor(
            self._management_pool, partial(self.connections.answer, request.method, connection_id, body))
        error_type = payload.get("__type") if payload else None
        headers = {"x-amzn-ErrorType": error_type} if isinstance(error_type, str) else {}
        if payload is None:
            return web.Response(status=status, headers=headers)
        return web.json_response(payload, status=status, headers=headers)
