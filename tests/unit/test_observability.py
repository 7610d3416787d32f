"""With tracing on, the Tracer patches the libraries the functions reach AWS through, and imports no other."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

PROBE = """
import json, sys
from traderai import observability
import botocore.client, botocore.httpsession
print(json.dumps({
    "tracer": type(observability.tracer).__name__,
    "botocore": type(vars(botocore.client.BaseClient)["_make_api_call"]).__name__,
    "pynamodb": type(vars(botocore.httpsession.URLLib3Session)["send"]).__name__,
    "loaded": sorted(name for name in ("sqlite3", "requests", "httpx") if name in sys.modules),
}))
"""


def test_tracing_patches_botocore_and_pynamodb_and_loads_nothing_else() -> None:
    # Lambda's variables: without LAMBDA_TASK_ROOT Powertools turns the Tracer off.
    env = {"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1", "LAMBDA_TASK_ROOT": tempfile.gettempdir(),
           "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR", "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000"}
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.splitlines()[-1])
    assert probe["tracer"] == "Tracer"
    assert probe["botocore"] == probe["pynamodb"] == "FunctionWrapper"  # X-Ray records every AWS call
    assert probe["loaded"] == []  # installed here (requests, httpx) or in the standard library (sqlite3): unused
