"""`schemathesis run --checks all` against the running local stack, as a new user would try the API.

The CLI is run over real sockets against `traderai local`'s gateway (its authorizer, the real handlers, moto
behind them) with the development key, every phase (examples, coverage, fuzzing, stateful) and every check,
and must report no failure. The hooks (schemathesis_hooks.py) keep schema-valid cases inside the three
cross-parameter rules the document states in words; negative cases are sent as generated.

One exception, documented: `unsupported_method` expects 405 for a method the document does not list. API
Gateway's HTTP API answers a method no route takes with its own 404 `{"message": "Not Found"}` before any
function runs, and the local gateway does the same: that reply is pinned below instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from local_stack import Stack

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
EXAMPLES_PER_OPERATION = 20  # bounded: ~1 minute for the five operations on a loaded 2-core machine


def test_schemathesis_with_every_check_reports_no_failure(stack: Stack, tmp_path: Path) -> None:
    command = [str(Path(sys.executable).parent / "schemathesis"), "run", f"{stack.http_url}/openapi.json",
               "--checks", "all", "--exclude-checks", "unsupported_method",
               "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", "1", "--workers", "1",
               "--header", f"Authorization: Bearer {stack.dev_key}", "--no-color", "--request-timeout", "10"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert "No issues found" in output, output[-6000:]
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in output, output[-3000:]  # every phase ran and passed, none skipped


def test_the_document_declares_every_reply_with_a_schema(stack: Stack) -> None:
    document = requests.get(f"{stack.http_url}/openapi.json", timeout=5).json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            replies = operation["responses"]
            assert "200" in replies and "500" in replies, (method, path)
            assert ("400" in replies) == bool(operation.get("parameters")), (method, path)
            assert "422" not in replies, (method, path)  # validation errors leave as 400
            keyed = operation.get("security") == [{"apiKey": []}]
            assert keyed == (path != "/health"), (method, path)
            if keyed:
                assert {"401", "403"} <= set(replies), (method, path)
            for status, reply in replies.items():
                assert reply["content"], (method, path, status)
                assert all("schema" in media for media in reply["content"].values()), (method, path, status)
            for parameter in operation.get("parameters", []):
                schema = json.dumps(parameter["schema"])
                if parameter["name"] in ("since", "until"):
                    assert '"format": "date-time"' in schema and '"pattern"' in schema, parameter
                if parameter["name"] in ("signal_id", "next_token", "symbol"):
                    assert '"pattern"' in schema, parameter


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "TRACE"])
def test_a_method_the_document_does_not_list_gets_api_gateways_404(stack: Stack, method: str) -> None:
    document = requests.get(f"{stack.http_url}/openapi.json", timeout=5).json()
    headers = {"Authorization": f"Bearer {stack.dev_key}"}
    for path in document["paths"]:
        url = stack.http_url + path.replace("{signal_id}", "signal_x")
        reply = requests.request(method, url, headers=headers, timeout=5)
        assert (reply.status_code, reply.json()) == (404, {"message": "Not Found"}), (method, path)
