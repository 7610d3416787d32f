"""The read API's logic: filters, pagination tokens, and the domain errors the HTTP layer maps.

Pagination tokens are opaque and tamper-evident: `base64url(payload) "." base64url(HMAC-SHA256)`,
where the payload holds the DynamoDB key to resume after and a fingerprint of the query it belongs
to. A token altered in any way, or replayed with other filters, is refused with 400 before DynamoDB
sees it. The HMAC key is `TOKEN_SECRET` (generated per stack in Secrets Manager by the template), not
derived from anything a client could know: a derived key would let anyone mint tokens.
"""

from __future__ import annotations

import ast
import base64
import binascii
import hashlib
import hmac
import inspect
import itertools
import json
import re
import textwrap
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from traderai.adapters.signal_store import InvalidStartKey, SignalFilters, SignalStore
from traderai.contracts import SettingsError, Side, Signal, SignalStatus
from traderai.settings import normalize_symbol

DEFAULT_LIMIT, MAX_LIMIT = 50, 200
MIN_SECRET_LENGTH = 32
SIGNAL_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
# Parameter grammars, declared in the OpenAPI document and enforced by the validator from the same strings.
# RFC 3339 `date-time` (what OpenAPI's format means): a time zone is required; a bare number is not a time.
DATE_TIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
# Declared beside the parameter's `str | None` schema: pydantic drops a pattern next to the BeforeValidator that
# reads an unescaped '+' (decoded as a space), so parse_date_time enforces the pattern itself.
DATE_TIME_SCHEMA = {"format": "date-time", "pattern": DATE_TIME_PATTERN}
SYMBOL_PATTERN = r"^[A-Za-z0-9]{2,15}[/_-][A-Za-z0-9]{2,15}(:[A-Za-z0-9]{2,15})?$"  # normalize_symbol's grammar
# base64url(payload) "." base64url(20-byte HMAC): a grammar, not a secret
NEXT_TOKEN_PATTERN = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{27}$"  # noqa: S105
EARLIEST, LATEST = "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"  # the ends of the stored time range
LIST_PARAMETERS = frozenset({"symbol", "side", "status", "tradeable", "since", "until", "limit", "next_token"})
_TOKEN_VERSION = 1


class ApiError(Exception):
    """A domain error with its HTTP status and a stable error code (mapped in one place)."""

    status_code = 500
    code = "internal_error"


class BadRequest(ApiError):
    status_code = 400
    code = "bad_request"


class InvalidPageToken(BadRequest):
    code = "invalid_next_token"


class NotFound(ApiError):
    status_code = 404
    code = "not_found"


class ApiModel(BaseModel):
    """A reply's model. Its validator and serializer are built at its first use (a reply, a validation, the
    OpenAPI document), not when its class is defined: a cold start builds those of the route it serves only."""

    model_config = ConfigDict(defer_build=True)


class ErrorBody(ApiModel):
    """Every error reply: a stable code, a sentence for people, and per-field details when validating."""

    error: str = Field(examples=["bad_request"])
    message: str = Field(examples=["limit: Input should be less than or equal to 200"])
    details: list[dict[str, Any]] | None = None


class GatewayError(ApiModel):
    """A refusal by API Gateway's authorizer, before any function runs: 401 without a key, 403 with a wrong one
    (API Gateway answers `{"message": "Unauthorized"}`; the local gateway adds the `error` code)."""

    message: str = Field(examples=["Unauthorized"])
    error: str | None = Field(default=None, examples=["unauthorized"])


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"model": model}}}


def responses(ok: dict[str, Any], *, keyed: bool = True, not_found: bool = False,
              parameters: bool = True) -> dict[int, Any]:
    """A route's documented replies: `ok` for 200, and the errors it can answer, each with its schema."""
    documented: dict[int, dict[str, Any]] = {200: ok}
    if parameters:
        documented[400] = _json(ErrorBody, "Invalid parameter")
    if keyed:
        documented |= {401: _json(GatewayError, "No API key (Authorization: Bearer tai_...)"),
                       403: _json(GatewayError, "The API key is not valid")}
    if not_found:
        documented[404] = _json(ErrorBody, "Not found")
    return documented | {500: _json(ErrorBody, "Internal error (the request id is in the logs)")}


def ok_json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return _json(model, description)


