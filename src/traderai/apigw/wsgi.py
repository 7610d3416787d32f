"""`HttpApi` as a WSGI app: HTTP tools (schemathesis' `from_wsgi`, werkzeug's test client) in-process.

The request becomes the same `HttpRequest` the local gateway builds from a socket, so the handler gets
the very event the demo sends: the template's routes and route keys, its authorizer before every route
not marked `Authorizer: NONE`, payload 2.0. A path no route takes is API Gateway's 404.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from traderai.apigw.http import HttpApi, HttpReply, HttpRequest


def wsgi_request(environ: dict[str, Any]) -> HttpRequest:
    """The `HttpRequest` a WSGI environ describes."""
    headers = [(key[5:].replace("_", "-").lower(), value) for key, value in environ.items()
               if key.startswith("HTTP_")]
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers.append((key.replace("_", "-").lower(), environ[key]))
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    # PEP 3333: PATH_INFO is the decoded path's bytes as latin-1. The socket server decodes them as UTF-8
    # and leaves a path that is not UTF-8 percent-encoded (yarl's `URL.path`); so does this.
    raw = (environ.get("PATH_INFO") or "/").encode("latin-1")
    try:
        path = raw.decode()
    except UnicodeDecodeError:
        path = quote(raw, safe="/:@!$&'()*+,;=-._~")
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME") or "localhost"
    return HttpRequest(environ["REQUEST_METHOD"], path, environ.get("QUERY_STRING", ""), tuple(headers), body,
                       environ.get("REMOTE_ADDR") or "127.0.0.1", host, environ.get("SERVER_PROTOCOL", "HTTP/1.1"))


class HttpApiWsgi:
    """WSGI request -> `HttpApi.handle` -> WSGI response."""

    def __init__(self, api: HttpApi) -> None:
        self.api = api

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        reply = self.api.handle(wsgi_request(environ)) or self.api.not_found()
        return _reply(start_response, reply)


def _reply(start_response: Callable[..., Any], reply: HttpReply) -> list[bytes]:
    try:
        phrase = HTTPStatus(reply.status).phrase
    except ValueError:
        phrase = "Status"
    start_response(f"{reply.status} {phrase}", [*reply.headers, ("Content-Length", str(len(reply.body)))])
    return [reply.body]
