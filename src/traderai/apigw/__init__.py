"""API Gateway, emulated: the one emulation the tests, the benchmarks and the demo share (it does not ship).

- `routes`: the route tables, read from the template (HTTP API routes and their authorizer, WebSocket
  route keys and `$request.body.action` selection).
- `http`: the HTTP API: a request becomes the payload 2.0 event, the authorizer runs, the integration's
  reply becomes the response (`HttpApi`, transport-free).
- `websocket`: the WebSocket API: `$connect` (with its authorizer), messages, `$disconnect` (`WebSocketApi`,
  transport-free).
- `connections`: the `@connections` management API (`ConnectionsServer`), standalone on its own port or
  inside the local gateway in front of its real sockets.
- `wsgi`: `HttpApi` as a WSGI app, for in-process HTTP tools (schemathesis, werkzeug's client).

The sockets of the demo's gateway are `traderai.local.gateway` (aiohttp), in front of these same classes.
"""
