"""The read API's logic: filters, pagination tokens, and the domain errors the HTTP layer maps.

Pagination tokens are opaque and tamper-evident: `base64url(payload) "." base64url(HMAC-SHA256)`,
where the payload holds the DynamoDB key to resume after and a fingerprint of the query it belongs
to. A token altered in any way, or replayed with other filters, is refused with 400 before DynamoDB
sees it. The HMAC key is `TOKEN_SECRET` (generated per stack in Secrets Manager by the template), not
derived from anything a client could know: a derived key would let anyone mint tokens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from traderai.adapters.signal_store import InvalidStartKey, SignalFilters, SignalStore
from traderai.contracts import Side, Signal, SignalStatus, iso_utc
from traderai.settings import SettingsError, normalize_symbol

DEFAULT_LIMIT, MAX_LIMIT = 50, 200
MIN_SECRET_LENGTH = 32
SIGNAL_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
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


class ErrorBody(BaseModel):
    """Every error reply: a stable code, a sentence for people, and per-field details when validating."""

    error: str = Field(examples=["bad_request"])
    message: str = Field(examples=["limit: Input should be less than or equal to 200"])
    details: list[dict[str, Any]] | None = None


class SignalPage(BaseModel):
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
    """`moment` as stored (UTC, whole seconds); a time UTC cannot hold (years 1-9999) is a BadRequest, not a 500."""
    try:
        return iso_utc(moment + timedelta(seconds=1) if round_up and moment.microsecond else moment)
    except OverflowError:
        raise BadRequest(f"{name}: {moment.isoformat()} is outside the years 1-9999 in UTC") from None


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
        return content["k"]

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


def validation_message(errors: list[dict[str, Any]]) -> str:
    """`limit: Input should be less than or equal to 200; side: ...` from pydantic's error list."""
    parts = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part not in ("query", "path", "body")]
        parts.append(f"{'.'.join(location) or 'request'}: {error.get('msg', 'invalid')}")
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

