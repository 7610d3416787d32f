"""Adapters for the compaction job: Athena query execution and the day's Parquet prefix in S3.

Athena runs the UNLOAD; this module only starts it, waits for it, and fails loudly (with Athena's own
reason) when it does not succeed, so the scheduled invocation retries and then lands in the DLQ.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from aws_lambda_powertools import Logger

logger = Logger(child=True)

_FINISHED = {"SUCCEEDED", "FAILED", "CANCELLED"}


class AthenaQueryError(RuntimeError):
    """An Athena query ended FAILED or CANCELLED (or never finished in time); the message says why."""


class AthenaQueries:
    """Start a query in the workgroup (its result location, encryption and cutoff apply) and wait."""

    def __init__(self, client: Any, workgroup: str, database: str, poll_seconds: float = 1.0,
                 timeout_seconds: float = 240.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._workgroup = workgroup
        self._database = database
        self._poll_seconds = poll_seconds
        self._timeout_seconds = timeout_seconds
        self._sleep = sleep

    def run(self, sql: str, parameters: Sequence[str] = ()) -> str:
        """Run `sql` with positional `parameters` (SQL literals); return the query execution id."""
        request: dict[str, Any] = {"QueryString": sql, "WorkGroup": self._workgroup,
                                   "QueryExecutionContext": {"Database": self._database}}
        if parameters:
            request["ExecutionParameters"] = list(parameters)
        query_id = self._client.start_query_execution(**request)["QueryExecutionId"]
        waited = 0.0
        while True:
            execution = self._client.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
            status = execution["Status"]
            if status["State"] in _FINISHED:
                break
            if waited >= self._timeout_seconds:
                raise AthenaQueryError(f"query {query_id} still {status['State']} after {waited:.0f} s")
            self._sleep(self._poll_seconds)
            waited += self._poll_seconds
        if status["State"] != "SUCCEEDED":
            raise AthenaQueryError(f"query {query_id} {status['State']}: {status.get('StateChangeReason', '')}")
        scanned = execution.get("Statistics", {}).get("DataScannedInBytes")
        logger.info("Athena query succeeded", extra={"query_execution_id": query_id, "data_scanned_bytes": scanned})
        return query_id


class S3Prefix:
    """List and delete the objects under a prefix of the data bucket (a Parquet day being replaced)."""

    def __init__(self, s3_client: Any, bucket: str) -> None:
        self._s3 = s3_client
        self.bucket = bucket

    def keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys

    def delete(self, prefix: str) -> int:
        """Delete every object under `prefix`; returns how many. Refuses anything but a day's folder."""
        if "/dt=" not in prefix or not prefix.endswith("/"):
            raise ValueError(f"{prefix!r}: only a dt=YYYY-MM-DD/ folder is ever deleted")
        keys = self.keys(prefix)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start:start + 1000]]
            reply = self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if reply.get("Errors"):
                raise RuntimeError(f"could not delete {len(reply['Errors'])} object(s) under {prefix}: "
                                   f"{reply['Errors'][0]}")
        return len(keys)
