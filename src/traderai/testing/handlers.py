"""Load a Lambda handler module (`functions/<name>/app.py`) by path, under a unique module name.

Every function folder has a module called `app`, as SAM expects; tests and the local gateway
import them side by side through this, never through sys.path edits.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from traderai.infra import REPO_ROOT

__all__ = ["ACCOUNT_ID", "EVENTS_DIR", "FUNCTIONS_DIR", "REGION", "REPO_ROOT", "FakeLambdaContext", "load_event",
           "load_handler"]

ACCOUNT_ID, REGION = "123456789012", "us-east-1"  # the account and region every local ARN names

FUNCTIONS_DIR = REPO_ROOT / "functions"
EVENTS_DIR = REPO_ROOT / "events"


def load_handler(name: str, functions_dir: Path = FUNCTIONS_DIR) -> ModuleType:
    """Import `functions/<name>/app.py` as module `traderai_fn_<name>` (cached in sys.modules)."""
    module_name = f"traderai_fn_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    path = functions_dir / name / "app.py"
    if not path.is_file():
        raise FileNotFoundError(f"no handler module at {path}")
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_event(file_name: str) -> Any:
    """A sample event from `events/`, the very file `sam local invoke -e` takes."""
    return json.loads((EVENTS_DIR / file_name).read_text())


@dataclass
class FakeLambdaContext:
    """The one Lambda context outside Lambda (tests, benchmarks, the demo's `LocalFunctions`): the attributes
    Powertools and the handlers read. Each one is a fresh invocation: its own request id, and a deadline
    `timeout_seconds` from its creation (`LocalFunctions` gives the function's template Timeout) that
    `get_remaining_time_in_millis` counts down to."""

    function_name: str = "traderai-local"
    memory_limit_in_mb: int = 1024
    timeout_seconds: float = 900.0  # not given (no function of the template): Lambda's longest, never short
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_stream_name: str = "local"
    _deadline: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
