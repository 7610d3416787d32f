"""The `@connections` management API: the one server the functions post through, in every setting.

It answers the way API Gateway does: `POST /@connections/{id}` 200 (413 PayloadTooLargeException over
128 KB, 410 GoneException for an id that is gone), `GET` the connection's description (410 if gone),
`DELETE` 204 and the id is gone; any other method 405. An optional stage prefix
(`/prod/@connections/...`) is accepted. `answer()` holds all of that; two front doors call it:

- its own threaded HTTP server on a port (`start()`, or as a context manager): the tests, the
  benchmarks, and `python -m traderai.apigw.connections` for a server in its own process. moto accepts
  posts to any id and never answers 410, so stale-connection handling is tested here.
- the local gateway's WebSocket port, where each live socket is `attach`ed as a `Peer`: a post is
  delivered to that socket, a DELETE closes it, and a closed socket is gone.

Ids that exist: the attached ones, plus `connected` (None: every id not marked `gone`). Everything
received is recorded when `record` is on. `latency` delays every answer; `slow` and `failing` make single
ids slow or answer an error status; `deliver(id, body) -> bool` sees each accepted post to an id with no
peer (False: "gone after all").
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Protocol, Self
from urllib.parse import unquote

MARKER = "/@connections/"
MAX_POST_BYTES = 128 * 1024  # API Gateway's WebSocket message limit, for a post as for a client's frame


class Peer(Protocol):
    """The live socket behind an id (the local gateway's): called from the server's threads."""

    def send(self, body: bytes) -> bool:
        """Deliver one message; False if the socket is gone."""
        ...

    def close(self) -> None:
        """Close the socket, as `DELETE @connections/{id}` does."""
        ...


@dataclass
class Connection:
    """What the management API describes for a live connection."""

    peer: Peer
    source_ip: str
    user_agent: str
    connected_at: datetime
    last_active_at: datetime = field(default_factory=lambda: datetime.now(UTC))


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
    """The `@connections` API; its own HTTP server on a port once started (use as a context manager)."""

    def __init__(self, *, latency: float = 0.0, connected: Iterable[str] | None = None,
                 gone: Iterable[str] = (), host: str = "127.0.0.1", port: int = 0,
                 deliver: Callable[[str, bytes], bool] | None = None, record: bool = True) -> None:
        self.latency = latency
        self.connected: set[str] | None = None if connected is None else set(connected)
        self.gone: set[str] = set(gone)
        self.slow: dict[str, float] = {}
        self.failing: dict[str, int] = {}
        self.deliver = deliver
        self.record = record
        self.received: list[Received] = []
        self._live: dict[str, Connection] = {}
        self._lock = threading.Lock()
        self._address = (host, port)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ its own port

    @property
    def endpoint(self) -> str:
        """The endpoint URL to give the management API client (`WEBSOCKET_ENDPOINT`)."""
        httpd = self._bind()
        host, port = str(httpd.server_address[0]), httpd.server_address[1]
        return f"http://{host}:{port}"

    def _bind(self) -> _Server:
        if self._httpd is None:
            self._httpd = _Server(self._address, _handler_for(self))
        return self._httpd

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._bind().serve_forever, name="connections-server",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        if self._thread is not None:
            self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------------ which ids exist

    def connect(self, connection_id: str) -> None:
        with self._lock:
            self.gone.discard(connection_id)
            if self.connected is not None:
                self.connected.add(connection_id)

    def disconnect(self, connection_id: str) -> None:
        with self._lock:
            self._live.pop(connection_id, None)
            if self.connected is not None:
                self.connected.discard(connection_id)
            else:
                self.gone.add(connection_id)

    def attach(self, connection_id: str, peer: Peer, *, source_ip: str, user_agent: str,
               connected_at: datetime) -> None:
        """A live socket is open under this id: posts go to `peer`."""
        self.connect(connection_id)
        with self._lock:
            self._live[connection_id] = Connection(peer, source_ip, user_agent, connected_at)

    def touch(self, connection_id: str) -> None:
        """The client sent something: its `lastActiveAt`."""
        with self._lock:
            live = self._live.get(connection_id)
            if live is not None:
                live.last_active_at = datetime.now(UTC)

    @property
    def live_count(self) -> int:
        with self._lock:
            return len(self._live)

    def is_open(self, connection_id: str) -> bool:
        with self._lock:
            if connection_id in self._live:
                return True
            if connection_id in self.gone:
                return False
            return self.connected is None or connection_id in self.connected

    # ------------------------------------------------------------------ what was received

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
        if self.record:
            with self._lock:
                self.received.append(Received(method, connection_id, body, status, time.monotonic()))

    # ------------------------------------------------------------------ the API

    def answer(self, method: str, connection_id: str | None, body: bytes = b"") -> tuple[int, dict[str, object] | None]:
        """API Gateway's answer (status, JSON body or None) to one management request; blocks for `latency`
        and while a peer delivers."""
        if not connection_id:
            return 404, {"message": "Not Found"}
        if method == "POST":
            return self._post(connection_id, body)
        if method in ("GET", "DELETE") and not self.is_open(connection_id):
            return 410, ERRORS[410]
        if method == "GET":
            self._record("GET", connection_id, b"", 200)
            return 200, self._describe(connection_id)
        if method == "DELETE":
            with self._lock:
                live = self._live.get(connection_id)
            self.disconnect(connection_id)
            if live is not None:
                live.peer.close()
            self._record("DELETE", connection_id, b"", 204)
            return 204, None
        return 405, {"message": "Method Not Allowed"}

    def _post(self, connection_id: str, body: bytes) -> tuple[int, dict[str, object] | None]:
        time.sleep(self.slow.get(connection_id, self.latency))
        status = self.failing.get(connection_id, 200)
        if status == 200 and not self.is_open(connection_id):
            status = 410
        if status == 200 and len(body) > MAX_POST_BYTES:
            status = 413
        if status == 200:
            with self._lock:
                live = self._live.get(connection_id)
            delivered = (live.peer.send(body) if live is not None
                         else self.deliver is None or self.deliver(connection_id, body))
            if not delivered:
                self.disconnect(connection_id)
                status = 410
        self._record("POST", connection_id, body, status)
        return status, ERRORS.get(status)

    def _describe(self, connection_id: str) -> dict[str, object]:
        with self._lock:
            live = self._live.get(connection_id)
        if live is None:  # an id that exists without a socket behind it
            now = datetime.now(UTC).isoformat()
            return {"connectedAt": now, "lastActiveAt": now,
                    "identity": {"sourceIp": "127.0.0.1", "userAgent": "local"}}
        return {"connectedAt": live.connected_at.isoformat(), "lastActiveAt": live.last_active_at.isoformat(),
                "identity": {"sourceIp": live.source_ip, "userAgent": live.user_agent}}


def connection_id_of(path: str) -> str | None:
    """The id in `[/stage]/@connections/{id}` (URL-decoded), or None."""
    path = path.split("?", 1)[0]
    if MARKER not in path:
        return None
    return unquote(path.split(MARKER, 1)[1]) or None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # thousands of concurrent posts must not be refused at accept()


def _handler_for(server: ConnectionsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as API Gateway does

        def log_message(self, format: str, *args: object) -> None:
            return

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, payload = server.answer(self.command, connection_id_of(self.path), body)
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            error_type = payload.get("__type") if payload else None
            if isinstance(error_type, str):
                self.send_header("x-amzn-ErrorType", error_type)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data:
                self.wfile.write(data)

        do_POST = do_GET = do_DELETE = do_PUT = do_PATCH = _serve

    return Handler


ERRORS: dict[int, dict[str, object]] = {
    410: {"message": None, "__type": "GoneException"},
    413: {"message": "payload too large", "__type": "PayloadTooLargeException"},
    429: {"message": "Too Many Requests", "__type": "LimitExceededException"},
    500: {"message": "Internal server error", "__type": "InternalServerErrorException"},
    403: {"message": "Forbidden", "__type": "ForbiddenException"},
}


def main(argv: list[str] | None = None) -> int:
    """Run the server in its own process: `python -m traderai.apigw.connections --latency 0.01`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--gone", default="", help="comma-separated ids answered with 410")
    args = parser.parse_args(argv)
    server = ConnectionsServer(latency=args.latency, host=args.host, port=args.port,
                               gone=[g for g in args.gone.split(",") if g])
    print(server.endpoint, flush=True)  # the first line tells the parent where to post
    httpd = server._bind()
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
