"""Wiring of CompactFunction: its settings and clients, built once per container (lazily)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, Self

from traderai.analytics.athena import AthenaQueries, S3Prefix
from traderai.settings import SettingsError

_REQUIRED = {"bucket_name": "BUCKET_NAME", "workgroup": "ATHENA_WORKGROUP", "database": "ATHENA_DATABASE"}


@dataclass(frozen=True, slots=True)
class CompactionSettings:
    """What the compaction job needs: the data bucket and the Athena workgroup and Glue database."""

    bucket_name: str
    workgroup: str
    database: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """Read and check the environment; a missing variable fails the cold start naming it."""
        env = os.environ if env is None else env
        values = {}
        for attr, name in _REQUIRED.items():
            if not env.get(name, "").strip():
                raise SettingsError(f"{name}: required by this function but not set")
            values[attr] = env[name].strip()
        return cls(**values)


def utc_today() -> date:
    return datetime.now(UTC).date()


@dataclass
class CompactionRuntime:
    settings: CompactionSettings
    queries: Any
    prefixes: Any
    today: Callable[[], date] = utc_today


@lru_cache(maxsize=1)
def compaction_runtime() -> CompactionRuntime:
    import boto3

    from traderai.runtime import s3_client

    settings = CompactionSettings.from_env()
    s3 = s3_client()
    athena = boto3.client("athena")
    return CompactionRuntime(settings, AthenaQueries(athena, settings.workgroup, settings.database),
                             S3Prefix(s3, settings.bucket_name))
