"""Load a Lambda handler module (`functions/<name>/app.py`) by path, under a unique module name.

Every function folder has a module called `app`, as SAM expects; tests and the local gateway
import them side by side through this, never through sys.path edits.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from traderai.infra import REPO_ROOT

__all__ = ["EVENTS_DIR", "FUNCTIONS_DIR", "REPO_ROOT", "FakeLambdaContext", "load_event", "load_handler"]

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


class FakeLambdaContext:
    """The attributes Powertools reads from a Lambda context."""

    function_name = "traderai-local"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:traderai-local"
    memory_limit_in_mb = 1024
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/traderai-local"
    log_stream_name = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000
