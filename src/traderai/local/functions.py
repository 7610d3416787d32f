"""The template's Lambda functions, loaded in this process and invoked the way Lambda would.

Each `AWS::Serverless::Function` is found by logical id; its `CodeUri` (`../functions/<name>/`) and
`Handler` (`app.handler`) say which module to import, exactly as `sam build` reads them. Every
invocation gets a fresh Lambda context (request id, function name) and is timed; a handler that
raises is reported as the invocation's error, as Lambda reports it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from traderai.infra import resource
from traderai.testing.handlers import FakeLambdaContext, load_handler


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """What the template says about one function: where its handler lives and its limits."""

    logical_id: str
    directory: str  # functions/<directory>/
    handler: str  # module.function
    timeout_seconds: float
    memory_mb: int

    @classmethod
    def from_template(cls, template: Mapping[str, Any], logical_id: str) -> FunctionSpec:
        function = resource(template, logical_id, "AWS::Serverless::Function")
        properties = function.get("Properties", {})
        globals_ = template.get("Globals", {}).get("Function", {})
        code_uri = PurePosixPath(str(properties["CodeUri"]))
        return cls(logical_id, code_uri.name, str(properties.get("Handler", globals_.get("Handler", "app.handler"))),
                   float(properties.get("Timeout", globals_.get("Timeout", 3))),
                   int(properties.get("MemorySize", globals_.get("MemorySize", 128))))


@dataclass
class InvocationStats:
    """How often a function ran, failed, and how long it took in total (for the status endpoint)."""

    invocations: int = 0
    errors: int = 0
    seconds: float = 0.0


class LocalFunctions:
    """Loads the template's functions once and invokes them by logical id (thread-safe)."""

    def __init__(self, template: Mapping[str, Any], logical_ids: list[str]) -> None:
        self.specs = {logical_id: FunctionSpec.from_template(template, logical_id) for logical_id in logical_ids}
        self.stats = {logical_id: InvocationStats() for logical_id in logical_ids}
        self._handlers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def load(self) -> None:
        """Import every handler module now (in one thread), so the first event pays no import time."""
        for logical_id, spec in self.specs.items():
            module_name, _, function_name = spec.handler.partition(".")
            if module_name != "app":
                raise ValueError(f"{logical_id}: handler {spec.handler!r} is not app.<function>")
            self._handlers[logical_id] = getattr(load_handler(spec.directory), function_name)

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Run the function on `event` and return its reply; its exception propagates (an error)."""
        spec = self.specs[logical_id]
        context = FakeLambdaContext(f"traderai-local-{logical_id}", spec.memory_mb, spec.timeout_seconds)
        started = time.monotonic()
        failed = True
        try:
            reply = self._handlers[logical_id](event, context)
            failed = False
            return reply
        finally:
            with self._lock:
                stats = self.stats[logical_id]
                stats.invocations += 1
                stats.errors += failed
                stats.seconds += time.monotonic() - started
