"""Logger, Tracer and Metrics: created once here and imported everywhere (Powertools).

The Tracer is Powertools' only when tracing is on. Its construction loads the X-Ray SDK (and patches
botocore and pynamodb), most of an API function's import time; with POWERTOOLS_TRACE_DISABLED set (the template sets it
from its `Tracing` parameter) the handlers get a tracer whose decorators do nothing, and the SDK is never
imported.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics

SERVICE = "traderai"


def tracing_enabled(env: dict[str, str] | os._Environ[str] | None = None) -> bool:
    value = (os.environ if env is None else env).get("POWERTOOLS_TRACE_DISABLED", "")
    return value.strip().lower() not in ("1", "true", "yes", "on")


class DisabledTracer:
    """The Tracer methods the handlers use, as no-ops: tracing is off, nothing to record."""

    def capture_lambda_handler(self, lambda_handler: Callable[..., Any] | None = None, **_: Any) -> Any:
        return lambda_handler if lambda_handler is not None else (lambda handler: handler)

    def capture_method(self, method: Callable[..., Any] | None = None, **_: Any) -> Any:
        return method if method is not None else (lambda wrapped: wrapped)

    def put_annotation(self, key: str, value: Any) -> None:
        return None

    def put_metadata(self, key: str, value: Any, namespace: str | None = None) -> None:
        return None


TRACED_LIBRARIES = ("botocore", "pynamodb")
"""What X-Ray records calls of: the libraries every function reaches AWS through. Powertools' default patches
every library the X-Ray SDK supports that is installed, importing each at cold start, though no function
calls them: sqlite3 everywhere, requests where ccxt brings it."""


def _tracer() -> Any:
    if not tracing_enabled():
        return DisabledTracer()
    from aws_lambda_powertools import Tracer

    return Tracer(service=SERVICE, patch_modules=TRACED_LIBRARIES)


logger = Logger(service=SERVICE)
tracer = _tracer()
metrics = Metrics(namespace="TraderAI", service=SERVICE)
