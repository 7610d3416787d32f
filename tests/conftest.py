"""Suite-wide hygiene: no real AWS credentials or X-Ray, and Powertools state reset between tests."""

from __future__ import annotations

import os

import pytest

# Set before any handler module is imported: tests never reach real AWS, and Tracer stays local.
os.environ.update({
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing", "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "1", "POWERTOOLS_METRICS_NAMESPACE": "TraderAI",
    "POWERTOOLS_SERVICE_NAME": "traderai", "POWERTOOLS_DEV": "0",
})
for _var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_DYNAMODB"):
    os.environ.pop(_var, None)


@pytest.fixture(autouse=True)
def reset_powertools() -> None:
    """Metrics buffers and the cold-start flag are module state in Powertools: reset per test."""
    from aws_lambda_powertools.metrics.provider import cold_start

    from traderai.observability import metrics

    metrics.clear_metrics()
    cold_start.is_cold_start = True
