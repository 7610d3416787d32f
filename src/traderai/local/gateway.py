"""The local API Gateway: the HTTP API and the WebSocket API on localhost, in front of the real handlers.

- HTTP API (default 127.0.0.1:3000): each request matching a route the template gives ApiFunction becomes
  an API Gateway v2 HTTP event (payload format 2.0) for that handler, and its reply becomes the response.
  Routes marked `Auth: {Authorizer: NONE}` skip the authorizer. The same port serves the static page
  (`traderai/web/`), its `config.js`, and local-only endpoints under `/_local/`.
- WebSocket API (default 127.0.0.1:3001): the handshake is `$connect`, each text message is routed on
  `$request.body.action` (unknown or missing: `$default`), a close is `$disconnect`. As deployed, a
  binary frame closes the connection with 1003 and a message over 128 KB with 1009. The same port
  implements the management API the functions post through (`WEBSOCKET_ENDPOINT`):
  `POST /@connections/{id}` delivers to that socket (410 GoneException for an unknown or closed id),
  `GET` describes it, `DELETE` closes it. A stage prefix (`/prod/@connections/...`) is accepted.

Authorization is a hook: `authorizer` is anything with `authorize_http(event)` and
`authorize_websocket(event)` returning a result with `allowed`, `status`, `context()` and `error_body()`
(`traderai.services.auth.KeyAuthorizer` is exactly that), called before the HTTP route's integration and before
`$connect`, as API Gateway calls a Lambda authorizer. None lets every request in.

Handlers are synchronous: they run in a thread pool, never on the event loop. One asyncio loop in one
thread serves both ports; `start()` returns when both listen and `stop()` closes every socket.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

from aiohttp import WSMsgType, web

from traderai.local.functions import ACCOUNT_ID

MAX_WS_MESSAGE_BYTES = 128 * 1024  # API Gateway's WebSocket frame limit
MAX_HTTP_BODY_BYTES = 10 * 1024 * 1024  # HTTP API payload limit
API_ID = "local"
WEB_DIR = Path(__file__).resolve().parents[1] / "web"
STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png",
                ".svg": "image/svg+xml", ".ico": "image/x-icon", ".json": "application/json"}
_GONE = {"message": None, "__type": "GoneException"}


class AuthResult(Protocol):
    """What an authorizer answers (see `traderai.services.auth.AuthResult`)."""

    @property
    def allowed(self) -> bool: ...

    @property
    def status(self) -> int: ...

    def context(self) -> dict[str, str]: ...

    def error_body(self) -> dict[str, str]: ...


class Authorizer(Protocol):
    """The authorizer hook: `traderai.services.auth.KeyAuthorizer` over the ApiKeys table."""

    def authorize_http(self, event: Mapping[str, Any]) -> AuthResult: ...

    def authorize_websocket(self, event: Mapping[str, Any]) -> AuthResult: ...


Invoke = Callable[[str, Any], Any]
"""(logical_id, event) -> the function's reply; raises when the function fails."""


@dataclass(frozen=True, slots=True)
class HttpRoute:
    """One HTTP API route of the template: method, path template, and whether it skips the authorizer."""

    method: str
    path: str  # /signals/{signal_id}
    function: str
    public: bool = False

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters if this route takes the request, else None."""
        if method != self.method and self.method != "ANY":
            return None
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        found = re.fullmatch(pattern, path)
        return {k: unquote(v) for k, v in found.groupdict().items()} if found else None


def http_routes(template: Mapping[str, Any]) -> list[HttpRoute]:
    """Every `HttpApi` event of every function in the template, as routes (the deployed route table)."""
    routes = []
    for logical_id, spec in template.get("Resources", {}).items():
        if spec.get("Type") != "AWS::Serverless::Function":
            continue
        for event in (spec.get("Properties", {}).get("Events") or {}).values():
            if event.get("Type") != "HttpApi":
                continue
            props = event.get("Properties", {})
            public = (props.get("Auth") or {}).get("Authorizer") == "NONE"
            routes.append(HttpRoute(str(props["Method"]).upper(), str(props["Path"]), logical_id, public))
    return routes


def websocket_route_keys(template: Mapping[str, Any]) -> frozenset[str]:
    """The WebSocket API's route keys (`$connect`, `subscribe`, ...), as the template declares them."""
    return frozenset(spec["Properties"]["RouteKey"] for spec in template.get("Resources", {}).values()
                     if spec.get("Type") == "AWS::ApiGatewayV2::Route")


