"""The predict -> signal pipeline in-process under moto: the real handlers, the template's storage and
environment, a replay clock. `traderai tick`, the Athena tests and their benchmark all drive it."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from traderai import wiring
from traderai.adapters.market_list import DEFAULT_LIST_KEY, ShardPlans
from traderai.local.aws import LocalAws
from traderai.local.scheduler import combined, scheduled_event
from traderai.services.sharding import run_sharded_tick
from traderai.testing.handlers import FakeLambdaContext, load_handler

LOCAL_MARKET_LIST_KEY = DEFAULT_LIST_KEY
QUIET = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1",
         "POWERTOOLS_TRACE_DISABLED": "1", "POWERTOOLS_METRICS_DISABLED": "1"}


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block and restore the previous values after it."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class EmbeddedPipeline:
    """PredictFunction and SignalFunction wired as on AWS: the reply travels in the destination envelope."""

    local: Any  # LocalAws
    predict: Any
    signal: Any
    max_concurrency: int | None = 1  # None: the plan's (ShardConcurrency)

    def tick(self, tick_time: datetime, *, decided_after: timedelta = timedelta(seconds=5)
             ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Fire the scheduled event of `tick_time` through the deployed plan (services.sharding: plan, then
        each shard predict -> signal, as the TickStateMachine does). Returns (predict reply, signal summary or
        None) summed over the shards, in the shape of one unsharded tick.

        The signal step decides on the replay clock (`tick_time + decided_after`), so signal ages and
        expiries follow the replayed time.
        """
        wiring.signal_runtime().clock = lambda: tick_time + decided_after
        event = scheduled_event(tick_time, "PredictFunctionTick")
        handlers = {"PredictFunction": self.predict, "SignalFunction": self.signal}
        # CloudWatch EMF metric lines are printed to stdout even with metrics disabled: keep them off
        # a terminal where this module's callers print their own summary.
        with contextlib.redirect_stdout(io.StringIO()):
            def invoke(name: str, request: Any) -> Any:
                return handlers[name](request, FakeLambdaContext())

            sharded = run_sharded_tick(invoke, ShardPlans(self.local.s3, self.local.bucket).read, event,
                                       max_concurrency=self.max_concurrency)
        if sharded.errors:
            raise RuntimeError("; ".join(sharded.errors))
        return combined(sharded)



@contextmanager
def embedded_pipeline(markets: str, *, log_level: str = "ERROR", params: Mapping[str, str] | None = None,
                      market_list: bytes | None = None) -> Iterator[EmbeddedPipeline]:
    """moto in-process with the template's bucket and tables, the bundled models published, and the
    handlers' environment set as the template sets it (replay source unless `params` say otherwise);
    everything undone on exit. `market_list`: the tick reads its markets from this S3 object
    (MarketListKey `config/markets.csv`, as a deployment with a list in S3) instead of `markets`."""
    import boto3
    from moto import mock_aws

    with environment({**QUIET, "LOG_LEVEL": log_level}), mock_aws():
        local = LocalAws(boto3.client("s3"), boto3.client("dynamodb")).provision()
        params = dict(params or {})
        if market_list is not None:
            params.setdefault("MarketListKey", LOCAL_MARKET_LIST_KEY)
            local.s3.put_object(Bucket=local.bucket, Key=params["MarketListKey"], Body=market_list)
        env = {**local.environment("PredictFunction", {"MarketSource": "replay", "Markets": markets, **params}),
               **local.environment("SignalFunction"), "LOG_LEVEL": log_level}
        with environment(env):
            wiring.clear()
            try:
                yield EmbeddedPipeline(local, load_handler("predict").handler, load_handler("signal").handler)
            finally:
                wiring.clear()
