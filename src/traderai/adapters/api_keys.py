"""The ApiKeys table (DynamoDB, via pynamodb): one row per API key, keyed by its public key id.

Rows hold a salt and the SHA-256 of the secret, never the secret (see `traderai.services.auth`).
The authorizer only reads one row by id (GetItem, all its role allows); creating, listing and
revoking keys is an operator's job through `traderai keys`, with the operator's own credentials.
"""

from __future__ import annotations

from datetime import datetime

from pynamodb.attributes import UnicodeAttribute
from pynamodb.exceptions import PutError, UpdateError
from pynamodb.models import Model

from traderai.adapters.dynamo import table_model
from traderai.contracts import ApiKeyRecord, iso_utc


class KeyExists(ValueError):
    """A key with this id is already stored (ids are random: practically never)."""


class UnknownKey(LookupError):
    """No key with this id."""


class _ApiKeyItem(Model):
    key_id = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute()
    salt = UnicodeAttribute()
    secret_hash = UnicodeAttribute()
    created_at = UnicodeAttribute()
    revoked_at = UnicodeAttribute(null=True)


def _record(item: _ApiKeyItem) -> ApiKeyRecord:
    return ApiKeyRecord(item.key_id, item.name, item.salt, item.secret_hash, item.created_at, item.revoked_at)


class ApiKeyStore:
    """Store, find, list and revoke API keys."""

    def __init__(self, table_name: str, *, region: str | None = None, host: str | None = None) -> None:
        self.table_name = table_name
        self._model = table_model(_ApiKeyItem, table_name, region, host)

    def get(self, key_id: str) -> ApiKeyRecord | None:
        try:
            return _record(self._model.get(key_id))
        except self._model.DoesNotExist:
            return None

    def add(self, record: ApiKeyRecord) -> None:
        """Store a new key; never overwrites one (conditional put)."""
        item = self._model(record.key_id, name=record.name, salt=record.salt, secret_hash=record.secret_hash,
                           created_at=record.created_at, revoked_at=record.revoked_at)
        try:
            item.save(condition=self._model.key_id.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                raise KeyExists(f"key id {record.key_id} already exists") from None
            raise

    def revoke(self, key_id: str, now: datetime) -> ApiKeyRecord:
        """Mark the key revoked (idempotent: an already revoked key keeps its first revocation time)."""
        item = self._model(key_id)
        try:
            item.update(actions=[self._model.revoked_at.set(self._model.revoked_at | iso_utc(now))],
                        condition=self._model.key_id.exists())
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                raise UnknownKey(f"no API key with id {key_id}") from None
            raise
        return _record(item)

    def all(self) -> list[ApiKeyRecord]:
        """Every key (a Scan of a small table; operators only, the authorizer cannot)."""
        return sorted((_record(item) for item in self._model.scan()), key=lambda r: r.created_at)

