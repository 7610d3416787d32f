"""API-key authentication of the HTTP API and of the WebSocket `$connect` route.

A key is shown once, at creation, as `tai_<key_id>_<secret>`: `key_id` (16 lowercase hex) names the
row in the ApiKeys table, `secret` is 32 random bytes (base64url, 43 characters). The table keeps the
key id, a per-key random salt and SHA-256(salt || secret), never the secret. A 256-bit random secret
cannot be brute-forced from its hash, so a fast hash is enough (a slow password KDF buys nothing here)
and no pepper has to be distributed. Lookup is by id (one GetItem) and the comparison is constant-time.

Where the key travels:

- HTTP API: `Authorization: Bearer <key>`. One identity source, so API Gateway answers 401 itself when
  the header is missing and caches the authorizer's answer per header value.
- WebSocket `$connect`: `?api_key=<key>`. Browsers cannot set headers on a WebSocket handshake, and the
  query string is an identity source API Gateway supports (`route.request.querystring.api_key`).

Missing credential -> 401, any wrong one (malformed, unknown id, revoked, wrong secret) -> 403, with a
reason code that is logged with the key id only. `authorize_http` / `authorize_websocket` are what the
Lambda authorizer and the local gateway both call.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from traderai.contracts import ApiKeyRecord, iso_utc
from traderai.ports import KeyLookup

KEY_PREFIX = "tai"
KEY_ID_LENGTH = 16
SECRET_BYTES = 32
SALT_BYTES = 16
KEY_FORMAT = re.compile(r"^tai_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
KEY_SHAPED = re.compile(r"tai_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")
"""What a real key looks like anywhere in a text: the secret-scanning test greps the repo for it."""
WEBSOCKET_QUERY_PARAMETER = "api_key"
_DUMMY_SALT = bytes(SALT_BYTES)


class Unauthorized(Exception):
    """Raised by the WebSocket authorizer for a missing credential: API Gateway answers 401."""

    def __init__(self) -> None:
        super().__init__("Unauthorized")


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The outcome of one authorization: 200 allowed, 401 no credential, 403 a wrong one."""

    status: int
    reason: str
    key_id: str | None = None
    key_name: str | None = None

    @property
    def allowed(self) -> bool:
        return self.status == 200

    def context(self) -> dict[str, str]:
        """Passed to the integration (`requestContext.authorizer.lambda`): who called, never the secret."""
        return {"key_id": self.key_id or "", "key_name": self.key_name or ""} if self.allowed else {}

    def error_body(self) -> dict[str, str]:
        """The JSON body a gateway answers a refused request with."""
        if self.status == 401:
            return {"error": "unauthorized", "message": "an API key is required (Authorization: Bearer <key>)"}
        return {"error": "forbidden", "message": "the API key is not valid"}


def hash_secret(salt: bytes, secret: str) -> str:
    """SHA-256 over salt || secret, hex."""
    return hashlib.sha256(salt + secret.encode()).hexdigest()


def new_key(name: str, now: datetime) -> tuple[str, ApiKeyRecord]:
    """A fresh key: (the plaintext to show once, the record to store)."""
    if not name.strip() or len(name) > 128:
        raise ValueError("name: give a short label for the key (1-128 characters)")
    key_id = secrets.token_hex(KEY_ID_LENGTH // 2)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    salt = secrets.token_bytes(SALT_BYTES)
    record = ApiKeyRecord(key_id, name.strip(), salt.hex(), hash_secret(salt, secret), iso_utc(now))
    return f"{KEY_PREFIX}_{key_id}_{secret}", record


def parse_key(presented: str) -> tuple[str, str] | None:
    """(key_id, secret) of a key of the right shape, else None."""
    match = KEY_FORMAT.fullmatch(presented.strip())
    return (match[1], match[2]) if match else None


def verify(presented: str | None, keys: KeyLookup) -> AuthResult:
    """Check a presented key against the store (one lookup by id, constant-time hash comparison)."""
    if presented is None or not presented.strip():
        return AuthResult(401, "missing_credential")
    parsed = parse_key(presented)
    if parsed is None:
        hash_secret(_DUMMY_SALT, presented[:64])  # same work as a real check
        return AuthResult(403, "malformed_credential")
    key_id, secret = parsed
    record = keys.get(key_id)
    if record is None:
        hash_secret(_DUMMY_SALT, secret)
        return AuthResult(403, "unknown_key", key_id)
    matches = hmac.compare_digest(hash_secret(bytes.fromhex(record.salt), secret), record.secret_hash)
    if not matches:
        return AuthResult(403, "wrong_secret", key_id)
    if not record.active:
        return AuthResult(403, "revoked_key", key_id)
    return AuthResult(200, "ok", key_id, record.name)


def _header(headers: Any, name: str) -> str | None:
    if not isinstance(headers, Mapping):
        return None
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name and isinstance(value, str):
            return value
    return None


def credential_from_http(event: Mapping[str, Any]) -> str | None:
    """The key in `Authorization: Bearer <key>`; None if the header is absent or empty.

    A header in another scheme is returned whole, so it is refused as malformed (403), not as missing.
    """
    value = _header(event.get("headers"), "authorization")
    if value is None or not value.strip():
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else value


def credential_from_websocket(event: Mapping[str, Any]) -> str | None:
    """The key in the `$connect` request's `?api_key=` query parameter."""
    query = event.get("queryStringParameters")
    value = query.get(WEBSOCKET_QUERY_PARAMETER) if isinstance(query, Mapping) else None
    return value if isinstance(value, str) and value.strip() else None


def authorize_http(event: Mapping[str, Any], keys: KeyLookup) -> AuthResult:
    """Authorize an HTTP API request (API Gateway v2 event or authorizer event): 200, 401 or 403."""
    return verify(credential_from_http(event), keys)


def authorize_websocket(event: Mapping[str, Any], keys: KeyLookup) -> AuthResult:
    """Authorize a WebSocket `$connect` request: 200, 401 or 403."""
    return verify(credential_from_websocket(event), keys)


@dataclass(frozen=True, slots=True)
class KeyAuthorizer:
    """`authorize_http` / `authorize_websocket` over one key store: the local gateway's authorizer hook."""

    keys: KeyLookup

    def authorize_http(self, event: Mapping[str, Any]) -> AuthResult:
        return authorize_http(event, self.keys)

    def authorize_websocket(self, event: Mapping[str, Any]) -> AuthResult:
        return authorize_websocket(event, self.keys)


def http_simple_response(result: AuthResult) -> dict[str, Any]:
    """HTTP API Lambda authorizer reply, payload 2.0 with simple responses (false -> API Gateway 403)."""
    return {"isAuthorized": result.allowed, "context": result.context()}


def websocket_policy(result: AuthResult, method_arn: str) -> dict[str, Any]:
    """WebSocket REQUEST authorizer reply: an IAM policy allowing or denying this connect (deny -> 403)."""
    statement = {"Action": "execute-api:Invoke", "Effect": "Allow" if result.allowed else "Deny",
                 "Resource": method_arn}
    return {"principalId": result.key_id or "anonymous",
            "policyDocument": {"Version": "2012-10-17", "Statement": [statement]},
            "context": result.context()}
