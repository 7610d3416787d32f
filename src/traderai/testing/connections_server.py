"""A local API Gateway `@connections` endpoint over real sockets, for tests, the benchmark and the demo.

Implements the management API the way API Gateway answers it:
`POST /@connections/{id}` (200, or 410 GoneException for an id that is gone), `GET` (connection info)
and `DELETE` (204, then the id is gone). An optional stage prefix (`/prod/@connections/...`) is accepted.
moto accepts posts to any id and never answers 410, so stale-connection handling is tested here.

Everything it receives is recorded. `latency` delays every answer; `slow` and `failing` make single
ids slow or answer an error status; `deliver` lets the local demo hand posted messages to real sockets.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self
from urllib.parse import unquote

MARKER = "/@connections/"


@dataclass(frozen=True, slots=True)
class Received:
    """One request the server received."""

    method: str
    connection_id: str
    body: bytes
    status: int
    at: float  # time.monotonic() when the answer was ready

    def json(self) -> object:
        return json.loads(self.body)


class ConnectionsServer:
    """Threaded HTTP server speaking the `@connections` API; use as a context manager.

    `connected`: ids that exist; None means every id not marked gone exists.
    `deliver(connection_id, body) -> bool`: called for accepted posts; False means "gone after all".
    """

    def __init__(self, *, latency: float = 0.0, connected: Iterable[str] | None = None,
                 gone: Iterable[str] = (), host: str = "127.0.0.1", port: int = 0,
                 deliver: Callable[[str, bytes], bool] | None = None) -> None:
        self.latency = latency
        self.connected: set[str] | None = None if connected is None else set(connected)
        self.gone: set[str] = set(gone)
        self.slow: dict[str, float] = {}
        self.failing: dict[str, int] = {}
        self.deliver = deliver
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._httpd = _Server((host, port), _handler_for(self))
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """The endpoint URL to give the management API client (`WEBSOCKET_ENDPOINT`)."""
        host, port = str(self._httpd.server_address[0]), self._httpd.server_address[1]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="connections-server",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def connect(self, connection_id: str) -> None:
        with self._lock:
            self.gone.discard(connection_id)
            if self.connected is not None:
                self.connected.add(connection_id)

    def disconnect(self, connection_id: str) -> None:
        with self._lock:
            self.gone.add(connection_id)
            if self.connected is not None:
                self.connected.discard(connection_id)

    def is_open(self, connection_id: str) -> bool:
        with self._lock:
            if connection_id in self.gone:
                return False
            return self.connected is None or connection_id in self.connected

    def posts(self, connection_id: str | None = None, *, status: int | None = 200) -> list[Received]:
        """POSTs received (for one id, with one status: delivered ones by default)."""
        with self._lock:
            return [r for r in self.received if r.method == "POST"
                    and (connection_id is None or r.connection_id == connection_id)
                    and (status is None or r.status == status)]

    def messages(self, connection_id: str) -> list[object]:
        """The JSON messages delivered to one connection, in order."""
        return [r.json() for r in self.posts(connection_id)]

    def clear(self) -> None:
        with self._lock:
            self.received.clear()

    def _record(self, method: str, connection_id: str, body: bytes, status: int) -> None:
        with self._lock:
            self.received.append(Received(method, connection_id, body, status, time.monotonic()))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # thousands of concurrent posts must not be refused at accept()


def _handler_for(server: ConnectionsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as API Gateway does

        def log_message(self, format: str, *args: object) -> None:
            return

        def do_POST(self) -> None:
            connection_id, body = self._connection_id(), self._body()
            if connection_id is None:
                return self._reply(404, {"message": "Not Found"})
            time.sleep(server.slow.get(connection_id, server.latency))
            status = server.failing.get(connection_id, 200)
            if status == 200 and not server.is_open(connection_id):
                status = 410
            if status == 200 and server.deliver is not None and not server.deliver(connection_id, body):
                server.disconnect(connection_id)
                status = 410
            server._record("POST", connection_id, body, status)
            self._reply(status, _ERRORS.get(status))

        def do_GET(self) -> None:
            connection_id = self._connection_id()
            if connection_id is None or not server.is_open(connection_id):
                return self._reply(410 if connection_id else 404, _ERRORS[410])
            server._record("GET", connection_id, b"", 200)
            now = datetime.now(UTC).isoformat()
            self._reply(200, {"connectedAt": now, "lastActiveAt": now,
                              "identity": {"sourceIp": self.client_address[0], "userAgent": "local"}})

        def do_DELETE(self) -> None:
            connection_id = self._connection_id()
            if connection_id is None or not server.is_open(connection_id):
                return self._reply(410 if connection_id else 404, _ERRORS[410])
            server.disconnect(connection_id)
            server._record("DELETE", connection_id, b"", 204)
            self._reply(204, None)

        def _connection_id(self) -> str | None:
            path = self.path.split("?", 1)[0]
            if MARKER not in path:
                return None
            connection_id = unquote(path.split(MARKER, 1)[1])
            return connection_id or None

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _reply(self, status: int, payload: dict[str, object] | None) -> None:
            body = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            if status == 410:
                self.send_header("x-amzn-ErrorType", "GoneException")
            if body:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)

    return Handler


_ERRORS: dict[int, dict[str, object]] = {
    410: {"message": None, "__type": "GoneException"},
    429: {"message": "Too Many Requests", "__type": "LimitExceededException"},
    500: {"message": "Internal server error", "__type": "InternalServerErrorException"},
    403: {"message": "Forbidden", "__type": "ForbiddenException"},
}


def main(argv: list[str] | None = None) -> int:
    """Run the server in its own process: `python -m traderai.testing.connections_server --latency 0.01`."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--gone", default="", help="comma-separated ids answered with 410")
    args = parser.parse_args(argv)
    server = ConnectionsServer(latency=args.latency, host=args.host, port=args.port,
                               gone=[g for g in args.gone.split(",") if g])
    print(server.endpoint, flush=True)  # the first line tells the parent where to post
    try:
        server._httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server._httpd.server_close()
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