def select_route(body: str, route_keys: frozenset[str]) -> str:
    """`$request.body.action`: the message's `action` if it names a route, else `$default`."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes ("[" * 8000)
        return "$default"
    action = message.get("action") if isinstance(message, dict) else None
    return action if isinstance(action, str) and action in route_keys and not action.startswith("$") else "$default"


def _request_time(moment: datetime) -> str:
    return moment.strftime("%d/%b/%Y:%H:%M:%S +0000")


def _request_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes[:12]).decode()


def _single_values(multi: Mapping[str, list[str]]) -> dict[str, str]:
    return {key: ",".join(values) for key, values in multi.items()}


def _multi(pairs: Any) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    return grouped


@dataclass
class _Socket:
    """One open WebSocket connection, as the management API sees it."""

    connection_id: str
    socket: web.WebSocketResponse
    source_ip: str
    user_agent: str
    connected_at: datetime
    last_active_at: datetime = field(default_factory=lambda: datetime.now(UTC))


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


class LocalGateway:
    """HTTP API + WebSocket API + `@connections`, on one asyncio loop in its own thread."""

    def __init__(self, invoke: Invoke, routes: list[HttpRoute], ws_route_keys: frozenset[str],
                 config: GatewayConfig | None = None, *, ws_function: str = "WebSocketFunction",
                 authorizer: Authorizer | None = None, page_config: Callable[[], dict[str, Any]] | None = None,
                 local_routes: Mapping[str, Callable[[Mapping[str, str]], Any]] | None = None) -> None:
        self.config = config or GatewayConfig()
        self._invoke = invoke
        self._routes = routes
        self._ws_route_keys = ws_route_keys
        self._ws_function = ws_function
        self.authorizer = authorizer
        self._page_config = page_config or (lambda: {})
        self._local_routes = dict(local_routes or {})
        self._sockets: dict[str, _Socket] = {}
        self._pool = ThreadPoolExecutor(max_workers=self.config.handler_threads, thread_name_prefix="gateway")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

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
        return len(self._sockets)

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
        http_app.router.add_get("/config.js", self._config_js)
        http_app.router.add_get("/_local/{name}", self._local)
        http_app.router.add_route("*", r"/{tail:[\s\S]*}", self._http)  # `.*` misses "%0A": aiohttp's text 404
        ws_app = web.Application(client_max_size=MAX_WS_MESSAGE_BYTES)
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
        for entry in list(self._sockets.values()):
            await entry.socket.close(code=1001, message=b"server going away")
        await self._close_runners()

    async def _close_runners(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    async def _call(self, logical_id: str, event: Any) -> Any:
        assert self._loop is not None
        return await self._loop.run_in_executor(self._pool, self._invoke, logical_id, event)

    async def _authorize(self, kind: str, event: Mapping[str, Any]) -> AuthResult | None:
        if self.authorizer is None:
            return None
        check = self.authorizer.authorize_http if kind == "http" else self.authorizer.authorize_websocket
        assert self._loop is not None
        return await self._loop.run_in_executor(self._pool, check, event)

    # ------------------------------------------------------------------ HTTP API

    def _cors(self) -> dict[str, str]:
        return {"Access-Control-Allow-Origin": self.config.cors_origin}

    async def _http(self, request: web.Request) -> web.StreamResponse:
        path, method = request.path, request.method
        if method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return web.Response(status=204, headers=self._cors() | {
                "Access-Control-Allow-Methods": "GET, OPTIONS", "Access-Control-Max-Age": "600",
                "Access-Control-Allow-Headers": "content-type, authorization"})
        for route in self._routes:
            parameters = route.match(method, path)
            if parameters is not None:
                return await self._integrate(request, route, parameters)
        if method == "GET":
            static = self._static(path)
            if static is not None:
                return static
        return web.json_response({"message": "Not Found"}, status=404, headers=self._cors())

    def _static(self, path: str) -> web.StreamResponse | None:
        name = "index.html" if path in ("/", "") else path.lstrip("/")
        root = self.config.web_dir.resolve()
        candidate = (root / name).resolve()
        if not candidate.is_relative_to(root) or not candidate.is_file():
            return None
        content_type = STATIC_TYPES.get(candidate.suffix, "application/octet-stream")
        return web.Response(body=candidate.read_bytes(), content_type=content_type,
                            headers={"Cache-Control": "no-cache"})

    async def http_event(self, request: web.Request, route: HttpRoute, parameters: dict[str, str]
                         ) -> dict[str, Any]:
        """The API Gateway v2 HTTP event (payload 2.0) for this request."""
        now = datetime.now(UTC)
        body = await request.read()
        headers = {key.lower(): value for key, value in _single_values(_multi(request.headers.items())).items()}
        cookies = [c.strip() for c in headers.pop("cookie", "").split(";") if c.strip()]
        text_body: str | None = None
        encoded = False
        if body:
            try:
                text_body = body.decode()
            except UnicodeDecodeError:
                text_body, encoded = base64.b64encode(body).decode(), True
        source_ip = request.remote or "127.0.0.1"
        event: dict[str, Any] = {
            "version": "2.0", "routeKey": route.route_key, "rawPath": request.path,
            "rawQueryString": request.query_string, "headers": headers | {"x-forwarded-for": source_ip},
            "requestContext": {
                "accountId": ACCOUNT_ID, "apiId": API_ID, "domainName": request.host,
                "domainPrefix": request.host.split(".")[0], "requestId": _request_id(),
                "routeKey": route.route_key, "stage": "$default", "time": _request_time(now),
                "timeEpoch": int(now.timestamp() * 1000),
                "http": {"method": request.method, "path": request.path,
                         "protocol": f"HTTP/{request.version.major}.{request.version.minor}",
                         "sourceIp": source_ip, "userAgent": request.headers.get("User-Agent", "")}},
            "isBase64Encoded": encoded,
        }
        if cookies:
            event["cookies"] = cookies
        if request.query:
            event["queryStringParameters"] = _single_values(_multi(request.query.items()))
        if parameters:
            event["pathParameters"] = parameters
        if text_body is not None:
            event["body"] = text_body
        return event

    async def _integrate(self, request: web.Request, route: HttpRoute, parameters: dict[str, str]
                         ) -> web.StreamResponse:
        event = await self.http_event(request, route, parameters)
        if not route.public:
            result = await self._authorize("http", event)
            if result is not None and not result.allowed:
                return web.json_response(result.error_body(), status=result.status, headers=self._cors())
            if result is not None:
                event["requestContext"]["authorizer"] = {"lambda": result.context()}
        try:
            reply = await self._call(route.function, event)
        except Exception:  # noqa: BLE001 - a failed integration is API Gateway's 500, as deployed
            return web.json_response({"message": "Internal Server Error"}, status=500, headers=self._cors())
        return self._http_response(reply)

    def _http_response(self, reply: Any) -> web.Response:
        """Payload 2.0 response rules: a dict with `statusCode` is the response; anything else is JSON 200."""
        if not (isinstance(reply, dict) and "statusCode" in reply):
            return web.json_response(reply, headers=self._cors())
        headers = self._cors() | {k: str(v) for k, v in (reply.get("headers") or {}).items()}
        for key, values in (reply.get("multiValueHeaders") or {}).items():
            headers[key] = ",".join(str(v) for v in values)
        body = reply.get("body") or ""
        raw = base64.b64decode(body) if reply.get("isBase64Encoded") else str(body).encode()
        response = web.Response(status=int(reply["statusCode"]), body=raw, headers=headers)
        for cookie in reply.get("cookies") or []:
            response.headers.add("Set-Cookie", cookie)
        return response

    # ------------------------------------------------------------------ page support (local only)

    async def _config_js(self, request: web.Request) -> web.Response:
        page_config = self._page_config()
        if not self._own_page(request):  # any site could <script src=> this file and read the key
            page_config = {name: value for name, value in page_config.items() if name != "apiKey"}
        config = json.dumps(page_config, indent=2)
        return web.Response(text=f"window.TRADERAI_CONFIG = {config};\n", content_type="text/javascript",
                            headers={"Cache-Control": "no-store"})

    def _own_page(self, request: web.Request) -> bool:
        """A request from this gateway's own page: addressed to this host and port (not a DNS-rebound name),
        and not made by another site (`Sec-Fetch-Site`, which browsers send; curl sends none)."""
        port = self.config.http_port
        own_hosts = {f"{name}:{port}" for name in (self.config.host, "127.0.0.1", "localhost", "[::1]")}
        site = request.headers.get("Sec-Fetch-Site")
        return request.host in own_hosts and site in (None, "same-origin", "none")

    async def _local(self, request: web.Request) -> web.Response:
        handler = self._local_routes.get(request.match_info["name"])
        if handler is None:
            return web.json_response({"message": "Not Found"}, status=404)
        try:
            assert self._loop is not None
            body = await self._loop.run_in_executor(self._pool, handler, dict(request.query))
        except ValueError as exc:
            return web.json_response({"error": "bad_request", "message": str(exc)}, status=400)
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------------ WebSocket API

    def _ws_context(self, route_key: str, event_type: str, connection_id: str, request: web.Request,
                    connected_at: datetime) -> dict[str, Any]:
        now = datetime.now(UTC)
        request_id = _request_id()
        return {"routeKey": route_key, "eventType": event_type, "extendedRequestId": request_id,
                "requestTime": _request_time(now), "messageDirection": "IN", "stage": self.config.stage,
                "connectedAt": int(connected_at.timestamp() * 1000), "requestTimeEpoch": int(now.timestamp() * 1000),
                "requestId": request_id, "domainName": request.host, "connectionId": connection_id,
                "apiId": API_ID, "identity": {"sourceIp": request.remote or "127.0.0.1",
                                              "userAgent": request.headers.get("User-Agent", "")}}

    def connect_event(self, request: web.Request, connection_id: str, connected_at: datetime) -> dict[str, Any]:
        """The `$connect` event: handshake headers and query string, no body."""
        headers = _multi(request.headers.items())
        query = _multi(request.query.items())
        event: dict[str, Any] = {
            "requestContext": self._ws_context("$connect", "CONNECT", connection_id, request, connected_at),
            "isBase64Encoded": False, "headers": _single_values(headers), "multiValueHeaders": headers}
        if query:
            event["queryStringParameters"] = _single_values(query)
            event["multiValueQueryStringParameters"] = query
        return event

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        connection_id = _request_id()
        connected_at = datetime.now(UTC)
        event = self.connect_event(request, connection_id, connected_at)
        result = await self._authorize("websocket", event)
        if result is not None and not result.allowed:
            return web.json_response(result.error_body(), status=result.status)
        if result is not None:
            event["requestContext"]["authorizer"] = result.context()
        try:
            reply = await self._call(self._ws_function, event)
        except Exception:  # noqa: BLE001 - API Gateway refuses the handshake when $connect fails
            return web.json_response({"message": "Internal server error"}, status=500)
        status = int(reply.get("statusCode", 200)) if isinstance(reply, dict) else 200
        if not 200 <= status < 300:
            return web.Response(status=status, text=str(reply.get("body") or ""))
        socket = web.WebSocketResponse(max_msg_size=MAX_WS_MESSAGE_BYTES, autoping=True)
        await socket.prepare(request)
        entry = _Socket(connection_id, socket, request.remote or "127.0.0.1",
                        request.headers.get("User-Agent", ""), connected_at)
        self._sockets[connection_id] = entry
        close_code, reason = 1000, "client closed"
        try:
            async for message in socket:
                entry.last_active_at = datetime.now(UTC)
                if message.type == WSMsgType.TEXT:
                    await self._message(request, entry, message.data)
                elif message.type == WSMsgType.BINARY:  # API Gateway does not take binary frames: it closes
                    close_code, reason = 1003, "binary frames are not supported; send JSON text"
                    await socket.close(code=close_code, message=reason.encode())
                elif message.type == WSMsgType.ERROR:
                    close_code, reason = 1011, f"error: {socket.exception()}"
        finally:
            self._sockets.pop(connection_id, None)
            close_code = socket.close_code or close_code
            await self._disconnect(request, entry, close_code, reason)
        return socket

    async def _message(self, request: web.Request, entry: _Socket, body: str) -> None:
        route_key = select_route(body, self._ws_route_keys)
        context = self._ws_context(route_key, "MESSAGE", entry.connection_id, request, entry.connected_at)
        context["messageId"] = _request_id()
        event = {"requestContext": context, "body": body, "isBase64Encoded": False}
        try:
            await self._call(self._ws_function, event)
        except Exception:  # noqa: BLE001 - as deployed: the client gets an error frame, the socket stays
            await entry.socket.send_str(json.dumps({"message": "Internal server error",
                                                    "connectionId": entry.connection_id,
                                                    "requestId": context["requestId"]}))

    async def _disconnect(self, request: web.Request, entry: _Socket, code: int, reason: str) -> None:
        context = self._ws_context("$disconnect", "DISCONNECT", entry.connection_id, request, entry.connected_at)
        context |= {"disconnectStatusCode": code, "disconnectReason": reason}
        event = {"requestContext": context, "isBase64Encoded": False, "headers": {"Host": request.host}}
        with contextlib.suppress(Exception):  # $disconnect is best effort, as on API Gateway
            await asyncio.wait_for(self._call(self._ws_function, event), timeout=5.0)

    # ------------------------------------------------------------------ @connections management API

    async def _management(self, request: web.Request) -> web.StreamResponse:
        connection_id = unquote(request.match_info["connection_id"])
        entry = self._sockets.get(connection_id)
        if entry is None or entry.socket.closed:
            return self._gone()
        if request.method == "POST":
            data = await request.read()
            if len(data) > MAX_WS_MESSAGE_BYTES:
                return web.json_response({"message": "payload too large", "__type": "PayloadTooLargeException"},
                                         status=413, headers={"x-amzn-ErrorType": "PayloadTooLargeException"})
            try:
                await entry.socket.send_str(data.decode())
            except (ConnectionResetError, RuntimeError, UnicodeDecodeError):
                return self._gone()
            return web.Response(status=200)
        if request.method == "GET":
            return web.json_response({"connectedAt": entry.connected_at.isoformat(),
                                      "lastActiveAt": entry.last_active_at.isoformat(),
                                      "identity": {"sourceIp": entry.source_ip, "userAgent": entry.user_agent}})
        if request.method == "DELETE":
            await entry.socket.close(code=1000, message=b"closed by the server")
            return web.Response(status=204)
        return web.json_response({"message": "Method Not Allowed"}, status=405)

    @staticmethod
    def _gone() -> web.Response:
        return web.json_response(_GONE, status=410, headers={"x-amzn-ErrorType": "GoneException"})