def tidy_openapi(document: dict[str, Any]) -> dict[str, Any]:
    """Powertools documents a 422 on every route, but every validation error leaves as a 400 `ErrorBody`
    (the exception handlers): drop the 422s and their schemas so the document lists only real replies.
    A `Signal`'s fields are described by their docstrings (`attribute_docs`)."""
    for path in document.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    properties = schemas.get(Signal.__name__, {}).get("properties", {})
    for name, doc in attribute_docs(Signal).items():
        if name in properties:
            properties[name].setdefault("description", doc)
    documented: dict[str, Any] = _uniform_tuples_as_items(document)
    return documented


def attribute_docs(cls: type) -> dict[str, str]:
    """The docstrings of `cls`'s fields: a string statement right after an annotated field documents it (what
    pydantic's `use_attribute_docstrings` reads). Read from the source for the document only: pydantic would
    parse the module's source at the first reply that validates the class (~11 ms of a cold start)."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
    assert isinstance(body, ast.ClassDef)
    docs = {}
    for field, doc in itertools.pairwise(body.body):
        if (isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name) and isinstance(doc, ast.Expr)
                and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)):
            docs[field.target.id] = inspect.cleandoc(doc.value.value)
    return docs


def _uniform_tuples_as_items(node: Any) -> Any:
    """A fixed-length tuple of one type (`tp_weights`) as `items` + min/maxItems instead of `prefixItems`:
    the same constraint, in the form OpenAPI 3.0 tools and generated clients also read."""
    if isinstance(node, list):
        return [_uniform_tuples_as_items(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _uniform_tuples_as_items(value) for key, value in node.items()}
    prefix = node.get("prefixItems")
    if (isinstance(prefix, list) and prefix and all(item == prefix[0] for item in prefix)
            and node.get("minItems") == node.get("maxItems") == len(prefix) and "items" not in node):
        node["items"] = node.pop("prefixItems")[0]
    return node


class Health(ApiModel):
    """GET /health: the service answers, and which version."""

    status: str = Field(examples=["ok"])
    service: str = Field(examples=["traderai"])
    version: str


class SignalPage(ApiModel):
    """One page of signals, newest first; pass `next_token` back to get the next page (null: no more)."""

    items: list[Signal]
    next_token: str | None = Field(default=None, description="Opaque; valid only with the same filters.")


def reject_unknown_parameters(parameters: dict[str, str] | None, known: frozenset[str]) -> None:
    """A misspelt filter (`?symbl=BTC`) must not silently return everything."""
    unknown = sorted(set(parameters or {}) - known)
    if unknown:
        raise BadRequest(f"unknown query parameter(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known))}")


def signal_filters(symbol: str | None = None, side: str | None = None, status: str | None = None,
                   since: datetime | None = None, until: datetime | None = None,
                   tradeable: bool | None = None) -> SignalFilters:
    """Normalise the list filters: `btc-usdt` -> `BTC/USDT`, times to the stored second-precision form."""
    try:
        normalized_symbol = normalize_symbol(symbol) if symbol is not None else None
    except SettingsError as exc:
        raise BadRequest(str(exc)) from exc
    # `created_at` is stored at second precision: round `since` up, `until` down, so both stay inclusive.
    since_text = _stored_time("since", since, round_up=True) if since else None
    until_text = _stored_time("until", until) if until else None
    if since is not None and until is not None and since > until:
        raise BadRequest(f"since: {since_text} is after until: {until_text}")
    return SignalFilters(symbol=normalized_symbol, side=Side(side).value if side else None,
                         status=SignalStatus(status).value if status else None,
                         since=since_text, until=until_text, tradeable=tradeable)


def _stored_time(name: str, moment: datetime, *, round_up: bool = False) -> str:
    """`moment` as stored (UTC, whole seconds). A valid time that UTC cannot hold (0001-01-01T00:00:00+01:00,
    9999-12-31T23:00:00-05:00) lies beyond every stored time: it is clamped to that end of the range."""
    try:
        utc = (moment + timedelta(seconds=1) if round_up and moment.microsecond else moment).astimezone(UTC)
    except OverflowError:
        return EARLIEST if moment.year == 1 else LATEST
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S}Z"  # %Y does not pad years before 1000


def parse_date_time(name: str, text: str | None) -> datetime | None:
    """An RFC 3339 date-time (the pattern is already checked by the validator) as an aware datetime; a
    well-shaped but impossible one (month 13, February 30) is a BadRequest naming the parameter."""
    if text is None:
        return None
    if not re.fullmatch(DATE_TIME_PATTERN, text):
        raise BadRequest(f"{name}: {text[:64]!r} is not an RFC 3339 date-time with a time zone "
                         "(e.g. 2025-04-07T14:00:00Z)")
    head, _, fraction = text.upper().partition(".")
    if fraction:  # datetime takes at most microseconds: keep six digits, then the zone
        digits = len(fraction) - len(fraction.lstrip("0123456789"))
        head = f"{head}.{fraction[:min(digits, 6)]}{fraction[digits:]}"
    try:
        return datetime.fromisoformat(head)
    except ValueError as exc:
        raise BadRequest(f"{name}: {text[:64]!r} is not a valid date-time ({exc})") from None


def validate_signal_id(signal_id: str) -> str:
    if not SIGNAL_ID.fullmatch(signal_id):
        raise BadRequest(f"signal_id: {signal_id[:140]!r} is not a signal id (letters, digits, _ . : -)")
    return signal_id


class PageTokens:
    """Issues and verifies `next_token`s bound to one query's filters."""

    def __init__(self, secret: str) -> None:
        if len(secret) < MIN_SECRET_LENGTH:
            raise SettingsError(f"TOKEN_SECRET: must be at least {MIN_SECRET_LENGTH} characters")
        self._key = hashlib.sha256(b"traderai/next_token/v1\0" + secret.encode()).digest()

    def issue(self, filters: SignalFilters, key: dict[str, str]) -> str:
        payload = json.dumps({"v": _TOKEN_VERSION, "q": _fingerprint(filters), "k": key},
                             separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def read(self, token: str, filters: SignalFilters) -> dict[str, str]:
        """The key to resume after; InvalidPageToken if the token was altered or is for other filters."""
        body, _, mac = token.partition(".")
        try:
            payload, signature = _unb64(body), _unb64(mac)
        except (binascii.Error, ValueError):
            raise InvalidPageToken("next_token: not a token this API issued") from None
        if not hmac.compare_digest(signature, self._mac(payload)):
            raise InvalidPageToken("next_token: altered or not issued by this API")
        content = json.loads(payload)
        if content.get("v") != _TOKEN_VERSION or content.get("q") != _fingerprint(filters):
            raise InvalidPageToken("next_token: belongs to a query with other filters; "
                                   "repeat the same filters, or start again without next_token")
        key: dict[str, str] = content["k"]
        return key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:20]


