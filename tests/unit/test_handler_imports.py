"""The API, WebSocket and broadcast handlers stay light: no numpy, pandas, scikit-learn or ccxt.

Each handler module is imported in a fresh interpreter (nothing else loaded, no environment needed),
and the modules it pulled in are checked.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("numpy", "pandas", "sklearn", "scipy", "ccxt")
PROBE = """
import json, sys
from traderai.testing.handlers import load_handler
module = load_handler(sys.argv[1])
assert callable(module.handler)
print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))
"""


@pytest.mark.parametrize("function", ["api", "websocket", "broadcast"])
def test_handler_imports_no_heavy_library(function: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "POWERTOOLS_TRACE_DISABLED": "1", "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run([sys.executable, "-c", PROBE, function], capture_output=True, text=True, env=env,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout.splitlines()[-1]))
    assert not loaded & set(HEAVY), f"{function} imports {sorted(loaded & set(HEAVY))}"
