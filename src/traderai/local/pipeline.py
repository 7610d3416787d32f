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

    def tick(self, tick_time: datetime, *, decided_after: timedelta = timedelta(seconds=5)
             ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Fire the scheduled event of `tick_time`; hand a non-empty reply to SignalFunction.

        The signal step decides on the replay clock (`tick_time + decided_after`), so signal ages and
        expiries follow the replayed time. Returns (predict reply, signal summary or None).
        """
        from traderai import runtime
        from traderai.local.scheduler import destination_envelope, scheduled_event
        from traderai.testing.handlers import FakeLambdaContext

        runtime.signal_runtime().clock = lambda: tick_time + decided_after
        event = scheduled_event(tick_time, "PredictFunctionTick")
        # CloudWatch EMF metric lines are printed to stdout even with metrics disabled: keep them off
        # a terminal where this module's callers print their own summary.
        with contextlib.redirect_stdout(io.StringIO()):
            reply = self.predict(event, FakeLambdaContext())
            if not reply["count"]:  # inline or a claim check, the reply counts its predictions
                return reply, None
            return reply, self.signal(destination_envelope(event, reply, "PredictFunction"), FakeLambdaContext())


@contextmanager
def embedded_pipeline(markets: str, *, log_level: str = "ERROR") -> Iterator[EmbeddedPipeline]:
    """moto in-process with the template's bucket and tables, the bundled models published, and the
    handlers' environment set as the template sets it (replay source); everything undone on exit."""
    import boto3
    from moto import mock_aws

    from traderai import runtime
    from traderai.local.aws import LocalAws
    from traderai.testing.handlers import load_handler

    with environment({**QUIET, "LOG_LEVEL": log_level}), mock_aws():
        local = LocalAws(boto3.client("s3"), boto3.client("dynamodb")).provision()
        env = {**local.environment("PredictFunction", {"MarketSource": "replay", "Markets": markets}),
               **local.environment("SignalFunction"), "LOG_LEVEL": log_level}
        with environment(env):
            runtime.clear()
            try:
                yield EmbeddedPipeline(local, load_handler("predict").handler, load_handler("signal").handler)
            finally:
                runtime.clear()
