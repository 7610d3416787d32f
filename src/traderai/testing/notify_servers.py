"""A fake Telegram Bot API and a webhook receiver over real sockets, for tests, the benchmark and the demo.

`FakeTelegram` answers `POST /bot<token>/sendMessage` as Telegram does: `{"ok": true, "result": {...}}`,
401 for a token it does not know, 400 "chat not found" for a chat it does not know (when `chats` is given),
and whatever is scripted with `fail_next` (e.g. 429 with `parameters.retry_after`, 500, a slow answer).

`WebhookReceiver` records every POST with its headers and raw body, and answers 200, or what is scripted.
It verifies nothing itself: a receiver's check of the signature is the caller's (the demo's console and
the tests each do their own, from the recorded request).

Both record the `time.monotonic()` of each request's arrival, so latency can be measured end to end.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


@dataclass(frozen=True, slots=True)
class Scripted:
    """A canned answer: HTTP status, Telegram's retry_after (on a 429), and a delay before answering."""

    status: int = 200
    retry_after: int | None = None
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Request:
    """One request received: where, its headers and raw body, what it was answered, and when it arrived."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _FakeHttp:
    """What both fakes share: a threaded server, a script of answers, a record of requests."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, latency: float = 0.0) -> None:
        self.latency = latency
        self.requests: list[Request] = []
        self.on_request: Callable[[Request], None] | None = None
        self._script: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self._httpd = _Server((host, port), _handler_for(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=type(self).__name__, daemon=True)

    @property
    def url(self) -> str:
        host, port = str(self._httpd.server_address[0]), self._httpd.server_address[1]
        return f"http://{host}:{port}"

    def fail_next(self, *answers: Scripted) -> None:
        """The next requests get these answers, in order (then the normal ones again)."""
        with self._lock:
            self._script.extend(answers)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Request]:
        """Block until `count` requests were answered (or `timeout`): the requests so far."""
        ends = time.monotonic() + timeout
        while time.monotonic() < ends:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.01)
        with self._lock:
            return list(self.requests)

    def _next_script(self) -> Scripted | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def answer(self, path: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        raise NotImplementedError

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)
        if self.on_request is not None:
            self.on_request(request)


def _handler_for(fake: _FakeHttp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            arrived = time.monotonic()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            scripted = fake._next_script()
            delay = (scripted.delay if scripted else 0.0) + fake.latency
            if delay:
                time.sleep(delay)
            if scripted is not None and scripted.status != 200:
                status, content, headers = _scripted_answer(scripted)
            else:
                status, content, headers = fake.answer(self.path, body)
            fake._record(Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body, status, arrived))
            try:
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", "Content-Length": str(len(content)),
                                    **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(content)
            except (BrokenPipeError, ConnectionResetError):  # the sender gave up (its timeout): fine
                pass

        def log_message(self, *_: object) -> None:
            return None

    return Handler


def _scripted_answer(scripted: Scripted) -> tuple[int, bytes, dict[str, str]]:
    body: dict[str, Any] = {"ok": False, "error_code": scripted.status,
                            "description": {429: "Too Many Requests: retry later", 500: "Internal Server Error",
                                            400: "Bad Request", 403: "Forbidden"}.get(scripted.status, "error")}
    headers = {}
    if scripted.retry_after is not None:
        body["parameters"] = {"retry_after": scripted.retry_after}
        body["description"] = f"Too Many Requests: retry after {scripted.retry_after}"
        headers["Retry-After"] = str(scripted.retry_after)
    return scripted.status, json.dumps(body).encode(), headers


class FakeTelegram(_FakeHttp):
    """The Bot API's `sendMessage`, for the tokens in `tokens` (and, if given, only the chats in `chats`)."""

    _PATH = re.compile(r"^/bot(?P<token>[^/]+)/sendMessage$")

    def __init__(self, tokens: Iterable[str], *, chats: Iterable[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tokens = set(tokens)
        self.chats = None if chats is None else {str(c) for c in chats}
        self._message_id = 0

    def messages(self) -> list[dict[str, Any]]:
        """The accepted sendMessage bodies (chat_id, text), oldest first."""
        return [r.json() for r in self.requests if r.status == 200]

    def answer(self, path: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        found = self._PATH.fullmatch(path)
        if not found or found["token"] not in self.tokens:
            return 401, b'{"ok":false,"error_code":401,"description":"Unauthorized"}', {}
        try:
            message = json.loads(body)
        except ValueError:
            return 400, b'{"ok":false,"error_code":400,"description":"Bad Request: can\'t parse JSON"}', {}
        if not message.get("text"):
            return 400, b'{"ok":false,"error_code":400,"description":"Bad Request: message text is empty"}', {}
        if self.chats is not None and str(message.get("chat_id")) not in self.chats:
            return 400, b'{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}', {}
        with self._lock:
            self._message_id += 1
            message_id = self._message_id
        result = {"message_id": message_id, "chat": {"id": message["chat_id"]}, "date": int(time.time()),
                  "text": message["text"]}
        return 200, json.dumps({"ok": True, "result": result}).encode(), {}


class WebhookReceiver(_FakeHttp):
    """Accepts every POST (200 `{"received": true}`) unless scripted otherwise."""

    def answer(self, path: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        return 200, b'{"received":true}', {}