def list_signals(store: SignalStore, tokens: PageTokens, filters: SignalFilters, limit: int,
                 next_token: str | None) -> SignalPage:
    """One page of signals matching `filters`, newest first (one DynamoDB Query, at most limit+1 reads)."""
    start_key = tokens.read(next_token, filters) if next_token else None
    try:
        signals, next_key = store.query_page(filters, limit, start_key)
    except InvalidStartKey as exc:  # a genuine token always has the right shape; keep the guard anyway
        raise InvalidPageToken(f"next_token: {exc}") from exc
    return SignalPage(items=signals, next_token=tokens.issue(filters, next_key) if next_key else None)


def get_signal(store: SignalStore, signal_id: str) -> Signal:
    signal = store.get(validate_signal_id(signal_id))
    if signal is None:
        raise NotFound(f"signal {signal_id!r} not found")
    return signal


PATTERN_MEANS = {DATE_TIME_PATTERN: "is not an RFC 3339 date-time with a time zone (e.g. 2025-04-07T14:00:00Z)",
                 SYMBOL_PATTERN: "is not BASE/QUOTE (e.g. BTC/USDT, BTC_USDT or BTC-USDT)",
                 NEXT_TOKEN_PATTERN: "is not a token this API issued",
                 SIGNAL_ID.pattern: "is not a signal id (letters, digits, _ . : -)"}


def validation_message(errors: list[dict[str, Any]]) -> str:
    """`limit: Input should be less than or equal to 200; side: ...` from pydantic's error list (a pattern
    mismatch says what the parameter should be rather than quoting the regular expression)."""
    parts = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part not in ("query", "path", "body")]
        message = error.get("msg", "invalid")
        means = PATTERN_MEANS.get((error.get("ctx") or {}).get("pattern", ""))
        if error.get("type") == "string_pattern_mismatch" and means:
            message = f"{str(error.get('input'))[:64]!r} {means}"
        parts.append(f"{'.'.join(location) or 'request'}: {message}")
    return "; ".join(parts) or "invalid request"


def _fingerprint(filters: SignalFilters) -> str:
    canonical = json.dumps(asdict(filters) | {"index": filters.index_name}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text or not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

